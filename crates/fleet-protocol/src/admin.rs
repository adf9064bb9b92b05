//! The reference cloud's administration API (docs/protocol.md, Administration): what an
//! integrator or a test uses to create agents, set their settings, queue jobs and read
//! the assembled printers. Every call needs the admin bearer token.

use crate::heartbeat::{Communication, Heartbeat, PrinterStatus};
use crate::jobs::{Command, JobResult, JobState, PrinterRef, Progress};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `POST /admin/v1/agents`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewAgent {
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its first settings document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Map<String, Value>>,
}

/// `201` answer: the agent instance and its activation code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedAgent {
    /// The new instance.
    pub agent_id: String,
    /// `XXXX-XXXX-XXXX`, valid 72 h, once.
    pub activation_code: String,
    /// When the code expires, epoch ms.
    pub expires_at: i64,
}

/// `PUT /admin/v1/agents/{agentId}/settings` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsSaved {
    /// The document's entity tag.
    pub etag: String,
}

/// `POST /admin/v1/agents/{agentId}/jobs`: a job, or with `everySecs` or `recurrence` a
/// schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewJob {
    /// `type` and `params` (any type: the agent answers the ones it does not know).
    #[serde(flatten)]
    pub command: Command,
    /// The printer of a printer command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer: Option<PrinterRef>,
    /// The end of its window, epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// A recurring job: one per period (at least 60 s; no files, no `notAfter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u64>,
    /// A recurring job on the calendar (the seed's once / daily / weekly / monthly at a
    /// time of day in a time zone); not with `everySecs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
    /// Files the agent downloads while the job runs: name → base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

impl NewJob {
    /// A job with this command and nothing else.
    pub fn new(command: Command) -> NewJob {
        NewJob {
            command,
            printer: None,
            not_after: None,
            every_secs: None,
            recurrence: None,
            files: BTreeMap::new(),
        }
    }
}

/// A job as the administration sees it (secrets in its parameters redacted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// The job.
    pub job_id: String,
    /// Its agent.
    pub agent_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its parameters, secrets shown as `"<set>"`.
    pub params: Value,
    /// Its printer.
    pub printer: Option<PrinterRef>,
    /// Creation, epoch ms.
    pub created_at: i64,
    /// Window end, epoch ms.
    pub not_after: Option<i64>,
    /// Where it is.
    pub state: JobState,
    /// When the agent acknowledged it.
    pub acknowledged_at: Option<i64>,
    /// When it finished, stopped or expired.
    pub finished_at: Option<i64>,
    /// The latest progress report.
    pub progress: Option<Progress>,
    /// The agent's result.
    pub result: Option<JobResult>,
    /// How many printers ended each way (from the result's `printers`; none before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer_counts: Option<PrinterCounts>,
}

/// Per-job counts of the printers' outcomes (the seed's job details: printers concerned,
/// and how each ended).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterCounts {
    /// Printers in the result.
    pub total: u32,
    /// Done.
    pub completed: u32,
    /// Not done.
    pub failed: u32,
    /// Did not answer.
    pub printer_not_communicating: u32,
    /// Cannot do it.
    pub not_supported: u32,
    /// The agent does not implement it.
    pub agent_not_supported: u32,
}

impl PrinterCounts {
    /// Counts a result's printers.
    pub fn of(result: &JobResult) -> PrinterCounts {
        use crate::jobs::Status;
        let mut c = PrinterCounts::default();
        for p in &result.printers {
            c.total = c.total.saturating_add(1);
            let n = match p.status {
                Status::Completed => &mut c.completed,
                Status::Failed => &mut c.failed,
                Status::PrinterNotCommunicating => &mut c.printer_not_communicating,
                Status::NotSupported => &mut c.not_supported,
                Status::AgentNotSupported => &mut c.agent_not_supported,
            };
            *n = n.saturating_add(1);
        }
        c
    }
}

/// `GET /admin/v1/jobs` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Jobs {
    /// Oldest first.
    pub jobs: Vec<JobView>,
}

/// When a recurring job runs, on the calendar of a time zone (the seed's recurring
/// tasks: start and end dates, a time of day, a time zone, once / daily / weekly /
/// monthly). A time of day that a daylight-saving change skips runs at the same offset
/// after the change (02:30 on a spring-forward night runs at 03:30); one that occurs twice
/// runs at the first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recurrence {
    /// How it repeats (`"repeat": "once" | "daily" | "weekly" | "monthly"`).
    #[serde(flatten)]
    pub repeat: Repeat,
    /// The first day, `YYYY-MM-DD` in `timeZone`.
    pub start_date: String,
    /// The last day it may run (inclusive), `YYYY-MM-DD`; none: for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// Time of day, `HH:MM` (24-hour) in `timeZone`.
    pub time: String,
    /// IANA time zone, e.g. `Europe/Paris` or `UTC`.
    pub time_zone: String,
}

/// How a recurring job repeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "repeat", rename_all = "camelCase")]
pub enum Repeat {
    /// Once, on the start date.
    Once,
    /// Every day.
    Daily,
    /// On these days of each week (at least one).
    Weekly {
        /// `["mon", "thu"]`.
        days: Vec<Weekday>,
    },
    /// Once a month.
    Monthly {
        /// `{"day": 15}` or `{"weekday": {"week": 2, "day": "tue"}}`.
        on: MonthDay,
    },
}

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// Which day of a month.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MonthDay {
    /// This date (1..=31); a month without it runs on its last day.
    Day(u8),
    /// The `week`-th `day` of the month: 1..=4, or -1 for the last.
    Weekday {
        /// 1..=4, or -1 for the last.
        week: i8,
        /// The day of the week.
        day: Weekday,
    },
}

/// `201` answer to a recurring job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedSchedule {
    /// The schedule.
    pub schedule_id: String,
    /// Its period (`everySecs` schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u64>,
    /// Its calendar (`recurrence` schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
    /// The job queued at once (`everySecs` schedules).
    pub first_job_id: Option<String>,
    /// When the next one is queued, epoch ms.
    pub next_at: i64,
}

/// One recurring job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    /// The schedule.
    pub schedule_id: String,
    /// Its agent.
    pub agent_id: String,
    /// The job type it queues.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its period (`everySecs` schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u64>,
    /// Its calendar (`recurrence` schedules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
    /// When the next one is queued, epoch ms.
    pub next_at: i64,
    /// When it last queued a job, epoch ms.
    pub last_at: Option<i64>,
}

/// `GET /admin/v1/schedules` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedules {
    /// Every schedule.
    pub schedules: Vec<ScheduleView>,
}

/// One agent instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// The instance.
    pub agent_id: String,
    /// Its name.
    pub name: String,
    /// Whether its code was used.
    pub activated: bool,
    /// Its last heartbeat, epoch ms.
    pub last_heartbeat_at: Option<i64>,
    /// That heartbeat (without its printer statuses: see `printers`).
    pub last_heartbeat: Option<Heartbeat>,
    /// Whether it sent a heartbeat within three periods.
    #[serde(default)]
    pub communicating: bool,
    /// Each printer's communication status as the agent last reported it.
    #[serde(default)]
    pub printers: Vec<PrinterStatus>,
}

/// `GET /admin/v1/agents` answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agents {
    /// Every instance.
    pub agents: Vec<AgentView>,
}

/// One printer in the seed API's shape (DATA-MODEL.md §1.4); agent-only keys
/// (`supplyKey`, `alertKey`, `ext`) are left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Asset {
    /// Maker.
    pub manufacturer: Option<String>,
    /// Model.
    pub model_name: Option<String>,
    /// Serial number (the asset's key).
    pub serial_number: String,
    /// The agent that reports it.
    pub account_id: String,
    /// A name set in the cloud.
    pub name: Option<String>,
    /// A description set in the cloud.
    pub description: Option<String>,
    /// First seen, epoch ms.
    pub date_created: i64,
    /// Last changed, epoch ms.
    pub date_modified: i64,
    /// Last report, epoch ms.
    pub last_communication: i64,
    /// When the last report was read, epoch ms.
    pub last_data_refresh: i64,
    /// Whether it communicates.
    pub communicating: bool,
    /// Whether the agent holds working credentials for it (false: the printer refuses
    /// them); unknown until the agent reports the printer's status.
    pub authenticated: Option<bool>,
    /// The printer's communication status as its agent last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communication: Option<Communication>,
    /// Why, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communication_reason: Option<String>,
    /// How the agent must ask the printer's SNMP agent, when it needs anything unusual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quirks: Option<String>,
    /// Firmware change date.
    pub base_firmware_last_modified_date: Option<i64>,
    /// Page counters.
    pub counters: Value,
    /// Every usage counter the agent read (not in the seed's API: an extension),
    /// ordered by OID.
    #[serde(default)]
    pub meters: Vec<crate::meters::Meter>,
    /// Diagnostic events.
    pub diagnostic_events: Vec<Value>,
    /// Supplies.
    pub supplies: Vec<Value>,
    /// Current alerts.
    pub alerts: Vec<Value>,
}

/// `GET /v1.0/assets` answer: one page (the seed API's paging fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetsPage {
    /// The assets.
    pub content: Vec<Asset>,
    /// All assets.
    pub total_elements: u64,
    /// Pages.
    pub total_pages: u64,
    /// Assets on this page.
    pub number_of_elements: u64,
    /// Page size.
    pub size: u64,
    /// Page number, from 0.
    pub number: u64,
    /// First page.
    pub first: bool,
    /// Last page.
    pub last: bool,
    /// No assets.
    pub empty: bool,
}

impl AssetsPage {
    /// All assets on one page.
    pub fn one(content: Vec<Asset>) -> AssetsPage {
        let n = content.len() as u64;
        AssetsPage {
            content,
            total_elements: n,
            total_pages: 1,
            number_of_elements: n,
            size: 200,
            number: 0,
            first: true,
            last: true,
            empty: n == 0,
        }
    }
}
