//! The launcher: at each start, the installed binary runs the verified staged version,
//! rolls a failed trial back, or runs itself; and the restart that gets there.

use super::staging::*;
use super::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What the launcher does at a start.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Run the installed binary (this process).
    Own,
    /// Start this staged version.
    Exec(PathBuf, String),
}

/// The launcher's decision for one state, with the state and report to write first.
pub(super) fn decide(
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

pub(super) fn rollback(s: Staged, why: String) -> (Step, Option<Staged>, Option<Report>) {
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
    /// This process ran staged versions as its children ([`child_handover`]) until one
    /// ended without a restart to follow: its exit status, this process's too.
    Ran(i32),
}

/// Called at the start of `run`: starts the staged version when there is one that
/// passes its checks, rolls a failed trial back, or returns to let the installed binary
/// run. The staged version replaces this process (`exec`: it does not return then) or,
/// with [`child_handover`], runs as a child with `child_args` while this process waits,
/// stops it when asked to, and starts what follows when it exits for a restart.
// The real clock and a blocking wait: this runs on a thread of its own before any
// component (or the agent's injectable clock) exists, and only waits on a process.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
pub fn launch(state_dir: &Path, trusted: &[String], child_args: &[OsString]) -> Launch {
    if let Some(v) = std::env::var_os(LAUNCHED) {
        return Launch::Staged(v.to_string_lossy().into_owned());
    }
    let own = env!("CARGO_PKG_VERSION");
    let mut current = state(state_dir);
    // Decisions without a start in between: at most a trial rolled back, then the
    // previous version's own decision.
    let mut turns = 0;
    loop {
        // Asked to stop between two children: nothing more starts, and no trial's start
        // is counted for a run that never happened.
        if child_handover() && crate::platform::stop_requested() {
            return Launch::Ran(0);
        }
        // With an update staged, before deciding, so that a stop during the wait counts
        // no trial either. (With none, the agent runs in this process and its own lock
        // says at once when another agent holds the directory.)
        if child_handover() && current.is_some() && !wait_for_state_dir(state_dir) {
            return Launch::Ran(0);
        }
        turns += 1;
        let Some(s) = current.take().filter(|_| turns <= 3) else {
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
        let trial = next.as_ref().is_some_and(|n| n.phase == Phase::Trial);
        match step {
            Step::Exec(path, version) if child_handover() => {
                let started = std::time::Instant::now();
                match run_child(&path, &version, child_args) {
                    Ok(code) => {
                        tracing::info!(version = %version, code, "The staged agent version exited.");
                        // Stopped as asked: a clean stop for the service manager, whatever
                        // the child's status (a kill at the deadline, a restart it had
                        // asked for), or its recovery actions would start it again.
                        if crate::platform::stop_requested() {
                            return Launch::Ran(0);
                        }
                        // A restart it asked for, or a trial that died: what follows
                        // (the next version, or the rollback) is decided now.
                        let again = code == EXIT_RESTART || (code != 0 && trial);
                        if !again {
                            return Launch::Ran(code);
                        }
                        if started.elapsed() < RESTART_PAUSE {
                            std::thread::sleep(RESTART_PAUSE);
                        }
                    }
                    Err(e) => {
                        tracing::error!(version = %version, error = %e, "The staged agent could not be started.");
                        if !trial {
                            return Launch::Installed;
                        }
                    }
                }
                turns = 0;
                current = state(state_dir);
            }
            Step::Exec(path, version) => {
                let err = exec(&path, &version);
                tracing::error!(version = %version, error = %err, "The staged agent could not be started.");
                // Counted as a failed start: the next start rolls it back.
                if trial {
                    current = next;
                    continue;
                }
                return Launch::Installed;
            }
            Step::Own if report.is_some() => current = next,
            Step::Own => return Launch::Installed,
        }
    }
}

/// The least time between two starts of a staged version by the launcher (systemd's
/// unit waits as long before a restart).
const RESTART_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a child asked to stop may take before it is killed.
const CHILD_STOP_DEADLINE: std::time::Duration = crate::platform::STOP_BOUND;

/// Waits (up to [`CHILD_STOP_DEADLINE`]) until no other agent holds the state directory:
/// a child of a launcher that was killed may still be stopping, and a new child started
/// beside it would fail on the lock (and a trial would be rolled back for it). A stop
/// asked meanwhile ends the wait at once: false then.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)] // as for `launch`
fn wait_for_state_dir(state_dir: &Path) -> bool {
    let until = std::time::Instant::now() + CHILD_STOP_DEADLINE;
    let mut said = false;
    loop {
        match crate::platform::lock_state_dir(state_dir) {
            Ok(lock) => {
                drop(lock);
                return true;
            }
            Err(_) if crate::platform::stop_requested() => return false,
            Err(e) if std::time::Instant::now() < until => {
                if !said {
                    tracing::warn!(error = %e, "Another agent still holds the state directory; waiting for it before starting the staged version.");
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(_) => return true,
        }
    }
}

/// Runs a staged version as a child and waits for it: its input is a pipe whose closing
/// asks it to stop (when this process is asked to, or dies), killed if it has not
/// stopped by [`CHILD_STOP_DEADLINE`]. Its exit status, or why it could not start.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)] // as for `launch`
fn run_child(path: &Path, version: &str, args: &[OsString]) -> std::io::Result<i32> {
    use std::process::{Command, Stdio};
    tracing::info!(version, file = %path.display(), "Starting the staged agent version (child process).");
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env(LAUNCHED, version)
        .env(LAUNCHER, std::env::current_exe().unwrap_or_default())
        .env(SUPERVISED, "1")
        .stdin(Stdio::piped());
    // No console of its own (a service has none to share): console events (logoff,
    // shutdown, Ctrl-C of a console that is not the agent's) must not end it; its stop
    // comes through its input.
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        cmd.creation_flags(CREATE_NO_WINDOW);
    }
    let mut child = cmd.spawn()?;
    // This process is what the service manager knows: running (and accepting the stop
    // control, on Windows) while its child runs.
    crate::platform::notify(crate::platform::ServiceState::Ready(&format!(
        "running version {version} (child process {})",
        child.id()
    )));
    let mut input = child.stdin.take();
    let mut deadline = None;
    loop {
        if let Some(status) = child.try_wait()? {
            // No code: ended by a signal (Unix), a failure.
            return Ok(status.code().unwrap_or(1));
        }
        if input.is_some() && crate::platform::stop_requested() {
            tracing::info!(version, "Asking the staged agent version to stop.");
            input = None;
            deadline = Some(std::time::Instant::now() + CHILD_STOP_DEADLINE);
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            tracing::error!(
                version,
                "The staged agent version did not stop in time; killed."
            );
            child.kill().ok();
            return Ok(child.wait()?.code().unwrap_or(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
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
