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
