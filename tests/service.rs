//! The agent as a service: the systemd unit verifies against the real binary; the
//! process tells systemd READY once listening, RELOADING/READY around a SIGHUP, pings the
//! watchdog, says STOPPING on SIGTERM and exits 0 within its stop deadline.
#![cfg(unix)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;
use tokio::time::Instant;

#[test]
#[ignore = "needs systemd-analyze (Debian systemd); .ci/run runs it"]
fn the_systemd_unit_verifies_against_the_built_binary() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("packaging/systemd/fleet-agent.service"),
    )
    .unwrap();
    for want in [
        "Type=notify",
        "ExecReload=",
        "ExecStartPre=/usr/bin/fleet-agent config validate",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "StateDirectory=fleet-agent",
        "User=fleet-agent",
        "WatchdogSec=",
    ] {
        assert!(unit.contains(want), "the unit lacks {want}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet-agent.service");
    std::fs::write(&path, unit.replace("/usr/bin/fleet-agent", common::bin())).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ExecStartPre's command accepts the shipped configuration.
    let ok = std::process::Command::new(common::bin())
        .args(["config", "validate", "config/fleet-agent.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(ok.status.success());
}

fn recv_until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let until = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        sock.set_read_timeout(Some(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = msg.lines().any(|l| l == want);
        seen.push(msg);
        if done {
            return seen;
        }
    }
    panic!("no {want} within {within:?}; got {seen:?}");
}

#[test]
fn sd_notify_ready_reload_watchdog_stopping_and_a_clean_exit() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let sim = common::simulate(&[
        "--synthetic",
        "1",
        "--fleet-start",
        "127.93.0.1",
        "--port",
        "0",
    ]);
    let addr: std::net::SocketAddr = sim
        .first_line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {:?}", sim.first_line));
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
             [[printers]]\naddress = \"{addr}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut agent = common::Proc {
        child: std::process::Command::new(common::bin())
            .args(["run", "--config", conf.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "1000000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        first_line: String::new(),
    };
    let seen = recv_until(&sock, "READY=1", Duration::from_secs(20));
    let ready = started.elapsed();
    assert!(seen.last().unwrap().contains("STATUS=running"), "{seen:?}");
    eprintln!("start-up to READY=1: {} ms", ready.as_millis());
    recv_until(&sock, "WATCHDOG=1", Duration::from_secs(3));

    let pid = agent.child.id().to_string();
    let kill = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    kill("-HUP");
    let seen = recv_until(&sock, "RELOADING=1", Duration::from_secs(10));
    assert!(
        seen.last().unwrap().contains("MONOTONIC_USEC="),
        "RELOADING carries the time: {seen:?}"
    );
    recv_until(&sock, "READY=1", Duration::from_secs(20));

    let t = Instant::now();
    kill("-TERM");
    recv_until(&sock, "STOPPING=1", Duration::from_secs(10));
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(35),
            "stop deadline exceeded"
        );
        // Waits a little (on the socket: the agent may still say something).
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        sock.recv(&mut [0u8; 512]).ok();
    };
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
    eprintln!("SIGTERM to exit: {} ms", t.elapsed().as_millis());
}
