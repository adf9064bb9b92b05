//! Instance settings defined in the cloud: pulled with an entity tag when the heartbeat
//! says they changed, validated laid over the local file, kept sealed in the store (they
//! may hold communities and pass phrases) and handed to the supervisor, which restarts the
//! components with them. A rejected document is remembered with its reason (reported in
//! the heartbeat) and the running configuration stays.
//!
//! A document can validate and still stop the agent (a fault no check foresaw). So that no
//! remote input causes a crash loop, each new document is on trial until the agent has
//! run on it for [`STABLE`] or stopped cleanly (it is trusted from then on); after
//! [`FAILED_STARTS`] runs in a row that ended otherwise, the next start sets it aside as if
//! refused (reported in the heartbeat, not fetched again until the cloud changes it) and
//! runs on the file alone.

use super::client::CloudError;
use crate::config::{Config, ConfigErrors, Source};
use crate::store::secrets::SealKey;
use crate::store::{Store, StoreError};
use fleet_protocol::heartbeat::Rejected;
use fleet_secret::Secret;
use serde_json::{Value, json};
use std::time::Duration;

const DOC: &str = "cloud.settings";
const ETAG: &str = "cloud.settings_etag";
const REJECTED: &str = "cloud.settings_rejected";
const TRIAL: &str = "cloud.settings_trial";
/// The stored document's content hash ([`doc_id`]): the trial and a refusal follow the
/// content, so a cloud that re-tags the same document cannot restart either.
const HASH: &str = "cloud.settings_hash";

/// A document's content hash (SHA-256 of its JSON text, 128 bits in hex).
fn doc_id(doc: &Value) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(doc.to_string().as_bytes())[..16])
}

/// Stores an accepted document with its tag and content hash.
fn keep(store: &Store, key: &SealKey, tag: &str, doc: &Value) -> Result<(), StoreError> {
    store.set_secret(key, DOC, &Secret::new(doc.to_string()))?;
    store.set_setting(HASH, &doc_id(doc))?;
    store.set_setting(ETAG, tag)
}

/// The trial's key for the document in force: its content hash (its tag for a document
/// stored before hashes were).
fn trial_key(store: &Store) -> Result<Option<String>, StoreError> {
    match store.setting(ETAG)? {
        None => Ok(None),
        Some(etag) => Ok(Some(store.setting(HASH)?.unwrap_or(etag))),
    }
}

/// The reason a document with this content was refused or set aside before, if it was.
fn refused_before(store: &Store, id: &str) -> Result<Option<String>, StoreError> {
    Ok(store
        .setting(REJECTED)?
        .and_then(|s| serde_json::from_str::<StoredRejection>(&s).ok())
        .filter(|r| r.doc.as_deref() == Some(id))
        .map(|r| r.rejected.reason))
}

/// Runs on one document that may end abnormally (crash, kill, a component failing) before
/// the next start sets it aside.
pub const FAILED_STARTS: u32 = 2;

/// How long the agent must run on a document before it is trusted.
pub const STABLE: Duration = Duration::from_secs(60);

/// The document on trial, how many runs on it began without passing, and whether one
/// passed (then it is trusted: later failures are not the document's).
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Trial {
    etag: String,
    runs: u32,
    #[serde(default)]
    passed: bool,
}

/// What [`begin_trial`] decided.
#[derive(Debug, PartialEq)]
pub enum TrialStart {
    /// No cloud document is in force: nothing to try.
    NoDocument,
    /// The document in force is on trial (this run counted).
    OnTrial,
    /// The document in force passed its trial before.
    Trusted,
    /// The last runs on the document ended abnormally: it was set aside, with this reason.
    SetAside(String),
}

/// What the agent holds of the cloud's settings (the heartbeat's `config`).
pub use fleet_protocol::heartbeat::ConfigStatus as Status;

/// The refused document as stored: the heartbeat's part and when.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRejection {
    #[serde(flatten)]
    rejected: Rejected,
    at_ms: i64,
    /// Content hash of the refused document.
    #[serde(default)]
    doc: Option<String>,
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
/// over it, then the local page's choice to search the host's networks
/// (`search_local`). When the stored settings no longer fit the file (it changed since),
/// the file alone is used and the reason returned beside it.
///
/// # Errors
/// When the file alone is invalid (a fatal start-up error).
pub fn effective(
    source: &Source,
    cloud: Option<&Value>,
    search_local: bool,
) -> Result<(Config, Option<ConfigErrors>), ConfigErrors> {
    let (mut config, unfit) = match cloud {
        Some(doc) => match source.parse_with_cloud(doc) {
            Ok(c) => (c, None),
            Err(e) => (source.parse()?, Some(e)),
        },
        None => (source.parse()?, None),
    };
    config.discovery.local_network |= search_local;
    Ok((config, unfit))
}

/// Counts a run on the document in force; sets the document aside instead when the
/// runs before ended [`FAILED_STARTS`] times without passing (see the module's notes).
/// Called at start and when a new document is applied.
///
/// # Errors
/// On store failure.
pub fn begin_trial(store: &Store, now_ms: i64) -> Result<TrialStart, StoreError> {
    let (Some(etag), Some(id)) = (store.setting(ETAG)?, trial_key(store)?) else {
        store.remove_setting(TRIAL)?;
        return Ok(TrialStart::NoDocument);
    };
    let trial = store
        .setting(TRIAL)?
        .and_then(|s| serde_json::from_str::<Trial>(&s).ok())
        .filter(|t| t.etag == id);
    if trial.as_ref().is_some_and(|t| t.passed) {
        return Ok(TrialStart::Trusted);
    }
    let before = trial.map_or(0, |t| t.runs);
    if before >= FAILED_STARTS {
        let reason = format!(
            "set aside by the agent: its last {before} runs on these settings ended abnormally within {} s (crash, kill or a failing component); running on the local file",
            STABLE.as_secs()
        );
        // Rejection first: a crash part-way leaves it on trial at the same count, so the
        // next start sets it aside again.
        store.set_setting(
            REJECTED,
            &serde_json::to_string(&StoredRejection {
                rejected: Rejected {
                    etag,
                    reason: reason.clone(),
                },
                at_ms: now_ms,
                doc: Some(id),
            })
            .unwrap_or_default(),
        )?;
        store.remove_setting(ETAG)?;
        store.remove_setting(HASH)?;
        store.remove_setting(DOC)?;
        store.remove_setting(TRIAL)?;
        return Ok(TrialStart::SetAside(reason));
    }
    let trial = Trial {
        etag: id,
        runs: before.saturating_add(1),
        passed: false,
    };
    store.set_setting(TRIAL, &serde_json::to_string(&trial).unwrap_or_default())?;
    Ok(TrialStart::OnTrial)
}

/// The document in force has run for [`STABLE`] or the agent stopped cleanly on it.
///
/// # Errors
/// On store failure.
pub fn trial_passed(store: &Store) -> Result<(), StoreError> {
    let Some(id) = trial_key(store)? else {
        return store.remove_setting(TRIAL);
    };
    let trial = Trial {
        etag: id,
        runs: 0,
        passed: true,
    };
    store.set_setting(TRIAL, &serde_json::to_string(&trial).unwrap_or_default())
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
/// Runs a check of a cloud document, turning a panic in it into a refusal: the document
/// is not stored yet, so the settings trial could not set it aside, and a panic here would
/// stop the agent at every fetch of the same document.
fn guarded<T>(check: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!(
            "the agent failed while checking this document (a bug in the agent): {what}"
        ))
    })
}

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
    let id = doc_id(&doc);
    let s = store.clone();
    let id2 = id.clone();
    let before = tokio::task::spawn_blocking(move || refused_before(&s, &id2))
        .await
        .map_err(|e| PullError::Task(e.to_string()))??;
    let checked = if same {
        None
    } else if let Some(reason) = before {
        // The same content refused or set aside before, under another tag.
        Some(Err(reason))
    } else {
        Some(guarded(|| {
            source.parse_with_cloud(&doc).map_err(|e| e.to_string())
        }))
    };
    let s = store.clone();
    let k = key.clone();
    let (tag2, doc2, now) = (tag.clone(), doc.clone(), conn.clock.now_ms());
    let outcome = match checked {
        None => Outcome::Unchanged,
        Some(Ok(c)) => Outcome::Applied(Box::new(c)),
        Some(Err(e)) => Outcome::Rejected(e),
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
                    doc: Some(id),
                })
                .unwrap_or_default(),
            ),
            None => keep(&s, &k, &tag2, &doc2),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_document(store: &Store, key: &SealKey, etag: &str) {
        // Content differs by tag: the trial follows the content.
        let doc =
            json!({"poller": {"interval_secs": 60 + etag.bytes().map(u64::from).sum::<u64>()}});
        keep(store, key, etag, &doc).unwrap();
    }

    #[test]
    fn the_pages_choice_to_search_the_host_networks_is_laid_over_file_and_cloud() {
        let file = Source::new("site.toml", "[discovery]\ninterval_secs = 3600\n");
        let (c, _) = effective(&file, None, false).unwrap();
        assert!(!c.discovery.local_network && !c.discovery.enabled());
        let (c, _) = effective(&file, None, true).unwrap();
        assert!(c.discovery.local_network && c.discovery.enabled());
        // The cloud saying false does not undo the admin's choice on the page.
        let doc = json!({"discovery": {"local_network": false}});
        let (c, unfit) = effective(&file, Some(&doc), true).unwrap();
        assert!(unfit.is_none() && c.discovery.local_network);
    }

    #[test]
    fn a_document_whose_runs_keep_failing_is_set_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SealKey::for_store(&store, dir.path()).unwrap();
        assert_eq!(begin_trial(&store, 1).unwrap(), TrialStart::NoDocument);

        // A document that passed once is trusted: later abnormal ends are not its fault.
        with_document(&store, &key, "\"t\"");
        assert_eq!(begin_trial(&store, 2).unwrap(), TrialStart::OnTrial);
        trial_passed(&store).unwrap();
        for _ in 0..5 {
            assert_eq!(begin_trial(&store, 2).unwrap(), TrialStart::Trusted);
        }
        assert!(stored(&store, &key).unwrap().is_some());

        with_document(&store, &key, "\"a\"");

        // FAILED_STARTS runs end abnormally (nothing marks them passed): the next start
        // sets the document aside.
        for _ in 0..FAILED_STARTS {
            assert_eq!(begin_trial(&store, 3).unwrap(), TrialStart::OnTrial);
        }
        let TrialStart::SetAside(reason) = begin_trial(&store, 4).unwrap() else {
            panic!("set aside expected");
        };
        assert!(reason.contains("ended abnormally"), "{reason}");
        assert!(
            stored(&store, &key).unwrap().is_none(),
            "no document in force"
        );
        let st = status(&store).unwrap();
        assert_eq!(st.etag, None);
        let rejected = st.rejected.expect("reported as refused");
        assert_eq!(rejected.etag, "\"a\"");
        assert_eq!(rejected.reason, reason);
        assert_eq!(begin_trial(&store, 5).unwrap(), TrialStart::NoDocument);

        // A new document starts its own count; failures of the old one do not carry over.
        with_document(&store, &key, "\"b\"");
        store
            .set_setting(TRIAL, r#"{"etag":"\"a\"","runs":9}"#)
            .unwrap();
        assert_eq!(begin_trial(&store, 6).unwrap(), TrialStart::OnTrial);
        assert!(stored(&store, &key).unwrap().is_some());
        // An unreadable trial record counts as none.
        store.set_setting(TRIAL, "{not json").unwrap();
        assert_eq!(begin_trial(&store, 7).unwrap(), TrialStart::OnTrial);
    }

    #[test]
    fn a_panic_while_checking_a_document_is_a_refusal() {
        assert_eq!(guarded(|| Ok::<_, String>(1)), Ok(1));
        assert_eq!(
            guarded(|| Err::<u8, _>("bad".to_string())),
            Err("bad".into())
        );
        let r = guarded(|| -> Result<u8, String> { panic!("index out of range") });
        assert_eq!(
            r,
            Err("the agent failed while checking this document (a bug in the agent): index out of range".into())
        );
    }

    #[test]
    fn the_trial_and_a_set_aside_follow_the_content_not_the_tag() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SealKey::for_store(&store, dir.path()).unwrap();
        let doc = json!({"poller": {"interval_secs": 90}});
        keep(&store, &key, "\"a\"", &doc).unwrap();
        assert_eq!(begin_trial(&store, 1).unwrap(), TrialStart::OnTrial);
        // The cloud re-tags the same document: the count goes on.
        keep(&store, &key, "\"b\"", &doc).unwrap();
        assert_eq!(begin_trial(&store, 2).unwrap(), TrialStart::OnTrial);
        keep(&store, &key, "\"c\"", &doc).unwrap();
        assert!(matches!(
            begin_trial(&store, 3).unwrap(),
            TrialStart::SetAside(_)
        ));
        // And once set aside, that content is refused under any tag.
        let reason = refused_before(&store, &doc_id(&doc))
            .unwrap()
            .expect("remembered");
        assert!(reason.starts_with("set aside by the agent"), "{reason}");
        let other = json!({"poller": {"interval_secs": 91}});
        assert_eq!(refused_before(&store, &doc_id(&other)).unwrap(), None);
    }
}
