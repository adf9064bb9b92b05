//! The jobs loop: long-polls the cloud, records each job before anything else (a job
//! delivered again never runs twice), acknowledges and runs at most [`MAX_RUNNING`] at
//! once, stores each result until the cloud has it, and after a restart reports the jobs
//! it interrupted instead of running them again (a half-done action repeated can do
//! harm). A job with a window ahead (a `firmwareUpdate`'s `startAt`) waits as a stored
//! timer, not a running task: it holds no slot, and a restart re-arms it.

use super::results::{done, failed};
use super::{After, Context, Outcome, blocking, execute};
use crate::cloud::client::CloudError;
use crate::retry::{Backoff, Retry};
use crate::store::jobs::JobState;
use fleet_protocol::jobs::{Command, Job, JobResult, Message, Progress, Status};
use serde_json::Value;
use std::collections::BTreeMap;
use tokio::time::Duration;

/// Jobs waiting for their window (or for a free slot), by (time they may start in epoch
/// ms, job id).
type Waiting = BTreeMap<(i64, String), Job>;

/// How late after its window opened a job waiting across an agent restart may still
/// start: later, the window is taken as missed (a firmware flashed in business hours
/// instead of overnight is worse than one not flashed).
const LATE_MAX_MS: i64 = 15 * 60 * 1000;

/// How long the cloud keeps a job in progress before it expires it.
const IN_PROGRESS_MS: i64 = 24 * 3600 * 1000;

/// When `job`'s window opens (a `firmwareUpdate`'s `startAt`, epoch ms), ahead or not.
fn opens_at(job: &Job) -> Option<i64> {
    match &job.command {
        Command::FirmwareUpdate(p) => p.start_at,
        _ => None,
    }
}

/// When `job` must not start before (a `firmwareUpdate`'s window, epoch ms), if that is
/// ahead of `now_ms` and close enough to wait for (a window further ahead than
/// [`WINDOW_MAX`](super::printer::deploy::WINDOW_MAX) is refused by the job itself).
fn window(job: &Job, now_ms: i64) -> Option<i64> {
    let at = opens_at(job)?;
    let ahead = u64::try_from(at.checked_sub(now_ms)?).ok()?;
    let max = super::printer::deploy::WINDOW_MAX.as_millis();
    (ahead > 0 && u128::from(ahead) <= max).then_some(at)
}

/// Long-poll length asked of the cloud.
pub const WAIT: Duration = Duration::from_secs(25);
/// Jobs running at once, at most.
pub const MAX_RUNNING: usize = 4;
/// How the long-poll is retried while the cloud is unavailable: 1 s doubling to a
/// minute, ±50 %.
pub const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(1),
    cap: Duration::from_secs(60),
    jitter: 0.5,
};

fn params_key(job_id: &str) -> String {
    format!("job.{job_id}.params")
}

/// What the jobs table holds of a job's parameters when they may hold secrets: a
/// marker; the parameters themselves are sealed apart.
fn sealed_marker() -> Value {
    serde_json::json!({ "sealed": true })
}

/// Asks the supervisor to restart the components with the configuration in force.
async fn restart(ctx: &Context) {
    if let Some(link) = &ctx.settings {
        let stored = crate::cloud::settings::stored(&ctx.store, &link.key)
            .ok()
            .flatten();
        let local = ctx.store.search_local_networks().unwrap_or(false);
        if let Ok((c, _)) = crate::cloud::settings::effective(&link.source, stored.as_ref(), local)
        {
            link.apply.send(Box::new(c)).await.ok();
        }
    }
}

/// After a `delete` job's result reached the cloud: wipe credentials and data, then
/// restart the components (they come back not activated, uploading nothing).
async fn delete_self(ctx: &Context) {
    let s = ctx.store.clone();
    // Idle until activated again (activation ends the state).
    if blocking(move || s.wipe()).await.is_some() {
        tracing::warn!(
            "Deleted by the cloud: credentials and data wiped; the agent stays idle until it is activated again."
        );
        restart(ctx).await;
    }
}

/// Sends every stored result the cloud does not have yet. Once the result of a completed
/// `delete` job is delivered, the agent wipes itself.
async fn send_results(ctx: &Context) {
    let s = ctx.store.clone();
    let Some(unsent) = blocking(move || s.jobs_unsent()).await else {
        return;
    };
    for j in unsent {
        let Some(result) = j.result.clone() else {
            continue;
        };
        let cloud = &ctx.cloud;
        match cloud
            .client
            .job_result(&cloud.creds, &j.job_id, &result)
            .await
        {
            // Accepted, or the cloud no longer wants it (stopped, expired, unknown).
            Ok(()) | Err(CloudError::Rejected { .. }) => {
                let (s, id) = (ctx.store.clone(), j.job_id.clone());
                blocking(move || s.job_result_sent(&id)).await;
                tracing::info!(job = %j.job_id, kind = %j.kind, "Job result delivered.");
                if j.kind == Command::Delete.type_name() && result.status == Status::Completed {
                    delete_self(ctx).await;
                    return;
                }
            }
            Err(CloudError::Unauthorized(_)) => {
                cloud.client.invalidate_token();
                return;
            }
            Err(e) => {
                tracing::debug!(job = %j.job_id, error = %e, "Job result not delivered; retried later.");
                return;
            }
        }
    }
}

/// Stores a job's result, stamped with the time it finished (its sealed parameters are
/// no longer needed).
async fn finish(ctx: &Context, job_id: &str, mut result: JobResult) {
    let (s, id, now) = (ctx.store.clone(), job_id.to_string(), ctx.clock.now_ms());
    result.finished_at = now;
    blocking(move || {
        s.remove_setting(&params_key(&id))?;
        s.job_finish(&id, &result, now)
    })
    .await;
}

/// Starts a recorded job: acknowledges it, then marks it running and spawns its
/// execution, or, when its window is ahead, records it waiting in `waiting`.
async fn start(
    ctx: &Context,
    job: Job,
    running: &mut tokio::task::JoinSet<()>,
    waiting: &mut Waiting,
) {
    let job_id = job.job_id.clone();
    match ctx.cloud.client.job_ack(&ctx.cloud.creds, &job_id).await {
        Ok(()) => {}
        Err(CloudError::Rejected { status, reason }) => {
            // Stopped or expired while it waited: never run, nothing to report.
            tracing::info!(job = %job_id, status, reason = %reason, "Job withdrawn by the cloud; not run.");
            let (s, id, now) = (ctx.store.clone(), job_id.clone(), ctx.clock.now_ms());
            let mut r = done(
                Status::Failed,
                vec![Message::info(format!("not run: {reason}"))],
            );
            r.finished_at = now;
            blocking(move || {
                s.job_finish(&id, &r, now)?;
                s.job_result_sent(&id)
            })
            .await;
            return;
        }
        Err(e) => {
            if matches!(e, CloudError::Unauthorized(_)) {
                ctx.cloud.client.invalidate_token();
            }
            tracing::debug!(job = %job_id, error = %e, "Job not acknowledged; retried when delivered again.");
            return;
        }
    }
    let now = ctx.clock.now_ms();
    if let Some(at) = window(&job, now) {
        wait_for_window(ctx, job, at, waiting).await;
        return;
    }
    if running.len() >= MAX_RUNNING {
        // No free slot (a window that opened meanwhile, or jobs found at a restart):
        // launched as soon as one frees.
        waiting.insert((now, job.job_id.clone()), job);
        return;
    }
    launch(ctx, job, running).await;
}

/// Records an acknowledged job as waiting for its window (`at`, epoch ms) and tells the
/// cloud; the jobs loop launches it then.
async fn wait_for_window(ctx: &Context, job: Job, at: i64, waiting: &mut Waiting) {
    let (s, id) = (ctx.store.clone(), job.job_id.clone());
    if blocking(move || s.job_wait(&id)).await.is_none() {
        return;
    }
    let secs = at.saturating_sub(ctx.clock.now_ms()) / 1000;
    tracing::info!(job = %job.job_id, kind = %job.command.type_name(), in_secs = secs, "Job waits for its window.");
    let p = Progress {
        text: format!("waiting for its window (startAt, in {secs} s)"),
        ..Progress::default()
    };
    let cloud = &ctx.cloud;
    cloud
        .client
        .job_progress(&cloud.creds, &job.job_id, &p)
        .await
        .ok();
    waiting.insert((at, job.job_id.clone()), job);
}

/// Launches the waiting jobs whose window has opened, while slots are free.
async fn launch_due(ctx: &Context, waiting: &mut Waiting, running: &mut tokio::task::JoinSet<()>) {
    let now = ctx.clock.now_ms();
    while running.len() < MAX_RUNNING {
        let Some(entry) = waiting.first_entry() else {
            break;
        };
        if entry.key().0 > now {
            break;
        }
        let job = entry.remove();
        if job.not_after.is_some_and(|t| t <= now) {
            // Its slot came too late: the window closed.
            tracing::warn!(job = %job.job_id, kind = %job.command.type_name(), "Job's window closed before a slot freed; not run.");
            let r = failed("its window (notAfter) closed before the agent could start it; not run");
            finish(ctx, &job.job_id, r).await;
            send_results(ctx).await;
            continue;
        }
        launch(ctx, job, running).await;
    }
}

/// How long until the first waiting job's window opens.
fn next_window(ctx: &Context, waiting: &Waiting) -> Duration {
    waiting
        .keys()
        .next()
        .map_or(Duration::from_secs(86_400), |(at, _)| {
            Duration::from_millis(u64::try_from(at.saturating_sub(ctx.clock.now_ms())).unwrap_or(0))
        })
}

/// Marks an acknowledged job running and spawns its execution.
async fn launch(ctx: &Context, job: Job, running: &mut tokio::task::JoinSet<()>) {
    let job_id = job.job_id.clone();
    let (s, id) = (ctx.store.clone(), job_id.clone());
    if blocking(move || s.job_start(&id)).await.is_none() {
        return;
    }
    let kind = job.command.type_name().to_string();
    tracing::info!(job = %job_id, kind = %kind, "Job started.");
    let ctx = ctx.clone();
    running.spawn(async move {
        let (r, after) = match execute(&ctx, &job).await {
            Outcome::Done(r, after) => (r, after),
            Outcome::Handover(text) => {
                // Still running: the next version (or the rollback) reports the outcome.
                let p = Progress {
                    text,
                    ..Progress::default()
                };
                let cloud = &ctx.cloud;
                cloud
                    .client
                    .job_progress(&cloud.creds, &job_id, &p)
                    .await
                    .ok();
                ctx.restart.request();
                return;
            }
        };
        let status = r.status;
        finish(&ctx, &job_id, r).await;
        tracing::info!(job = %job_id, kind = %kind, status = ?status, "Job finished.");
        send_results(&ctx).await;
        // Jobs that change what runs restart the components, last: the restart stops
        // this component too, so the result had to be stored and sent first.
        if after == After::Restart {
            restart(&ctx).await;
        }
    });
}

/// Handles the jobs one long-poll returned.
async fn receive(
    ctx: &Context,
    jobs: Vec<Job>,
    running: &mut tokio::task::JoinSet<()>,
    waiting: &mut Waiting,
) {
    for job in jobs {
        if !job.has_valid_id() {
            tracing::warn!(job = %job.job_id, "Job with an unusable id ignored.");
            continue;
        }
        let kind = job.command.type_name().to_string();
        // Secret parameters never reach the jobs table in clear.
        let sealed = match (&ctx.settings, job.command.holds_secrets()) {
            (Some(link), true) => {
                let secret = fleet_secret::Secret::new(job.command.params().to_string());
                Some((link.key.clone(), secret))
            }
            _ => None,
        };
        let mut stored = serde_json::to_value(&job).unwrap_or(Value::Null);
        if sealed.is_some() {
            stored["params"] = sealed_marker();
        }
        let (s, i, b) = (ctx.store.clone(), job.job_id.clone(), stored.to_string());
        let now = ctx.clock.now_ms();
        let Some(existing) = blocking(move || {
            if let Some((key, secret)) = &sealed {
                s.set_secret(key, &params_key(&i), secret)?;
            }
            s.job_accept(&i, &kind, &b, now)
        })
        .await
        else {
            continue;
        };
        match existing.map(|r| r.state) {
            // New, or recorded but never started (the ack was lost): start it.
            None | Some(JobState::Accepted) => {
                // A job that will wait for its window needs no slot to be acknowledged.
                if window(&job, ctx.clock.now_ms()).is_none() {
                    while running.len() >= MAX_RUNNING {
                        running.join_next().await;
                    }
                }
                start(ctx, job, running, waiting).await;
            }
            // Running or done here already: never a second time.
            Some(_) => tracing::debug!(job = %job.job_id, "Job delivered again; already handled."),
        }
    }
}

/// A recorded job as it was received, its sealed parameters restored.
async fn recorded(ctx: &Context, job_id: &str, body: &str) -> Option<Job> {
    let mut raw: Value = serde_json::from_str(body).ok()?;
    if raw.get("params") == Some(&sealed_marker())
        && let Some(link) = &ctx.settings
    {
        let (s, k, id) = (ctx.store.clone(), link.key.clone(), job_id.to_string());
        if let Some(Some(p)) = blocking(move || s.secret(&k, &params_key(&id))).await {
            raw["params"] = serde_json::from_str(p.expose()).unwrap_or(Value::Null);
        }
    }
    serde_json::from_value(raw).ok()
}

/// Reports jobs a restart interrupted (they are not run again: a half-done action
/// repeated could do harm), re-arms the ones waiting for their window (refused when the
/// window closed while the agent was stopped), and starts the ones recorded but never
/// started.
async fn recover(ctx: &Context, running: &mut tokio::task::JoinSet<()>, waiting: &mut Waiting) {
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
        finish(ctx, &j.job_id, r).await;
    }
    let s = ctx.store.clone();
    for j in blocking(move || s.jobs_in(JobState::Waiting))
        .await
        .unwrap_or_default()
    {
        let now = ctx.clock.now_ms();
        match recorded(ctx, &j.job_id, &j.body).await {
            Some(job)
                if job.not_after.is_some_and(|t| t <= now)
                    || opens_at(&job).is_some_and(|t| now.saturating_sub(t) > LATE_MAX_MS)
                    || now.saturating_sub(j.received_ms) >= IN_PROGRESS_MS =>
            {
                tracing::warn!(job = %j.job_id, kind = %j.kind, "Job's window passed while the agent was stopped; not run.");
                let r = failed(
                    "its window passed while the agent was stopped (it opened more than 15 minutes ago, or closed); not run: queue it again for another window",
                );
                finish(ctx, &j.job_id, r).await;
            }
            Some(job) => {
                let at = window(&job, now).unwrap_or(now);
                tracing::info!(job = %j.job_id, kind = %j.kind, "Job waiting for its window re-armed after a restart.");
                waiting.insert((at, job.job_id.clone()), job);
            }
            None => {
                tracing::error!(job = %j.job_id, "Recorded job unreadable; reported as failed.");
                finish(
                    ctx,
                    &j.job_id,
                    failed("the agent could not read this job back"),
                )
                .await;
            }
        }
    }
    send_results(ctx).await;
    let s = ctx.store.clone();
    if let Some(accepted) = blocking(move || s.jobs_in(JobState::Accepted)).await {
        for j in accepted {
            match recorded(ctx, &j.job_id, &j.body).await {
                Some(job) => start(ctx, job, running, waiting).await,
                None => {
                    tracing::error!(job = %j.job_id, "Recorded job unreadable; reported as failed.");
                    let r = failed("the agent could not read this job back");
                    finish(ctx, &j.job_id, r).await;
                }
            }
        }
    }
}

/// Runs until `shutdown` completes. Jobs still running then are cut short; a restart
/// reports them as interrupted.
pub async fn run(ctx: Context, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut running = tokio::task::JoinSet::new();
    let mut waiting = Waiting::new();
    recover(&ctx, &mut running, &mut waiting).await;
    let mut retry = Retry::new(BACKOFF);
    loop {
        let poll = ctx.cloud.client.jobs(&ctx.cloud.creds, WAIT);
        tokio::pin!(poll);
        let got = loop {
            tokio::select! {
                _ = &mut shutdown => {
                    running.abort_all();
                    return;
                }
                r = &mut poll => break r,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(next_window(&ctx, &waiting)),
                    if !waiting.is_empty() && running.len() < MAX_RUNNING =>
                {
                    launch_due(&ctx, &mut waiting, &mut running).await;
                }
                // A result stored outside a job's task (an update confirmed by the new
                // version) goes out without waiting for the long-poll's turn.
                () = ctx.results_waiting.notified() => send_results(&ctx).await,
            }
        };
        // Panel messages past their 48 h, checked at every long-poll turn (≤ 25 s).
        super::printer::commands::expire_panels(&ctx).await;
        match got {
            Ok(jobs) => {
                retry.succeeded();
                if !jobs.is_empty() {
                    receive(&ctx, jobs, &mut running, &mut waiting).await;
                }
                send_results(&ctx).await;
                continue;
            }
            Err(CloudError::Unauthorized(_)) => ctx.cloud.client.invalidate_token(),
            Err(e) => tracing::debug!(error = %e, "Job poll failed; backing off."),
        }
        let until = tokio::time::Instant::now() + retry.failed();
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    running.abort_all();
                    return;
                }
                () = tokio::time::sleep_until(until) => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                // A window opens on time with the cloud unreachable too.
                () = tokio::time::sleep(next_window(&ctx, &waiting)),
                    if !waiting.is_empty() && running.len() < MAX_RUNNING =>
                {
                    launch_due(&ctx, &mut waiting, &mut running).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use fleet_protocol::jobs::valid_token;

    #[test]
    fn job_ids_are_plain_tokens() {
        assert!(valid_token("job-0a1b2c", 100));
        assert!(!valid_token("", 100));
        assert!(!valid_token("../../admin", 100));
        assert!(!valid_token("a/b", 100));
        assert!(!valid_token(&"x".repeat(101), 100));
    }
}
