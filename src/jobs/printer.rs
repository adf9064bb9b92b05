//! Printer commands from the cloud (SEED-AGENT.md §2.2), carried out over SNMP with the
//! credentials the poller uses for the printer: reboot (Printer-MIB `prtGeneralReset`),
//! a control-panel message and its clearing (`prtConsoleDisplayBufferText`), unenroll.
//! A printer that refuses a write is reported `notSupported` with its error-status; one
//! that does not answer, `printerNotCommunicating`.

use super::{Context, failed, msg, result};
use fleet_snmp::message::error_status;
use fleet_snmp::{Oid, SnmpError, Target, Value as Snmp, VarBind};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// prtGeneralReset for the first printer (hrDeviceIndex 1).
const GENERAL_RESET: &str = "1.3.6.1.2.1.43.5.1.1.3.1";
/// powerCycleReset(4).
const POWER_CYCLE_RESET: i64 = 4;
/// prtConsoleDisplayBufferText, first console line.
const CONSOLE_LINE: &str = "1.3.6.1.2.1.43.16.5.1.2.1.1";

/// The seed's four control-panel messages (L4048-4068), by the key a job names.
pub const PANEL_MESSAGES: &[(&str, &str)] = &[
    ("serviceScheduled", "Service has been scheduled"),
    ("tonerDelivered", "Toner cartridge delivered"),
    ("tonerOrdered", "Toner cartridge ordered"),
    ("tonerShipped", "Toner cartridge shipped"),
];

fn oid(s: &str) -> Oid {
    s.parse().expect("static OID")
}

fn one(addr: SocketAddr, serial: Option<&str>, status: &str, message: Option<String>) -> Value {
    json!({ "address": addr.to_string(), "serialNumber": serial, "status": status, "message": message })
}

/// The job's outcome is one printer's: `status` for both, and the reason both in the
/// job's messages (what the cloud's job list shows) and in the printer's entry.
fn printer_outcome(addr: SocketAddr, serial: Option<&str>, status: &str, text: String) -> Value {
    result(
        status,
        vec![msg("error", text.clone())],
        vec![one(addr, serial, status, Some(text))],
    )
}

/// Holds a printer for one command at a time: the seed warns that a configuration
/// change can make a printer stop answering, so commands never overlap on one printer.
pub(super) type PrinterLocks = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<SocketAddr, std::sync::Arc<tokio::sync::Mutex<()>>>>,
>;

async fn lock_printer(ctx: &Context, addr: SocketAddr) -> tokio::sync::OwnedMutexGuard<()> {
    let m = ctx
        .printer_locks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(addr)
        .or_default()
        .clone();
    m.lock_owned().await
}

/// The printer a job names, its SNMP target and the printer's command lock, or the result
/// that ends the job.
async fn resolve(
    ctx: &Context,
    job: &Value,
) -> Result<(SocketAddr, Target, tokio::sync::OwnedMutexGuard<()>), Value> {
    let p = job.get("printer").cloned().unwrap_or(Value::Null);
    let Some(addr) = super::find_printer(ctx, &p).await else {
        return Err(failed(format!("printer {p} is not managed by this agent")));
    };
    let guard = lock_printer(ctx, addr).await;
    match ctx.poller.target(addr).await {
        Some(t) => Ok((addr, t, guard)),
        None => Err(failed(format!("{addr} is no longer polled by this agent"))),
    }
}

/// SETs one object and turns the outcome into a job result.
async fn set(ctx: &Context, addr: SocketAddr, target: &Target, what: &str, vb: VarBind) -> Value {
    let serial = serial_of(ctx, addr).await;
    let (status, text) = match fleet_snmp::walk::set(&ctx.snmp, target, vec![vb]).await {
        Ok(()) => ("completed", None),
        Err(SnmpError::Agent { status, .. })
            if matches!(
                status,
                error_status::NOT_WRITABLE
                    | error_status::NO_ACCESS
                    | error_status::READ_ONLY
                    | error_status::NO_SUCH_NAME
                    | error_status::WRONG_TYPE
                    | 11 // noCreation
            ) =>
        {
            (
                "notSupported",
                Some(format!(
                    "the printer refuses to set {what} ({})",
                    error_status::name(status)
                )),
            )
        }
        Err(e @ (SnmpError::Timeout { .. } | SnmpError::Unreachable { .. })) => {
            ("printerNotCommunicating", Some(e.to_string()))
        }
        Err(e) => ("failed", Some(e.to_string())),
    };
    result(
        status,
        vec![],
        vec![one(addr, serial.as_deref(), status, text)],
    )
}

async fn serial_of(ctx: &Context, addr: SocketAddr) -> Option<String> {
    let s = ctx.store.clone();
    let a = addr.to_string();
    tokio::task::spawn_blocking(move || s.printers())
        .await
        .ok()?
        .ok()?
        .into_iter()
        .find(|r| r.address == a)
        .and_then(|r| r.serial)
}

/// `reboot`: prtGeneralReset ← powerCycleReset(4).
pub async fn reboot(ctx: &Context, job: &Value) -> Value {
    let (addr, t, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // The support library may name another way for the vendor (a reboot page on the
    // printer's web server); SNMP's prtGeneralReset otherwise.
    match library_action(ctx, addr, "reboot", false).await {
        Some((transport, port, path)) if transport == "http" || transport == "https" => {
            let tls = transport == "https";
            let web = web_credentials(ctx, addr).await;
            let to = SocketAddr::new(addr.ip(), port);
            let serial = serial_of(ctx, addr).await;
            let how = if tls { "HTTPS" } else { "HTTP" };
            let failed = match super::printer_web::send(&ctx.store, to, tls, &path, None, b"", web)
                .await
            {
                Ok(code) if (200..300).contains(&code) => None,
                Ok(code @ (401 | 403)) => Some((
                    false,
                    format!(
                        "the printer's web server refused the credentials (HTTP {code}); set them with updateCredentials params.web"
                    ),
                )),
                Ok(code) => Some((
                    false,
                    format!("the printer's web server answered HTTP {code} for {path}"),
                )),
                Err(e) => Some(e),
            };
            sent_result(
                addr,
                serial.as_deref(),
                vec![format!(
                    "reboot requested over {how} ({path}), as the support library says for this vendor"
                )],
                failed,
            )
        }
        Some((transport, ..)) if transport != "snmp" => {
            let serial = serial_of(ctx, addr).await;
            let text = format!(
                "the support library names the transport {transport:?} for reboot, which this agent does not reboot over"
            );
            printer_outcome(addr, serial.as_deref(), "notSupported", text)
        }
        _ => {
            let vb = VarBind {
                oid: oid(GENERAL_RESET),
                value: Snmp::Integer(POWER_CYCLE_RESET),
            };
            set(ctx, addr, &t, "prtGeneralReset", vb).await
        }
    }
}

/// A control-panel message stays this long unless cleared or replaced (the seed: 48 h).
pub const PANEL_LIFETIME_MS: i64 = 48 * 3600 * 1000;

/// The store setting remembering the message the cloud put on a printer's panel.
fn panel_key(addr: SocketAddr) -> String {
    format!("panel.{addr}")
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
pub async fn expire_panels(ctx: &Context, now_ms: i64) {
    let s = ctx.store.clone();
    let Ok(Ok(entries)) =
        tokio::task::spawn_blocking(move || s.settings_with_prefix("panel.")).await
    else {
        return;
    };
    for (name, value) in entries {
        let v: Value = serde_json::from_str(&value).unwrap_or(Value::Null);
        let expires = v.get("expiresMs").and_then(Value::as_i64).unwrap_or(0);
        if expires > now_ms {
            continue;
        }
        let Some(addr) = name.strip_prefix("panel.").and_then(|a| a.parse().ok()) else {
            continue;
        };
        if let Some(t) = ctx.poller.target(addr).await {
            let ours = v.get("text").and_then(Value::as_str).unwrap_or("");
            if console_text(ctx, &t).await.is_ok_and(|now| now == ours) {
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
        }
        let s = ctx.store.clone();
        tokio::task::spawn_blocking(move || s.remove_setting(&name))
            .await
            .ok();
    }
}

/// `panelMessage` with `params.message` one of [`PANEL_MESSAGES`], shown for 48 h (or
/// until cleared or replaced); `clearPanelMessage` clears only a message the cloud sent.
pub async fn panel(ctx: &Context, job: &Value, clear: bool) -> Value {
    let text = if clear {
        String::new()
    } else {
        let key = job
            .pointer("/params/message")
            .and_then(Value::as_str)
            .unwrap_or("");
        match PANEL_MESSAGES.iter().find(|(k, _)| *k == key) {
            Some((_, t)) => (*t).to_string(),
            None => {
                let keys: Vec<&str> = PANEL_MESSAGES.iter().map(|(k, _)| *k).collect();
                return failed(format!(
                    "params.message {key:?} is not one of {}",
                    keys.join(", ")
                ));
            }
        }
    };
    let (addr, t, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let key = panel_key(addr);
    if clear {
        let s = ctx.store.clone();
        let k = key.clone();
        let ours = tokio::task::spawn_blocking(move || s.setting(&k))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .and_then(|v| serde_json::from_str::<Value>(&v).ok())
            .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_string));
        let showing = console_text(ctx, &t).await.ok();
        if ours.is_none() || showing != ours {
            let serial = serial_of(ctx, addr).await;
            return result(
                "completed",
                vec![msg(
                    "info",
                    "the panel shows no message from the cloud; nothing cleared",
                )],
                vec![one(addr, serial.as_deref(), "completed", None)],
            );
        }
    }
    let vb = VarBind {
        oid: oid(CONSOLE_LINE),
        value: Snmp::OctetString(text.clone().into_bytes()),
    };
    let r = set(ctx, addr, &t, "prtConsoleDisplayBufferText", vb).await;
    if r.get("status").and_then(Value::as_str) == Some("completed") {
        let s = ctx.store.clone();
        let expires = crate::poller::now_ms() + PANEL_LIFETIME_MS;
        tokio::task::spawn_blocking(move || {
            if clear {
                s.remove_setting(&key)
            } else {
                s.set_setting(
                    &key,
                    &json!({ "text": text, "expiresMs": expires }).to_string(),
                )
            }
        })
        .await
        .ok();
    }
    r
}

/// `unenroll`: the printer is no longer polled nor uploaded (a later discovery run that
/// finds it again enrolls it again, as the seed describes; exclude it to keep it out).
pub async fn unenroll(ctx: &Context, job: &Value) -> Value {
    let (addr, _, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let serial = serial_of(ctx, addr).await;
    let key = serial.as_ref().map(|sn| format!("sn:{sn}"));
    if let Some(k) = key.clone() {
        // Readings taken until now are not uploaded any more (the uploader checks).
        let s = ctx.store.clone();
        let now = crate::poller::now_ms().to_string();
        tokio::task::spawn_blocking(move || {
            s.set_setting(&crate::cloud::uploader::unenrolled_key(&k), &now)
        })
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
    result(
        "completed",
        vec![msg("info", format!("{addr} is no longer managed"))],
        vec![one(addr, serial.as_deref(), "completed", None)],
    )
}

/// Compresses `text` with gzip.
pub(super) fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).ok();
    e.finish().unwrap_or_default()
}

/// A file name from a printer's serial (or address): letters, digits, `.`, `-`, `_`.
fn file_stem(serial: Option<&str>, addr: SocketAddr) -> String {
    let raw = serial.map_or_else(|| addr.ip().to_string(), str::to_string);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `mibWalk` (the seed's "MIB Walk" printer log): the whole tree under 1.3.6.1 in
/// snmprec form (servable by `fleet-agent simulate` and snmpsim), gzip-compressed and
/// uploaded as a file of the job.
pub async fn mib_walk(
    ctx: &Context,
    client: &crate::cloud::client::CloudClient,
    creds: &crate::cloud::client::Credentials,
    job: &Value,
) -> Value {
    let (addr, target, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let serial = serial_of(ctx, addr).await;
    let walked = fleet_snmp::walk::walk(&ctx.snmp, &target, &oid("1.3.6.1")).await;
    let vbs = match walked {
        Ok(v) => v,
        Err(e @ (SnmpError::Timeout { .. } | SnmpError::Unreachable { .. })) => {
            let t = e.to_string();
            return printer_outcome(addr, serial.as_deref(), "printerNotCommunicating", t);
        }
        Err(e) => return failed(e.to_string()),
    };
    let mut text = String::new();
    for vb in &vbs {
        text.push_str(&fleet_snmp::snmprec::format_line(&vb.oid, &vb.value));
        text.push('\n');
    }
    let body = gzip(&text);
    let name = format!("{}.snmprec.gz", file_stem(serial.as_deref(), addr));
    let size = body.len();
    let id = job.get("jobId").and_then(Value::as_str).unwrap_or("");
    if let Err(e) = client.job_file(creds, id, &name, body).await {
        return failed(format!("the walk could not be uploaded: {e}"));
    }
    let mut r = result(
        "completed",
        vec![msg(
            "info",
            format!(
                "{} objects walked, {} KiB compressed",
                vbs.len(),
                size.div_ceil(1024)
            ),
        )],
        vec![one(addr, serial.as_deref(), "completed", None)],
    );
    r["files"] = json!([{ "name": name, "bytes": size }]);
    r
}

/// The store setting holding a printer's access credentials (sealed).
pub fn credentials_key(addr: SocketAddr) -> String {
    format!("printer.credentials.{addr}")
}

/// Validates an `auth` document (the configuration's tagged shape) into SNMP security;
/// errors name the key under `params.auth`.
fn parse_auth(auth: &Value) -> Result<fleet_snmp::Security, String> {
    let doc = json!({ "snmp_profiles": [ { "name": "job", "auth": auth } ] });
    crate::config::Source::new("job", "")
        .parse_with_cloud(&doc)
        .map(|c| c.profiles[0].security.clone())
        .map_err(|e| {
            e.errors
                .iter()
                .map(|x| {
                    let path = x
                        .path
                        .replace("snmp_profiles[0].auth", "params.auth")
                        .replace("snmp_profiles.0.auth", "params.auth");
                    format!("{path}: {}", x.message)
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
}

/// The credentials stored for a printer by an `updateCredentials` job, if any.
pub fn stored_security(
    store: &crate::store::Store,
    key: &crate::store::secrets::SealKey,
    addr: SocketAddr,
) -> Option<fleet_snmp::Security> {
    let doc = store.secret(key, &credentials_key(addr)).ok()??;
    let auth: Value = serde_json::from_str(doc.expose()).ok()?;
    parse_auth(&auth).ok()
}

/// `updateCredentials` with `params.auth` in the configuration's shape
/// (`{ "type": "v3", "user": …, "auth_protocol": …, "auth_pass": …, … }` or a community):
/// checked against the printer first (a GET with the new credentials), then stored sealed
/// and used from the next poll on, also after restarts. Rejected credentials change
/// nothing.
pub async fn update_credentials(ctx: &Context, job: &Value) -> Value {
    if let Some(web) = job.pointer("/params/web") {
        let stored = store_web_credentials(ctx, job, web).await;
        if job.pointer("/params/auth").is_none()
            || stored.get("status") != Some(&json!("completed"))
        {
            return stored;
        }
    }
    let auth = job.pointer("/params/auth").cloned().unwrap_or(Value::Null);
    let security = match parse_auth(&auth) {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let (addr, target, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(key) = ctx.settings.as_ref().map(|l| l.key.clone()) else {
        return failed("no key to seal credentials with");
    };
    let serial = serial_of(ctx, addr).await;
    let mut trial = target.clone();
    trial.security = security.clone();
    let sys_object_id = oid("1.3.6.1.2.1.1.2.0");
    match fleet_snmp::walk::get(&ctx.snmp, &trial, &[sys_object_id]).await {
        Ok(v) if !v.is_empty() => {}
        Ok(_) => {
            return result(
                "failed",
                vec![msg(
                    "error",
                    "the printer answered without sysObjectID; credentials not changed",
                )],
                vec![one(addr, serial.as_deref(), "failed", None)],
            );
        }
        Err(e) => {
            let status = if matches!(e, SnmpError::Timeout { .. } | SnmpError::Unreachable { .. }) {
                "printerNotCommunicating"
            } else {
                "failed"
            };
            return result(
                status,
                vec![msg(
                    "error",
                    format!(
                        "the printer did not accept the new credentials ({e}); the old ones stay"
                    ),
                )],
                vec![one(addr, serial.as_deref(), status, Some(e.to_string()))],
            );
        }
    }
    let s = ctx.store.clone();
    let secret = fleet_secret::Secret::new(auth.to_string());
    let stored =
        tokio::task::spawn_blocking(move || s.set_secret(&key, &credentials_key(addr), &secret))
            .await
            .ok()
            .and_then(Result::ok);
    if stored.is_none() {
        return failed("the store is unavailable");
    }
    ctx.poller.set_security(addr, security);
    result(
        "completed",
        vec![msg(
            "info",
            "new credentials checked against the printer, stored sealed and in use",
        )],
        vec![one(addr, serial.as_deref(), "completed", None)],
    )
}

/// Generic settings a configuration can assign (SNMPv2-MIB system group).
const GENERIC_SETTINGS: &[(&str, &str)] = &[
    ("sysContact", "1.3.6.1.2.1.1.4.0"),
    ("sysName", "1.3.6.1.2.1.1.5.0"),
    ("sysLocation", "1.3.6.1.2.1.1.6.0"),
];

/// `complianceCheck` / `complianceEnforce` with `params.settings` (`sysName`,
/// `sysLocation`, `sysContact`): compares the printer's values with the assigned ones and,
/// when enforcing, writes the differing ones and reads them back. The result carries
/// `compliant` and the `differences` found.
pub async fn compliance(ctx: &Context, job: &Value, enforce: bool) -> Value {
    let Some(wanted) = job.pointer("/params/settings").and_then(Value::as_object) else {
        return failed("params.settings (an object) is missing");
    };
    let mut messages = Vec::new();
    let mut checks = Vec::new();
    for (k, v) in wanted {
        match (GENERIC_SETTINGS.iter().find(|(n, _)| n == k), v.as_str()) {
            (Some((_, o)), Some(text)) => checks.push((k.clone(), oid(o), text.to_string())),
            (Some(_), None) => messages.push(msg("error", format!("params.settings.{k} must be a string"))),
            (None, _) => messages.push(msg(
                "warning",
                format!("params.settings.{k}: not a setting this agent manages (sysName, sysLocation, sysContact)"),
            )),
        }
    }
    if messages.iter().any(|m| m["level"] == "error") {
        return result("failed", messages, vec![]);
    }
    let (addr, target, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let serial = serial_of(ctx, addr).await;
    let read = |target: Target| {
        let oids: Vec<Oid> = checks.iter().map(|c| c.1.clone()).collect();
        async move { fleet_snmp::walk::get(&ctx.snmp, &target, &oids).await }
    };
    let differences = |got: &[VarBind]| -> Vec<Value> {
        checks
            .iter()
            .filter_map(|(name, o, want)| {
                let have = got
                    .iter()
                    .find(|vb| &vb.oid == o)
                    .and_then(|vb| vb.value.as_bytes())
                    .map(|b| String::from_utf8_lossy(b).to_string());
                (have.as_deref() != Some(want.as_str()))
                    .then(|| json!({ "setting": name, "expected": want, "found": have }))
            })
            .collect()
    };
    let got = match read(target.clone()).await {
        Ok(v) => v,
        Err(e) => {
            let t = e.to_string();
            return printer_outcome(addr, serial.as_deref(), "printerNotCommunicating", t);
        }
    };
    let mut diff = differences(&got);
    if enforce && !diff.is_empty() {
        for d in &diff {
            let name = d["setting"].as_str().unwrap_or("");
            let Some((_, o)) = GENERIC_SETTINGS.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let vb = VarBind {
                oid: oid(o),
                value: Snmp::OctetString(d["expected"].as_str().unwrap_or("").as_bytes().to_vec()),
            };
            let r = set(ctx, addr, &target, name, vb).await;
            if r["status"] != "completed" {
                let mut r = r;
                r["differences"] = json!(diff);
                r["compliant"] = json!(false);
                return r;
            }
        }
        diff = match read(target.clone()).await {
            Ok(v) => differences(&v),
            Err(e) => {
                return printer_outcome(
                    addr,
                    serial.as_deref(),
                    "printerNotCommunicating",
                    e.to_string(),
                );
            }
        };
        messages.push(msg("info", "differing settings written and read back"));
    }
    let compliant = diff.is_empty();
    messages.push(if compliant {
        msg("info", "compliant with the assigned configuration")
    } else {
        msg(
            "warning",
            format!("not compliant: {} setting(s) differ", diff.len()),
        )
    });
    let status = if compliant || !enforce {
        "completed"
    } else {
        "failed"
    };
    let mut r = result(
        status,
        messages,
        vec![one(addr, serial.as_deref(), status, None)],
    );
    r["compliant"] = json!(compliant);
    r["differences"] = json!(diff);
    r
}

/// `updateCredentials` with `params.web` (`{user, password}`): the printer's web-server
/// credentials, stored sealed for HTTP uploads (they cannot be tried without a request
/// that changes something, so they are checked at the first upload).
async fn store_web_credentials(ctx: &Context, job: &Value, web: &Value) -> Value {
    let pin = match web.get("certificateSha256").map(|v| {
        v.as_str()
            .ok_or_else(|| "not a string".to_string())
            .and_then(super::printer_web::normalize_pin)
    }) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            return failed(format!("params.web.certificateSha256: {e}"));
        }
    };
    let login = match (
        web.get("user")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty()),
        web.get("password").and_then(Value::as_str),
    ) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) if pin.is_some() => None,
        _ => {
            return failed("params.web: needs user and password (and/or certificateSha256)");
        }
    };
    let (addr, _target, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(key) = ctx.settings.as_ref().map(|l| l.key.clone()) else {
        return failed("no key to seal credentials with");
    };
    let secret = login.map(|(user, password)| {
        fleet_secret::Secret::new(json!({ "user": user, "password": password }).to_string())
    });
    let s = ctx.store.clone();
    let what = match (&secret, &pin) {
        (Some(_), Some(_)) => "web-server credentials and certificate fingerprint",
        (Some(_), None) => "web-server credentials",
        _ => "web-server certificate fingerprint",
    };
    let ok = tokio::task::spawn_blocking(move || {
        if let Some(secret) = &secret {
            s.set_secret(&key, &web_credentials_key(addr), secret)?;
        }
        if let Some(pin) = &pin {
            s.set_setting(&super::printer_web::pin_key(addr.ip()), pin)?;
        }
        Ok::<_, crate::store::StoreError>(())
    })
    .await
    .ok()
    .and_then(Result::ok)
    .is_some();
    let serial = serial_of(ctx, addr).await;
    if ok {
        result(
            "completed",
            vec![msg("info", format!("{what} for {addr} stored"))],
            vec![one(addr, serial.as_deref(), "completed", None)],
        )
    } else {
        failed("the store refused the credentials")
    }
}

/// The store setting holding a printer's web-server credentials (sealed JSON
/// `{user, password}`), set by `updateCredentials` with `params.web`.
pub fn web_credentials_key(addr: SocketAddr) -> String {
    format!("printer.web.{addr}")
}

/// Bytes in a megabyte as the seed's limits count them (MiB).
const MB: u64 = 1 << 20;

/// The kind of a deployable file and its size limit: settings bundles (.zip) up to
/// 32 MB, UCF settings (.ucf) and apps (.fls) up to 50 MB; firmware is refused (the
/// seed: "Firmware flash files are not accepted").
pub fn deploy_kind(name: &str, kind: Option<&str>) -> Result<(&'static str, u64), String> {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let by_ext = match ext.as_str() {
        "zip" => Some("settingsBundle"),
        "ucf" => Some("ucf"),
        "fls" => Some("app"),
        _ => None,
    };
    if kind == Some("firmware") {
        return Err("params.kind: firmware flash files are not accepted by file deployment".into());
    }
    let kind = match kind {
        Some(k) => k,
        None => by_ext.ok_or_else(|| {
            format!(
                "params.file: {name:?} is not a settings bundle (.zip), a UCF file (.ucf) or an app (.fls)"
            )
        })?,
    };
    match (kind, by_ext) {
        ("settingsBundle", Some("settingsBundle")) => Ok(("settingsBundle", 32 * MB)),
        ("ucf", Some("ucf")) => Ok(("ucf", 50 * MB)),
        ("app", Some("app")) => Ok(("app", 50 * MB)),
        _ => Err(format!(
            "params.file: {name:?} does not fit the kind {kind:?} (settingsBundle: .zip, ucf: .ucf, app: .fls)"
        )),
    }
}

/// How the support library says files reach this printer: (transport, port, path);
/// raw TCP 9100 when it names nothing.
async fn deploy_transport(ctx: &Context, addr: SocketAddr, action: &str) -> (String, u16, String) {
    library_action(ctx, addr, action, true)
        .await
        .unwrap_or_else(|| ("raw9100".into(), 9100, String::new()))
}

/// The support library's way to do `action` on this printer (its vendor from the latest
/// reading's sysObjectID): (transport, port, path). With `files_fallback`, an action the
/// vendor does not name goes the vendor's `deployFile` way.
async fn library_action(
    ctx: &Context,
    addr: SocketAddr,
    action: &str,
    files_fallback: bool,
) -> Option<(String, u16, String)> {
    let s = ctx.store.clone();
    let a = addr.to_string();
    let report = tokio::task::spawn_blocking(move || {
        let id = s.printers().ok()?.into_iter().find(|p| p.address == a)?.id;
        s.latest_report(id).ok()?
    })
    .await
    .ok()
    .flatten();
    let enterprise = report
        .and_then(|r| serde_json::from_str::<Value>(&r).ok())
        .and_then(|r| {
            r.pointer("/device/sysObjectID")?
                .as_str()?
                .strip_prefix("1.3.6.1.4.1.")?
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()
        });
    let library = crate::printer::library::current();
    let action = enterprise
        .and_then(|e| library.vendor(e))
        .and_then(|v| {
            // A firmware update goes the way files go unless the library says otherwise.
            v.actions.iter().find(|a| a.action == action).or_else(|| {
                files_fallback
                    .then(|| v.actions.iter().find(|a| a.action == "deployFile"))
                    .flatten()
            })
        })
        .cloned();
    action.map(|a| {
        let port = a.port.unwrap_or(match a.transport.as_str() {
            "http" => 80,
            "https" => 443,
            _ => 9100,
        });
        (a.transport, port, a.path.unwrap_or_else(|| "/".into()))
    })
}

/// Sends a file as a raw TCP stream (port 9100: the printer takes it like a print job).
async fn send_raw(to: SocketAddr, bytes: &[u8]) -> Result<(), (bool, String)> {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(to),
    )
    .await
    .map_err(|_| (true, format!("{to}: no connection within 10 s")))?
    .map_err(|e| (true, format!("{to}: {e}")))?;
    tokio::time::timeout(std::time::Duration::from_secs(600), async {
        s.write_all(bytes).await?;
        s.shutdown().await
    })
    .await
    .map_err(|_| (false, format!("{to}: sending took more than 10 minutes")))?
    .map_err(|e| (false, format!("{to}: {e}")))
}

async fn web_credentials(ctx: &Context, addr: SocketAddr) -> Option<(String, String)> {
    let key = ctx.settings.as_ref().map(|l| l.key.clone())?;
    let s = ctx.store.clone();
    tokio::task::spawn_blocking(move || s.secret(&key, &web_credentials_key(addr)).ok().flatten())
        .await
        .ok()
        .flatten()
        .and_then(|w| serde_json::from_str::<Value>(w.expose()).ok())
        .and_then(|w| {
            Some((
                w.get("user")?.as_str()?.to_string(),
                w.get("password")?.as_str()?.to_string(),
            ))
        })
}

/// `printerLogs` with `params.kind`: `mibWalk` is the MIB walk; any other kind is read
/// the way the support library names for the vendor (action `log:<kind>`, an HTTP GET
/// on the printer's web server with its web credentials), compressed and uploaded as a
/// file of the job. A kind the library names no way for is `notSupported`.
pub async fn printer_logs(
    ctx: &Context,
    client: &crate::cloud::client::CloudClient,
    creds: &crate::cloud::client::Credentials,
    job: &Value,
) -> Value {
    let kind = job
        .pointer("/params/kind")
        .and_then(Value::as_str)
        .unwrap_or("mibWalk")
        .to_string();
    if kind == "mibWalk" {
        return mib_walk(ctx, client, creds, job).await;
    }
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return failed("params.kind: letters and digits (mibWalk, eventLog, ...)");
    }
    let (addr, _target, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let serial = serial_of(ctx, addr).await;
    let Some((transport, port, path)) =
        library_action(ctx, addr, &format!("log:{kind}"), false).await
    else {
        let text = format!(
            "the printer support library names no way to read the {kind:?} log of this printer's vendor"
        );
        return printer_outcome(addr, serial.as_deref(), "notSupported", text);
    };
    if transport != "http" && transport != "https" {
        let text = format!("reading logs over {transport:?} is not implemented yet");
        return printer_outcome(addr, serial.as_deref(), "notSupported", text);
    }
    let to = SocketAddr::new(addr.ip(), port);
    let web = web_credentials(ctx, addr).await;
    let body = match super::printer_web::get(&ctx.store, to, transport == "https", &path, web).await
    {
        Ok((200, body)) => body,
        Ok((code, _)) => {
            return sent_result(
                addr,
                serial.as_deref(),
                vec![],
                Some((
                    false,
                    format!("the printer's web server answered HTTP {code} for {path}"),
                )),
            );
        }
        Err(e) => return sent_result(addr, serial.as_deref(), vec![], Some(e)),
    };
    let stem = file_stem(serial.as_deref(), addr);
    let name = format!("{stem}-{kind}.log.gz");
    let gz = gzip(&String::from_utf8_lossy(&body));
    let size = gz.len();
    let job_id = job.get("jobId").and_then(Value::as_str).unwrap_or("");
    if let Err(e) = client.job_file(creds, job_id, &name, gz).await {
        return sent_result(
            addr,
            serial.as_deref(),
            vec![],
            Some((false, format!("the log was read but not uploaded: {e}"))),
        );
    }
    let mut r = sent_result(
        addr,
        serial.as_deref(),
        vec![format!(
            "{kind} log: {} bytes read from {path}, {size} bytes compressed",
            body.len()
        )],
        None,
    );
    r["files"] = json!([{ "name": name, "bytes": size }]);
    r
}

/// One file of a job, checked: its name, kind and size limit.
struct Item {
    name: String,
    kind: &'static str,
    limit: u64,
}

/// Largest firmware file accepted (the reference cloud's own limit is 64 MiB).
const FIRMWARE_MAX: u64 = 256 * MB;

/// Downloads one attached file (stopping at its limit) and sends it to the printer
/// through the transport the support library names for `action`. Ok: what was done.
/// Err: (the printer did not answer, why).
async fn send_item(
    ctx: &Context,
    client: &crate::cloud::client::CloudClient,
    creds: &crate::cloud::client::Credentials,
    job_id: &str,
    addr: SocketAddr,
    item: &Item,
    action: &str,
) -> Result<String, (bool, String)> {
    let (transport, port, path) = deploy_transport(ctx, addr, action).await;
    let bytes = client
        .job_input(creds, job_id, &item.name, item.limit)
        .await
        .map_err(|e| {
            (
                false,
                format!("{}: not downloaded, nothing sent: {e}", item.name),
            )
        })?;
    let to = SocketAddr::new(addr.ip(), port);
    let how = match transport.as_str() {
        "raw9100" => send_raw(to, &bytes).await.map(|()| format!("raw TCP {port}")),
        "http" | "https" => {
            let web = web_credentials(ctx, addr).await;
            let tls = transport == "https";
            match super::printer_web::send(&ctx.store, to, tls, &path, Some(&item.name), &bytes, web).await {
                Ok(code) if (200..300).contains(&code) => Ok(format!(
                    "{} upload to {path}",
                    if tls { "HTTPS" } else { "HTTP" }
                )),
                Ok(code @ (401 | 403)) => Err((
                    false,
                    format!("the printer's web server refused the credentials (HTTP {code}); set them with updateCredentials params.web"),
                )),
                Ok(code) => Err((false, format!("the printer's web server answered HTTP {code}"))),
                Err(e) => Err(e),
            }
        }
        other => Err((
            false,
            format!("the support library names the transport {other:?}, which this agent does not send files over yet"),
        )),
    }
    .map_err(|(u, e)| (u, format!("{}: {e}", item.name)))?;
    Ok(format!(
        "{} ({}, {} bytes) sent to {} over {how}",
        item.name,
        item.kind,
        bytes.len(),
        addr.ip()
    ))
}

/// Checks a job's `params` file entry (`file`, `kind`, `size`) into an [`Item`].
fn item_of(p: &Value, at: &str) -> Result<Item, String> {
    let name = p
        .get("file")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}.file: missing (the attached file's name)"))?;
    let kind = p.get("kind").and_then(Value::as_str);
    let (kind, limit) = if kind == Some("firmware") {
        ("firmware", FIRMWARE_MAX)
    } else {
        deploy_kind(name, kind).map_err(|e| e.replacen("params", at, 1))?
    };
    if let Some(size) = p.get("size").and_then(Value::as_u64)
        && size > limit
    {
        return Err(format!(
            "{at}.size: {name} is {size} bytes; a {kind} file may have {limit} at most"
        ));
    }
    Ok(Item {
        name: name.to_string(),
        kind,
        limit,
    })
}

fn sent_result(
    addr: SocketAddr,
    serial: Option<&str>,
    done: Vec<String>,
    failed: Option<(bool, String)>,
) -> Value {
    let mut messages: Vec<Value> = done.into_iter().map(|d| msg("info", d)).collect();
    match failed {
        None => result(
            "completed",
            messages,
            vec![one(addr, serial, "completed", None)],
        ),
        Some((unreachable, e)) => {
            let status = if unreachable {
                "printerNotCommunicating"
            } else {
                "failed"
            };
            messages.insert(0, msg("error", e.clone()));
            result(status, messages, vec![one(addr, serial, status, Some(e))])
        }
    }
}

/// `deployFile`: a settings bundle, UCF file or app attached to the job, checked (kind,
/// size) before anything is downloaded or sent, then sent through the transport the
/// support library names for the printer's vendor (raw TCP 9100 by default, or an HTTP
/// upload with the printer's stored web credentials). Firmware is refused here.
pub async fn deploy_file(
    ctx: &Context,
    client: &crate::cloud::client::CloudClient,
    creds: &crate::cloud::client::Credentials,
    job: &Value,
) -> Value {
    let params = job.get("params").cloned().unwrap_or(Value::Null);
    if params.get("kind").and_then(Value::as_str) == Some("firmware") {
        return failed(
            "params.kind: firmware flash files are not accepted by file deployment; use firmwareUpdate",
        );
    }
    let item = match item_of(&params, "params") {
        Ok(i) => i,
        Err(e) => return failed(e),
    };
    let (addr, _target, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let serial = serial_of(ctx, addr).await;
    let job_id = job.get("jobId").and_then(Value::as_str).unwrap_or("");
    match send_item(ctx, client, creds, job_id, addr, &item, "deployFile").await {
        Ok(done) => sent_result(addr, serial.as_deref(), vec![done], None),
        Err(e) => sent_result(addr, serial.as_deref(), vec![], Some(e)),
    }
}

/// Longest wait for a firmware window to open: an in-progress job expires after 24 h.
const WINDOW_MAX: std::time::Duration = std::time::Duration::from_secs(23 * 3600);

/// `firmwareUpdate`: `params: {file, size?, startAt?}`; the flash file is sent when the
/// window opens (`startAt`, epoch ms; now when absent). The cloud expires a pending job
/// when its window closes (`notAfter`); one that started continues.
pub async fn firmware_update(
    ctx: &Context,
    client: &crate::cloud::client::CloudClient,
    creds: &crate::cloud::client::Credentials,
    job: &Value,
) -> Value {
    let mut params = job.get("params").cloned().unwrap_or(Value::Null);
    if let Some(p) = params.as_object_mut() {
        p.insert("kind".into(), json!("firmware"));
    }
    let item = match item_of(&params, "params") {
        Ok(i) => i,
        Err(e) => return failed(e),
    };
    let now = crate::poller::now_ms();
    let wait = params
        .get("startAt")
        .and_then(Value::as_i64)
        .map(|t| std::time::Duration::from_millis((t - now).max(0) as u64))
        .unwrap_or_default();
    if wait > WINDOW_MAX {
        return failed(
            "params.startAt: more than 23 h ahead; queue the job closer to its window (a job in progress expires after 24 h)",
        );
    }
    tokio::time::sleep(wait).await;
    let (addr, _target, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let serial = serial_of(ctx, addr).await;
    let job_id = job.get("jobId").and_then(Value::as_str).unwrap_or("");
    match send_item(ctx, client, creds, job_id, addr, &item, "firmwareUpdate").await {
        Ok(done) => sent_result(addr, serial.as_deref(), vec![done], None),
        Err(e) => sent_result(addr, serial.as_deref(), vec![], Some(e)),
    }
}

/// `deployConfiguration`: `params.items: [{file, kind?, size?}]` sent in the seed's order
/// (firmware first, then apps in the listed order, then settings files in the listed
/// order); every item is checked before the first is sent, and the first failure stops
/// the rest.
pub async fn deploy_configuration(
    ctx: &Context,
    client: &crate::cloud::client::CloudClient,
    creds: &crate::cloud::client::Credentials,
    job: &Value,
) -> Value {
    let Some(list) = job.pointer("/params/items").and_then(Value::as_array) else {
        return failed("params.items: missing");
    };
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (i, p) in list.iter().enumerate() {
        match item_of(p, &format!("params.items[{i}]")) {
            Ok(it) => items.push(it),
            Err(e) => problems.push(msg("error", e)),
        }
    }
    if !problems.is_empty() || items.is_empty() {
        if problems.is_empty() {
            problems.push(msg("error", "params.items: empty"));
        }
        return result("failed", problems, vec![]);
    }
    let rank = |k: &str| match k {
        "firmware" => 0,
        "app" => 1,
        _ => 2,
    };
    // A stable sort keeps the listed order within each group.
    items.sort_by_key(|i| rank(i.kind));
    let (addr, _target, _held) = match resolve(ctx, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let serial = serial_of(ctx, addr).await;
    let job_id = job.get("jobId").and_then(Value::as_str).unwrap_or("");
    let mut done = Vec::new();
    for item in &items {
        let action = if item.kind == "firmware" {
            "firmwareUpdate"
        } else {
            "deployFile"
        };
        match send_item(ctx, client, creds, job_id, addr, item, action).await {
            Ok(d) => done.push(d),
            Err((u, e)) => {
                let left = items.len() - done.len() - 1;
                return sent_result(
                    addr,
                    serial.as_deref(),
                    done,
                    Some((u, format!("{e}; {left} later item(s) not sent"))),
                );
            }
        }
    }
    sent_result(addr, serial.as_deref(), done, None)
}

#[cfg(test)]
mod deploy_tests {
    use super::*;

    #[test]
    fn file_kinds_and_limits_follow_the_seed() {
        assert_eq!(
            deploy_kind("site.zip", None),
            Ok(("settingsBundle", 32 << 20))
        );
        assert_eq!(deploy_kind("SETTINGS.UCF", None), Ok(("ucf", 50 << 20)));
        assert_eq!(deploy_kind("scan.fls", Some("app")), Ok(("app", 50 << 20)));
        assert!(
            deploy_kind("fw.fls", Some("firmware"))
                .unwrap_err()
                .contains("firmware")
        );
        assert!(
            deploy_kind("notes.txt", None)
                .unwrap_err()
                .starts_with("params.file")
        );
        assert!(
            deploy_kind("site.zip", Some("app"))
                .unwrap_err()
                .contains("does not fit")
        );
    }
}
