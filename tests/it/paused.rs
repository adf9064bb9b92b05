//! Days of an agent's life in seconds: the whole agent (`app::run` with its handles:
//! supervisor, poller, uploader, outbox, page) on a runtime whose time is paused, its
//! printers in memory (`FakeSnmp` serving the simulator's synthetic printers, whose page
//! counters and supplies move with tokio's clock) and its wall clock following tokio's.
//! Tokio moves time only when every task waits, so the test sees what the agent does over
//! the simulated hours without sleeping through them, and sees the same thing every run.
//!
//! No cloud here: a real HTTPS exchange cannot share paused time (tokio would jump to the
//! next timer while a reply is on the wire), so uploads stay in the outbox, which is what
//! the sender later replays in order (`cloud_e2e` covers the wire).

use fleet_agent::app::{self, Deps, Ended};
use fleet_agent::clock::Clock;
use fleet_protocol::upload::Report;
use fleet_sim::synth::{MODELS, SynthParams, SynthPrinter, Template};
use fleet_snmp::fake::FakeSnmp;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const HOUR_MS: i64 = 3600 * 1000;

/// `n` synthetic printers printing in simulated time (speed 1: 40-120 pages an hour, so
/// supplies fall) at 127.97.0.1.. port 161; the `idle` last ones print nothing.
fn printers(n: u8, idle: u8) -> (FakeSnmp, Vec<SocketAddr>) {
    let fake = FakeSnmp::new();
    let addrs: Vec<SocketAddr> = (1..=n)
        .map(|i| SocketAddr::from(([127, 97, 0, i], 161)))
        .collect();
    for (i, a) in addrs.iter().enumerate() {
        let t = Template::new(&MODELS[i % MODELS.len()]);
        let speed = if i + usize::from(idle) >= usize::from(n) {
            0.0
        } else {
            1.0
        };
        let p = SynthPrinter::new(t, i as u32 + 1, SynthParams { speed, seed: 5 });
        fake.add_store(*a, Box::new(p));
    }
    (fake, addrs)
}

/// A running agent on this (paused) runtime.
struct Agent {
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<anyhow::Result<Ended>>,
    state: std::path::PathBuf,
    start_ms: i64,
    _log: tracing::subscriber::DefaultGuard,
}

fn start(dir: &Path, fake: &FakeSnmp, addrs: &[SocketAddr], extra: &str) -> Agent {
    let clock = Clock::following_tokio(Clock::system().now_ms());
    let state = dir.join("state");
    let conf = dir.join("agent.toml");
    let printers: String = addrs
        .iter()
        .map(|a| format!("[[printers]]\naddress = \"{a}\"\n"))
        .collect();
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[poller]\ninterval_secs = 3600\ndeadline_secs = 20\nbackoff_max_secs = 7200\n{extra}\
             [[snmp_profiles]]\nname = \"default\"\nauth = {{ type = \"v2c\", community = \"public\" }}\ntimeout_ms = 2000\nretries = 1\n{printers}",
            state.display(),
        ),
    )
    .unwrap();
    let source = fleet_agent::config::Source::read(&conf).unwrap();
    let (logs, guard) =
        fleet_agent::telemetry::Logs::for_this_thread("info", Some(&dir.join("agent.log")))
            .unwrap();
    let mut deps = Deps::new(state.clone(), logs, fleet_agent::update::Launch::Installed)
        .with_clock(clock.clone());
    deps.listener = Some(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    deps.snmp = Some(fleet_agent::poller::Snmp::Fake(fake.clone()));
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(app::run(source, deps, async move {
        stop_rx.await.ok();
    }));
    Agent {
        stop,
        run,
        state,
        start_ms: clock.now_ms(),
        _log: guard,
    }
}

impl Agent {
    /// Stops the agent the orderly way; returns the reports waiting in its outbox by
    /// printer serial: (ms since the start, kind, sequence number).
    async fn stop(self) -> BTreeMap<String, Vec<(i64, String, u64)>> {
        self.stop.send(()).unwrap();
        let ended = self.run.await.unwrap().expect("the agent stops cleanly");
        assert!(matches!(ended, Ended::Stopped), "an orderly stop");
        let store = fleet_agent::store::Store::open(&self.state).unwrap();
        let mut by_serial: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for m in store.due_messages(100_000, i64::MAX).unwrap() {
            let r: Report = serde_json::from_str(&m.body).expect("a typed report");
            let kind = match &r {
                Report::Snapshot(_) => "snapshot".to_string(),
                Report::Delta(d) => format!(
                    "delta:{}",
                    serde_json::to_value(d.trigger).unwrap().as_str().unwrap()
                ),
            };
            by_serial
                .entry(r.serial_number().expect("serial").to_string())
                .or_default()
                .push((r.collected_at() - self.start_ms, kind, r.report_seq()));
        }
        by_serial
    }
}

fn snapshots(reports: &[(i64, String, u64)]) -> Vec<i64> {
    reports
        .iter()
        .filter(|r| r.1 == "snapshot")
        .map(|r| r.0)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn fifty_simulated_hours_queue_a_snapshot_every_24_h_and_a_delta_per_supply_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, addrs) = printers(3, 1);
    let agent = start(dir.path(), &fake, &addrs, "");
    tokio::time::sleep(50 * HOUR).await;
    let outbox = agent.stop().await;

    assert_eq!(outbox.len(), 3, "three printers, three serials: {outbox:?}");
    let mut idle = 0;
    for (serial, reports) in &outbox {
        // The first poll gives the first snapshot; then one at least every 24 h (the
        // seed), sent by the first poll once 24 h have passed: polls are an hour apart.
        let snaps = snapshots(reports);
        assert!(snaps[0] < HOUR_MS, "{serial}: first snapshot at {snaps:?}");
        assert_eq!(snaps.len(), 3, "{serial}: snapshots at {snaps:?} ms");
        for w in snaps.windows(2) {
            assert!(
                (24 * HOUR_MS..=25 * HOUR_MS).contains(&(w[1] - w[0])),
                "{serial}: {} ms between snapshots",
                w[1] - w[0]
            );
        }
        // A printing printer's supplies (four toners, drums, ...) fall every hour or two
        // at these rates: each fall is a delta, at most one report per hourly poll. The
        // idle one only sends its snapshots: page counters alone never send a delta.
        let deltas: Vec<&str> = reports
            .iter()
            .filter_map(|r| r.1.strip_prefix("delta:"))
            .collect();
        if deltas.is_empty() {
            idle += 1;
        } else {
            assert!(
                (10..=47).contains(&deltas.len()),
                "{serial}: {} deltas in 50 polls: {reports:?}",
                deltas.len()
            );
            // Falling supplies raise "low" alerts and, once empty, are replaced.
            let supply = ["supplyDecrease", "alertChange", "supplyReplaced"];
            assert!(
                deltas.iter().all(|t| supply.contains(t)),
                "{serial}: deltas for supplies: {deltas:?}"
            );
        }
        let seqs: Vec<u64> = reports.iter().map(|r| r.2).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] == 1,
            "{serial}: sequence numbers 1, 2, ...: {seqs:?}"
        );
        let times: Vec<i64> = reports.iter().map(|r| r.0).collect();
        assert!(
            times.windows(2).all(|w| w[1] - w[0] >= HOUR_MS - 1000),
            "{serial}: one report per poll at most: {times:?}"
        );
    }
    assert_eq!(idle, 1, "the idle printer sent snapshots only");
}

#[tokio::test(start_paused = true)]
async fn a_printer_silent_for_a_day_is_backed_off_and_read_again_while_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, addrs) = printers(3, 0);
    let agent = start(dir.path(), &fake, &addrs, "");
    tokio::time::sleep(5 * HOUR).await;
    // The third printer goes silent (switched off) for 20 hours.
    let silent = fake.remove(addrs[2]).expect("served");
    let asked_before = fake.requests().len();
    tokio::time::sleep(20 * HOUR).await;
    let asked_during = fake
        .requests()
        .iter()
        .skip(asked_before)
        // The poll's first request (a silent printer is then asked once for sysUpTime
        // to tell it from one that drops a request: not counted).
        .filter(|(a, r)| *a == addrs[2] && r.kind == fleet_snmp::PduType::GetBulk)
        .count();
    fake.add_store(addrs[2], silent);
    tokio::time::sleep(5 * HOUR).await;
    let outbox = agent.stop().await;

    // Backoff doubles up to backoff_max_secs (2 h): over 20 h the silent printer is polled
    // fewer than the 20 hourly times, and at least every 2 h (one logged request per poll:
    // the client's retry is inside it).
    assert!(
        (8..=16).contains(&asked_during),
        "{asked_during} requests to the silent printer in 20 h"
    );
    assert_eq!(outbox.len(), 3, "{outbox:?}");
    let mut gaps = Vec::new();
    for reports in outbox.values() {
        let times: Vec<i64> = reports.iter().map(|r| r.0).collect();
        assert!(
            *times.last().unwrap() > 25 * HOUR_MS,
            "read after the silence: {times:?}"
        );
        gaps.push(times.windows(2).map(|w| w[1] - w[0]).max().unwrap());
    }
    gaps.sort();
    // Two printers report all along (supplies fall, so reports come every few hours); the
    // silent one has a gap of about 20 h and comes back within the 2 h backoff cap.
    assert!(
        gaps[1] < 15 * HOUR_MS,
        "the others go on: largest gaps {gaps:?}"
    );
    assert!(
        (20 * HOUR_MS..=23 * HOUR_MS).contains(&gaps[2]),
        "the silent printer's gap: {gaps:?}"
    );
}

/// Issue 17: a printer whose agent starts dropping every request that names its supplies
/// or alert tables (as a firmware bug does) keeps being reported with everything else;
/// the tables' values are unknown, not empty, so no false "supply replaced" or "alert
/// cleared" goes to the cloud; the quirk is learned once, remembered across a restart
/// (the next polls cost no more requests than a healthy poll), and re-probed a day later,
/// when the fixed agent gets the fast path back.
#[tokio::test(start_paused = true)]
async fn a_printer_that_drops_its_supplies_requests_is_read_in_part_and_remembered() {
    use fleet_snmp::agent::Faults;
    let dir = tempfile::tempdir().unwrap();
    let (fake, addrs) = printers(1, 1);
    let a = addrs[0];
    let polls = |fake: &FakeSnmp, from: usize| -> usize {
        fake.requests()
            .iter()
            .skip(from)
            .filter(|(x, _)| *x == a)
            .count()
    };
    let agent = start(dir.path(), &fake, &addrs, "");
    tokio::time::sleep(HOUR / 2).await;
    let healthy = polls(&fake, 0);
    assert!(healthy > 0);
    fake.set_faults(
        a,
        Faults {
            drop: vec![
                "1.3.6.1.2.1.43.11".parse().unwrap(),
                "1.3.6.1.2.1.43.18".parse().unwrap(),
            ],
            ..Faults::default()
        },
    );
    // The poll of hour 1 learns; the one of hour 2 uses what it learned.
    tokio::time::sleep(HOUR).await;
    let before = fake.requests().len();
    tokio::time::sleep(HOUR).await;
    assert!(
        polls(&fake, before) <= healthy,
        "a poll with the quirk known costs {} requests, a healthy one {healthy}",
        polls(&fake, before)
    );
    let outbox = agent.stop().await;
    let reports = outbox.values().next().expect("the printer reported");
    assert_eq!(
        reports.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
        ["snapshot"],
        "nothing but the first snapshot: unknown supplies and alerts are no change"
    );
    let store = fleet_agent::store::Store::open(&agent_state(dir.path())).unwrap();
    let printer_id = store.printer_id(&a.to_string()).unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&store.latest_report(printer_id).unwrap().unwrap()).unwrap();
    let unavailable: Vec<&str> = report["device"]["unavailable"]
        .as_array()
        .expect("the stored reading names what it could not read")
        .iter()
        .map(|u| u["section"].as_str().unwrap())
        .collect();
    assert!(
        unavailable.contains(&"supplies") && unavailable.contains(&"alerts"),
        "{unavailable:?}"
    );
    assert!(report["serialNumber"].is_string() && report["counters"]["lifetimeCount"].is_u64());
    let events: Vec<String> = store
        .events(printer_id)
        .unwrap()
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(
        events.iter().filter(|k| *k == "quirksLearned").count(),
        1,
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|k| k == "supplyReplaced" || k == "alertCleared"),
        "{events:?}"
    );
    let remembered = store.printer_quirks().unwrap();
    assert_eq!(remembered.len(), 1);
    assert!(remembered[0].quirks.contains("1.3.6.1.2.1.43.11"));
    drop(store);

    // A restart: the quirk comes from the store, so even the first poll is plain sailing.
    let agent = start(dir.path(), &fake, &addrs, "");
    let before = fake.requests().len();
    tokio::time::sleep(HOUR / 2).await;
    assert!(polls(&fake, before) <= healthy);
    // The firmware is fixed; a day after the quirk was learned, the plain way is tried
    // again and the quirk forgotten.
    fake.set_faults(a, Faults::default());
    tokio::time::sleep(27 * HOUR).await;
    let outbox = agent.stop().await;
    let store = fleet_agent::store::Store::open(&agent_state(dir.path())).unwrap();
    assert!(
        store.printer_quirks().unwrap().is_empty(),
        "re-probed and forgotten"
    );
    // The 24-h snapshot was taken while the supplies were still skipped: it carries
    // what the cloud held, not an empty list.
    let mut snapshots = 0;
    for m in store.due_messages(1000, i64::MAX).unwrap() {
        if let Report::Snapshot(s) = serde_json::from_str::<Report>(&m.body).unwrap() {
            snapshots += 1;
            let supplies = s.body["supplies"].as_array().map_or(0, Vec::len);
            assert!(supplies > 0, "snapshot {} without supplies", s.report_seq);
        }
    }
    assert_eq!(snapshots, 2, "the first one and the 24-h one");
    let report: serde_json::Value =
        serde_json::from_str(&store.latest_report(printer_id).unwrap().unwrap()).unwrap();
    assert!(report["device"].get("unavailable").is_none(), "{report}");
    assert!(!report["supplies"].as_array().unwrap().is_empty());
    let kinds: Vec<&str> = outbox
        .values()
        .next()
        .unwrap()
        .iter()
        .map(|r| r.1.as_str())
        .collect();
    assert!(
        !kinds.iter().any(|k| k.starts_with("delta")),
        "supplies read again as the cloud holds them are no change either: {kinds:?}"
    );
}

fn agent_state(dir: &Path) -> std::path::PathBuf {
    dir.join("state")
}
