//! The `jobs` component: jobs from the cloud (docs/protocol.md, Jobs), fetched by
//! long-poll, recorded in the store before they run (a restart never runs one twice and
//! never loses a result), acknowledged, executed a few at a time, and answered with the
//! seed's result statuses — including an honest `agentNotSupported` for job types this
//! agent does not implement.
//!
//! # Modules
//! - [`runner`]: the long-poll loop, recording, acknowledging, recovery after a restart,
//!   results delivered until the cloud has them.
//! - `results`: building a job's [`JobResult`].
//! - `agent`: jobs on the agent itself (refresh, discover, settings, disable/enable,
//!   delete, logs, support library).
//! - `agent_update`: `updateAgent` (the signed self-update's staging).
//! - [`printer`]: commands on one printer (reboot, panel, credentials, compliance, MIB
//!   walk, logs, file and firmware deployment).
//! - `printer_web`: the printers' web servers (HTTP(S) with pinned certificates).

mod agent;
mod agent_update;
pub mod printer;
mod printer_web;
mod results;
pub mod runner;

pub use agent::load_library;
pub use printer::{PANEL_MESSAGES, state_moves, stored_security};
pub use runner::run;

use crate::clock::Clock;
use crate::cloud::Connection;
use crate::discovery::DiscoverRequest;
use crate::poller::scheduler::PollerHandle;
use crate::store::Store;
use fleet_protocol::jobs::{Command, Job, JobResult, Message, Status};
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};

/// What the jobs need from the rest of the agent.
#[derive(Clone)]
pub struct Context {
    /// The cloud the jobs come from and answer to.
    pub cloud: Connection,
    /// The agent's clock.
    pub clock: Clock,
    /// The store (job records, printers).
    pub store: Store,
    /// The support library in use (`updateLibrary` replaces it).
    pub library: crate::printer::library::Handle,
    /// The agent's log, for `requestLogs`.
    pub logs: crate::telemetry::Logs,
    /// Told when a result was stored outside a job's own task (an update confirmed).
    pub results_waiting: Arc<Notify>,
    /// Asks the supervisor to stop and start again (an update staged).
    pub restart: crate::update::Restart,
    /// The poller, for refreshes.
    pub poller: PollerHandle,
    /// The discovery loop, when discovery has something to search.
    pub discover: Option<mpsc::Sender<DiscoverRequest>>,
    /// Settings pull, for `editSettings`.
    pub settings: Option<crate::cloud::heartbeat::SettingsLink>,
    /// SNMP, for printer commands (the poller's targets give the credentials).
    pub snmp: crate::poller::Snmp,
    /// The cloud disabled the agent: printer work is refused.
    pub disabled: bool,
    /// One task at a time per printer, shared with the poller (its polls wait for a
    /// command).
    pub printer_locks: crate::poller::PrinterLocks,
    /// Keys whose signature makes a printer support library installable.
    pub library_keys: Vec<String>,
    /// Discovery progress, reported on `discover` jobs.
    pub progress: Option<tokio::sync::watch::Receiver<crate::discovery::Progress>>,
    /// Keys whose signature makes an agent update installable.
    pub update_keys: Vec<String>,
    /// The state directory (agent updates are staged there).
    pub state_dir: std::path::PathBuf,
}

/// How a job ended, and what the agent does once its result is stored.
#[derive(Debug)]
pub enum Outcome {
    /// Finished: deliver the result, then do `After`.
    Done(JobResult, After),
    /// An agent update is staged: the job stays in progress (this text is its progress)
    /// and the agent restarts into the new version, which reports the outcome.
    Handover(String),
}

/// What follows a delivered result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Nothing.
    Nothing,
    /// Restart the components with the configuration in force (new settings, disabled
    /// or enabled).
    Restart,
}

impl From<JobResult> for Outcome {
    fn from(r: JobResult) -> Outcome {
        Outcome::Done(r, After::Nothing)
    }
}

/// Runs one job and returns how it ended.
pub async fn execute(ctx: &Context, job: &Job) -> Outcome {
    use Command as C;
    if ctx.disabled && job.command.is_printer_work() {
        return results::failed("the agent is disabled; enable it first").into();
    }
    match &job.command {
        C::Disable => agent::set_disabled(ctx, true).await,
        C::Enable => agent::set_disabled(ctx, false).await,
        C::Delete => results::done(
            Status::Completed,
            vec![Message::info(
                "the agent deactivates itself and wipes its credentials and data",
            )],
        )
        .into(),
        C::Refresh => agent::refresh(ctx, None).await.into(),
        C::RefreshPrinter => match job.printer.as_ref() {
            Some(p) => match agent::find_printer(ctx, p).await {
                Some(addr) => agent::refresh(ctx, Some(addr)).await.into(),
                None => results::failed(format!("printer {p} is not managed by this agent")).into(),
            },
            None => results::failed("printer: missing (serialNumber or address)").into(),
        },
        C::Discover => agent::discover(ctx, &job.job_id).await.into(),
        C::EditSettings => agent::edit_settings(ctx).await,
        C::Reboot => printer::commands::reboot(ctx, job).await.into(),
        C::PanelMessage(p) => printer::commands::panel(ctx, job, Some(p.message))
            .await
            .into(),
        C::ClearPanelMessage => printer::commands::panel(ctx, job, None).await.into(),
        C::Unenroll => printer::commands::unenroll(ctx, job).await.into(),
        C::UpdateCredentials(p) => printer::credentials::update(ctx, job, p).await.into(),
        C::ComplianceCheck(p) => printer::compliance::run(ctx, job, p, false).await.into(),
        C::ComplianceEnforce(p) => printer::compliance::run(ctx, job, p, true).await.into(),
        C::MibWalk => printer::logs::mib_walk(ctx, job).await.into(),
        C::PrinterLogs(p) => printer::logs::printer_logs(ctx, job, p).await.into(),
        C::RequestLogs => agent::logs(ctx, &job.job_id).await.into(),
        C::UpdateLibrary(p) => agent::update_library(ctx, p).await.into(),
        C::DeployFile(p) => printer::deploy::deploy_file(ctx, job, p).await.into(),
        C::FirmwareUpdate(p) => printer::deploy::firmware_update(ctx, job, p).await.into(),
        C::DeployConfiguration(p) => printer::deploy::deploy_configuration(ctx, job, p)
            .await
            .into(),
        C::UpdateAgent(p) => agent_update::update_agent(ctx, &job.job_id, p).await,
        C::Invalid { error, .. } => results::failed(error.clone()).into(),
        C::Unknown { type_name, .. } => results::done(
            Status::AgentNotSupported,
            vec![Message::error(format!(
                "this agent (version {}) does not implement the job type {type_name:?}",
                env!("CARGO_PKG_VERSION")
            ))],
        )
        .into(),
    }
}

/// Runs a store operation on the blocking pool; a failure is logged and gives `None`.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "Jobs: store unavailable.");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "Jobs: store task failed.");
            None
        }
    }
}
