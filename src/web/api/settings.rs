//! The gear menu: proxy, localhost-only access, log level, the agent password, the log
//! download.

use super::activation::ProxyForm;
use super::{Shared, blocking, session_cookie, too_many_guesses};
use crate::config::Proxy;
use crate::web::{auth, reason, session_of};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// `GET /api/settings`: the gear menu (secrets as set / not set).
pub async fn settings(State(agent): Shared) -> Response {
    let config = agent.live().config;
    let r = blocking(&agent, |a| {
        Ok((
            a.store.page_proxy(&a.key)?,
            a.store.page_password()?.is_some(),
            a.store.log_level()?,
            crate::web::tls::stored_fingerprint(&a.store)?,
        ))
    })
    .await;
    let (proxy, pw, level, fingerprint) = match r {
        Ok(v) => v,
        Err(e) => return e,
    };
    // Open to other hosts: where, and the certificate's fingerprint to check in the
    // browser's warning.
    let remote = agent.remote_wanted().then(|| {
        let at = if config.web_listen.ip().is_loopback() {
            config.web_remote_listen
        } else {
            config.web_listen
        };
        json!({"listen": at.to_string(), "port": at.port(), "fingerprint": fingerprint})
    });
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
            "passwordSet": p.password.is_some_and(|x| !x.expose().is_empty()),
        })),
        "fileProxy": file_proxy,
        "passwordSet": pw,
        "localhostOnly": agent.localhost_only.load(Ordering::Relaxed),
        "remote": remote,
        "logLevel": level.unwrap_or_else(|| config.log_level.clone()),
        "listen": config.web_listen.to_string(),
    }))
    .into_response()
}

/// `PUT /api/settings/proxy` body: a proxy, or `{"clear": true}` to use the file's;
/// `"force": true` saves a proxy through which the cloud cannot be reached now.
#[derive(Deserialize)]
pub struct ProxyChange {
    #[serde(default)]
    clear: bool,
    #[serde(default)]
    force: bool,
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
    // The proxy as it would be stored (an empty password field keeps the stored one).
    let proxy = match new {
        None => None,
        Some(form) => {
            let r = blocking(&agent, move |a| {
                let mut p = form.page_proxy();
                if p.password.is_none()
                    && let Some(old) = a.store.page_proxy(&a.key)?
                    && old.user == p.user
                {
                    p.password = old.password;
                }
                Ok(p)
            })
            .await;
            match r {
                Ok(p) => Some(p),
                Err(e) => return e,
            }
        }
    };
    // Tried before it is saved: a dead proxy would silently hold every upload back.
    if let Some(p) = proxy.as_ref().filter(|_| !change.force) {
        let cloud = agent.live().config.cloud;
        let via = p.proxy();
        if let Ok(Some(client)) = crate::cloud::activation::client(&cloud, &via)
            && let Err(e) = client.reach().await
        {
            let url = cloud.url.unwrap_or_default();
            let why = match e {
                crate::cloud::client::CloudError::Transient(w) => w,
                other => other.to_string(),
            };
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(json!({
                    "reason": format!(
                        "cannot reach the cloud at {url} through the proxy {}:{}: {why}; not saved",
                        p.host, p.port
                    ),
                    "canForce": true,
                })),
            )
                .into_response();
        }
    }
    let r = blocking(&agent, move |a| {
        a.store.set_page_proxy(&a.key, proxy.as_ref())?;
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

/// `PUT /api/settings/security`: "allow localhost access only" (on by default). Turning
/// it off opens the page to other hosts: only once an agent password is set, over HTTPS
/// with the agent's own certificate, on `web.remote_listen` (every interface by default)
/// when `web.listen` is a loopback address; plain HTTP stays for this host. Turning it on
/// closes it again (back to `web.listen`, plain HTTP).
pub async fn set_security(State(agent): Shared, body: Option<axum::Json<Security>>) -> Response {
    let Some(axum::Json(sec)) = body else {
        return reason(
            StatusCode::BAD_REQUEST,
            "expected JSON {\"localhostOnly\": bool}",
        );
    };
    let config = agent.live().config;
    if sec.localhost_only {
        agent.localhost_only.store(true, Ordering::Relaxed);
        if let Err(e) = blocking(&agent, |a| a.store.set_localhost_only(true)).await {
            return e;
        }
        let at = match move_page(&agent, config.web_listen, None).await {
            Ok(at) => at,
            Err(why) => return reason(StatusCode::INTERNAL_SERVER_ERROR, why),
        };
        tracing::info!(listen = %at, "Local page: localhost access only.");
        return axum::Json(json!({"localhostOnly": true, "listen": at.to_string()}))
            .into_response();
    }
    match blocking(&agent, |a| Ok(a.store.page_password()?.is_some())).await {
        Ok(true) => {}
        Ok(false) => {
            return reason(
                StatusCode::CONFLICT,
                "set an agent password first: the page opens to other hosts only behind one",
            );
        }
        Err(e) => return e,
    }
    let a = agent.clone();
    let (tls, fingerprint) = match tokio::task::spawn_blocking(move || a.page_tls()).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return reason(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => return reason(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    let addr = if config.web_listen.ip().is_loopback() {
        config.web_remote_listen
    } else {
        config.web_listen
    };
    let at = match move_page(&agent, addr, Some(tls)).await {
        Ok(at) => at,
        Err(why) => {
            return reason(
                StatusCode::CONFLICT,
                format!("{why} (web.remote_listen); the page stays on this computer only"),
            );
        }
    };
    if let Err(e) = blocking(&agent, |a| a.store.set_localhost_only(false)).await {
        return e;
    }
    agent.localhost_only.store(false, Ordering::Relaxed);
    tracing::warn!(listen = %at, fingerprint = %fingerprint, "Local page open to other hosts over HTTPS.");
    axum::Json(json!({
        "localhostOnly": false,
        "listen": at.to_string(),
        "fingerprint": fingerprint,
    }))
    .into_response()
}

/// Moves the page's listener; the address it listens on, or why not.
async fn move_page(
    agent: &std::sync::Arc<crate::web::Agent>,
    addr: SocketAddr,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> Result<SocketAddr, String> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    let gone = || "the page's listener is not running".to_string();
    agent
        .rebind
        .send(crate::web::listener::Rebind { addr, tls, done })
        .await
        .map_err(|_| gone())?;
    outcome.await.map_err(|_| gone())?
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
    if level.len() > 512 {
        return reason(
            StatusCode::BAD_REQUEST,
            "logLevel: longer than 512 characters",
        );
    }
    if let Err(why) = crate::telemetry::check_filter(&level) {
        return reason(StatusCode::BAD_REQUEST, format!("logLevel: {why}"));
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
    if let Err(wait) = agent.sessions.login_attempt(peer.ip()) {
        return too_many_guesses(wait);
    }
    // None: the current password is wrong; Some(Err): the new one could not be hashed.
    let r = blocking(&agent, move |a| {
        if let Some(phc) = a.store.page_password()?
            && !change
                .current
                .as_deref()
                .is_some_and(|c| auth::verify_password(c, &phc))
        {
            return Ok(None);
        }
        Ok(Some(match auth::hash_password(&change.new) {
            Ok(phc) => a.store.set_page_password(&phc).map(|()| Ok(()))?,
            Err(e) => Err(e),
        }))
    })
    .await;
    match r {
        Ok(Some(Ok(()))) => {
            // This session stays (and counts as logged in); every other one ends.
            let id = session_of(&agent, &headers)
                .map(|(id, _)| id)
                .unwrap_or_default();
            agent.sessions.login_succeeded(peer.ip());
            agent.sessions.end_others(&id);
            agent.sessions.end(&id);
            let (id, s) = agent.sessions.create(true);
            tracing::info!("Agent password changed on the local page.");
            let mut resp = axum::Json(json!({"csrf": s.csrf})).into_response();
            resp.headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&id));
            resp
        }
        Ok(Some(Err(e))) => {
            // Never store a password that cannot be checked.
            tracing::error!(error = %e, "Local page: the new password could not be hashed.");
            reason(StatusCode::INTERNAL_SERVER_ERROR, format!("new: {e}"))
        }
        Ok(None) => reason(StatusCode::FORBIDDEN, "current: wrong password"),
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
