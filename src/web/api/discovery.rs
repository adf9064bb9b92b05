//! The last discovery run's per-address report (JSON, CSV through the one writer in
//! `discovery`), "discover now" and its progress events.

use super::{Shared, blocking};
use crate::discovery::IpResult;
use crate::web::{Agent, reason};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The last run's rows (an unreadable row, e.g. from a future version, is skipped).
async fn report_rows(agent: &Arc<Agent>, f: ReportFilter) -> Result<Vec<IpResult>, Response> {
    let rows = blocking(agent, |a| a.store.discovery_results()).await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str::<IpResult>(r).ok())
        .filter(|r| f.matches(r))
        .collect())
}

/// The report filter: `q` matches any field (address, name, outcome, detail, profile);
/// `outcome` is one outcome code.
#[derive(Deserialize, Default)]
pub struct ReportFilter {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
}

impl ReportFilter {
    fn matches(&self, row: &IpResult) -> bool {
        if let Some(o) = self.outcome.as_deref().filter(|o| !o.is_empty())
            && row.outcome.code() != o
        {
            return false;
        }
        match self.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => serde_json::to_string(row)
                .unwrap_or_default()
                .to_lowercase()
                .contains(&q.to_lowercase()),
            None => true,
        }
    }
}

/// `GET /api/networks`: the host's own networks as "search the local network" would
/// search them (each capped to a /22), with their sizes, so the activation page can
/// offer them; whether discovery searches them already, and whether it has other
/// targets (the file's or the cloud's).
pub async fn networks(State(agent): Shared) -> Response {
    let config = agent.live().config;
    let (specs, warnings) = match tokio::task::spawn_blocking(|| {
        crate::discovery::local::local_networks(crate::discovery::LOCAL_MAX_PREFIX, false)
    })
    .await
    {
        Ok(v) => v,
        Err(_) => return reason(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    let d = &config.discovery;
    axum::Json(json!({
        "networks": specs
            .iter()
            .map(|s| json!({ "network": s.to_string(), "addresses": s.size() as u64 }))
            .collect::<Vec<_>>(),
        "warnings": warnings,
        "searching": d.local_network,
        "otherTargets": !d.targets.include.is_empty() || !d.mdns.is_zero(),
    }))
    .into_response()
}

/// `GET /api/discovery?q=&outcome=`: the last run's per-address report.
pub async fn discovery_report(State(agent): Shared, Query(f): Query<ReportFilter>) -> Response {
    match report_rows(&agent, f).await {
        Ok(rows) => axum::Json(rows).into_response(),
        Err(e) => e,
    }
}

/// `GET /api/discovery.csv?q=&outcome=`: the same rows as CSV (one per address), written
/// as the command line writes its report file.
pub async fn discovery_csv(State(agent): Shared, Query(f): Query<ReportFilter>) -> Response {
    let rows = match report_rows(&agent, f).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"discovery-report.csv\"",
            ),
        ],
        crate::discovery::csv(&rows),
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
