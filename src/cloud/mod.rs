//! The cloud link (the only HTTP client): what to send and when — the seed's upload rule
//! evaluated after each poll (`uploader`), snapshots and JSON Merge Patch deltas over a
//! keyed view of the report (DATA-MODEL.md §4.2–§4.3) queued in the store's durable
//! outbox — and the HTTPS transport (`client`, `sender`): activation, tokens, uploads in
//! order. The protocol is docs/protocol.md.

pub mod activation;
pub mod client;
pub mod heartbeat;
pub mod report;
pub mod sender;
pub mod settings;
pub mod trust;
pub mod uploader;

/// The cloud link's recent history (this process only): what the local page shows and
/// what an update on trial waits for. A handle: the sender and the heartbeat write it,
/// the page and the update's health check read or watch it.
pub mod link {
    use crate::clock::Clock;
    use std::sync::Arc;
    use tokio::sync::watch;

    /// The last contact, upload and error.
    #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct LinkStatus {
        /// Last answer from the cloud (any call), epoch ms.
        pub last_contact_ms: Option<i64>,
        /// Last accepted upload, epoch ms.
        pub last_upload_ms: Option<i64>,
        /// Last failure to reach the cloud, epoch ms.
        pub last_error_ms: Option<i64>,
        /// Why.
        pub last_error: Option<String>,
    }

    /// A handle on the link's status.
    #[derive(Clone)]
    pub struct Link {
        tx: Arc<watch::Sender<LinkStatus>>,
        clock: Clock,
    }

    impl Link {
        /// A link with no history, stamped by `clock`.
        pub fn new(clock: Clock) -> Link {
            Link {
                tx: Arc::new(watch::Sender::new(LinkStatus::default())),
                clock,
            }
        }

        /// The cloud answered.
        pub fn contact(&self) {
            let now = self.clock.now_ms();
            self.tx.send_modify(|s| s.last_contact_ms = Some(now));
        }

        /// An upload was accepted.
        pub fn upload(&self) {
            let now = self.clock.now_ms();
            self.tx.send_modify(|s| {
                s.last_contact_ms = Some(now);
                s.last_upload_ms = Some(now);
            });
        }

        /// The cloud could not be reached (or refused the agent).
        pub fn error(&self, why: &str) {
            let now = self.clock.now_ms();
            self.tx.send_modify(|s| {
                s.last_error_ms = Some(now);
                s.last_error = Some(why.to_string());
            });
        }

        /// The current status.
        pub fn get(&self) -> LinkStatus {
            self.tx.borrow().clone()
        }

        /// Watches the status.
        pub fn subscribe(&self) -> watch::Receiver<LinkStatus> {
            self.tx.subscribe()
        }
    }
}

/// A connection to the cloud as the components share it: the client, the activation's
/// credentials, the link status they report to, and the agent's clock.
#[derive(Clone)]
pub struct Connection {
    /// The HTTPS client.
    pub client: std::sync::Arc<client::CloudClient>,
    /// Who the agent is.
    pub creds: client::Credentials,
    /// Where contacts and failures are recorded.
    pub link: link::Link,
    /// The agent's clock.
    pub clock: crate::clock::Clock,
}

/// Installs the ring crypto provider for rustls once (reqwest uses rustls without a
/// built-in provider, so the process must choose one).
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
    let key = crate::store::secrets::SealKey::for_store(&store, dir)?;
    store.save_cloud_credentials(&key, creds)
}
