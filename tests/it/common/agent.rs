//! The agent run in this test process (`fleet_agent::app::run` with its dependencies as
//! handles), not as a child process: on a thread of its own with a single-threaded
//! runtime, so its log goes to its own file (the thread's default subscriber) and a test
//! can run several agents side by side. Dropping it stands for a crash: the runtime is
//! dropped without the agent's orderly stop.

use fleet_agent::app::{self, Deps, Ended};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A running in-process agent.
pub struct InProcess {
    /// Where its local page listens.
    pub web: SocketAddr,
    /// Its state directory.
    pub state: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Option<Ended>>>,
}

impl InProcess {
    /// Starts the agent on the configuration file `conf` (its `[agent] state_dir`), its
    /// INFO log appended to `log` when given.
    ///
    /// # Panics
    /// When the configuration is invalid or the agent cannot start (a test harness).
    pub fn start(conf: &Path, log: Option<&Path>) -> InProcess {
        let source = fleet_agent::config::Source::read(conf).expect("readable configuration");
        let config = source.parse().expect("valid configuration");
        let state = config
            .state_dir
            .clone()
            .expect("the test configuration names [agent] state_dir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback listener");
        let web = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let (log, dir) = (log.map(Path::to_path_buf), state.clone());
        let thread = std::thread::spawn(move || {
            let (logs, _guard) =
                fleet_agent::telemetry::Logs::for_this_thread("info", log.as_deref())
                    .expect("agent log file");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut deps = Deps::new(dir, logs, fleet_agent::update::Launch::Installed);
            deps.listener = Some(listener);
            let ended = rt.block_on(async move {
                tokio::select! {
                    r = app::run(source, deps, async move { stop_rx.await.ok(); }) => {
                        Some(r.expect("the agent runs and stops cleanly"))
                    }
                    _ = kill_rx => None,
                }
            });
            // A kill leaves blocking work behind as a crash would: not waited for.
            rt.shutdown_background();
            ended
        });
        InProcess {
            web,
            state,
            stop: Some(stop_tx),
            kill: Some(kill_tx),
            thread: Some(thread),
        }
    }

    /// Stops the agent the orderly way (as SIGTERM does) and waits until it has.
    pub fn stop(mut self) -> Option<Ended> {
        if let Some(s) = self.stop.take() {
            s.send(()).ok();
        }
        self.thread.take().and_then(|t| t.join().ok()).flatten()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(k) = self.kill.take() {
            k.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}
