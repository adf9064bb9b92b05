//! The cloud link (the only HTTP client): what to send and when — the seed's upload rule
//! evaluated after each poll (`uploader`), snapshots and JSON Merge Patch deltas over a
//! keyed view of the report (DATA-MODEL.md §4.2–§4.3) queued in the store's durable
//! outbox — and the HTTPS transport (`client`, `sender`): activation, tokens, uploads in
//! order. The protocol is docs/protocol.md.

pub mod client;
pub mod heartbeat;
pub mod report;
pub mod sender;
pub mod settings;
pub mod uploader;

/// What the local page shows of the cloud link: the last contact, upload and error.
pub mod link {
    use std::sync::Mutex;

    /// The link's recent history (this process only).
    #[derive(Clone, Debug, Default, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct LinkStatus {
        /// Last answer from the cloud (any call), epoch ms.
        pub last_contact_ms: Option<i64>,
        /// Last accepted upload, epoch ms.
        pub last_upload_ms: Option<i64>,
        /// Last failure to reach the cloud, epoch ms, and why.
        pub last_error_ms: Option<i64>,
        /// Why.
        pub last_error: Option<String>,
    }

    static STATUS: Mutex<LinkStatus> = Mutex::new(LinkStatus {
        last_contact_ms: None,
        last_upload_ms: None,
        last_error_ms: None,
        last_error: None,
    });

    fn with(f: impl FnOnce(&mut LinkStatus)) {
        f(&mut STATUS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// The cloud answered.
    pub fn contact() {
        with(|s| s.last_contact_ms = Some(crate::poller::now_ms()));
    }

    /// An upload was accepted.
    pub fn upload() {
        let now = crate::poller::now_ms();
        with(|s| {
            s.last_contact_ms = Some(now);
            s.last_upload_ms = Some(now);
        });
    }

    /// The cloud could not be reached (or refused the agent).
    pub fn error(why: &str) {
        with(|s| {
            s.last_error_ms = Some(crate::poller::now_ms());
            s.last_error = Some(why.to_string());
        });
    }

    /// The current status.
    pub fn get() -> LinkStatus {
        STATUS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Installs the ring crypto provider for rustls once (reqwest and the reference cloud use
/// rustls without a built-in provider, so the process must choose one).
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
    });
}

/// Stores activation credentials in the state directory (the secret sealed).
///
/// # Errors
/// On store failure.
pub fn save_credentials(
    dir: &std::path::Path,
    creds: &client::Credentials,
) -> Result<(), crate::store::StoreError> {
    let store = crate::store::Store::open(dir)?;
    let key = crate::store::secrets::SealKey::load_or_create(dir)?;
    // A new activation also ends a "disabled" or "deleted" state set by the cloud.
    store.remove_setting(crate::jobs::DISABLED)?;
    store.set_setting("cloud.agent_id", &creds.agent_id)?;
    store.set_setting("cloud.client_id", &creds.client_id)?;
    store.set_secret(&key, "cloud.client_secret", &creds.client_secret)
}
