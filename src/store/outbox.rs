//! The outbox: messages for the cloud, written durably before they count as sent,
//! replayed in order, acknowledged, rejected (counted, with a reason) or retried later,
//! under a byte cap that evicts the oldest deltas first and always keeps each printer's
//! latest snapshot.

use super::{Store, StoreError};
use rusqlite::{OptionalExtension, params};

/// One queued message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Queue position (send order).
    pub id: i64,
    /// Idempotency key.
    pub message_id: String,
    /// The printer it is about (`None` for agent-level messages).
    pub printer_key: Option<String>,
    /// `snapshot`, `delta`, `heartbeat`, ...
    pub kind: String,
    /// JSON body.
    pub body: String,
    /// Delivery attempts so far.
    pub attempts: u32,
}

/// The columns [`message_of`] reads, in its order.
const MESSAGE_COLS: &str = "id, message_id, printer_key, kind, body, attempts";

/// One outbox row (selected as [`MESSAGE_COLS`] first) as a [`Message`].
fn message_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        message_id: r.get(1)?,
        printer_key: r.get(2)?,
        kind: r.get(3)?,
        body: r.get(4)?,
        attempts: r.get(5)?,
    })
}

/// Messages sent to the cloud in one request, under one idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The request's idempotency key: a single message's own `message_id`, else
    /// `<first message_id>+<count>`.
    pub id: String,
    /// Its messages in queue order (never empty).
    pub messages: Vec<Message>,
    /// Already sent at least once without an answer recorded: resent as it was.
    pub resend: bool,
    /// More messages were due than the batch holds.
    pub more: bool,
}

/// Queue figures (for status and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxStats {
    /// Messages waiting.
    pub messages: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Messages evicted by the byte cap, ever.
    pub dropped: u64,
    /// Messages the cloud rejected (dropped with a reason), ever.
    pub rejected: u64,
}

/// The last state uploaded for one printer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRow {
    /// Report sequence number of that state.
    pub seq: u64,
    /// Keyed view (JSON).
    pub keyed: String,
    /// When the last snapshot was queued (epoch ms).
    pub last_snapshot_ms: i64,
}

/// The upload rule's view of a printer's sent state: a fingerprint of what its decision
/// reads (alert keys, identity, supply levels; see `cloud::report::fingerprint`), the
/// sequence number and when the last snapshot went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentMemo {
    /// Fingerprint of the last report decided (`cloud::report::fingerprint`).
    pub fingerprint: u64,
    /// Report sequence number of that state.
    pub seq: u64,
    /// When the last snapshot was queued (epoch ms).
    pub last_snapshot_ms: i64,
}

/// Returns a fresh idempotency key (128 random bits, hex).
pub fn new_message_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn bump(tx: &rusqlite::Transaction<'_>, name: &str, by: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO counters(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = value + ?2",
        params![name, by],
    )?;
    Ok(())
}

fn sent_row(c: &rusqlite::Connection, printer_key: &str) -> Result<Option<SentRow>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT seq, keyed, last_snapshot_ms FROM sent_state WHERE printer_key = ?1",
    )?
    .query_row(params![printer_key], |r| {
        Ok(SentRow {
            seq: r.get::<_, i64>(0)? as u64,
            keyed: r.get(1)?,
            last_snapshot_ms: r.get(2)?,
        })
    })
    .optional()?)
}

fn oldest(tx: &rusqlite::Transaction<'_>, sql: &str) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached(sql)?
        .query_row([], |r| r.get(0))
        .optional()
}

/// Marks what the cloud holds for a printer as unknown (the sequence number stays, so
/// the next report, a snapshot, follows the last one sent).
const LOSE_CLOUD_COPY: &str = "UPDATE sent_state SET keyed = '' WHERE printer_key = ?1";

/// What the byte cap evicted while a message was queued.
#[derive(Debug, Default)]
struct Evicted {
    /// Messages removed.
    count: u64,
    /// Printers whose chain of deltas was cut up to the end of the queue: what the cloud
    /// holds of them is now unknown, so their next reading goes out as a snapshot.
    broken: Vec<String>,
}

/// Inserts a message and applies the byte cap inside `tx`.
///
/// A delta is a patch over the one before it, so the cloud cannot apply the deltas
/// that follow an evicted one (it would answer each with a resync): they go with it, up
/// to the printer's next snapshot; when none is queued, the printer's sent state is
/// forgotten so that its next reading is a snapshot. Measured (issue 16's outage bench):
/// evicting single deltas left 77,165 queued deltas the cloud could not apply.
#[allow(clippy::too_many_arguments)]
fn enqueue_in(
    tx: &rusqlite::Transaction<'_>,
    message_id: &str,
    printer_key: Option<&str>,
    kind: &str,
    body: &str,
    now_ms: i64,
    cap_bytes: u64,
) -> Result<Evicted, StoreError> {
    tx.execute(
            "INSERT INTO outbox(message_id, printer_key, kind, body, bytes, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![message_id, printer_key, kind, body, body.len() as i64, now_ms],
        )?;
    if kind == "snapshot" {
        // Older snapshots of this printer are superseded: first to go after the deltas.
        tx.execute(
            "UPDATE outbox SET superseded = 1 WHERE printer_key IS ?1 AND kind = 'snapshot' AND id < ?2 AND superseded = 0",
            params![printer_key, tx.last_insert_rowid()],
        )?;
    }
    // Each step is an index lookup (totals row, oldest delta, oldest superseded
    // snapshot), and a cut chain is deleted through the printer's index: eviction costs
    // the same with 10 or 100,000 messages queued.
    let mut out = Evicted::default();
    loop {
        let total: i64 = tx.query_row("SELECT bytes FROM outbox_totals WHERE id = 1", [], |r| {
            r.get(0)
        })?;
        if total as u64 <= cap_bytes {
            break;
        }
        // The oldest delta and, with it, the rest of its printer's chain.
        let delta: Option<(i64, Option<String>)> = tx
            .prepare_cached(
                "SELECT id, printer_key FROM outbox WHERE kind = 'delta' ORDER BY id LIMIT 1",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((v, key)) = delta {
            let next_snapshot: Option<i64> = tx
                .prepare_cached(
                    "SELECT id FROM outbox WHERE printer_key IS ?1 AND kind = 'snapshot' AND id > ?2 ORDER BY id LIMIT 1",
                )?
                .query_row(params![key, v], |r| r.get(0))
                .optional()?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM outbox WHERE printer_key IS ?1 AND kind = 'delta' AND id >= ?2 AND id < ?3",
                )?
                .execute(params![key, v, next_snapshot.unwrap_or(i64::MAX)])?;
            out.count += n as u64;
            if let (None, Some(k)) = (next_snapshot, key) {
                tx.prepare_cached(LOSE_CLOUD_COPY)?.execute(params![k])?;
                out.broken.push(k);
            }
            continue;
        }
        // Asked in turn (the later query only when the earlier found nothing): the last
        // one scans, and runs only when the queue holds no delta and no superseded
        // snapshot.
        let mut victim = None;
        for sql in [
            "SELECT id FROM outbox WHERE superseded = 1 ORDER BY id LIMIT 1",
            "SELECT id FROM outbox WHERE kind NOT IN ('snapshot', 'delta') ORDER BY id LIMIT 1",
        ] {
            victim = oldest(tx, sql)?;
            if victim.is_some() {
                break;
            }
        }
        let Some(v) = victim else { break };
        tx.execute("DELETE FROM outbox WHERE id = ?1", params![v])?;
        out.count += 1;
    }
    if out.count > 0 {
        bump(tx, "outbox_dropped", out.count as i64)?;
    }
    Ok(out)
}

impl Store {
    /// Queues a message durably, then enforces `cap_bytes`: the oldest deltas go first,
    /// then snapshots that a newer snapshot of the same printer supersedes. A printer's
    /// latest snapshot is never evicted. Returns the number of messages evicted.
    ///
    /// # Errors
    /// On SQL failure (the message is then not queued).
    pub fn enqueue(
        &self,
        message_id: &str,
        printer_key: Option<&str>,
        kind: &str,
        body: &str,
        now_ms: i64,
        cap_bytes: u64,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let evicted = enqueue_in(&tx, message_id, printer_key, kind, body, now_ms, cap_bytes)?;
        tx.commit()?;
        let mut memo = self.sent_memo.lock();
        for k in &evicted.broken {
            memo.remove(k);
        }
        drop(memo);
        self.queued.notify_one();
        Ok(evicted.count)
    }

    /// Completes once a message has been queued through this handle or a clone of it
    /// since the last call returned (a message queued while nobody waits is not missed).
    pub async fn message_queued(&self) {
        self.queued.notified().await;
    }

    /// Returns the last uploaded state of a printer.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn sent_state(&self, printer_key: &str) -> Result<Option<SentRow>, StoreError> {
        sent_row(&self.conn(), printer_key)
    }

    /// What the uploader last decided for a printer (kept in memory only: after a start
    /// the first reading of each printer takes the full path, which fills it).
    pub fn sent_memo(&self, printer_key: &str) -> Option<SentMemo> {
        self.sent_memo.lock().get(printer_key).copied()
    }

    /// Remembers a decision that queued nothing, so the same fingerprint again skips the
    /// full path; only while the stored state is still the one decided against (a resync,
    /// an eviction or a wipe meanwhile forgot it, under the same lock, and it must stay
    /// forgotten).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn remember_sent(&self, printer_key: &str, memo: SentMemo) -> Result<(), StoreError> {
        let c = self.conn();
        let seq: Option<i64> = c
            // A state whose view is gone (`cloud_copy_lost`, seq kept) is not the one
            // decided against: the next reading must be a snapshot.
            .prepare_cached("SELECT seq FROM sent_state WHERE printer_key = ?1 AND keyed != ''")?
            .query_row(params![printer_key], |r| r.get(0))
            .optional()?;
        if seq.is_some_and(|s| s as u64 == memo.seq) {
            self.sent_memo.lock().insert(printer_key.to_string(), memo);
        }
        Ok(())
    }

    /// Forgets every remembered decision (a new upload rule decides differently).
    pub fn forget_decisions(&self) {
        let _c = self.conn();
        self.sent_memo.lock().clear();
    }

    /// Queues an upload and records the state it leaves the cloud in, atomically: after
    /// a crash either both happened or neither.
    ///
    /// # Errors
    /// On SQL failure (nothing is written).
    #[allow(clippy::too_many_arguments)]
    pub fn queue_upload(
        &self,
        printer_key: &str,
        state: &SentRow,
        fingerprint: u64,
        message_id: &str,
        kind: &str,
        body: &str,
        now_ms: i64,
        cap_bytes: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        // Disabled or deleted by the cloud while the reading was on its way (checked in
        // the transaction: a deletion wipes and marks the store in one).
        let marked: Option<String> = tx
            .prepare_cached("SELECT value FROM settings WHERE name = ?1 AND encrypted = 0")?
            .query_row(params![super::state::AGENT_STATE], |r| r.get(0))
            .optional()?;
        if marked.is_some() {
            return Ok(None);
        }
        let evicted = enqueue_in(
            &tx,
            message_id,
            Some(printer_key),
            kind,
            body,
            now_ms,
            cap_bytes,
        )?;
        // This printer's own chain may have been cut with its new delta: its sent state
        // stays marked unknown, and the next reading is a snapshot.
        let cut = evicted.broken.iter().any(|k| k == printer_key);
        if !cut {
            tx.execute(
                "INSERT INTO sent_state(printer_key, seq, keyed, last_snapshot_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(printer_key) DO UPDATE SET seq = excluded.seq, keyed = excluded.keyed, last_snapshot_ms = excluded.last_snapshot_ms",
                params![printer_key, state.seq as i64, state.keyed, state.last_snapshot_ms],
            )?;
        }
        tx.commit()?;
        let mut memo = self.sent_memo.lock();
        for k in &evicted.broken {
            memo.remove(k);
        }
        if !cut {
            memo.insert(
                printer_key.to_string(),
                SentMemo {
                    fingerprint,
                    seq: state.seq,
                    last_snapshot_ms: state.last_snapshot_ms,
                },
            );
        }
        drop(memo);
        self.queued.notify_one();
        Ok(Some(evicted.count))
    }

    /// Marks what the cloud holds of a printer as unknown (it answered "resync"): the next
    /// reading goes out as a snapshot whose sequence number follows the last one sent.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn cloud_copy_lost(&self, printer_key: &str) -> Result<(), StoreError> {
        let c = self.conn();
        self.sent_memo.lock().remove(printer_key);
        c.execute(LOSE_CLOUD_COPY, params![printer_key])?;
        Ok(())
    }

    /// Forgets what the cloud holds for a printer (it belongs to another agent now), so
    /// its next reading goes out as a first snapshot.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn forget_sent(&self, printer_key: &str) -> Result<(), StoreError> {
        let c = self.conn();
        self.sent_memo.lock().remove(printer_key);
        c.execute(
            "DELETE FROM sent_state WHERE printer_key = ?1",
            params![printer_key],
        )?;
        Ok(())
    }

    /// Returns up to `n` messages due at `now_ms`, oldest first.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn due_messages(&self, n: usize, now_ms: i64) -> Result<Vec<Message>, StoreError> {
        let c = self.conn();
        let mut q = c.prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM outbox WHERE next_attempt_ms <= ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = q
            .query_map(params![now_ms, n as i64], message_of)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The next request's messages. A batch sent before without a recorded answer comes
    /// first, exactly as it was (the cloud counts a key once, so its members must not
    /// change across a crash); otherwise the oldest due messages, at most `max_messages`
    /// and `max_bytes` of bodies (at least one message), are fixed under a new key before
    /// they are sent.
    ///
    /// # Errors
    /// On SQL failure (nothing is fixed).
    pub fn next_batch(
        &self,
        max_messages: usize,
        max_bytes: u64,
        now_ms: i64,
    ) -> Result<Option<Batch>, StoreError> {
        let max_messages = max_messages.max(1);
        let mut c = self.conn();
        let tx = c.transaction()?;
        let pending: Option<String> = tx
            .query_row(
                "SELECT batch_id FROM outbox WHERE batch_id IS NOT NULL ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let batch = if let Some(id) = pending {
            let messages = tx
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLS} FROM outbox WHERE batch_id = ?1 ORDER BY id"
                ))?
                .query_map(params![id], message_of)?
                .collect::<Result<Vec<_>, _>>()?;
            Batch {
                id,
                messages,
                resend: true,
                more: true,
            }
        } else {
            let limit = i64::try_from(max_messages).unwrap_or(i64::MAX);
            // One row more than fits tells whether more are waiting.
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {MESSAGE_COLS}, bytes FROM outbox WHERE batch_id IS NULL AND next_attempt_ms <= ?1 ORDER BY id LIMIT ?2"
                ))?
                .query_map(params![now_ms, limit.saturating_add(1)], |r| {
                    Ok((message_of(r)?, r.get::<_, i64>(6)?.max(0) as u64))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let due = rows.len();
            let mut messages = Vec::new();
            let mut bytes = 0u64;
            for (m, b) in rows {
                if messages.len() >= max_messages
                    || (!messages.is_empty() && bytes.saturating_add(b) > max_bytes)
                {
                    break;
                }
                bytes = bytes.saturating_add(b);
                messages.push(m);
            }
            let Some(first) = messages.first() else {
                return Ok(None);
            };
            let id = if messages.len() == 1 {
                first.message_id.clone()
            } else {
                format!("{}+{}", first.message_id, messages.len())
            };
            let mut fix = tx.prepare_cached("UPDATE outbox SET batch_id = ?1 WHERE id = ?2")?;
            for m in &messages {
                fix.execute(params![id, m.id])?;
            }
            drop(fix);
            Batch {
                more: due > messages.len(),
                id,
                messages,
                resend: false,
            }
        };
        tx.commit()?;
        if batch.messages.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch))
    }

    /// Sends the messages of a batch the cloud refused as a whole one by one from now
    /// on, each under its own key, so one bad message cannot hold the others back. Only
    /// for a definite refusal: a batch that may have been applied is resent as it was.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn split_batch(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        for id in ids {
            tx.execute(
                "UPDATE outbox SET batch_id = message_id WHERE id = ?1",
                params![id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes messages the cloud accepted.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn ack(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        for id in ids {
            tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops every queued message about one printer and what the cloud holds of it (the
    /// printer was unenrolled: nothing more about it may reach the cloud). Returns how many
    /// messages were dropped.
    ///
    /// # Errors
    /// On SQL failure (nothing is removed).
    pub fn drop_printer(&self, printer_key: &str) -> Result<usize, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let n = tx.execute(
            "DELETE FROM outbox WHERE printer_key = ?1",
            params![printer_key],
        )?;
        tx.execute(
            "DELETE FROM sent_state WHERE printer_key = ?1",
            params![printer_key],
        )?;
        self.sent_memo.lock().remove(printer_key);
        tx.commit()?;
        Ok(n)
    }

    /// Removes messages the cloud refused for good (a 4xx other than 401/429), counting them.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn reject(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let mut n = 0;
        for id in ids {
            n += tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])?;
        }
        bump(&tx, "outbox_rejected", n as i64)?;
        tx.commit()?;
        Ok(())
    }

    /// Schedules another attempt for messages that could not be delivered now.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn retry_later(&self, ids: &[i64], next_attempt_ms: i64) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        for id in ids {
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2 WHERE id = ?1",
                params![id, next_attempt_ms],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Returns the queue figures.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let c = self.conn();
        // Read after every batch of readings (the gauges): cached statements.
        let (messages, bytes): (i64, i64) = c
            .prepare_cached("SELECT messages, bytes FROM outbox_totals WHERE id = 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        let counter = |name: &str| -> rusqlite::Result<i64> {
            Ok(
                c.prepare_cached("SELECT value FROM counters WHERE name = ?1")?
                    .query_row(params![name], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0),
            )
        };
        Ok(OutboxStats {
            messages: messages as u64,
            bytes: bytes as u64,
            dropped: counter("outbox_dropped")? as u64,
            rejected: counter("outbox_rejected")? as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn body(n: usize) -> String {
        "x".repeat(n)
    }

    #[test]
    fn a_batch_is_fixed_before_sending_and_resent_as_it_was_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let ids_of = |b: &Batch| -> Vec<String> {
            b.messages.iter().map(|m| m.message_id.clone()).collect()
        };
        for i in 0..5 {
            s.enqueue(
                &format!("m{i}"),
                Some("sn:a"),
                "delta",
                &body(100),
                i,
                1 << 20,
            )
            .unwrap();
        }
        assert!(
            s.next_batch(10, 1 << 20, -1).unwrap().is_none(),
            "none due yet"
        );
        // At most 3 messages, or 250 bytes: m0..m2 under one key.
        let b = s.next_batch(3, 1 << 20, 100).unwrap().unwrap();
        assert_eq!((b.id.as_str(), b.resend, b.more), ("m0+3", false, true));
        assert_eq!(ids_of(&b), ["m0", "m1", "m2"]);
        // Not answered, then a crash: the same batch comes back first, even though more
        // messages arrived and the limits changed.
        s.enqueue("m5", Some("sn:a"), "delta", &body(100), 5, 1 << 20)
            .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let again = s.next_batch(100, 1 << 20, 100).unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.resend), ("m0+3", true));
        assert_eq!(ids_of(&again), ids_of(&b));
        s.ack(&again.messages.iter().map(|m| m.id).collect::<Vec<_>>())
            .unwrap();
        // The byte limit: two 100-byte bodies fit in 250, not three.
        let b = s.next_batch(100, 250, 100).unwrap().unwrap();
        assert_eq!((b.id.as_str(), b.more), ("m3+2", true));
        // A batch refused whole is split: each message alone, under its own key, in order.
        s.split_batch(&b.messages.iter().map(|m| m.id).collect::<Vec<_>>())
            .unwrap();
        let one = s.next_batch(100, 1 << 20, 100).unwrap().unwrap();
        assert_eq!((one.id.as_str(), one.resend), ("m3", true));
        assert_eq!(ids_of(&one), ["m3"]);
        s.reject(&[one.messages[0].id]).unwrap();
        let one = s.next_batch(100, 1 << 20, 100).unwrap().unwrap();
        assert_eq!(ids_of(&one), ["m4"]);
        s.ack(&[one.messages[0].id]).unwrap();
        // A lone message larger than the byte limit still goes, alone, under its own id.
        s.enqueue("big", None, "snapshot", &body(1000), 6, 1 << 20)
            .unwrap();
        let b = s.next_batch(100, 150, 100).unwrap().unwrap();
        assert_eq!(ids_of(&b), ["m5"]);
        s.ack(&[b.messages[0].id]).unwrap();
        let b = s.next_batch(100, 150, 100).unwrap().unwrap();
        assert_eq!((b.id.as_str(), b.more), ("big", false));
        s.ack(&[b.messages[0].id]).unwrap();
        assert!(s.next_batch(100, 150, 100).unwrap().is_none());
        let st = s.outbox_stats().unwrap();
        assert_eq!((st.messages, st.rejected), (0, 1));
    }

    #[test]
    fn messages_survive_a_restart_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for i in 0..5 {
            s.enqueue(
                &format!("m{i}"),
                Some("sn:a"),
                "delta",
                &body(10),
                i,
                1 << 20,
            )
            .unwrap();
        }
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let due = s.due_messages(10, 100).unwrap();
        let ids: Vec<&str> = due.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"]);
        s.ack(&[due[0].id]).unwrap();
        s.retry_later(&[due[1].id], 5000).unwrap();
        let due2: Vec<String> = s
            .due_messages(10, 100)
            .unwrap()
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        assert_eq!(due2, ["m2", "m3", "m4"], "m1 waits for its retry time");
        let later = s.due_messages(10, 5000).unwrap();
        assert_eq!(later[0].message_id, "m1");
        assert_eq!(later[0].attempts, 1);
        s.reject(&[later[1].id]).unwrap();
        let st = s.outbox_stats().unwrap();
        assert_eq!((st.messages, st.rejected), (3, 1));
        // The idempotency key is unique: the same message cannot be queued twice.
        assert!(
            s.enqueue("m3", Some("sn:a"), "delta", "y", 0, 1 << 20)
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_message_wakes_the_waiting_sender_and_is_not_missed_before_it_waits() {
        let s = Store::open_in_memory().unwrap();
        let waiting = s.clone();
        let idle = tokio::time::timeout(Duration::from_secs(60), waiting.message_queued()).await;
        assert!(idle.is_err(), "nothing queued: no wake-up");
        // Queued while nobody waits (the sender was sending): the next wait returns at once.
        s.enqueue("m1", None, "delta", "x", 0, 1 << 20).unwrap();
        tokio::time::timeout(Duration::from_millis(1), s.message_queued())
            .await
            .expect("the queued message is not missed");
        // Queued through another handle while the sender waits, as the uploader does.
        let waiter = tokio::spawn(async move { waiting.message_queued().await });
        tokio::task::yield_now().await;
        let at = tokio::time::Instant::now();
        s.queue_upload(
            "sn:a",
            &SentRow {
                seq: 1,
                keyed: "{}".into(),
                last_snapshot_ms: 0,
            },
            0,
            "m2",
            "snapshot",
            "y",
            0,
            1 << 20,
        )
        .unwrap();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the waiting sender is woken")
            .unwrap();
        assert_eq!(at.elapsed(), Duration::ZERO);
        // One wake-up per wait, not one stored per message.
        let again = tokio::time::timeout(Duration::from_secs(60), s.message_queued()).await;
        assert!(again.is_err());
    }

    #[test]
    fn dropping_a_printer_removes_only_its_messages() {
        let s = Store::open_in_memory().unwrap();
        s.enqueue("a1", Some("sn:a"), "snapshot", "x", 0, 1 << 20)
            .unwrap();
        s.enqueue("b1", Some("sn:b"), "snapshot", "y", 0, 1 << 20)
            .unwrap();
        s.enqueue("a2", Some("sn:a"), "delta", "z", 0, 1 << 20)
            .unwrap();
        assert_eq!(s.drop_printer("sn:a").unwrap(), 2);
        let left = s.due_messages(10, 0).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].message_id, "b1");
    }

    #[test]
    fn the_byte_cap_evicts_old_deltas_then_superseded_snapshots_never_the_latest() {
        let s = Store::open_in_memory().unwrap();
        let cap = 100;
        s.enqueue("s-a1", Some("sn:a"), "snapshot", &body(30), 1, cap)
            .unwrap();
        s.enqueue("d-a1", Some("sn:a"), "delta", &body(20), 2, cap)
            .unwrap();
        s.enqueue("s-b1", Some("sn:b"), "snapshot", &body(30), 3, cap)
            .unwrap();
        // 80 + 20 = 100: still fits.
        assert_eq!(
            s.enqueue("d-b1", Some("sn:b"), "delta", &body(20), 4, cap)
                .unwrap(),
            0
        );
        // 130: deltas go first, oldest first, until it fits (110, then 90).
        let n = s.enqueue("s-a2", Some("sn:a"), "snapshot", &body(30), 5, cap);
        assert_eq!(n.unwrap(), 2);
        let ids = |s: &Store| -> Vec<String> {
            s.due_messages(10, 10)
                .unwrap()
                .into_iter()
                .map(|m| m.message_id)
                .collect()
        };
        assert_eq!(ids(&s), ["s-a1", "s-b1", "s-a2"]);
        // Another 30 (120): no delta left, so printer a's superseded snapshot goes.
        let n = s.enqueue("s-c1", Some("sn:c"), "snapshot", &body(30), 6, cap);
        assert_eq!(n.unwrap(), 1);
        let left = ids(&s);
        assert_eq!(left, ["s-b1", "s-a2", "s-c1"]);
        // Only latest snapshots remain: they are kept even over the cap.
        assert_eq!(
            s.enqueue("s-d1", Some("sn:d"), "snapshot", &body(30), 7, cap)
                .unwrap(),
            0
        );
        let st = s.outbox_stats().unwrap();
        assert_eq!((st.messages, st.bytes, st.dropped), (4, 120, 3));
    }

    #[test]
    fn an_evicted_delta_takes_the_deltas_built_on_it_and_its_printer_starts_again_with_a_snapshot()
    {
        let s = Store::open_in_memory().unwrap();
        let cap = 200;
        let up = |key: &str, seq: u64, id: &str, kind: &str, n: usize, cap: u64| {
            let row = SentRow {
                seq,
                keyed: "{}".into(),
                last_snapshot_ms: 0,
            };
            s.queue_upload(key, &row, seq, id, kind, &body(n), seq as i64, cap)
                .unwrap()
                .unwrap()
        };
        // Printer a: snapshot, three deltas; then a snapshot and a delta (a new chain).
        // Printer b: a snapshot and a delta queued last.
        up("sn:a", 1, "a1", "snapshot", 40, cap);
        up("sn:a", 2, "a2", "delta", 20, cap);
        up("sn:a", 3, "a3", "delta", 20, cap);
        up("sn:a", 4, "a4", "snapshot", 40, cap);
        up("sn:a", 5, "a5", "delta", 20, cap);
        up("sn:b", 1, "b1", "snapshot", 40, cap);
        // 180 + 30 = 210 > 200: a2 goes, and a3 with it (patched over a2), not a5 (it
        // follows a4, a snapshot). 170 fits.
        assert_eq!(up("sn:b", 2, "b2", "delta", 30, cap), 2);
        let ids = |s: &Store| -> Vec<String> {
            s.due_messages(10, i64::MAX)
                .unwrap()
                .into_iter()
                .map(|m| m.message_id)
                .collect()
        };
        assert_eq!(ids(&s), ["a1", "a4", "a5", "b1", "b2"]);
        assert_eq!(
            s.sent_state("sn:a").unwrap().unwrap().seq,
            5,
            "a's chain goes on"
        );
        // 170 + 50 = 220: a5 is the oldest delta; nothing of a follows it, so a's sent
        // state is forgotten (its next reading is a snapshot); b's chain stays.
        assert_eq!(up("sn:b", 3, "b3", "delta", 50, cap), 1);
        assert_eq!(ids(&s), ["a1", "a4", "b1", "b2", "b3"]);
        let lost = |k: &str| {
            let row = s.sent_state(k).unwrap().unwrap();
            (row.seq, row.keyed.is_empty())
        };
        assert_eq!(
            lost("sn:a"),
            (5, true),
            "a's cloud copy unknown, its seq kept"
        );
        assert_eq!(lost("sn:b"), (3, false));
        // A printer whose own new delta is cut with its chain: nothing of the chain is
        // kept, and it too starts again with a snapshot. 200 + 20 = 220: b2 is the
        // oldest delta; b3 and b4 follow it.
        assert_eq!(up("sn:b", 4, "b4", "delta", 20, cap), 3);
        assert_eq!(ids(&s), ["a1", "a4", "b1"]);
        assert_eq!(lost("sn:b"), (3, true), "b4 was never queued: seq 3 stays");
        let st = s.outbox_stats().unwrap();
        assert_eq!((st.messages, st.bytes, st.dropped), (3, 120, 6));
        // A decision taken before the copy was lost is not remembered after it.
        s.remember_sent(
            "sn:b",
            SentMemo {
                fingerprint: 7,
                seq: 3,
                last_snapshot_ms: 0,
            },
        )
        .unwrap();
        assert!(s.sent_memo("sn:b").is_none());
    }

    fn scanned(s: &Store) -> (u64, u64) {
        s.conn()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .unwrap()
    }

    #[test]
    fn the_running_totals_follow_every_way_in_and_out_of_the_outbox() {
        let s = Store::open_in_memory().unwrap();
        let cap = 1_000;
        for i in 0..20 {
            let kind = if i % 4 == 0 { "snapshot" } else { "delta" };
            let printer = format!("sn:{}", i % 3);
            s.enqueue(
                &format!("m{i}"),
                Some(&printer),
                kind,
                &body(10 + i * 7),
                i as i64,
                cap,
            )
            .unwrap();
        }
        let check = |s: &Store| {
            let st = s.outbox_stats().unwrap();
            assert_eq!((st.messages, st.bytes), scanned(s));
        };
        check(&s);
        let due = s.due_messages(6, 100).unwrap();
        s.ack(&[due[0].id, due[1].id]).unwrap();
        check(&s);
        s.reject(&[due[2].id]).unwrap();
        check(&s);
        s.drop_printer("sn:1").unwrap();
        check(&s);
        // Evictions under a small cap.
        s.enqueue("big", Some("sn:0"), "snapshot", &body(900), 200, 1_000)
            .unwrap();
        check(&s);
        assert!(s.outbox_stats().unwrap().dropped > 0);
        let all = s.due_messages(100, 1_000).unwrap();
        s.ack(&all.iter().map(|m| m.id).collect::<Vec<_>>())
            .unwrap();
        let st = s.outbox_stats().unwrap();
        assert_eq!((st.messages, st.bytes), (0, 0));
    }

    #[test]
    fn an_older_store_gets_its_totals_and_superseded_snapshots_at_migration() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::migrate(&mut c, &super::super::MIGRATIONS[..6], 0).unwrap();
        for (i, (key, kind, n)) in [
            ("sn:a", "snapshot", 30),
            ("sn:a", "delta", 20),
            ("sn:a", "snapshot", 30),
            ("sn:b", "snapshot", 40),
        ]
        .iter()
        .enumerate()
        {
            c.execute(
                "INSERT INTO outbox(message_id, printer_key, kind, body, bytes, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                params![format!("m{i}"), key, kind, body(*n), *n as i64],
            )
            .unwrap();
        }
        crate::store::migrate(&mut c, super::super::MIGRATIONS, 6).unwrap();
        let totals: (i64, i64) = c
            .query_row("SELECT messages, bytes FROM outbox_totals", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(totals, (4, 120));
        let superseded: Vec<String> = c
            .prepare("SELECT message_id FROM outbox WHERE superseded = 1")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(superseded, ["m0"]);
    }
}
