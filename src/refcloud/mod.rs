//! The reference cloud (`fleet-cloud`): the server side of `docs/protocol.md`, used by the
//! tests, the demo and integrators. Creates agent instances with single-use activation
//! codes (72 h), exchanges codes for client credentials, issues bearer tokens, accepts
//! uploads (snapshots and merge-patch deltas applied in sequence, resync otherwise, each
//! message id counted once) and serves assembled printers shaped like the seed's API.

pub mod cli;
pub mod jobs;
pub mod tls;

use crate::cloud::report;
use crate::store::refcloud::{AssetRow, CloudDb, CodeProblem};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::{Value, json};
use std::sync::Arc;

/// Activation codes stay valid this long (the seed: 72 h).
pub const CODE_VALIDITY_MS: i64 = 72 * 3600 * 1000;
/// Bearer token lifetime (the seed's API: 7200 s).
pub const TOKEN_SECS: i64 = 7200;

/// Server state.
#[derive(Clone)]
pub struct Cloud {
    db: CloudDb,
    admin_token: Arc<str>,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    heartbeat_secs: u64,
    /// Wakes long-polls when a job is queued.
    jobs_queued: Arc<tokio::sync::Notify>,
}

fn reason(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "reason": text }))).into_response()
}

use fleet_secret::random_token;

fn hash(secret: &str) -> String {
    crate::signing::sha256_hex(secret.as_bytes())
}

impl Cloud {
    /// Creates the server state; admin calls need `admin_token`.
    pub fn new(db: CloudDb, admin_token: &str) -> Self {
        Cloud {
            db,
            admin_token: admin_token.into(),
            clock: Arc::new(crate::poller::now_ms),
            heartbeat_secs: HEARTBEAT_SECS,
            jobs_queued: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Asks agents for a heartbeat this often (tests use the agent's 10 s minimum).
    pub fn with_heartbeat_secs(mut self, secs: u64) -> Self {
        self.heartbeat_secs = secs;
        self
    }

    /// Uses another clock (tests expire codes).
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> i64 + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    /// Creates an agent instance; returns (agent id, activation code, expiry epoch ms).
    ///
    /// # Errors
    /// On database failure.
    pub fn create_agent(
        &self,
        name: &str,
        settings: &Value,
    ) -> Result<(String, String, i64), crate::store::StoreError> {
        let id = format!("agent-{}", &random_token(1)[..12]);
        let raw = random_token(1).to_uppercase();
        let code = format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12]);
        let now = (self.clock)();
        self.db.create_agent(
            &id,
            name,
            &settings.to_string(),
            &code,
            now,
            now + CODE_VALIDITY_MS,
        )?;
        Ok((id, code, now + CODE_VALIDITY_MS))
    }

    /// The database (tests and the admin CLI read assets from it).
    pub fn db(&self) -> &CloudDb {
        &self.db
    }

    /// Builds the router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/activate", post(activate))
            .route("/v1/oauth/token", post(token))
            .route("/v1/agents/{agent_id}/uploads", post(upload))
            .route("/v1/agents/{agent_id}/heartbeat", post(heartbeat))
            .route("/admin/v1/agents", post(admin_create))
            .route("/admin/v1/agents", get(admin_list))
            .route("/v1/agents/{agent_id}/config", get(config))
            .route("/admin/v1/agents/{agent_id}/settings", put(admin_settings))
            .route("/v1/agents/{agent_id}/jobs", get(jobs::poll))
            .route("/v1/agents/{agent_id}/jobs/{job_id}/ack", post(jobs::ack))
            .route(
                "/v1/agents/{agent_id}/jobs/{job_id}/progress",
                post(jobs::progress),
            )
            .route(
                "/v1/agents/{agent_id}/jobs/{job_id}/result",
                post(jobs::result),
            )
            // Attached files travel as base64 in the JSON body (up to 50 MB each).
            .route(
                "/admin/v1/agents/{agent_id}/jobs",
                post(jobs::admin_create).layer(axum::extract::DefaultBodyLimit::max(
                    jobs::MAX_FILE_BYTES * 2,
                )),
            )
            .route("/admin/v1/jobs", get(jobs::admin_list))
            .route("/admin/v1/schedules", get(jobs::admin_schedules))
            .route(
                "/admin/v1/schedules/{schedule_id}",
                delete(jobs::admin_unschedule),
            )
            .route(
                "/v1/agents/{agent_id}/jobs/{job_id}/files/{name}",
                post(jobs::upload_file)
                    .get(jobs::download_input)
                    .layer(axum::extract::DefaultBodyLimit::max(jobs::MAX_FILE_BYTES)),
            )
            .route(
                "/admin/v1/jobs/{job_id}/files/{name}",
                get(jobs::download_file),
            )
            .route("/admin/v1/jobs/{job_id}/stop", post(jobs::admin_stop))
            .route("/v1.0/assets", get(assets))
            .layer(axum::middleware::from_fn(protocol_version))
            .with_state(self)
    }

    /// The agent a request's bearer token belongs to, when it is the one in the path.
    fn agent_for(
        &self,
        headers: &HeaderMap,
        agent_id: &str,
    ) -> Result<String, (StatusCode, &'static str)> {
        let Some(agent) = self.bearer(headers) else {
            return Err((StatusCode::UNAUTHORIZED, "missing or expired token"));
        };
        if agent != agent_id {
            return Err((StatusCode::FORBIDDEN, "token of another agent"));
        }
        Ok(agent)
    }

    fn bearer(&self, headers: &HeaderMap) -> Option<String> {
        let v = headers.get("authorization")?.to_str().ok()?;
        let t = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?;
        self.db.agent_by_token(t, (self.clock)()).ok().flatten()
    }

    fn admin(&self, headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == &*self.admin_token)
    }
}

fn valid_code_shape(c: &str) -> bool {
    c.len() == 14
        && c.split('-').count() == 3
        && c.split('-')
            .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

async fn activate(State(c): State<Cloud>, body: axum::Json<Value>) -> Response {
    let code = body
        .get("activationCode")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_uppercase();
    if !valid_code_shape(&code) {
        return reason(
            StatusCode::BAD_REQUEST,
            "malformed activation code (expected XXXX-XXXX-XXXX)",
        );
    }
    let client_id = format!("client-{}", random_token(1));
    let secret = random_token(2);
    match c
        .db
        .activate(&code, &client_id, &hash(&secret), (c.clock)())
    {
        Ok(Ok(agent)) => (
            StatusCode::CREATED,
            axum::Json(json!({ "agentId": agent, "clientId": client_id, "clientSecret": secret })),
        )
            .into_response(),
        Ok(Err(CodeProblem::Unknown)) => reason(StatusCode::NOT_FOUND, "unknown activation code"),
        Ok(Err(CodeProblem::Expired)) => reason(
            StatusCode::GONE,
            "activation code expired (valid for 72 hours); generate a new one",
        ),
        Ok(Err(CodeProblem::Used)) => reason(
            StatusCode::GONE,
            "activation code already used; generate a new one",
        ),
        Err(_) => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

async fn token(State(c): State<Cloud>, body: axum::Json<Value>) -> Response {
    let get = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if get("grant_type") != "client_credentials" {
        return reason(
            StatusCode::BAD_REQUEST,
            "grant_type must be client_credentials",
        );
    }
    match c
        .db
        .agent_by_credentials(&get("client_id"), &hash(&get("client_secret")))
    {
        Ok(Some(agent)) => {
            let t = random_token(2);
            let now = (c.clock)();
            if c.db.add_token(&t, &agent, now + TOKEN_SECS * 1000).is_err() {
                return reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable");
            }
            axum::Json(json!({ "access_token": t, "token_type": "bearer", "expires_in": TOKEN_SECS, "created_at": now / 1000 })).into_response()
        }
        Ok(None) => reason(StatusCode::UNAUTHORIZED, "invalid client credentials"),
        Err(_) => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// After a takeover, the printer stays with its new agent this long: another agent's
/// takeover request within it is answered `ownedByAnotherAgent` (no flapping).
pub const TAKEOVER_HOLD_MS: i64 = 24 * 3600 * 1000;

/// Applies one report to the stored state; returns its status. A printer another agent
/// holds is `ownedByAnotherAgent`, unless the uploading agent asks for a takeover and the
/// printer has not moved within [`TAKEOVER_HOLD_MS`].
fn apply_report(
    db: &CloudDb,
    agent: &str,
    r: &Value,
    now: i64,
    takeover: bool,
) -> Result<&'static str, crate::store::StoreError> {
    let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
    let serial = r
        .get("serialNumber")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let seq = r.get("reportSeq").and_then(Value::as_u64).unwrap_or(0);
    let collected = r.get("collectedAt").and_then(Value::as_i64).unwrap_or(now);
    if serial.is_empty() {
        return Ok("rejected");
    }
    if let Some(owner) = db.other_owner(&serial, agent)? {
        let held = db
            .last_move_ms(&serial)?
            .is_some_and(|t| now - t < TAKEOVER_HOLD_MS);
        if !takeover || held {
            return Ok("ownedByAnotherAgent");
        }
        db.move_asset(&serial, &owner, agent, now)?;
    }
    let existing = db.asset(agent, &serial)?;
    match kind {
        "snapshot" => {
            let mut body = r.clone();
            if let Value::Object(m) = &mut body {
                for k in ["kind", "reportSeq", "trigger", "collectedAt"] {
                    m.remove(k);
                }
            }
            // Same keyed view as the agent computes (nulls dropped, arrays keyed).
            let keyed = report::keyed_json(body);
            db.put_asset(&AssetRow {
                agent_id: agent.into(),
                serial: serial.clone(),
                seq,
                keyed: keyed.to_string(),
                date_created_ms: existing.as_ref().map_or(now, |e| e.date_created_ms),
                date_modified_ms: now,
                last_data_refresh: collected,
            })?;
            db.log_applied(agent, &serial, seq, "snapshot", now)?;
            Ok("applied")
        }
        "delta" => {
            let base = r.get("baseReportSeq").and_then(Value::as_u64).unwrap_or(0);
            let Some(e) = existing else {
                return Ok("resync");
            };
            if e.seq != base {
                return Ok(if e.seq >= seq { "duplicate" } else { "resync" });
            }
            let mut state: Value = serde_json::from_str(&e.keyed).unwrap_or(Value::Null);
            report::apply(&mut state, r.get("patch").unwrap_or(&Value::Null));
            db.put_asset(&AssetRow {
                seq,
                keyed: state.to_string(),
                date_modified_ms: now,
                last_data_refresh: collected,
                ..e
            })?;
            db.log_applied(agent, &serial, seq, "delta", now)?;
            Ok("applied")
        }
        _ => Ok("rejected"),
    }
}

async fn upload(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err((status, text)) => return reason(status, text),
    };
    let Some(mid) = body
        .get("messageId")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return reason(StatusCode::BAD_REQUEST, "messageId missing");
    };
    let reports = body
        .get("reports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let db = c.db.clone();
    let now = (c.clock)();
    let takeover = body
        .get("takeover")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let out = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, crate::store::StoreError> {
        let first = db.first_sight(&mid, &agent, now)?;
        reports
            .iter()
            .map(|r| {
                let status = if first { apply_report(&db, &agent, r, now, takeover)? } else { "duplicate" };
                Ok(json!({ "serialNumber": r.get("serialNumber"), "reportSeq": r.get("reportSeq"), "status": status }))
            })
            .collect()
    })
    .await;
    match out {
        Ok(Ok(results)) => axum::Json(json!({ "results": results })).into_response(),
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// The protocol version this cloud speaks.
pub const PROTOCOL: &str = "1";

/// Refuses requests that announce another protocol version (426, with the version spoken);
/// requests without the header (curl, integrators' scripts) are served as version 1.
async fn protocol_version(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match req.headers().get("fleet-agent-protocol") {
        Some(v) if v.as_bytes() != PROTOCOL.as_bytes() => {
            let mut r = reason(
                StatusCode::UPGRADE_REQUIRED,
                &format!(
                    "protocol {} is not spoken here; this cloud speaks {PROTOCOL}",
                    String::from_utf8_lossy(v.as_bytes())
                ),
            );
            r.headers_mut().insert(
                "fleet-agent-protocol",
                axum::http::HeaderValue::from_static(PROTOCOL),
            );
            r
        }
        _ => next.run(req).await,
    }
}

/// How often agents are asked to send a heartbeat.
pub const HEARTBEAT_SECS: u64 = 60;

async fn heartbeat(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err((status, text)) => return reason(status, text),
    };
    let (db, now, text) = (c.db.clone(), (c.clock)(), body.0.to_string());
    let settings = tokio::task::spawn_blocking(move || {
        db.put_heartbeat(&agent, now, &text)?;
        db.run_schedules(now)?;
        db.expire_jobs(now)?;
        let waiting = !db.jobs(Some(&agent), Some("pending"))?.is_empty();
        Ok::<_, crate::store::StoreError>((db.settings(&agent)?, waiting))
    })
    .await;
    match settings {
        Ok(Ok((settings, waiting))) => axum::Json(json!({
            "jobsWaiting": waiting,
            "nextHeartbeatSecs": c.heartbeat_secs,
            "configEtag": settings.as_deref().map(etag),
        }))
        .into_response(),
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// The strong entity tag of a settings document.
pub fn etag(settings: &str) -> String {
    format!("\"{}\"", &hash(settings)[..16])
}

/// `GET /v1/agents/{id}/config`: the settings document, or 304 when the agent's
/// `If-None-Match` already names it.
async fn config(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err((status, text)) => return reason(status, text),
    };
    let db = c.db.clone();
    let Ok(Ok(Some(settings))) = tokio::task::spawn_blocking(move || db.settings(&agent)).await
    else {
        return reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable");
    };
    let tag = etag(&settings);
    let header = axum::http::HeaderValue::from_str(&tag).expect("hex etag");
    let cached = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut r = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body: Value = serde_json::from_str(&settings).unwrap_or_else(|_| json!({}));
        axum::Json(body).into_response()
    };
    r.headers_mut().insert(axum::http::header::ETAG, header);
    r
}

/// `PUT /admin/v1/agents/{id}/settings`: replaces the settings document (any JSON
/// object; the agent validates it and reports a rejection in its heartbeat).
async fn admin_settings(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
    }
    if !body.is_object() {
        return reason(StatusCode::BAD_REQUEST, "settings must be a JSON object");
    }
    let (db, text) = (c.db.clone(), body.0.to_string());
    let tag = etag(&text);
    match tokio::task::spawn_blocking(move || db.set_settings(&agent_id, &text)).await {
        Ok(Ok(true)) => axum::Json(json!({ "etag": tag })).into_response(),
        Ok(Ok(false)) => reason(StatusCode::NOT_FOUND, "no such agent"),
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

async fn admin_list(State(c): State<Cloud>, headers: HeaderMap) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
    }
    let db = c.db.clone();
    match tokio::task::spawn_blocking(move || db.agents()).await {
        Ok(Ok(rows)) => {
            let agents: Vec<Value> = rows
                .iter()
                .map(|a| {
                    let (at, body) = match &a.heartbeat {
                        Some((t, b)) => (json!(t), serde_json::from_str(b).unwrap_or(Value::Null)),
                        None => (Value::Null, Value::Null),
                    };
                    json!({ "agentId": a.id, "name": a.name, "activated": a.activated, "lastHeartbeatAt": at, "lastHeartbeat": body })
                })
                .collect();
            axum::Json(json!({ "agents": agents })).into_response()
        }
        _ => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

async fn admin_create(
    State(c): State<Cloud>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
    }
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("fleet agent");
    let settings = body.get("settings").cloned().unwrap_or(json!({}));
    match c.create_agent(name, &settings) {
        Ok((id, code, exp)) => (
            StatusCode::CREATED,
            axum::Json(json!({ "agentId": id, "activationCode": code, "expiresAt": exp })),
        )
            .into_response(),
        Err(_) => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}

/// Builds one asset in the seed API's shape (DATA-MODEL.md §1.4, §4.4).
pub fn asset_json(a: &AssetRow) -> Value {
    let state: Value = serde_json::from_str(&a.keyed).unwrap_or(Value::Null);
    let api = report::unkeyed(&state);
    let strip = |arr: Option<&Value>, key: &str| -> Value {
        let items = arr.and_then(Value::as_array).cloned().unwrap_or_default();
        Value::Array(
            items
                .into_iter()
                .map(|mut x| {
                    if let Value::Object(m) = &mut x {
                        m.remove(key);
                        m.remove("ext");
                    }
                    x
                })
                .collect(),
        )
    };
    let mut counters = api.get("counters").cloned().unwrap_or(Value::Null);
    if let Value::Object(m) = &mut counters {
        m.remove("ext");
    }
    json!({
        "manufacturer": api.get("manufacturer"),
        "modelName": api.get("modelName"),
        "serialNumber": a.serial,
        "accountId": a.agent_id,
        "name": null,
        "description": null,
        "dateCreated": a.date_created_ms,
        "dateModified": a.date_modified_ms,
        "lastCommunication": a.date_modified_ms,
        "lastDataRefresh": a.last_data_refresh,
        "communicating": true,
        "authenticated": null,
        "baseFirmwareLastModifiedDate": null,
        "counters": counters,
        "diagnosticEvents": [],
        "supplies": strip(api.get("supplies"), "supplyKey"),
        "alerts": strip(api.get("alerts"), "alertKey"),
    })
}

async fn assets(State(c): State<Cloud>, headers: HeaderMap) -> Response {
    if !c.admin(&headers) {
        return reason(StatusCode::UNAUTHORIZED, "admin token required");
    }
    match c.db.assets() {
        Ok(rows) => {
            let content: Vec<Value> = rows.iter().map(asset_json).collect();
            let n = content.len();
            axum::Json(json!({ "content": content, "totalElements": n, "totalPages": 1, "numberOfElements": n, "size": 200, "number": 0, "first": true, "last": true, "empty": n == 0 })).into_response()
        }
        Err(_) => reason(StatusCode::INTERNAL_SERVER_ERROR, "store unavailable"),
    }
}
