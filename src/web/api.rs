//! The JSON API behind the local page (`docs/web-api.md`). Errors are `{ "reason": ... }`
//! with the matching status; no response ever carries a secret (the proxy password, the
//! agent password, communities and tokens show as set / not set).

use super::{Agent, auth, keys, password_set, reason, session_of};
use crate::config::Proxy;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fleet_secret::Secret;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

type Shared = State<Arc<Agent>>;

/// Runs a store call off the async threads; a failure becomes a 500 with a reason.
async fn blocking<T: Send + 'static>(
    agent: &Arc<Agent>,
    f: impl FnOnce(&Agent) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    let a = agent.clone();
    match tokio::task::spawn_blocking(move || f(&a)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "Local page: store error.");
            Err(reason(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("store unavailable: {e}"),
            ))
        }
        Err(_) => Err(reason(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
    }
}

fn session_cookie(id: &str) -> HeaderValue {
    // The page is served over plain HTTP on loopback, so no `Secure` attribute.
    HeaderValue::from_str(&format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict",
        auth::COOKIE
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn activated(agent: &Agent) -> bool {
    agent.store.agent_id().ok().flatten().is_some()
}

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

/// `POST /api/login`: checks the agent password (argon2id), limited per peer address.
pub async fn login(
    State(agent): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Option<axum::Json<Login>>,
) -> Response {
    let Some((id, s)) = session_of(&agent, &headers) else {
        return reason(StatusCode::UNAUTHORIZED, "no session: load the page again");
    };
    if !super::csrf_ok(&s, &headers) {
        return reason(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token (X-CSRF-Token)",
        );
    }
    if let Some(wait) = agent.sessions.login_blocked(peer.ip()) {
        let mut r = reason(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong passwords; try again in {} s",
                wait.as_secs().max(1)
            ),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return r;
    }
    let Some(axum::Json(body)) = body else {
        return reason(StatusCode::BAD_REQUEST, "expected JSON {\"password\": ...}");
    };
    let a = agent.clone();
    let ok = tokio::task::spawn_blocking(move || {
        a.store
            .setting(keys::PASSWORD)
            .ok()
            .flatten()
            .is_some_and(|phc| auth::verify_password(&body.password, &phc))
    })
    .await
    .unwrap_or(false);
    if !ok {
        agent.sessions.login_failed(peer.ip());
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

/// A proxy as entered on the page (the seed's fields).
#[derive(Deserialize, serde::Serialize, Clone)]
pub struct ProxyForm {
    host: String,
    port: u16,
    #[serde(default)]
    user: Option<String>,
    /// Absent or empty on a change: keep the stored one.
    #[serde(default)]
    password: Option<String>,
}

impl ProxyForm {
    fn check(&self) -> Result<(), String> {
        let h = self.host.trim();
        if h.is_empty() {
            return Err("proxy.host: enter the proxy's name or address".into());
        }
        if h.contains(['/', '@', ' ', ':']) && h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "proxy.host: {h:?} is not a host name or address (no scheme, port or credentials)"
            ));
        }
        if self.port == 0 {
            return Err("proxy.port: enter a port between 1 and 65535".into());
        }
        if self.password.as_deref().is_some_and(|p| !p.is_empty())
            && self.user.as_deref().is_none_or(|u| u.trim().is_empty())
        {
            return Err("proxy.user: a proxy password needs a user".into());
        }
        Ok(())
    }

    fn proxy(&self) -> Proxy {
        let host = self.host.trim();
        let host = if host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Proxy::Http {
            url: format!("http://{host}:{}", self.port),
            user: self
                .user
                .clone()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty()),
            password: self
                .password
                .clone()
                .filter(|p| !p.is_empty())
                .map(Secret::new),
            no_proxy: vec![],
        }
    }
}

fn stored_proxy(agent: &Agent) -> Result<Option<ProxyForm>, crate::store::StoreError> {
    Ok(agent
        .store
        .secret(&agent.key, keys::PROXY)?
        .and_then(|s| serde_json::from_str(s.expose()).ok()))
}

/// The proxy in force: the page's when set, else the configuration file's.
pub fn effective_proxy(
    store: &crate::store::Store,
    key: &crate::store::secrets::SealKey,
    config: &crate::config::Config,
) -> Proxy {
    store
        .secret(key, keys::PROXY)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str::<ProxyForm>(s.expose()).ok())
        .map_or_else(|| config.cloud.proxy.clone(), |f| f.proxy())
}

/// `POST /api/activate` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    code: String,
    #[serde(default)]
    proxy: Option<ProxyForm>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    discover_after: bool,
}

fn code_shape(code: &str) -> bool {
    let parts: Vec<&str> = code.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| p.len() == 4 && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// `POST /api/activate`: the seed's activation form. Open before activation (there is no
/// password yet); once activated it needs a logged-in session like every other change.
pub async fn activate(
    State(agent): Shared,
    headers: HeaderMap,
    body: Option<axum::Json<Activation>>,
) -> Response {
    let Some((sid, s)) = session_of(&agent, &headers) else {
        return reason(StatusCode::UNAUTHORIZED, "no session: load the page again");
    };
    if !super::csrf_ok(&s, &headers) {
        return reason(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token (X-CSRF-Token)",
        );
    }
    let a = agent.clone();
    let (pw, was_activated) =
        match tokio::task::spawn_blocking(move || (password_set(&a), activated(&a))).await {
            Ok(v) => v,
            Err(_) => return reason(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        };
    if pw && !s.authenticated {
        return reason(StatusCode::UNAUTHORIZED, "log in with the agent password");
    }
    let Some(axum::Json(form)) = body else {
        return reason(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"code\": \"XXXX-XXXX-XXXX\", ...}",
        );
    };
    let code = form.code.trim().to_uppercase();
    if !code_shape(&code) {
        return reason(
            StatusCode::BAD_REQUEST,
            "code: an activation code looks like XXXX-XXXX-XXXX (letters and digits); check for a typing mistake",
        );
    }
    if let Some(p) = form.password.as_deref().filter(|p| !p.is_empty())
        && let Err(e) = auth::check_new_password(p)
    {
        return reason(StatusCode::BAD_REQUEST, format!("password: {e}"));
    }
    if let Some(p) = &form.proxy
        && let Err(e) = p.check()
    {
        return reason(StatusCode::BAD_REQUEST, e);
    }
    let config = agent.live().config;
    let Some(url) = config.cloud.url.clone() else {
        return reason(
            StatusCode::CONFLICT,
            "cloud.url is not set in the configuration file: the agent does not know which cloud to activate with",
        );
    };
    let ca = match &config.cloud.ca_file {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(b),
            Err(e) => {
                return reason(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cloud.ca_file {}: {e}", p.display()),
                );
            }
        },
        None => None,
    };
    let proxy = match &form.proxy {
        Some(p) => p.proxy(),
        None => {
            let a = agent.clone();
            let c = config.clone();
            tokio::task::spawn_blocking(move || effective_proxy(&a.store, &a.key, &c))
                .await
                .unwrap_or(Proxy::System)
        }
    };
    let via = match &proxy {
        Proxy::Http { url, .. } => format!(" through the proxy {url}"),
        _ => String::new(),
    };
    let client = match crate::cloud::client::CloudClient::with_proxy(
        &url,
        ca.as_deref(),
        config.cloud.timeout,
        &proxy,
    ) {
        Ok(c) => c,
        Err(e) => return reason(StatusCode::BAD_REQUEST, e.to_string()),
    };
    use crate::cloud::client::CloudError;
    let creds = match client.activate(&code).await {
        Ok(c) => c,
        Err(CloudError::Rejected { status, reason: r }) => {
            let st = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return reason(st, format!("code: {r}"));
        }
        Err(e @ (CloudError::Transient(_) | CloudError::RateLimited)) => {
            let why = e.to_string();
            let hint = if why.contains("407") || why.to_lowercase().contains("proxy") {
                " (check the proxy's address, user and password)"
            } else {
                ""
            };
            return reason(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach the cloud at {url}{via}: {why}{hint}"),
            );
        }
        Err(e) => return reason(StatusCode::BAD_GATEWAY, e.to_string()),
    };
    let agent_id = creds.agent_id.clone();
    let a = agent.clone();
    let proxy_form = form.proxy.clone();
    let password = form.password.clone().filter(|p| !p.is_empty());
    let saved = tokio::task::spawn_blocking(move || -> Result<(), String> {
        a.store
            .save_cloud_credentials(&a.key, &creds)
            .map_err(|e| e.to_string())?;
        if let Some(p) = proxy_form {
            let text = serde_json::to_string(&p).map_err(|e| e.to_string())?;
            a.store
                .set_secret(&a.key, keys::PROXY, &Secret::new(text))
                .map_err(|e| e.to_string())?;
        }
        if let Some(p) = password {
            let phc = auth::hash_password(&p)?;
            a.store
                .set_setting(keys::PASSWORD, &phc)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return reason(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("activated, but could not be saved: {e}"),
            );
        }
        Err(_) => return reason(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
    // This browser stays logged in when it just set the password.
    if form.password.as_deref().is_some_and(|p| !p.is_empty()) {
        agent.sessions.end_others(&sid);
        agent.sessions.authenticate(&sid);
    }
    agent
        .defer_discovery
        .store(!form.discover_after, Ordering::Relaxed);
    let discovery = if config.discovery.enabled() {
        if form.discover_after {
            "starting"
        } else {
            "scheduled"
        }
    } else {
        "noTargets"
    };
    tracing::info!(agent = %agent_id, reactivation = was_activated, "Activated from the local page.");
    agent.apply.send(Box::new(config)).await.ok();
    (
        StatusCode::OK,
        axum::Json(json!({"agentId": agent_id, "cloudUrl": url, "discovery": discovery})),
    )
        .into_response()
}

/// `GET /api/status`: activation, the cloud link, the outbox, the schedule, jobs.
pub async fn status(State(agent): Shared) -> Response {
    let live = agent.live();
    let r = blocking(&agent, |a| {
        Ok((
            a.store.agent_id()?,
            a.store.outbox_stats()?,
            a.store.printers()?,
            a.store
                .jobs_in(crate::store::jobs::JobState::Running)?
                .into_iter()
                .map(|j| json!({"jobId": j.job_id, "type": j.kind, "receivedAtMs": j.received_ms}))
                .collect::<Vec<_>>(),
            a.store.recent_jobs(10)?,
            a.store.agent_state()?,
        ))
    })
    .await;
    let (agent_id, outbox, printers, running, recent, disabled) = match r {
        Ok(v) => v,
        Err(e) => return e,
    };
    let c = &live.config;
    let link = agent.link.get();
    let now = agent.clock.now_ms();
    let next_poll = printers
        .iter()
        .filter_map(|p| p.last_attempt_ms)
        .map(|t| t + c.poller.interval.as_millis() as i64)
        .min();
    let progress = agent.progress.borrow().clone();
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "libraryVersion": agent.library.current().version,
        "agentUpdate": crate::update::status(&agent.state_dir),
        "startedAtMs": agent.started_ms,
        "nowMs": now,
        "activated": agent_id.is_some(),
        "agentId": agent_id,
        "state": if disabled == crate::store::AgentState::Active { "running" } else { "disabled" },
        "cloud": {
            "url": c.cloud.url,
            "lastContactMs": link.last_contact_ms,
            "lastUploadMs": link.last_upload_ms,
            "lastErrorMs": link.last_error_ms,
            "lastError": link.last_error,
            "connected": link.last_contact_ms.is_some()
                && link.last_contact_ms >= link.last_error_ms,
        },
        "outbox": outbox,
        "printers": printers.len(),
        "schedule": {
            "pollIntervalSecs": c.poller.interval.as_secs(),
            "nextPollMs": next_poll,
            "discoveryEnabled": c.discovery.enabled(),
            "discoveryIntervalSecs": c.discovery.interval.as_secs(),
            "snapshotIntervalSecs": c.upload.heartbeat_ms / 1000,
        },
        "discovery": progress,
        "jobs": {
            "running": running,
            "recent": recent.iter().map(|j| json!({
                "jobId": j.job_id, "type": j.kind, "state": j.state.as_str(),
                "receivedAtMs": j.received_ms,
                "result": j.result,
            })).collect::<Vec<_>>(),
        },
    }))
    .into_response()
}

/// `GET /api/printers`: every managed printer with its latest reading's summary and how
/// it was discovered.
pub async fn printers(State(agent): Shared) -> Response {
    let r = blocking(&agent, |a| {
        let rows = a.store.printers()?;
        let devices = a.store.devices()?;
        let mut out = Vec::new();
        for p in rows {
            let report: Option<Value> = a
                .store
                .latest_report(p.id)?
                .and_then(|r| serde_json::from_str(&r).ok());
            let ip = p.address.rsplit_once(':').map_or(&*p.address, |(h, _)| h);
            let sources = devices
                .iter()
                .find(|d| d.address.as_deref() == Some(&*p.address) || d.address.as_deref() == Some(ip))
                .map(|d| d.sources.clone());
            let lowest = report.as_ref().and_then(|r| {
                r.get("supplies")?
                    .as_array()?
                    .iter()
                    .filter_map(|s| s.get("percentRemaining")?.as_f64())
                    .reduce(f64::min)
            });
            out.push(json!({
                "id": p.id,
                "address": p.address,
                "serial": p.serial,
                "manufacturer": p.manufacturer,
                "model": p.model,
                "health": p.health.as_str(),
                "healthReason": p.health_reason,
                "lastSeenMs": p.last_seen_ms,
                "lastAttemptMs": p.last_attempt_ms,
                "discoveredBy": sources,
                "pages": report.as_ref().and_then(|r| r.pointer("/counters/lifetimeCount").cloned()),
                "lowestSupplyPercent": lowest,
                "alerts": report.as_ref().and_then(|r| r.get("alerts")?.as_array().map(Vec::len)).unwrap_or(0),
            }));
        }
        Ok(out)
    })
    .await;
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e,
    }
}

/// `GET /api/printers/{id}`: one printer and its latest full report (raw values beside
/// their meaning).
pub async fn printer(State(agent): Shared, Path(id): Path<i64>) -> Response {
    let r = blocking(&agent, move |a| {
        let row = a.store.printers()?.into_iter().find(|p| p.id == id);
        let report = a.store.latest_report(id)?;
        Ok((row, report))
    })
    .await;
    match r {
        Ok((Some(p), report)) => axum::Json(json!({
            "id": p.id,
            "address": p.address,
            "health": p.health.as_str(),
            "healthReason": p.health_reason,
            "lastSeenMs": p.last_seen_ms,
            "consecutiveFailures": p.consecutive_failures,
            "report": report.and_then(|r| serde_json::from_str::<Value>(&r).ok()),
        }))
        .into_response(),
        Ok((None, _)) => reason(StatusCode::NOT_FOUND, format!("no printer {id}")),
        Err(e) => e,
    }
}

/// `POST /api/printers/{id}/refresh`: polls the printer now and answers when done.
pub async fn refresh(State(agent): Shared, Path(id): Path<i64>) -> Response {
    let row = match blocking(&agent, move |a| {
        Ok(a.store.printers()?.into_iter().find(|p| p.id == id))
    })
    .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return reason(StatusCode::NOT_FOUND, format!("no printer {id}")),
        Err(e) => return e,
    };
    let Some(poller) = agent.live().poller else {
        return reason(
            StatusCode::CONFLICT,
            "the poller is not running (the agent is disabled or restarting)",
        );
    };
    let Ok(addr) = row.address.parse::<SocketAddr>() else {
        return reason(StatusCode::CONFLICT, format!("bad address {}", row.address));
    };
    match tokio::time::timeout(Duration::from_secs(120), poller.refresh(Some(addr))).await {
        Ok(Ok(done)) => match done.into_iter().next() {
            Some(r) => axum::Json(json!({
                "address": r.addr.to_string(),
                "ok": r.failure.is_none(),
                "failure": r.failure,
            }))
            .into_response(),
            None => reason(
                StatusCode::CONFLICT,
                format!("{} is not polled by this agent", row.address),
            ),
        },
        Ok(Err(_)) => reason(
            StatusCode::SERVICE_UNAVAILABLE,
            "the poller restarted; try again",
        ),
        Err(_) => reason(StatusCode::GATEWAY_TIMEOUT, "no answer within 120 s"),
    }
}

async fn report_rows(agent: &Arc<Agent>) -> Result<Vec<Value>, Response> {
    let rows = blocking(agent, |a| a.store.discovery_results()).await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect())
}

/// The report filter: `q` matches address, name or outcome; `outcome` one outcome code.
#[derive(Deserialize, Default)]
pub struct ReportFilter {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
}

fn matches(row: &Value, f: &ReportFilter) -> bool {
    let field = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("");
    if let Some(o) = f.outcome.as_deref().filter(|o| !o.is_empty())
        && field("outcome") != o
    {
        return false;
    }
    match f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => {
            let q = q.to_lowercase();
            row.to_string().to_lowercase().contains(&q)
        }
        None => true,
    }
}

/// `GET /api/discovery?q=&outcome=`: the last run's per-address report.
pub async fn discovery_report(State(agent): Shared, Query(f): Query<ReportFilter>) -> Response {
    match report_rows(&agent).await {
        Ok(rows) => axum::Json(
            rows.into_iter()
                .filter(|r| matches(r, &f))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => e,
    }
}

fn csv_cell(s: &str) -> String {
    // Quoted, and a leading = + - @ neutralised so a spreadsheet does not run it.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `GET /api/discovery.csv?q=&outcome=`: the same rows as CSV (one per address).
pub async fn discovery_csv(State(agent): Shared, Query(f): Query<ReportFilter>) -> Response {
    let rows = match report_rows(&agent).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut out = String::from("address,name,outcome,detail,profile,sources\r\n");
    for r in rows.iter().filter(|r| matches(r, &f)) {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut detail = r.clone();
        if let Some(m) = detail.as_object_mut() {
            for k in ["address", "name", "outcome", "profile", "sources"] {
                m.remove(k);
            }
        }
        let detail = if detail.as_object().is_some_and(|m| m.is_empty()) {
            String::new()
        } else {
            detail.to_string()
        };
        let sources = r
            .get("sources")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        out.push_str(
            &[
                csv_cell(&s("address")),
                csv_cell(&s("name")),
                csv_cell(&s("outcome")),
                csv_cell(&detail),
                csv_cell(&s("profile")),
                csv_cell(&sources),
            ]
            .join(","),
        );
        out.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"discovery-report.csv\"",
            ),
        ],
        out,
    )
        .into_response()
}

/// `POST /api/discovery/run`: "discover now"; progress follows on the event stream.
pub async fn discover_now(State(agent): Shared) -> Response {
    let Some(tx) = agent.live().discover else {
        return reason(
            StatusCode::CONFLICT,
            "discovery has no targets: the cloud's discovery settings (or [discovery] in the configuration file) name what to search",
        );
    };
    let (done_tx, _done_rx) = tokio::sync::oneshot::channel();
    match tx.try_send(done_tx) {
        Ok(()) => (StatusCode::ACCEPTED, axum::Json(json!({"started": true}))).into_response(),
        Err(_) => reason(
            StatusCode::CONFLICT,
            "a discovery run is already waiting to start",
        ),
    }
}

/// `GET /api/discovery/events`: server-sent events, one `progress` event per change
/// (done, total, found, rate, ETA, finished), the current state first.
pub async fn discovery_events(
    State(agent): Shared,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = agent.progress.subscribe();
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let p = rx.borrow_and_update().clone();
        let ev = Event::default()
            .event("progress")
            .json_data(&p)
            .unwrap_or_else(|_| Event::default());
        Some((Ok(ev), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET /api/outbox`: what will be sent (the queue, oldest first, bodies as JSON) and
/// the last message the cloud accepted.
pub async fn outbox(State(agent): Shared) -> Response {
    let r = blocking(&agent, |a| {
        Ok((
            a.store.outbox_stats()?,
            a.store.due_messages(50, i64::MAX)?,
            a.store.last_sent()?,
        ))
    })
    .await;
    match r {
        Ok((stats, pending, last)) => axum::Json(json!({
            "stats": stats,
            "pending": pending.iter().map(|m| json!({
                "messageId": m.message_id,
                "kind": m.kind,
                "printerKey": m.printer_key,
                "attempts": m.attempts,
                "bytes": m.body.len(),
                "body": serde_json::from_str::<Value>(&m.body).unwrap_or(Value::Null),
            })).collect::<Vec<_>>(),
            "lastSent": last.and_then(|l| serde_json::from_str::<Value>(&l).ok()),
        }))
        .into_response(),
        Err(e) => e,
    }
}

/// `GET /api/settings`: the gear menu (secrets as set / not set).
pub async fn settings(State(agent): Shared) -> Response {
    let config = agent.live().config;
    let r = blocking(&agent, |a| {
        Ok((
            stored_proxy(a)?,
            a.store.setting(keys::PASSWORD)?.is_some(),
            a.store.log_level()?,
        ))
    })
    .await;
    let (proxy, pw, level) = match r {
        Ok(v) => v,
        Err(e) => return e,
    };
    let file_proxy = match &config.cloud.proxy {
        Proxy::System => json!({"mode": "system"}),
        Proxy::None => json!({"mode": "none"}),
        Proxy::Http {
            url,
            user,
            password,
            ..
        } => json!({"mode": "http", "url": url, "user": user, "passwordSet": password.is_some()}),
    };
    axum::Json(json!({
        "proxy": proxy.map(|p| json!({
            "host": p.host, "port": p.port, "user": p.user,
            "passwordSet": p.password.as_deref().is_some_and(|x| !x.is_empty()),
        })),
        "fileProxy": file_proxy,
        "passwordSet": pw,
        "localhostOnly": agent.localhost_only.load(Ordering::Relaxed),
        "logLevel": level.unwrap_or_else(|| config.log_level.clone()),
        "listen": config.web_listen.to_string(),
    }))
    .into_response()
}

/// `PUT /api/settings/proxy` body: a proxy, or `{"clear": true}` to use the file's.
#[derive(Deserialize)]
pub struct ProxyChange {
    #[serde(default)]
    clear: bool,
    #[serde(flatten)]
    proxy: Option<ProxyForm>,
}

/// `PUT /api/settings/proxy`: stores the proxy (sealed) and restarts the cloud link.
pub async fn set_proxy(State(agent): Shared, body: Option<axum::Json<ProxyChange>>) -> Response {
    let Some(axum::Json(change)) = body else {
        return reason(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"host\", \"port\", \"user\", \"password\"} or {\"clear\": true}",
        );
    };
    let new = if change.clear {
        None
    } else {
        match change.proxy {
            Some(p) => {
                if let Err(e) = p.check() {
                    return reason(StatusCode::BAD_REQUEST, e);
                }
                Some(p)
            }
            None => return reason(StatusCode::BAD_REQUEST, "proxy.host: missing"),
        }
    };
    let r = blocking(&agent, move |a| {
        match new {
            None => a.store.remove_setting(keys::PROXY)?,
            Some(mut p) => {
                // An empty password field keeps the stored password.
                if p.password.as_deref().is_none_or(str::is_empty)
                    && let Some(old) = stored_proxy(a)?
                    && old.user == p.user
                {
                    p.password = old.password;
                }
                let text = serde_json::to_string(&p).unwrap_or_default();
                a.store
                    .set_secret(&a.key, keys::PROXY, &Secret::new(text))?;
            }
        }
        Ok(())
    })
    .await;
    if let Err(e) = r {
        return e;
    }
    tracing::info!("Proxy changed on the local page; restarting the cloud link.");
    agent.apply.send(Box::new(agent.live().config)).await.ok();
    StatusCode::NO_CONTENT.into_response()
}

/// `PUT /api/settings/security` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Security {
    localhost_only: bool,
}

/// `PUT /api/settings/security`: "allow localhost access only" (on by default).
pub async fn set_security(State(agent): Shared, body: Option<axum::Json<Security>>) -> Response {
    let Some(axum::Json(sec)) = body else {
        return reason(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"localhostOnly\": bool}",
        );
    };
    let on = sec.localhost_only;
    if let Err(e) = blocking(&agent, move |a| {
        a.store
            .set_setting(keys::LOCALHOST_ONLY, if on { "1" } else { "0" })
    })
    .await
    {
        return e;
    }
    agent.localhost_only.store(on, Ordering::Relaxed);
    if on {
        tracing::info!("Local page: localhost access only.");
    } else {
        tracing::warn!(
            listen = %agent.live().config.web_listen,
            "Local page: access from other hosts allowed (only reachable if web.listen is not a loopback address)."
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `PUT /api/settings/log-level` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLevel {
    log_level: String,
}

/// `PUT /api/settings/log-level`: changes the log filter now and keeps it.
pub async fn set_log_level(State(agent): Shared, body: Option<axum::Json<LogLevel>>) -> Response {
    let Some(axum::Json(l)) = body else {
        return reason(StatusCode::BAD_REQUEST, "expected JSON {\"logLevel\": ...}");
    };
    let level = l.log_level.trim().to_string();
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() || level.is_empty() {
        return reason(
            StatusCode::BAD_REQUEST,
            format!("logLevel: {level:?} is not a log filter (error, warn, info, debug, trace)"),
        );
    }
    let keep = level.clone();
    if let Err(e) = blocking(&agent, move |a| a.store.set_log_level(&keep)).await {
        return e;
    }
    agent.logs.set_level(&level);
    tracing::info!(level = %level, "Log level changed on the local page.");
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /api/password` body.
#[derive(Deserialize)]
pub struct PasswordChange {
    #[serde(default)]
    current: Option<String>,
    new: String,
}

/// `POST /api/password`: creates or changes the agent password (the current one is
/// needed to change it); other sessions end.
pub async fn set_password(
    State(agent): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Option<axum::Json<PasswordChange>>,
) -> Response {
    let Some(axum::Json(change)) = body else {
        return reason(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"current\", \"new\"}",
        );
    };
    if let Err(e) = auth::check_new_password(&change.new) {
        return reason(StatusCode::BAD_REQUEST, format!("new: {e}"));
    }
    if let Some(wait) = agent.sessions.login_blocked(peer.ip()) {
        return reason(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many wrong passwords; try again in {} s",
                wait.as_secs().max(1)
            ),
        );
    }
    let r = blocking(&agent, move |a| {
        if let Some(phc) = a.store.setting(keys::PASSWORD)?
            && !change
                .current
                .as_deref()
                .is_some_and(|c| auth::verify_password(c, &phc))
        {
            return Ok(false);
        }
        let phc = auth::hash_password(&change.new).unwrap_or_default();
        a.store.set_setting(keys::PASSWORD, &phc)?;
        Ok(true)
    })
    .await;
    match r {
        Ok(true) => {
            // This session stays (and counts as logged in); every other one ends.
            let id = session_of(&agent, &headers)
                .map(|(id, _)| id)
                .unwrap_or_default();
            agent.sessions.end_others(&id);
            agent.sessions.end(&id);
            let (id, s) = agent.sessions.create(true);
            tracing::info!("Agent password changed on the local page.");
            let mut resp = axum::Json(json!({"csrf": s.csrf})).into_response();
            resp.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&id));
            resp
        }
        Ok(false) => {
            agent.sessions.login_failed(peer.ip());
            reason(StatusCode::FORBIDDEN, "current: wrong password")
        }
        Err(e) => e,
    }
}

/// `GET /api/logs`: the agent's recent log lines as a download (they never hold
/// secrets).
pub async fn logs(State(agent): Shared) -> Response {
    let mut text = agent.logs.recent().join("\n");
    text.push('\n');
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"fleet-agent.log\"",
            ),
        ],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_proxies_and_csv_cells_are_checked() {
        assert!(code_shape("ABCD-1234-EF56"));
        assert!(!code_shape("ABCD-1234"));
        assert!(!code_shape("ABCD-1234-EF5!"));
        let p = ProxyForm {
            host: "proxy.corp.example".into(),
            port: 3128,
            user: Some("u".into()),
            password: Some("p".into()),
        };
        assert!(p.check().is_ok());
        match p.proxy() {
            Proxy::Http { url, user, .. } => {
                assert_eq!(url, "http://proxy.corp.example:3128");
                assert_eq!(user.as_deref(), Some("u"));
            }
            other => panic!("{other:?}"),
        }
        for bad in ["", "http://x", "u:p@x", "x:3128"] {
            let f = ProxyForm {
                host: bad.into(),
                ..p.clone()
            };
            assert!(f.check().unwrap_err().starts_with("proxy.host"), "{bad}");
        }
        let f = ProxyForm {
            user: None,
            ..p.clone()
        };
        assert!(f.check().unwrap_err().starts_with("proxy.user"));
        assert_eq!(csv_cell("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_cell("=cmd()"), "\"'=cmd()\"");
    }
}
