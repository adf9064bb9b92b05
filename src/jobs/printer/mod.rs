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
pub use credentials::{state_moves, stored_security};

use super::Context;
use super::results::{failed, one, with_printers};
use fleet_protocol::jobs::{Job, JobResult, Status};
use fleet_snmp::message::error_status;
use fleet_snmp::{Oid, SnmpError, Target, VarBind};
use std::net::SocketAddr;

fn oid(s: &str) -> Oid {
    s.parse().expect("static OID")
}

/// Holds a printer for one command at a time ([`crate::poller::PrinterLocks`]: the
/// poller's polls of it wait too).
async fn lock_printer(ctx: &Context, addr: SocketAddr) -> crate::poller::Held {
    ctx.printer_locks.hold(addr).await
}

/// The printer a job names, its SNMP target and the printer's command lock.
struct Resolved {
    addr: SocketAddr,
    target: Target,
    serial: Option<String>,
    /// The vendor's enterprise number, from the latest reading's sysObjectID.
    enterprise: Option<u32>,
    _held: crate::poller::Held,
}

/// What a job does to the printer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Access {
    /// Reads only (the MIB walk): any device the agent polls.
    Read,
    /// Changes or sends something (commands, credentials, deployments, vendor logs over
    /// the printer's web server): only a device identified as a printer.
    Write,
}

/// What the latest reading at an address says about the device there.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct Seen {
    serial_number: Option<String>,
    #[serde(default)]
    supplies: Vec<serde::de::IgnoredAny>,
    #[serde(default)]
    counters: SeenCounters,
    #[serde(default)]
    device: SeenDevice,
}

#[derive(serde::Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct SeenCounters {
    lifetime_count: Option<u64>,
}

#[derive(serde::Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct SeenDevice {
    hr_device_index: Option<u32>,
    printer_name: Option<String>,
    #[serde(rename = "sysObjectID")]
    sys_object_id: Option<String>,
}

impl Seen {
    /// The enterprise number under 1.3.6.1.4.1 in sysObjectID.
    fn enterprise(&self) -> Option<u32> {
        crate::printer::library::enterprise(self.device.sys_object_id.as_deref()?)
    }

    /// A printer: a printer row in HOST-RESOURCES-MIB, or Printer-MIB objects (supplies,
    /// a lifetime count, a printer name).
    fn is_printer(&self) -> bool {
        self.device.hr_device_index.is_some()
            || self.device.printer_name.is_some()
            || self.counters.lifetime_count.is_some()
            || !self.supplies.is_empty()
    }
}

/// Whether the agent may carry out `access` on the device at `addr`, given its latest
/// reading (`None`: never read). Printers listed by the cloud or the file are polled
/// before they are identified, never written to (the finding: a deployment reached port
/// 9100 of a host that had never answered SNMP).
fn may_access(
    access: Access,
    addr: SocketAddr,
    named: &fleet_protocol::jobs::PrinterRef,
    seen: Option<&Seen>,
) -> Result<(), (Status, String)> {
    if let (Some(want), Some(got)) = (
        named.serial_number.as_deref(),
        seen.and_then(|s| s.serial_number.as_deref()),
    ) && want != got
    {
        return Err((
            Status::Failed,
            format!(
                "the device at {addr} reports serial {got:?}, not the job's {want:?}; nothing was sent"
            ),
        ));
    }
    if access == Access::Read {
        return Ok(());
    }
    match seen {
        None => Err((
            Status::PrinterNotCommunicating,
            format!(
                "{addr} has not been read yet; the agent writes only to printers it has identified (a reading with the Printer-MIB)"
            ),
        )),
        Some(s) if !s.is_printer() => Err((
            Status::Failed,
            format!(
                "{addr} answers SNMP but is not identified as a printer (no Printer-MIB objects, no printer in HOST-RESOURCES-MIB); nothing was sent"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Finds the job's printer and holds it, or the result that ends the job.
async fn resolve(ctx: &Context, job: &Job, access: Access) -> Result<Resolved, JobResult> {
    let Some(p) = &job.printer else {
        return Err(failed("printer: missing (serialNumber or address)"));
    };
    let Some(addr) = super::agent::find_printer(ctx, p).await else {
        return Err(failed(format!("printer {p} is not managed by this agent")));
    };
    let held = lock_printer(ctx, addr).await;
    let Some(target) = ctx.poller.target(addr).await else {
        return Err(failed(format!("{addr} is no longer polled by this agent")));
    };
    let (serial, seen) = seen_at(ctx, addr).await;
    if let Err((status, text)) = may_access(access, addr, p, seen.as_ref()) {
        tracing::warn!(printer = %addr, kind = job.command.type_name(), "Job refused: {text}");
        return Err(with_printers(
            status,
            vec![],
            vec![one(addr, serial.as_deref(), status, Some(text))],
        ));
    }
    Ok(Resolved {
        addr,
        target,
        serial,
        enterprise: seen.as_ref().and_then(Seen::enterprise),
        _held: held,
    })
}

/// The stored serial of the printer at `addr` and its latest reading.
async fn seen_at(ctx: &Context, addr: SocketAddr) -> (Option<String>, Option<Seen>) {
    let s = ctx.store.clone();
    let a = addr.to_string();
    let found = tokio::task::spawn_blocking(move || {
        let row = s.printers().ok()?.into_iter().find(|r| r.address == a)?;
        let report = s.latest_report(row.id).ok().flatten();
        Some((row.serial, report))
    })
    .await
    .ok()
    .flatten();
    let Some((serial, report)) = found else {
        return (None, None);
    };
    let seen = report.and_then(|r| serde_json::from_str::<Seen>(&r).ok());
    (serial, seen)
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

/// A transport the support library names for an action on a printer.
struct Way {
    transport: String,
    port: u16,
    path: String,
}

/// The support library's way to do `action` on this printer (its vendor from the latest
/// reading's sysObjectID, [`Resolved::enterprise`]). With `files_fallback`, an action the
/// vendor does not name goes the vendor's `deployFile` way.
fn library_action(ctx: &Context, p: &Resolved, action: &str, files_fallback: bool) -> Option<Way> {
    let library = ctx.library.current();
    let action = p
        .enterprise
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
/// Remembers how a printer's web server took the agent's credentials: refused (401,
/// 403) makes the printer "needs credentials" for the page and the cloud until a later
/// call is accepted or `updateCredentials` sets new ones.
async fn web_answered(ctx: &Context, addr: SocketAddr, code: u16) {
    let refused = matches!(code, 401 | 403).then(|| (code, ctx.clock.now_ms()));
    if refused.is_none() && !(200..300).contains(&code) {
        return;
    }
    let (s, a) = (ctx.store.clone(), addr.to_string());
    tokio::task::spawn_blocking(move || s.set_web_refused(&a, refused))
        .await
        .ok();
}

fn refused_credentials(code: u16) -> String {
    format!(
        "the printer's web server refused the credentials (HTTP {code}); set them with updateCredentials params.web"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_protocol::jobs::PrinterRef;

    fn seen(json: &str) -> Seen {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_identified_printers_are_written_to() {
        let addr: SocketAddr = "192.0.2.9:161".parse().unwrap();
        let by_addr = PrinterRef {
            serial_number: None,
            address: Some("192.0.2.9".into()),
        };
        // Never read: a cloud-pushed address of a host that never answered.
        let e = may_access(Access::Write, addr, &by_addr, None).unwrap_err();
        assert_eq!(e.0, Status::PrinterNotCommunicating);
        assert!(e.1.contains("identified"), "{}", e.1);
        // Answers SNMP, but a switch, not a printer.
        let switch = seen(
            r#"{"serialNumber":null,"device":{"sysDescr":"a switch"},"supplies":[],"counters":{}}"#,
        );
        let e = may_access(Access::Write, addr, &by_addr, Some(&switch)).unwrap_err();
        assert_eq!(e.0, Status::Failed);
        assert!(may_access(Access::Read, addr, &by_addr, Some(&switch)).is_ok());
        for printer in [
            r#"{"device":{"hrDeviceIndex":1}}"#,
            r#"{"device":{"printerName":"P"}}"#,
            r#"{"counters":{"lifetimeCount":5}}"#,
            r#"{"supplies":[{"supplyKey":"m:1.1"}]}"#,
        ] {
            assert!(
                may_access(Access::Write, addr, &by_addr, Some(&seen(printer))).is_ok(),
                "{printer}"
            );
        }
        // Another printer took the address: its serial is not the job's.
        let other = seen(r#"{"serialNumber":"OTHER","device":{"hrDeviceIndex":1}}"#);
        let by_serial = PrinterRef {
            serial_number: Some("CNB1234".into()),
            address: None,
        };
        for access in [Access::Read, Access::Write] {
            let e = may_access(access, addr, &by_serial, Some(&other)).unwrap_err();
            assert!(e.1.contains("OTHER") && e.1.contains("CNB1234"), "{}", e.1);
        }
    }
}
