//! What differs between Linux and Windows hosts (owner-only files are
//! `fleet_secret::owner_only`): the state directory's lock, stop signals (a second one
//! quits at once), and service-manager notifications (systemd `Type=notify`: READY,
//! RELOADING, STOPPING, watchdog; on Windows the service control manager, see `winsvc`).

use std::path::Path;

#[cfg(windows)]
pub mod winsvc;

/// Claims the state directory for this agent process: an exclusive lock on
/// `<dir>/agent.lock` (holding the pid), held until the returned file is dropped or the
/// process ends (also across an update's `exec`, which closes it: the next version takes
/// it again). Two agents on one store would run each job twice and race on every file.
///
/// # Errors
/// Another process holds it (naming its pid), or the file cannot be opened.
pub fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let path = dir.join("agent.lock");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            f.seek(std::io::SeekFrom::Start(0))?;
            write!(f, "{}", std::process::id())?;
            Ok(f)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            f.read_to_string(&mut pid).ok();
            anyhow::bail!(
                "{}: another agent (pid {}) runs with this state directory; stop it first (systemctl stop fleet-agent) or give this one another --state-dir",
                dir.display(),
                pid.trim()
            )
        }
        // A file system without locks (some network mounts): run, but say so.
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::warn!(file = %path.display(), error = %e, "The state directory cannot be locked; make sure only one agent uses it.");
            Ok(f)
        }
    }
}

/// Resolves at the first stop request (Ctrl-C, SIGTERM; on Windows Ctrl-C, and the
/// service manager's stop through the same path). After it, a second request quits at
/// once with status 130 instead of waiting for the components' stop deadline.
pub async fn shutdown_signal() {
    stop_request().await;
    let first = tokio::time::Instant::now();
    tokio::spawn(async move {
        loop {
            stop_request().await;
            // One Ctrl-C or stop often arrives twice within milliseconds (the terminal
            // signals the whole process group and `sudo`, `runuser` or `timeout` relay
            // it too): only a request a moment later means "quit now".
            if first.elapsed() >= DUPLICATE_WINDOW {
                break;
            }
            tracing::debug!("Repeated stop request ignored (same stop).");
        }
        tracing::warn!("Second stop request: quitting at once.");
        std::process::exit(130);
    });
}

/// Stop requests this close to the first one are the same request relayed twice.
const DUPLICATE_WINDOW: std::time::Duration = std::time::Duration::from_millis(500);

/// A stop request from inside the process: the Windows service manager's stop or
/// shutdown control arrives on its own thread and joins the one shutdown path here.
static STOP: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

/// Asks the running agent to stop, exactly as SIGTERM does (the second request quits at
/// once). Safe to call from any thread, before or while [`shutdown_signal`] waits.
pub fn request_stop() {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
    STOP.notify_one();
}

/// The longest `agent.stop_timeout_secs` allowed, in seconds.
pub const MAX_STOP_TIMEOUT_SECS: u64 = 300;

/// The longest a stopping agent process may take: the longest stop timeout, then the web
/// listener's turn and the exit. What the Windows service manager is told a stop may take,
/// and how long the update launcher gives a child asked to stop before killing it.
pub const STOP_BOUND: std::time::Duration =
    std::time::Duration::from_secs(MAX_STOP_TIMEOUT_SECS + 10);

/// Set at the first [`request_stop`]: read by a launcher that waits on a child process
/// rather than on the async shutdown path.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a stop was requested from inside the process ([`request_stop`]).
pub fn stop_requested() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// For an agent run as a child by the update launcher ([`crate::update`]): its standard
/// input closing (the launcher asked it to stop, or the launcher itself is gone) is a
/// stop request like SIGTERM's. The reading thread is detached: it never holds the
/// process up at exit.
pub fn stop_when_stdin_closes() {
    std::thread::spawn(|| {
        use std::io::Read;
        let mut buf = [0_u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        tracing::info!("The launcher closed this agent's input: stopping.");
        request_stop();
    });
}

/// Turns the operating system's stop requests (SIGTERM, Ctrl-C) into [`request_stop`],
/// for a process that waits on a launched child rather than on [`shutdown_signal`].
/// Runs until the first one.
pub async fn relay_os_stop() {
    os_stop_request().await;
    request_stop();
}

async fn stop_request() {
    tokio::select! {
        () = STOP.notified() => {}
        () = os_stop_request() => {}
    }
}

async fn os_stop_request() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    tokio::signal::ctrl_c().await.ok();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        // A service may have no console: then only the service manager stops it.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Whether a service manager started the agent and starts it again after it exits with
/// a failure status (systemd sets `INVOCATION_ID` for its services; the Windows service
/// runs under the SCM).
pub fn service_manager() -> bool {
    #[cfg(windows)]
    {
        winsvc::running()
    }
    #[cfg(not(windows))]
    {
        std::env::var_os("INVOCATION_ID").is_some() || std::env::var_os("NOTIFY_SOCKET").is_some()
    }
}

/// What the service manager is told (systemd's sd_notify; nothing elsewhere or when the
/// agent was not started by systemd with `Type=notify`).
#[derive(Debug, Clone, Copy)]
pub enum ServiceState<'a> {
    /// Listeners bound, components started.
    Ready(&'a str),
    /// Re-reading the configuration (READY follows).
    Reloading,
    /// Stopping.
    Stopping,
    /// Still alive (the watchdog).
    Alive,
}

/// Tells the service manager about the agent's state. Errors are ignored: a missing or
/// broken notification socket must not stop the agent.
pub fn notify(state: ServiceState<'_>) {
    #[cfg(unix)]
    {
        use sd_notify::NotifyState as N;
        let mono = N::monotonic_usec_now().ok();
        let states: Vec<N<'_>> = match state {
            ServiceState::Ready(status) => vec![N::Ready, N::Status(status)],
            ServiceState::Reloading => {
                let mut v = vec![N::Reloading];
                v.extend(mono);
                v
            }
            ServiceState::Stopping => vec![N::Stopping, N::Status("stopping")],
            ServiceState::Alive => vec![N::Watchdog],
        };
        sd_notify::notify(&states).ok();
    }
    #[cfg(windows)]
    winsvc::notify(state);
    #[cfg(not(any(unix, windows)))]
    let _ = state;
}

/// How often to tell the watchdog the agent is alive (half of `WatchdogSec`), when the
/// service manager asked for it.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    #[cfg(unix)]
    {
        sd_notify::watchdog_enabled().map(|d| d / 2)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_state_directory_serves_one_agent_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let held = lock_state_dir(d.path()).unwrap();
        let e = lock_state_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("another agent (pid {})", std::process::id())),
            "{e}"
        );
        drop(held);
        lock_state_dir(d.path()).unwrap();
    }
}
