//! The health check of a version on trial: confirmed once the cloud answered it, else
//! marked unhealthy and restarted (the launcher rolls it back).

use super::staging::*;
use super::*;
use std::path::{Path, PathBuf};

/// What the health check of a version on trial needs from the running agent.
pub struct Health {
    /// The state directory (the staged version's state).
    pub state_dir: PathBuf,
    /// The store (the job's result).
    pub store: crate::store::Store,
    /// The cloud link, watched for an answer.
    pub link: crate::cloud::link::Link,
    /// The agent's clock.
    pub clock: crate::clock::Clock,
    /// Told when the job's result is stored, so it goes out at once.
    pub results_waiting: std::sync::Arc<tokio::sync::Notify>,
    /// Asked when the version is unhealthy (the launcher then rolls it back).
    pub restart: Restart,
}

/// In a trial version: waits until the cloud answered a heartbeat sent by this process,
/// then confirms the version and completes the job; when `health_secs` pass first, marks
/// the trial unhealthy and restarts (the launcher rolls it back).
pub async fn check_health(h: Health, version: String) {
    let Some(s) = state(&h.state_dir).filter(|s| s.phase == Phase::Trial && s.version() == version)
    else {
        return;
    };
    let started = h.clock.now_ms();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(s.health_secs);
    tracing::info!(version = %version, health_secs = s.health_secs, "Agent update on trial: waiting for the cloud to answer.");
    let mut watch = h.link.subscribe();
    let answered = tokio::time::timeout_at(deadline, async {
        watch
            .wait_for(|l| l.last_contact_ms.is_some_and(|t| t >= started))
            .await
            .is_ok()
    })
    .await;
    let healthy = match answered {
        Ok(true) => Ok(()),
        _ => Err(format!(
            "no answer from the cloud within {} s of its start{}",
            s.health_secs,
            h.link
                .get()
                .last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        )),
    };
    let (dir, store, now) = (h.state_dir.clone(), h.store.clone(), h.clock.now_ms());
    let outcome =
        tokio::task::spawn_blocking(move || confirm_or_fail(&dir, &store, s, healthy, now)).await;
    match outcome {
        Ok(Confirmed::Yes) => h.results_waiting.notify_one(),
        Ok(Confirmed::YesButUnrecorded) => {}
        _ => h.restart.request(),
    }
}

/// What the health check concluded.
pub(super) enum Confirmed {
    /// The version stays and its job's result is stored.
    Yes,
    /// The version stays; its job's result could not be stored.
    YesButUnrecorded,
    /// The version goes (the launcher rolls it back at the restart).
    No,
}

/// Confirms the version or marks it unhealthy.
pub(super) fn confirm_or_fail(
    state_dir: &Path,
    store: &crate::store::Store,
    mut s: Staged,
    healthy: Result<(), String>,
    now: i64,
) -> Confirmed {
    let version = s.version();
    match healthy {
        Ok(()) => {
            let job = s.job_id.take();
            if let Some(p) = s.previous.take()
                && p.file != s.file
            {
                std::fs::remove_file(dir(state_dir).join(&p.file)).ok();
            }
            s.phase = Phase::Active;
            s.attempts = 0;
            if let Err(e) = save(state_dir, Some(&s)) {
                tracing::error!(error = %e, "The update could not be confirmed; it is rolled back at the next start.");
                return Confirmed::No;
            }
            tracing::info!(version = %version, from = %s.from_version, "Agent update confirmed healthy.");
            let Some(id) = job else {
                return Confirmed::YesButUnrecorded;
            };
            {
                use fleet_protocol::jobs::{JobResult, Message, Status};
                let doc = JobResult::new(
                    Status::Completed,
                    vec![Message::info(format!(
                        "agent updated from version {} to {version}; healthy (the cloud answered its heartbeat)",
                        s.from_version
                    ))],
                    now,
                );
                match store.job_finish(&id, &doc, now) {
                    Ok(()) => Confirmed::Yes,
                    Err(e) => {
                        tracing::error!(job = %id, error = %e, "The update's result could not be stored.");
                        Confirmed::YesButUnrecorded
                    }
                }
            }
        }
        Err(why) => {
            tracing::error!(version = %version, reason = %why, "Agent update unhealthy; restarting to roll back.");
            s.phase = Phase::Unhealthy;
            s.reason = Some(why);
            save(state_dir, Some(&s)).ok();
            Confirmed::No
        }
    }
}
