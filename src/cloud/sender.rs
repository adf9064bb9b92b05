//! The `sender` component: drains the outbox to the cloud in order, acknowledging accepted
//! messages, dropping rejected ones with a counted reason, renewing the token after a
//! 401 and backing off (capped, jittered) on 429, 5xx and network errors. A "resync"
//! answer clears the printer's sent state so its next reading goes out as a snapshot; an
//! "ownedByAnotherAgent" answer stops polling the printer here.

use super::Connection;
use super::client::CloudError;
use crate::retry::{Backoff, Retry};
use crate::store::Store;
use crate::store::outbox::Batch;
use fleet_protocol::upload::ReportStatus;
use tokio::time::Duration;

/// How delivery is retried while the cloud is unavailable: 1 s doubling to 5 minutes,
/// ±10 %.
pub const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(300),
    jitter: 0.1,
};

/// Messages sent in one request, at most: a drained backlog goes at thousands of
/// messages per second, and one answer acknowledges them all.
pub const BATCH_MESSAGES: usize = 100;

/// JSON bytes of the messages in one request, at most (before compression; a lone
/// larger message goes alone). Well under the cloud's 2 MiB request limit.
pub const BATCH_BYTES: u64 = 512 << 10;

/// How long an idle sender lets newly queued messages gather before sending them.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long an idle sender waits before looking at the outbox again without being told
/// of a new message.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// What the sender needs besides the link: the takeover setting and where it reports.
#[derive(Clone, Default)]
pub struct Ownership {
    /// `discovery.takeover`: ask the cloud to move printers another agent manages.
    pub takeover: bool,
    /// The poller, to stop polling a printer another agent keeps.
    pub poller: Option<crate::poller::scheduler::PollerHandle>,
    /// Upload figures for `/metrics`.
    pub metrics: Option<std::sync::Arc<crate::telemetry::Metrics>>,
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

/// Runs a store update on the blocking pool. A failure leaves the messages queued: they
/// are sent again and the cloud counts them once.
async fn on_store(store: &Store, f: impl FnOnce(&Store) + Send + 'static) {
    let s = store.clone();
    tokio::task::spawn_blocking(move || f(&s)).await.ok();
}

/// Sends one batch and records the answer. Returns how long to wait before the next
/// (zero: go on at once; `None`: until a message is queued).
#[allow(clippy::too_many_arguments)]
async fn send_batch(
    client: &super::client::CloudClient,
    creds: &super::client::Credentials,
    link: &super::link::Link,
    clock: &crate::clock::Clock,
    store: &Store,
    ownership: &Ownership,
    retry: &mut Retry,
    batch: Batch,
) -> Option<Duration> {
    let Batch {
        id: key,
        messages,
        resend,
        more,
    } = batch;
    let mut reports = Vec::with_capacity(messages.len());
    let mut sendable = Vec::with_capacity(messages.len());
    let mut unreadable = Vec::new();
    for mut m in messages {
        // Sent as stored (the uploader wrote a `Report`): checked as JSON, not rebuilt.
        match serde_json::value::RawValue::from_string(std::mem::take(&mut m.body)) {
            Ok(r) => {
                reports.push(r);
                sendable.push(m);
            }
            Err(e) => {
                // Written by this agent, so only a damaged store gets here.
                tracing::error!(message = %m.message_id, error = %e, "Outbox message unreadable; dropped.");
                unreadable.push(m.id);
            }
        }
    }
    if !unreadable.is_empty() {
        on_store(store, move |s| {
            s.reject(&unreadable).ok();
        })
        .await;
    }
    if sendable.is_empty() {
        return Some(Duration::ZERO);
    }
    if resend {
        tracing::debug!(batch = %key, messages = sendable.len(), "Resending a batch whose answer was not recorded.");
    }
    let last_body = reports.last().cloned();
    let sent_at = clock.now_ms();
    let before = client.wire_stats();
    let answer = client
        .upload(creds, &key, reports, ownership.takeover, sent_at)
        .await;
    if let Some(metrics) = &ownership.metrics {
        let after = client.wire_stats();
        metrics.upload_sent(
            after.requests.saturating_sub(before.requests),
            after.json_bytes.saturating_sub(before.json_bytes),
            after.body_bytes.saturating_sub(before.body_bytes),
        );
    }
    match answer {
        Ok(statuses) => {
            retry.succeeded();
            link.upload();
            if statuses.len() != sendable.len() {
                tracing::warn!(
                    batch = %key,
                    sent = sendable.len(),
                    answered = statuses.len(),
                    "The cloud answered a different number of results; the batch counts as accepted."
                );
            }
            let mut resync = Vec::new();
            let mut elsewhere = Vec::new();
            let mut refused = Vec::new();
            for (m, st) in sendable.iter().zip(statuses.iter()) {
                match st {
                    ReportStatus::Resync => resync.extend(m.printer_key.clone()),
                    ReportStatus::OwnedByAnotherAgent => elsewhere.extend(m.printer_key.clone()),
                    ReportStatus::Rejected => refused.push(m.id),
                    ReportStatus::Applied | ReportStatus::Duplicate => {}
                }
            }
            for k in &elsewhere {
                owned_elsewhere(store, ownership, k).await;
            }
            if let Some(metrics) = &ownership.metrics {
                metrics.uploads_acked.inc_by(sendable.len() as u64);
            }
            let last = sendable.last().map(|m| {
                serde_json::json!({
                    "messageId": m.message_id,
                    "kind": m.kind,
                    "printerKey": m.printer_key,
                    "sentAtMs": sent_at,
                    "body": last_body,
                })
                .to_string()
            });
            let ids: Vec<i64> = sendable
                .iter()
                .map(|m| m.id)
                .filter(|id| !refused.contains(id))
                .collect();
            let resync_keys = resync.clone();
            let gauges = ownership.metrics.clone();
            on_store(store, move |s| {
                s.ack(&ids).ok();
                if !refused.is_empty() {
                    s.reject(&refused).ok();
                }
                // The uploader sets these after readings; with no poll going on (a
                // backlog draining) only the sender sees the outbox shrink.
                if let (Some(m), Ok(st)) = (&gauges, s.outbox_stats()) {
                    m.outbox_messages.set(st.messages as i64);
                    m.outbox_bytes.set(st.bytes as i64);
                }
                if let Some(l) = last {
                    s.set_last_sent(&l).ok();
                }
                for k in &resync_keys {
                    s.cloud_copy_lost(k).ok();
                }
            })
            .await;
            for k in &resync {
                tracing::info!(
                    printer = k.as_str(),
                    "Cloud asked for a resync; the next reading goes out as a snapshot."
                );
            }
            more.then_some(Duration::ZERO)
        }
        Err(CloudError::Unauthorized(r)) => {
            link.error(&format!("the cloud refused the agent's token: {r}"));
            tracing::warn!(reason = %r, "Cloud refused the token; renewing it.");
            client.invalidate_token();
            Some(retry.failed())
        }
        Err(CloudError::Rejected { status, reason }) if sendable.len() > 1 => {
            // Refused whole, so not applied: from now on each goes alone, and only the
            // bad one is dropped.
            tracing::warn!(status, reason = %reason, batch = %key, messages = sendable.len(), "Cloud rejected a batch; sending its messages one by one.");
            let ids: Vec<i64> = sendable.iter().map(|m| m.id).collect();
            on_store(store, move |s| {
                s.split_batch(&ids).ok();
            })
            .await;
            Some(Duration::ZERO)
        }
        Err(CloudError::Rejected { status, reason }) => {
            tracing::warn!(status, reason = %reason, message = %key, "Cloud rejected a message; dropped.");
            let ids: Vec<i64> = sendable.iter().map(|m| m.id).collect();
            on_store(store, move |s| {
                s.reject(&ids).ok();
            })
            .await;
            Some(Duration::ZERO)
        }
        Err(e) => {
            link.error(&e.to_string());
            tracing::debug!(error = %e, "Cloud unavailable; backing off.");
            Some(retry.failed())
        }
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
        let batch =
            tokio::task::spawn_blocking(move || s.next_batch(BATCH_MESSAGES, BATCH_BYTES, now))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
        // Nothing due: wait for the next message queued, or at the latest IDLE_RECHECK
        // (a message due later, or one queued by another process on the same store).
        let mut wait = None;
        if let Some(batch) = batch {
            wait = send_batch(
                &client, &creds, &link, &clock, &store, &ownership, &mut retry, batch,
            )
            .await;
        }
        match wait {
            Some(d) if d.is_zero() => {}
            Some(d) => tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(d) => {}
            },
            None => tokio::select! {
                _ = &mut shutdown => return,
                _ = store.message_queued() => tokio::select! {
                    // Polls are spread over the interval, so their messages trickle in:
                    // a moment's wait lets them share one request (1,000 printers' first
                    // snapshots went in 946 requests without it).
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(LINGER) => {}
                },
                _ = tokio::time::sleep(IDLE_RECHECK) => {}
            },
        }
    }
}
