//! Printer commands from the cloud (SEED-AGENT.md §2.2), carried out with the
//! credentials the poller uses for the printer. A printer that refuses a write is
//! reported `notSupported` with its error-status; one that does not answer,
//! `printerNotCommunicating`. Commands never overlap on one printer.
//!
//! # Modules
//! - [`commands`]: reboot, panel messages (and their 48-h expiry), unenroll.
//! - [`credentials`]: `updateCredentials` (SNMP and web) and the stored credentials.
//! - [`compliance`]: compliance check and enforcement of the system group.
//! - [`logs`]: the MIB walk and vendor logs, uploaded as job files.
//! - [`deploy`]: file, firmware and configuration deployment.

pub mod commands;
pub mod compliance;
pub mod credentials;
pub mod deploy;
pub mod logs;

pub use commands::PANEL_MESSAGES;
pub use credentials::stored_security;

use super::Context;
use super::results::{failed, one, with_printers};
use fleet_protocol::jobs::{Job, JobResult, Status};
use fleet_snmp::message::error_status;
use fleet_snmp::{Oid, SnmpError, Target, VarBind};
use std::net::SocketAddr;

fn oid(s: &str) -> Oid {
    s.parse().expect("static OID")
}

/// Holds a printer for one command at a time: the seed warns that a configuration
/// change can make a printer stop answering, so commands never overlap on one printer.
pub type PrinterLocks = std::sync::Arc<
    parking_lot::Mutex<
        std::collections::HashMap<SocketAddr, std::sync::Arc<tokio::sync::Mutex<()>>>,
    >,
>;

async fn lock_printer(ctx: &Context, addr: SocketAddr) -> tokio::sync::OwnedMutexGuard<()> {
    let m = ctx.printer_locks.lock().entry(addr).or_default().clone();
    m.lock_owned().await
}

/// The printer a job names, its SNMP target and the printer's command lock.
struct Resolved {
    addr: SocketAddr,
    target: Target,
    serial: Option<String>,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

/// Finds the job's printer and holds it, or the result that ends the job.
async fn resolve(ctx: &Context, job: &Job) -> Result<Resolved, JobResult> {
    let Some(p) = &job.printer else {
        return Err(failed("printer: missing (serialNumber or address)"));
    };
    let Some(addr) = super::agent::find_printer(ctx, p).await else {
        return Err(failed(format!("printer {p} is not managed by this agent")));
    };
    let held = lock_printer(ctx, addr).await;
    match ctx.poller.target(addr).await {
        Some(target) => Ok(Resolved {
            addr,
            target,
            serial: serial_of(ctx, addr).await,
            _held: held,
        }),
        None => Err(failed(format!("{addr} is no longer polled by this agent"))),
    }
}

/// SETs one object and turns the outcome into a job result.
async fn set(ctx: &Context, p: &Resolved, what: &str, vb: VarBind) -> JobResult {
    let (status, text) = match fleet_snmp::walk::set(&ctx.snmp, &p.target, vec![vb]).await {
        Ok(()) => (Status::Completed, None),
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
                Status::NotSupported,
                Some(format!(
                    "the printer refuses to set {what} ({})",
                    error_status::name(status)
                )),
            )
        }
        Err(e @ (SnmpError::Timeout { .. } | SnmpError::Unreachable { .. })) => {
            (Status::PrinterNotCommunicating, Some(e.to_string()))
        }
        Err(e) => (Status::Failed, Some(e.to_string())),
    };
    with_printers(
        status,
        vec![],
        vec![one(p.addr, p.serial.as_deref(), status, text)],
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

/// A transport the support library names for an action on a printer.
struct Way {
    transport: String,
    port: u16,
    path: String,
}

/// The support library's way to do `action` on this printer (its vendor from the latest
/// reading's sysObjectID). With `files_fallback`, an action the vendor does not name goes
/// the vendor's `deployFile` way.
async fn library_action(
    ctx: &Context,
    addr: SocketAddr,
    action: &str,
    files_fallback: bool,
) -> Option<Way> {
    let s = ctx.store.clone();
    let a = addr.to_string();
    let report = tokio::task::spawn_blocking(move || {
        let id = s.printers().ok()?.into_iter().find(|p| p.address == a)?.id;
        s.latest_report(id).ok()?
    })
    .await
    .ok()
    .flatten();
    #[derive(serde::Deserialize)]
    struct Device {
        #[serde(rename = "sysObjectID")]
        sys_object_id: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Stored {
        device: Device,
    }
    let enterprise = report
        .and_then(|r| serde_json::from_str::<Stored>(&r).ok())
        .and_then(|r| {
            r.device
                .sys_object_id?
                .strip_prefix("1.3.6.1.4.1.")?
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()
        });
    let library = ctx.library.current();
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
    action.map(|a| Way {
        port: a.port.unwrap_or(match a.transport.as_str() {
            "http" => 80,
            "https" => 443,
            _ => 9100,
        }),
        transport: a.transport,
        path: a.path.unwrap_or_else(|| "/".into()),
    })
}

/// The text of an answer that refused the printer's web credentials.
fn refused_credentials(code: u16) -> String {
    format!(
        "the printer's web server refused the credentials (HTTP {code}); set them with updateCredentials params.web"
    )
}
