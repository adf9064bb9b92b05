//! The `sender` component: drains the outbox to the cloud in order, acknowledging accepted
//! messages, dropping rejected ones with a counted reason, renewing the token after a
//! 401 and backing off (capped, jittered) on 429, 5xx and network errors. A "resync"
//! answer clears the printer's sent state so its next reading goes out as a snapshot; an
//! "ownedByAnotherAgent" answer stops polling the printer here.

use super::Connection;
use super::client::CloudError;
use crate::retry::{Backoff, Retry};
use crate::store::Store;
use fleet_protocol::upload::{Report, ReportStatus};
use tokio::time::Duration;

/// How delivery is retried while the cloud is unavailable: 1 s doubling to 5 minutes,
/// ±10 %.
pub const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(300),
    jitter: 0.1,
};

/// Messages read from the outbox per round.
const BATCH: usize = 20;

/// How long an idle sender waits before looking at the outbox again without being told
/// of a new message.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// What the sender needs to honour the takeover setting.
#[derive(Clone, Default)]
pub struct Ownership {
    /// `discovery.takeover`: ask the cloud to move printers another agent manages.
    pub takeover: bool,
    /// The poller, to stop polling a printer another agent keeps.
    pub poller: Option<crate::poller::scheduler::PollerHandle>,
}

/// A printer another agent manages: not polled here any more (a later discovery run or a
/// restart tries again; with `discovery.takeover` the cloud moves it here).
async fn owned_elsewhere(store: &Store, ownership: &Ownership, printer_key: &str) {
    let s = store.clone();
    let key = printer_key.to_string();
    let serial = key.strip_prefix("sn:").map(str::to_string);
    let addr = tokio::task::spawn_blocking(move || {
        s.forget_sent(&key).ok();
        s.printers()
            .ok()?
            .into_iter()
            .find(|p| p.serial.is_some() && p.serial == serial)
            .map(|p| p.address)
    })
    .await
    .ok()
    .flatten();
    tracing::warn!(
        printer = printer_key,
        address = addr.as_deref().unwrap_or(""),
        "Printer managed by another agent: not polled here (discovery.takeover moves it here)."
    );
    if let (Some(p), Some(a)) = (&ownership.poller, addr.and_then(|a| a.parse().ok())) {
        p.remove(a).await;
    }
}

/// Runs until `shutdown` completes.
pub async fn run(
    conn: Connection,
    store: Store,
    ownership: Ownership,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let Connection {
        client,
        creds,
        link,
        clock,
    } = conn;
    let mut retry = Retry::new(BACKOFF);
    loop {
        let s = store.clone();
        let now = clock.now_ms();
        let due = tokio::task::spawn_blocking(move || s.due_messages(BATCH, now))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        // A full batch means more are waiting: go on at once. Otherwise wait for the next
        // message queued, or at the latest IDLE_RECHECK (a message due later, or one
        // queued by another process on the same store).
        let mut wait = if due.len() == BATCH {
            Some(Duration::ZERO)
        } else {
            None
        };
        for m in due {
            let s = store.clone();
            let report = match serde_json::from_str::<Report>(&m.body) {
                Ok(r) => r,
                Err(e) => {
                    // Written by this agent, so only a damaged store gets here.
                    tracing::error!(message = %m.message_id, error = %e, "Outbox message unreadable; dropped.");
                    tokio::task::spawn_blocking(move || s.reject(&[m.id]).ok())
                        .await
                        .ok();
                    continue;
                }
            };
            match client
                .upload(
                    &creds,
                    &m.message_id,
                    vec![report],
                    ownership.takeover,
                    clock.now_ms(),
                )
                .await
            {
                Ok(statuses) => {
                    retry.succeeded();
                    link.upload();
                    let last = serde_json::json!({
                        "messageId": m.message_id,
                        "kind": m.kind,
                        "printerKey": m.printer_key,
                        "sentAtMs": clock.now_ms(),
                        "body": serde_json::from_str::<serde_json::Value>(&m.body).unwrap_or_default(),
                    })
                    .to_string();
                    let resync = statuses.contains(&ReportStatus::Resync);
                    if statuses.contains(&ReportStatus::OwnedByAnotherAgent)
                        && let Some(k) = &m.printer_key
                    {
                        owned_elsewhere(&store, &ownership, k).await;
                    }
                    let key = m.printer_key.clone();
                    tokio::task::spawn_blocking(move || {
                        s.ack(&[m.id]).ok();
                        s.set_last_sent(&last).ok();
                        if resync && let Some(k) = key {
                            s.forget_sent(&k).ok();
                        }
                    })
                    .await
                    .ok();
                    if resync {
                        tracing::info!(
                            printer = m.printer_key.as_deref().unwrap_or(""),
                            "Cloud asked for a resync; the next reading goes out as a snapshot."
                        );
                    }
                }
                Err(CloudError::Unauthorized(r)) => {
                    link.error(&format!("the cloud refused the agent's token: {r}"));
                    tracing::warn!(reason = %r, "Cloud refused the token; renewing it.");
                    client.invalidate_token();
                    wait = Some(retry.failed());
                    break;
                }
                Err(CloudError::Rejected { status, reason }) => {
                    tracing::warn!(status, reason = %reason, message = %m.message_id, "Cloud rejected a message; dropped.");
                    tokio::task::spawn_blocking(move || s.reject(&[m.id]).ok())
                        .await
                        .ok();
                }
                Err(e) => {
                    link.error(&e.to_string());
                    tracing::debug!(error = %e, "Cloud unavailable; backing off.");
                    wait = Some(retry.failed());
                    break;
                }
            }
        }
        match wait {
            Some(d) if d.is_zero() => {}
            Some(d) => tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(d) => {}
            },
            None => tokio::select! {
                _ = &mut shutdown => return,
                _ = store.message_queued() => {}
                _ = tokio::time::sleep(IDLE_RECHECK) => {}
            },
        }
    }
}
