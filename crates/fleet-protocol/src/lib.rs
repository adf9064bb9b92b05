//! The agent ↔ cloud protocol (`docs/protocol.md`) as types shared by the agent and the
//! reference cloud: every document either side reads or writes is a struct or an enum
//! here, so neither reads the other's JSON by string keys.
//!
//! # Modules
//! - [`activation`]: activation code exchange and OAuth 2 client-credentials tokens.
//! - [`upload`]: the upload envelope, snapshot and delta reports, triggers, per-report
//!   statuses.
//! - [`keyed`]: the keyed view of a printer report and RFC 7396 merge-patch diffs over it.
//! - [`heartbeat`]: the heartbeat and its answer.
//! - [`jobs`]: jobs ([`jobs::Job`] with a typed [`jobs::Command`] per type and an `Unknown`
//!   fallback), their results, statuses, progress.
//! - [`library`]: the printer support library document and its signed package.
//! - [`meters`]: the library's meter maps and the meters a report carries.
//! - [`update`]: the agent update manifest and its signed package.
//! - [`signing`]: ed25519 signatures and key ids over both packages.
//! - [`admin`]: the reference cloud's administration API.
//!
//! Documents keep unknown members where the protocol lets a newer side add some (job
//! types, triggers), and refuse them where a typo would change meaning (signed
//! libraries and manifests).

pub mod activation;
pub mod admin;
pub mod heartbeat;
pub mod jobs;
pub mod keyed;
pub mod library;
pub mod meters;
pub mod signing;
pub mod update;
pub mod upload;

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;

/// [`VERSION`] as the header carries it.
pub const VERSION_TEXT: &str = "1";

/// The header every request carries with [`VERSION`] (and a `426` answer with the
/// version the cloud speaks).
pub const VERSION_HEADER: &str = "Fleet-Agent-Protocol";

/// An error answer: `{ "reason": "short text" }` with the status code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Why, in words a person can act on.
    pub reason: String,
}

impl Reason {
    /// An error answer with this text.
    pub fn new(text: impl Into<String>) -> Reason {
        Reason {
            reason: text.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_header_carries_the_version() {
        assert_eq!(super::VERSION_TEXT, super::VERSION.to_string());
    }
}
