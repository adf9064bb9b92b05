//! Instance settings defined in the cloud: pulled with an entity tag when the heartbeat
//! says they changed, validated laid over the local file, kept sealed in the store (they
//! may hold communities and pass phrases) and handed to the supervisor, which restarts the
//! components with them. A rejected document is remembered with its reason (reported in
//! the heartbeat) and the running configuration stays.

use super::client::CloudError;
use crate::config::{Config, ConfigErrors, Source};
use crate::store::secrets::SealKey;
use crate::store::{Store, StoreError};
use fleet_protocol::heartbeat::Rejected;
use fleet_secret::Secret;
use serde_json::{Value, json};

const DOC: &str = "cloud.settings";
const ETAG: &str = "cloud.settings_etag";
const REJECTED: &str = "cloud.settings_rejected";

/// What the agent holds of the cloud's settings (the heartbeat's `config`).
pub use fleet_protocol::heartbeat::ConfigStatus as Status;

/// The refused document as stored: the heartbeat's part and when.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRejection {
    #[serde(flatten)]
    rejected: Rejected,
    at_ms: i64,
}

/// Reads the status from the store.
///
/// # Errors
/// On store failure.
pub fn status(store: &Store) -> Result<Status, StoreError> {
    let rejected = store
        .setting(REJECTED)?
        .and_then(|s| serde_json::from_str::<StoredRejection>(&s).ok())
        .map(|r| r.rejected);
    Ok(Status {
        etag: store.setting(ETAG)?,
        rejected,
    })
}

/// The accepted settings document, if any.
///
/// # Errors
/// On store failure.
pub fn stored(store: &Store, key: &SealKey) -> Result<Option<Value>, StoreError> {
    Ok(store
        .secret(key, DOC)?
        .and_then(|s| serde_json::from_str(s.expose()).ok()))
}

/// The configuration in force: the local source with the stored cloud settings laid
/// over it. When the stored settings no longer fit the file (it changed since), the file
/// alone is used and the reason returned beside it.
///
/// # Errors
/// When the file alone is invalid (a fatal start-up error).
pub fn effective(
    source: &Source,
    cloud: Option<&Value>,
) -> Result<(Config, Option<ConfigErrors>), ConfigErrors> {
    match cloud {
        Some(doc) => match source.parse_with_cloud(doc) {
            Ok(c) => Ok((c, None)),
            Err(e) => Ok((source.parse()?, Some(e))),
        },
        None => Ok((source.parse()?, None)),
    }
}

/// What one pull did.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing new (304, or the same document under a new tag).
    Unchanged,
    /// A new document was accepted and stored: the supervisor should apply it.
    Applied(Box<Config>),
    /// The document was refused (the reason is stored and logged).
    Rejected(String),
}

/// Pulls the settings once and stores what it finds.
///
/// # Errors
/// Cloud failures (the caller retries at the next heartbeat) and store failures.
pub async fn pull(
    conn: &super::Connection,
    store: &Store,
    key: &SealKey,
    source: &Source,
) -> Result<Outcome, PullError> {
    let (s, k) = (store.clone(), key.clone());
    let (st, current) =
        tokio::task::spawn_blocking(move || Ok::<_, StoreError>((status(&s)?, stored(&s, &k)?)))
            .await
            .map_err(|e| PullError::Task(e.to_string()))??;
    // Both tags: a refused document is not fetched again until the cloud changes it.
    let known: Vec<&str> = st
        .etag
        .iter()
        .map(String::as_str)
        .chain(st.rejected.iter().map(|r| r.etag.as_str()))
        .collect();
    let known = (!known.is_empty()).then(|| known.join(", "));
    let Some((tag, doc)) = conn.client.config(&conn.creds, known.as_deref()).await? else {
        return Ok(Outcome::Unchanged);
    };
    let same = current.as_ref().unwrap_or(&json!({})) == &doc;
    let checked = if same {
        None
    } else {
        Some(source.parse_with_cloud(&doc))
    };
    let s = store.clone();
    let k = key.clone();
    let (tag2, doc2, now) = (tag.clone(), doc.clone(), conn.clock.now_ms());
    let outcome = match checked {
        None => Outcome::Unchanged,
        Some(Ok(c)) => Outcome::Applied(Box::new(c)),
        Some(Err(e)) => Outcome::Rejected(e.to_string()),
    };
    let reason = match &outcome {
        Outcome::Rejected(r) => Some(r.clone()),
        _ => None,
    };
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        match reason {
            Some(reason) => s.set_setting(
                REJECTED,
                &serde_json::to_string(&StoredRejection {
                    rejected: Rejected { etag: tag2, reason },
                    at_ms: now,
                })
                .unwrap_or_default(),
            ),
            None => {
                s.set_secret(&k, DOC, &Secret::new(doc2.to_string()))?;
                s.set_setting(ETAG, &tag2)
            }
        }
    })
    .await
    .map_err(|e| PullError::Task(e.to_string()))??;
    match &outcome {
        Outcome::Applied(_) => tracing::info!(etag = %tag, "New settings from the cloud accepted."),
        Outcome::Rejected(r) => {
            tracing::warn!(etag = %tag, reason = %r, "Settings from the cloud refused; the running configuration stays.")
        }
        Outcome::Unchanged => tracing::debug!(etag = %tag, "Cloud settings unchanged."),
    }
    Ok(outcome)
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The cloud did not answer usefully.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blocking task panicked or was cancelled.
    #[error("settings task failed: {0}")]
    Task(String),
}
