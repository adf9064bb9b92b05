//! The store: SQLite (bundled) in WAL mode with embedded numbered migrations. The only
//! module with SQL. Opening refuses to go on after a failed migration, naming it; a
//! damaged database (`PRAGMA quick_check`, or SQLite calling it corrupt) is moved aside
//! and a fresh one started with the settings that could be read from it (the activation
//! and the sealed credentials), so a damaged file never becomes a restart loop.

pub mod jobs;
pub mod outbox;
pub mod secrets;
mod state;

pub use state::{AgentState, CloudCredentials, PageProxy, WEB_REFUSED};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Embedded migrations, applied in order; `PRAGMA user_version` records the last one.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("migrations/0001_init.sql")),
    (
        "0002_discovery.sql",
        include_str!("migrations/0002_discovery.sql"),
    ),
    (
        "0003_outbox.sql",
        include_str!("migrations/0003_outbox.sql"),
    ),
    (
        "0004_sent_state.sql",
        include_str!("migrations/0004_sent_state.sql"),
    ),
    (
        "0005_settings.sql",
        include_str!("migrations/0005_settings.sql"),
    ),
    ("0006_jobs.sql", include_str!("migrations/0006_jobs.sql")),
    (
        "0007_outbox_totals.sql",
        include_str!("migrations/0007_outbox_totals.sql"),
    ),
    (
        "0008_outbox_batches.sql",
        include_str!("migrations/0008_outbox_batches.sql"),
    ),
    (
        "0009_quirks.sql",
        include_str!("migrations/0009_quirks.sql"),
    ),
    (
        "0010_health_since.sql",
        include_str!("migrations/0010_health_since.sql"),
    ),
    (
        "0011_job_waiting.sql",
        include_str!("migrations/0011_job_waiting.sql"),
    ),
    (
        "0012_history.sql",
        include_str!("migrations/0012_history.sql"),
    ),
];

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory or database file cannot be used.
    #[error("store {path}: {source}")]
    Open {
        /// Database path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A migration failed; the database is left at the previous version.
    #[error("store migration {name} failed: {source}")]
    Migration {
        /// Migration file name.
        name: &'static str,
        /// SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database is newer than this agent.
    #[error(
        "store schema version {found} is newer than this agent knows ({known}); refusing to touch it"
    )]
    TooNew {
        /// Version found.
        found: i64,
        /// Latest version known.
        known: i64,
    },
    /// A query failed.
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The database can be read but not written by this user.
    #[error(
        "store {path}: this user can read it but not write it (was it created by another user, such as root?); give the files to the agent's user, for example: chown -R fleet-agent: {}",
        path.parent().map_or_else(String::new, |d| d.display().to_string())
    )]
    ReadOnly {
        /// Database path.
        path: PathBuf,
    },
    /// `secret.key` is missing while the store holds secrets sealed with it.
    #[error(
        "{path} is missing, but the store holds secrets sealed with it (the activation, the proxy password, printer credentials); restore the file from a backup, or move fleet-agent.db aside to start over (the agent then needs a new activation)"
    )]
    KeyMissing {
        /// The key file's path.
        path: PathBuf,
    },
    /// `secret.key` does not open the store's sealed secrets.
    #[error(
        "{path} is not the key the store's secrets were sealed with (was it replaced?); restore the original file, or move fleet-agent.db aside to start over (the agent then needs a new activation)"
    )]
    KeyMismatch {
        /// The key file's path.
        path: PathBuf,
    },
    /// `secret.key` can be read by other users.
    #[error(
        "{path} can be read by other users (mode {mode:o}); it must be readable by the agent's user only: chmod 600 {path}"
    )]
    KeyExposed {
        /// The key file's path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// The database's file name in the state directory.
pub const DB_FILE: &str = "fleet-agent.db";

/// Whether SQLite calls the file damaged (rather than, say, unreadable).
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Opens the database file and checks it; `Err(Ok(why))` says it is damaged.
fn open_checked(path: &Path) -> Result<Connection, Result<String, rusqlite::Error>> {
    let sort = |e: rusqlite::Error| {
        if is_damage(&e) {
            Ok(e.to_string())
        } else {
            Err(e)
        }
    };
    let conn = Connection::open(path).map_err(sort)?;
    // Before anything else: switching to WAL and the check wait for another process
    // opening the same store (`fleet-agent status` while the service starts) instead of
    // failing at once with "database is locked".
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sort)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sort)?;
    // At most 20 problems: the first is enough to decide, the rest go to the log.
    let problems: Vec<String> = {
        let mut st = conn.prepare("PRAGMA quick_check(20)").map_err(sort)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).map_err(sort)?;
        rows.collect::<Result<_, _>>().map_err(sort)?
    };
    if problems.len() == 1 && problems[0] == "ok" {
        Ok(conn)
    } else {
        Err(Ok(problems.join("; ")))
    }
}

/// The settings rows (name, value, encrypted) a damaged database still gives.
fn salvage_settings(path: &Path) -> Vec<(String, String, i64)> {
    let Ok(c) = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return vec![];
    };
    let Ok(mut st) = c.prepare("SELECT name, value, encrypted FROM settings") else {
        return vec![];
    };
    let Ok(rows) = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))) else {
        return vec![];
    };
    // Rows after the first unreadable one are lost with the damage.
    rows.map_while(Result::ok).collect()
}

/// Health of a printer as the poller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    /// Not polled yet.
    Unknown,
    /// Last poll succeeded.
    Ok,
    /// Missed one or more polls, below the not-communicating threshold.
    Suspect,
    /// Missed at least the configured number of polls.
    NotCommunicating,
    /// Answers but refuses the agent's credentials (SNMPv3 unknown user, wrong digest or
    /// pass phrase, unsupported security level): retrying does not help, an admin must
    /// update them.
    NeedsCredentials,
}

impl Health {
    /// Stable text form (stored, shown and used as a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Suspect => "suspect",
            Health::NotCommunicating => "not_communicating",
            Health::NeedsCredentials => "needs_credentials",
        }
    }

    fn parse(s: &str) -> Health {
        match s {
            "ok" => Health::Ok,
            "suspect" => Health::Suspect,
            "not_communicating" => Health::NotCommunicating,
            "needs_credentials" => Health::NeedsCredentials,
            _ => Health::Unknown,
        }
    }
}

/// One event to record.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Event {
    /// Event kind (`counterReset`, `supplyReplaced`, `healthChanged`, ...).
    pub kind: &'static str,
    /// Details (JSON).
    pub detail: serde_json::Value,
}

/// What a successful poll stores.
#[derive(Clone, Debug)]
pub struct Success {
    /// Serial number.
    pub serial: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// The report, JSON; `None` when it equals the stored one apart from its times (the
    /// stored report is then kept; `last_seen_ms` says when it was confirmed).
    pub report: Option<String>,
    /// How its agent must be asked, when this poll learned or re-probed it: `Some(None)`
    /// for an ordinary agent, `Some(Some(json))` for quirks; `None` leaves them as stored.
    pub quirks: Option<Option<String>>,
    /// The day's point of its trends, when the reading changed.
    pub point: Option<Point>,
}

/// A printer's trend point: page count and supply levels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Point {
    /// Lifetime page count.
    pub pages: Option<u64>,
    /// Each supply: its key, and its level (percent remaining, or filled for a
    /// receptacle; `None` without a number).
    pub levels: Vec<(String, Option<u8>)>,
}

/// Days of trend points kept per printer.
pub const HISTORY_DAYS: i64 = 400;

/// A stored trend point: the day (days since the epoch, UTC), page count, and each
/// supply's key and level.
pub type HistoryRow = (i64, Option<u64>, Vec<(String, Option<u8>)>);

/// Events kept per printer, the newest (health changes, counter resets, supplies
/// replaced, alerts, moves, quirks): a printer raising and clearing an alert every poll
/// for years would otherwise grow the store without end (the outage bench's printers,
/// printing 40 times faster than real ones, added 40,000 rows an hour at 10,000
/// printers). 100 rows of about 110 bytes: at most 11 MB per 1,000 printers.
pub const EVENTS_KEPT: i64 = 100;

/// A printer's remembered agent quirks ([`Store::printer_quirks`]).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredQuirks {
    /// Printer row id.
    pub printer_id: i64,
    /// Its address (`ip:port`).
    pub address: String,
    /// JSON of `fleet_snmp::quirks::Quirks`.
    pub quirks: String,
    /// When they were learned or last re-probed (epoch ms).
    pub learned_ms: i64,
}

/// Reads quirks as the store keeps them (JSON of `fleet_snmp::quirks::Quirks`), within
/// their bounds: a stored row is input like any other.
///
/// # Errors
/// When the JSON is not quirks.
pub fn read_quirks(json: &str) -> Result<fleet_snmp::quirks::Quirks, serde_json::Error> {
    serde_json::from_str::<fleet_snmp::quirks::Quirks>(json)
        .map(fleet_snmp::quirks::Quirks::bounded)
}

/// The outcome of one poll, written in one transaction with others.
#[derive(Clone, Debug)]
pub struct PollRecord {
    /// Printer row id.
    pub printer_id: i64,
    /// When the poll ended (epoch ms).
    pub at_ms: i64,
    /// Health after this poll.
    pub health: Health,
    /// Why (error text) when not ok.
    pub reason: Option<String>,
    /// Consecutive failures after this poll.
    pub failures: u32,
    /// On success: identity and the report JSON.
    pub success: Option<Success>,
    /// Events produced by this poll.
    pub events: Vec<Event>,
}

/// A printer row as `status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterRow {
    /// Row id.
    pub id: i64,
    /// Address.
    pub address: String,
    /// Serial number.
    pub serial: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Health.
    pub health: Health,
    /// Why, when not ok.
    pub health_reason: Option<String>,
    /// Consecutive failed polls.
    pub consecutive_failures: u32,
    /// Last successful poll (epoch ms).
    pub last_seen_ms: Option<i64>,
    /// Last attempt (epoch ms).
    pub last_attempt_ms: Option<i64>,
    /// Since when it has this health (epoch ms).
    pub health_since_ms: Option<i64>,
    /// How its SNMP agent must be asked (JSON of `fleet_snmp::quirks::Quirks`), if it
    /// needs anything unusual.
    #[serde(skip)]
    pub quirks: Option<String>,
}

/// A device as discovery records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    /// Stable identity.
    pub device_key: String,
    /// Serial.
    pub serial: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// MAC.
    pub mac: Option<String>,
    /// mDNS UUID.
    pub mdns_uuid: Option<String>,
    /// Last address (`ip:port`).
    pub address: Option<String>,
    /// SNMP profile that last worked.
    pub profile: Option<String>,
    /// How it was seen (`snmp,mdns`).
    pub sources: String,
}

/// A recorded address change: (from, to).
pub type Move = (Option<String>, Option<String>);

/// Per device key: (new to the store, previous address when it moved).
pub type Moves = std::collections::HashMap<String, (bool, Option<String>)>;

/// A handle on the database. Cheap to clone; calls are blocking (run them off the
/// async reactor with `spawn_blocking`).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Signalled when a message is queued, so the sender waits for work instead of
    /// querying the outbox on a timer.
    queued: Arc<tokio::sync::Notify>,
    /// Signalled when a printer's health or quirks changed, so the heartbeat tells the
    /// cloud soon instead of at its next period.
    status_changed: Arc<tokio::sync::Notify>,
    /// What the upload rule needs of each printer's sent state, kept in memory so a poll
    /// that changes nothing the rule looks at costs no read of the stored state
    /// (`outbox::SentMemo`). Changed only while the connection lock is held, so it
    /// always agrees with `sent_state`.
    sent_memo: Arc<Mutex<std::collections::HashMap<String, outbox::SentMemo>>>,
}

/// Applies `migrations` after the first `current` ones, each in its own transaction that
/// also records its number in `PRAGMA user_version`; a failure names the migration and
/// leaves the database at the previous version. Shared by the agent's store and the
/// reference cloud's database.
pub(crate) fn migrate(
    conn: &mut Connection,
    migrations: &[(&'static str, &'static str)],
    current: i64,
) -> Result<(), StoreError> {
    for (i, (name, sql)) in migrations.iter().enumerate().skip(current as usize) {
        let tx = conn
            .transaction()
            .map_err(|source| StoreError::Migration { name, source })?;
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration { name, source })?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|source| StoreError::Migration { name, source })?;
        tx.commit()
            .map_err(|source| StoreError::Migration { name, source })?;
    }
    Ok(())
}

impl Store {
    /// Opens (creating) `fleet-agent.db` in `dir`, which is created owner-only.
    ///
    /// # Errors
    /// When the directory or file cannot be used, or a migration fails.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.clone(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
        fleet_secret::owner_only::restrict(dir).map_err(|e| open_err(Box::new(e)))?;
        match open_checked(&path) {
            // SQLite falls back to read-only when the file is not writable (say, created by
            // `sudo fleet-agent discover`): say so now, not at the first write.
            Ok(conn) if conn.is_readonly(rusqlite::MAIN_DB)? => Err(StoreError::ReadOnly { path }),
            Ok(conn) => Self::init(conn),
            Err(Err(e)) => Err(open_err(Box::new(e))),
            Err(Ok(why)) => {
                let aside = Self::set_aside(dir, &path).map_err(|e| open_err(Box::new(e)))?;
                let kept = salvage_settings(&aside);
                tracing::error!(
                    store = %path.display(),
                    moved_to = %aside.display(),
                    problem = %why,
                    settings_kept = kept.len(),
                    "The store is damaged: it was moved aside and a new one started. Printers and history are read again from the network; the activation and credentials were kept where they could be read."
                );
                let conn = open_checked(&path).map_err(|e| match e {
                    Ok(why) => open_err(why.into()),
                    Err(e) => open_err(Box::new(e)),
                })?;
                let store = Self::init(conn)?;
                store.restore_settings(&kept)?;
                Ok(store)
            }
        }
    }

    /// Renames a damaged database (and its WAL and shared-memory files) to
    /// `fleet-agent.db.damaged-<epoch ms>`; returns the new path of the database.
    fn set_aside(dir: &Path, path: &Path) -> std::io::Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let aside = dir.join(format!("{DB_FILE}.damaged-{stamp}"));
        std::fs::rename(path, &aside)?;
        for ext in ["-wal", "-shm"] {
            let from = dir.join(format!("{DB_FILE}{ext}"));
            if from.exists() {
                std::fs::rename(&from, dir.join(format!("{DB_FILE}.damaged-{stamp}{ext}")))?;
            }
        }
        Ok(aside)
    }

    fn restore_settings(&self, rows: &[(String, String, i64)]) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        for (name, value, encrypted) in rows {
            tx.execute(
                "INSERT OR REPLACE INTO settings(name, value, encrypted) VALUES (?1, ?2, ?3)",
                params![name, value, encrypted],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Opens a private in-memory database (tests, benchmarks).
    ///
    /// # Errors
    /// When a migration fails.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store, StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement a poll runs stays prepared (rusqlite keeps 16 by default; the
        // agent's hot path uses more, and re-parsing SQL showed in profiles).
        conn.set_prepared_statement_cache_capacity(64);
        let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StoreError::TooNew {
                found: current,
                known,
            });
        }
        migrate(&mut conn, MIGRATIONS, current)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            queued: Arc::new(tokio::sync::Notify::new()),
            status_changed: Arc::new(tokio::sync::Notify::new()),
            sent_memo: Arc::default(),
        })
    }

    fn conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock()
    }

    /// Returns the row id of `address`, creating the row.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn printer_id(&self, address: &str) -> Result<i64, StoreError> {
        let c = self.conn();
        c.execute(
            "INSERT INTO printers(address) VALUES (?1) ON CONFLICT(address) DO NOTHING",
            params![address],
        )?;
        Ok(c.query_row(
            "SELECT id FROM printers WHERE address = ?1",
            params![address],
            |r| r.get(0),
        )?)
    }

    /// Gives a printer's row (its id, readings, quirks, health) a new address: the
    /// printer moved (recorded as its `moved` event at `at_ms`). False when no row is at
    /// `from`, or one is at `to` already (both are then left as they are).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn move_printer(&self, from: &str, to: &str, at_ms: i64) -> Result<bool, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM printers WHERE address = ?1)",
            params![to],
            |r| r.get(0),
        )?;
        if taken {
            return Ok(false);
        }
        let n = tx.execute(
            "UPDATE printers SET address = ?2 WHERE address = ?1",
            params![from, to],
        )?;
        if n > 0 {
            tx.execute(
                "INSERT INTO events(printer_id, at_ms, kind, detail) SELECT id, ?2, 'moved', ?3 FROM printers WHERE address = ?1",
                params![to, at_ms, serde_json::json!({"from": from, "to": to}).to_string()],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// The remembered agent quirks of every printer that has some (or was re-probed).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn printer_quirks(&self) -> Result<Vec<StoredQuirks>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare_cached(
            "SELECT id, quirks, quirks_learned_ms, address FROM printers WHERE quirks IS NOT NULL AND quirks_learned_ms IS NOT NULL",
        )?;
        let rows = st.query_map([], |r| {
            Ok(StoredQuirks {
                printer_id: r.get(0)?,
                quirks: r.get(1)?,
                learned_ms: r.get(2)?,
                address: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remembers how a printer's agent must be asked (JSON of the quirks; `None`: the
    /// plain way), learned at `at_ms` (discovery learns them before the first poll).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_quirks(
        &self,
        printer_id: i64,
        quirks: Option<&str>,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE printers SET quirks = ?2, quirks_learned_ms = ?3 WHERE id = ?1",
            params![printer_id, quirks, at_ms],
        )?;
        Ok(())
    }

    /// Writes a batch of poll outcomes in one transaction.
    ///
    /// # Errors
    /// On SQL failure (nothing of the batch is written).
    pub fn save_polls(&self, batch: &[PollRecord]) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        {
            let mut up_ok = tx.prepare_cached(
                "UPDATE printers SET serial = ?2, manufacturer = ?3, model = ?4, health = ?5, health_reason = NULL,
                 health_since_ms = CASE WHEN health IS ?5 THEN COALESCE(health_since_ms, ?6) ELSE ?6 END,
                 consecutive_failures = 0, first_seen_ms = COALESCE(first_seen_ms, ?6), last_seen_ms = ?6, last_attempt_ms = ?6
                 WHERE id = ?1",
            )?;
            let mut up_fail = tx.prepare_cached(
                "UPDATE printers SET health = ?2, health_reason = ?3, consecutive_failures = ?4, last_attempt_ms = ?5,
                 health_since_ms = CASE WHEN health IS ?2 THEN COALESCE(health_since_ms, ?5) ELSE ?5 END WHERE id = ?1",
            )?;
            let mut state = tx.prepare_cached(
                "INSERT INTO latest_state(printer_id, collected_at_ms, report) VALUES (?1, ?2, ?3)
                 ON CONFLICT(printer_id) DO UPDATE SET collected_at_ms = excluded.collected_at_ms, report = excluded.report",
            )?;
            let mut ev = tx.prepare_cached(
                "INSERT INTO events(printer_id, at_ms, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut quirks = tx.prepare_cached(
                "UPDATE printers SET quirks = ?2, quirks_learned_ms = ?3 WHERE id = ?1",
            )?;
            // Through the (printer_id, id) index: a step per event kept, not a scan.
            let mut prune_events = tx.prepare_cached(
                "DELETE FROM events WHERE printer_id = ?1 AND id < (SELECT id FROM events WHERE printer_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )?;
            let mut last_keys = tx.prepare_cached(
                "SELECT keys FROM history WHERE printer_id = ?1 AND day < ?2 AND keys IS NOT NULL ORDER BY day DESC LIMIT 1",
            )?;
            let mut point = tx.prepare_cached(
                "INSERT OR REPLACE INTO history(printer_id, day, pages, levels, keys) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut old_keys = tx.prepare_cached(
                "SELECT keys FROM history WHERE printer_id = ?1 AND day < ?2 AND keys IS NOT NULL ORDER BY day DESC LIMIT 1",
            )?;
            // The supply keys live on the point where they changed: the oldest point kept
            // takes them over from the points that expire.
            let mut keep_keys = tx.prepare_cached(
                "UPDATE history SET keys = ?3 WHERE printer_id = ?1 AND keys IS NULL
                 AND day = (SELECT MIN(day) FROM history WHERE printer_id = ?1 AND day >= ?2)",
            )?;
            let mut expire =
                tx.prepare_cached("DELETE FROM history WHERE printer_id = ?1 AND day < ?2")?;
            for r in batch {
                match &r.success {
                    Some(ok) => {
                        up_ok.execute(params![
                            r.printer_id,
                            ok.serial,
                            ok.manufacturer,
                            ok.model,
                            r.health.as_str(),
                            r.at_ms
                        ])?;
                        if let Some(report) = &ok.report {
                            state.execute(params![r.printer_id, r.at_ms, report])?;
                        }
                        if let Some(q) = &ok.quirks {
                            quirks.execute(params![r.printer_id, q, r.at_ms])?;
                        }
                        if let Some(p) = &ok.point {
                            let day = r.at_ms.div_euclid(86_400_000);
                            let keys = p
                                .levels
                                .iter()
                                .map(|(k, _)| k.as_str())
                                .collect::<Vec<_>>()
                                .join(",");
                            let before: Option<String> = last_keys
                                .query_row(params![r.printer_id, day], |row| row.get(0))
                                .optional()?;
                            let levels: Vec<u8> =
                                p.levels.iter().map(|(_, l)| l.unwrap_or(255)).collect();
                            let pages = p.pages.and_then(|n| i64::try_from(n).ok());
                            let keys = (before.as_deref() != Some(keys.as_str())).then_some(keys);
                            point.execute(params![r.printer_id, day, pages, levels, keys])?;
                            let oldest = day - HISTORY_DAYS;
                            let expiring: Option<String> = old_keys
                                .query_row(params![r.printer_id, oldest], |row| row.get(0))
                                .optional()?;
                            if let Some(k) = expiring {
                                keep_keys.execute(params![r.printer_id, oldest, k])?;
                            }
                            expire.execute(params![r.printer_id, oldest])?;
                        }
                    }
                    None => {
                        up_fail.execute(params![
                            r.printer_id,
                            r.health.as_str(),
                            r.reason,
                            r.failures,
                            r.at_ms
                        ])?;
                    }
                }
                for e in &r.events {
                    ev.execute(params![r.printer_id, r.at_ms, e.kind, e.detail.to_string()])?;
                }
                if !r.events.is_empty() {
                    prune_events.execute(params![r.printer_id, EVENTS_KEPT - 1])?;
                }
            }
        }
        tx.commit()?;
        let changed = batch
            .iter()
            .flat_map(|r| &r.events)
            .any(|e| e.kind == "healthChanged" || e.kind == "quirksLearned");
        if changed {
            self.status_changed.notify_one();
        }
        Ok(())
    }

    /// A printer's trend points, oldest first, each with its supplies' keys (carried from
    /// the point that last stored them).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn history(&self, printer_id: i64) -> Result<Vec<HistoryRow>, StoreError> {
        let c = self.conn();
        let mut q = c.prepare_cached(
            "SELECT day, pages, levels, keys FROM history WHERE printer_id = ?1 ORDER BY day",
        )?;
        let rows = q.query_map(params![printer_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut keys: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for row in rows {
            let (day, pages, levels, k) = row?;
            if let Some(k) = k {
                keys = k
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            let levels = keys
                .iter()
                .zip(levels)
                .map(|(k, l)| (k.clone(), (l <= 100).then_some(l)))
                .collect();
            out.push((day, pages.and_then(|p| u64::try_from(p).ok()), levels));
        }
        Ok(out)
    }

    /// Completes once a printer's health or quirks changed through this handle or a clone
    /// of it since the last call returned.
    pub async fn status_changed(&self) {
        self.status_changed.notified().await;
    }

    /// Lists every printer.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn printers(&self) -> Result<Vec<PrinterRow>, StoreError> {
        let c = self.conn();
        let mut q = c.prepare(
            "SELECT id, address, serial, manufacturer, model, health, health_reason, consecutive_failures, last_seen_ms, last_attempt_ms,
                    health_since_ms, quirks
             FROM printers ORDER BY id",
        )?;
        let rows = q
            .query_map([], |r| {
                Ok(PrinterRow {
                    id: r.get(0)?,
                    address: r.get(1)?,
                    serial: r.get(2)?,
                    manufacturer: r.get(3)?,
                    model: r.get(4)?,
                    health: Health::parse(&r.get::<_, String>(5)?),
                    health_reason: r.get(6)?,
                    consecutive_failures: r.get(7)?,
                    last_seen_ms: r.get(8)?,
                    last_attempt_ms: r.get(9)?,
                    health_since_ms: r.get(10)?,
                    quirks: r.get(11)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Returns the latest report JSON of a printer.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn latest_report(&self, printer_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT report FROM latest_state WHERE printer_id = ?1",
                params![printer_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Lists every discovered device.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        let c = self.conn();
        let mut q = c.prepare(
            "SELECT device_key, serial, manufacturer, model, mac, mdns_uuid, address, profile, sources FROM devices ORDER BY id",
        )?;
        let rows = q
            .query_map([], |r| {
                Ok(DeviceRecord {
                    device_key: r.get(0)?,
                    serial: r.get(1)?,
                    manufacturer: r.get(2)?,
                    model: r.get(3)?,
                    mac: r.get(4)?,
                    mdns_uuid: r.get(5)?,
                    address: r.get(6)?,
                    profile: r.get(7)?,
                    sources: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records a discovery run in one transaction: upserts `devices` (recording a move
    /// when a known device answers at a new address; another device at that address
    /// loses it) and replaces the per-IP report with `results` (address, outcome code,
    /// detail JSON). Returns, per device key, whether it was new and where it moved from.
    ///
    /// # Errors
    /// On SQL failure (nothing is written).
    pub fn save_discovery(
        &self,
        at_ms: i64,
        devices: &[DeviceRecord],
        results: &[(String, String, String)],
    ) -> Result<Moves, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let mut moves = Moves::new();
        for d in devices {
            let old: Option<(i64, Option<String>)> = tx
                .query_row(
                    "SELECT id, address FROM devices WHERE device_key = ?1",
                    params![d.device_key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            // The address now belongs to this device only.
            tx.execute(
                "UPDATE devices SET address = NULL WHERE address = ?1 AND device_key <> ?2",
                params![d.address, d.device_key],
            )?;
            match old {
                Some((id, prev)) => {
                    let moved = prev
                        .as_ref()
                        .filter(|p| Some(*p) != d.address.as_ref())
                        .cloned();
                    if let Some(from) = &moved {
                        tx.execute(
                            "INSERT INTO device_moves(device_id, at_ms, from_address, to_address) VALUES (?1, ?2, ?3, ?4)",
                            params![id, at_ms, from, d.address],
                        )?;
                    }
                    tx.execute(
                        "UPDATE devices SET serial = COALESCE(?2, serial), manufacturer = COALESCE(?3, manufacturer), model = COALESCE(?4, model),
                         mac = COALESCE(?5, mac), mdns_uuid = COALESCE(?6, mdns_uuid), address = ?7, profile = COALESCE(?8, profile),
                         sources = ?9, last_seen_ms = ?10 WHERE id = ?1",
                        params![id, d.serial, d.manufacturer, d.model, d.mac, d.mdns_uuid, d.address, d.profile, d.sources, at_ms],
                    )?;
                    moves.insert(d.device_key.clone(), (false, moved));
                }
                None => {
                    tx.execute(
                        "INSERT INTO devices(device_key, serial, manufacturer, model, mac, mdns_uuid, address, profile, sources, first_seen_ms, last_seen_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
                        params![d.device_key, d.serial, d.manufacturer, d.model, d.mac, d.mdns_uuid, d.address, d.profile, d.sources, at_ms],
                    )?;
                    moves.insert(d.device_key.clone(), (true, None));
                }
            }
        }
        tx.execute("DELETE FROM discovery_results", [])?;
        {
            let mut ins = tx.prepare_cached("INSERT INTO discovery_results(address, outcome, detail, at_ms) VALUES (?1, ?2, ?3, ?4)")?;
            for (a, o, d) in results {
                ins.execute(params![a, o, d, at_ms])?;
            }
        }
        tx.commit()?;
        Ok(moves)
    }

    /// Returns the last discovery run's per-IP report rows (detail JSON).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn discovery_results(&self) -> Result<Vec<String>, StoreError> {
        let c = self.conn();
        let mut q = c.prepare("SELECT detail FROM discovery_results ORDER BY rowid")?;
        let rows = q
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Returns the recorded moves of a device: (from, to).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn device_moves(&self, device_key: &str) -> Result<Vec<Move>, StoreError> {
        let c = self.conn();
        let mut q = c.prepare(
            "SELECT m.from_address, m.to_address FROM device_moves m JOIN devices d ON d.id = m.device_id WHERE d.device_key = ?1 ORDER BY m.id",
        )?;
        let rows = q
            .query_map(params![device_key], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Returns the events of a printer, oldest first: (at_ms, kind, detail JSON); at
    /// most [`EVENTS_KEPT`].
    ///
    /// # Errors
    /// On SQL failure.
    pub fn events(&self, printer_id: i64) -> Result<Vec<(i64, String, String)>, StoreError> {
        let c = self.conn();
        let mut q =
            c.prepare("SELECT at_ms, kind, detail FROM events WHERE printer_id = ?1 ORDER BY id")?;
        let rows = q
            .query_map(params![printer_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A printer's events are bounded: the newest EVENTS_KEPT stay, other printers' are
    /// untouched.
    #[test]
    fn each_printer_keeps_its_newest_events_only() {
        let s = Store::open_in_memory().unwrap();
        let (a, b) = (
            s.printer_id("127.0.0.1:161").unwrap(),
            s.printer_id("127.0.0.2:161").unwrap(),
        );
        let poll = |id: i64, at_ms: i64, n: usize| PollRecord {
            printer_id: id,
            at_ms,
            health: Health::Suspect,
            reason: Some("timeout".into()),
            failures: 1,
            success: None,
            events: (0..n)
                .map(|i| Event {
                    kind: "alertRaised",
                    detail: serde_json::json!({ "n": at_ms * 10 + i as i64 }),
                })
                .collect(),
        };
        s.save_polls(&[poll(b, 0, 3)]).unwrap();
        for t in 1..=120 {
            s.save_polls(&[poll(a, t, 5)]).unwrap();
        }
        let ev = s.events(a).unwrap();
        assert_eq!(ev.len() as i64, EVENTS_KEPT);
        // The oldest kept is the 100th newest of 600: poll 101's first event.
        assert_eq!(ev[0].2, r#"{"n":1010}"#);
        assert_eq!(ev.last().unwrap().2, r#"{"n":1204}"#);
        assert_eq!(s.events(b).unwrap().len(), 3);
    }

    /// One point a day, 400 days kept, and the supply keys (stored where they change)
    /// survive the expiry of the point that held them.
    #[test]
    fn trend_points_expire_and_keep_their_supply_keys() {
        let s = Store::open_in_memory().unwrap();
        let id = s.printer_id("192.0.2.1:161").unwrap();
        let poll = |day: i64, level: u8| PollRecord {
            printer_id: id,
            at_ms: day * 86_400_000 + 1,
            health: Health::Ok,
            reason: None,
            failures: 0,
            success: Some(Success {
                serial: None,
                manufacturer: None,
                model: None,
                report: None,
                quirks: None,
                point: Some(Point {
                    pages: Some(u64::try_from(day).unwrap()),
                    levels: vec![("m:1.1".into(), Some(level)), ("m:1.2".into(), None)],
                }),
            }),
            events: vec![],
        };
        for day in 0..450 {
            s.save_polls(&[poll(day, u8::try_from(100 - day / 5).unwrap())])
                .unwrap();
        }
        let h = s.history(id).unwrap();
        assert_eq!(h.len(), 401, "400 days back from the last");
        assert_eq!(h[0].0, 49);
        assert_eq!(
            h[0].2,
            [("m:1.1".to_string(), Some(91)), ("m:1.2".to_string(), None)],
            "the keys outlive the point that held them"
        );
        assert_eq!(h[400].2[0], ("m:1.1".to_string(), Some(11)));
    }

    #[test]
    fn migrates_saves_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let id = s.printer_id("127.0.0.1:161").unwrap();
        assert_eq!(s.printer_id("127.0.0.1:161").unwrap(), id);
        s.save_polls(&[PollRecord {
            printer_id: id,
            at_ms: 1000,
            health: Health::Ok,
            reason: None,
            failures: 0,
            success: Some(Success {
                serial: Some("SN1".into()),
                manufacturer: Some("Acme".into()),
                model: Some("M1".into()),
                report: Some("{\"a\":1}".into()),
                quirks: None,
                point: None,
            }),
            events: vec![Event {
                kind: "counterReset",
                detail: serde_json::json!({"from": 10, "to": 2}),
            }],
        }])
        .unwrap();
        s.save_polls(&[PollRecord {
            printer_id: id,
            at_ms: 2000,
            health: Health::Suspect,
            reason: Some("timeout".into()),
            failures: 1,
            success: None,
            events: vec![],
        }])
        .unwrap();
        drop(s);
        // Reopening keeps everything and does not re-run migrations.
        let s = Store::open(dir.path()).unwrap();
        let p = &s.printers().unwrap()[0];
        assert_eq!(p.serial.as_deref(), Some("SN1"));
        assert_eq!(p.health, Health::Suspect);
        assert_eq!(p.health_reason.as_deref(), Some("timeout"));
        assert_eq!(p.last_seen_ms, Some(1000));
        assert_eq!(p.last_attempt_ms, Some(2000));
        assert_eq!(s.latest_report(id).unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(s.events(id).unwrap()[0].1, "counterReset");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(files, embedded);
    }

    #[test]
    fn a_newer_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let c = Connection::open(dir.path().join("fleet-agent.db")).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = Store::open(dir.path()).err().unwrap();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
    }

    /// A store in `dir` with an activation and 2,000 printers, checkpointed into its
    /// main file (no WAL left), so that damage to that file is damage to the data; returns
    /// the file's path.
    fn activated_with_printers(dir: &Path) -> std::path::PathBuf {
        let s = Store::open(dir).unwrap();
        s.set_setting("cloud.agent_id", "agent-7").unwrap();
        for i in 0..2000 {
            s.printer_id(&format!("192.0.2.{}:{}", i % 250, 161 + i))
                .unwrap();
        }
        drop(s);
        let path = dir.join(DB_FILE);
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
        drop(c);
        path
    }

    /// The finding: a truncated store made every start fail (a restart loop).
    #[test]
    fn a_damaged_store_is_moved_aside_and_a_fresh_one_started() {
        let dir = tempfile::tempdir().unwrap();
        // Checkpointed into the main file, then cut in half.
        let path = activated_with_printers(dir.path());
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len / 2).unwrap();
        drop(f);
        let s = Store::open(dir.path()).expect("a fresh store");
        // The settings are kept only when their pages survived; cut in half they did not.
        assert!(s.printers().unwrap().is_empty());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".damaged-"))
            .collect();
        assert!(
            !aside.is_empty(),
            "the damaged file is kept for a post-mortem"
        );
        drop(s);
        // Garbage in place of the database: the same.
        std::fs::write(&path, vec![0x5au8; 100_000]).unwrap();
        std::fs::remove_file(dir.path().join(format!("{DB_FILE}-wal"))).ok();
        let s = Store::open(dir.path()).expect("a fresh store over garbage");
        assert!(s.setting("cloud.agent_id").unwrap().is_none());
    }

    /// Damage that spares the settings' pages keeps the activation and sealed secrets.
    #[test]
    fn a_store_damaged_elsewhere_keeps_its_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = activated_with_printers(dir.path());
        // The last quarter of the file (the printers written last) overwritten with noise,
        // the file's length unchanged.
        let mut bytes = std::fs::read(&path).unwrap();
        let from = bytes.len() * 3 / 4;
        for (i, b) in bytes[from..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) ^ 0xa5;
        }
        std::fs::write(&path, bytes).unwrap();
        let s = Store::open(dir.path()).expect("a fresh store");
        assert!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().contains(".damaged-")),
            "it was found damaged and moved aside"
        );
        assert!(s.printers().unwrap().is_empty(), "a fresh store");
        assert_eq!(
            s.setting("cloud.agent_id").unwrap().as_deref(),
            Some("agent-7"),
            "the activation is kept"
        );
    }

    #[test]
    fn a_failed_migration_is_named() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A table that collides with the first migration.
        conn.execute_batch("CREATE TABLE printers(x);").unwrap();
        let tx = conn.transaction().unwrap();
        tx.commit().unwrap();
        let e = Store::init(conn).err().unwrap();
        assert!(e.to_string().contains("0001_init.sql"), "{e}");
    }
}
