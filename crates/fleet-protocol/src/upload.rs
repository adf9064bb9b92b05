//! Telemetry upload (`POST /v1/agents/{agentId}/uploads`): an envelope of snapshot and
//! delta reports, and the cloud's status for each.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The envelope's `schemaVersion`.
pub const SCHEMA: &str = "fleet-agent-upload/1";

/// One upload: reports about printers, sent with `Idempotency-Key: <messageId>`. `R` is
/// [`Report`]; the agent sends the reports as it stored them (already serialised
/// [`Report`]s, `Box<RawValue>`), so a batch is not parsed and written again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<R = Report> {
    /// [`SCHEMA`].
    pub schema_version: String,
    /// Unique per message; a resent one is answered `duplicate`.
    pub message_id: String,
    /// The sending agent.
    pub agent_id: String,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: String,
    /// Send time, epoch ms.
    pub sent_at: i64,
    /// Ask the cloud to move printers another agent holds (`discovery.takeover`).
    #[serde(default)]
    pub takeover: bool,
    /// The reports, applied in order.
    pub reports: Vec<R>,
}

/// Why an upload happens (the upload schema's `trigger`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// First successful poll of a new printer.
    Enrolment,
    /// At least 24 h since the last full upload.
    #[serde(rename = "heartbeat24h")]
    Heartbeat24h,
    /// An alert was raised or cleared.
    AlertChange,
    /// A supply level went down.
    SupplyDecrease,
    /// A supply level went up (replaced, or a receptacle emptied).
    SupplyReplaced,
    /// Serial, model, manufacturer or firmware changed.
    IdentityChange,
    /// The cloud or the user asked for a refresh.
    OnDemand,
    /// The cloud's copy must be rebuilt: it answered "resync", or the agent's outbox,
    /// full during an outage, dropped deltas the cloud would have needed.
    Resync,
    /// A trigger a newer agent sends; the report is applied all the same.
    #[serde(other)]
    Other,
}

/// One report about one printer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Report {
    /// The whole printer.
    Snapshot(Snapshot),
    /// A merge patch over the keyed view of the last state the cloud applied.
    Delta(Delta),
}

impl Report {
    /// The printer's serial number (how the cloud names the asset).
    pub fn serial_number(&self) -> Option<&str> {
        match self {
            Report::Snapshot(s) => s.serial_number.as_deref(),
            Report::Delta(d) => d.serial_number.as_deref(),
        }
    }

    /// The report's sequence number for its printer.
    pub fn report_seq(&self) -> u64 {
        match self {
            Report::Snapshot(s) => s.report_seq,
            Report::Delta(d) => d.report_seq,
        }
    }

    /// When it was read, epoch ms.
    pub fn collected_at(&self) -> i64 {
        match self {
            Report::Snapshot(s) => s.collected_at,
            Report::Delta(d) => d.collected_at,
        }
    }
}

/// A snapshot: `reportSeq` and `trigger` beside the report body as `fleet-agent poll
/// --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Sequence number for this printer (1, 2, ...).
    pub report_seq: u64,
    /// Why it was sent.
    pub trigger: Trigger,
    /// The printer's serial number.
    pub serial_number: Option<String>,
    /// Read time, epoch ms.
    pub collected_at: i64,
    /// The rest of the report body (DATA-MODEL.md: identity, counters, supplies, alerts,
    /// device), kept as the document the cloud stores and serves.
    #[serde(flatten)]
    pub body: Map<String, Value>,
}

impl Snapshot {
    /// The report as one JSON object (serial number and read time included), the input of
    /// [`crate::keyed::keyed`].
    pub fn report(&self) -> Value {
        let mut m = self.body.clone();
        m.insert("serialNumber".into(), self.serial_number.clone().into());
        m.insert("collectedAt".into(), self.collected_at.into());
        Value::Object(m)
    }
}

/// A delta: an RFC 7396 merge patch over the keyed view of the report `baseReportSeq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    /// The printer's serial number.
    pub serial_number: Option<String>,
    /// Sequence number for this printer.
    pub report_seq: u64,
    /// The sequence number the patch applies to.
    pub base_report_seq: u64,
    /// Read time, epoch ms.
    pub collected_at: i64,
    /// Why it was sent.
    pub trigger: Trigger,
    /// The merge patch.
    pub patch: Value,
}

/// What the cloud did with one report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReportStatus {
    /// Applied.
    Applied,
    /// Seen before (a resent message, or an older sequence): nothing changed.
    Duplicate,
    /// The base is not what the cloud holds: send a snapshot.
    Resync,
    /// Another agent holds this printer.
    OwnedByAnotherAgent,
    /// Unusable (no serial number).
    Rejected,
}

/// The status of one report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    /// The report's serial number.
    pub serial_number: Option<String>,
    /// The report's sequence number.
    pub report_seq: u64,
    /// What the cloud did.
    pub status: ReportStatus,
}

/// `200` answer to an upload: one result per report, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAnswer {
    /// Per report.
    pub results: Vec<ReportResult>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_are_tagged_by_kind_and_keep_the_body() {
        let snap = json!({ "kind": "snapshot", "reportSeq": 1, "trigger": "enrolment",
            "serialNumber": "X1", "collectedAt": 5, "modelName": "M", "counters": { "lifetimeCount": 3 } });
        let r: Report = serde_json::from_value(snap.clone()).unwrap();
        let Report::Snapshot(s) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(s.body["modelName"], "M");
        assert_eq!(r.serial_number(), Some("X1"));
        assert_eq!(serde_json::to_value(&r).unwrap(), snap);
        assert_eq!(s.report()["counters"]["lifetimeCount"], 3);

        let delta = json!({ "kind": "delta", "serialNumber": "X1", "reportSeq": 2,
            "baseReportSeq": 1, "collectedAt": 6, "trigger": "somethingNew", "patch": {} });
        let r: Report = serde_json::from_value(delta).unwrap();
        assert!(matches!(
            r,
            Report::Delta(Delta {
                trigger: Trigger::Other,
                ..
            })
        ));
        assert_eq!(r.report_seq(), 2);
        assert!(serde_json::from_value::<Report>(json!({ "kind": "other" })).is_err());
    }
}
