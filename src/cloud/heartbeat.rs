//! The `heartbeat` component: tells the cloud every minute (or as often as it asks) that
//! the agent is alive, with its version, uptime, outbox figures and printers by health, so
//! a silent agent can be told apart from a site with nothing to report.

use super::Connection;
use super::client::CloudError;
use crate::store::{AgentState, Store};
use fleet_protocol::heartbeat::AgentState::{Disabled, Running};
use fleet_protocol::heartbeat::{
    AgentUpdate, Heartbeat, HeartbeatAnswer, OutboxFigures, PrinterCounts,
};
use tokio::time::Duration;

/// Default period, until the cloud says otherwise.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

/// What the heartbeat reports besides the store: the support library in use and a staged
/// update (handles of the components that own them).
#[derive(Clone)]
pub struct Sources {
    /// The support library in use.
    pub library: crate::printer::library::Handle,
    /// The staged agent update, while there is one.
    pub update: std::sync::Arc<dyn Fn() -> Option<AgentUpdate> + Send + Sync>,
}

/// Builds the heartbeat body from the store and `sources`, at `now`.
///
/// # Errors
/// On store failure.
pub fn body(
    store: &Store,
    sources: &Sources,
    started_ms: i64,
    now: i64,
) -> Result<Heartbeat, crate::store::StoreError> {
    let outbox = store.outbox_stats()?;
    let printers = store.printers()?;
    let mut by_health = std::collections::BTreeMap::new();
    for p in &printers {
        *by_health.entry(p.health.as_str().to_string()).or_insert(0) += 1;
    }
    Ok(Heartbeat {
        agent_version: env!("CARGO_PKG_VERSION").into(),
        library_version: sources.library.current().version,
        protocol: fleet_protocol::VERSION,
        state: match store.agent_state()? {
            AgentState::Active => Running,
            AgentState::Disabled | AgentState::Deleted => Disabled,
        },
        sent_at: now,
        uptime_secs: (now - started_ms).max(0) / 1000,
        outbox: OutboxFigures {
            messages: outbox.messages,
            bytes: outbox.bytes,
            dropped: outbox.dropped,
            rejected: outbox.rejected,
        },
        printers: PrinterCounts {
            total: printers.len() as u64,
            by_health,
        },
        config: super::settings::status(store)?,
        agent_update: (sources.update)(),
    })
}

/// What the heartbeat needs to pull settings when the cloud's `configEtag` is new.
#[derive(Clone)]
pub struct SettingsLink {
    /// The local configuration the settings are laid over.
    pub source: crate::config::Source,
    /// Seals the stored document.
    pub key: crate::store::secrets::SealKey,
    /// Where an accepted configuration goes (the supervisor applies it).
    pub apply: tokio::sync::mpsc::Sender<Box<crate::config::Config>>,
}

async fn maybe_pull(
    conn: &Connection,
    store: &Store,
    link: &SettingsLink,
    answer: &HeartbeatAnswer,
) -> bool {
    let Some(tag) = answer.config_etag.as_deref() else {
        return false;
    };
    let s = store.clone();
    let known = tokio::task::spawn_blocking(move || super::settings::status(&s))
        .await
        .ok()
        .and_then(Result::ok)
        .is_some_and(|st| st.knows(tag));
    if known {
        return false;
    }
    match super::settings::pull(conn, store, &link.key, &link.source).await {
        Ok(super::settings::Outcome::Applied(c)) => {
            link.apply.send(c).await.ok();
            true
        }
        Ok(super::settings::Outcome::Rejected(_)) => true,
        Ok(super::settings::Outcome::Unchanged) => false,
        Err(e) => {
            tracing::debug!(error = %e, "Settings not pulled; next heartbeat retries.");
            false
        }
    }
}

/// Runs until `shutdown` completes. Failures are logged at DEBUG (the sender already
/// reports an unreachable cloud) and the next beat comes on schedule. With `settings`,
/// a `configEtag` the agent does not know yet makes it pull the settings.
pub async fn run(
    conn: Connection,
    store: Store,
    sources: Sources,
    settings: Option<SettingsLink>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let Connection {
        client,
        creds,
        link,
        clock,
    } = conn.clone();
    let started = clock.now_ms();
    let mut period = DEFAULT_PERIOD;
    loop {
        // Set when the settings status changed, so the cloud hears of it at once.
        let mut again = false;
        let (s, src, now) = (store.clone(), sources.clone(), clock.now_ms());
        match tokio::task::spawn_blocking(move || body(&s, &src, started, now)).await {
            Ok(Ok(b)) => match client.heartbeat(&creds, &b).await {
                Ok(answer) => {
                    link.contact();
                    if let Some(link) = &settings {
                        again = maybe_pull(&conn, &store, link, &answer).await;
                    }
                    if let Some(secs) = answer.next_heartbeat_secs {
                        // Bounded so a confused cloud cannot make the agent chatty or mute.
                        period = Duration::from_secs(secs.clamp(10, 3600));
                    }
                }
                Err(CloudError::Unauthorized(r)) => {
                    link.error(&format!("the cloud refused the agent's token: {r}"));
                    client.invalidate_token();
                }
                Err(e) => {
                    link.error(&e.to_string());
                    tracing::debug!(error = %e, "Heartbeat not delivered.");
                }
            },
            Ok(Err(e)) => tracing::warn!(error = %e, "Heartbeat: store unavailable."),
            Err(e) => tracing::warn!(error = %e, "Heartbeat task failed."),
        }
        let wait = if again { Duration::ZERO } else { period };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
