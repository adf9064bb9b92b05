//! Jobs (docs/protocol.md, Jobs): what the cloud asks, what the agent answers.
//!
//! A job on the wire is `{ "jobId", "type", "printer", "params", "createdAt", "notAfter" }`.
//! [`Command`] reads `type` and `params` together: each known type has its parameters as
//! a struct; a type this version does not know is [`Command::Unknown`] (answered
//! `agentNotSupported`, so a newer cloud never waits on an older agent), and a known type
//! whose parameters do not fit is [`Command::Invalid`] with the key path of the problem
//! (answered `failed`). Neither ever stops the other jobs of the same long-poll.

use crate::library;
use crate::update;
use fleet_secret::Secret;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

/// A job as the agent receives it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Letters, digits, `.`, `-`, `_` (used in URL paths).
    pub job_id: String,
    /// `type` and `params`.
    #[serde(flatten)]
    pub command: Command,
    /// The printer a printer command is for.
    #[serde(default)]
    pub printer: Option<PrinterRef>,
    /// Creation time, epoch ms.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// The end of the job's window, epoch ms: a job still pending then expires.
    #[serde(default)]
    pub not_after: Option<i64>,
}

impl Job {
    /// Whether the id is a plain token (it goes into URL paths).
    pub fn has_valid_id(&self) -> bool {
        valid_token(&self.job_id, 100)
    }
}

/// Names in URL paths (job ids, file names): letters, digits, `.`, `-`, `_`, not starting
/// with a dot, at most `max` bytes.
pub fn valid_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Which printer: by serial number, or by address (`ip` or `ip:port`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterRef {
    /// The serial number the cloud knows it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// Its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl fmt::Display for PrinterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.serial_number, &self.address) {
            (Some(s), Some(a)) => write!(f, "serial {s:?} at {a}"),
            (Some(s), None) => write!(f, "serial {s:?}"),
            (None, Some(a)) => write!(f, "at {a}"),
            (None, None) => f.write_str("(none named)"),
        }
    }
}

/// The seed's four panel messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PanelMessage {
    /// "Service scheduled".
    ServiceScheduled,
    /// "Toner cartridge delivered".
    TonerDelivered,
    /// "Toner cartridge ordered".
    TonerOrdered,
    /// "Toner cartridge shipped".
    TonerShipped,
}

/// `panelMessage` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelParams {
    /// Which message.
    pub message: PanelMessage,
}

/// `complianceCheck` / `complianceEnforce` parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComplianceParams {
    /// Setting name → expected value (`sysName`, `sysLocation`, `sysContact`; the agent
    /// names any other key in a warning).
    pub settings: Map<String, Value>,
}

/// SNMP credentials in the shape of the agent configuration's `auth` (`{ "type": "v3",
/// "user", "auth_protocol", "auth_pass", ... }`), validated by the agent with key paths.
/// It holds pass phrases: `Debug` never shows it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnmpAuth(pub Value);

impl fmt::Debug for SnmpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnmpAuth(<redacted>)")
    }
}

/// A printer's web-server credentials and its pinned certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebCredentials {
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "fleet_secret::exposed::option"
    )]
    pub password: Option<Secret>,
    /// SHA-256 of the certificate to trust from now on (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_sha256: Option<String>,
}

/// `updateCredentials` parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsParams {
    /// SNMP credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SnmpAuth>,
    /// Web-server credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebCredentials>,
}

/// What a deployed file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FileKind {
    /// A settings bundle (`.zip`, up to 32 MiB).
    SettingsBundle,
    /// A universal configuration file (`.ucf`, up to 50 MiB).
    Ucf,
    /// An app (`.fls`, up to 50 MiB).
    App,
    /// A firmware flash file (only through `firmwareUpdate` and `deployConfiguration`).
    Firmware,
}

/// A file attached to the job, to send to the printer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileItem {
    /// The attached file's name.
    pub file: String,
    /// What it is (from the name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FileKind>,
    /// Its size, when the cloud says (checked before anything is downloaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// `firmwareUpdate` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirmwareParams {
    /// The flash file.
    pub file: String,
    /// Its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// When the window opens, epoch ms (at most 23 h ahead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<i64>,
    /// Always firmware when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FileKind>,
}

/// `deployConfiguration` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationParams {
    /// The files, in any order (sent firmware first, then apps, then settings).
    pub items: Vec<FileItem>,
}

/// `printerLogs` parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// `mibWalk` (the default) or a log kind the support library names for the vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `updateLibrary` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryParams {
    /// The signed library.
    pub package: library::Package,
}

/// `updateAgent` parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateParams {
    /// The signed manifest.
    pub package: update::Package,
    /// The binary attached to the job.
    pub file: String,
    /// Seconds the new version has to reach the cloud (5..=3600, default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_secs: Option<u64>,
}

/// What a job asks for: its `type` and typed `params`.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Poll every printer now; each reading is uploaded as a snapshot.
    Refresh,
    /// Poll the job's printer now.
    RefreshPrinter,
    /// Run discovery now.
    Discover,
    /// Pull the configuration now.
    EditSettings,
    /// Stop printer work (configuration and data kept).
    Disable,
    /// Resume printer work.
    Enable,
    /// Wipe credentials and data once the result is delivered.
    Delete,
    /// Restart the printer.
    Reboot,
    /// Show a message on the printer's panel.
    PanelMessage(PanelParams),
    /// Clear a message the cloud showed.
    ClearPanelMessage,
    /// Compare settings.
    ComplianceCheck(ComplianceParams),
    /// Compare and write settings.
    ComplianceEnforce(ComplianceParams),
    /// Walk the printer's MIB and upload it.
    MibWalk,
    /// Store and use new credentials for the printer.
    UpdateCredentials(CredentialsParams),
    /// Stop managing the printer.
    Unenroll,
    /// Upload the agent's log bundle.
    RequestLogs,
    /// Install a newer signed printer support library.
    UpdateLibrary(LibraryParams),
    /// Send a file to the printer.
    DeployFile(FileItem),
    /// Read a printer log and upload it.
    PrinterLogs(LogsParams),
    /// Flash new firmware, optionally in a window.
    FirmwareUpdate(FirmwareParams),
    /// Send several files in the seed's order.
    DeployConfiguration(ConfigurationParams),
    /// Install a newer signed agent.
    UpdateAgent(UpdateParams),
    /// A type this version does not implement.
    Unknown {
        /// The type as sent.
        type_name: String,
        /// Its parameters as sent.
        params: Value,
    },
    /// A known type whose parameters do not fit.
    Invalid {
        /// The type.
        type_name: String,
        /// Its parameters as sent.
        params: Value,
        /// What does not fit, with the key path (`params.message: …`).
        error: String,
    },
}

/// Job types whose parameters may hold secrets: the agent stores them sealed, the
/// reference cloud shows them redacted.
pub const SECRET_TYPES: &[&str] = &["updateCredentials"];

/// Reads `params` into `T`, naming the key path of the first problem under `params`.
fn params<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    // Absent params mean no parameters.
    let empty = Value::Object(Map::new());
    let v = if v.is_null() { &empty } else { v };
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            "params".to_string()
        } else {
            format!("params.{path}")
        };
        let inner = e.into_inner().to_string();
        // "missing field `file`" reads better as "params.file: missing".
        match inner
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            Some(field) => format!("{at}.{field}: missing"),
            None => format!("{at}: {inner}"),
        }
    })
}

impl Command {
    /// Reads a command from its wire parts.
    pub fn from_parts(type_name: &str, params_value: Value) -> Command {
        use Command as C;
        macro_rules! typed {
            ($variant:path) => {
                match params(&params_value) {
                    Ok(p) => $variant(p),
                    Err(error) => C::Invalid {
                        type_name: type_name.to_string(),
                        params: params_value,
                        error,
                    },
                }
            };
        }
        match type_name {
            "refresh" => C::Refresh,
            "refreshPrinter" => C::RefreshPrinter,
            "discover" => C::Discover,
            "editSettings" => C::EditSettings,
            "disable" => C::Disable,
            "enable" => C::Enable,
            "delete" => C::Delete,
            "reboot" => C::Reboot,
            "panelMessage" => typed!(C::PanelMessage),
            "clearPanelMessage" => C::ClearPanelMessage,
            "complianceCheck" => typed!(C::ComplianceCheck),
            "complianceEnforce" => typed!(C::ComplianceEnforce),
            "mibWalk" => C::MibWalk,
            "updateCredentials" => typed!(C::UpdateCredentials),
            "unenroll" => C::Unenroll,
            "requestLogs" => C::RequestLogs,
            "updateLibrary" => typed!(C::UpdateLibrary),
            "deployFile" => typed!(C::DeployFile),
            "printerLogs" => typed!(C::PrinterLogs),
            "firmwareUpdate" => typed!(C::FirmwareUpdate),
            "deployConfiguration" => typed!(C::DeployConfiguration),
            "updateAgent" => typed!(C::UpdateAgent),
            _ => C::Unknown {
                type_name: type_name.to_string(),
                params: params_value,
            },
        }
    }

    /// The job type, as on the wire.
    pub fn type_name(&self) -> &str {
        use Command as C;
        match self {
            C::Refresh => "refresh",
            C::RefreshPrinter => "refreshPrinter",
            C::Discover => "discover",
            C::EditSettings => "editSettings",
            C::Disable => "disable",
            C::Enable => "enable",
            C::Delete => "delete",
            C::Reboot => "reboot",
            C::PanelMessage(_) => "panelMessage",
            C::ClearPanelMessage => "clearPanelMessage",
            C::ComplianceCheck(_) => "complianceCheck",
            C::ComplianceEnforce(_) => "complianceEnforce",
            C::MibWalk => "mibWalk",
            C::UpdateCredentials(_) => "updateCredentials",
            C::Unenroll => "unenroll",
            C::RequestLogs => "requestLogs",
            C::UpdateLibrary(_) => "updateLibrary",
            C::DeployFile(_) => "deployFile",
            C::PrinterLogs(_) => "printerLogs",
            C::FirmwareUpdate(_) => "firmwareUpdate",
            C::DeployConfiguration(_) => "deployConfiguration",
            C::UpdateAgent(_) => "updateAgent",
            C::Unknown { type_name, .. } | C::Invalid { type_name, .. } => type_name,
        }
    }

    /// The parameters as on the wire (secrets included: only for the wire).
    pub fn params(&self) -> Value {
        use Command as C;
        let v = |x: &dyn erased::ToValue| x.to_value();
        match self {
            C::PanelMessage(p) => v(p),
            C::ComplianceCheck(p) | C::ComplianceEnforce(p) => v(p),
            C::UpdateCredentials(p) => v(p),
            C::UpdateLibrary(p) => v(p),
            C::DeployFile(p) => v(p),
            C::PrinterLogs(p) => v(p),
            C::FirmwareUpdate(p) => v(p),
            C::DeployConfiguration(p) => v(p),
            C::UpdateAgent(p) => v(p),
            C::Unknown { params, .. } | C::Invalid { params, .. } => params.clone(),
            _ => Value::Object(Map::new()),
        }
    }

    /// Whether its parameters may hold secrets ([`SECRET_TYPES`]).
    pub fn holds_secrets(&self) -> bool {
        SECRET_TYPES.contains(&self.type_name())
    }

    /// Whether it works on printers (refused while the agent is disabled).
    pub fn is_printer_work(&self) -> bool {
        !matches!(
            self,
            Command::Disable
                | Command::Enable
                | Command::Delete
                | Command::EditSettings
                | Command::RequestLogs
                | Command::UpdateLibrary(_)
                | Command::UpdateAgent(_)
                | Command::Unknown { .. }
                | Command::Invalid { .. }
        )
    }

    /// The parameters for people to read: every secret value replaced by `"<set>"`.
    pub fn redacted_params(&self) -> Value {
        let mut p = self.params();
        if self.holds_secrets() || matches!(self, Command::Unknown { .. }) {
            redact(&mut p);
        }
        p
    }
}

/// Serializing a params struct to a `Value` without naming its type at each arm.
mod erased {
    use serde_json::Value;

    pub trait ToValue {
        fn to_value(&self) -> Value;
    }

    impl<T: serde::Serialize> ToValue for T {
        fn to_value(&self) -> Value {
            // Params structs hold strings, numbers and maps only: this cannot fail.
            serde_json::to_value(self).unwrap_or(Value::Null)
        }
    }
}

/// Replaces secret values (communities, pass phrases, passwords, tokens) in an opaque
/// document with `"<set>"`: people see that they were given, never what they are.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let k = k.to_ascii_lowercase();
                if ["community", "pass", "password", "secret", "token"]
                    .iter()
                    .any(|s| k.contains(s))
                    && !x.is_null()
                {
                    *x = Value::String("<set>".into());
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", self.type_name())?;
        m.serialize_entry("params", &self.params())?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "type")]
            type_name: String,
            #[serde(default)]
            params: Value,
        }
        let raw = Raw::deserialize(d)?;
        Ok(Command::from_parts(&raw.type_name, raw.params))
    }
}

/// `{ "jobs": [...] }`, the long-poll's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    /// Pending jobs, oldest first.
    pub jobs: Vec<Job>,
}

/// The seed's result statuses (for the job and for each printer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Done.
    Completed,
    /// Not done, with the reason in the messages.
    Failed,
    /// The printer did not answer.
    PrinterNotCommunicating,
    /// The printer cannot do it (refused the write, no transport for its vendor).
    NotSupported,
    /// This agent version does not implement the job type.
    AgentNotSupported,
}

/// A message's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// For information.
    Info,
    /// Something to look at.
    Warning,
    /// Why it failed.
    Error,
}

/// One line of a result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// How serious.
    pub level: Level,
    /// What happened.
    pub text: String,
}

impl Message {
    /// An info line.
    pub fn info(text: impl Into<String>) -> Message {
        Message {
            level: Level::Info,
            text: text.into(),
        }
    }

    /// A warning line.
    pub fn warning(text: impl Into<String>) -> Message {
        Message {
            level: Level::Warning,
            text: text.into(),
        }
    }

    /// An error line.
    pub fn error(text: impl Into<String>) -> Message {
        Message {
            level: Level::Error,
            text: text.into(),
        }
    }
}

/// One printer's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterOutcome {
    /// `ip:port`.
    pub address: String,
    /// Its serial number, when known.
    pub serial_number: Option<String>,
    /// Its status.
    pub status: Status,
    /// Why, when it did not complete.
    pub message: Option<String>,
}

/// A file the job uploaded (`POST …/files/{name}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Its name.
    pub name: String,
    /// Its size.
    pub bytes: u64,
}

/// One setting that differs (compliance jobs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// `sysName`, `sysLocation`, `sysContact`.
    pub setting: String,
    /// What the job asked for.
    pub expected: String,
    /// What the printer holds (`null` when it did not answer for it).
    pub found: Option<String>,
}

/// A job's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// `completed` completes the job, anything else fails it.
    pub status: Status,
    /// When it finished, epoch ms.
    pub finished_at: i64,
    /// What happened, in order.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Per printer, for jobs on printers.
    #[serde(default)]
    pub printers: Vec<PrinterOutcome>,
    /// Files uploaded for the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRef>,
    /// Compliance jobs: whether the printer complies (after enforcing, for enforce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliant: Option<bool>,
    /// Compliance jobs: the settings that differ(ed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differences: Option<Vec<Difference>>,
}

impl JobResult {
    /// A result with this status and messages, finished at `finished_at`.
    pub fn new(status: Status, messages: Vec<Message>, finished_at: i64) -> JobResult {
        JobResult {
            status,
            finished_at,
            messages,
            printers: Vec::new(),
            files: Vec::new(),
            compliant: None,
            differences: None,
        }
    }

    /// A failure with one error message.
    pub fn failed(text: impl Into<String>, finished_at: i64) -> JobResult {
        JobResult::new(Status::Failed, vec![Message::error(text)], finished_at)
    }

    /// The first message's text, or "".
    pub fn first_text(&self) -> &str {
        self.messages.first().map_or("", |m| m.text.as_str())
    }
}

/// `POST …/progress` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    /// Units in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// For people.
    #[serde(default)]
    pub text: String,
}

/// A job's state in the cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobState {
    /// Queued, not acknowledged.
    Pending,
    /// Acknowledged by the agent.
    InProgress,
    /// Result `completed`.
    Completed,
    /// Any other result.
    Failed,
    /// Stopped while pending.
    Stopped,
    /// Not acknowledged within a week or its window, or not finished within 24 h.
    Expired,
}

impl JobState {
    /// As stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::InProgress => "inProgress",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Stopped => "stopped",
            JobState::Expired => "expired",
        }
    }

    /// From its stored name.
    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Pending,
            JobState::InProgress,
            JobState::Completed,
            JobState::Failed,
            JobState::Stopped,
            JobState::Expired,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to `ack` and `progress`: the job's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateAnswer {
    /// Its state now.
    pub state: JobState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(v: Value) -> Job {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn known_types_read_their_params_and_write_them_back() {
        let v = json!({ "jobId": "job-1", "type": "panelMessage", "printer": { "serialNumber": "X1" },
            "params": { "message": "tonerOrdered" }, "createdAt": 5, "notAfter": null });
        let j = job(v.clone());
        assert_eq!(
            j.command,
            Command::PanelMessage(PanelParams {
                message: PanelMessage::TonerOrdered
            })
        );
        assert_eq!(serde_json::to_value(&j).unwrap(), v);
        let j = job(json!({ "jobId": "j", "type": "refresh" }));
        assert_eq!(j.command, Command::Refresh);
        assert_eq!(j.command.params(), json!({}));
    }

    #[test]
    fn unknown_types_and_bad_params_are_kept_with_the_reason() {
        let j = job(json!({ "jobId": "j", "type": "frobnicate", "params": { "x": 1 } }));
        assert_eq!(
            j.command,
            Command::Unknown {
                type_name: "frobnicate".into(),
                params: json!({ "x": 1 })
            }
        );
        assert_eq!(
            serde_json::to_value(&j).unwrap()["params"],
            json!({ "x": 1 })
        );
        let j =
            job(json!({ "jobId": "j", "type": "panelMessage", "params": { "message": "hello" } }));
        let Command::Invalid { error, .. } = &j.command else {
            panic!("{j:?}")
        };
        assert!(error.starts_with("params.message: "), "{error}");
        assert!(
            error.contains("tonerShipped"),
            "names the valid ones: {error}"
        );
        let j = job(
            json!({ "jobId": "j", "type": "deployConfiguration", "params": { "items": [ { "file": "a.zip" }, {} ] } }),
        );
        let Command::Invalid { error, .. } = &j.command else {
            panic!("{j:?}")
        };
        assert_eq!(error, "params.items[1].file: missing");
        // A list with one bad job still reads whole.
        let l: JobList = serde_json::from_value(json!({ "jobs": [
            { "jobId": "a", "type": "updateLibrary", "params": {} },
            { "jobId": "b", "type": "refresh" } ] }))
        .unwrap();
        assert!(matches!(l.jobs[0].command, Command::Invalid { .. }));
        assert_eq!(l.jobs[1].command, Command::Refresh);
    }

    #[test]
    fn secrets_travel_but_are_redacted_for_people() {
        let j = job(
            json!({ "jobId": "j", "type": "updateCredentials", "params": {
            "auth": { "type": "v2c", "community": "s3cret" },
            "web": { "user": "admin", "password": "hunter2" } } }),
        );
        assert!(j.command.holds_secrets());
        let d = format!("{j:?}");
        assert!(!d.contains("s3cret") && !d.contains("hunter2"), "{d}");
        let wire = serde_json::to_string(&j).unwrap();
        assert!(
            wire.contains("s3cret") && wire.contains("hunter2"),
            "{wire}"
        );
        let shown = j.command.redacted_params();
        assert_eq!(shown["auth"]["community"], "<set>");
        assert_eq!(shown["web"]["password"], "<set>");
        assert_eq!(shown["web"]["user"], "admin");
    }

    #[test]
    fn results_round_trip() {
        let v = json!({ "status": "completed", "finishedAt": 1790000004000_i64,
            "messages": [ { "level": "info", "text": "2 of 2 printers refreshed" } ],
            "printers": [ { "address": "192.0.2.10:161", "serialNumber": "X1", "status": "completed", "message": null } ] });
        let r: JobResult = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.status, Status::Completed);
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
        assert!(
            serde_json::from_value::<JobResult>(json!({ "status": "done", "finishedAt": 1 }))
                .is_err()
        );
    }
}
