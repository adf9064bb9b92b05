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

/// Inserts a message and applies the byte cap inside `tx`; returns evictions.
#[allow(clippy::too_many_arguments)]
fn enqueue_in(
    tx: &rusqlite::Transaction<'_>,
    message_id: &str,
    printer_key: Option<&str>,
    kind: &str,
    body: &str,
    now_ms: i64,
    cap_bytes: u64,
) -> Result<u64, StoreError> {
    tx.execute(
            "INSERT INTO outbox(message_id, printer_key, kind, body, bytes, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![message_id, printer_key, kind, body, body.len() as i64, now_ms],
        )?;
    let mut evicted = 0u64;
    loop {
        let total: i64 = tx.query_row("SELECT COALESCE(SUM(bytes), 0) FROM outbox", [], |r| {
            r.get(0)
        })?;
        if total as u64 <= cap_bytes {
            break;
        }
        let victim: Option<i64> = tx
            .query_row(
                "SELECT id FROM outbox WHERE kind = 'delta' ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let victim = match victim {
                Some(v) => Some(v),
                None => tx
                    .query_row(
                        "SELECT o.id FROM outbox o WHERE o.kind = 'snapshot' AND EXISTS (
                             SELECT 1 FROM outbox n WHERE n.kind = 'snapshot' AND n.printer_key IS o.printer_key AND n.id > o.id)
                         ORDER BY o.id LIMIT 1",
                        [],
                        |r| r.get(0),
                    )
                    .optional()?
                    .or(tx
                        .query_row(
                            "SELECT id FROM outbox WHERE kind NOT IN ('snapshot', 'delta') ORDER BY id LIMIT 1",
                            [],
                            |r| r.get(0),
                        )
                        .optional()?),
            };
        let Some(v) = victim else { break };
        tx.execute("DELETE FROM outbox WHERE id = ?1", params![v])?;
        evicted += 1;
    }
    if evicted > 0 {
        bump(tx, "outbox_dropped", evicted as i64)?;
    }
    Ok(evicted)
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
        self.queued.notify_one();
        Ok(evicted)
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
        Ok(self
            .conn()
            .query_row(
                "SELECT seq, keyed, last_snapshot_ms FROM sent_state WHERE printer_key = ?1",
                params![printer_key],
                |r| {
                    Ok(SentRow {
                        seq: r.get::<_, i64>(0)? as u64,
                        keyed: r.get(1)?,
                        last_snapshot_ms: r.get(2)?,
                    })
                },
            )
            .optional()?)
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
        message_id: &str,
        kind: &str,
        body: &str,
        now_ms: i64,
        cap_bytes: u64,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let evicted = enqueue_in(
            &tx,
            message_id,
            Some(printer_key),
            kind,
            body,
            now_ms,
            cap_bytes,
        )?;
        tx.execute(
            "INSERT INTO sent_state(printer_key, seq, keyed, last_snapshot_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(printer_key) DO UPDATE SET seq = excluded.seq, keyed = excluded.keyed, last_snapshot_ms = excluded.last_snapshot_ms",
            params![printer_key, state.seq as i64, state.keyed, state.last_snapshot_ms],
        )?;
        tx.commit()?;
        self.queued.notify_one();
        Ok(evicted)
    }

    /// Forgets what the cloud holds for a printer (after a resync request), so the next
    /// reading goes out as a snapshot.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn forget_sent(&self, printer_key: &str) -> Result<(), StoreError> {
        self.conn().execute(
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
        let mut q = c.prepare_cached(
            "SELECT id, message_id, printer_key, kind, body, attempts FROM outbox WHERE next_attempt_ms <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = q
            .query_map(params![now_ms, n as i64], |r| {
                Ok(Message {
                    id: r.get(0)?,
                    message_id: r.get(1)?,
                    printer_key: r.get(2)?,
                    kind: r.get(3)?,
                    body: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
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
        let (messages, bytes): (i64, i64) = c.query_row(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let counter = |name: &str| -> rusqlite::Result<i64> {
            Ok(c.query_row(
                "SELECT value FROM counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
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
}
