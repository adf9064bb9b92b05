//! The staged version on disk: `<state>/update/state.json` (what is staged and what came
//! before it), `report.json` (a rollback's outcome for the job), the binary beside them.

use super::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where a staged version is in its life (as the heartbeat reports it).
pub use fleet_protocol::heartbeat::UpdatePhase as Phase;

/// `<state>/update/state.json`: the staged version and what came before it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Staged {
    /// The signed manifest (verified again before every start).
    pub package: Package,
    /// The binary's file name in `<state>/update/`.
    pub file: String,
    /// Where it is.
    pub phase: Phase,
    /// The `updateAgent` job waiting for the outcome (trial only).
    pub job_id: Option<String>,
    /// Starts of the trial so far (a second start means the first one did not confirm).
    pub attempts: u32,
    /// Time the trial has to become healthy.
    pub health_secs: u64,
    /// The version that staged it.
    pub from_version: String,
    /// Why the trial is unhealthy.
    pub reason: Option<String>,
    /// The active update it replaces, returned to on rollback.
    pub previous: Option<Box<Staged>>,
}

impl Staged {
    /// The version, from the manifest.
    pub fn version(&self) -> String {
        serde_json::from_str::<Manifest>(&self.package.manifest)
            .map(|m| m.version)
            .unwrap_or_default()
    }
}

/// `<state>/update/report.json`: a rollback's outcome for the job, delivered by the
/// version that runs next.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The `updateAgent` job.
    pub job_id: String,
    /// Why the update was rolled back.
    pub text: String,
}

/// The update directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("update")
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    // The state is a few KiB; anything far larger is not ours.
    const MAX_BYTES: u64 = 1 << 20;
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_BYTES) {
        tracing::error!(file = %path.display(), "Update state larger than 1 MiB; ignored.");
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "Update state unreadable; ignored.");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "Update state invalid; ignored.");
            None
        }
    }
}

/// Writes (or with `None` removes) a JSON file atomically and owner-only.
pub(super) fn write_json<T: Serialize>(path: &Path, v: Option<&T>) -> std::io::Result<()> {
    let Some(v) = v else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    if let Some(parent) = path.parent() {
        fleet_secret::owner_only::create_dir(parent)?;
    }
    let text = serde_json::to_string_pretty(v)?;
    fleet_secret::owner_only::write(
        path,
        text.as_bytes(),
        fleet_secret::owner_only::Existing::Swap,
    )
}

/// The staged version, if any.
pub fn state(state_dir: &Path) -> Option<Staged> {
    let path = dir(state_dir).join("state.json");
    let s: Staged = read_json(&path)?;
    match s.check() {
        Ok(()) => Some(s),
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "Update state invalid; ignored.");
            None
        }
    }
}

impl Staged {
    /// Every file it names is a plain name inside the update directory (the launcher
    /// deletes them; the finding: `../../x` deleted a file outside the state directory),
    /// and the chain of previous versions is short.
    fn check(&self) -> Result<(), String> {
        let mut s = Some(self);
        let mut depth = 0;
        while let Some(cur) = s {
            if !fleet_protocol::jobs::valid_token(&cur.file, 120) {
                return Err(format!(
                    "file {:?} is not a plain file name",
                    cur.file.chars().take(60).collect::<String>()
                ));
            }
            depth += 1;
            if depth > 4 {
                return Err("more than 4 previous versions".into());
            }
            s = cur.previous.as_deref();
        }
        Ok(())
    }
}

pub(super) fn save(state_dir: &Path, s: Option<&Staged>) -> std::io::Result<()> {
    write_json(&dir(state_dir).join("state.json"), s)
}

/// The job a trial in progress will answer (not to be reported as interrupted).
pub fn pending_job(state_dir: &Path) -> Option<String> {
    state(state_dir)
        .filter(|s| s.phase != Phase::Active)
        .and_then(|s| s.job_id)
}

/// Verifies a staged version's manifest and file (before every start).
pub(super) fn verify_staged(
    state_dir: &Path,
    s: &Staged,
    trusted: &[String],
) -> Result<PathBuf, String> {
    let m = verify(&s.package, trusted).map_err(|e| e.to_string())?;
    let path = dir(state_dir).join(&s.file);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_file(&m, &bytes).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Stages a verified update as a trial: the file next to the state, then the state that
/// names it (the job waits for the outcome).
///
/// # Errors
/// [`UpdateError::Io`] naming the file.
pub fn stage(
    state_dir: &Path,
    package: Package,
    m: &Manifest,
    bytes: &[u8],
    job_id: &str,
    health_secs: u64,
) -> Result<(), UpdateError> {
    let d = dir(state_dir);
    let io = |p: &Path, e: std::io::Error| UpdateError::Io(format!("{}: {e}", p.display()));
    fleet_secret::owner_only::create_dir(&d).map_err(|e| io(&d, e))?;
    // `.exe` on Windows, where a program is found by its extension.
    let file = format!("{PRODUCT}-{}{}", m.version, std::env::consts::EXE_SUFFIX);
    let path = d.join(&file);
    // Whole or absent (a crash mid-write leaves no half binary under the final name),
    // runnable by the agent's account only.
    use fleet_secret::owner_only;
    owner_only::write(&path, bytes, owner_only::Existing::Swap).map_err(|e| io(&path, e))?;
    owner_only::make_executable(&path).map_err(|e| io(&path, e))?;
    let previous = state(state_dir)
        .filter(|s| s.phase == Phase::Active && s.file != file)
        .map(Box::new);
    let s = Staged {
        package,
        file,
        phase: Phase::Trial,
        job_id: Some(job_id.to_string()),
        attempts: 0,
        health_secs,
        from_version: env!("CARGO_PKG_VERSION").to_string(),
        reason: None,
        previous,
    };
    save(state_dir, Some(&s)).map_err(|e| io(&d.join("state.json"), e))
}

/// Delivers a rollback's report to the store as the job's result (the version running
/// now is the one rolled back to). Called at start, before the jobs component.
pub fn settle(state_dir: &Path, store: &crate::store::Store, now: i64) {
    let path = dir(state_dir).join("report.json");
    let Some(r) = read_json::<Report>(&path) else {
        return;
    };
    let doc = fleet_protocol::jobs::JobResult::failed(r.text, now);
    match store.job_finish(&r.job_id, &doc, now) {
        Ok(()) => {
            std::fs::remove_file(&path).ok();
        }
        Err(e) => {
            tracing::error!(error = %e, "The rollback report could not be stored; kept for the next start.")
        }
    }
}

/// The staged update in `state_dir`, for the heartbeat and the page: `{version, phase,
/// fromVersion}` (none when the installed binary runs with nothing staged).
pub fn status(state_dir: &Path) -> Option<fleet_protocol::heartbeat::AgentUpdate> {
    let s = state(state_dir)?;
    Some(fleet_protocol::heartbeat::AgentUpdate {
        version: s.version(),
        phase: s.phase,
        from_version: Some(s.from_version),
    })
}
