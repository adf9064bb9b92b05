//! Jobs received from the cloud, recorded before they run (exactly once across restarts)
//! with their results until the cloud has acknowledged them.

use super::{Store, StoreError};
use fleet_protocol::jobs::JobResult;
use rusqlite::{OptionalExtension, params};

/// Where a job is in its life on this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Recorded, not started.
    Accepted,
    /// Acknowledged, waiting for its window (holds no job slot; re-armed after a restart).
    Waiting,
    /// Started (found so at start: interrupted by a restart).
    Running,
    /// Finished, with a result.
    Done,
}

impl JobState {
    /// The state's name (`received`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Accepted => "accepted",
            JobState::Waiting => "waiting",
            JobState::Running => "running",
            JobState::Done => "done",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "accepted" => JobState::Accepted,
            "waiting" => JobState::Waiting,
            "running" => JobState::Running,
            _ => JobState::Done,
        }
    }
}

/// One stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// The cloud's job id.
    pub job_id: String,
    /// Job type.
    pub kind: String,
    /// The job as received (JSON).
    pub body: String,
    /// State on this agent.
    pub state: JobState,
    /// Result, once done (an unreadable stored result reads as none).
    pub result: Option<JobResult>,
    /// Whether the cloud has the result.
    pub result_sent: bool,
    /// When it arrived (epoch ms).
    pub received_ms: i64,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        job_id: r.get(0)?,
        kind: r.get(1)?,
        body: r.get(2)?,
        state: JobState::parse(&r.get::<_, String>(3)?),
        result: r
            .get::<_, Option<String>>(4)?
            .and_then(|t| serde_json::from_str(&t).ok()),
        result_sent: r.get::<_, i64>(5)? != 0,
        received_ms: r.get(6)?,
    })
}

const COLUMNS: &str = "job_id, kind, body, state, result, result_sent, received_ms";

impl Store {
    /// Records a job; returns `None` when it is new, else the row already stored (the
    /// cloud delivered it again: it must not run twice).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn job_accept(
        &self,
        job_id: &str,
        kind: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<Option<JobRow>, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let existing = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE job_id = ?1"),
                params![job_id],
                row,
            )
            .optional()?;
        if existing.is_none() {
            tx.execute(
                "INSERT INTO jobs (job_id, kind, body, state, received_ms) VALUES (?1, ?2, ?3, 'accepted', ?4)",
                params![job_id, kind, body, now_ms],
            )?;
        }
        tx.commit()?;
        Ok(existing)
    }

    /// Marks a job started.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn job_start(&self, job_id: &str) -> Result<(), StoreError> {
        self.job_state(job_id, JobState::Running)
    }

    /// Marks a job acknowledged and waiting for its window.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn job_wait(&self, job_id: &str) -> Result<(), StoreError> {
        self.job_state(job_id, JobState::Waiting)
    }

    fn job_state(&self, job_id: &str, state: JobState) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET state = ?2 WHERE job_id = ?1",
            params![job_id, state.as_str()],
        )?;
        Ok(())
    }

    /// Stores a job's result (before it is sent).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn job_finish(
        &self,
        job_id: &str,
        result: &JobResult,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(result).unwrap_or_default();
        self.conn().execute(
            "UPDATE jobs SET state = 'done', result = ?2, finished_ms = ?3 WHERE job_id = ?1",
            params![job_id, text, now_ms],
        )?;
        Ok(())
    }

    /// Records that the cloud has a job's result (or no longer wants it).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn job_result_sent(&self, job_id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE jobs SET result_sent = 1 WHERE job_id = ?1",
            params![job_id],
        )?;
        Ok(())
    }

    /// Jobs in one state, oldest first.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn jobs_in(&self, state: JobState) -> Result<Vec<JobRow>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = ?1 ORDER BY received_ms, job_id"
        ))?;
        let rows = st.query_map(params![state.as_str()], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Finished jobs whose result the cloud does not have yet, oldest first.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn jobs_unsent(&self) -> Result<Vec<JobRow>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'done' AND result_sent = 0 ORDER BY received_ms, job_id"
        ))?;
        let rows = st.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest jobs, newest first (status page).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn recent_jobs(&self, limit: usize) -> Result<Vec<JobRow>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs ORDER BY received_ms DESC, job_id DESC LIMIT ?1"
        ))?;
        let rows = st.query_map(params![limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_recorded_once_and_its_result_kept_until_sent() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.job_accept("j1", "refresh", "{}", 1).unwrap().is_none());
        let again = s.job_accept("j1", "refresh", "{}", 2).unwrap().unwrap();
        assert_eq!(again.state, JobState::Accepted);
        s.job_start("j1").unwrap();
        assert_eq!(s.jobs_in(JobState::Running).unwrap().len(), 1);
        let r = JobResult::new(fleet_protocol::jobs::Status::Completed, vec![], 3);
        s.job_finish("j1", &r, 3).unwrap();
        let done = s.jobs_in(JobState::Done).unwrap();
        assert_eq!(done[0].result.as_ref(), Some(&r));
        assert!(!done[0].result_sent);
        assert_eq!(s.jobs_unsent().unwrap().len(), 1);
        s.job_result_sent("j1").unwrap();
        assert!(s.jobs_unsent().unwrap().is_empty());
        assert!(s.jobs_in(JobState::Done).unwrap()[0].result_sent);
        assert_eq!(
            s.job_accept("j1", "refresh", "{}", 4)
                .unwrap()
                .unwrap()
                .state,
            JobState::Done
        );
        assert_eq!(s.recent_jobs(10).unwrap().len(), 1);
    }
}
