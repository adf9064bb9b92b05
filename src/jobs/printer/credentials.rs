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

/// A printer's web-server login as stored.
#[derive(serde::Serialize, serde::Deserialize)]
struct WebLogin {
    user: String,
    #[serde(with = "fleet_secret::exposed")]
    password: Secret,
}

/// The SNMP credentials stored for a printer by an `updateCredentials` job, if any.
pub fn stored_security(store: &Store, key: &SealKey, addr: SocketAddr) -> Option<Security> {
    let doc = store.secret(key, &snmp_key(addr)).ok()??;
    let auth: serde_json::Value = serde_json::from_str(doc.expose()).ok()?;
    crate::config::auth_security(&auth, "auth").ok()
}

/// The web-server login stored for a printer.
pub(super) async fn web(
    ctx: &Context,
    addr: SocketAddr,
) -> Option<super::super::printer_web::Login> {
    let key = ctx.settings.as_ref().map(|l| l.key.clone())?;
    let s = ctx.store.clone();
    tokio::task::spawn_blocking(move || s.secret(&key, &web_key(addr)).ok().flatten())
        .await
        .ok()
        .flatten()
        .and_then(|w| serde_json::from_str::<WebLogin>(w.expose()).ok())
        .map(|w| super::super::printer_web::Login {
            user: w.user,
            password: w.password,
        })
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
    let s = ctx.store.clone();
    let secret = Secret::new(auth.0.to_string());
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
    let secret = login.map(|l| Secret::new(serde_json::to_string(&l).unwrap_or_default()));
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
