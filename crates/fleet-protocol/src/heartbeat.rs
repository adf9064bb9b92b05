//! Heartbeat (`POST /v1/agents/{agentId}/heartbeat`): the agent is alive, with its
//! version, outbox figures and printers by health; the answer says when to beat again,
//! whether jobs wait and which settings are current.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the agent is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AgentState {
    /// Polling and discovering.
    Running,
    /// Disabled by the cloud (`disable` job): no printer work.
    Disabled,
}

/// The agent's outbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxFigures {
    /// Messages waiting.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Evicted at the byte cap since the store was created.
    pub dropped: u64,
    /// Refused by the cloud (4xx) and dropped.
    pub rejected: u64,
}

/// Printers by health (`ok`, `suspect`, `notCommunicating`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterCounts {
    /// All managed printers.
    pub total: u64,
    /// Count per health state.
    pub by_health: BTreeMap<String, u64>,
}

/// Whether the agent can talk to a printer (the seed's communication status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Communication {
    /// The last poll answered.
    Ok,
    /// Missed one or more polls, below the agent's not-communicating threshold.
    Suspect,
    /// Missed the configured number of polls in a row.
    NotCommunicating,
    /// The printer answers but refuses the agent's credentials (SNMPv3 unknown user, wrong
    /// digest or pass phrase, unsupported security level): an admin must update them.
    NeedsCredentials,
    /// Not polled yet (and any status a newer agent sends that this side does not know,
    /// so one new word never makes a whole heartbeat unreadable).
    #[serde(other)]
    Unknown,
}

/// Most printer statuses one heartbeat carries; the rest follow in the next beats.
pub const MAX_PRINTER_STATUS: usize = 500;

/// One printer's communication status, sent when it changes (and once after the agent
/// starts), so the cloud can tell which printer is in trouble while no reading comes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterStatus {
    /// The printer's address (`ip:port`) as the agent polls it.
    pub address: String,
    /// Its serial number once read (the asset's key in the cloud).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Its communication status.
    pub communication: Communication,
    /// Why, when not ok (the last poll's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Since when the printer has had this status, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// The last successful poll, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// How the agent must ask this printer's SNMP agent (learned workarounds, e.g.
    /// "v1 only; no GETBULK; skips prtMarkerSuppliesLevel (drops the request)"), when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quirks: Option<String>,
}

/// A settings document the agent refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Its entity tag.
    pub etag: String,
    /// Every problem, with its key path.
    pub reason: String,
}

/// The settings the agent holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// The entity tag of the document in force.
    pub etag: Option<String>,
    /// The last refused one.
    pub rejected: Option<Rejected>,
}

impl ConfigStatus {
    /// Whether `tag` (from the heartbeat answer) is already known, applied or refused.
    pub fn knows(&self, tag: &str) -> bool {
        self.etag.as_deref() == Some(tag) || self.rejected.as_ref().is_some_and(|r| r.etag == tag)
    }
}

/// Where a staged agent update is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UpdatePhase {
    /// Staged by a job, not yet confirmed healthy.
    Trial,
    /// The trial found itself unhealthy and asked to be rolled back.
    Unhealthy,
    /// Confirmed: started instead of the installed binary.
    Active,
}

/// A staged agent update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentUpdate {
    /// The staged version.
    pub version: String,
    /// Where it is.
    pub phase: UpdatePhase,
    /// The version before it.
    pub from_version: Option<String>,
}

/// The heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The version of the binary sending it.
    pub agent_version: String,
    /// The printer support library in use (1: built in).
    pub library_version: u64,
    /// [`crate::VERSION`].
    pub protocol: u32,
    /// Running or disabled.
    pub state: AgentState,
    /// Send time, epoch ms.
    pub sent_at: i64,
    /// Seconds since the agent started.
    pub uptime_secs: i64,
    /// The outbox.
    pub outbox: OutboxFigures,
    /// Printers by health.
    pub printers: PrinterCounts,
    /// The settings in force and the last refused.
    pub config: ConfigStatus,
    /// A staged update, while there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_update: Option<AgentUpdate>,
    /// Printers whose status changed since the cloud last heard (all of them once after
    /// the agent starts), at most [`MAX_PRINTER_STATUS`] per beat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub printer_status: Vec<PrinterStatus>,
}

/// The cloud's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAnswer {
    /// Jobs are pending for this agent.
    #[serde(default)]
    pub jobs_waiting: bool,
    /// When to beat again (the agent clamps it to 10–3600).
    pub next_heartbeat_secs: Option<u64>,
    /// The entity tag of the current settings document; one the agent does not know makes
    /// it pull them.
    #[serde(default)]
    pub config_etag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_word_this_side_does_not_know_reads_as_unknown() {
        let s: PrinterStatus =
            serde_json::from_str(r#"{"address": "192.0.2.1:161", "communication": "sleeping"}"#)
                .unwrap();
        assert_eq!(s.communication, Communication::Unknown);
        let back = serde_json::to_value(Communication::NeedsCredentials).unwrap();
        assert_eq!(back, "needsCredentials");
    }
}
