//! The `jobs` component: jobs from the cloud (docs/protocol.md, Jobs), fetched by
//! long-poll, recorded in the store before they run (a restart never runs one twice and
//! never loses a result), acknowledged, executed a few at a time, and answered with the
//! seed's result statuses — including an honest `agentNotSupported` for job types this
//! agent does not implement.

use crate::cloud::client::{CloudClient, CloudError, Credentials};
use crate::poller::scheduler::PollerHandle;
use crate::store::Store;
use crate::store::jobs::JobState;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Duration;

mod printer;
mod printer_web;
pub use printer::{PANEL_MESSAGES, stored_security};

/// Job types whose `params` hold secrets: they are stored sealed, apart from the job.
const SECRET_PARAMS: &[&str] = &["updateCredentials"];

fn params_key(job_id: &str) -> String {
    format!("job.{job_id}.params")
}

/// Store setting present while the cloud has disabled the agent (printers are not polled
/// nor discovered; the cloud link, heartbeat and jobs stay so it can be enabled again).
pub const DISABLED: &str = "agent.disabled";

/// Long-poll length asked of the cloud.
pub const WAIT: Duration = Duration::from_secs(25);
/// Jobs running at once, at most.
pub const MAX_RUNNING: usize = 4;

/// What a discovery run found, for the job that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiscoverySummary {
    /// Addresses probed.
    pub addresses: usize,
    /// Devices found.
    pub found: usize,
    /// Printers newly handed to the poller.
    pub added: usize,
}

/// A "discover now" request: the reply comes when the run finished.
pub type DiscoverRequest = oneshot::Sender<DiscoverySummary>;

/// What the jobs need from the rest of the agent.
#[derive(Clone)]
pub struct Context {
    /// The store (job records, printers).
    pub store: Store,
    /// The poller, for refreshes.
    pub poller: PollerHandle,
    /// The discovery loop, when discovery has something to search.
    pub discover: Option<mpsc::Sender<DiscoverRequest>>,
    /// Settings pull, for `editSettings`.
    pub settings: Option<crate::cloud::heartbeat::SettingsLink>,
    /// SNMP, for printer commands (the poller's targets give the credentials).
    pub snmp: fleet_snmp::UdpClient,
    /// The cloud disabled the agent: printer work is refused.
    pub disabled: bool,
    /// One command at a time per printer.
    pub printer_locks: printer::PrinterLocks,
    /// Keys whose signature makes a printer support library installable.
    pub library_keys: Vec<String>,
    /// Discovery progress, reported on `discover` jobs.
    pub progress: Option<tokio::sync::watch::Receiver<crate::discovery::Progress>>,
    /// Keys whose signature makes an agent update installable.
    pub update_keys: Vec<String>,
    /// The state directory (agent updates are staged there).
    pub state_dir: std::path::PathBuf,
}

/// Internal status of an `updateAgent` job whose version is staged: the job stays
/// running and the agent restarts into the new version, which reports the outcome.
const HANDOVER: &str = "handover";

/// `updateAgent`: params `{"package": {manifest, signature, keyId}, "file": NAME,
/// "healthSecs": N}` with the binary attached to the job as NAME.
async fn update_agent(
    ctx: &Context,
    client: &CloudClient,
    creds: &Credentials,
    job: &Value,
) -> Value {
    use crate::update::{self, UpdateError};
    let refused = |e: UpdateError| {
        tracing::warn!(error = %e, "Agent update refused.");
        failed(format!(
            "update refused, version {} stays in use: {e}",
            env!("CARGO_PKG_VERSION")
        ))
    };
    if !cfg!(unix) {
        return result(
            "agentNotSupported",
            vec![msg(
                "error",
                "this agent updates itself on Linux and other Unix hosts only; on Windows install the new MSI",
            )],
            vec![],
        );
    }
    let params = job.get("params").cloned().unwrap_or(Value::Null);
    let package = match params
        .get("package")
        .cloned()
        .ok_or_else(|| UpdateError::Params("params.package: missing".into()))
        .and_then(|p| {
            serde_json::from_value::<update::Package>(p)
                .map_err(|e| UpdateError::Params(format!("params.package: {e}")))
        }) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let manifest = match update::verify(&package, &ctx.update_keys) {
        Ok(m) => m,
        Err(e) => return refused(e),
    };
    let running = env!("CARGO_PKG_VERSION");
    if !update::newer(&manifest.version, running) {
        return refused(UpdateError::NotNewer {
            offered: manifest.version,
            running: running.into(),
        });
    }
    let health_secs = match params.get("healthSecs") {
        None => update::DEFAULT_HEALTH_SECS,
        Some(v) => match v.as_u64().filter(|n| update::HEALTH_SECS.contains(n)) {
            Some(n) => n,
            None => {
                return refused(UpdateError::Params(format!(
                    "params.healthSecs: {v} is not between {} and {}",
                    update::HEALTH_SECS.start(),
                    update::HEALTH_SECS.end()
                )));
            }
        },
    };
    let Some(file) = params.get("file").and_then(Value::as_str) else {
        return refused(UpdateError::Params(
            "params.file: missing (the name of the binary attached to the job)".into(),
        ));
    };
    if !valid_id(file) {
        return refused(UpdateError::Params(format!(
            "params.file: {file:?} is not a file name (letters, digits, '.', '-', '_')"
        )));
    }
    if let Some(id) = update::pending_job(&ctx.state_dir) {
        return refused(UpdateError::Params(format!(
            "another update (job {id}) is still on trial"
        )));
    }
    let id = job.get("jobId").and_then(Value::as_str).unwrap_or("");
    let bytes = match client.job_input(creds, id, file, manifest.size).await {
        Ok(b) => b,
        Err(e) => return refused(UpdateError::File(format!("{file}: {e}"))),
    };
    if let Err(e) = update::check_file(&manifest, &bytes) {
        return refused(e);
    }
    let (dir, m, id_) = (ctx.state_dir.clone(), manifest.clone(), id.to_string());
    match tokio::task::spawn_blocking(move || {
        update::stage(&dir, package, &m, &bytes, &id_, health_secs)
    })
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return refused(e),
        Err(e) => return refused(UpdateError::Io(e.to_string())),
    }
    tracing::info!(version = %manifest.version, health_secs, "Agent update staged; restarting into it.");
    result(
        HANDOVER,
        vec![msg(
            "info",
            format!(
                "version {} verified and staged; restarting into it (healthy within {health_secs} s or rolled back)",
                manifest.version
            ),
        )],
        vec![],
    )
}

/// Setting holding the installed support library's signed package (JSON).
pub const LIBRARY: &str = "library.package";

/// Installs the stored support library at start (verified again: a package altered in
/// the store is refused like one from the network).
pub fn load_library(store: &Store, trusted: &[String]) {
    let Ok(Some(text)) = store.setting(LIBRARY) else {
        return;
    };
    match serde_json::from_str::<crate::printer::library::Package>(&text)
        .map_err(|e| crate::printer::library::LibraryError::Format(e.to_string()))
        .and_then(|p| crate::printer::library::install(&p, trusted))
    {
        Ok(lib) => tracing::info!(version = lib.version, "Printer support library loaded."),
        Err(crate::printer::library::LibraryError::NotNewer { .. }) => {}
        Err(e) => {
            tracing::error!(error = %e, "The stored printer support library is refused; using the built-in one.")
        }
    }
}

/// `updateLibrary`: params `{"package": {library, signature, keyId}}`.
async fn update_library(ctx: &Context, job: &Value) -> Value {
    use crate::printer::library;
    let before = library::current().version;
    let package = job
        .get("params")
        .and_then(|p| p.get("package"))
        .cloned()
        .ok_or_else(|| library::LibraryError::Format("params.package: missing".into()))
        .and_then(|p| {
            serde_json::from_value::<library::Package>(p)
                .map_err(|e| library::LibraryError::Format(format!("params.package: {e}")))
        });
    let outcome = package.and_then(|p| library::install(&p, &ctx.library_keys).map(|l| (p, l)));
    match outcome {
        Ok((p, lib)) => {
            let s = ctx.store.clone();
            let text = serde_json::to_string(&p).unwrap_or_default();
            let saved = tokio::task::spawn_blocking(move || s.set_setting(LIBRARY, &text)).await;
            let mut messages = vec![msg(
                "info",
                format!(
                    "printer support library {} installed (was {before}): {} vendors, {} brands",
                    lib.version,
                    lib.vendors.len(),
                    lib.brands.len()
                ),
            )];
            if !matches!(saved, Ok(Ok(()))) {
                messages.push(msg(
                    "warning",
                    "in use now, but it could not be stored: the previous one returns at the next start",
                ));
            }
            tracing::info!(version = lib.version, "Printer support library installed.");
            result("completed", messages, vec![])
        }
        Err(e) => {
            tracing::warn!(error = %e, "Printer support library refused.");
            failed(format!(
                "library refused, version {before} stays in use: {e}"
            ))
        }
    }
}

/// A job id is used in URL paths: only plain tokens are accepted.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn msg(level: &str, text: impl Into<String>) -> Value {
    json!({ "level": level, "text": text.into() })
}

/// A job that failed as a whole, before or without any printer's outcome: one error.
fn failed(text: impl Into<String>) -> Value {
    result("failed", vec![msg("error", text)], vec![])
}

fn result(status: &str, messages: Vec<Value>, printers: Vec<Value>) -> Value {
    json!({
        "status": status,
        "messages": messages,
        "printers": printers,
        "finishedAt": crate::poller::now_ms(),
    })
}

/// Runs one job and returns its result document.
pub async fn execute(
    ctx: &Context,
    client: &CloudClient,
    creds: &Credentials,
    job: &Value,
) -> Value {
    let kind = job.get("type").and_then(Value::as_str).unwrap_or("");
    let printer_work = [
        "refresh",
        "refreshPrinter",
        "discover",
        "reboot",
        "panelMessage",
        "clearPanelMessage",
        "unenroll",
        "mibWalk",
        "updateCredentials",
        "complianceCheck",
        "complianceEnforce",
        "deployFile",
        "printerLogs",
        "firmwareUpdate",
        "deployConfiguration",
    ];
    if ctx.disabled && printer_work.contains(&kind) {
        return failed("the agent is disabled; enable it first");
    }
    match kind {
        "disable" | "enable" => set_disabled(ctx, kind == "disable").await,
        "delete" => result(
            "completed",
            vec![msg(
                "info",
                "the agent deactivates itself and wipes its credentials and data",
            )],
            vec![],
        ),
        "refresh" => refresh(ctx, None).await,
        "refreshPrinter" => {
            let p = job.get("printer").cloned().unwrap_or(Value::Null);
            match find_printer(ctx, &p).await {
                Some(addr) => refresh(ctx, Some(addr)).await,
                None => failed(format!("printer {p} is not managed by this agent")),
            }
        }
        "discover" => {
            let id = job.get("jobId").and_then(Value::as_str).unwrap_or("");
            discover(ctx, client, creds, id).await
        }
        "editSettings" => edit_settings(ctx, client, creds).await,
        "reboot" => printer::reboot(ctx, job).await,
        "panelMessage" => printer::panel(ctx, job, false).await,
        "clearPanelMessage" => printer::panel(ctx, job, true).await,
        "unenroll" => printer::unenroll(ctx, job).await,
        "updateCredentials" => printer::update_credentials(ctx, job).await,
        "complianceCheck" => printer::compliance(ctx, job, false).await,
        "complianceEnforce" => printer::compliance(ctx, job, true).await,
        "mibWalk" => printer::mib_walk(ctx, client, creds, job).await,
        "requestLogs" => logs(ctx, client, creds, job).await,
        "updateLibrary" => update_library(ctx, job).await,
        "deployFile" => printer::deploy_file(ctx, client, creds, job).await,
        "printerLogs" => printer::printer_logs(ctx, client, creds, job).await,
        "firmwareUpdate" => printer::firmware_update(ctx, client, creds, job).await,
        "deployConfiguration" => printer::deploy_configuration(ctx, client, creds, job).await,
        "updateAgent" => update_agent(ctx, client, creds, job).await,
        other => result(
            "agentNotSupported",
            vec![msg(
                "error",
                format!(
                    "this agent (version {}) does not implement the job type {other:?}",
                    env!("CARGO_PKG_VERSION")
                ),
            )],
            vec![],
        ),
    }
}

async fn find_printer(ctx: &Context, p: &Value) -> Option<std::net::SocketAddr> {
    let serial = p
        .get("serialNumber")
        .and_then(Value::as_str)
        .map(str::to_string);
    let address = p.get("address").and_then(Value::as_str).map(str::to_string);
    let lookup = || async {
        let s = ctx.store.clone();
        let rows = tokio::task::spawn_blocking(move || s.printers())
            .await
            .ok()?
            .ok()?;
        rows.iter()
            .find(|r| {
                serial.is_some() && r.serial == serial
                    || address.as_deref().is_some_and(|a| {
                        r.address == a || r.address.rsplit_once(':').is_some_and(|(ip, _)| ip == a)
                    })
            })
            .and_then(|r| r.address.parse().ok())
    };
    if let Some(found) = lookup().await {
        return Some(found);
    }
    // The cloud may know a printer from an upload the poller has not yet written to the
    // store (its writes are batched): write them, then look again.
    ctx.poller.flush().await;
    lookup().await
}

async fn refresh(ctx: &Context, addr: Option<std::net::SocketAddr>) -> Value {
    let Ok(done) = ctx.poller.refresh(addr).await else {
        return failed("the poller stopped");
    };
    let printers: Vec<Value> = done
        .iter()
        .map(|r| {
            json!({
                "address": r.addr.to_string(),
                "serialNumber": r.serial,
                "status": if r.failure.is_none() { "completed" } else { "printerNotCommunicating" },
                "message": r.failure,
            })
        })
        .collect();
    let failed = done.iter().filter(|r| r.failure.is_some()).count();
    if addr.is_some() {
        let status = if failed == 0 {
            "completed"
        } else {
            "printerNotCommunicating"
        };
        return result(status, vec![], printers);
    }
    let mut messages = vec![msg(
        "info",
        format!(
            "{} of {} printers refreshed",
            done.len() - failed,
            done.len()
        ),
    )];
    if failed > 0 {
        messages.push(msg(
            "warning",
            format!("{failed} printers not communicating"),
        ));
    }
    if done.is_empty() {
        messages = vec![msg("warning", "no printers are managed yet")];
    }
    result("completed", messages, printers)
}

/// Discovery progress goes to the cloud at most this often while a `discover` job waits.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

async fn discover(ctx: &Context, client: &CloudClient, creds: &Credentials, job_id: &str) -> Value {
    let Some(tx) = &ctx.discover else {
        return failed(
            "discovery has nothing to search: set discovery.include, discovery.import or discovery.local_network",
        );
    };
    let (reply, rx) = oneshot::channel();
    if tx.send(reply).await.is_err() {
        return failed("discovery stopped");
    }
    let mut progress = ctx.progress.clone();
    let mut last_sent: Option<tokio::time::Instant> = None;
    tokio::pin!(rx);
    let summary = loop {
        let changed = async {
            match progress.as_mut() {
                Some(p) => p.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut rx => break r,
            alive = changed => {
                let Some(p) = progress.as_mut().filter(|_| alive) else {
                    progress = None;
                    continue;
                };
                let p = p.borrow_and_update().clone();
                if p.total > 0
                    && !p.finished
                    && last_sent.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY)
                {
                    last_sent = Some(tokio::time::Instant::now());
                    let body = json!({
                        "done": p.done,
                        "total": p.total,
                        "text": format!("{} of {} addresses, {} printers found", p.done, p.total, p.found),
                    });
                    // Progress is best effort: a lost report is not retried.
                    client.job_post(creds, job_id, "progress", &body).await.ok();
                }
            }
        }
    };
    match summary {
        Ok(s) => result(
            "completed",
            vec![msg(
                "info",
                format!(
                    "{} addresses searched, {} devices found, {} new printers enrolled",
                    s.addresses, s.found, s.added
                ),
            )],
            vec![],
        ),
        Err(_) => failed("discovery stopped before the run finished"),
    }
}

async fn edit_settings(ctx: &Context, client: &CloudClient, creds: &Credentials) -> Value {
    use crate::cloud::settings::{Outcome, pull};
    let Some(link) = &ctx.settings else {
        return failed("no cloud settings link");
    };
    match pull(client, creds, &ctx.store, &link.key, &link.source).await {
        // Applied once the result is delivered (the restart stops this component).
        Ok(Outcome::Applied(_)) => result(
            "completed",
            vec![msg("info", "new settings applied")],
            vec![],
        ),
        Ok(Outcome::Unchanged) => result(
            "completed",
            vec![msg("info", "the settings in force are already the latest")],
            vec![],
        ),
        Ok(Outcome::Rejected(r)) => failed(r),
        Err(e) => failed(format!("settings not fetched: {e}")),
    }
}

/// `requestLogs`: the agent's recent log lines (secrets never reach the log: they are a
/// type that prints `<redacted>`), its printers' health, recent jobs and outbox figures,
/// gzip-compressed and uploaded as a file of the job.
async fn logs(ctx: &Context, client: &CloudClient, creds: &Credentials, job: &Value) -> Value {
    use std::fmt::Write;
    let mut text = format!(
        "Fleet Agent {} log bundle, {} (epoch ms)\n\n== recent log lines ==\n",
        env!("CARGO_PKG_VERSION"),
        crate::poller::now_ms()
    );
    for l in crate::telemetry::recent_logs() {
        text.push_str(&l);
        text.push('\n');
    }
    let s = ctx.store.clone();
    let snapshot =
        blocking(move || Ok((s.printers()?, s.recent_jobs(50)?, s.outbox_stats()?))).await;
    if let Some((printers, jobs, outbox)) = snapshot {
        text.push_str("\n== printers ==\n");
        for p in printers {
            writeln!(
                text,
                "{} serial={} model={} health={} reason={} last_seen_ms={}",
                p.address,
                p.serial.as_deref().unwrap_or("-"),
                p.model.as_deref().unwrap_or("-"),
                p.health.as_str(),
                p.health_reason.as_deref().unwrap_or("-"),
                p.last_seen_ms.map_or("-".into(), |t| t.to_string())
            )
            .ok();
        }
        text.push_str("\n== recent jobs ==\n");
        for j in jobs {
            writeln!(
                text,
                "{} {} {:?} received_ms={}",
                j.job_id, j.kind, j.state, j.received_ms
            )
            .ok();
        }
        writeln!(text, "\n== outbox ==\n{outbox:?}").ok();
    }
    let body = printer::gzip(&text);
    let size = body.len();
    let id = job.get("jobId").and_then(Value::as_str).unwrap_or("");
    let name = "fleet-agent-logs.txt.gz";
    match client.job_file(creds, id, name, body).await {
        Ok(()) => {
            let mut r = result(
                "completed",
                vec![msg(
                    "info",
                    format!("log bundle uploaded ({} KiB)", size.div_ceil(1024)),
                )],
                vec![],
            );
            r["files"] = json!([{ "name": name, "bytes": size }]);
            r
        }
        Err(e) => failed(format!("the log bundle could not be uploaded: {e}")),
    }
}

/// `disable` / `enable`: recorded in the store (it survives restarts), then the
/// supervisor restarts the components without or with the printer work.
async fn set_disabled(ctx: &Context, disabled: bool) -> Value {
    let s = ctx.store.clone();
    let stored = blocking(move || {
        if disabled {
            s.set_setting(DISABLED, "1")
        } else {
            s.remove_setting(DISABLED)
        }
    })
    .await;
    if stored.is_none() {
        return failed("the store is unavailable");
    }
    // The components restart once the result is delivered (see `start`).
    let text = if disabled {
        "agent disabled: printers are no longer polled or discovered; configuration and data kept"
    } else {
        "agent enabled: polling and discovery resume"
    };
    result("completed", vec![msg("info", text)], vec![])
}

/// Asks the supervisor to restart the components with the configuration in force.
async fn restart(ctx: &Context) {
    if let Some(link) = &ctx.settings {
        let stored = crate::cloud::settings::stored(&ctx.store, &link.key)
            .ok()
            .flatten();
        if let Ok((c, _)) = crate::cloud::settings::effective(&link.source, stored.as_ref()) {
            link.apply.send(Box::new(c)).await.ok();
        }
    }
}

/// After a `delete` job's result reached the cloud: wipe credentials and data, then
/// restart the components (they come back not activated, uploading nothing).
async fn delete_self(ctx: &Context) {
    let s = ctx.store.clone();
    // Idle until activated again (activation clears the flag).
    if blocking(move || {
        s.wipe()?;
        s.set_setting(DISABLED, "deleted")
    })
    .await
    .is_some()
    {
        tracing::warn!(
            "Deleted by the cloud: credentials and data wiped; the agent stays idle until it is activated again."
        );
        restart(ctx).await;
    }
}

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

/// Sends every stored result the cloud does not have yet. Once the result of a `delete`
/// job is delivered, the agent wipes itself.
async fn send_results(ctx: &Context, client: &CloudClient, creds: &Credentials) {
    let store = &ctx.store;
    let s = store.clone();
    let Some(unsent) = blocking(move || s.jobs_unsent()).await else {
        return;
    };
    for j in unsent {
        let body: Value = j
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or(Value::Null);
        match client.job_post(creds, &j.job_id, "result", &body).await {
            // Accepted, or the cloud no longer wants it (stopped, expired, unknown).
            Ok(_) | Err(CloudError::Rejected { .. }) => {
                let (s, id) = (store.clone(), j.job_id.clone());
                blocking(move || s.job_result_sent(&id)).await;
                tracing::info!(job = %j.job_id, kind = %j.kind, "Job result delivered.");
                if j.kind == "delete"
                    && j.result
                        .as_deref()
                        .is_some_and(|r| r.contains("\"completed\""))
                {
                    delete_self(ctx).await;
                    return;
                }
            }
            Err(CloudError::Unauthorized(_)) => {
                client.invalidate_token();
                return;
            }
            Err(e) => {
                tracing::debug!(job = %j.job_id, error = %e, "Job result not delivered; retried later.");
                return;
            }
        }
    }
}

/// Starts a recorded job: acknowledges it, marks it running, and spawns its execution.
async fn start(
    ctx: &Context,
    client: &Arc<CloudClient>,
    creds: &Credentials,
    job_id: String,
    body: Value,
    running: &mut tokio::task::JoinSet<()>,
) {
    match client.job_post(creds, &job_id, "ack", &json!({})).await {
        Ok(_) => {}
        Err(CloudError::Rejected { status, reason }) => {
            // Stopped or expired while it waited: never run, nothing to report.
            tracing::info!(job = %job_id, status, reason = %reason, "Job withdrawn by the cloud; not run.");
            let (s, id) = (ctx.store.clone(), job_id.clone());
            let r = result(
                "failed",
                vec![msg("info", format!("not run: {reason}"))],
                vec![],
            );
            blocking(move || {
                s.job_finish(&id, &r.to_string(), crate::poller::now_ms())?;
                s.job_result_sent(&id)
            })
            .await;
            return;
        }
        Err(e) => {
            if matches!(e, CloudError::Unauthorized(_)) {
                client.invalidate_token();
            }
            tracing::debug!(job = %job_id, error = %e, "Job not acknowledged; retried when delivered again.");
            return;
        }
    }
    let (s, id) = (ctx.store.clone(), job_id.clone());
    if blocking(move || s.job_start(&id)).await.is_none() {
        return;
    }
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    tracing::info!(job = %job_id, kind = %kind, "Job started.");
    let (ctx, client, creds) = (ctx.clone(), client.clone(), creds.clone());
    running.spawn(async move {
        let r = execute(&ctx, &client, &creds, &body).await;
        if r.get("status").and_then(Value::as_str) == Some(HANDOVER) {
            // Still running: the next version (or the rollback) reports the outcome.
            let text = r
                .pointer("/messages/0/text")
                .cloned()
                .unwrap_or(Value::Null);
            client
                .job_post(&creds, &job_id, "progress", &json!({ "text": text }))
                .await
                .ok();
            crate::update::request_restart();
            return;
        }
        let r_text = r.to_string();
        {
            let (s, id) = (ctx.store.clone(), job_id.clone());
            blocking(move || s.remove_setting(&params_key(&id))).await;
        }
        let status = r
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let (s, id) = (ctx.store.clone(), job_id.clone());
        blocking(move || s.job_finish(&id, &r.to_string(), crate::poller::now_ms())).await;
        tracing::info!(job = %job_id, kind = %kind, status = %status, "Job finished.");
        send_results(&ctx, &client, &creds).await;
        // Jobs that change what runs restart the components, last: the restart stops
        // this component too, so the result had to be stored and sent first.
        let changed = match kind.as_str() {
            "disable" | "enable" => status == "completed",
            "editSettings" => r_text.contains("new settings applied"),
            _ => false,
        };
        if changed {
            restart(&ctx).await;
        }
    });
}

/// Handles the jobs one long-poll returned.
async fn receive(
    ctx: &Context,
    client: &Arc<CloudClient>,
    creds: &Credentials,
    jobs: Vec<Value>,
    running: &mut tokio::task::JoinSet<()>,
) {
    for job in jobs {
        let id = job
            .get("jobId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !valid_id(&id) {
            tracing::warn!(job = %id, "Job with an unusable id ignored.");
            continue;
        }
        let kind = job
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // Secret parameters never reach the jobs table in clear.
        let mut stored_body = job.clone();
        let sealed = match (&ctx.settings, SECRET_PARAMS.contains(&kind.as_str())) {
            (Some(link), true) => {
                stored_body["params"] = json!({ "sealed": true });
                let secret = fleet_secret::Secret::new(
                    job.get("params")
                        .cloned()
                        .unwrap_or(Value::Null)
                        .to_string(),
                );
                Some((link.key.clone(), secret))
            }
            _ => None,
        };
        let (s, i, b) = (ctx.store.clone(), id.clone(), stored_body.to_string());
        let Some(existing) = blocking(move || {
            if let Some((key, secret)) = &sealed {
                s.set_secret(key, &params_key(&i), secret)?;
            }
            s.job_accept(&i, &kind, &b, crate::poller::now_ms())
        })
        .await
        else {
            continue;
        };
        match existing.map(|r| r.state) {
            // New, or recorded but never started (the ack was lost): start it.
            None | Some(JobState::Accepted) => {
                while running.len() >= MAX_RUNNING {
                    running.join_next().await;
                }
                start(ctx, client, creds, id, job, running).await;
            }
            // Running or done here already: never a second time.
            Some(_) => tracing::debug!(job = %id, "Job delivered again; already handled."),
        }
    }
}

/// Reports jobs a restart interrupted (they are not run again: a half-done action
/// repeated could do harm) and starts the ones recorded but never started.
async fn recover(
    ctx: &Context,
    client: &Arc<CloudClient>,
    creds: &Credentials,
    running: &mut tokio::task::JoinSet<()>,
) {
    let s = ctx.store.clone();
    let Some(interrupted) = blocking(move || s.jobs_in(JobState::Running)).await else {
        return;
    };
    let pending = {
        let dir = ctx.state_dir.clone();
        tokio::task::spawn_blocking(move || crate::update::pending_job(&dir))
            .await
            .ok()
            .flatten()
    };
    for j in interrupted {
        if pending.as_deref() == Some(j.job_id.as_str()) {
            // An update on trial: the health check reports it.
            continue;
        }
        tracing::warn!(job = %j.job_id, kind = %j.kind, "Job interrupted by an agent restart; reported as failed, not run again.");
        let r = failed("the agent restarted while this job ran; it was not run again");
        let (s, id) = (ctx.store.clone(), j.job_id.clone());
        blocking(move || s.job_finish(&id, &r.to_string(), crate::poller::now_ms())).await;
    }
    send_results(ctx, client, creds).await;
    let s = ctx.store.clone();
    if let Some(waiting) = blocking(move || s.jobs_in(JobState::Accepted)).await {
        for j in waiting {
            let mut body: Value = serde_json::from_str(&j.body).unwrap_or(Value::Null);
            if body.pointer("/params/sealed") == Some(&json!(true))
                && let Some(link) = &ctx.settings
            {
                let (s, k, id) = (ctx.store.clone(), link.key.clone(), j.job_id.clone());
                if let Some(Some(p)) = blocking(move || s.secret(&k, &params_key(&id))).await {
                    body["params"] = serde_json::from_str(p.expose()).unwrap_or(Value::Null);
                }
            }
            start(ctx, client, creds, j.job_id, body, running).await;
        }
    }
}

/// Results stored outside a job's own task (an update confirmed by the new version)
/// wake the jobs loop to send them without waiting for the long-poll's turn.
static RESULTS_WAITING: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

/// Tells the jobs component a result is waiting in the store.
pub fn result_waiting() {
    RESULTS_WAITING.notify_one();
}

/// Runs until `shutdown` completes. Jobs still running then are cut short; a restart
/// reports them as interrupted.
pub async fn run(
    client: Arc<CloudClient>,
    creds: Credentials,
    ctx: Context,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut running = tokio::task::JoinSet::new();
    recover(&ctx, &client, &creds, &mut running).await;
    let mut backoff = Duration::from_secs(1);
    loop {
        let poll = client.jobs(&creds, WAIT);
        tokio::pin!(poll);
        let got = loop {
            tokio::select! {
                _ = &mut shutdown => {
                    running.abort_all();
                    return;
                }
                r = &mut poll => break r,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = RESULTS_WAITING.notified() => send_results(&ctx, &client, &creds).await,
            }
        };
        // Panel messages past their 48 h, checked at every long-poll turn (≤ 25 s).
        printer::expire_panels(&ctx, crate::poller::now_ms()).await;
        match got {
            Ok(jobs) => {
                backoff = Duration::from_secs(1);
                if !jobs.is_empty() {
                    receive(&ctx, &client, &creds, jobs, &mut running).await;
                }
                send_results(&ctx, &client, &creds).await;
                continue;
            }
            Err(CloudError::Unauthorized(_)) => client.invalidate_token(),
            Err(e) => tracing::debug!(error = %e, "Job poll failed; backing off."),
        }
        let wait = backoff.mul_f64(0.5 + fastrand::f64());
        backoff = (backoff * 2).min(Duration::from_secs(60));
        tokio::select! {
            _ = &mut shutdown => {
                running.abort_all();
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_plain_tokens() {
        assert!(valid_id("job-0a1b2c"));
        assert!(!valid_id(""));
        assert!(!valid_id("../../admin"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"x".repeat(101)));
    }
}
