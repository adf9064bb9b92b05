//! The reference cloud's job queue (docs/protocol.md, Jobs): admins queue jobs, agents
//! long-poll for them, acknowledge (pending → inProgress), report progress and post the
//! result; pending jobs can be stopped; jobs expire on the seed's timeouts.

use super::{Cloud, Doc, reason, unavailable};
use crate::db::{DbError, JobRecord, Transition};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fleet_protocol::admin::{
    CreatedSchedule, JobView, Jobs, NewJob, PrinterCounts, ScheduleView, Schedules,
};
use fleet_protocol::jobs::{
    Command, Job, JobList, JobResult, JobState, PrinterRef, Progress, StateAnswer, Status,
};
use fleet_secret::random_token;
use serde_json::Value;
use std::time::Duration;

/// Longest long-poll the cloud holds open.
pub const MAX_WAIT_SECS: u64 = 50;

/// Job types that cannot be stopped once queued (SEED-AGENT.md §2.3).
fn unstoppable(kind: &str) -> bool {
    kind == Command::Unenroll.type_name()
}

fn parse<T: serde::de::DeserializeOwned>(s: Option<&str>) -> Option<T> {
    s.and_then(|t| serde_json::from_str(t).ok())
}

/// The stored job's command.
fn command(j: &JobRecord) -> Command {
    let params = serde_json::from_str(&j.params).unwrap_or(Value::Null);
    Command::from_parts(&j.kind, params)
}

/// A job as the agent receives it.
pub fn agent_view(j: &JobRecord) -> Job {
    Job {
        job_id: j.job_id.clone(),
        command: command(j),
        printer: parse(j.printer.as_deref()),
        created_at: Some(j.created_ms),
        not_after: j.not_after_ms,
    }
}

/// A job as the administration sees it (secrets in its parameters redacted).
pub fn admin_view(j: &JobRecord) -> JobView {
    let result: Option<JobResult> = parse(j.result.as_deref());
    JobView {
        printer_counts: result.as_ref().map(PrinterCounts::of),
        job_id: j.job_id.clone(),
        agent_id: j.agent_id.clone(),
        type_name: j.kind.clone(),
        params: command(j).redacted_params(),
        printer: parse(j.printer.as_deref()),
        created_at: j.created_ms,
        not_after: j.not_after_ms,
        state: JobState::parse(&j.state).unwrap_or(JobState::Pending),
        acknowledged_at: j.ack_ms,
        finished_at: j.done_ms,
        progress: parse(j.progress.as_deref()),
        result,
    }
}

/// `GET /v1/agents/{id}/jobs?waitSecs=N`: the pending jobs, waiting up to N seconds
/// (at most [`MAX_WAIT_SECS`]) for one to be queued.
pub async fn poll(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let wait = q
        .get("waitSecs")
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(0)
        .min(MAX_WAIT_SECS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        // Registered before the check so a job queued in between is not missed.
        let notified = c.jobs_queued.notified();
        let (db, now, a) = (c.db.clone(), (c.clock)(), agent.clone());
        let pending = tokio::task::spawn_blocking(move || {
            db.run_schedules(now)?;
            db.expire_jobs(now)?;
            db.jobs(Some(&a), Some("pending"))
        })
        .await;
        let Ok(Ok(pending)) = pending else {
            return unavailable();
        };
        if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
            let jobs = pending.iter().map(agent_view).collect();
            return axum::Json(JobList { jobs }).into_response();
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn transition_response(t: Result<Transition, DbError>, what: &str) -> Response {
    match t {
        Ok(Transition::Done(state)) => match JobState::parse(&state) {
            Some(state) => axum::Json(StateAnswer { state }).into_response(),
            None => unavailable(),
        },
        Ok(Transition::Refused(state)) => reason(
            StatusCode::CONFLICT,
            &format!("the job is {state}; it cannot be {what}"),
        ),
        Ok(Transition::Unknown) => reason(StatusCode::NOT_FOUND, "no such job for this agent"),
        Err(_) => unavailable(),
    }
}

/// `POST /v1/agents/{id}/jobs/{jobId}/ack`: pending → inProgress.
pub async fn ack(
    State(c): State<Cloud>,
    Path((agent_id, job_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let (db, now) = (c.db.clone(), (c.clock)());
    let t = tokio::task::spawn_blocking(move || {
        db.run_schedules(now)?;
        db.expire_jobs(now)?;
        db.move_job(
            Some(&agent),
            &job_id,
            &["pending"],
            "inProgress",
            Some(("ack_ms", now)),
            None,
        )
    })
    .await
    .unwrap_or_else(|e| {
        Err(DbError::Open {
            path: "jobs".into(),
            source: Box::new(e),
        })
    });
    transition_response(t, "started")
}

/// `POST /v1/agents/{id}/jobs/{jobId}/progress`: stores `{ done, total, text }`.
pub async fn progress(
    State(c): State<Cloud>,
    Path((agent_id, job_id)): Path<(String, String)>,
    headers: HeaderMap,
    Doc(body): Doc<Progress>,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let (db, text) = (
        c.db.clone(),
        serde_json::to_string(&body).unwrap_or_default(),
    );
    match tokio::task::spawn_blocking(move || db.job_progress(&agent, &job_id, &text)).await {
        Ok(Ok(true)) => axum::Json(StateAnswer {
            state: JobState::InProgress,
        })
        .into_response(),
        Ok(Ok(false)) => reason(StatusCode::CONFLICT, "the job is not in progress"),
        _ => unavailable(),
    }
}

/// `POST /v1/agents/{id}/jobs/{jobId}/result`: inProgress → completed or failed. A
/// repeated result is accepted (the agent resends when an answer was lost).
pub async fn result(
    State(c): State<Cloud>,
    Path((agent_id, job_id)): Path<(String, String)>,
    headers: HeaderMap,
    Doc(body): Doc<JobResult>,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let to = if body.status == Status::Completed {
        JobState::Completed
    } else {
        JobState::Failed
    };
    let text = serde_json::to_string(&body).unwrap_or_default();
    let (db, now) = (c.db.clone(), (c.clock)());
    let unenrolled: Vec<String> = body
        .printers
        .iter()
        .filter(|p| p.status == Status::Completed)
        .filter_map(|p| p.serial_number.clone())
        .collect();
    let t = tokio::task::spawn_blocking(move || {
        let t = db.move_job(
            Some(&agent),
            &job_id,
            &["inProgress"],
            to.as_str(),
            Some(("done_ms", now)),
            Some(("result", &text)),
        )?;
        // An unenrolled printer leaves the asset list.
        let kind = db
            .jobs(Some(&agent), None)?
            .into_iter()
            .find(|j| j.job_id == job_id)
            .map(|j| j.kind);
        if t == Transition::Done(JobState::Completed.as_str().into())
            && kind.as_deref() == Some(Command::Unenroll.type_name())
        {
            for sn in &unenrolled {
                db.delete_asset(&agent, sn)?;
            }
        }
        Ok(t)
    })
    .await
    .unwrap_or_else(|e| {
        Err(DbError::Open {
            path: "jobs".into(),
            source: Box::new(e),
        })
    });
    transition_response(t, "finished")
}

/// `POST /admin/v1/agents/{id}/jobs`: queues `{ type, params?, printer?, notAfter?,
/// files? }`; `files` maps names to base64 contents the agent downloads while the job
/// runs (`deployFile`). Any type is queued (the agent answers the ones it does not know).
pub async fn admin_create(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    Doc(body): Doc<NewJob>,
) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    if body.command.type_name().is_empty() {
        return reason(StatusCode::BAD_REQUEST, "type missing");
    }
    if body.every_secs.is_some() || body.recurrence.is_some() {
        return create_schedule(&c, &agent_id, &body).await;
    }
    let mut files = Vec::new();
    for (name, v) in &body.files {
        use base64::Engine;
        if !valid_file_name(name) {
            return reason(
                StatusCode::BAD_REQUEST,
                &format!("files.{name}: names are letters, digits, '.', '-', '_'"),
            );
        }
        match base64::engine::general_purpose::STANDARD.decode(v) {
            Ok(bytes) => files.push((name.clone(), bytes)),
            Err(_) => {
                return reason(
                    StatusCode::BAD_REQUEST,
                    &format!("files.{name}: not base64"),
                );
            }
        }
    }
    let job = JobRecord {
        job_id: format!("job-{}", &random_token(1)[..12]),
        agent_id: agent_id.clone(),
        kind: body.command.type_name().to_string(),
        printer: body.printer.as_ref().map(printer_text),
        params: body.command.params().to_string(),
        state: JobState::Pending.as_str().into(),
        created_ms: (c.clock)(),
        not_after_ms: body.not_after,
        ack_ms: None,
        done_ms: None,
        progress: None,
        result: None,
    };
    let db = c.db.clone();
    let j = job.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<bool, DbError> {
        if db.settings(&j.agent_id)?.is_none() {
            return Ok(false);
        }
        // The files first: the job is visible to its agent once it is added.
        for (name, bytes) in &files {
            db.put_input_file(&j.agent_id, &j.job_id, name, bytes, j.created_ms)?;
        }
        db.add_job(&j)?;
        Ok(true)
    })
    .await;
    match r {
        Ok(Ok(true)) => {
            c.jobs_queued.notify_waiters();
            (StatusCode::CREATED, axum::Json(admin_view(&job))).into_response()
        }
        Ok(Ok(false)) => reason(StatusCode::NOT_FOUND, "no such agent"),
        _ => unavailable(),
    }
}

fn printer_text(p: &PrinterRef) -> String {
    serde_json::to_string(p).unwrap_or_default()
}

/// Shortest period of a recurring job.
pub const MIN_EVERY_SECS: u64 = 60;
/// Longest period of a recurring job (a year).
pub const MAX_EVERY_SECS: u64 = 366 * 24 * 3600;

/// `POST /admin/v1/agents/{id}/jobs` with `everySecs` (the first job is queued now,
/// then one per period) or `recurrence` (one at each time of its calendar).
async fn create_schedule(c: &Cloud, agent_id: &str, body: &NewJob) -> Response {
    if !body.files.is_empty() || body.not_after.is_some() {
        return reason(
            StatusCode::BAD_REQUEST,
            "a recurring job takes no files and no notAfter",
        );
    }
    let now = (c.clock)();
    let (every_ms, recurrence, first_ms) = match (body.every_secs, &body.recurrence) {
        (Some(_), Some(_)) => {
            return reason(
                StatusCode::BAD_REQUEST,
                "everySecs and recurrence: give one or the other",
            );
        }
        (Some(every), None) => {
            if !(MIN_EVERY_SECS..=MAX_EVERY_SECS).contains(&every) {
                return reason(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "everySecs: a whole number of seconds, at least {MIN_EVERY_SECS} and at most {MAX_EVERY_SECS}"
                    ),
                );
            }
            ((every * 1000) as i64, None, now)
        }
        (None, Some(r)) => {
            let plan = match crate::calendar::Plan::new(r) {
                Ok(p) => p,
                Err(e) => return reason(StatusCode::BAD_REQUEST, &e),
            };
            let Some(first) = plan.next_at_or_after(now) else {
                return reason(
                    StatusCode::BAD_REQUEST,
                    "recurrence: it never runs after now (its end date or its only day is past)",
                );
            };
            (0, Some(serde_json::to_string(r).unwrap_or_default()), first)
        }
        (None, None) => return reason(StatusCode::BAD_REQUEST, "not a recurring job"),
    };
    let id = format!("sched-{}", &random_token(1)[..12]);
    let db = c.db.clone();
    let printer = body.printer.as_ref().map(printer_text);
    let params = body.command.params().to_string();
    let (agent, kind, sid) = (
        agent_id.to_string(),
        body.command.type_name().to_string(),
        id.clone(),
    );
    let r = tokio::task::spawn_blocking(move || -> Result<Option<_>, DbError> {
        if db.settings(&agent)?.is_none() {
            return Ok(None);
        }
        db.add_schedule(
            &sid,
            &agent,
            &kind,
            printer.as_deref(),
            &params,
            every_ms,
            recurrence.as_deref(),
            first_ms,
            now,
        )?;
        let queued = db.run_schedules(now)?;
        let next = db
            .schedules()?
            .into_iter()
            .find(|s| s.schedule_id == sid)
            .map(|s| s.next_ms);
        Ok(Some((queued, next)))
    })
    .await;
    match r {
        Ok(Ok(Some((queued, next)))) => {
            if !queued.is_empty() {
                c.jobs_queued.notify_waiters();
            }
            (
                StatusCode::CREATED,
                axum::Json(CreatedSchedule {
                    schedule_id: id,
                    every_secs: body.every_secs,
                    recurrence: body.recurrence.clone(),
                    first_job_id: queued.first().cloned(),
                    next_at: next.unwrap_or(first_ms),
                }),
            )
                .into_response()
        }
        Ok(Ok(None)) => reason(StatusCode::NOT_FOUND, "no such agent"),
        _ => unavailable(),
    }
}

/// `GET /admin/v1/schedules`: the recurring jobs.
pub async fn admin_schedules(State(c): State<Cloud>, headers: HeaderMap) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    let db = c.db.clone();
    match tokio::task::spawn_blocking(move || db.schedules()).await {
        Ok(Ok(rows)) => axum::Json(Schedules {
            schedules: rows
                .into_iter()
                .map(|s| ScheduleView {
                    schedule_id: s.schedule_id,
                    agent_id: s.agent_id,
                    type_name: s.kind,
                    every_secs: (s.every_ms > 0).then_some((s.every_ms / 1000) as u64),
                    recurrence: s
                        .recurrence
                        .as_deref()
                        .and_then(|r| serde_json::from_str(r).ok()),
                    next_at: s.next_ms,
                    last_at: s.last_ms,
                })
                .collect(),
        })
        .into_response(),
        _ => unavailable(),
    }
}

/// `DELETE /admin/v1/schedules/{id}`: ends a recurring job (queued jobs stay).
pub async fn admin_unschedule(
    State(c): State<Cloud>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    let db = c.db.clone();
    match tokio::task::spawn_blocking(move || db.remove_schedule(&id)).await {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => reason(StatusCode::NOT_FOUND, "no such schedule"),
        _ => unavailable(),
    }
}

/// `GET /admin/v1/jobs?agentId=…&state=…`: jobs, oldest first.
pub async fn admin_list(
    State(c): State<Cloud>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    let (db, now) = (c.db.clone(), (c.clock)());
    let r = tokio::task::spawn_blocking(move || {
        db.run_schedules(now)?;
        db.expire_jobs(now)?;
        db.jobs(
            q.get("agentId").map(String::as_str),
            q.get("state").map(String::as_str),
        )
    })
    .await;
    match r {
        Ok(Ok(jobs)) => axum::Json(Jobs {
            jobs: jobs.iter().map(admin_view).collect(),
        })
        .into_response(),
        _ => unavailable(),
    }
}

/// `POST /admin/v1/jobs/{jobId}/stop`: only a pending job stops; unenroll never does.
pub async fn admin_stop(
    State(c): State<Cloud>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    let (db, now) = (c.db.clone(), (c.clock)());
    let r = tokio::task::spawn_blocking(move || {
        db.run_schedules(now)?;
        db.expire_jobs(now)?;
        let kind = db
            .jobs(None, None)?
            .into_iter()
            .find(|j| j.job_id == job_id)
            .map(|j| j.kind);
        if kind.as_deref().is_some_and(unstoppable) {
            return Ok(None);
        }
        db.move_job(
            None,
            &job_id,
            &["pending"],
            "stopped",
            Some(("done_ms", now)),
            None,
        )
        .map(Some)
    })
    .await;
    match r {
        Ok(Ok(None)) => reason(StatusCode::CONFLICT, "an unenroll job cannot be stopped"),
        Ok(t) => transition_response(t.map(|x| x.unwrap_or(Transition::Unknown)), "stopped"),
        Err(_) => unavailable(),
    }
}

/// Largest file an agent may upload for a job (the seed's largest deployable file is
/// 50 MB; a compressed MIB walk or log bundle is far smaller).
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// File names are plain tokens (they end up in URLs and download names).
pub fn valid_file_name(name: &str) -> bool {
    fleet_protocol::jobs::valid_token(name, 120)
}

/// The answer to a stored job file.
#[derive(serde::Serialize)]
struct FileStored {
    bytes: usize,
}

/// `POST /v1/agents/{id}/jobs/{jobId}/files/{name}`: a file for a job in progress (raw
/// body, e.g. a gzip-compressed snmprec walk).
pub async fn upload_file(
    State(c): State<Cloud>,
    Path((agent_id, job_id, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    if !valid_file_name(&name) {
        return reason(
            StatusCode::BAD_REQUEST,
            "file names are letters, digits, '.', '-', '_'",
        );
    }
    let (db, now) = (c.db.clone(), (c.clock)());
    let size = body.len();
    match tokio::task::spawn_blocking(move || db.put_job_file(&agent, &job_id, &name, &body, now))
        .await
    {
        Ok(Ok(true)) => {
            (StatusCode::CREATED, axum::Json(FileStored { bytes: size })).into_response()
        }
        Ok(Ok(false)) => reason(
            StatusCode::CONFLICT,
            "no job in progress with that id for this agent",
        ),
        _ => unavailable(),
    }
}

/// `GET /v1/agents/{id}/jobs/{jobId}/files/{name}`: a file the administrator attached to
/// the job, for its agent while the job is in progress.
pub async fn download_input(
    State(c): State<Cloud>,
    Path((agent_id, job_id, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let db = c.db.clone();
    match tokio::task::spawn_blocking(move || db.input_file(&agent, &job_id, &name)).await {
        Ok(Ok(Some(bytes))) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Ok(Ok(None)) => reason(
            StatusCode::NOT_FOUND,
            "no such file for a job of this agent in progress",
        ),
        _ => unavailable(),
    }
}

/// `GET /admin/v1/jobs/{jobId}/files/{name}`: downloads a job's file.
pub async fn download_file(
    State(c): State<Cloud>,
    Path((job_id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    let db = c.db.clone();
    match tokio::task::spawn_blocking(move || db.job_file(&job_id, &name)).await {
        Ok(Ok(Some(bytes))) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Ok(Ok(None)) => reason(StatusCode::NOT_FOUND, "no such file"),
        _ => unavailable(),
    }
}
