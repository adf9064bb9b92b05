//! File deployment (`deployFile`), firmware (`firmwareUpdate`) and configurations
//! (`deployConfiguration`): every file is checked (kind, size) before anything is
//! downloaded or sent, then goes through the transport the support library names for the
//! printer's vendor (raw TCP 9100, or an HTTP(S) upload with the printer's stored web
//! credentials). A vendor it names no way for gets `notSupported`, nothing sent.

use super::super::results::{Failure, failed, sent, with_printers};
use super::{Access, Context, Job, Resolved, library_action, refused_credentials, resolve};
use fleet_protocol::jobs::{
    ConfigurationParams, FileItem, FileKind, FirmwareParams, JobResult, Message, Status,
};
use std::net::SocketAddr;

/// Bytes in a megabyte as the seed's limits count them (MiB).
const MB: u64 = 1 << 20;

/// Largest firmware file accepted (the reference cloud's own limit is 64 MiB).
const FIRMWARE_MAX: u64 = 256 * MB;

fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::SettingsBundle => "settingsBundle",
        FileKind::Ucf => "ucf",
        FileKind::App => "app",
        FileKind::Firmware => "firmware",
    }
}

/// The kind of a deployable file and its size limit: settings bundles (.zip) up to
/// 32 MB, UCF settings (.ucf) and apps (.fls) up to 50 MB; firmware is refused (the
/// seed: "Firmware flash files are not accepted").
pub fn deploy_kind(name: &str, kind: Option<FileKind>) -> Result<(FileKind, u64), String> {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let by_ext = match ext.as_str() {
        "zip" => Some(FileKind::SettingsBundle),
        "ucf" => Some(FileKind::Ucf),
        "fls" => Some(FileKind::App),
        _ => None,
    };
    if kind == Some(FileKind::Firmware) {
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
    if by_ext != Some(kind) {
        return Err(format!(
            "params.file: {name:?} does not fit the kind {:?} (settingsBundle: .zip, ucf: .ucf, app: .fls)",
            kind_name(kind)
        ));
    }
    let limit = match kind {
        FileKind::SettingsBundle => 32 * MB,
        _ => 50 * MB,
    };
    Ok((kind, limit))
}

/// One file of a job, checked: its name, kind and size limit.
#[derive(Debug)]
struct Item {
    name: String,
    kind: FileKind,
    limit: u64,
}

/// Checks a job's file entry into an [`Item`]; `at` names it in errors.
fn item_of(p: &FileItem, at: &str) -> Result<Item, String> {
    let name = &p.file;
    if !fleet_protocol::jobs::valid_token(name, 120) {
        return Err(format!(
            "{at}.file: {name:?} is not a file name (letters, digits, '.', '-', '_')"
        ));
    }
    let (kind, limit) = if p.kind == Some(FileKind::Firmware) {
        (FileKind::Firmware, FIRMWARE_MAX)
    } else {
        deploy_kind(name, p.kind).map_err(|e| e.replacen("params", at, 1))?
    };
    if let Some(size) = p.size
        && size > limit
    {
        return Err(format!(
            "{at}.size: {name} is {size} bytes; a {} file may have {limit} at most",
            kind_name(kind)
        ));
    }
    Ok(Item {
        name: name.clone(),
        kind,
        limit,
    })
}

/// Sends a file as a raw TCP stream (port 9100: the printer takes it like a print job).
async fn send_raw(to: SocketAddr, bytes: &[u8]) -> Result<(), Failure> {
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

/// Downloads one attached file (stopping at its limit) and sends it to the printer
/// through the transport the support library names for `action` (raw TCP 9100 when it
/// names nothing). Ok: what was done.
async fn send_item(
    ctx: &Context,
    job_id: &str,
    p: &Resolved,
    item: &Item,
    action: &str,
) -> Result<String, Failure> {
    let addr = p.addr;
    let Some(way) = library_action(ctx, p, action, true) else {
        // send_all checked every item first: not reached.
        return Err((false, no_way(p, action)));
    };
    let (transport, port, path) = (way.transport, way.port, way.path);
    let bytes = ctx
        .cloud
        .client
        .job_input(&ctx.cloud.creds, job_id, &item.name, item.limit)
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
            let tls = transport == "https";
            let answer = match super::credentials::web(ctx, addr).await {
                Ok(web) => super::super::printer_web::send(&ctx.store, to, tls, &path, Some(&item.name), &bytes, web).await,
                Err(why) => Err((false, why)),
            };
            if let Ok(code) = answer {
                super::web_answered(ctx, addr, code).await;
            }
            match answer {
                Ok(code) if (200..300).contains(&code) => Ok(format!(
                    "{} upload to {path}",
                    if tls { "HTTPS" } else { "HTTP" }
                )),
                Ok(code @ (401 | 403)) => Err((false, refused_credentials(code))),
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
        kind_name(item.kind),
        bytes.len(),
        addr.ip()
    ))
}

/// Why files are not sent to a printer whose vendor the support library names no way for.
fn no_way(p: &Resolved, action: &str) -> String {
    let vendor = p.enterprise.map_or_else(
        || "an unknown vendor".to_owned(),
        |e| format!("enterprise {e}"),
    );
    format!(
        "the support library names no way to send files ({action}) to this printer's vendor ({vendor}); \
         other vendors' printers are only read (a file sent as a print job would print as pages of garbage): \
         nothing was downloaded or sent"
    )
}

/// The library action that sends `item`.
fn action_of(item: &Item) -> &'static str {
    if item.kind == FileKind::Firmware {
        "firmwareUpdate"
    } else {
        "deployFile"
    }
}

/// Sends checked items to the job's printer in order; the first failure stops the rest.
/// A printer whose vendor the support library names no way for gets `notSupported`
/// before anything is downloaded or sent.
async fn send_all(ctx: &Context, job: &Job, items: &[Item]) -> JobResult {
    let p = match resolve(ctx, job, Access::Write).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Some(item) = items
        .iter()
        .find(|i| library_action(ctx, &p, action_of(i), true).is_none())
    {
        let text = no_way(&p, action_of(item));
        tracing::info!(printer = %p.addr, kind = job.command.type_name(), "Job not supported: {text}");
        return super::super::results::printer_outcome(
            p.addr,
            p.serial.as_deref(),
            Status::NotSupported,
            text,
        );
    }
    let mut done = Vec::new();
    for item in items {
        let action = action_of(item);
        match send_item(ctx, &job.job_id, &p, item, action).await {
            Ok(d) => done.push(d),
            Err((u, e)) => {
                let left = items.len() - done.len() - 1;
                let e = if left > 0 {
                    format!("{e}; {left} later item(s) not sent")
                } else {
                    e
                };
                return sent(p.addr, p.serial.as_deref(), done, Some((u, e)));
            }
        }
    }
    sent(p.addr, p.serial.as_deref(), done, None)
}

/// `deployFile`: a settings bundle, UCF file or app attached to the job. Firmware is
/// refused here.
pub async fn deploy_file(ctx: &Context, job: &Job, params: &FileItem) -> JobResult {
    if params.kind == Some(FileKind::Firmware) {
        return failed(
            "params.kind: firmware flash files are not accepted by file deployment; use firmwareUpdate",
        );
    }
    match item_of(params, "params") {
        Ok(item) => send_all(ctx, job, &[item]).await,
        Err(e) => failed(e),
    }
}

/// Longest wait for a firmware window to open: an in-progress job expires after 24 h.
pub const WINDOW_MAX: std::time::Duration = std::time::Duration::from_secs(23 * 3600);

/// `firmwareUpdate`: the flash file is sent when the window opens (`startAt`, epoch ms;
/// now when absent). The cloud expires a pending job when its window closes
/// (`notAfter`); one that started continues.
pub async fn firmware_update(ctx: &Context, job: &Job, params: &FirmwareParams) -> JobResult {
    let entry = FileItem {
        file: params.file.clone(),
        kind: Some(FileKind::Firmware),
        size: params.size,
    };
    let item = match item_of(&entry, "params") {
        Ok(i) => i,
        Err(e) => return failed(e),
    };
    let now = ctx.clock.now_ms();
    let wait = params
        .start_at
        .map(|t| std::time::Duration::from_millis(t.saturating_sub(now).max(0) as u64))
        .unwrap_or_default();
    if wait > WINDOW_MAX {
        return failed(
            "params.startAt: more than 23 h ahead; queue the job closer to its window (a job in progress expires after 24 h)",
        );
    }
    tokio::time::sleep(wait).await;
    send_all(ctx, job, &[item]).await
}

/// `deployConfiguration`: `params.items` sent in the seed's order (firmware first, then
/// apps in the listed order, then settings files in the listed order); every item is
/// checked before the first is sent, and the first failure stops the rest.
pub async fn deploy_configuration(
    ctx: &Context,
    job: &Job,
    params: &ConfigurationParams,
) -> JobResult {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (i, p) in params.items.iter().enumerate() {
        match item_of(p, &format!("params.items[{i}]")) {
            Ok(it) => items.push(it),
            Err(e) => problems.push(Message::error(e)),
        }
    }
    if items.is_empty() && problems.is_empty() {
        problems.push(Message::error("params.items: empty"));
    }
    if !problems.is_empty() {
        return with_printers(Status::Failed, problems, vec![]);
    }
    let rank = |k: FileKind| match k {
        FileKind::Firmware => 0,
        FileKind::App => 1,
        _ => 2,
    };
    // A stable sort keeps the listed order within each group.
    items.sort_by_key(|i| rank(i.kind));
    send_all(ctx, job, &items).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kinds_and_limits_follow_the_seed() {
        assert_eq!(
            deploy_kind("site.zip", None),
            Ok((FileKind::SettingsBundle, 32 << 20))
        );
        assert_eq!(
            deploy_kind("SETTINGS.UCF", None),
            Ok((FileKind::Ucf, 50 << 20))
        );
        assert_eq!(
            deploy_kind("scan.fls", Some(FileKind::App)),
            Ok((FileKind::App, 50 << 20))
        );
        assert!(
            deploy_kind("fw.fls", Some(FileKind::Firmware))
                .unwrap_err()
                .contains("firmware")
        );
        assert!(
            deploy_kind("notes.txt", None)
                .unwrap_err()
                .starts_with("params.file")
        );
        assert!(
            deploy_kind("site.zip", Some(FileKind::App))
                .unwrap_err()
                .contains("does not fit")
        );
        let bad = FileItem {
            file: "../x.zip".into(),
            kind: None,
            size: None,
        };
        assert!(
            item_of(&bad, "params")
                .unwrap_err()
                .starts_with("params.file")
        );
        let big = FileItem {
            file: "x.zip".into(),
            kind: None,
            size: Some(33 << 20),
        };
        assert!(
            item_of(&big, "params")
                .unwrap_err()
                .starts_with("params.size")
        );
    }
}
