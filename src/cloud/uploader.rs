//! The `uploader` component, agent side of the upload rule: after every successful poll
//! it compares the report with what the cloud holds (`sent_state`), and when the seed's
//! rule says so queues a snapshot or a merge-patch delta in the durable outbox, together
//! with the new sent state, in one transaction. Delivery to the cloud drains the outbox.

use super::report::{self, Decision, Rule, Sent, Trigger};
use crate::clock::Clock;
use crate::printer::PrinterReport;
use crate::store::outbox::{SentRow, new_message_id};
use crate::store::{Store, StoreError};
use fleet_protocol::upload::{Delta, Report, Snapshot};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;

pub use crate::poller::Reading;

/// What was queued for one reading (for logs, metrics and tests).
#[derive(Clone, Debug, PartialEq)]
pub struct Queued {
    /// Printer key.
    pub printer_key: String,
    /// `snapshot` or `delta`.
    pub kind: &'static str,
    /// Why.
    pub trigger: Trigger,
    /// Its report sequence number.
    pub seq: u64,
}

/// The key the cloud knows a printer by: its serial, else its store id.
pub fn printer_key(printer_id: i64, report: &PrinterReport) -> String {
    match &report.serial_number {
        Some(sn) => format!("sn:{sn}"),
        None => format!("printer:{printer_id}"),
    }
}

/// The store setting holding when a printer was unenrolled (epoch ms).
pub fn unenrolled_key(printer_key: &str) -> String {
    format!("unenrolled.{printer_key}")
}

/// Decides and queues for one reading; returns what was queued, if anything.
///
/// # Errors
/// On store failure (nothing is queued).
pub fn process(
    store: &Store,
    rule: Rule,
    cap_bytes: u64,
    now_ms: i64,
    r: &Reading,
) -> Result<Option<Queued>, StoreError> {
    let key = printer_key(r.printer_id, &r.report);
    // Readings taken before the printer was unenrolled never reach the cloud.
    if let Some(at) = store.setting(&unenrolled_key(&key))?
        && r.report.collected_at <= at.parse::<i64>().unwrap_or(i64::MAX)
    {
        return Ok(None);
    }
    let fingerprint = report::fingerprint(&r.report);
    // Most polls change nothing the rule looks at: decided from the memo alone.
    let memo = store.sent_memo(&key);
    if !r.on_demand
        && memo.is_some_and(|m| {
            m.fingerprint == fingerprint && now_ms - m.last_snapshot_ms < rule.heartbeat_ms
        })
    {
        return Ok(None);
    }
    let mut keyed = report::keyed(&r.report);
    let row = store.sent_state(&key)?;
    // A stored state without its view: the cloud asked for a resync, or the outbox
    // dropped deltas the cloud would need. The sequence goes on from it.
    let last_seq = row.as_ref().map(|r| r.seq);
    let prev = row.and_then(|row| {
        serde_json::from_str::<Value>(&row.keyed)
            .ok()
            .map(|keyed| Sent {
                keyed,
                seq: row.seq,
                last_snapshot_ms: row.last_snapshot_ms,
            })
    });
    // Sections this reading could not read keep what the cloud holds.
    let carried = report::carry_unread(&r.report, prev.as_ref(), &mut keyed);
    let decision = if r.on_demand {
        Decision::Snapshot(Trigger::OnDemand)
    } else if prev.is_none() && last_seq.is_some() {
        Decision::Snapshot(Trigger::Resync)
    } else {
        report::decide_keyed(prev.as_ref(), &keyed, now_ms, rule)
    };
    if let (Decision::Nothing, Some(p)) = (&decision, &prev) {
        store.remember_sent(
            &key,
            crate::store::outbox::SentMemo {
                fingerprint,
                seq: p.seq,
                last_snapshot_ms: p.last_snapshot_ms,
            },
        )?;
    }
    let seq = last_seq.map_or(1, |s| s + 1);
    let (trigger, body, last_snapshot_ms) = match decision {
        Decision::Nothing => return Ok(None),
        Decision::Snapshot(t) => {
            // The cloud keeps the keyed view of the body: with sections carried over, the
            // body is that same view (so the next delta's base is what the cloud holds).
            let value = if carried {
                fleet_protocol::keyed::unkeyed(&keyed)
            } else {
                serde_json::to_value(&r.report).unwrap_or(Value::Null)
            };
            let Value::Object(mut body) = value else {
                return Ok(None);
            };
            body.remove("serialNumber");
            body.remove("collectedAt");
            let snap = Snapshot {
                report_seq: seq,
                trigger: t,
                serial_number: r.report.serial_number.clone(),
                collected_at: r.report.collected_at,
                body,
            };
            (t, Report::Snapshot(snap), now_ms)
        }
        Decision::Delta(t, patch) => {
            let delta = Delta {
                serial_number: r.report.serial_number.clone(),
                report_seq: seq,
                base_report_seq: prev.as_ref().map_or(0, |p| p.seq),
                collected_at: r.report.collected_at,
                trigger: t,
                patch,
            };
            (
                t,
                Report::Delta(delta),
                prev.as_ref().map_or(now_ms, |p| p.last_snapshot_ms),
            )
        }
    };
    let kind = match body {
        Report::Snapshot(_) => "snapshot",
        Report::Delta(_) => "delta",
    };
    let state = SentRow {
        seq,
        keyed: keyed.to_string(),
        last_snapshot_ms,
    };
    // None: disabled or deleted by the cloud meanwhile (a deletion wipes the store while
    // the components still run); nothing is queued.
    let queued = store.queue_upload(
        &key,
        &state,
        fingerprint,
        &new_message_id(),
        kind,
        &serde_json::to_string(&body).unwrap_or_default(),
        now_ms,
        cap_bytes,
    )?;
    Ok(queued.map(|_| Queued {
        printer_key: key,
        kind,
        trigger,
        seq,
    }))
}

/// The uploader component.
pub struct Uploader {
    store: Store,
    rule: Rule,
    cap_bytes: u64,
    clock: Clock,
    observer: Option<mpsc::UnboundedSender<Queued>>,
    metrics: Option<Arc<crate::telemetry::Metrics>>,
}

impl Uploader {
    /// Creates the component; `cap_bytes` bounds the outbox.
    pub fn new(store: Store, rule: Rule, cap_bytes: u64) -> Self {
        // Decisions remembered under another rule (say, a larger minimum drop) would skip
        // readings this one uploads.
        store.forget_decisions();
        Uploader {
            store,
            rule,
            cap_bytes,
            clock: Clock::system(),
            observer: None,
            metrics: None,
        }
    }

    /// Counts queued uploads and keeps the outbox gauges current.
    pub fn with_metrics(mut self, metrics: Arc<crate::telemetry::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Stamps with this clock (the agent's; tests move it by days).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Reports every queued message to `tx` as well.
    pub fn observe(mut self, tx: mpsc::UnboundedSender<Queued>) -> Self {
        self.observer = Some(tx);
        self
    }

    /// Runs until `readings` closes or `shutdown` completes.
    pub async fn run(
        self,
        mut readings: mpsc::Receiver<Reading>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let first = tokio::select! {
                _ = &mut shutdown => break,
                r = readings.recv() => match r { Some(r) => r, None => break },
            };
            // Readings arrive one by one as the poller spreads printers over the interval:
            // gathered for a moment, they take one trip to the blocking pool instead of
            // one each (each trip is a thread wake-up, which showed in profiles).
            let mut batch = vec![first];
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            let mut stopping = false;
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    r = readings.recv() => match r {
                        Some(r) => batch.push(r),
                        None => break,
                    },
                    () = &mut linger => break,
                    _ = &mut shutdown => {
                        stopping = true;
                        break;
                    }
                }
            }
            let (store, rule, cap, now) = (
                self.store.clone(),
                self.rule,
                self.cap_bytes,
                self.clock.now_ms(),
            );
            let joined = tokio::task::spawn_blocking(move || {
                let results: Vec<_> = batch
                    .iter()
                    .map(|r| process(&store, rule, cap, now, r))
                    .collect();
                (results, store.outbox_stats().ok())
            })
            .await;
            let (out, stats) = joined.unwrap_or_default();
            if let (Some(m), Some(st)) = (&self.metrics, stats) {
                m.outbox_messages.set(st.messages as i64);
                m.outbox_bytes.set(st.bytes as i64);
            }
            for r in out {
                match r {
                    Ok(Some(q)) => {
                        if let Some(m) = &self.metrics {
                            m.uploads_queued
                                .get_or_create(&vec![("kind".into(), q.kind.into())])
                                .inc();
                        }
                        tracing::debug!(printer = %q.printer_key, kind = q.kind, trigger = ?q.trigger, seq = q.seq, "Upload queued.");
                        if let Some(tx) = &self.observer {
                            tx.send(q).ok();
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "Could not queue an upload."),
                }
            }
            if stopping {
                break;
            }
        }
    }
}

/// How long the uploader gathers readings before deciding on them.
const LINGER: std::time::Duration = std::time::Duration::from_millis(250);
/// Readings decided in one trip to the blocking pool, at most.
const MAX_BATCH: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::{Collected, decode};
    use fleet_snmp::{Oid, Value as V};
    use std::collections::BTreeMap;

    fn report(pages: u32, toner: i64) -> PrinterReport {
        let o = |s: &str| s.parse::<Oid>().unwrap();
        let mut m = BTreeMap::new();
        m.insert(o("1.3.6.1.2.1.1.1.0"), V::OctetString(b"p".to_vec()));
        m.insert(
            o("1.3.6.1.2.1.43.5.1.1.17.1"),
            V::OctetString(b"SN9".to_vec()),
        );
        m.insert(o("1.3.6.1.2.1.43.10.2.1.4.1.1"), V::Counter32(pages));
        m.insert(o("1.3.6.1.2.1.43.11.1.1.8.1.1"), V::Integer(100));
        m.insert(o("1.3.6.1.2.1.43.11.1.1.9.1.1"), V::Integer(toner));
        decode(&Collected {
            values: &m,
            ip: None,
            collected_at: 0,
            version: None,
            library: &crate::printer::library::builtin(),
        })
    }

    const H: i64 = 3_600_000;

    #[test]
    fn one_snapshot_one_delta_per_decrease_nothing_for_counters_then_the_daily_snapshot() {
        let store = Store::open_in_memory().unwrap();
        let rule = Rule::default();
        let go = |pages, toner, now| {
            process(
                &store,
                rule,
                1 << 20,
                now,
                &Reading {
                    printer_id: 1,
                    report: report(pages, toner),
                    on_demand: false,
                },
            )
            .unwrap()
        };
        let q = go(100, 50, 0).unwrap();
        assert_eq!(
            (q.kind, q.trigger, q.seq),
            ("snapshot", Trigger::Enrolment, 1)
        );
        assert_eq!(go(150, 50, H), None, "counters only");
        assert_eq!(go(200, 50, 2 * H), None);
        let q = go(210, 49, 3 * H).unwrap();
        assert_eq!(
            (q.kind, q.trigger, q.seq),
            ("delta", Trigger::SupplyDecrease, 2)
        );
        assert_eq!(go(220, 49, 4 * H), None, "the same level again: nothing");
        let q = go(230, 49, 24 * H).unwrap();
        assert_eq!(
            (q.kind, q.trigger, q.seq),
            ("snapshot", Trigger::Heartbeat24h, 3)
        );
        // The outbox holds exactly those three messages, in order, and the delta names its
        // base and carries the counters that moved since.
        let msgs = store.due_messages(10, i64::MAX).unwrap();
        let kinds: Vec<&str> = msgs.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["snapshot", "delta", "snapshot"]);
        let delta: Value = serde_json::from_str(&msgs[1].body).unwrap();
        assert_eq!(delta["baseReportSeq"], 1);
        assert_eq!(delta["patch"]["counters"]["lifetimeCount"], 210);
        assert_eq!(delta["patch"]["supplies"]["m:1.1"]["currentLevel"], 49);
        let snap: Value = serde_json::from_str(&msgs[0].body).unwrap();
        assert_eq!(snap["serialNumber"], "SN9");
        assert_eq!(snap["reportSeq"], 1);
        assert_eq!(snap["trigger"], "enrolment");
        // An on-demand refresh always sends a snapshot.
        let q = process(
            &store,
            rule,
            1 << 20,
            25 * H,
            &Reading {
                printer_id: 1,
                report: report(230, 49),
                on_demand: true,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!((q.kind, q.trigger), ("snapshot", Trigger::OnDemand));
    }

    #[test]
    fn the_memo_follows_the_sent_state_across_resync_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let rule = Rule::default();
        let go = |store: &Store, toner, now| {
            let r = Reading {
                printer_id: 1,
                report: report(100, toner),
                on_demand: false,
            };
            process(store, rule, 1 << 20, now, &r).unwrap()
        };
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(go(&store, 50, 0).unwrap().kind, "snapshot");
        assert_eq!(go(&store, 50, H), None);
        // The cloud asked for a resync: the same reading now goes out as a snapshot.
        store.cloud_copy_lost("sn:SN9").unwrap();
        let q = go(&store, 50, 2 * H).unwrap();
        assert_eq!((q.kind, q.trigger), ("snapshot", Trigger::Resync));
        assert_eq!(
            store.sent_state("sn:SN9").unwrap().unwrap().seq,
            2,
            "the sequence goes on"
        );
        // A restarted agent rebuilds the memo from the stored state.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(go(&store, 50, 3 * H), None);
        assert_eq!(
            go(&store, 40, 4 * H).unwrap().trigger,
            Trigger::SupplyDecrease
        );
        // An unenrolled printer's state is gone with its memo.
        store.drop_printer("sn:SN9").unwrap();
        assert_eq!(go(&store, 40, 5 * H).unwrap().kind, "snapshot");
    }
}
