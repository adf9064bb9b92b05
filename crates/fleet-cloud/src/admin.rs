//! The administration API: agent instances and their activation codes, their settings
//! documents, and the assembled printers in the seed API's shape.

use super::{Cloud, Doc, etag, reason, unavailable};
use crate::db::AssetRow;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fleet_protocol::admin::{
    AgentView, Agents, Asset, AssetsPage, CreatedAgent, NewAgent, SettingsSaved,
};
use fleet_protocol::heartbeat::{Communication, PrinterStatus};
use fleet_protocol::keyed;
use serde_json::Value;
use std::collections::HashMap;

/// `POST /admin/v1/agents`.
pub async fn create_agent(
    State(c): State<Cloud>,
    headers: HeaderMap,
    Doc(body): Doc<NewAgent>,
) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    let name = body.name.as_deref().unwrap_or("fleet agent");
    let settings = Value::Object(body.settings.unwrap_or_default());
    match c.create_agent(name, &settings) {
        Ok((agent_id, activation_code, expires_at)) => (
            StatusCode::CREATED,
            axum::Json(CreatedAgent {
                agent_id,
                activation_code,
                expires_at,
            }),
        )
            .into_response(),
        Err(_) => unavailable(),
    }
}

/// `POST /admin/v1/agents/{id}/activation-code`: a new code for an existing instance
/// (its unused codes stop working); answered like a creation.
pub async fn new_activation_code(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    let c2 = c.clone();
    let id = agent_id.clone();
    match tokio::task::spawn_blocking(move || c2.new_activation_code(&id)).await {
        Ok(Ok(Some((activation_code, expires_at)))) => (
            StatusCode::CREATED,
            axum::Json(CreatedAgent {
                agent_id,
                activation_code,
                expires_at,
            }),
        )
            .into_response(),
        Ok(Ok(None)) => reason(StatusCode::NOT_FOUND, "no such agent"),
        _ => unavailable(),
    }
}

/// `GET /admin/v1/agents`: every instance with its last heartbeat.
pub async fn agents(State(c): State<Cloud>, headers: HeaderMap) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    let (db, now) = (c.db.clone(), (c.clock)());
    // An agent is not communicating after three missed heartbeats (the seed's "last
    // communication").
    let silent_ms = i64::try_from(c.heartbeat_secs.saturating_mul(3_000)).unwrap_or(i64::MAX);
    match tokio::task::spawn_blocking(move || {
        Ok::<_, crate::db::DbError>((db.agents()?, db.printer_statuses()?))
    })
    .await
    {
        Ok(Ok((rows, statuses))) => {
            let mut printers: HashMap<String, Vec<PrinterStatus>> = HashMap::new();
            for (agent, row) in statuses {
                if let Ok(p) = serde_json::from_str(&row.body) {
                    printers.entry(agent).or_default().push(p);
                }
            }
            let agents = rows
                .into_iter()
                .map(|a| {
                    let (at, body) = match &a.heartbeat {
                        Some((t, b)) => (Some(*t), serde_json::from_str(b).ok()),
                        None => (None, None),
                    };
                    AgentView {
                        communicating: at.is_some_and(|t| now.saturating_sub(t) <= silent_ms),
                        printers: printers.remove(&a.id).unwrap_or_default(),
                        agent_id: a.id,
                        name: a.name,
                        activated: a.activated,
                        last_heartbeat_at: at,
                        last_heartbeat: body,
                    }
                })
                .collect();
            axum::Json(Agents { agents }).into_response()
        }
        _ => unavailable(),
    }
}

/// `PUT /admin/v1/agents/{id}/settings`: replaces the settings document (any JSON
/// object; the agent validates it and reports a rejection in its heartbeat).
pub async fn settings(
    State(c): State<Cloud>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    Doc(body): Doc<Value>,
) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    if !body.is_object() {
        return reason(StatusCode::BAD_REQUEST, "settings must be a JSON object");
    }
    let (db, text) = (c.db.clone(), body.to_string());
    let tag = etag(&text);
    match tokio::task::spawn_blocking(move || db.set_settings(&agent_id, &text)).await {
        Ok(Ok(true)) => axum::Json(SettingsSaved { etag: tag }).into_response(),
        Ok(Ok(false)) => reason(StatusCode::NOT_FOUND, "no such agent"),
        _ => unavailable(),
    }
}

/// Every asset with the communication status its agent last reported for it.
///
/// # Errors
/// On database failure.
pub fn assets_view(db: &crate::db::CloudDb) -> Result<Vec<Asset>, crate::db::DbError> {
    // A serial seen at two addresses (a DHCP move): the status received last wins.
    let mut status: HashMap<(String, String), (i64, PrinterStatus)> = HashMap::new();
    for (agent, row) in db.printer_statuses()? {
        if let (Some(serial), Ok(p)) = (row.serial, serde_json::from_str(&row.body)) {
            match status.entry((agent, serial)) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    if row.received_ms > e.get().0 {
                        e.insert((row.received_ms, p));
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((row.received_ms, p));
                }
            }
        }
    }
    Ok(db
        .assets()?
        .iter()
        .map(|a| {
            asset(
                a,
                status
                    .get(&(a.agent_id.clone(), a.serial.clone()))
                    .map(|s| &s.1),
            )
        })
        .collect())
}

/// Builds one asset in the seed API's shape (DATA-MODEL.md §1.4, §4.4): agent-only keys
/// (`supplyKey`, `alertKey`, `ext`) are left out; `communicating`, `authenticated` and
/// `lastCommunication` come from the printer's reported `status` when there is one.
pub fn asset(a: &AssetRow, status: Option<&PrinterStatus>) -> Asset {
    let state: Value = serde_json::from_str(&a.keyed).unwrap_or(Value::Null);
    let api = keyed::unkeyed(&state);
    let strip = |arr: Option<&Value>, key: &str| -> Vec<Value> {
        let items = arr.and_then(Value::as_array).cloned().unwrap_or_default();
        items
            .into_iter()
            .map(|mut x| {
                if let Value::Object(m) = &mut x {
                    m.remove(key);
                    m.remove("ext");
                }
                x
            })
            .collect()
    };
    let mut counters = api.get("counters").cloned().unwrap_or(Value::Null);
    if let Value::Object(m) = &mut counters {
        m.remove("ext");
    }
    let text = |k: &str| api.get(k).and_then(Value::as_str).map(str::to_string);
    Asset {
        manufacturer: text("manufacturer"),
        model_name: text("modelName"),
        serial_number: a.serial.clone(),
        account_id: a.agent_id.clone(),
        name: None,
        description: None,
        date_created: a.date_created_ms,
        date_modified: a.date_modified_ms,
        // The status is sent on change only, so its lastSeen can be older than the last
        // reading.
        last_communication: status
            .and_then(|s| s.last_seen)
            .map_or(a.last_data_refresh, |t| t.max(a.last_data_refresh)),
        last_data_refresh: a.last_data_refresh,
        communicating: status.is_none_or(|s| s.communication != Communication::NotCommunicating),
        // Known only from an answer: refused, or taken.
        authenticated: status.and_then(|s| match s.communication {
            Communication::NeedsCredentials => Some(false),
            Communication::Ok | Communication::Suspect => Some(true),
            Communication::NotCommunicating | Communication::Unknown => None,
        }),
        communication: status.map(|s| s.communication),
        communication_reason: status.and_then(|s| s.reason.clone()),
        quirks: status.and_then(|s| s.quirks.clone()),
        base_firmware_last_modified_date: None,
        counters,
        meters: meters(&api),
        diagnostic_events: vec![],
        supplies: strip(api.get("supplies"), "supplyKey"),
        alerts: strip(api.get("alerts"), "alertKey"),
    }
}

/// The asset's meters, in OID order (arc by arc: the keyed view orders them as text). An
/// agent's meter the cloud cannot read is left out, not the whole asset.
fn meters(api: &Value) -> Vec<fleet_protocol::meters::Meter> {
    let mut m: Vec<fleet_protocol::meters::Meter> = api
        .get("meters")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|x| serde_json::from_value(x.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    let arcs = |oid: &str| -> Vec<u64> { oid.split('.').filter_map(|a| a.parse().ok()).collect() };
    m.sort_by_cached_key(|x| arcs(&x.oid));
    m
}

/// `GET /v1.0/assets`: every printer, one page.
pub async fn assets(State(c): State<Cloud>, headers: HeaderMap) -> Response {
    if let Err(r) = c.admin(&headers) {
        return r.into_response();
    }
    match assets_view(&c.db) {
        Ok(assets) => axum::Json(AssetsPage::one(assets)).into_response(),
        Err(_) => unavailable(),
    }
}
