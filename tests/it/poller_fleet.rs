//! The scheduled poller against a simulated fleet over real UDP: some printers stop
//! answering and come back; their states and readings follow, healthy printers keep
//! their cadence while sick ones back off. Also the `run`/`status`/`config` commands.

use fleet_agent::config::PollerConfig;
use fleet_agent::poller::scheduler::{Managed, Observed, Poller};
use fleet_agent::store::{Health, Store};
use fleet_agent::telemetry::Metrics;
use fleet_sim::{self, Layout, Simulator, synth};
use fleet_snmp::{Security, Target, UdpClient};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sick_printers_back_off_and_recover_while_healthy_ones_keep_cadence() {
    let port = 21000 + (std::process::id() % 20000) as u16;
    let printers = fleet_sim::synthetic_fleet(
        6,
        synth::SynthParams {
            speed: 3600.0,
            seed: 5,
        },
    );
    let sim = Simulator::start(
        printers,
        Layout::Fleet {
            start: Ipv4Addr::new(127, 66, 0, 1),
            port,
            community: "public".into(),
        },
        vec![],
    )
    .await
    .unwrap();
    let addrs = sim.addrs();
    let store = Store::open_in_memory().unwrap();
    let managed: Vec<Managed> = addrs
        .iter()
        .map(|a| {
            let mut t = Target::new(*a, Security::v2c("public"));
            t.timeout = Duration::from_millis(150);
            t.retries = 0;
            Managed {
                target: t,
                printer_id: store.printer_id(&a.to_string()).unwrap(),
            }
        })
        .collect();
    let cfg = PollerConfig {
        interval: Duration::from_millis(1000),
        deadline: Duration::from_millis(800),
        max_in_flight: 8,
        backoff_max: Duration::from_millis(4000),
        not_communicating_after: 2,
        max_pages_per_minute: 1_000_000,
        status_interval: None,
    };
    let (poller, handle) = Poller::new(
        UdpClient::new().unwrap(),
        cfg,
        managed,
        Some(store.clone()),
        Arc::new(Metrics::new()),
    );
    let (tx, mut rx) = mpsc::unbounded_channel::<Observed>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(poller.observe(tx).run(async move {
        stop_rx.await.ok();
    }));
    let sick: Vec<SocketAddr> = addrs[..2].to_vec();
    // Let everyone be polled once, then silence two printers for ~5 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for a in &sick {
        assert!(sim.set_silent(*a, true));
    }
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let mid: Vec<_> = store.printers().unwrap();
    for row in &mid {
        let a: SocketAddr = row.address.parse().unwrap();
        if sick.contains(&a) {
            assert_eq!(row.health, Health::NotCommunicating, "{a}");
            assert!(
                row.health_reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("no response")
            );
        } else {
            assert_eq!(row.health, Health::Ok, "{a}");
        }
    }
    // They come back; one is sighted (recovers at once), the other on its next retry.
    for a in &sick {
        sim.set_silent(*a, false);
    }
    handle.sighted(sick[0]);
    tokio::time::sleep(Duration::from_millis(5000)).await;
    stop_tx.send(()).ok();
    task.await.unwrap();
    let mut obs = Vec::new();
    while let Ok(o) = rx.try_recv() {
        obs.push(o);
    }
    for row in store.printers().unwrap() {
        assert_eq!(row.health, Health::Ok, "{} recovered", row.address);
        assert!(row.serial.is_some());
        let report: serde_json::Value =
            serde_json::from_str(&store.latest_report(row.id).unwrap().unwrap()).unwrap();
        assert!(report["counters"]["lifetimeCount"].as_u64().unwrap() > 0);
    }
    // Healthy printers: polled about once per second throughout (≥ 9 polls in 11.5 s).
    for a in &addrs[2..] {
        let n = obs.iter().filter(|o| o.addr == *a).count();
        assert!(n >= 9, "{a}: {n} polls");
        assert!(
            obs.iter()
                .filter(|o| o.addr == *a)
                .all(|o| o.failure.is_none())
        );
    }
    // Sick printers: fewer attempts while silent (backoff), failures then recovery.
    for a in &sick {
        let mine: Vec<&Observed> = obs.iter().filter(|o| o.addr == *a).collect();
        let failures = mine.iter().filter(|o| o.failure.is_some()).count();
        assert!(
            (2..=4).contains(&failures),
            "{a}: {failures} failed polls while silent for 5 s"
        );
        assert!(mine.last().unwrap().failure.is_none(), "{a} recovered");
    }
    let events: Vec<String> = store
        .events(store.printer_id(&sick[0].to_string()).unwrap())
        .unwrap()
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(
        events,
        [
            "healthChanged",
            "healthChanged",
            "healthChanged",
            "healthChanged"
        ],
        "unknown→ok→suspect→not communicating→ok"
    );
    sim.stop().await;
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "a synchronous black-box test waiting on a child process"
)]
fn run_status_and_config_commands_work_end_to_end() {
    let port = 22000 + (std::process::id() % 20000) as u16;
    let p = port.to_string();
    let _sim = crate::common::simulate(&[
        "--synthetic",
        "2",
        "--fleet-start",
        "127.67.0.1",
        "--port",
        &p,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let web_port = 23000 + (std::process::id() % 20000) as u16;
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:{web_port}\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
             [[printers]]\naddress = \"127.67.0.1:{port}\"\n[[printers]]\naddress = \"127.67.0.2:{port}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let out = crate::common::run(&["config", "validate", conf.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut agent = std::process::Command::new(crate::common::bin())
        .args(["run", "--config", conf.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for both printers to be stored.
    let mut ok = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        let out = crate::common::run(&["status", "--config", conf.to_str().unwrap(), "--json"]);
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if v.as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|p| p["printer"]["health"] == "ok"))
            {
                assert!(
                    v[0]["report"]["serialNumber"]
                        .as_str()
                        .unwrap()
                        .starts_with("FA")
                );
                ok = true;
                break;
            }
        }
    }
    assert!(ok, "both printers polled and stored");
    // A stored reading reaches the outbox a moment later (the uploader gathers readings
    // for 250 ms before one trip to the store): wait for both snapshots, up to 5 s.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = crate::common::http_get(web_port, "/metrics");
        if metrics.contains("fleet_agent_uploads_queued_total{kind=\"snapshot\"} 2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        metrics.contains("fleet_agent_printers{health=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("fleet_agent_polls_total"));
    // Healthy agents: requests counted, none spent on probes.
    assert!(
        metrics.lines().any(|l| l
            .strip_prefix("fleet_agent_snmp_requests_total ")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 2)),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleet_agent_snmp_probes_total 0\n"),
        "{metrics}"
    );
    // Each new printer's first reading queued one snapshot in the durable outbox.
    assert!(
        metrics.contains("fleet_agent_uploads_queued_total{kind=\"snapshot\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleet_agent_outbox_messages 2"),
        "{metrics}"
    );
    // SIGTERM-like stop through the shutdown path: the process exits cleanly.
    agent.kill().ok();
    agent.wait().ok();
    let human = crate::common::run(&["status", "--config", conf.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&format!("127.67.0.1:{port}")) && text.contains("ok"),
        "{text}"
    );

    std::fs::write(
        &conf,
        "[poller]\ninterval_secs = 1\n[[printers]]\naddress = \"nowhere\"\n",
    )
    .unwrap();
    let out = crate::common::run(&["config", "validate", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("poller.interval_secs") && err.contains("printers[0].address"),
        "{err}"
    );
    let out = crate::common::run(&["config", "default"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("[poller]"));
}
