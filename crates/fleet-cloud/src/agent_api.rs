//! What agents call: activation, tokens, uploads (snapshots and deltas applied in
//! sequence, each message id counted once, takeover between agents), heartbeat, and the
//! settings document with its entity tag.

use super::{CODE_VALIDITY_MS, Cloud, Doc, TOKEN_SECS, etag, hash, reason, unavailable};
use crate::db::{AssetRow, CodeProblem, DbError, Upload};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fleet_protocol::activation::{
    ActivateRequest, Activated, CLIENT_CREDENTIALS, Token, TokenRequest,
};
use fleet_protocol::heartbeat::{Heartbeat, HeartbeatAnswer};
use fleet_protocol::keyed;
use fleet_protocol::upload::{Envelope, Report, ReportResult, ReportStatus, UploadAnswer};
use fleet_secret::{Secret, random_token};
use serde_json::Value;

fn valid_code_shape(c: &str) -> bool {
    c.len() == 14
        && c.split('-').count() == 3
        && c.split('-')
            .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Cloud {
    /// Creates an agent instance; returns (agent id, activation code, expiry epoch ms).
    ///
    /// # Errors
    /// On database failure.
    pub fn create_agent(
        &self,
        name: &str,
        settings: &Value,
    ) -> Result<(String, String, i64), DbError> {
        let id = format!("agent-{}", &random_token(1)[..12]);
        let code = new_code();
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

    /// A new activation code for an existing instance (the seed's "Générer un code
    /// d'activation": the first expired, or the agent is reinstalled on another host).
    /// Its unused codes stop working; activating with the new one replaces the
    /// instance's credentials and ends its tokens, so the old host is cut off. Returns
    /// (code, expiry epoch ms), `None` when there is no such instance.
    ///
    /// # Errors
    /// On database failure.
    pub fn new_activation_code(&self, agent_id: &str) -> Result<Option<(String, i64)>, DbError> {
        let code = new_code();
        let expires = (self.clock)() + CODE_VALIDITY_MS;
        Ok(self
            .db
            .replace_activation_code(agent_id, &code, expires)?
            .then_some((code, expires)))
    }
}

/// A fresh code, `XXXX-XXXX-XXXX`.
fn new_code() -> String {
    let raw = random_token(1).to_uppercase();
    format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12])
}

/// `POST /v1/activate`.
pub async fn activate(State(c): State<Cloud>, Doc(body): Doc<ActivateRequest>) -> Response {
    let code = body.activation_code.trim().to_uppercase();
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
        Ok(Ok(agent)) => {
            let config_etag = c.db.settings(&agent).ok().flatten().map(|s| etag(&s));
            (
                StatusCode::CREATED,
                axum::Json(Activated {
                    agent_id: agent,
                    client_id,
                    client_secret: Secret::new(secret),
                    config_etag,
                }),
            )
                .into_response()
        }
        Ok(Err(CodeProblem::Unknown)) => reason(StatusCode::NOT_FOUND, "unknown activation code"),
        Ok(Err(CodeProblem::Expired)) => reason(
            StatusCode::GONE,
            "activation code expired (valid for 72 hours); generate a new one",
        ),
        Ok(Err(CodeProblem::Used)) => reason(
            StatusCode::GONE,
            "activation code already used; generate a new one",
        ),
        Err(_) => unavailable(),
    }
}

/// `POST /v1/oauth/token`.
pub async fn token(State(c): State<Cloud>, Doc(body): Doc<TokenRequest>) -> Response {
    if body.grant_type != CLIENT_CREDENTIALS {
        return reason(
            StatusCode::BAD_REQUEST,
            "grant_type must be client_credentials",
        );
    }
    match c
        .db
        .agent_by_credentials(&body.client_id, &hash(body.client_secret.expose()))
    {
        Ok(Some(agent)) => {
            let t = random_token(2);
            let now = (c.clock)();
            if c.db
                .add_token(&hash(&t), &agent, now + TOKEN_SECS * 1000)
                .is_err()
            {
                return unavailable();
            }
            axum::Json(Token {
                access_token: Secret::new(t),
                token_type: "bearer".into(),
                expires_in: TOKEN_SECS as u64,
                created_at: now / 1000,
            })
            .into_response()
        }
        Ok(None) => reason(StatusCode::UNAUTHORIZED, "invalid client credentials"),
        Err(_) => unavailable(),
    }
}

/// After a takeover, the printer stays with its new agent this long: another agent's
/// takeover request within it is answered `ownedByAnotherAgent` (no flapping).
pub const TAKEOVER_HOLD_MS: i64 = 24 * 3600 * 1000;

/// Applies one report to the stored state; returns its status. A printer another agent
/// holds is `ownedByAnotherAgent`, unless the uploading agent asks for a takeover and the
/// printer has not moved within [`TAKEOVER_HOLD_MS`].
fn apply_report(
    db: &Upload<'_>,
    agent: &str,
    r: &Report,
    now: i64,
    takeover: bool,
) -> Result<ReportStatus, DbError> {
    let Some(serial) = r.serial_number().filter(|s| !s.is_empty()) else {
        return Ok(ReportStatus::Rejected);
    };
    let seq = r.report_seq();
    if let Some(owner) = db.other_owner(serial, agent)? {
        let held = db
            .last_move_ms(serial)?
            .is_some_and(|t| now - t < TAKEOVER_HOLD_MS);
        if !takeover || held {
            return Ok(ReportStatus::OwnedByAnotherAgent);
        }
        db.move_asset(serial, &owner, agent, now)?;
    }
    let existing = db.asset(agent, serial)?;
    match r {
        Report::Snapshot(s) => {
            // Same keyed view as the agent computes (nulls dropped, arrays keyed).
            let keyed = keyed::keyed(s.report());
            db.put_asset(&AssetRow {
                agent_id: agent.into(),
                serial: serial.to_string(),
                seq,
                keyed: keyed.to_string(),
                date_created_ms: existing.as_ref().map_or(now, |e| e.date_created_ms),
                date_modified_ms: now,
                last_data_refresh: s.collected_at,
            })?;
            db.log_applied(agent, serial, seq, "snapshot", now)?;
            Ok(ReportStatus::Applied)
        }
        Report::Delta(d) => {
            let Some(e) = existing else {
                return Ok(ReportStatus::Resync);
            };
            if e.seq != d.base_report_seq {
                return Ok(if e.seq >= seq {
                    ReportStatus::Duplicate
                } else {
                    ReportStatus::Resync
                });
            }
            let mut state: Value = serde_json::from_str(&e.keyed).unwrap_or(Value::Null);
            keyed::apply(&mut state, &d.patch);
            db.put_asset(&AssetRow {
                seq,
                keyed: state.to_string(),
                date_modified_ms: now,
                last_data_refresh: d.collected_at,
                ..e
            })?;
            db.log_applied(agent, serial, seq, "delta", now)?;
            Ok(ReportStatus::Applied)
        }
    }
}

/// `POST /v1/agents/{agentId}/uploads`.
pub async fn upload(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    Doc(envelope): Doc<Envelope>,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let db = c.db.clone();
    let now = (c.clock)();
    let gzip = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let out = tokio::task::spawn_blocking(move || -> Result<_, DbError> {
        let results = db.upload(|db| {
            let first = db.first_sight(&envelope.message_id, &agent, now)?;
            let results = envelope
                .reports
                .iter()
                .map(|r| {
                    let status = if first {
                        apply_report(db, &agent, r, now, envelope.takeover)?
                    } else {
                        ReportStatus::Duplicate
                    };
                    Ok(ReportResult {
                        serial_number: r.serial_number().map(str::to_string),
                        report_seq: r.report_seq(),
                        status,
                    })
                })
                .collect::<Result<Vec<_>, DbError>>()?;
            Ok((first, results))
        })?;
        let (first, results) = results;
        Ok((
            results,
            crate::UploadSeen {
                message_id: envelope.message_id,
                reports: envelope.reports.len(),
                first,
                gzip,
            },
        ))
    })
    .await;
    match out {
        Ok(Ok((results, seen))) => {
            c.upload_seen(seen);
            let delay = c.upload_answer_delay();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            axum::Json(UploadAnswer { results }).into_response()
        }
        _ => unavailable(),
    }
}

/// `POST /v1/agents/{agentId}/heartbeat`.
pub async fn heartbeat(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    Doc(body): Doc<Heartbeat>,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let mut body = body;
    // The statuses go to their own table (a heartbeat carries changes only); the stored
    // heartbeat keeps the rest. More than the protocol's bound are ignored.
    let statuses: Vec<crate::db::PrinterStatusRow> = std::mem::take(&mut body.printer_status)
        .into_iter()
        .take(fleet_protocol::heartbeat::MAX_PRINTER_STATUS)
        .map(|mut p| {
            // Agents' texts are kept within sizes an admin view can show.
            let cut = |t: &mut String, n: usize| {
                if t.len() > n {
                    let mut i = n;
                    while !t.is_char_boundary(i) {
                        i -= 1;
                    }
                    t.truncate(i);
                }
            };
            cut(&mut p.address, 128);
            for t in [&mut p.serial_number, &mut p.reason, &mut p.quirks]
                .into_iter()
                .flatten()
            {
                cut(t, 1024);
            }
            crate::db::PrinterStatusRow {
                body: serde_json::to_string(&p).unwrap_or_default(),
                address: p.address,
                serial: p.serial_number,
                received_ms: 0,
            }
        })
        .collect();
    let text = serde_json::to_string(&body).unwrap_or_default();
    let (db, now) = (c.db.clone(), (c.clock)());
    let settings = tokio::task::spawn_blocking(move || {
        db.put_heartbeat(&agent, now, &text, &statuses)?;
        db.run_schedules(now)?;
        db.expire_jobs(now)?;
        let waiting = !db.jobs(Some(&agent), Some("pending"))?.is_empty();
        Ok::<_, DbError>((db.settings(&agent)?, waiting))
    })
    .await;
    match settings {
        Ok(Ok((settings, waiting))) => axum::Json(HeartbeatAnswer {
            jobs_waiting: waiting,
            next_heartbeat_secs: Some(c.heartbeat_secs),
            config_etag: settings.as_deref().map(etag),
        })
        .into_response(),
        _ => unavailable(),
    }
}

/// `GET /v1/agents/{id}/config`: the settings document, or 304 when the agent's
/// `If-None-Match` already names it.
pub async fn config(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let agent = match c.agent_for(&headers, &agent_id) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let db = c.db.clone();
    let Ok(Ok(Some(settings))) = tokio::task::spawn_blocking(move || db.settings(&agent)).await
    else {
        return unavailable();
    };
    let tag = etag(&settings);
    let Ok(header) = axum::http::HeaderValue::from_str(&tag) else {
        return unavailable();
    };
    let cached = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut r = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body: Value =
            serde_json::from_str(&settings).unwrap_or_else(|_| Value::Object(Default::default()));
        axum::Json(body).into_response()
    };
    r.headers_mut().insert(axum::http::header::ETAG, header);
    r
}
