//! The reference cloud's job queue (docs/protocol.md, Jobs): admins queue jobs, agents
//! long-poll for them, acknowledge (pending → inProgress), report progress and post the
//! result; pending jobs can be stopped; jobs expire on the seed's timeouts.

use super::{Cloud, random_token, reason};
use crate::store::refcloud::{JobRecord, Transition};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::Duration;

/// Longest long-poll the cloud holds open.
pub const MAX_WAIT_SECS: u64 = 50;

/// Result statuses an agent may post; `completed` completes the job, the others fail it.
pub const RESULT_STATUSES: &[&str] = &[
    "completed",
    "failed",
    "printerNotCommunicating",
    "notSupported",
    "agentNotSupported",
];

/// Job types that cannot be stopped once queued (SEED-AGENT.md §2.3).
const UNSTOPPABLE: &[&str] = &["unenroll"];

fn parse(s: Option<&str>) -> Value {
    s.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// A job as the agent receives it.
pub fn agent_view(j: &JobRecord) -> Value {
    json!({
        "jobId": j.job_id,
        "type": j.kind,
        "printer": parse(j.printer.as_deref()),
        "params": parse(Some(&j.params)),
        "createdAt": j.created_ms,
        "notAfter": j.not_after_ms,
    })
}

/// Replaces secret values (communities, pass phrases, passwords) with `"<set>"`: the
/// administration sees that they were given, never what they are.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let k = k.to_ascii_lowercase();
                if ["community", "pass", "password", "secret", "token"]
                    .iter()
                    .any(|s| k.contains(s))
                    && !x.is_null()
                {
                    *x = json!("<set>");
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A job as the administration sees it (secrets in its parameters redacted).
pub fn admin_view(j: &JobRecord) -> Value {
    let mut v = agent_view(j);
    if let Some(p) = v.get_mut("params") {
        redact(p);
    }
    if let Value::Object(m) = &mut v {
        m.insert("agentId".into(), json!(j.agent_id));
        m.insert("state".into(), json!(j.state));
        m.insert("acknowledgedAt".into(), json!(j.ack_ms));
        m.insert("finishedAt".into(), json!(j.done_ms));
        m.insert("progress".into(), parse(j.progress.as_deref()));
        m.insert("result".into(), parse(j.result.as_deref()));
    }
    v
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
        Err((status, text)) => return reason(status, text),
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
            return reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable");
        };
        if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
            let jobs: Vec<Value> = pending.iter().map(agent_view).collect();
            return axum::Json(json!({ "jobs": jobs })).into_response();
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn transition_response(t: Result<Transition, crate::store::StoreError>, what: &str) -> Response {
    match t {
        Ok(Transition::Done(state)) => axum::Json(json!({ "state": state })).into_response(),
        Ok(Transition::Refused(state)) => reason(
            StatusCode::CONFLICT,
            &format!("the job is {state}; it cannot be {what}"),
        ),
        Ok(Transition::Unknown) => reason(StatusCode::NOT_FOUND, "no such job for this agent"),
        Err(_) => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
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
        Err((status, text)) => return reason(status, text),
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
        Err(crate::store::StoreError::Open {
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
    body: axum::Json<Value>,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err((status, text)) => return reason(status, text),
    };
    let (db, text) = (c.db.clone(), body.0.to_string());
    match tokio::task::spawn_blocking(move || db.job_progress(&agent, &job_id, &text)).await {
        Ok(Ok(true)) => axum::Json(json!({ "state": "inProgress" })).into_response(),
        Ok(Ok(false)) => reason(StatusCode::CONFLICT, "the job is not in progress"),
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// `POST /v1/agents/{id}/jobs/{jobId}/result`: inProgress → completed or failed. A
/// repeated result is accepted (the agent resends when an answer was lost).
pub async fn result(
    State(c): State<Cloud>,
    Path((agent_id, job_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err((status, text)) => return reason(status, text),
    };
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    if !RESULT_STATUSES.contains(&status) {
        return reason(
            StatusCode::BAD_REQUEST,
            &format!("status must be one of {}", RESULT_STATUSES.join(", ")),
        );
    }
    let to = if status == "completed" {
        "completed"
    } else {
        "failed"
    };
    let (db, now, text) = (c.db.clone(), (c.clock)(), body.0.to_string());
    let unenrolled: Vec<String> = body
        .get("printers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("status").and_then(Value::as_str) == Some("completed"))
        .filter_map(|p| {
            p.get("serialNumber")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let t = tokio::task::spawn_blocking(move || {
        let t = db.move_job(
            Some(&agent),
            &job_id,
            &["inProgress"],
            to,
            Some(("done_ms", now)),
            Some(("result", &text)),
        )?;
        // An unenrolled printer leaves the asset list.
        let kind = db
            .jobs(Some(&agent), None)?
            .into_iter()
            .find(|j| j.job_id == job_id)
            .map(|j| j.kind);
        if t == Transition::Done("completed".into()) && kind.as_deref() == Some("unenroll") {
            for sn in &unenrolled {
                db.delete_asset(&agent, sn)?;
            }
        }
        Ok(t)
    })
    .await
    .unwrap_or_else(|e| {
        Err(crate::store::StoreError::Open {
            path: "jobs".into(),
            source: Box::new(e),
        })
    });
    transition_response(t, "finished")
}

/// `POST /admin/v1/agents/{id}/jobs`: queues `{ type, params?, printer?, notAfter?,
/// files? }`; `files` maps names to base64 contents the agent downloads while the job
/// runs (`deployFile`).
pub async fn admin_create(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
    }
    let Some(kind) = body
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return reason(StatusCode::BAD_REQUEST, "type missing");
    };
    if let Some(every) = body.get("everySecs") {
        return create_schedule(&c, &agent_id, kind, &body, every).await;
    }
    let mut files = Vec::new();
    if let Some(map) = body.get("files").and_then(Value::as_object) {
        use base64::Engine;
        for (name, v) in map {
            if !valid_file_name(name) {
                return reason(
                    StatusCode::BAD_REQUEST,
                    &format!("files.{name}: names are letters, digits, '.', '-', '_'"),
                );
            }
            match v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            {
                Some(bytes) => files.push((name.clone(), bytes)),
                None => {
                    return reason(
                        StatusCode::BAD_REQUEST,
                        &format!("files.{name}: not base64"),
                    );
                }
            }
        }
    }
    let job = JobRecord {
        job_id: format!("job-{}", &random_token(1)[..12]),
        agent_id: agent_id.clone(),
        kind: kind.to_string(),
        printer: body
            .get("printer")
            .filter(|p| !p.is_null())
            .map(Value::to_string),
        params: body.get("params").cloned().unwrap_or(json!({})).to_string(),
        state: "pending".into(),
        created_ms: (c.clock)(),
        not_after_ms: body.get("notAfter").and_then(Value::as_i64),
        ack_ms: None,
        done_ms: None,
        progress: None,
        result: None,
    };
    let db = c.db.clone();
    let j = job.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<bool, crate::store::StoreError> {
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
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// Shortest period of a recurring job.
pub const MIN_EVERY_SECS: u64 = 60;

/// `POST /admin/v1/agents/{id}/jobs` with `everySecs`: a recurring job; the first one is
/// queued now, then one per period.
async fn create_schedule(
    c: &Cloud,
    agent_id: &str,
    kind: &str,
    body: &Value,
    every: &Value,
) -> Response {
    let Some(every) = every.as_u64().filter(|s| *s >= MIN_EVERY_SECS) else {
        return reason(
            StatusCode::BAD_REQUEST,
            &format!("everySecs: a whole number of seconds, at least {MIN_EVERY_SECS}"),
        );
    };
    if body.get("files").is_some() || body.get("notAfter").is_some() {
        return reason(
            StatusCode::BAD_REQUEST,
            "a recurring job takes no files and no notAfter",
        );
    }
    let id = format!("sched-{}", &random_token(1)[..12]);
    let (db, now) = (c.db.clone(), (c.clock)());
    let printer = body
        .get("printer")
        .filter(|p| !p.is_null())
        .map(Value::to_string);
    let params = body.get("params").cloned().unwrap_or(json!({})).to_string();
    let (agent, kind, sid) = (agent_id.to_string(), kind.to_string(), id.clone());
    let every_ms = (every * 1000) as i64;
    let r = tokio::task::spawn_blocking(
        move || -> Result<Option<Vec<String>>, crate::store::StoreError> {
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
                now,
                now,
            )?;
            Ok(Some(db.run_schedules(now)?))
        },
    )
    .await;
    match r {
        Ok(Ok(Some(queued))) => {
            c.jobs_queued.notify_waiters();
            (
                StatusCode::CREATED,
                axum::Json(json!({
                    "scheduleId": id, "everySecs": every, "firstJobId": queued.first(),
                    "nextAt": now + every_ms,
                })),
            )
                .into_response()
        }
        Ok(Ok(None)) => reason(StatusCode::NOT_FOUND, "no such agent"),
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// `GET /admin/v1/schedules`: the recurring jobs.
pub async fn admin_schedules(State(c): State<Cloud>, headers: HeaderMap) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
    }
    let db = c.db.clone();
    match tokio::task::spawn_blocking(move || db.schedules()).await {
        Ok(Ok(rows)) => axum::Json(json!({
            "schedules": rows.iter().map(|s| json!({
                "scheduleId": s.schedule_id, "agentId": s.agent_id, "type": s.kind,
                "everySecs": s.every_ms / 1000, "nextAt": s.next_ms,
            })).collect::<Vec<_>>()
        }))
        .into_response(),
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// `DELETE /admin/v1/schedules/{id}`: ends a recurring job (queued jobs stay).
pub async fn admin_unschedule(
    State(c): State<Cloud>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
    }
    let db = c.db.clone();
    match tokio::task::spawn_blocking(move || db.remove_schedule(&id)).await {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => reason(StatusCode::NOT_FOUND, "no such schedule"),
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// `GET /admin/v1/jobs?agentId=…&state=…`: jobs, oldest first.
pub async fn admin_list(
    State(c): State<Cloud>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
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
        Ok(Ok(jobs)) => {
            let jobs: Vec<Value> = jobs.iter().map(admin_view).collect();
            axum::Json(json!({ "jobs": jobs })).into_response()
        }
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// `POST /admin/v1/jobs/{jobId}/stop`: only a pending job stops; unenroll never does.
pub async fn admin_stop(
    State(c): State<Cloud>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
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
        if kind.as_deref().is_some_and(|k| UNSTOPPABLE.contains(&k)) {
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
        Err(_) => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// Largest file an agent may upload for a job (the seed's largest deployable file is
/// 50 MB; a compressed MIB walk or log bundle is far smaller).
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// File names are plain tokens (they end up in URLs and download names).
pub fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 120
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
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
        Err((status, text)) => return reason(status, text),
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
        Ok(Ok(true)) => (StatusCode::CREATED, axum::Json(json!({ "bytes": size }))).into_response(),
        Ok(Ok(false)) => reason(
            StatusCode::CONFLICT,
            "no job in progress with that id for this agent",
        ),
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
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
        Err((status, text)) => return reason(status, text),
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
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// `GET /admin/v1/jobs/{jobId}/files/{name}`: downloads a job's file.
pub async fn download_file(
    State(c): State<Cloud>,
    Path((job_id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
    }
    let db = c.db.clone();
    match tokio::task::spawn_blocking(move || db.job_file(&job_id, &name)).await {
        Ok(Ok(Some(bytes))) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Ok(Ok(None)) => reason(StatusCode::NOT_FOUND, "no such file"),
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}
