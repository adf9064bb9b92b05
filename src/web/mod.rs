//! The local web listener: `/metrics` (Prometheus text format) and a small JSON API.
//! Takes an already-bound listener and a shutdown future, so tests run it on port 0.
//! (The activation and status pages arrive with the web UI issue.)

use crate::store::Store;
use crate::telemetry::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// What the handlers need.
#[derive(Clone)]
pub struct WebState {
    /// The agent's metrics.
    pub metrics: Arc<Metrics>,
    /// The store, for the printer list.
    pub store: Option<Store>,
}

/// Builds the router.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/api/health",
            get(|| async {
                axum::Json(
                    serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}),
                )
            }),
        )
        .route("/api/printers", get(printers))
        .route("/api/discovery", get(discovery_report))
        .with_state(state)
}

async fn metrics(State(s): State<WebState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn printers(State(s): State<WebState>) -> Response {
    let Some(store) = s.store else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"reason": "no store"})),
        )
            .into_response();
    };
    match tokio::task::spawn_blocking(move || store.printers()).await {
        Ok(Ok(rows)) => axum::Json(rows).into_response(),
        _ => {
            tracing::error!("Could not read printers from the store.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({"reason": "store unavailable"})),
            )
                .into_response()
        }
    }
}

async fn discovery_report(State(s): State<WebState>) -> Response {
    let Some(store) = s.store else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"reason": "no store"})),
        )
            .into_response();
    };
    match tokio::task::spawn_blocking(move || store.discovery_results()).await {
        Ok(Ok(rows)) => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .filter_map(|r| serde_json::from_str(r).ok())
                .collect();
            axum::Json(v).into_response()
        }
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"reason": "store unavailable"})),
        )
            .into_response(),
    }
}

/// Serves until `shutdown` completes.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
