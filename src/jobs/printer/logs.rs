//! Printer logs as job files: the MIB walk (`mibWalk`, or `printerLogs` of kind
//! `mibWalk`) in snmprec form, and the vendor logs the support library names (an HTTP(S)
//! GET on the printer's web server), gzip-compressed and uploaded.

use super::super::results::{failed, one, printer_outcome, sent, with_printers};
use super::{Access, Context, Job, library_action, oid, resolve};
use fleet_protocol::jobs::{FileRef, JobResult, LogsParams, Message, Status};
use fleet_snmp::SnmpError;
use std::net::SocketAddr;

/// Compresses `text` with gzip.
pub(in crate::jobs) fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).ok();
    e.finish().unwrap_or_default()
}

/// A file name from a printer's serial (or address): letters, digits, `-`, `_`.
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
/// snmprec form (servable by `fleet-lab simulate` and snmpsim), gzip-compressed and
/// uploaded as a file of the job.
pub async fn mib_walk(ctx: &Context, job: &Job) -> JobResult {
    let p = match resolve(ctx, job, Access::Read).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (addr, serial) = (p.addr, p.serial.as_deref());
    let root = oid("1.3.6.1");
    let walked = match fleet_snmp::walk::walk_subtree(&ctx.snmp, &p.target, &root).await {
        Ok(v) => v,
        Err(e @ (SnmpError::Timeout { .. } | SnmpError::Unreachable { .. })) => {
            return printer_outcome(addr, serial, Status::PrinterNotCommunicating, e.to_string());
        }
        Err(e) => return failed(format!("printer {e}")),
    };
    let vbs = &walked.values;
    let mut text = String::new();
    for (oid, value) in vbs {
        text.push_str(&fleet_snmp::snmprec::format_line(oid, value));
        text.push('\n');
    }
    let body = gzip(&text);
    let name = format!("{}.snmprec.gz", file_stem(serial, addr));
    let size = body.len() as u64;
    if let Err(e) = ctx
        .cloud
        .client
        .job_file(&ctx.cloud.creds, &job.job_id, &name, body)
        .await
    {
        return failed(format!("the walk could not be uploaded: {e}"));
    }
    JobResult {
        files: vec![FileRef { name, bytes: size }],
        ..with_printers(
            Status::Completed,
            std::iter::once(Message::info(format!(
                "{} objects walked, {} KiB compressed",
                vbs.len(),
                size.div_ceil(1024)
            )))
            .chain(
                walked
                    .cut
                    .map(|c| Message::warning(format!("the walk was cut: {c}"))),
            )
            .collect(),
            vec![one(addr, serial, Status::Completed, None)],
        )
    }
}

/// `printerLogs` with `params.kind`: `mibWalk` is the MIB walk; any other kind is read
/// the way the support library names for the vendor (action `log:<kind>`, an HTTP GET
/// on the printer's web server with its web credentials), compressed and uploaded as a
/// file of the job. A kind the library names no way for is `notSupported`.
pub async fn printer_logs(ctx: &Context, job: &Job, params: &LogsParams) -> JobResult {
    let kind = params.kind.as_deref().unwrap_or("mibWalk");
    if kind == "mibWalk" {
        return mib_walk(ctx, job).await;
    }
    if kind.is_empty() || kind.len() > 64 || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return failed("params.kind: letters and digits (mibWalk, eventLog, ...)");
    }
    let p = match resolve(ctx, job, Access::Write).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (addr, serial) = (p.addr, p.serial.as_deref());
    let Some(way) = library_action(ctx, &p, &format!("log:{kind}"), false) else {
        let text = format!(
            "the printer support library names no way to read the {kind:?} log of this printer's vendor"
        );
        return printer_outcome(addr, serial, Status::NotSupported, text);
    };
    if way.transport != "http" && way.transport != "https" {
        let text = format!(
            "reading logs over {:?} is not implemented yet",
            way.transport
        );
        return printer_outcome(addr, serial, Status::NotSupported, text);
    }
    let path = &way.path;
    let to = SocketAddr::new(addr.ip(), way.port);
    let web = match super::credentials::web(ctx, addr).await {
        Ok(w) => w,
        Err(why) => return sent(addr, serial, vec![], Some((false, why))),
    };
    let tls = way.transport == "https";
    let body = match super::super::printer_web::get(&ctx.store, to, tls, path, web).await {
        Ok((200, body)) => body,
        Ok((code, _)) => {
            let e = format!("the printer's web server answered HTTP {code} for {path}");
            return sent(addr, serial, vec![], Some((false, e)));
        }
        Err(e) => return sent(addr, serial, vec![], Some(e)),
    };
    let name = format!("{}-{kind}.log.gz", file_stem(serial, addr));
    let gz = gzip(&String::from_utf8_lossy(&body));
    let size = gz.len() as u64;
    if let Err(e) = ctx
        .cloud
        .client
        .job_file(&ctx.cloud.creds, &job.job_id, &name, gz)
        .await
    {
        let e = format!("the log was read but not uploaded: {e}");
        return sent(addr, serial, vec![], Some((false, e)));
    }
    JobResult {
        files: vec![FileRef { name, bytes: size }],
        ..sent(
            addr,
            serial,
            vec![format!(
                "{kind} log: {} bytes read from {path}, {size} bytes compressed",
                body.len()
            )],
            None,
        )
    }
}
