//! SNMP v1/v2c/v3 on the wire. Knows nothing about printers.
//!
//! # Modules
//! - [`ber`]: the BER codec (~300 lines, no allocation beyond the output).
//! - [`message`]: v1/v2c/v3 messages and PDUs, encode and decode.
//! - [`usm`]: the user-based security model (RFC 3414 keys, HMAC-MD5/SHA-1/SHA-2, DES,
//!   AES-128/192/256 with Blumenthal or Reeder key extension).
//! - `client` ([`UdpClient`]): one UDP socket per address family shared by thousands of
//!   targets, replies routed by request id and source, timeouts, retries, rate limit.
//! - [`walk`]: GETBULK/GETNEXT walks and the multi-column "collection" a poll runs.
//! - [`quirks`]: how a misbehaving agent must be asked, and the probes that find it out.
//! - [`agent`]: the agent side (MIB views, GET/GETNEXT/GETBULK/SET semantics, USM engine)
//!   used by the simulator and the fake.
//! - [`snmprec`]: snmpsim's `.snmprec` recording format, read and written.
//! - [`fake`] (feature `test-util`): [`fake::FakeSnmp`] answers from in-memory MIB views
//!   with the agent code above, for tests on paused time.
//!
//! The seam for pollers and discovery is [`SnmpClient`]: [`UdpClient`] is the real one.

pub mod agent;
pub mod ber;
mod client;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod message;
mod oid;
pub mod quirks;
pub mod snmprec;
pub mod usm;
mod value;
pub mod walk;

pub use client::{ClientStats, UdpClient};
pub use message::{Pdu, PduType, Version};
pub use oid::{Oid, OidParseError};
pub use value::{Value, VarBind, hex};

use fleet_secret::Secret;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use usm::{AuthProtocol, KeyExtension, MasterKeys, PrivProtocol};

/// How to authenticate to an agent.
#[derive(Clone, Debug)]
pub enum Security {
    /// SNMPv1 or SNMPv2c with a community string.
    Community {
        /// `Version::V1` or `Version::V2c`.
        version: Version,
        /// The community.
        community: Secret,
    },
    /// SNMPv3 with the User-based Security Model.
    Usm(Arc<UsmUser>),
}

impl Security {
    /// SNMPv2c with `community`.
    pub fn v2c(community: &str) -> Self {
        Security::Community {
            version: Version::V2c,
            community: Secret::new(community),
        }
    }

    /// SNMPv1 with `community`.
    pub fn v1(community: &str) -> Self {
        Security::Community {
            version: Version::V1,
            community: Secret::new(community),
        }
    }

    /// Returns the protocol version.
    pub fn version(&self) -> Version {
        match self {
            Security::Community { version, .. } => *version,
            Security::Usm(_) => Version::V3,
        }
    }
}

/// SNMPv3 security level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SecurityLevel {
    /// No authentication, no privacy.
    NoAuthNoPriv,
    /// Authentication only.
    AuthNoPriv,
    /// Authentication and privacy.
    AuthPriv,
}

/// An SNMPv3 user with its pass phrases. Master keys are derived once (1 MiB hash each)
/// on first use and shared by every target using this user.
pub struct UsmUser {
    /// User (security) name.
    pub name: String,
    /// Authentication protocol and pass phrase.
    pub auth: Option<(AuthProtocol, Secret)>,
    /// Privacy protocol and pass phrase (requires `auth`).
    pub privacy: Option<(PrivProtocol, Secret)>,
    /// Key extension for AES-192/256 with short hashes.
    pub extension: KeyExtension,
    /// Context name (snmpsim uses it to pick a recording).
    pub context: String,
    /// The only authoritative engine this user's requests may go to (credentials set for
    /// one device): another engine at the address gets nothing but the engine discovery
    /// probe, which carries no secret ([`SnmpError::EngineChanged`]).
    pub engine_pin: Option<Vec<u8>>,
    master: OnceLock<MasterKeys>,
    /// Keys localized per authoritative engine ID (cheap, but done once per engine).
    localized: parking_lot::Mutex<std::collections::HashMap<Vec<u8>, Arc<usm::LocalizedKeys>>>,
}

impl fmt::Debug for UsmUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UsmUser")
            .field("name", &self.name)
            .field("auth", &self.auth.as_ref().map(|a| a.0))
            .field("privacy", &self.privacy.as_ref().map(|p| p.0))
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl UsmUser {
    /// Parses `NAME`, `NAME:AUTH:AUTHPASS` or `NAME:AUTH:AUTHPASS:PRIV:PRIVPASS` (e.g.
    /// `fleet:sha256:authpass123:aes128:privpass123`), as the simulator's `--v3-user`.
    ///
    /// # Errors
    /// A malformed specification or an unknown protocol.
    pub fn from_spec(spec: &str) -> Result<UsmUser, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let auth = |p: &str, pw: &str| -> Result<_, String> { Ok((p.parse()?, Secret::new(pw))) };
        let privacy =
            |p: &str, pw: &str| -> Result<_, String> { Ok((p.parse()?, Secret::new(pw))) };
        match parts.as_slice() {
            [name] => Ok(UsmUser::new(*name, None, None)),
            [name, ap, apw] => Ok(UsmUser::new(*name, Some(auth(ap, apw)?), None)),
            [name, ap, apw, pp, ppw] => Ok(UsmUser::new(
                *name,
                Some(auth(ap, apw)?),
                Some(privacy(pp, ppw)?),
            )),
            _ => Err(format!(
                "{:?}: expected NAME:AUTH:AUTHPASS[:PRIV:PRIVPASS]",
                parts.first().unwrap_or(&"")
            )),
        }
    }

    /// Creates a user; `privacy` without `auth` is ignored (USM forbids it).
    pub fn new(
        name: impl Into<String>,
        auth: Option<(AuthProtocol, Secret)>,
        privacy: Option<(PrivProtocol, Secret)>,
    ) -> Self {
        let privacy = if auth.is_some() { privacy } else { None };
        UsmUser {
            name: name.into(),
            auth,
            privacy,
            extension: KeyExtension::Blumenthal,
            context: String::new(),
            engine_pin: None,
            master: OnceLock::new(),
            localized: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Sets the context name.
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context = context.into();
        self
    }

    /// Sets the AES-192/256 key extension method.
    pub fn with_extension(mut self, extension: KeyExtension) -> Self {
        self.extension = extension;
        self
    }

    /// Returns the security level implied by the configured protocols.
    pub fn level(&self) -> SecurityLevel {
        match (&self.auth, &self.privacy) {
            (None, _) => SecurityLevel::NoAuthNoPriv,
            (Some(_), None) => SecurityLevel::AuthNoPriv,
            (Some(_), Some(_)) => SecurityLevel::AuthPriv,
        }
    }

    /// Returns this user's keys localized to `engine_id`, computing them once per engine.
    pub fn keys_for(&self, engine_id: &[u8]) -> Arc<usm::LocalizedKeys> {
        if let Some(k) = self.localized.lock().get(engine_id).cloned() {
            return k;
        }
        let k = Arc::new(self.master_keys().localize(engine_id));
        {
            let mut m = self.localized.lock();
            m.insert(engine_id.to_vec(), k.clone());
        }
        k
    }

    /// Returns the master keys, deriving them on first use.
    pub fn master_keys(&self) -> &MasterKeys {
        self.master.get_or_init(|| {
            MasterKeys::derive(
                self.auth.as_ref().map(|(p, s)| (*p, s.expose().as_bytes())),
                self.privacy
                    .as_ref()
                    .map(|(p, s)| (*p, s.expose().as_bytes())),
                self.extension,
            )
        })
    }
}

/// One agent to talk to, with its credentials and patience.
#[derive(Clone, Debug)]
pub struct Target {
    /// UDP address of the agent.
    pub addr: SocketAddr,
    /// Credentials.
    pub security: Security,
    /// Time to wait for each attempt.
    pub timeout: Duration,
    /// Extra attempts after the first one times out.
    pub retries: u32,
    /// GETBULK max-repetitions budget (varbinds per response, spread over columns);
    /// 0 walks with GETNEXT (an agent whose GETBULK fails).
    pub max_repetitions: u32,
}

impl Target {
    /// Creates a target with the defaults (1 s timeout, 1 retry, 40 varbinds per GETBULK).
    pub fn new(addr: SocketAddr, security: Security) -> Self {
        Target {
            addr,
            security,
            timeout: Duration::from_millis(1000),
            retries: 1,
            max_repetitions: 40,
        }
    }
}

/// Why an SNMP exchange failed. Variants that call for different actions stay distinct.
#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    /// No answer (the agent is down, filtered, or silently drops a wrong community).
    #[error("{target}: no response after {attempts} attempt(s) of {} ms{hint}", timeout.as_millis())]
    Timeout {
        /// Agent address.
        target: SocketAddr,
        /// Attempts made.
        attempts: u32,
        /// Per-attempt timeout.
        timeout: Duration,
        /// Extra hint (e.g. wrong v3 privacy pass phrase gives a silent drop).
        hint: &'static str,
    },
    /// The host answered with ICMP port unreachable: nothing listens on the SNMP port.
    #[error("{target}: port unreachable (nothing listens on that UDP port)")]
    Unreachable {
        /// Agent address.
        target: SocketAddr,
    },
    /// The agent answered with an error-status.
    #[error("{target}: agent returned {} at varbind {index}", message::error_status::name(*status))]
    Agent {
        /// Agent address.
        target: SocketAddr,
        /// error-status.
        status: i32,
        /// error-index (1-based).
        index: i32,
    },
    /// SNMPv3: the agent does not know this user (usmStatsUnknownUserNames).
    #[error("{target}: SNMPv3 unknown user name {user:?}")]
    UnknownUser {
        /// Agent address.
        target: SocketAddr,
        /// The user name sent.
        user: String,
    },
    /// SNMPv3: wrong authentication pass phrase or protocol (usmStatsWrongDigests).
    #[error("{target}: SNMPv3 wrong digest (authentication pass phrase or protocol is wrong)")]
    WrongDigest {
        /// Agent address.
        target: SocketAddr,
    },
    /// SNMPv3: still outside the time window after one resynchronisation.
    #[error("{target}: SNMPv3 not in time window after resynchronisation")]
    NotInTimeWindow {
        /// Agent address.
        target: SocketAddr,
    },
    /// SNMPv3: the agent could not decrypt the request (usmStatsDecryptionErrors).
    #[error("{target}: SNMPv3 decryption error (privacy pass phrase or protocol is wrong)")]
    DecryptionError {
        /// Agent address.
        target: SocketAddr,
    },
    /// SNMPv3: security level not supported for this user (usmStatsUnsupportedSecLevels).
    #[error("{target}: SNMPv3 security level not supported for this user")]
    UnsupportedSecLevel {
        /// Agent address.
        target: SocketAddr,
    },
    /// SNMPv3: the agent kept reporting an unknown engine ID.
    #[error("{target}: SNMPv3 engine discovery failed ({reason})")]
    EngineDiscovery {
        /// Agent address.
        target: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// SNMPv3: the device at the address is not the one these credentials were set for
    /// (its authoritative engine ID differs from the pinned one); nothing was sent.
    #[error(
        "{target}: SNMPv3 engine ID {found} is not {expected}, the device these credentials were set for; they were not sent"
    )]
    EngineChanged {
        /// Agent address.
        target: SocketAddr,
        /// The pinned engine ID (hex).
        expected: String,
        /// The engine ID found (hex).
        found: String,
    },
    /// SNMPv3: a response failed authentication or could not be decrypted by us.
    #[error("{target}: SNMPv3 response failed {what}")]
    BadResponse {
        /// Agent address.
        target: SocketAddr,
        /// authentication or decryption.
        what: &'static str,
    },
    /// The reply could not be decoded.
    #[error("{target}: malformed response: {source}")]
    Malformed {
        /// Agent address.
        target: SocketAddr,
        /// Decoder error.
        #[source]
        source: ber::BerError,
    },
    /// A walk returned an OID that is not after the previous one (a looping agent).
    #[error("{target}: walk of {root} returned non-increasing OID {oid} after {previous}")]
    NonIncreasing {
        /// Agent address.
        target: SocketAddr,
        /// Subtree being walked (boxed, as the next two: OIDs keep their arcs inline,
        /// and three would make every `Result` carrying this error large).
        root: Box<Oid>,
        /// The previous OID.
        previous: Box<Oid>,
        /// The offending OID.
        oid: Box<Oid>,
    },
    /// The agent answered tooBig even for the smallest request we can make.
    #[error("{target}: response too big even for one variable")]
    TooBig {
        /// Agent address.
        target: SocketAddr,
    },
    /// A whole-subtree walk ([`walk::walk_subtree`]) ran past its deadline.
    #[error("{target}: the walk did not finish within {secs} s")]
    Deadline {
        /// Agent address.
        target: SocketAddr,
        /// The deadline, in seconds.
        secs: u64,
    },
    /// Local socket error.
    #[error("{target}: {source}")]
    Io {
        /// Agent address.
        target: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl SnmpError {
    /// Returns a short stable code for reports and metrics (`timeout`, `unknownUser`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            SnmpError::Timeout { .. } => "timeout",
            SnmpError::Unreachable { .. } => "unreachable",
            SnmpError::Agent { .. } => "agentError",
            SnmpError::UnknownUser { .. } => "unknownUser",
            SnmpError::WrongDigest { .. } => "wrongDigest",
            SnmpError::NotInTimeWindow { .. } => "notInTimeWindow",
            SnmpError::DecryptionError { .. } => "decryptionError",
            SnmpError::UnsupportedSecLevel { .. } => "unsupportedSecLevel",
            SnmpError::EngineDiscovery { .. } => "engineDiscovery",
            SnmpError::EngineChanged { .. } => "engineChanged",
            SnmpError::BadResponse { .. } => "badResponse",
            SnmpError::Malformed { .. } => "malformed",
            SnmpError::NonIncreasing { .. } => "nonIncreasing",
            SnmpError::TooBig { .. } => "tooBig",
            SnmpError::Deadline { .. } => "deadline",
            SnmpError::Io { .. } => "io",
        }
    }
}

/// A request PDU as the caller describes it (the client assigns the request-id).
#[derive(Clone, Debug)]
pub struct Request {
    /// Get, GetNext, GetBulk or Set.
    pub kind: PduType,
    /// GETBULK non-repeaters (ignored otherwise).
    pub non_repeaters: u32,
    /// GETBULK max-repetitions (ignored otherwise).
    pub max_repetitions: u32,
    /// Variable bindings (NULL values except for Set).
    pub varbinds: Vec<VarBind>,
}

/// The seam pollers and discovery use: send one request, get the response PDU.
/// Walks and typed helpers in [`walk`] are built on it, so a fake only needs this.
pub trait SnmpClient: Send + Sync + 'static {
    /// Sends `request` to `target` with the target's timeout and retries, and returns the
    /// agent's response PDU (which may carry a non-zero error-status).
    ///
    /// # Errors
    /// Timeouts, v3 security failures, malformed replies and socket errors.
    fn request(
        &self,
        target: &Target,
        request: Request,
    ) -> impl Future<Output = Result<Pdu, SnmpError>> + Send;
}
