//! The seed's activation form and the proxy entered on it; the exchange itself is
//! `cloud::activation`, the one the command line's `activate` takes too.

use super::{Shared, activated, blocking};
use crate::store::PageProxy;
use crate::web::{auth, password_set, reason, session_of};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fleet_secret::Secret;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;

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
    pub(super) fn check(&self) -> Result<(), String> {
        let h = self.host.trim();
        if h.is_empty() {
            return Err("proxy.host: enter the proxy's name or address".into());
        }
        // A DNS name has at most 253 characters; the echo of a longer one broke the page.
        if h.len() > 253 {
            return Err(format!(
                "proxy.host: {} characters; a host name has at most 253",
                h.chars().count()
            ));
        }
        if self.user.as_deref().is_some_and(|u| u.len() > 256)
            || self.password.as_deref().is_some_and(|p| p.len() > 1024)
        {
            return Err("proxy.user / proxy.password: at most 256 and 1,024 characters".into());
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

    /// What the store keeps: the form, its password a secret (an empty one is none).
    pub(super) fn page_proxy(&self) -> PageProxy {
        PageProxy {
            host: self.host.trim().to_string(),
            port: self.port,
            user: self
                .user
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            password: self
                .password
                .clone()
                .filter(|p| !p.is_empty())
                .map(Secret::new),
        }
    }
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
    /// Search the host's own networks (as `discovery.local_network`), the page's
    /// one-click choice for an agent whose configuration names no targets.
    #[serde(default)]
    search_local_networks: bool,
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
    if !crate::web::csrf_ok(&s, &headers) {
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
    if let Err(e) = crate::cloud::activation::normalize_code(&form.code) {
        return reason(StatusCode::BAD_REQUEST, e.to_string());
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
    let mut config = agent.live().config;
    let page_proxy = form.proxy.as_ref().map(ProxyForm::page_proxy);
    let proxy = match &page_proxy {
        Some(p) => p.proxy(),
        None => {
            let c = config.clone();
            match blocking(&agent, move |a| {
                Ok(crate::cloud::activation::proxy_in_force(
                    &a.store, &a.key, &c,
                ))
            })
            .await
            {
                Ok(p) => p,
                Err(r) => return r,
            }
        }
    };
    use crate::cloud::activation::ActivationError as E;
    let creds = match crate::cloud::activation::activate(
        &config,
        &proxy,
        &form.code,
        &agent.store,
        &agent.key,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            let status = match &e {
                E::NoCloudUrl => StatusCode::CONFLICT,
                E::CodeShape | E::Config(_) => StatusCode::BAD_REQUEST,
                E::Refused { status, .. } => {
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
                }
                E::Unreachable { .. } => StatusCode::BAD_GATEWAY,
                E::NotSaved(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return reason(status, e.to_string());
        }
    };
    let agent_id = creds.agent_id.clone();
    let url = config.cloud.url.clone().unwrap_or_default();
    let a = agent.clone();
    let password = form.password.clone().filter(|p| !p.is_empty());
    let search_local = form.search_local_networks;
    let saved = tokio::task::spawn_blocking(move || -> Result<(), String> {
        if search_local {
            a.store
                .set_search_local_networks(true)
                .map_err(|e| e.to_string())?;
        }
        if let Some(p) = page_proxy {
            a.store
                .set_page_proxy(&a.key, Some(&p))
                .map_err(|e| e.to_string())?;
        }
        if let Some(p) = password {
            let phc = auth::hash_password(&p)?;
            a.store.set_page_password(&phc).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return reason(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "activated, but the proxy, password or network choice could not be saved: {e}"
                ),
            );
        }
        Err(_) => return reason(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
    // This browser stays logged in when it just set the password.
    if form.password.as_deref().is_some_and(|p| !p.is_empty()) {
        agent.sessions.end_others(&sid);
        agent.sessions.authenticate(&sid);
    }
    config.discovery.local_network |= form.search_local_networks;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proxy;

    #[test]
    fn proxies_are_checked() {
        let p = ProxyForm {
            host: "proxy.corp.example".into(),
            port: 3128,
            user: Some("u".into()),
            password: Some("p".into()),
        };
        assert!(p.check().is_ok());
        match p.page_proxy().proxy() {
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
    }
}
