//! The hardening campaign's hostile printers (issue 18), served by `fleet-lab simulate
//! --hostile MODE`: the real binary's `poll`, `walk`, `discover` and `run` against each,
//! with the peak memory read from the kernel (wait4, or VmHWM of the running service)
//! and the time taken. Every run must stay under 64 MiB and finish within its deadline,
//! and what a budget cut must be said, never silently dropped.
//!
//! A test binary of its own: Linux counts a parent's resident memory at spawn time in
//! the child's peak (wait4's `ru_maxrss`), and the main test binary, running many agents
//! in process, is too large a parent for the figure to mean anything. Here the parent
//! holds only the simulated printers, and its own RSS at each spawn is printed beside.
#![cfg(unix)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::zombie_processes,
    reason = "black-box runs of child processes on real time, reaped by wait4"
)]

// The main test binary's harness; this binary uses a small part of it.
#[path = "../it/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use common::{Sim, bin, simulate};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Peak resident memory allowed for any run against a hostile printer.
const MAX_RSS_KIB: i64 = 64 * 1024;
const MODES: [&str; 4] = ["huge-values", "growing-oids", "flood", "long-serial"];

struct Measured {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    max_rss_kib: i64,
    took: Duration,
}

/// Runs `fleet-agent ARGS`, killed after `limit`; reads its peak RSS with wait4 (the
/// standard library's `wait` drops the kernel's resource usage).
#[allow(unsafe_code)]
fn measure(args: &[&str], limit: Duration) -> Measured {
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            r.read_to_end(&mut s).ok();
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            while started.elapsed() < limit {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !done.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: signalling our own child, not yet reaped (wait4 below reaps it).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        })
    };
    let mut status = 0;
    // SAFETY: plain syscall on our child's pid with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watchdog.join().unwrap();
    let took = started.elapsed();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Measured {
        code,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        max_rss_kib: usage.ru_maxrss,
        took,
    }
}

/// One hostile synthetic printer per mode, each on its own loopback address.
fn printers(port: u16) -> Vec<(&'static str, Sim, SocketAddr)> {
    let p = port.to_string();
    MODES
        .iter()
        .enumerate()
        .map(|(i, mode)| {
            let start = format!("127.78.{}.1", i + 1);
            let sim = simulate(&[
                "--synthetic",
                "1",
                "--hostile",
                mode,
                "--fleet-start",
                &start,
                "--port",
                &p,
            ]);
            let addr = sim.addrs[0];
            (*mode, sim, addr)
        })
        .collect()
}

/// A /proc/PID/status figure in KiB.
fn proc_kib(pid: &str, key: &str) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn check(what: &str, m: &Measured, limit: Duration) {
    eprintln!(
        "{what}: exit {:?}, {:.2} s, peak RSS {} KiB (this test process: {} KiB)",
        m.code,
        m.took.as_secs_f64(),
        m.max_rss_kib,
        proc_kib("self", "VmRSS:")
    );
    assert!(
        m.code.is_some(),
        "{what}: killed after {limit:?}\n{}",
        m.stderr
    );
    assert!(
        m.max_rss_kib < MAX_RSS_KIB,
        "{what}: peak RSS {} KiB",
        m.max_rss_kib
    );
}

#[test]
fn poll_and_walk_stay_bounded_against_every_hostile_printer() {
    let port = 24000 + (std::process::id() % 20000) as u16;
    let fleet = printers(port);
    for (mode, _sim, addr) in &fleet {
        let a = addr.to_string();
        let limit = Duration::from_secs(60);
        let m = measure(&["poll", &a, "--json"], limit);
        check(&format!("poll {mode}"), &m, limit);
        match *mode {
            // The 129th arc makes the reply malformed: an unusable answer, said so.
            "growing-oids" => {
                assert_eq!(m.code, Some(5), "{}", m.stderr);
                assert!(m.stderr.contains("128 sub-identifiers"), "{}", m.stderr);
                assert_eq!(
                    m.stderr.matches("128 sub-identifiers").count(),
                    1,
                    "{}",
                    m.stderr
                );
            }
            _ => {
                assert_eq!(m.code, Some(0), "{mode}: {}", m.stderr);
                let r: serde_json::Value = serde_json::from_str(&m.stdout).unwrap();
                let cuts = r["device"]["cuts"].as_array().cloned().unwrap_or_default();
                assert!(!cuts.is_empty(), "{mode}: the cuts are said: {r}");
                assert!(
                    m.stdout.len() < 512 * 1024,
                    "{mode}: {} bytes",
                    m.stdout.len()
                );
                assert!(r["supplies"].as_array().unwrap().len() <= 256);
                if *mode == "long-serial" {
                    // A 60,000-character serial is not an identity.
                    assert!(r["serialNumber"].is_null(), "{}", r["serialNumber"]);
                    assert!(
                        cuts[0].as_str().unwrap().contains("60000 bytes"),
                        "{cuts:?}"
                    );
                }
                if *mode == "flood" {
                    assert!(
                        cuts.iter()
                            .any(|c| c.as_str().unwrap().contains("rows, the first 256 kept")),
                        "{cuts:?}"
                    );
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("walk.snmprec");
        let limit = Duration::from_secs(fleet_snmp::walk::WALK_DEADLINE.as_secs() + 30);
        let m = measure(&["walk", &a, "1.3.6.1", "-o", out.to_str().unwrap()], limit);
        check(&format!("walk {mode}"), &m, limit);
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        match *mode {
            "growing-oids" => assert_eq!(m.code, Some(5), "{}", m.stderr),
            "huge-values" | "flood" => {
                assert_eq!(m.code, Some(0), "{}", m.stderr);
                assert!(
                    m.stderr.contains("the output is incomplete"),
                    "{}",
                    m.stderr
                );
                assert!(size < 32 << 20, "{size} bytes written");
            }
            _ => assert_eq!(m.code, Some(0), "{}", m.stderr),
        }
    }
}

#[test]
fn discovery_and_the_service_stay_bounded_against_hostile_printers() {
    let port = 25000 + (std::process::id() % 20000) as u16;
    let fleet = printers(port);
    let dir = tempfile::tempdir().unwrap();
    // `discover` sweeps the four addresses (and their neighbours) and ends.
    let limit = Duration::from_secs(120);
    let m = measure(
        &[
            "discover",
            // Not the default state directory: run as root that is /var/lib/fleet-agent.
            "--no-store",
            "--target",
            "127.78.1.1-127.78.4.3",
            "--port",
            &port.to_string(),
            "--json",
        ],
        limit,
    );
    check("discover", &m, limit);
    assert!(m.code.is_some_and(|c| c == 0), "{}", m.stderr);
    // The service polls all four; its peak memory is read while it runs.
    let conf = dir.path().join("agent.toml");
    let mut text = format!(
        "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 8\n",
        dir.path().join("state").display()
    );
    for (_, _, addr) in &fleet {
        text.push_str(&format!("[[printers]]\naddress = \"{addr}\"\n"));
    }
    std::fs::write(&conf, text).unwrap();
    let mut agent = Command::new(bin())
        .args(["run", "--config", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut polled = 0;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(100));
        let out = common::run(&["status", "--config", conf.to_str().unwrap(), "--json"]);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            // Three readings (growing-oids never gives one) and four polls tried.
            polled = v
                .as_array()
                .map_or(0, |a| a.iter().filter(|p| !p["report"].is_null()).count());
            let tried = v.as_array().map_or(0, |a| {
                a.iter()
                    .filter(|p| p["printer"]["health"] != "unknown")
                    .count()
            });
            if polled == 3 && tried == 4 {
                break;
            }
        }
    }
    let hwm = proc_kib(&agent.id().to_string(), "VmHWM:");
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent is still running"
    );
    agent.kill().ok();
    agent.wait().ok();
    eprintln!("run: peak RSS {hwm} KiB with four hostile printers");
    assert_eq!(polled, 3, "three hostile printers gave a reading");
    assert!(hwm < MAX_RSS_KIB, "run: peak RSS {hwm} KiB");
    // What was stored and queued for the cloud is bounded too.
    let store = fleet_agent::store::Store::open(&dir.path().join("state")).unwrap();
    for row in store.printers().unwrap() {
        if let Some(r) = store.latest_report(row.id).unwrap() {
            assert!(
                r.len() < 512 * 1024,
                "{}: {} bytes stored",
                row.address,
                r.len()
            );
        }
    }
}
