//! The fleet: status (activation, cloud link, outbox, schedule), printers, one printer,
//! refresh now, and what will be sent (the outbox).

use super::super::reason;
use super::{Shared, blocking};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// `GET /api/status`: activation, the cloud link, the outbox, the schedule, jobs.
pub async fn status(State(agent): Shared) -> Response {
    let live = agent.live();
    let r = blocking(&agent, |a| {
        Ok((
            a.store.agent_id()?,
            a.store.outbox_stats()?,
            a.store.printers_seen()?,
            [
                crate::store::jobs::JobState::Running,
                crate::store::jobs::JobState::Waiting,
            ]
            .into_iter()
            .map(|state| {
                Ok(a.store
                    .jobs_in(state)?
                    .into_iter()
                    .map(|j| json!({"jobId": j.job_id, "type": j.kind, "receivedAtMs": j.received_ms}))
                    .collect::<Vec<_>>())
            })
            .collect::<Result<Vec<_>, crate::store::StoreError>>()?,
            a.store.recent_jobs(10)?,
            a.store.agent_state()?,
            crate::cloud::settings::status(&a.store)?,
        ))
    })
    .await;
    let (agent_id, outbox, printers, running, recent, disabled, settings) = match r {
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
            "settings": settings,
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
            "running": running[0],
            // Acknowledged, waiting for their window (a firmware update's startAt).
            "waiting": running[1],
            "recent": recent.iter().map(|j| json!({
                "jobId": j.job_id, "type": j.kind, "state": j.state.as_str(),
                "receivedAtMs": j.received_ms,
                "result": j.result,
            })).collect::<Vec<_>>(),
        },
    }))
    .into_response()
}

/// `GET /api/printers` query: a page of the list, filtered and sorted.
#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    /// Text to find in address, serial, model, manufacturer, location or name.
    #[serde(default)]
    q: Option<String>,
    /// One state (`error`, `lowSupply`, ...).
    #[serde(default)]
    state: Option<String>,
    /// `state` (default: worst first), `address`, `model`, `serial`, `location`,
    /// `pages`, `supply`, `lastSeen`.
    #[serde(default)]
    sort: Option<String>,
    /// Reverse the order.
    #[serde(default)]
    desc: bool,
    /// First row.
    #[serde(default)]
    offset: usize,
    /// Rows (default 50, at most 500).
    #[serde(default)]
    limit: Option<usize>,
}

/// Most rows one page of the list carries.
pub const MAX_LIMIT: usize = 500;

/// `GET /api/printers?q=&state=&sort=&desc=&offset=&limit=`: one page of the managed
/// printers, each with its state at a glance (reachability, alerts, supplies), its supply
/// levels and how it was discovered; with the count per state of the whole fleet.
pub async fn printers(
    State(agent): Shared,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    use super::summary::{State as St, summarize};
    let r = blocking(&agent, move |a| {
        let rows = a.store.printers_seen()?;
        // Address (ip:port, or the IP alone in older rows) → how it was discovered.
        let mut sources = std::collections::HashMap::new();
        for d in a.store.devices()? {
            if let Some(addr) = d.address.clone() {
                sources.insert(addr, d.sources.clone());
            }
        }
        let mut items = Vec::with_capacity(rows.len());
        {
            let mut cache = a.summaries.lock();
            let live: std::collections::HashSet<i64> = rows.iter().map(|p| p.id).collect();
            cache.retain(|id, _| live.contains(id));
            for p in rows {
                let key = (p.last_seen_ms, p.last_attempt_ms, p.health.as_str());
                let fresh = cache
                    .get(&p.id)
                    .filter(|(k, _)| *k == key)
                    .map(|(_, s)| s.clone());
                let summary = match fresh {
                    Some(s) => s,
                    None => {
                        let report: Option<Value> = a
                            .store
                            .latest_report(p.id)?
                            .and_then(|r| serde_json::from_str(&r).ok());
                        let s = summarize(&p, report.as_ref());
                        cache.insert(p.id, (key, s.clone()));
                        s
                    }
                };
                items.push((p, summary));
            }
        }
        let mut by_state: std::collections::BTreeMap<&str, usize> =
            St::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for (_, s) in &items {
            *by_state.entry(s.state.as_str()).or_default() += 1;
        }
        let all = items.len();
        let needle =
            q.q.as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_lowercase);
        let want = q.state.as_deref().filter(|s| !s.is_empty());
        items.retain(|(p, s)| {
            want.is_none_or(|w| s.state.as_str() == w)
                && needle.as_deref().is_none_or(|n| {
                    [
                        Some(p.address.as_str()),
                        p.serial.as_deref(),
                        p.model.as_deref(),
                        p.manufacturer.as_deref(),
                        s.location.as_deref(),
                        s.name.as_deref(),
                    ]
                    .iter()
                    .flatten()
                    .any(|f| f.to_lowercase().contains(n))
                })
        });
        let text = |o: &Option<String>| o.clone().unwrap_or_default().to_lowercase();
        let lowest = |s: &super::summary::Summary| s.lowest.as_ref().map_or(101, |l| l.left());
        match q.sort.as_deref().unwrap_or("state") {
            "address" => items.sort_by_key(|(p, _)| address_key(&p.address)),
            "model" => items.sort_by_key(|(p, _)| text(&p.model)),
            "serial" => items.sort_by_key(|(p, _)| text(&p.serial)),
            "location" => items.sort_by_key(|(_, s)| text(&s.location)),
            "pages" => items.sort_by_key(|(_, s)| s.pages),
            "supply" => items.sort_by_key(|(_, s)| lowest(s)),
            "lastSeen" => items.sort_by_key(|(p, _)| p.last_seen_ms),
            _ => items.sort_by_key(|(p, s)| (s.state, address_key(&p.address))),
        }
        if q.desc {
            items.reverse();
        }
        let total = items.len();
        let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
        let printers: Vec<Value> = items
            .into_iter()
            .skip(q.offset)
            .take(limit)
            .map(|(p, s)| {
                let ip = p
                    .address
                    .rsplit_once(':')
                    .map_or(p.address.clone(), |(h, _)| h.to_string());
                let found = sources
                    .get(&p.address)
                    .or_else(|| sources.get(&ip))
                    .cloned();
                json!({
                    "id": p.id,
                    "address": p.address,
                    "serial": p.serial,
                    "manufacturer": p.manufacturer,
                    "model": p.model,
                    "location": s.location,
                    "name": s.name,
                    "health": p.health.as_str(),
                    "healthReason": p.health_reason,
                    "state": s.state,
                    "stateReason": s.reason,
                    "lastSeenMs": p.last_seen_ms,
                    "lastAttemptMs": p.last_attempt_ms,
                    "discoveredBy": found,
                    "pages": s.pages,
                    "lowestSupply": s.lowest,
                    "supplies": s.supplies,
                    "alerts": s.alerts,
                })
            })
            .collect();
        Ok(json!({
            "all": all,
            "total": total,
            "offset": q.offset,
            "limit": limit,
            "byState": by_state,
            "printers": printers,
        }))
    })
    .await;
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e,
    }
}

/// Sorts addresses as numbers (10.0.0.9 before 10.0.0.10), names after them.
fn address_key(a: &str) -> (u8, u128, u16, String) {
    match a.parse::<SocketAddr>() {
        Ok(s) => {
            let ip = match s.ip() {
                std::net::IpAddr::V4(v) => u128::from(u32::from(v)),
                std::net::IpAddr::V6(v) => u128::from(v),
            };
            (0, ip, s.port(), String::new())
        }
        Err(_) => (1, 0, 0, a.to_string()),
    }
}

/// `GET /api/printers/{id}`: one printer and its latest full report (raw values beside
/// their meaning).
pub async fn printer(State(agent): Shared, Path(id): Path<i64>) -> Response {
    let r = blocking(&agent, move |a| {
        let row = a.store.printers_seen()?.into_iter().find(|p| p.id == id);
        let report = a.store.latest_report(id)?;
        let events = a.store.events(id)?;
        Ok((row, report, events))
    })
    .await;
    match r {
        Ok((Some(p), report, events)) => {
            // Its history in events (health changes, counter resets, supplies replaced,
            // alerts, moves), newest first, at most 50.
            let events: Vec<Value> = events
                .into_iter()
                .rev()
                .take(50)
                .map(|(at, kind, detail)| {
                    json!({"atMs": at, "kind": kind, "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::Null)})
                })
                .collect();
            let report = report.and_then(|r| serde_json::from_str::<Value>(&r).ok());
            // What the support library in use says can be done to it.
            let commands = crate::printer::library::commands(
                &agent.library.current(),
                report
                    .as_ref()
                    .and_then(|r| r["device"]["sysObjectID"].as_str()),
            );
            let summary = super::summary::summarize(&p, report.as_ref());
            axum::Json(json!({
                "id": p.id,
                "address": p.address,
                "state": summary.state,
                "stateReason": summary.reason,
                "levels": summary.supplies,
                "health": p.health.as_str(),
                "healthReason": p.health_reason,
                "lastSeenMs": p.last_seen_ms,
                "consecutiveFailures": p.consecutive_failures,
                // How the poller asks its agent (the remembered quirks), in words.
                "agentQuirks": p
                    .quirks
                    .as_deref()
                    .and_then(|j| crate::store::read_quirks(j).ok())
                    .map_or_else(|| "none".to_owned(), |q| q.to_string()),
                "commands": commands,
                "events": events,
                "report": report,
            }))
            .into_response()
        }
        Ok((None, _, _)) => reason(StatusCode::NOT_FOUND, format!("no printer {id}")),
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
