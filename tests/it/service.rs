//! The agent as a service: the systemd unit verifies against the real binary; the
//! process tells systemd READY once listening, RELOADING/READY around a SIGHUP, pings the
//! watchdog, says STOPPING on SIGTERM and exits 0 within its stop deadline.
#![cfg(unix)]

use fleet_protocol::jobs::JobState;
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
    std::fs::write(
        &path,
        unit.replace("/usr/bin/fleet-agent", crate::common::bin()),
    )
    .unwrap();
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
    let ok = std::process::Command::new(crate::common::bin())
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
    let sim = crate::common::simulate(&[
        "--synthetic",
        "1",
        "--fleet-start",
        "127.93.0.1",
        "--port",
        "0",
    ]);
    let addr = sim.addrs[0];
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
    let mut agent = crate::common::Proc {
        child: std::process::Command::new(crate::common::bin())
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

/// `run --web-port` replaces `web.listen`'s port (the Windows installer's choice) and
/// `--log-file` receives the log (the Windows service's only log); a doubled SIGTERM is
/// one clean stop; `service` on Linux is a usage error that points to the systemd unit.
#[tokio::test]
async fn web_port_and_log_file_options_and_service_on_linux() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\nstop_timeout_secs = 5\n[web]\nlisten = \"127.0.0.1:9\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("logs").join("agent.log");
    let mut agent = crate::common::Proc {
        child: std::process::Command::new(crate::common::bin())
            .args(["run", "--config", conf.to_str().unwrap(), "--log-file"])
            .arg(&log)
            .args(["--web-port", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        first_line: String::new(),
    };
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let t = Instant::now();
    while !read().contains("Agent running.") {
        assert!(t.elapsed() < Duration::from_secs(20), "log: {}", read());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(read().contains(&format!("127.0.0.1:{port}")), "{}", read());
    let metrics = crate::common::http_get(port, "/metrics");
    assert!(metrics.contains("fleet_agent_"), "{metrics}");
    // Two SIGTERMs at once (a relayed stop: `timeout`, `sudo`, the terminal's process
    // group) are one stop request, not "quit now": a clean exit 0.
    let pid = agent.child.id().to_string();
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}; kill -TERM {pid}")])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    assert!(read().contains("Agent stopped."), "{}", read());
    // No colour codes in a file.
    assert!(!read().contains('\u{1b}'));

    let out = crate::common::run(&["service", "install", "--web-port", "8088"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("systemd"), "{err}");
}

/// SIGTERM while a job runs and the poller (status checks every second on printers whose
/// supplies fall fast) and the sender are busy: exit 0 within the stop deadline; after a
/// restart the interrupted job is reported (not rerun), the outbox drains and the cloud
/// holds every report exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_uploads_and_a_job_in_flight_loses_nothing() {
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = crate::common::cloud::start(dir.path(), &state).await;
    let (db, url, ca_file) = (&cloud.db, &cloud.url, &cloud.ca_file);
    let snmp_port = 34000 + (std::process::id() % 20000) as u16;
    // Printers that change fast: supplies fall, so deltas keep flowing.
    let sim = crate::common::synthetic_printers(
        2,
        21,
        50000.0,
        std::net::Ipv4Addr::new(127, 91, 0, 1),
        snmp_port,
        "public",
    )
    .await;
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\nstatus_interval_secs = 1\n\
             [discovery]\ninclude = [\"127.91.1.0/24\"]\nport = {snmp_port}\ninterval_secs = 86400\nnetwork_delay_us = 20000\n\
             [cloud]\nurl = \"{url}\"\nca_file = \"{}\"\n\
             [[printers]]\naddress = \"127.91.0.1:{snmp_port}\"\n[[printers]]\naddress = \"127.91.0.2:{snmp_port}\"\n",
            state.display(),
            ca_file.display()
        ),
    )
    .unwrap();
    let spawn = || crate::common::run_agent(&conf, None);
    let jobs = || async { cloud.jobs().await[0].clone() };

    let mut agent = spawn();
    crate::common::wait_for("both printers in the cloud", 30, || {
        (db.assets().unwrap().len() == 2).then_some(())
    })
    .await;
    // A discovery job that takes seconds (254 silent addresses at 50 probes/s).
    cloud.submit(&json!({ "type": "discover" })).await;
    for _ in 0..200 {
        if jobs().await.state == JobState::InProgress {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(jobs().await.state, JobState::InProgress);
    let t = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &agent.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(35),
            "stop deadline exceeded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
    eprintln!(
        "SIGTERM with a job in flight: exit after {} ms",
        t.elapsed().as_millis()
    );
    drop(agent);

    // Restart: the job is reported, the outbox drains, every report arrived once.
    let _agent = spawn();
    let mut job = jobs().await;
    let mut stats = None;
    for _ in 0..300 {
        job = jobs().await;
        let s = fleet_agent::store::Store::open(&state)
            .unwrap()
            .outbox_stats()
            .unwrap();
        let done = job.state == JobState::Failed && s.messages == 0;
        stats = Some(s);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    // Either the stop cut the discovery run short (reported before exit) or the job
    // was still running at exit (reported after the restart); never completed, never rerun.
    let text = crate::common::cloud::message(&job);
    assert!(
        text.contains("restarted") || text.contains("discovery stopped"),
        "{job:?}"
    );
    let stats = stats.unwrap();
    assert_eq!(stats.messages, 0, "{stats:?}");
    assert_eq!((stats.rejected, stats.dropped), (0, 0), "{stats:?}");
    let assets = db.assets().unwrap();
    for a in &assets {
        let seqs = db.applied_seqs(&a.agent_id, &a.serial).unwrap();
        assert_eq!(
            seqs,
            (1..=a.seq).collect::<Vec<u64>>(),
            "printer {}",
            a.serial
        );
    }
    assert_eq!(assets.len(), 2);
    sim.stop().await;
}
