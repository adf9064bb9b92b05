//! `updateCredentials`: a printer's SNMP credentials (tried against the printer first,
//! then stored sealed and used from the next poll on, also after restarts) and its web
//! server's credentials and pinned certificate. Rejected credentials change nothing.

use super::super::results::{done, failed, one, with_printers};
use super::{Access, Context, Job, oid, resolve};
use crate::store::Store;
use crate::store::secrets::SealKey;
use fleet_protocol::jobs::{CredentialsParams, JobResult, Message, Status, WebCredentials};
use fleet_secret::Secret;
use fleet_snmp::{Security, SnmpError};
use std::net::SocketAddr;

/// The store setting holding a printer's SNMP credentials (sealed, the `auth` shape).
fn snmp_key(addr: SocketAddr) -> String {
    format!("printer.credentials.{addr}")
}

/// The store setting holding a printer's web-server credentials (sealed JSON
/// `{user, password}`).
fn web_key(addr: SocketAddr) -> String {
    format!("printer.web.{addr}")
}

/// The settings that make up a printer's own state at an address (its SNMP and web
/// credentials, pinned certificate, web refusal), from `from` to `to`: what follows a
/// printer that discovery found at a new address.
pub fn state_moves(from: SocketAddr, to: SocketAddr) -> Vec<(String, String)> {
    let refused = crate::store::WEB_REFUSED;
    vec![
        (snmp_key(from), snmp_key(to)),
        (web_key(from), web_key(to)),
        (format!("{refused}{from}"), format!("{refused}{to}")),
        (
            super::super::printer_web::pin_key(from.ip()),
            super::super::printer_web::pin_key(to.ip()),
        ),
    ]
}

/// A printer's web-server login as stored, with the serial number of the printer it was
/// set for (sent to no other device).
#[derive(serde::Serialize, serde::Deserialize)]
struct WebLogin {
    user: String,
    #[serde(with = "fleet_secret::exposed")]
    password: Secret,
    #[serde(default)]
    serial: Option<String>,
}

/// A printer's SNMP credentials as stored: the `auth` document and the device they were
/// set for (its serial number and SNMPv3 engine ID). Older stores hold the `auth`
/// document alone.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredAuth {
    auth: serde_json::Value,
    #[serde(default)]
    serial: Option<String>,
    /// Hex.
    #[serde(default)]
    engine_id: Option<String>,
}

/// The SNMP credentials stored for a printer by an `updateCredentials` job, if any;
/// SNMPv3 ones pinned to the engine of the device they were set for, so another device
/// that takes the address is never sent them.
pub fn stored_security(store: &Store, key: &SealKey, addr: SocketAddr) -> Option<Security> {
    let doc = store.secret(key, &snmp_key(addr)).ok()??;
    let value: serde_json::Value = serde_json::from_str(doc.expose()).ok()?;
    let stored = match value.get("auth") {
        Some(_) => serde_json::from_value::<StoredAuth>(value).ok()?,
        None => StoredAuth {
            auth: value,
            serial: None,
            engine_id: None,
        },
    };
    let security = crate::config::auth_security(&stored.auth, "auth").ok()?;
    Some(pinned(security, stored.engine_id.as_deref()))
}

/// `security` with its SNMPv3 user pinned to `engine_id` (hex), when both are there.
fn pinned(security: Security, engine_id: Option<&str>) -> Security {
    let Some(engine) = engine_id.and_then(|e| hex::decode(e).ok()) else {
        return security;
    };
    match security {
        Security::Usm(user) => match std::sync::Arc::try_unwrap(user) {
            Ok(mut u) => {
                u.engine_pin = Some(engine);
                Security::Usm(std::sync::Arc::new(u))
            }
            Err(shared) => Security::Usm(shared),
        },
        other => other,
    }
}

/// The web-server login stored for a printer, or why it may not be sent: the printer at
/// the address now reports another serial number than the one it was set for (another
/// device took the address).
pub(super) async fn web(
    ctx: &Context,
    addr: SocketAddr,
) -> Result<Option<super::super::printer_web::Login>, String> {
    let Some(key) = ctx.settings.as_ref().map(|l| l.key.clone()) else {
        return Ok(None);
    };
    let s = ctx.store.clone();
    let (login, now) = tokio::task::spawn_blocking(move || {
        let login = s
            .secret(&key, &web_key(addr))
            .ok()
            .flatten()
            .and_then(|w| serde_json::from_str::<WebLogin>(w.expose()).ok());
        let now = s
            .printers()
            .ok()
            .and_then(|rows| rows.into_iter().find(|p| p.address == addr.to_string()))
            .and_then(|p| p.serial);
        (login, now)
    })
    .await
    .unwrap_or((None, None));
    let Some(w) = login else {
        return Ok(None);
    };
    if let Some(set_for) = &w.serial {
        // Asked now over SNMP (prtGeneralSerialNumber), else the last poll's reading.
        let now = match live_serial(ctx, addr).await {
            Some(live) => Some(live),
            None => now,
        };
        match now {
            Some(now) if now == *set_for => {}
            Some(now) => {
                return Err(format!(
                    "the printer at {addr} now reports serial {now}, not {set_for} that its web credentials were set for; they were not sent (set them again with updateCredentials params.web)"
                ));
            }
            None => {
                return Err(format!(
                    "the printer at {addr} could not be confirmed to be {set_for}, the one its web credentials were set for; they were not sent"
                ));
            }
        }
    }
    Ok(Some(super::super::printer_web::Login {
        user: w.user,
        password: w.password,
    }))
}

/// The serial number the printer at `addr` gives now (prtGeneralSerialNumber over the
/// poller's SNMP access), when it answers one.
async fn live_serial(ctx: &Context, addr: SocketAddr) -> Option<String> {
    let target = ctx.poller.target(addr).await?;
    let serial = oid("1.3.6.1.2.1.43.5.1.1.17.1");
    let v = fleet_snmp::walk::get(&ctx.snmp, &target, &[serial])
        .await
        .ok()?;
    // Read as the poller reads identity text (NULs, padding, placeholders).
    crate::printer::text::identity(v.first()?.value.as_bytes()?)
}

/// `updateCredentials` with `params.auth` (the configuration's `auth` shape) and/or
/// `params.web`.
pub async fn update(ctx: &Context, job: &Job, params: &CredentialsParams) -> JobResult {
    if let Some(web) = &params.web {
        let stored = store_web(ctx, job, web).await;
        if params.auth.is_none() || stored.status != Status::Completed {
            return stored;
        }
    }
    let Some(auth) = &params.auth else {
        return failed("params: needs auth and/or web");
    };
    let security = match crate::config::auth_security(&auth.0, "params.auth") {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let p = match resolve(ctx, job, Access::Write).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(key) = ctx.settings.as_ref().map(|l| l.key.clone()) else {
        return failed("no key to seal credentials with");
    };
    let (addr, serial) = (p.addr, p.serial.as_deref());
    let mut trial = p.target.clone();
    trial.security = security.clone();
    let sys_object_id = oid("1.3.6.1.2.1.1.2.0");
    match fleet_snmp::walk::get(&ctx.snmp, &trial, &[sys_object_id]).await {
        Ok(v) if !v.is_empty() => {}
        Ok(_) => {
            return with_printers(
                Status::Failed,
                vec![Message::error(
                    "the printer answered without sysObjectID; credentials not changed",
                )],
                vec![one(addr, serial, Status::Failed, None)],
            );
        }
        Err(e) => {
            let status = if matches!(e, SnmpError::Timeout { .. } | SnmpError::Unreachable { .. }) {
                Status::PrinterNotCommunicating
            } else {
                Status::Failed
            };
            return with_printers(
                status,
                vec![Message::error(format!(
                    "the printer did not accept the new credentials ({e}); the old ones stay"
                ))],
                vec![one(addr, serial, status, Some(e.to_string()))],
            );
        }
    }
    // Bound to this device: its serial, and for SNMPv3 the engine that just accepted them.
    let engine_id = matches!(security, Security::Usm(_))
        .then(|| ctx.snmp.engine_id(addr))
        .flatten()
        .map(hex::encode);
    let security = pinned(security, engine_id.as_deref());
    let doc = StoredAuth {
        auth: auth.0.clone(),
        serial: p.serial.clone(),
        engine_id,
    };
    let s = ctx.store.clone();
    let secret = Secret::new(serde_json::to_string(&doc).unwrap_or_default());
    let stored = tokio::task::spawn_blocking(move || s.set_secret(&key, &snmp_key(addr), &secret))
        .await
        .ok()
        .and_then(Result::ok);
    if stored.is_none() {
        return failed("the store is unavailable");
    }
    ctx.poller.set_security(addr, security);
    with_printers(
        Status::Completed,
        vec![Message::info(
            "new credentials checked against the printer, stored sealed and in use",
        )],
        vec![one(addr, serial, Status::Completed, None)],
    )
}

/// `params.web`: the printer's web-server credentials, stored sealed for HTTP uploads
/// (they cannot be tried without a request that changes something, so they are checked
/// at the first upload), and/or the certificate fingerprint to trust from now on.
async fn store_web(ctx: &Context, job: &Job, web: &WebCredentials) -> JobResult {
    let pin = match web
        .certificate_sha256
        .as_deref()
        .map(super::super::printer_web::normalize_pin)
    {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return failed(format!("params.web.certificateSha256: {e}")),
    };
    let login = match (web.user.as_deref().filter(|u| !u.is_empty()), &web.password) {
        (Some(user), Some(password)) => Some(WebLogin {
            user: user.to_string(),
            password: password.clone(),
            serial: None,
        }),
        (None, None) if pin.is_some() => None,
        _ => return failed("params.web: needs user and password (and/or certificateSha256)"),
    };
    let p = match resolve(ctx, job, Access::Write).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(key) = ctx.settings.as_ref().map(|l| l.key.clone()) else {
        return failed("no key to seal credentials with");
    };
    let what = match (&login, &pin) {
        (Some(_), Some(_)) => "web-server credentials and certificate fingerprint",
        (Some(_), None) => "web-server credentials",
        _ => "web-server certificate fingerprint",
    };
    // Bound to this printer (its serial as it gives it now, the way it is checked before
    // each use): sent to no other device that takes the address.
    let bound = match live_serial(ctx, p.addr).await {
        Some(live) => Some(live),
        None => p.serial.clone(),
    };
    let secret = login.map(|mut l| {
        l.serial = bound;
        Secret::new(serde_json::to_string(&l).unwrap_or_default())
    });
    let (s, addr) = (ctx.store.clone(), p.addr);
    let ok = tokio::task::spawn_blocking(move || {
        if let Some(secret) = &secret {
            s.set_secret(&key, &web_key(addr), secret)?;
            // New credentials: not "needs credentials" until the printer refuses them.
            s.set_web_refused(&addr.to_string(), None)?;
        }
        if let Some(pin) = &pin {
            s.set_setting(&super::super::printer_web::pin_key(addr.ip()), pin)?;
        }
        Ok::<_, crate::store::StoreError>(())
    })
    .await
    .ok()
    .and_then(Result::ok)
    .is_some();
    if ok {
        JobResult {
            printers: vec![one(addr, p.serial.as_deref(), Status::Completed, None)],
            ..done(
                Status::Completed,
                vec![Message::info(format!("{what} for {addr} stored"))],
            )
        }
    } else {
        failed("the store refused the credentials")
    }
}
