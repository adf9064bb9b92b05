//! The cloud link. So far: what to send and when — the seed's upload rule evaluated after
//! each poll (the `uploader` component), snapshots and JSON Merge Patch deltas over a keyed
//! view of the report (DATA-MODEL.md §4.2–§4.3), queued in the store's durable outbox. The
//! HTTPS transport that drains the outbox, activation and the reference cloud are the
//! cloud-link issue's remaining work (docs/protocol.md).

pub mod client;
pub mod report;
pub mod sender;
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
