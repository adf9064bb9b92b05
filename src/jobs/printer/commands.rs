//! Reboot (Printer-MIB `prtGeneralReset`, or the web page the support library names),
//! control-panel messages (`prtConsoleDisplayBufferText`, cleared after 48 h) and
//! unenroll.

use super::super::results::{one, printer_outcome, sent, with_printers};
use super::{Access, Context, Resolved, library_action, oid, refused_credentials, resolve, set};
use fleet_protocol::jobs::{Job, JobResult, Message, PanelMessage, Status};
use fleet_snmp::{SnmpError, Target, Value as Snmp, VarBind};
use std::net::SocketAddr;

/// prtGeneralReset for the first printer (hrDeviceIndex 1).
const GENERAL_RESET: &str = "1.3.6.1.2.1.43.5.1.1.3.1";
/// powerCycleReset(4).
const POWER_CYCLE_RESET: i64 = 4;
/// prtConsoleDisplayBufferText, first console line.
const CONSOLE_LINE: &str = "1.3.6.1.2.1.43.16.5.1.2.1.1";

/// The seed's four control-panel messages (L4048-4068) and their text.
pub const PANEL_MESSAGES: &[(PanelMessage, &str)] = &[
    (PanelMessage::ServiceScheduled, "Service has been scheduled"),
    (PanelMessage::TonerDelivered, "Toner cartridge delivered"),
    (PanelMessage::TonerOrdered, "Toner cartridge ordered"),
    (PanelMessage::TonerShipped, "Toner cartridge shipped"),
];

fn panel_text(m: PanelMessage) -> &'static str {
    PANEL_MESSAGES
        .iter()
        .find(|(k, _)| *k == m)
        .map_or("", |(_, t)| t)
}

/// `reboot`: prtGeneralReset ← powerCycleReset(4), unless the support library names a
/// web page for the vendor.
pub async fn reboot(ctx: &Context, job: &Job) -> JobResult {
    let p = match resolve(ctx, job, Access::Write).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match library_action(ctx, &p, "reboot", false) {
        Some(w) if w.transport == "http" || w.transport == "https" => {
            let tls = w.transport == "https";
            let web = match super::credentials::web(ctx, p.addr).await {
                Ok(w) => w,
                Err(why) => {
                    return printer_outcome(p.addr, p.serial.as_deref(), Status::Failed, why);
                }
            };
            let to = SocketAddr::new(p.addr.ip(), w.port);
            let how = if tls { "HTTPS" } else { "HTTP" };
            let path = &w.path;
            let answer =
                super::super::printer_web::send(&ctx.store, to, tls, path, None, b"", web).await;
            if let Ok(code) = answer {
                super::web_answered(ctx, p.addr, code).await;
            }
            let failure = match answer {
                Ok(code) if (200..300).contains(&code) => None,
                Ok(code @ (401 | 403)) => Some((false, refused_credentials(code))),
                Ok(code) => Some((
                    false,
                    format!("the printer's web server answered HTTP {code} for {path}"),
                )),
                Err(e) => Some(e),
            };
            sent(
                p.addr,
                p.serial.as_deref(),
                vec![format!(
                    "reboot requested over {how} ({path}), as the support library says for this vendor"
                )],
                failure,
            )
        }
        Some(w) if w.transport != "snmp" => {
            let text = format!(
                "the support library names the transport {:?} for reboot, which this agent does not reboot over",
                w.transport
            );
            printer_outcome(p.addr, p.serial.as_deref(), Status::NotSupported, text)
        }
        _ => {
            let vb = VarBind {
                oid: oid(GENERAL_RESET),
                value: Snmp::Integer(POWER_CYCLE_RESET),
            };
            set(ctx, &p, "prtGeneralReset", vb).await
        }
    }
}

/// A control-panel message stays this long unless cleared or replaced (the seed: 48 h).
pub const PANEL_LIFETIME_MS: i64 = 48 * 3600 * 1000;

/// The store setting remembering the message the cloud put on a printer's panel.
fn panel_key(addr: SocketAddr) -> String {
    format!("panel.{addr}")
}

/// The message the cloud put on a panel, as remembered.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shown {
    text: String,
    expires_ms: i64,
}

/// What the panel line shows now.
async fn console_text(ctx: &Context, target: &Target) -> Result<String, SnmpError> {
    let v = fleet_snmp::walk::get(&ctx.snmp, target, &[oid(CONSOLE_LINE)]).await?;
    Ok(v.first()
        .and_then(|vb| vb.value.as_bytes())
        .map(|b| {
            String::from_utf8_lossy(b)
                .trim_end_matches('\0')
                .to_string()
        })
        .unwrap_or_default())
}

/// Clears the messages the cloud sent that are past their 48 h (only when the panel still
/// shows them: a message someone else put there stays).
pub async fn expire_panels(ctx: &Context) {
    let now_ms = ctx.clock.now_ms();
    let s = ctx.store.clone();
    let Ok(Ok(entries)) =
        tokio::task::spawn_blocking(move || s.settings_with_prefix("panel.")).await
    else {
        return;
    };
    for (name, value) in entries {
        let shown = serde_json::from_str::<Shown>(&value).ok();
        if shown.as_ref().is_some_and(|s| s.expires_ms > now_ms) {
            continue;
        }
        let Some(addr) = name.strip_prefix("panel.").and_then(|a| a.parse().ok()) else {
            continue;
        };
        // One task at a time per printer: one a command holds is cleared at a later check
        // (not waited for: this runs in the jobs loop).
        let Some(_held) = ctx.printer_locks.try_hold(addr) else {
            continue;
        };
        if let (Some(t), Some(shown)) = (ctx.poller.target(addr).await, &shown)
            && console_text(ctx, &t)
                .await
                .is_ok_and(|now| now == shown.text)
        {
            let vb = VarBind {
                oid: oid(CONSOLE_LINE),
                value: Snmp::OctetString(Vec::new()),
            };
            if fleet_snmp::walk::set(&ctx.snmp, &t, vec![vb])
                .await
                .is_err()
            {
                continue; // retried at the next check
            }
            tracing::info!(printer = %addr, "Control-panel message expired (48 h) and cleared.");
        }
        let s = ctx.store.clone();
        tokio::task::spawn_blocking(move || s.remove_setting(&name))
            .await
            .ok();
    }
}

/// `panelMessage` (`Some`), shown for 48 h (or until cleared or replaced);
/// `clearPanelMessage` (`None`) clears only a message the cloud sent.
pub async fn panel(ctx: &Context, job: &Job, message: Option<PanelMessage>) -> JobResult {
    let text = message.map(panel_text).unwrap_or_default().to_string();
    let p = match resolve(ctx, job, Access::Write).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let key = panel_key(p.addr);
    if message.is_none() {
        let s = ctx.store.clone();
        let k = key.clone();
        let ours = tokio::task::spawn_blocking(move || s.setting(&k))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .and_then(|v| serde_json::from_str::<Shown>(&v).ok())
            .map(|s| s.text);
        let showing = console_text(ctx, &p.target).await.ok();
        if ours.is_none() || showing != ours {
            return with_printers(
                Status::Completed,
                vec![Message::info(
                    "the panel shows no message from the cloud; nothing cleared",
                )],
                vec![one(p.addr, p.serial.as_deref(), Status::Completed, None)],
            );
        }
    }
    let vb = VarBind {
        oid: oid(CONSOLE_LINE),
        value: Snmp::OctetString(text.clone().into_bytes()),
    };
    let r = set(ctx, &p, "prtConsoleDisplayBufferText", vb).await;
    if r.status == Status::Completed {
        let s = ctx.store.clone();
        let shown = Shown {
            text,
            expires_ms: ctx.clock.now_ms() + PANEL_LIFETIME_MS,
        };
        tokio::task::spawn_blocking(move || match message {
            None => s.remove_setting(&key),
            Some(_) => s.set_setting(&key, &serde_json::to_string(&shown).unwrap_or_default()),
        })
        .await
        .ok();
    }
    r
}

/// `unenroll`: the printer is no longer polled nor uploaded (a later discovery run that
/// finds it again enrolls it again, as the seed describes; exclude it to keep it out).
pub async fn unenroll(ctx: &Context, job: &Job) -> JobResult {
    let Resolved { addr, serial, .. } = match resolve(ctx, job, Access::Write).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let key = serial.as_ref().map(|sn| format!("sn:{sn}"));
    if let Some(k) = key.clone() {
        // Readings taken until now are not uploaded any more (the uploader checks).
        let (s, now) = (ctx.store.clone(), ctx.clock.now_ms());
        tokio::task::spawn_blocking(move || s.set_unenrolled(&k, now))
            .await
            .ok();
    }
    ctx.poller.remove(addr).await;
    if let Some(k) = key {
        // Nothing queued about it may reach the cloud after this job's result; a
        // re-enrolled printer starts again with a snapshot.
        let s = ctx.store.clone();
        tokio::task::spawn_blocking(move || s.drop_printer(&k))
            .await
            .ok();
    }
    with_printers(
        Status::Completed,
        vec![Message::info(format!("{addr} is no longer managed"))],
        vec![one(addr, serial.as_deref(), Status::Completed, None)],
    )
}
