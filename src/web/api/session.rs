//! Sessions: the session cookie, login (argon2id, limited per source with growing waits), logout.

use super::{Shared, activated, session_cookie, too_many_guesses};
use crate::web::{auth, password_set, reason, session_of};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

/// `GET /api/session`: starts a session when the request has none (cookie), and says
/// what the page must show first: login, activation or the status.
pub async fn session(State(agent): Shared, headers: HeaderMap) -> Response {
    let a = agent.clone();
    let (pw, act) =
        match tokio::task::spawn_blocking(move || (password_set(&a), activated(&a))).await {
            Ok(v) => v,
            Err(_) => return reason(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
    let (id, s, new) = match session_of(&agent, &headers) {
        Some((id, s)) => (id, s, false),
        None => {
            let (id, s) = agent.sessions.create(false);
            (id, s, true)
        }
    };
    let mut resp = axum::Json(json!({
        "authenticated": s.authenticated || !pw,
        "passwordSet": pw,
        "activated": act,
        "csrf": s.csrf,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response();
    if new {
        resp.headers_mut()
            .insert(header::SET_COOKIE, session_cookie(&id));
    }
    resp
}

/// `POST /api/login` body.
#[derive(Deserialize)]
pub struct Login {
    password: String,
}

/// `POST /api/login`: checks the agent password (argon2id); wrong guesses make their source wait
/// ([`auth::Sessions::login_attempt`]).
pub async fn login(
    State(agent): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Option<axum::Json<Login>>,
) -> Response {
    let Some((id, s)) = session_of(&agent, &headers) else {
        return reason(StatusCode::UNAUTHORIZED, "no session: load the page again");
    };
    if !crate::web::csrf_ok(&s, &headers) {
        return reason(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token (X-CSRF-Token)",
        );
    }
    let Some(axum::Json(body)) = body else {
        return reason(StatusCode::BAD_REQUEST, "expected JSON {\"password\": ...}");
    };
    if let Err(wait) = agent.sessions.login_attempt(peer.ip()) {
        return too_many_guesses(wait);
    }
    let a = agent.clone();
    let ok = tokio::task::spawn_blocking(move || {
        a.store
            .page_password()
            .ok()
            .flatten()
            .is_some_and(|phc| auth::verify_password(&body.password, &phc))
    })
    .await
    .unwrap_or(false);
    if !ok {
        tracing::warn!(peer = %peer.ip(), "Local page: wrong agent password.");
        return reason(StatusCode::UNAUTHORIZED, "wrong password");
    }
    agent.sessions.login_succeeded(peer.ip());
    // A fresh session id at login (no fixation).
    agent.sessions.end(&id);
    let (id, s) = agent.sessions.create(true);
    let mut resp = axum::Json(json!({"authenticated": true, "csrf": s.csrf})).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&id));
    resp
}

/// `POST /api/logout`.
pub async fn logout(State(agent): Shared, headers: HeaderMap) -> Response {
    if let Some((id, _)) = session_of(&agent, &headers) {
        agent.sessions.end(&id);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("fleet_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}
