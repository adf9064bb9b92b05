//! The JSON API behind the local page (`docs/web-api.md`). Errors are `{ "reason": ... }`
//! with the matching status; no response ever carries a secret (the proxy password, the
//! agent password, communities and tokens show as set / not set).
//!
//! - [`session`]: the session cookie, login, logout.
//! - [`activation`]: the activation form (code, proxy, password).
//! - [`fleet`]: status, printers, refresh, the outbox.
//! - [`discovery`]: the per-address report (JSON, CSV), "discover now", progress events.
//! - [`settings`]: proxy, access, log level, password, the log download.
//! - [`trends`]: a printer's daily points and its supplies' run-out estimates.
//! - [`summary`]: a printer's state at a glance (reachability, alerts, supplies) and its
//!   supply levels, for the list.

mod activation;
mod discovery;
mod fleet;
mod session;
mod settings;
pub mod summary;
mod trends;

pub use activation::activate;
pub use discovery::{discover_now, discovery_csv, discovery_events, discovery_report, networks};
pub use fleet::{outbox, printer, printers, refresh, status};
pub use session::{login, logout, session};
pub use settings::{logs, set_log_level, set_password, set_proxy, set_security, settings};
pub use trends::history;

use super::{Agent, auth, reason};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use std::sync::Arc;

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

/// The answer to a password guess while its source must wait (with `Retry-After`).
fn too_many_guesses(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = reason(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many wrong passwords; try again in {secs} s"),
    );
    r.headers_mut()
        .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
    r
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
