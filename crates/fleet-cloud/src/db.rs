//! The reference cloud's database (SQLite; migrations in `migrations/`, applied in order
//! and recorded in `user_version`): agent instances and their activation codes, client
//! credentials and tokens, received message ids (idempotency), heartbeats, jobs, their
//! files and schedules, and the assembled printer assets.
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;

const MIGRATIONS: &[(&str, &str)] = &[
    (
        "refcloud 0001_init.sql",
        include_str!("../migrations/0001_init.sql"),
    ),
    (
        "refcloud 0002_heartbeats.sql",
        include_str!("../migrations/0002_heartbeats.sql"),
    ),
    (
        "refcloud 0003_applied_reports.sql",
        include_str!("../migrations/0003_applied_reports.sql"),
    ),
    (
        "refcloud 0004_jobs.sql",
        include_str!("../migrations/0004_jobs.sql"),
    ),
    (
        "refcloud 0005_job_files.sql",
        include_str!("../migrations/0005_job_files.sql"),
    ),
    (
        "refcloud 0006_ownership_moves.sql",
        include_str!("../migrations/0006_ownership_moves.sql"),
    ),
    (
        "refcloud 0007_schedules.sql",
        include_str!("../migrations/0007_schedules.sql"),
    ),
    (
        "refcloud 0008_printer_status.sql",
        include_str!("../migrations/0008_printer_status.sql"),
    ),
    (
        "refcloud 0009_calendar_schedules.sql",
        include_str!("../migrations/0009_calendar_schedules.sql"),
    ),
    (
        "refcloud 0010_assets_by_serial.sql",
        include_str!("../migrations/0010_assets_by_serial.sql"),
    ),
];

/// Why the database failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The directory or file cannot be used.
    #[error("database {path}: {source}")]
    Open {
        /// Where.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A migration failed; the database is left at the previous version.
    #[error("database migration {name} failed: {source}")]
    Migration {
        /// Migration file name.
        name: &'static str,
        /// SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database is newer than this cloud.
    #[error("database schema version {found} is newer than this cloud knows ({known})")]
    TooNew {
        /// Version found.
        found: i64,
        /// Latest version known.
        known: i64,
    },
    /// A query failed.
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// Applies the migrations after `current`, each in its own transaction with the new
/// `user_version`, so a failure leaves the database at the last good version.
fn migrate(conn: &mut Connection, current: i64) -> Result<(), DbError> {
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let fail = |source| DbError::Migration { name, source };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

/// Pending jobs expire after a week undelivered (SEED-AGENT.md §2.3).
pub const PENDING_MS: i64 = 7 * 24 * 3600 * 1000;
/// Jobs in progress expire after 24 h.
pub const IN_PROGRESS_MS: i64 = 24 * 3600 * 1000;

/// One job as the cloud keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Job id.
    pub job_id: String,
    /// Agent it is for.
    pub agent_id: String,
    /// Job type (`refresh`, `discover`, …).
    pub kind: String,
    /// Target printer (JSON), for printer jobs.
    pub printer: Option<String>,
    /// Parameters (JSON).
    pub params: String,
    /// pending, inProgress, completed, failed, stopped, expired.
    pub state: String,
    /// Created (epoch ms).
    pub created_ms: i64,
    /// A pending job expires at this time (a firmware window's end).
    pub not_after_ms: Option<i64>,
    /// Acknowledged (epoch ms).
    pub ack_ms: Option<i64>,
    /// Finished (epoch ms).
    pub done_ms: Option<i64>,
    /// Last progress report (JSON).
    pub progress: Option<String>,
    /// Result (JSON).
    pub result: Option<String>,
}

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        job_id: r.get(0)?,
        agent_id: r.get(1)?,
        kind: r.get(2)?,
        printer: r.get(3)?,
        params: r.get(4)?,
        state: r.get(5)?,
        created_ms: r.get(6)?,
        not_after_ms: r.get(7)?,
        ack_ms: r.get(8)?,
        done_ms: r.get(9)?,
        progress: r.get(10)?,
        result: r.get(11)?,
    })
}

/// A recurring job (reference cloud).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    /// Its id.
    pub schedule_id: String,
    /// The agent its jobs go to.
    pub agent_id: String,
    /// Job type.
    pub kind: String,
    /// Period (0 for a calendar schedule).
    pub every_ms: i64,
    /// Calendar (`fleet_protocol::admin::Recurrence` as JSON).
    pub recurrence: Option<String>,
    /// When the next job is queued.
    pub next_ms: i64,
    /// When it last queued one.
    pub last_ms: Option<i64>,
}

/// A due schedule: id, agent, type, printer, params, period, next time, calendar.
type DueSchedule = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    Option<String>,
);

const JOB_COLUMNS: &str = "job_id, agent_id, kind, printer, params, state, created_ms, not_after_ms, ack_ms, done_ms, progress, result";

/// What a state change found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Done; the job's state now.
    Done(String),
    /// Not allowed from the state the job is in (named).
    Refused(String),
    /// No such job for this agent.
    Unknown,
}

/// One agent instance as the administration sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    /// Agent id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether its activation code was used.
    pub activated: bool,
    /// Last heartbeat: when (epoch ms) and its body (JSON).
    pub heartbeat: Option<(i64, String)>,
}

/// A printer's communication status as its agent reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterStatusRow {
    /// The address the agent polls.
    pub address: String,
    /// Its serial, once read (the asset's key).
    pub serial: Option<String>,
    /// The status as received (JSON of `fleet_protocol::heartbeat::PrinterStatus`).
    pub body: String,
    /// When the cloud received it (epoch ms; ignored when storing).
    pub received_ms: i64,
}

/// Most printer statuses kept per agent; the oldest received go first.
pub const MAX_PRINTER_STATUS_ROWS: i64 = 20_000;

/// Why an activation code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeProblem {
    /// No such code.
    Unknown,
    /// Past its 72 h.
    Expired,
    /// Already used.
    Used,
}

/// One stored asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRow {
    /// Owning agent.
    pub agent_id: String,
    /// Serial number.
    pub serial: String,
    /// Last applied report sequence.
    pub seq: u64,
    /// Keyed state (JSON).
    pub keyed: String,
    /// First accepted snapshot (epoch ms).
    pub date_created_ms: i64,
    /// Last change (epoch ms).
    pub date_modified_ms: i64,
    /// `collectedAt` of the last applied report.
    pub last_data_refresh: i64,
}

/// A handle on the reference cloud database.
#[derive(Clone)]
pub struct CloudDb {
    conn: Arc<Mutex<Connection>>,
}

impl CloudDb {
    /// Opens (creating) `fleet-cloud.db` in `dir`, or a private in-memory one with `None`.
    ///
    /// # Errors
    /// When the file cannot be opened or a migration fails.
    pub fn open(dir: Option<&Path>) -> Result<CloudDb, DbError> {
        let mut conn = match dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| DbError::Open {
                    path: d.to_path_buf(),
                    source: Box::new(e),
                })?;
                let c = Connection::open(d.join("fleet-cloud.db"))?;
                c.pragma_update(None, "journal_mode", "WAL")?;
                c
            }
            None => Connection::open_in_memory()?,
        };
        let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if current > MIGRATIONS.len() as i64 {
            return Err(DbError::TooNew {
                found: current,
                known: MIGRATIONS.len() as i64,
            });
        }
        migrate(&mut conn, current)?;
        Ok(CloudDb {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// An agent's settings document (JSON text), if the agent exists.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn settings(&self, agent_id: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT settings FROM agents WHERE id = ?1",
                params![agent_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Replaces an agent's settings document; false when there is no such agent.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_settings(&self, agent_id: &str, settings: &str) -> Result<bool, DbError> {
        Ok(self.conn().execute(
            "UPDATE agents SET settings = ?2 WHERE id = ?1",
            params![agent_id, settings],
        )? == 1)
    }

    /// What arrived over all agents: distinct upload message ids, reports applied, and
    /// distinct (agent, printer, sequence number) among them: equal when nothing was
    /// applied twice (benchmarks count a replayed backlog with it).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn upload_totals(&self) -> Result<(u64, u64, u64), DbError> {
        let c = self.conn();
        let ids: i64 = c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
        let (applied, distinct): (i64, i64) = c.query_row(
            "SELECT COUNT(*), (SELECT COUNT(*) FROM (SELECT DISTINCT agent_id, serial, seq FROM applied_reports)) FROM applied_reports",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((ids as u64, applied as u64, distinct as u64))
    }

    /// The sequence numbers of every report applied for one printer, in arrival order.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn applied_seqs(&self, agent_id: &str, serial: &str) -> Result<Vec<u64>, DbError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT seq FROM applied_reports WHERE agent_id = ?1 AND serial = ?2 ORDER BY rowid",
        )?;
        let rows = st.query_map(params![agent_id, serial], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|x| x as u64)
            .collect())
    }

    /// Queues a job.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn add_job(&self, j: &JobRecord) -> Result<(), DbError> {
        self.conn().execute(
            &format!("INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            params![j.job_id, j.agent_id, j.kind, j.printer, j.params, j.state, j.created_ms, j.not_after_ms, j.ack_ms, j.done_ms, j.progress, j.result],
        )?;
        Ok(())
    }

    /// Adds a recurring job: the first one is queued at `first_ms`, then one every
    /// `every_ms`, or on the calendar of `recurrence` (checked by the caller).
    ///
    /// # Errors
    /// On SQL failure.
    #[allow(clippy::too_many_arguments)]
    pub fn add_schedule(
        &self,
        schedule_id: &str,
        agent_id: &str,
        kind: &str,
        printer: Option<&str>,
        params: &str,
        every_ms: i64,
        recurrence: Option<&str>,
        first_ms: i64,
        now_ms: i64,
    ) -> Result<(), DbError> {
        self.conn().execute(
            "INSERT INTO schedules (schedule_id, agent_id, kind, printer, params, every_ms, next_ms, created_ms, recurrence)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![schedule_id, agent_id, kind, printer, params, every_ms, first_ms, now_ms, recurrence],
        )?;
        Ok(())
    }

    /// Every schedule.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn schedules(&self) -> Result<Vec<ScheduleRow>, DbError> {
        let c = self.conn();
        let mut q = c.prepare(
            "SELECT schedule_id, agent_id, kind, every_ms, next_ms, recurrence, last_ms FROM schedules ORDER BY created_ms, schedule_id",
        )?;
        let rows = q
            .query_map([], |r| {
                Ok(ScheduleRow {
                    schedule_id: r.get(0)?,
                    agent_id: r.get(1)?,
                    kind: r.get(2)?,
                    every_ms: r.get(3)?,
                    next_ms: r.get(4)?,
                    recurrence: r.get(5)?,
                    last_ms: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Ends a schedule (jobs it queued stay); false when there is none.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn remove_schedule(&self, schedule_id: &str) -> Result<bool, DbError> {
        Ok(self.conn().execute(
            "DELETE FROM schedules WHERE schedule_id = ?1",
            params![schedule_id],
        )? > 0)
    }

    /// Queues the jobs of every schedule that is due (one per schedule, however many
    /// periods passed: a cloud that was down does not flood the agent), in one
    /// transaction, and moves each to its next time; a calendar schedule with no next
    /// time (a `once`, or past its end date) is removed. Returns the jobs queued.
    ///
    /// # Errors
    /// On SQL failure (nothing is queued).
    pub fn run_schedules(&self, now_ms: i64) -> Result<Vec<String>, DbError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let due: Vec<DueSchedule> = {
            let mut q = tx.prepare(
                "SELECT schedule_id, agent_id, kind, printer, params, every_ms, next_ms, recurrence FROM schedules WHERE next_ms <= ?1",
            )?;
            q.query_map(params![now_ms], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect::<Result<_, _>>()?
        };
        let mut queued = Vec::new();
        for (id, agent, kind, printer, params_text, every, next, recurrence) in due {
            let following = match recurrence {
                // Checked when it was added; a document that no longer parses (edited by
                // hand) ends the schedule rather than firing at every call.
                Some(text) => serde_json::from_str(&text)
                    .ok()
                    .and_then(|r| crate::calendar::Plan::new(&r).ok())
                    .and_then(|p| p.next_at_or_after(now_ms.saturating_add(1))),
                // The next period after now, on the schedule's own grid.
                None if every > 0 => Some(next + ((now_ms - next) / every + 1) * every),
                None => None,
            };
            let job_id = format!("job-{}", &fleet_secret::random_token(1)[..12]);
            tx.execute(
                &format!("INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, NULL, NULL, NULL, NULL, NULL)"),
                params![job_id, agent, kind, printer, params_text, now_ms],
            )?;
            match following {
                Some(at) => tx.execute(
                    "UPDATE schedules SET next_ms = ?2, last_ms = ?3 WHERE schedule_id = ?1",
                    params![id, at, now_ms],
                )?,
                None => tx.execute("DELETE FROM schedules WHERE schedule_id = ?1", params![id])?,
            };
            queued.push(job_id);
        }
        tx.commit()?;
        Ok(queued)
    }

    /// Expires what has waited too long: pending past a week or past its window,
    /// in progress past 24 h. Returns how many expired.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn expire_jobs(&self, now_ms: i64) -> Result<usize, DbError> {
        Ok(self.conn().execute(
            "UPDATE jobs SET state = 'expired', done_ms = ?1
             WHERE (state = 'pending' AND (created_ms + ?2 <= ?1 OR (not_after_ms IS NOT NULL AND not_after_ms <= ?1)))
                OR (state = 'inProgress' AND ack_ms + ?3 <= ?1)",
            params![now_ms, PENDING_MS, IN_PROGRESS_MS],
        )?)
    }

    /// Jobs of one agent (all agents with `None`), optionally in one state, oldest first.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn jobs(
        &self,
        agent_id: Option<&str>,
        state: Option<&str>,
    ) -> Result<Vec<JobRecord>, DbError> {
        let c = self.conn();
        let mut st = c.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY created_ms, rowid"
        ))?;
        let rows = st.query_map(params![agent_id, state], job_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves a job of `agent_id` from one of `from` to `to`, stamping `column` (and
    /// storing `data` in `data_column` when given). Moving to the state it is already in
    /// is accepted (the agent resends after a lost answer).
    ///
    /// # Errors
    /// On SQL failure.
    #[allow(clippy::too_many_arguments)]
    pub fn move_job(
        &self,
        agent_id: Option<&str>,
        job_id: &str,
        from: &[&str],
        to: &str,
        stamp: Option<(&str, i64)>,
        data: Option<(&str, &str)>,
    ) -> Result<Transition, DbError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM jobs WHERE job_id = ?1 AND (?2 IS NULL OR agent_id = ?2)",
                params![job_id, agent_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(state) = state else {
            return Ok(Transition::Unknown);
        };
        if state == to {
            return Ok(Transition::Done(state));
        }
        if !from.contains(&state.as_str()) {
            return Ok(Transition::Refused(state));
        }
        tx.execute(
            "UPDATE jobs SET state = ?2 WHERE job_id = ?1",
            params![job_id, to],
        )?;
        // Column names come from the caller's constants, never from requests.
        if let Some((col, at)) = stamp {
            tx.execute(
                &format!("UPDATE jobs SET {col} = ?2 WHERE job_id = ?1"),
                params![job_id, at],
            )?;
        }
        if let Some((col, v)) = data {
            tx.execute(
                &format!("UPDATE jobs SET {col} = ?2 WHERE job_id = ?1"),
                params![job_id, v],
            )?;
        }
        tx.commit()?;
        Ok(Transition::Done(to.to_string()))
    }

    /// Stores a progress report of a job in progress; false when it is not in progress.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn job_progress(
        &self,
        agent_id: &str,
        job_id: &str,
        progress: &str,
    ) -> Result<bool, DbError> {
        Ok(self.conn().execute(
            "UPDATE jobs SET progress = ?3 WHERE job_id = ?1 AND agent_id = ?2 AND state = 'inProgress'",
            params![job_id, agent_id, progress],
        )? == 1)
    }

    /// Stores a file for a job of `agent_id` that is in progress; false otherwise.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn put_job_file(
        &self,
        agent_id: &str,
        job_id: &str,
        name: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let c = self.conn();
        let ok: Option<String> = c
            .query_row(
                "SELECT state FROM jobs WHERE job_id = ?1 AND agent_id = ?2",
                params![job_id, agent_id],
                |r| r.get(0),
            )
            .optional()?;
        if ok.as_deref() != Some("inProgress") {
            return Ok(false);
        }
        c.execute(
            "INSERT INTO job_files (job_id, name, agent_id, body, received_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(job_id, name) DO UPDATE SET body = excluded.body, received_ms = excluded.received_ms",
            params![job_id, name, agent_id, body, now_ms],
        )?;
        Ok(true)
    }

    /// Stores a file the administrator attached to a job for its agent (a settings bundle,
    /// an app), kept as `input:<name>` beside the files the agent uploads.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn put_input_file(
        &self,
        agent_id: &str,
        job_id: &str,
        name: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<(), DbError> {
        self.conn().execute(
            "INSERT INTO job_files (job_id, name, agent_id, body, received_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(job_id, name) DO UPDATE SET body = excluded.body",
            params![job_id, format!("input:{name}"), agent_id, body, now_ms],
        )?;
        Ok(())
    }

    /// A file attached to a job of `agent_id` that is in progress (`Ok(None)`: no such
    /// file, or the job is not this agent's or not in progress).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn input_file(
        &self,
        agent_id: &str,
        job_id: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT f.body FROM job_files f JOIN jobs j ON j.job_id = f.job_id
                 WHERE f.job_id = ?1 AND f.name = ?2 AND j.agent_id = ?3 AND j.state = 'inProgress'",
                params![job_id, format!("input:{name}"), agent_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A job's file.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn job_file(&self, job_id: &str, name: &str) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT body FROM job_files WHERE job_id = ?1 AND name = ?2",
                params![job_id, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Removes a printer from an agent's assets (after an unenroll); false when absent.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn delete_asset(&self, agent_id: &str, serial: &str) -> Result<bool, DbError> {
        let c = self.conn();
        c.execute(
            "DELETE FROM printer_status WHERE agent_id = ?1 AND serial = ?2",
            params![agent_id, serial],
        )?;
        Ok(c.execute(
            "DELETE FROM assets WHERE agent_id = ?1 AND serial = ?2",
            params![agent_id, serial],
        )? == 1)
    }

    /// Records an agent's heartbeat (the last one wins).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn put_heartbeat(
        &self,
        agent_id: &str,
        now_ms: i64,
        body: &str,
        statuses: &[PrinterStatusRow],
    ) -> Result<(), DbError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            "INSERT INTO heartbeats (agent_id, received_ms, body) VALUES (?1, ?2, ?3)
             ON CONFLICT(agent_id) DO UPDATE SET received_ms = excluded.received_ms, body = excluded.body",
            rusqlite::params![agent_id, now_ms, body],
        )?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO printer_status (agent_id, address, serial, body, received_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(agent_id, address) DO UPDATE SET serial = excluded.serial, body = excluded.body, received_ms = excluded.received_ms",
            )?;
            for s in statuses {
                st.execute(params![agent_id, s.address, s.serial, s.body, now_ms])?;
            }
        }
        if !statuses.is_empty() {
            let n: i64 = tx.query_row(
                "SELECT COUNT(*) FROM printer_status WHERE agent_id = ?1",
                params![agent_id],
                |r| r.get(0),
            )?;
            if n > MAX_PRINTER_STATUS_ROWS {
                tx.execute(
                    "DELETE FROM printer_status WHERE agent_id = ?1 AND address IN
                     (SELECT address FROM printer_status WHERE agent_id = ?1 ORDER BY received_ms, address LIMIT ?2)",
                    params![agent_id, n - MAX_PRINTER_STATUS_ROWS],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every printer status the agents reported, by agent and address.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn printer_statuses(&self) -> Result<Vec<(String, PrinterStatusRow)>, DbError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT agent_id, address, serial, body, received_ms FROM printer_status ORDER BY agent_id, address",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get(0)?,
                PrinterStatusRow {
                    address: r.get(1)?,
                    serial: r.get(2)?,
                    body: r.get(3)?,
                    received_ms: r.get(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every agent instance with its last heartbeat.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn agents(&self) -> Result<Vec<AgentRow>, DbError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT a.id, a.name, a.client_id IS NOT NULL, h.received_ms, h.body
             FROM agents a LEFT JOIN heartbeats h ON h.agent_id = a.id ORDER BY a.created_ms, a.id",
        )?;
        let rows = st.query_map([], |r| {
            let at: Option<i64> = r.get(3)?;
            let body: Option<String> = r.get(4)?;
            Ok(AgentRow {
                id: r.get(0)?,
                name: r.get(1)?,
                activated: r.get(2)?,
                heartbeat: at.zip(body),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates an agent instance with an activation code valid until `expires_ms`.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn create_agent(
        &self,
        id: &str,
        name: &str,
        settings: &str,
        code: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), DbError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            "INSERT INTO agents(id, name, settings, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![id, name, settings, now_ms],
        )?;
        tx.execute(
            "INSERT INTO activation_codes(code, agent_id, expires_ms) VALUES (?1, ?2, ?3)",
            params![code, id, expires_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces an instance's unused activation codes with `code`; false when there is no
    /// such instance.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn replace_activation_code(
        &self,
        agent_id: &str,
        code: &str,
        expires_ms: i64,
    ) -> Result<bool, DbError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let known: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM agents WHERE id = ?1)",
            params![agent_id],
            |r| r.get(0),
        )?;
        if !known {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM activation_codes WHERE agent_id = ?1 AND used_ms IS NULL",
            params![agent_id],
        )?;
        tx.execute(
            "INSERT INTO activation_codes(code, agent_id, expires_ms) VALUES (?1, ?2, ?3)",
            params![code, agent_id, expires_ms],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Consumes an activation code and stores the agent's client credentials. Returns the
    /// agent id, or why the code is refused.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn activate(
        &self,
        code: &str,
        client_id: &str,
        client_secret: &str,
        now_ms: i64,
    ) -> Result<Result<String, CodeProblem>, DbError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let row: Option<(String, i64, Option<i64>)> = tx
            .query_row(
                "SELECT agent_id, expires_ms, used_ms FROM activation_codes WHERE code = ?1",
                params![code],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((agent, expires, used)) = row else {
            return Ok(Err(CodeProblem::Unknown));
        };
        if used.is_some() {
            return Ok(Err(CodeProblem::Used));
        }
        if now_ms > expires {
            return Ok(Err(CodeProblem::Expired));
        }
        tx.execute(
            "UPDATE activation_codes SET used_ms = ?2 WHERE code = ?1",
            params![code, now_ms],
        )?;
        tx.execute(
            "UPDATE agents SET client_id = ?2, client_secret = ?3 WHERE id = ?1",
            params![agent, client_id, client_secret],
        )?;
        // A re-activation (a new code for an installed agent) cuts the old host off now,
        // not when its token runs out.
        tx.execute("DELETE FROM tokens WHERE agent_id = ?1", params![agent])?;
        tx.commit()?;
        Ok(Ok(agent))
    }

    /// Checks client credentials; returns the agent id.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn agent_by_credentials(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id FROM agents WHERE client_id = ?1 AND client_secret = ?2",
                params![client_id, client_secret],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Stores a bearer token.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn add_token(&self, token: &str, agent_id: &str, expires_ms: i64) -> Result<(), DbError> {
        self.conn().execute(
            "INSERT INTO tokens(token, agent_id, expires_ms) VALUES (?1, ?2, ?3)",
            params![token, agent_id, expires_ms],
        )?;
        Ok(())
    }

    /// Resolves a bearer token that has not expired.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn agent_by_token(&self, token: &str, now_ms: i64) -> Result<Option<String>, DbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT agent_id FROM tokens WHERE token = ?1 AND expires_ms > ?2",
                params![token, now_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Runs `f` on one upload's changes in a single transaction: its message id, its
    /// reports' assets and their log commit together or not at all. A cloud killed half-way
    /// through a batch must not keep the id without the reports (the resend would be
    /// answered `duplicate` and its reports lost), nor some reports without the id.
    ///
    /// # Errors
    /// What `f` returns, or an SQL failure; either way nothing of `f`'s is kept.
    pub fn upload<T>(
        &self,
        f: impl FnOnce(&Upload<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&Upload(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    /// Lists every asset.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn assets(&self) -> Result<Vec<AssetRow>, DbError> {
        let c = self.conn();
        let mut q = c.prepare("SELECT agent_id, serial, seq, keyed, date_created_ms, date_modified_ms, last_data_refresh FROM assets ORDER BY serial")?;
        let rows = q.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// The statements of one upload, inside the transaction [`CloudDb::upload`] holds.
pub struct Upload<'a>(&'a Connection);

impl Upload<'_> {
    /// Records a message id; returns `false` when it was already seen (a resend).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn first_sight(
        &self,
        message_id: &str,
        agent_id: &str,
        now_ms: i64,
    ) -> Result<bool, DbError> {
        let n = self.0.prepare_cached(
            "INSERT INTO messages(message_id, agent_id, received_ms) VALUES (?1, ?2, ?3) ON CONFLICT(message_id) DO NOTHING",
        )?.execute(params![message_id, agent_id, now_ms])?;
        Ok(n == 1)
    }

    /// The agent other than `agent_id` that holds a printer, if any.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn other_owner(&self, serial: &str, agent_id: &str) -> Result<Option<String>, DbError> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT agent_id FROM assets WHERE serial = ?1 AND agent_id != ?2 LIMIT 1",
            )?
            .query_row(params![serial, agent_id], |r| r.get(0))
            .optional()?)
    }

    /// Moves a printer from one agent to another (its asset is re-created by the new
    /// owner's snapshot) and records the move.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn move_asset(
        &self,
        serial: &str,
        from: &str,
        to: &str,
        now_ms: i64,
    ) -> Result<(), DbError> {
        self.0.execute(
            "DELETE FROM assets WHERE agent_id = ?1 AND serial = ?2",
            params![from, serial],
        )?;
        self.0.execute(
            "INSERT INTO ownership_moves (serial, from_agent, to_agent, at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![serial, from, to, now_ms],
        )?;
        Ok(())
    }

    /// When a printer last moved between agents.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn last_move_ms(&self, serial: &str) -> Result<Option<i64>, DbError> {
        Ok(self.0.query_row(
            "SELECT MAX(at_ms) FROM ownership_moves WHERE serial = ?1",
            params![serial],
            |r| r.get(0),
        )?)
    }

    /// Returns one asset.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn asset(&self, agent_id: &str, serial: &str) -> Result<Option<AssetRow>, DbError> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT agent_id, serial, seq, keyed, date_created_ms, date_modified_ms, last_data_refresh FROM assets WHERE agent_id = ?1 AND serial = ?2",
            )?
            .query_row(params![agent_id, serial], row)
            .optional()?)
    }

    /// Inserts or replaces an asset's state.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn put_asset(&self, a: &AssetRow) -> Result<(), DbError> {
        self.0.prepare_cached(
            "INSERT INTO assets(agent_id, serial, seq, keyed, date_created_ms, date_modified_ms, last_data_refresh) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(agent_id, serial) DO UPDATE SET seq = excluded.seq, keyed = excluded.keyed, date_modified_ms = excluded.date_modified_ms,
             last_data_refresh = excluded.last_data_refresh",
            )?.execute(params![a.agent_id, a.serial, a.seq as i64, a.keyed, a.date_created_ms, a.date_modified_ms, a.last_data_refresh],
        )?;
        Ok(())
    }

    /// Records one applied report.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn log_applied(
        &self,
        agent_id: &str,
        serial: &str,
        seq: u64,
        kind: &str,
        now_ms: i64,
    ) -> Result<(), DbError> {
        self.0
            .prepare_cached(
                "INSERT INTO applied_reports (agent_id, serial, seq, kind, received_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![agent_id, serial, seq as i64, kind, now_ms])?;
        Ok(())
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AssetRow> {
    Ok(AssetRow {
        agent_id: r.get(0)?,
        serial: r.get(1)?,
        seq: r.get::<_, i64>(2)? as u64,
        keyed: r.get(3)?,
        date_created_ms: r.get(4)?,
        date_modified_ms: r.get(5)?,
        last_data_refresh: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(seq: u64) -> AssetRow {
        AssetRow {
            agent_id: "a1".into(),
            serial: "S1".into(),
            seq,
            keyed: "{}".into(),
            date_created_ms: 1,
            date_modified_ms: 1,
            last_data_refresh: 1,
        }
    }

    #[test]
    fn an_upload_that_fails_half_way_keeps_neither_its_id_nor_its_reports() {
        let db = CloudDb::open(None).unwrap();
        // A failure after the id and the first report were written (as a kill would be).
        let failed = db.upload(|u| {
            assert!(u.first_sight("m1", "a1", 1)?);
            u.put_asset(&asset(1))?;
            u.log_applied("a1", "S1", 1, "snapshot", 1)?;
            Err::<(), _>(DbError::TooNew { found: 0, known: 0 })
        });
        assert!(failed.is_err());
        assert!(db.assets().unwrap().is_empty(), "no report kept");
        assert!(db.applied_seqs("a1", "S1").unwrap().is_empty());

        // The resend is then a first sight and applies.
        db.upload(|u| {
            assert!(u.first_sight("m1", "a1", 2)?, "the id was not kept");
            u.put_asset(&asset(1))?;
            u.log_applied("a1", "S1", 1, "snapshot", 2)
        })
        .unwrap();
        assert_eq!(db.applied_seqs("a1", "S1").unwrap(), vec![1]);
        let again = db.upload(|u| u.first_sight("m1", "a1", 3)).unwrap();
        assert!(!again, "a committed id is known");
    }
}
