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

/// `GET /api/printers`: every managed printer with its latest reading's summary and how
/// it was discovered.
pub async fn printers(State(agent): Shared) -> Response {
    let r = blocking(&agent, |a| {
        let rows = a.store.printers_seen()?;
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
        let row = a.store.printers_seen()?.into_iter().find(|p| p.id == id);
        let report = a.store.latest_report(id)?;
        Ok((row, report))
    })
    .await;
    match r {
        Ok((Some(p), report)) => {
            let report = report.and_then(|r| serde_json::from_str::<Value>(&r).ok());
            // What the support library in use says can be done to it.
            let commands = crate::printer::library::commands(
                &agent.library.current(),
                report
                    .as_ref()
                    .and_then(|r| r["device"]["sysObjectID"].as_str()),
            );
            axum::Json(json!({
                "id": p.id,
                "address": p.address,
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
                "report": report,
            }))
            .into_response()
        }
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
