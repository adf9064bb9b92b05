//! `updateAgent`: a signed new agent binary, checked and staged in the state directory;
//! the agent then restarts into it (see [`crate::update`] for the launcher, the health
//! check and the rollback).

use super::results::failed;
use super::{Context, Outcome};
use fleet_protocol::jobs::{UpdateParams, valid_token};

/// `updateAgent`: params `{"package": {manifest, signature, keyId}, "file": NAME,
/// "healthSecs": N}` with the binary attached to the job as NAME.
pub(super) async fn update_agent(ctx: &Context, job_id: &str, params: &UpdateParams) -> Outcome {
    use crate::update::{self, UpdateError};
    let refused = |e: UpdateError| -> Outcome {
        tracing::warn!(error = %e, "Agent update refused.");
        failed(format!(
            "update refused, version {} stays in use: {e}",
            env!("CARGO_PKG_VERSION")
        ))
        .into()
    };
    let manifest = match update::verify(&params.package, &ctx.update_keys) {
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
    let health_secs = match params.health_secs {
        None => update::DEFAULT_HEALTH_SECS,
        Some(n) if update::HEALTH_SECS.contains(&n) => n,
        Some(n) => {
            return refused(UpdateError::Params(format!(
                "params.healthSecs: {n} is not between {} and {}",
                update::HEALTH_SECS.start(),
                update::HEALTH_SECS.end()
            )));
        }
    };
    let file = &params.file;
    if !valid_token(file, 120) {
        return refused(UpdateError::Params(format!(
            "params.file: {file:?} is not a file name (letters, digits, '.', '-', '_')"
        )));
    }
    if let Some(id) = update::pending_job(&ctx.state_dir) {
        return refused(UpdateError::Params(format!(
            "another update (job {id}) is still on trial"
        )));
    }
    let bytes = match ctx
        .cloud
        .client
        .job_input(&ctx.cloud.creds, job_id, file, manifest.size)
        .await
    {
        Ok(b) => b,
        Err(e) => return refused(UpdateError::File(format!("{file}: {e}"))),
    };
    if let Err(e) = update::check_file(&manifest, &bytes) {
        return refused(e);
    }
    let (dir, m, id, package) = (
        ctx.state_dir.clone(),
        manifest.clone(),
        job_id.to_string(),
        params.package.clone(),
    );
    match tokio::task::spawn_blocking(move || {
        update::stage(&dir, package, &m, &bytes, &id, health_secs)
    })
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return refused(e),
        Err(e) => return refused(UpdateError::Io(e.to_string())),
    }
    tracing::info!(version = %manifest.version, health_secs, "Agent update staged; restarting into it.");
    Outcome::Handover(format!(
        "version {} verified and staged; restarting into it (healthy within {health_secs} s or rolled back)",
        manifest.version
    ))
}
