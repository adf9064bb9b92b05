//! Self-update (`updateAgent`): the signed manifest of a new agent binary, its staging in
//! the state directory, the launcher that starts it (verified again before every start),
//! the health check that confirms it, and the rollback when it does not come up.
//!
//! Why a launcher and not a replaced binary: the packaged service runs hardened
//! (`ProtectSystem=strict`), so it cannot write `/usr/bin`, and a half-written binary
//! there could not be rolled back. The installed binary stays as it is and is always what
//! the service manager starts; at start it looks in `<state>/update/` and, when a verified
//! newer version is staged there, `exec`s it (same process id, so systemd's notify and
//! watchdog keep working). Every decision goes through that installed launcher:
//!
//! - a job stages version N as a **trial** and asks for a restart (exit status 75 under a
//!   service manager, which starts the agent again; a foreground agent `exec`s itself);
//! - the launcher counts the trial's start and `exec`s it; the trial **confirms** itself
//!   once its components run and the cloud answered its heartbeat within the job's health
//!   time (`params.healthSecs`, default 120 s), then reports the job completed;
//! - a trial that crashes, hangs (the systemd watchdog kills it), exits, or is unhealthy
//!   when its time runs out (it marks itself so and asks for a restart) is **rolled back**
//!   at the next start: the launcher returns to the previous version (an earlier update
//!   or the installed one), deletes the trial's file and leaves a report that the previous
//!   version delivers as the job's failure, with the reason.
//!
//! Never unsigned code: the manifest is signed with ed25519 by a key in
//! `cloud.update_keys` (set on the host only), and the file's size and SHA-256 must match
//! it — when it is downloaded and before every start.

use fleet_protocol::signing::SignatureError;
pub use fleet_protocol::signing::sha256_hex;
pub use fleet_protocol::update::{
    Manifest, PRODUCT, Package, manifest_for, newer, sign, version_numbers,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest agent binary accepted.
pub const MAX_BYTES: u64 = 256 << 20;
/// Exit status asking the service manager to start the agent again (sysexits
/// EX_TEMPFAIL; systemd's `Restart=on-failure` and the Windows recovery actions restart
/// on it).
pub const EXIT_RESTART: i32 = 75;
/// Health time when the job does not say.
pub const DEFAULT_HEALTH_SECS: u64 = 120;
/// Health times a job may ask for.
pub const HEALTH_SECS: std::ops::RangeInclusive<u64> = 5..=3600;
/// Set by the launcher in the environment of the version it starts: that version.
const LAUNCHED: &str = "FLEET_AGENT_UPDATE_LAUNCHED";
/// Set by the launcher: the installed binary, which a foreground restart runs again.
#[cfg_attr(not(unix), allow(dead_code))]
const LAUNCHER: &str = "FLEET_AGENT_UPDATE_LAUNCHER";

/// Why an update was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    /// The agent trusts no update key.
    #[error(
        "this agent trusts no update key (cloud.update_keys is empty on its host), so it never updates itself"
    )]
    NoKeys,
    /// The job's parameters are not usable.
    #[error("{0}")]
    Params(String),
    /// The signature is not from a trusted key or does not match.
    #[error(
        "manifest refused: {0}{hint}",
        hint = if matches!(.0, SignatureError::UnknownKey(_)) { "; trusted keys are listed in cloud.update_keys" } else { "" }
    )]
    Signature(SignatureError),
    /// The manifest is signed but unusable.
    #[error("manifest: {0}")]
    Manifest(String),
    /// Built for another platform.
    #[error(
        "built for {os}/{arch}; this agent runs on {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )]
    Platform {
        /// The manifest's OS.
        os: String,
        /// The manifest's architecture.
        arch: String,
    },
    /// Not newer than the running version.
    #[error("version {offered} is not newer than the running version {running}")]
    NotNewer {
        /// The manifest's version.
        offered: String,
        /// This agent's.
        running: String,
    },
    /// The file is not the one signed.
    #[error("the file does not match the signed manifest: {0} (tampered or corrupted)")]
    File(String),
    /// The file could not be stored or started.
    #[error("{0}")]
    Io(String),
}

/// Verifies a package's signature and checks its manifest: product, version format,
/// platform, size limit. Whether it is newer is the caller's question.
///
/// # Errors
/// As [`UpdateError`].
pub fn verify(package: &Package, trusted: &[String]) -> Result<Manifest, UpdateError> {
    if trusted.is_empty() {
        return Err(UpdateError::NoKeys);
    }
    fleet_protocol::signing::verify(
        package.manifest.as_bytes(),
        &package.signature,
        &package.key_id,
        trusted,
    )
    .map_err(UpdateError::Signature)?;
    let m: Manifest = serde_json::from_str(&package.manifest)
        .map_err(|e| UpdateError::Manifest(e.to_string()))?;
    if m.product != PRODUCT {
        return Err(UpdateError::Manifest(format!(
            "product {:?} is not {PRODUCT}",
            m.product
        )));
    }
    if version_numbers(&m.version).is_none() || m.version.contains(['-', '+']) {
        return Err(UpdateError::Manifest(format!(
            "version {:?} is not dotted numbers",
            m.version
        )));
    }
    if m.os != std::env::consts::OS || m.arch != std::env::consts::ARCH {
        return Err(UpdateError::Platform {
            os: m.os,
            arch: m.arch,
        });
    }
    if m.size == 0 || m.size > MAX_BYTES {
        return Err(UpdateError::Manifest(format!(
            "size {} is not between 1 and {MAX_BYTES} bytes",
            m.size
        )));
    }
    if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UpdateError::Manifest("sha256: not 64 hex digits".into()));
    }
    Ok(m)
}

/// Checks a file's bytes against its manifest.
///
/// # Errors
/// [`UpdateError::File`] naming what differs.
pub fn check_file(m: &Manifest, bytes: &[u8]) -> Result<(), UpdateError> {
    if bytes.len() as u64 != m.size {
        return Err(UpdateError::File(format!(
            "{} bytes, the manifest says {}",
            bytes.len(),
            m.size
        )));
    }
    let got = sha256_hex(bytes);
    if !got.eq_ignore_ascii_case(&m.sha256) {
        return Err(UpdateError::File(format!(
            "SHA-256 {got}, the manifest says {}",
            m.sha256
        )));
    }
    Ok(())
}

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

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
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

/// Writes (or with `None` removes) a JSON file atomically: a temporary file, synced, then
/// renamed over the old one.
fn write_json<T: Serialize>(path: &Path, v: Option<&T>) -> std::io::Result<()> {
    let Some(v) = v else {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(v)?.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// The staged version, if any.
pub fn state(state_dir: &Path) -> Option<Staged> {
    read_json(&dir(state_dir).join("state.json"))
}

fn save(state_dir: &Path, s: Option<&Staged>) -> std::io::Result<()> {
    write_json(&dir(state_dir).join("state.json"), s)
}

/// The job a trial in progress will answer (not to be reported as interrupted).
pub fn pending_job(state_dir: &Path) -> Option<String> {
    state(state_dir)
        .filter(|s| s.phase != Phase::Active)
        .and_then(|s| s.job_id)
}

/// Verifies a staged version's manifest and file (before every start).
fn verify_staged(state_dir: &Path, s: &Staged, trusted: &[String]) -> Result<PathBuf, String> {
    let m = verify(&s.package, trusted).map_err(|e| e.to_string())?;
    let path = dir(state_dir).join(&s.file);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_file(&m, &bytes).map_err(|e| e.to_string())?;
    Ok(path)
}

/// What the launcher does at a start.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Run the installed binary (this process).
    Own,
    /// Start this staged version.
    Exec(PathBuf, String),
}

/// The launcher's decision for one state, with the state and report to write first.
fn decide(
    state_dir: &Path,
    own_version: &str,
    trusted: &[String],
    s: Staged,
) -> (Step, Option<Staged>, Option<Report>) {
    let version = s.version();
    match s.phase {
        Phase::Trial if s.attempts >= 1 => rollback(
            s,
            format!("version {version} stopped before it confirmed it was healthy"),
        ),
        Phase::Unhealthy => {
            let why = s.reason.clone().unwrap_or_else(|| "unhealthy".into());
            rollback(s, format!("version {version} was not healthy: {why}"))
        }
        Phase::Trial => match verify_staged(state_dir, &s, trusted) {
            Ok(path) => {
                let mut next = s;
                next.attempts += 1;
                (Step::Exec(path, version), Some(next), None)
            }
            Err(e) => rollback(
                s,
                format!("version {version} failed its check before it started: {e}"),
            ),
        },
        Phase::Active => {
            if !newer(&version, own_version) {
                tracing::info!(staged = %version, installed = own_version, "The installed agent is as new as the staged update; the update is retired.");
                return (Step::Own, None, None);
            }
            match verify_staged(state_dir, &s, trusted) {
                Ok(path) => (Step::Exec(path, version), Some(s), None),
                Err(e) => {
                    tracing::error!(version = %version, error = %e, "The active agent update fails its check; running the installed version.");
                    (Step::Own, None, None)
                }
            }
        }
    }
}

fn rollback(s: Staged, why: String) -> (Step, Option<Staged>, Option<Report>) {
    let back_to = s
        .previous
        .as_ref()
        .map_or_else(|| s.from_version.clone(), |p| p.version());
    tracing::warn!(reason = %why, back_to = %back_to, "Agent update rolled back.");
    let report = s.job_id.clone().map(|job_id| Report {
        job_id,
        text: format!("rolled back to version {back_to}: {why}"),
    });
    // The previous state's decision follows at the caller's next turn.
    (Step::Own, s.previous.map(|p| *p), report)
}

/// What the launcher decided for this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// The installed binary runs (nothing staged, or rolled back to it).
    Installed,
    /// This process is a staged version the launcher started.
    Staged(String),
}

/// Called once at the start of `run`: starts the staged version when there is one that
/// passes its checks (and does not return then), rolls a failed trial back, or returns
/// to let the installed binary run.
pub fn launch(state_dir: &Path, trusted: &[String]) -> Launch {
    if let Some(v) = std::env::var_os(LAUNCHED) {
        return Launch::Staged(v.to_string_lossy().into_owned());
    }
    let own = env!("CARGO_PKG_VERSION");
    let mut current = state(state_dir);
    // At most: a trial rolled back, then the previous version's own decision.
    for _ in 0..3 {
        let Some(s) = current.take() else {
            return Launch::Installed;
        };
        let old_file = s.file.clone();
        let (step, next, report) = decide(state_dir, own, trusted, s);
        if let Some(r) = &report
            && let Err(e) = write_json(&dir(state_dir).join("report.json"), Some(r))
        {
            tracing::error!(error = %e, "The rollback report could not be written.");
        }
        if let Err(e) = save(state_dir, next.as_ref()) {
            tracing::error!(error = %e, "The update state could not be written; running the installed version.");
            return Launch::Installed;
        }
        let kept = |f: &str| next.as_ref().is_some_and(|n| n.file == f);
        if !kept(&old_file) && !matches!(&step, Step::Exec(..)) {
            std::fs::remove_file(dir(state_dir).join(&old_file)).ok();
        }
        match step {
            Step::Exec(path, version) => {
                let err = exec(&path, &version);
                tracing::error!(version = %version, error = %err, "The staged agent could not be started.");
                // Counted as a failed start: the next start rolls it back.
                if let Some(n) = next
                    && n.phase == Phase::Trial
                {
                    current = Some(n);
                    continue;
                }
                return Launch::Installed;
            }
            Step::Own if report.is_some() => current = next,
            Step::Own => return Launch::Installed,
        }
    }
    Launch::Installed
}

/// The installed binary: the one that launched this process, else this one.
#[cfg(unix)]
fn launcher() -> PathBuf {
    std::env::var_os(LAUNCHER)
        .map(PathBuf::from)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_default()
}

#[cfg(unix)]
fn exec(path: &Path, version: &str) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let launcher = launcher();
    tracing::info!(version, file = %path.display(), "Starting the staged agent version.");
    std::process::Command::new(path)
        .args(std::env::args_os().skip(1))
        .env(LAUNCHED, version)
        .env(LAUNCHER, launcher)
        .exec()
}

#[cfg(not(unix))]
fn exec(_path: &Path, _version: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "self-update runs on Unix only",
    )
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

/// A request to stop and start again (through the service manager when there is one),
/// the way into a staged version or out of an unhealthy one: a handle the supervisor
/// waits on, given to whatever may ask (the update job, the health check).
#[derive(Clone, Debug, Default)]
pub struct Restart(std::sync::Arc<tokio::sync::Notify>);

impl Restart {
    /// Asks the supervisor to stop for a restart.
    pub fn request(&self) {
        self.0.notify_one();
    }

    /// Resolves when a restart is asked for (a request made before counts).
    pub async fn requested(&self) {
        self.0.notified().await;
    }
}

/// Starts the agent again in this process when no service manager will (a foreground
/// run): `exec`s the installed launcher with the same arguments. Returns only on failure.
#[cfg(unix)]
pub fn restart_in_place() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let launcher = launcher();
    tracing::info!(launcher = %launcher.display(), "Starting the agent again.");
    std::process::Command::new(launcher)
        .args(std::env::args_os().skip(1))
        .env_remove(LAUNCHED)
        .env_remove(LAUNCHER)
        .exec()
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
    std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
    let file = format!("{PRODUCT}-{}", m.version);
    let path = d.join(&file);
    let part = d.join(format!("{file}.part"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&part).map_err(|e| io(&part, e))?;
        f.write_all(bytes).map_err(|e| io(&part, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io(&part, e))?;
        }
        f.sync_all().map_err(|e| io(&part, e))?;
    }
    std::fs::rename(&part, &path).map_err(|e| io(&path, e))?;
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
enum Confirmed {
    /// The version stays and its job's result is stored.
    Yes,
    /// The version stays; its job's result could not be stored.
    YesButUnrecorded,
    /// The version goes (the launcher rolls it back at the restart).
    No,
}

/// Confirms the version or marks it unhealthy.
fn confirm_or_fail(
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn key() -> (ed25519_dalek::SigningKey, Vec<String>) {
        let k = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let public = base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes());
        (k, vec![public])
    }

    #[test]
    fn versions_compare_number_by_number() {
        assert!(newer("0.10.0", "0.9.9"));
        assert!(newer("1.0", "0.99.99"));
        assert!(newer("0.1.1", "0.1.0-dev"));
        assert!(!newer("0.1.0", "0.1"));
        assert!(!newer("0.1.0", "0.2.0"));
        assert!(!newer("x", "0.1.0"));
    }

    #[test]
    fn manifests_are_checked_after_their_signature() {
        let (k, trusted) = key();
        let m = manifest_for("9.0.0", b"binary");
        let p = sign(&m, &k);
        assert_eq!(verify(&p, &trusted), Ok(m.clone()));
        assert_eq!(verify(&p, &[]), Err(UpdateError::NoKeys));
        let mut tampered = p.clone();
        tampered.manifest = tampered.manifest.replace("9.0.0", "9.0.1");
        assert!(matches!(
            verify(&tampered, &trusted),
            Err(UpdateError::Signature(SignatureError::Mismatch))
        ));
        let other = sign(
            &Manifest {
                os: "plan9".into(),
                ..m.clone()
            },
            &k,
        );
        assert!(matches!(
            verify(&other, &trusted),
            Err(UpdateError::Platform { .. })
        ));
        let pre = sign(
            &Manifest {
                version: "9.0.0-rc1".into(),
                ..m.clone()
            },
            &k,
        );
        assert!(matches!(
            verify(&pre, &trusted),
            Err(UpdateError::Manifest(_))
        ));
        assert_eq!(check_file(&m, b"binary"), Ok(()));
        assert!(
            check_file(&m, b"binarY")
                .unwrap_err()
                .to_string()
                .contains("SHA-256")
        );
        assert!(
            check_file(&m, b"bin")
                .unwrap_err()
                .to_string()
                .contains("3 bytes")
        );
    }

    fn staged(dir: &Path, version: &str, bytes: &[u8], job: &str) -> Staged {
        let (k, _) = key();
        let m = manifest_for(version, bytes);
        stage(dir, sign(&m, &k), &m, bytes, job, 30).unwrap();
        state(dir).unwrap()
    }

    #[test]
    fn a_trial_starts_once_then_rolls_back_to_the_version_before_it() {
        let d = tempfile::tempdir().unwrap();
        let (_, trusted) = key();
        let mut s = staged(d.path(), "9.0.0", b"v9", "job-1");
        s.phase = Phase::Active;
        s.job_id = None;
        save(d.path(), Some(&s)).unwrap();
        let t = staged(d.path(), "10.0.0", b"v10", "job-2");
        assert_eq!(
            t.previous.as_deref().map(Staged::version).as_deref(),
            Some("9.0.0")
        );

        // First start: verified, counted, started.
        let (step, next, report) = decide(d.path(), "0.1.0", &trusted, t);
        assert_eq!(
            step,
            Step::Exec(dir(d.path()).join("fleet-agent-10.0.0"), "10.0.0".into())
        );
        assert_eq!(next.as_ref().map(|n| n.attempts), Some(1));
        assert!(report.is_none());
        // Started again without confirming: back to 9.0.0, with the job's report.
        let (step, next, report) = decide(d.path(), "0.1.0", &trusted, next.unwrap());
        assert_eq!(step, Step::Own);
        assert_eq!(next.as_ref().map(Staged::version).as_deref(), Some("9.0.0"));
        let r = report.unwrap();
        assert_eq!(r.job_id, "job-2");
        assert!(
            r.text
                .starts_with("rolled back to version 9.0.0: version 10.0.0 stopped"),
            "{}",
            r.text
        );
        // 9.0.0 is active and intact: started.
        let (step, _, _) = decide(d.path(), "0.1.0", &trusted, next.unwrap());
        assert!(matches!(step, Step::Exec(_, v) if v == "9.0.0"));
    }

    #[test]
    fn altered_files_untrusted_keys_and_newer_installs_are_never_started() {
        let d = tempfile::tempdir().unwrap();
        let (_, trusted) = key();
        let t = staged(d.path(), "9.0.0", b"v9", "job-1");
        std::fs::write(dir(d.path()).join(&t.file), b"v9 with a payload").unwrap();
        let (step, next, report) = decide(d.path(), "0.1.0", &trusted, t.clone());
        assert_eq!(step, Step::Own);
        assert!(next.is_none());
        assert!(
            report
                .unwrap()
                .text
                .contains("failed its check before it started")
        );
        // Untrusted now (the host removed the key).
        let (step, _, report) = decide(d.path(), "0.1.0", &[], t.clone());
        assert_eq!(step, Step::Own);
        assert!(report.unwrap().text.contains("cloud.update_keys"));
        // The installed package caught up with an active update: it is retired.
        let mut a = t;
        a.phase = Phase::Active;
        let (step, next, _) = decide(d.path(), "9.0.0", &trusted, a);
        assert_eq!(step, Step::Own);
        assert!(next.is_none());
    }

    #[test]
    fn an_unhealthy_trial_is_rolled_back_with_its_reason_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(d.path()).unwrap();
        store.job_accept("job-7", "updateAgent", "{}", 1).unwrap();
        store.job_start("job-7").unwrap();
        let t = staged(d.path(), "9.0.0", b"v9", "job-7");
        assert_eq!(pending_job(d.path()).as_deref(), Some("job-7"));
        assert!(matches!(
            confirm_or_fail(d.path(), &store, t, Err("no answer".into()), 5),
            Confirmed::No
        ));
        // The launcher at the next start: installed version, report left for the store.
        assert_eq!(launch(d.path(), &key().1), Launch::Installed);
        assert!(state(d.path()).is_none());
        assert!(!dir(d.path()).join("fleet-agent-9.0.0").exists());
        settle(d.path(), &store, 6);
        let j = store.recent_jobs(5).unwrap();
        let r = j.iter().find(|j| j.job_id == "job-7").unwrap();
        assert!(
            matches!(r.state, crate::store::jobs::JobState::Done),
            "{:?}",
            r.state
        );
        assert!(!dir(d.path()).join("report.json").exists());
    }
}
