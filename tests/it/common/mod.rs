//! Shared test harness: run the real binary, start simulators, locate fixtures.
#![allow(dead_code)]

pub mod agent;
pub mod cloud;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Path of the built `fleet-agent` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleet-agent")
}

/// The project's own small fixtures.
pub fn own_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snmprec")
}

/// The LibreNMS recordings (GPL-3.0 data, never copied into the project):
/// `$FLEET_AGENT_LIBRENMS_DIR`, default `../shared/fixtures/librenms`.
pub fn librenms_dir() -> PathBuf {
    std::env::var_os("FLEET_AGENT_LIBRENMS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/librenms")
        })
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub first_line: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Simulated printers served in process on a thread of their own (its own runtime, so
/// synchronous tests can use them too); stopped on drop.
pub struct Sim {
    /// Where the printers answer (one address on a single port, one per printer in
    /// fleet mode).
    pub addrs: Vec<SocketAddr>,
    /// Recording lines that were skipped, as `file:line: why`.
    pub warnings: Vec<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// Starts simulated printers from `fleet-lab simulate`'s arguments (`--data-dir`,
/// `--listen`, `--synthetic`, `--fleet-start`, `--port`, `--v3-user`, ...).
pub fn simulate(args: &[&str]) -> Sim {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        args: fleet_sim::cli::SimulateArgs,
    }
    let cmd = Cmd::try_parse_from(std::iter::once("simulate").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("simulator arguments {args:?}: {e}"));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            match cmd.args.start().await {
                Ok((sim, warnings)) => {
                    let warnings = warnings.iter().map(ToString::to_string).collect();
                    ready_tx.send(Ok((sim.addrs(), warnings))).ok();
                    stop_rx.await.ok();
                    sim.stop().await;
                }
                Err(e) => {
                    ready_tx.send(Err(e.to_string())).ok();
                }
            }
        });
    });
    let (addrs, warnings) = ready_rx
        .recv()
        .expect("the simulator thread")
        .unwrap_or_else(|e| panic!("simulator did not start: {e}"));
    Sim {
        addrs,
        warnings,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// Starts the simulator on one loopback port serving `dir`; returns it and its address.
pub fn simulate_dir(dir: &Path, extra: &[&str]) -> (Sim, SocketAddr) {
    let mut args = vec![
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let s = simulate(&args);
    let addr = s.addrs[0];
    (s, addr)
}

/// Starts `fleet-agent run --config CONF`, killed on drop. With `log`, its INFO log is
/// appended there (a restarted agent adds to the same file); without, it is dropped.
pub fn run_agent(conf: &Path, log: Option<&Path>) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config", conf.to_str().unwrap()])
        .stdout(Stdio::null());
    match log {
        Some(log) => cmd.env("FLEET_AGENT_LOG", "info").stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        ),
        None => cmd.stderr(Stdio::null()),
    };
    Proc {
        child: cmd.spawn().expect("spawn fleet-agent run"),
        first_line: String::new(),
    }
}

/// Serves `n` synthetic printers (`seed`; supplies fall at `speed`, 0 = still) in process
/// on consecutive loopback addresses from `start`, all on `port` with a v2c community.
pub async fn synthetic_printers(
    n: usize,
    seed: u64,
    speed: f64,
    start: std::net::Ipv4Addr,
    port: u16,
    community: &str,
) -> fleet_sim::Simulator {
    use fleet_sim::{Layout, Simulator, synth};
    Simulator::start(
        fleet_sim::synthetic_fleet(n, synth::SynthParams { speed, seed }),
        Layout::Fleet {
            start,
            port,
            community: community.into(),
        },
        vec![],
    )
    .await
    .expect("start the simulated printers")
}

/// Polls `f` every 100 ms for up to `secs`; panics naming `what` if it never answers.
pub async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..secs * 10 {
        if let Some(x) = f() {
            return x;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// Runs `fleet-agent ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run fleet-agent")
}

/// Runs `fleet-agent poll ADDR ARGS --json` and parses the report.
pub fn poll_json(addr: SocketAddr, args: &[&str]) -> serde_json::Value {
    let a = addr.to_string();
    let mut all = vec!["poll", a.as_str(), "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(
        out.status.success(),
        "poll {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("poll --json output is JSON")
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (the agent's local listener); returns the raw reply.
pub fn http_get(port: u16, path: &str) -> String {
    http_get_with(port, path, "")
}

fn http_get_with(port: u16, path: &str, extra: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{extra}\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// As [`http_get`] with a session of the local page (no agent password set).
pub fn http_get_session(port: u16, path: &str) -> String {
    let hello = http_get(port, "/api/session");
    let cookie = hello
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in {hello}"))
        .to_string();
    http_get_with(port, path, &format!("Cookie: {cookie}\r\n"))
}
