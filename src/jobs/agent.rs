//! Jobs on the agent itself: refresh, discover now, pull settings, disable and enable,
//! the log bundle, and the printer support library.

use super::results::{done, failed, one, with_printers};
use super::{After, Context, Outcome, blocking};
use crate::store::AgentState;
use fleet_protocol::jobs::{
    FileRef, JobResult, LibraryParams, Message, PrinterRef, Progress, Status,
};
use tokio::sync::oneshot;

/// The address of the printer a job names (by serial number, address or IP).
pub(super) async fn find_printer(ctx: &Context, p: &PrinterRef) -> Option<std::net::SocketAddr> {
    let lookup = || async {
        let s = ctx.store.clone();
        let rows = tokio::task::spawn_blocking(move || s.printers())
            .await
            .ok()?
            .ok()?;
        rows.iter()
            .find(|r| {
                p.serial_number.is_some() && r.serial == p.serial_number
                    || p.address.as_deref().is_some_and(|a| {
                        r.address == a || r.address.rsplit_once(':').is_some_and(|(ip, _)| ip == a)
                    })
            })
            .and_then(|r| r.address.parse().ok())
    };
    if let Some(found) = lookup().await {
        return Some(found);
    }
    // The cloud may know a printer from an upload the poller has not yet written to the
    // store (its writes are batched): write them, then look again.
    ctx.poller.flush().await;
    lookup().await
}

/// `refresh` / `refreshPrinter`: polls now; each reading goes out as a snapshot.
pub(super) async fn refresh(ctx: &Context, addr: Option<std::net::SocketAddr>) -> JobResult {
    let Ok(polled) = ctx.poller.refresh(addr).await else {
        return failed("the poller stopped");
    };
    let printers = polled
        .iter()
        .map(|r| {
            let status = if r.failure.is_none() {
                Status::Completed
            } else {
                Status::PrinterNotCommunicating
            };
            one(r.addr, r.serial.as_deref(), status, r.failure.clone())
        })
        .collect();
    let not_communicating = polled.iter().filter(|r| r.failure.is_some()).count();
    if addr.is_some() {
        let status = if not_communicating == 0 {
            Status::Completed
        } else {
            Status::PrinterNotCommunicating
        };
        return with_printers(status, vec![], printers);
    }
    let mut messages = vec![Message::info(format!(
        "{} of {} printers refreshed",
        polled.len() - not_communicating,
        polled.len()
    ))];
    if not_communicating > 0 {
        messages.push(Message::warning(format!(
            "{not_communicating} printers not communicating"
        )));
    }
    if polled.is_empty() {
        messages = vec![Message::warning("no printers are managed yet")];
    }
    with_printers(Status::Completed, messages, printers)
}

/// Discovery progress goes to the cloud at most this often while a `discover` job waits.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `discover`: one discovery run now, its progress reported while it runs.
pub(super) async fn discover(ctx: &Context, job_id: &str) -> JobResult {
    let Some(tx) = &ctx.discover else {
        return failed(
            "discovery has nothing to search: set discovery.include, discovery.import or discovery.local_network",
        );
    };
    let (reply, rx) = oneshot::channel();
    if tx.send(reply).await.is_err() {
        return failed("discovery stopped");
    }
    let mut progress = ctx.progress.clone();
    let mut last_sent: Option<tokio::time::Instant> = None;
    tokio::pin!(rx);
    let summary = loop {
        let changed = async {
            match progress.as_mut() {
                Some(p) => p.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut rx => break r,
            alive = changed => {
                let Some(p) = progress.as_mut().filter(|_| alive) else {
                    progress = None;
                    continue;
                };
                let p = p.borrow_and_update().clone();
                if p.total > 0
                    && !p.finished
                    && last_sent.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY)
                {
                    last_sent = Some(tokio::time::Instant::now());
                    let body = Progress {
                        done: Some(p.done as u64),
                        total: Some(p.total as u64),
                        text: format!("{} of {} addresses, {} printers found", p.done, p.total, p.found),
                    };
                    // Progress is best effort: a lost report is not retried.
                    ctx.cloud.client.job_progress(&ctx.cloud.creds, job_id, &body).await.ok();
                }
            }
        }
    };
    match summary {
        Ok(s) => done(
            Status::Completed,
            vec![Message::info(format!(
                "{} addresses searched, {} devices found, {} new printers enrolled",
                s.addresses, s.found, s.added
            ))],
        ),
        Err(_) => failed("discovery stopped before the run finished"),
    }
}

/// `editSettings`: pulls the settings now; new ones restart the components once the
/// result is delivered.
pub(super) async fn edit_settings(ctx: &Context) -> Outcome {
    use crate::cloud::settings::{Outcome as Pulled, pull};
    let Some(link) = &ctx.settings else {
        return failed("no cloud settings link").into();
    };
    match pull(&ctx.cloud, &ctx.store, &link.key, &link.source).await {
        Ok(Pulled::Applied(_)) => Outcome::Done(
            done(
                Status::Completed,
                vec![Message::info("new settings applied")],
            ),
            After::Restart,
        ),
        Ok(Pulled::Unchanged) => done(
            Status::Completed,
            vec![Message::info(
                "the settings in force are already the latest",
            )],
        )
        .into(),
        Ok(Pulled::Rejected(r)) => failed(r).into(),
        Err(e) => failed(format!("settings not fetched: {e}")).into(),
    }
}

/// `requestLogs`: the agent's recent log lines (secrets never reach the log: they are a
/// type that prints `<redacted>`), its printers' health, recent jobs and outbox figures,
/// gzip-compressed and uploaded as a file of the job.
pub(super) async fn logs(ctx: &Context, job_id: &str) -> JobResult {
    use std::fmt::Write;
    let mut text = format!(
        "Fleet Agent {} log bundle, {} (epoch ms)\n\n== recent log lines ==\n",
        env!("CARGO_PKG_VERSION"),
        ctx.clock.now_ms()
    );
    for l in ctx.logs.recent() {
        text.push_str(&l);
        text.push('\n');
    }
    let s = ctx.store.clone();
    let snapshot =
        blocking(move || Ok((s.printers()?, s.recent_jobs(50)?, s.outbox_stats()?))).await;
    if let Some((printers, jobs, outbox)) = snapshot {
        text.push_str("\n== printers ==\n");
        for p in printers {
            writeln!(
                text,
                "{} serial={} model={} health={} reason={} last_seen_ms={}",
                p.address,
                p.serial.as_deref().unwrap_or("-"),
                p.model.as_deref().unwrap_or("-"),
                p.health.as_str(),
                p.health_reason.as_deref().unwrap_or("-"),
                p.last_seen_ms.map_or("-".into(), |t| t.to_string())
            )
            .ok();
        }
        text.push_str("\n== recent jobs ==\n");
        for j in jobs {
            writeln!(
                text,
                "{} {} {:?} received_ms={}",
                j.job_id, j.kind, j.state, j.received_ms
            )
            .ok();
        }
        writeln!(text, "\n== outbox ==\n{outbox:?}").ok();
    }
    let body = super::printer::logs::gzip(&text);
    let size = body.len() as u64;
    let name = "fleet-agent-logs.txt.gz";
    match ctx
        .cloud
        .client
        .job_file(&ctx.cloud.creds, job_id, name, body)
        .await
    {
        Ok(()) => JobResult {
            files: vec![FileRef {
                name: name.into(),
                bytes: size,
            }],
            ..done(
                Status::Completed,
                vec![Message::info(format!(
                    "log bundle uploaded ({} KiB)",
                    size.div_ceil(1024)
                ))],
            )
        },
        Err(e) => failed(format!("the log bundle could not be uploaded: {e}")),
    }
}

/// `disable` / `enable`: recorded in the store (it survives restarts), then the
/// supervisor restarts the components without or with the printer work.
pub(super) async fn set_disabled(ctx: &Context, disabled: bool) -> Outcome {
    let s = ctx.store.clone();
    let stored = blocking(move || {
        s.set_agent_state(if disabled {
            AgentState::Disabled
        } else {
            AgentState::Active
        })
    })
    .await;
    if stored.is_none() {
        return failed("the store is unavailable").into();
    }
    let text = if disabled {
        "agent disabled: printers are no longer polled or discovered; configuration and data kept"
    } else {
        "agent enabled: polling and discovery resume"
    };
    // The components restart once the result is delivered (see `runner`).
    Outcome::Done(
        done(Status::Completed, vec![Message::info(text)]),
        After::Restart,
    )
}

/// Installs the stored support library at start (verified again: a package altered in
/// the store is refused like one from the network).
pub fn load_library(
    store: &crate::store::Store,
    handle: &crate::printer::library::Handle,
    trusted: &[String],
) {
    use crate::printer::library;
    let Ok(Some(text)) = store.library_package() else {
        return;
    };
    match serde_json::from_str::<library::Package>(&text)
        .map_err(|e| library::LibraryError::Format(e.to_string()))
        .and_then(|p| handle.install(&p, trusted))
    {
        Ok(lib) => tracing::info!(version = lib.version, "Printer support library loaded."),
        Err(library::LibraryError::NotNewer { .. }) => {}
        Err(e) => {
            tracing::error!(error = %e, "The stored printer support library is refused; using the built-in one.")
        }
    }
}

/// `updateLibrary`: installs a newer signed library now and stores it for later starts.
pub(super) async fn update_library(ctx: &Context, params: &LibraryParams) -> JobResult {
    let before = ctx.library.current().version;
    match ctx.library.install(&params.package, &ctx.library_keys) {
        Ok(lib) => {
            let s = ctx.store.clone();
            let text = serde_json::to_string(&params.package).unwrap_or_default();
            let saved = blocking(move || s.set_library_package(&text)).await;
            let mut messages = vec![Message::info(format!(
                "printer support library {} installed (was {before}): {} vendors, {} brands",
                lib.version,
                lib.vendors.len(),
                lib.brands.len()
            ))];
            if saved.is_none() {
                messages.push(Message::warning(
                    "in use now, but it could not be stored: the previous one returns at the next start",
                ));
            }
            tracing::info!(version = lib.version, "Printer support library installed.");
            done(Status::Completed, messages)
        }
        Err(e) => {
            tracing::warn!(error = %e, "Printer support library refused.");
            failed(format!(
                "library refused, version {before} stays in use: {e}"
            ))
        }
    }
}
