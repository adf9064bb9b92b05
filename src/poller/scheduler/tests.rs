use super::*;
use fleet_snmp::agent::MibView;
use fleet_snmp::fake::FakeSnmp;
use fleet_snmp::{Oid, Pdu, Request, Security, SnmpError, Value};

fn cfg(interval_s: u64) -> PollerConfig {
    PollerConfig {
        interval: Duration::from_secs(interval_s),
        deadline: Duration::from_secs(interval_s * 8 / 10),
        max_in_flight: 64,
        backoff_max: Duration::from_secs(interval_s * 8),
        not_communicating_after: 3,
        max_pages_per_minute: 600,
        status_interval: None,
    }
}

fn view(pages: u32) -> MibView {
    let o = |s: &str| s.parse::<Oid>().unwrap();
    MibView::new(vec![
        (
            o("1.3.6.1.2.1.1.1.0"),
            Value::OctetString(b"printer".to_vec()),
        ),
        (o("1.3.6.1.2.1.43.10.2.1.4.1.1"), Value::Counter32(pages)),
    ])
}

fn addr(i: usize) -> SocketAddr {
    format!("127.9.{}.{}:161", i / 200, i % 200 + 1)
        .parse()
        .unwrap()
}

fn managed(n: usize) -> Vec<Managed> {
    (0..n)
        .map(|i| {
            let mut t = Target::new(addr(i), Security::v2c("public"));
            t.timeout = Duration::from_secs(2);
            t.retries = 1;
            Managed {
                target: t,
                printer_id: i as i64,
            }
        })
        .collect()
}

/// Runs a poller for `for_secs` of (paused) time and returns every observation.
async fn run_for<C: SnmpClient + Clone>(p: Poller<C>, for_secs: u64) -> Vec<Observed> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let p = p.observe(tx).with_seed(7);
    let stop = tokio::time::sleep(Duration::from_secs(for_secs));
    p.run(stop).await;
    let mut out = Vec::new();
    while let Ok(o) = rx.try_recv() {
        out.push(o);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn startup_jitter_spreads_printers_over_the_interval() {
    let fake = FakeSnmp::new();
    for i in 0..200 {
        fake.add(addr(i), view(100));
    }
    let t0 = Instant::now();
    let (p, _h) = Poller::new(fake, cfg(300), managed(200), None, Arc::new(Metrics::new()));
    let obs = run_for(p, 299).await;
    assert_eq!(
        obs.len(),
        200,
        "every printer polled once in the first interval"
    );
    let mut buckets = [0usize; 10];
    for o in &obs {
        let off = (o.started - t0).as_secs();
        assert!(off < 300);
        buckets[(off / 30) as usize] += 1;
    }
    assert!(
        buckets.iter().all(|&b| b > 0 && b < 60),
        "spread over the interval: {buckets:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn healthy_printers_keep_their_cadence() {
    let fake = FakeSnmp::new();
    for i in 0..5 {
        fake.add(addr(i), view(100));
    }
    let (p, _h) = Poller::new(fake, cfg(60), managed(5), None, Arc::new(Metrics::new()));
    let obs = run_for(p, 60 * 5 + 59).await;
    for i in 0..5 {
        let starts: Vec<Instant> = obs
            .iter()
            .filter(|o| o.addr == addr(i))
            .map(|o| o.started)
            .collect();
        assert!(starts.len() >= 5, "printer {i}: {} polls", starts.len());
        for w in starts.windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_secs(60));
        }
    }
}

/// A client whose every request takes `delay` (a slow network or printer).
#[derive(Clone)]
struct Slow(FakeSnmp, Duration);

impl SnmpClient for Slow {
    async fn request(&self, target: &Target, request: Request) -> Result<Pdu, SnmpError> {
        tokio::time::sleep(self.1).await;
        self.0.request(target, request).await
    }
}

#[tokio::test(start_paused = true)]
async fn an_overrunning_cycle_never_piles_up() {
    let fake = FakeSnmp::new();
    for i in 0..10 {
        fake.add(addr(i), view(100));
    }
    // One poll takes ~20 s (2 round trips of 10 s); one at a time; 10 printers = 200 s of
    // work per 60 s interval: the cycle overruns by far.
    let mut c = cfg(60);
    c.max_in_flight = 1;
    c.deadline = Duration::from_secs(50);
    let (p, _h) = Poller::new(
        Slow(fake, Duration::from_secs(10)),
        c,
        managed(10),
        None,
        Arc::new(Metrics::new()),
    );
    let obs = run_for(p.without_startup_spread(), 1200).await;
    assert!(obs.iter().all(|o| o.failure.is_none()));
    // Work-conserving: about 1200 s / 20 s polls happened, no more (no queued duplicates).
    assert!(obs.len() <= 61 && obs.len() >= 50, "{} polls", obs.len());
    for i in 0..10 {
        let starts: Vec<Instant> = obs
            .iter()
            .filter(|o| o.addr == addr(i))
            .map(|o| o.started)
            .collect();
        for w in starts.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_secs(60),
                "printer {i} polled twice within one interval"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn unreachable_printers_back_off_with_a_cap_and_change_state() {
    let fake = FakeSnmp::new(); // nothing answers
    let c = cfg(60);
    let (p, _h) = Poller::new(fake, c.clone(), managed(1), None, Arc::new(Metrics::new()));
    let obs = run_for(p.without_startup_spread(), 6000).await;
    let health: Vec<Health> = obs.iter().map(|o| o.health).collect();
    assert_eq!(
        &health[..4],
        &[
            Health::Suspect,
            Health::Suspect,
            Health::NotCommunicating,
            Health::NotCommunicating
        ]
    );
    assert_eq!(obs[0].events, ["healthChanged"]);
    assert!(obs[1].events.is_empty());
    assert_eq!(obs[2].events, ["healthChanged"]);
    assert!(obs.iter().all(|o| o.failure.as_deref() == Some("timeout")));
    // Waits double from the interval up to the cap (480 s), each within ±10 %.
    let waits: Vec<f64> = obs
        .windows(2)
        .map(|w| (w[1].started - w[0].started).as_secs_f64())
        .collect();
    let expect = [60.0, 120.0, 240.0, 480.0, 480.0, 480.0];
    for (i, (w, e)) in waits.iter().zip(expect).enumerate() {
        // Each attempt itself takes 4 s (2 s timeout, 1 retry) before the backoff starts.
        let backoff = w - 4.0;
        assert!(
            backoff >= e * 0.9 - 0.01 && backoff <= e * 1.1 + 0.01,
            "wait {i}: {backoff} vs {e}"
        );
    }
}

/// A printer that answers but refuses the agent's SNMPv3 user.
#[derive(Clone)]
struct RefusesUser;

impl SnmpClient for RefusesUser {
    async fn request(&self, target: &Target, _: Request) -> Result<Pdu, SnmpError> {
        Err(SnmpError::UnknownUser {
            target: target.addr,
            user: "fleet".into(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_user_needs_credentials_at_once_not_after_three_misses() {
    let c = cfg(60);
    let (p, _h) = Poller::new(RefusesUser, c, managed(1), None, Arc::new(Metrics::new()));
    let obs = run_for(p.without_startup_spread(), 1000).await;
    assert!(obs.len() >= 2, "{} polls", obs.len());
    assert!(obs.iter().all(|o| o.health == Health::NeedsCredentials));
    assert!(
        obs.iter()
            .all(|o| o.failure.as_deref() == Some("unknownUser"))
    );
    assert_eq!(obs[0].events, ["healthChanged"]);
    assert!(obs[1].events.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_sighting_brings_a_sick_printer_back_at_once() {
    let fake = FakeSnmp::new();
    let (p, h) = Poller::new(
        fake.clone(),
        cfg(60),
        managed(1),
        None,
        Arc::new(Metrics::new()),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(
        p.observe(tx)
            .without_startup_spread()
            .run(tokio::time::sleep(Duration::from_secs(3000))),
    );
    // Three failures: not communicating, next attempt far away.
    for _ in 0..3 {
        rx.recv().await.unwrap();
    }
    let last = rx.recv().await;
    let _ = last;
    fake.add(addr(0), view(500));
    let seen_at = Instant::now();
    h.sighted(addr(0));
    let o = rx.recv().await.unwrap();
    assert!(
        o.started - seen_at < Duration::from_secs(1),
        "polled right after the sighting"
    );
    assert_eq!(o.health, Health::Ok);
    assert_eq!(o.events, ["healthChanged"]);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn results_and_events_reach_the_store() {
    let fake = FakeSnmp::new();
    fake.add(addr(0), view(1000));
    let store = Store::open_in_memory().unwrap();
    let id = store.printer_id(&addr(0).to_string()).unwrap();
    let mut m = managed(1);
    m[0].printer_id = id;
    let (p, _h) = Poller::new(
        fake.clone(),
        cfg(60),
        m,
        Some(store.clone()),
        Arc::new(Metrics::new()),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(
        p.observe(tx)
            .without_startup_spread()
            .run(tokio::time::sleep(Duration::from_secs(200))),
    );
    rx.recv().await.unwrap();
    // The counter goes backwards before the next poll: a reset event, raw value kept.
    fake.add(addr(0), view(7));
    rx.recv().await.unwrap();
    task.await.unwrap();
    let rows = store.printers().unwrap();
    assert_eq!(rows[0].health, Health::Ok);
    let report: serde_json::Value =
        serde_json::from_str(&store.latest_report(id).unwrap().unwrap()).unwrap();
    assert_eq!(report["counters"]["lifetimeCount"], 7);
    let kinds: Vec<String> = store.events(id).unwrap().into_iter().map(|e| e.1).collect();
    assert_eq!(kinds, ["healthChanged", "counterReset"]);
}

#[test]
fn backoff_is_capped_and_jittered() {
    let mut rng = fastrand::Rng::with_seed(1);
    let cfg = PollerConfig {
        interval: Duration::from_secs(60),
        backoff_max: Duration::from_secs(600),
        ..PollerConfig::default()
    };
    for f in 1..30 {
        let b = backoff(&cfg).delay(f, &mut rng).as_secs_f64();
        let base = (60.0 * 2f64.powi(f as i32 - 1)).min(600.0);
        assert!(b >= base * 0.9 && b <= base * 1.1, "failures {f}: {b}");
    }
}

fn alert_view(pages: u32, alert: bool) -> MibView {
    let o = |s: &str| s.parse::<Oid>().unwrap();
    let mut v = vec![
        (
            o("1.3.6.1.2.1.1.1.0"),
            Value::OctetString(b"printer".to_vec()),
        ),
        (o("1.3.6.1.2.1.43.10.2.1.4.1.1"), Value::Counter32(pages)),
        (o("1.3.6.1.2.1.43.11.1.1.8.1.1"), Value::Integer(100)),
        (o("1.3.6.1.2.1.43.11.1.1.9.1.1"), Value::Integer(40)),
    ];
    if alert {
        v.push((o("1.3.6.1.2.1.43.18.1.1.2.1.1"), Value::Integer(3)));
        v.push((o("1.3.6.1.2.1.43.18.1.1.4.1.1"), Value::Integer(6)));
        v.push((o("1.3.6.1.2.1.43.18.1.1.7.1.1"), Value::Integer(3)));
    }
    MibView::new(v)
}

#[tokio::test(start_paused = true)]
async fn status_checks_catch_an_alert_before_the_next_full_poll() {
    let fake = FakeSnmp::new();
    fake.add(addr(0), alert_view(100, false));
    let mut c = cfg(300);
    c.status_interval = Some(Duration::from_secs(10));
    let (p, _h) = Poller::new(fake.clone(), c, managed(1), None, Arc::new(Metrics::new()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    let task = tokio::spawn(
        p.observe(tx)
            .without_startup_spread()
            .run(tokio::time::sleep(Duration::from_secs(400))),
    );
    let first = rx.recv().await.unwrap();
    assert_eq!(first.started, t0);
    // Counters alone change: status checks do not trigger a full poll.
    fake.add(addr(0), alert_view(101, false));
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert!(rx.try_recv().is_err(), "no full poll for a counter change");
    let before = fake.requests().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let per_check = fake.requests().len() - before;
    assert!(
        (1..=2).contains(&per_check),
        "a status check costs {per_check} round trips"
    );
    // A door opens: the next status check (within 10 s) triggers a full poll.
    let raised = Instant::now();
    fake.add(addr(0), alert_view(101, true));
    let o = rx.recv().await.unwrap();
    assert!(
        o.started - raised <= Duration::from_secs(11),
        "full poll {:?} after the alert",
        o.started - raised
    );
    assert_eq!(o.events, ["alertRaised"]);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_refresh_polls_now_uploads_snapshots_and_reports_each_printer() {
    let fake = FakeSnmp::new();
    fake.add(addr(0), view(100));
    fake.add(addr(1), view(200));
    // addr(2) answers nothing.
    let (p, h) = Poller::new(
        fake.clone(),
        cfg(300),
        managed(3),
        None,
        Arc::new(Metrics::new()),
    );
    let (rtx, mut readings) = mpsc::channel(16);
    let task = tokio::spawn(
        p.with_readings(rtx)
            .without_startup_spread()
            .run(tokio::time::sleep(Duration::from_secs(3000))),
    );
    // The scheduled first round: not on demand.
    for _ in 0..2 {
        assert!(!readings.recv().await.unwrap().on_demand);
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    let asked = Instant::now();
    let mut got = h.refresh(None).await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "polled at once, not at 300 s"
    );
    got.sort_by_key(|r| r.printer_id);
    assert_eq!(got.len(), 3);
    assert!(got[0].failure.is_none() && got[1].failure.is_none());
    assert!(got[2].failure.is_some(), "{got:?}");
    for _ in 0..2 {
        assert!(
            readings.recv().await.unwrap().on_demand,
            "refreshed readings force a snapshot"
        );
    }
    // One printer, and an address nobody manages.
    let one = h.refresh(Some(addr(1))).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].addr, addr(1));
    assert!(h.refresh(Some(addr(7))).await.unwrap().is_empty());
    task.abort();
    // A stopped poller answers with an error, never hangs.
    assert!(h.refresh(None).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_refresh_asked_during_a_poll_waits_for_the_next_one() {
    let fake = FakeSnmp::new();
    fake.add(addr(0), view(100));
    let slow = Slow(fake, Duration::from_secs(2));
    let (p, h) = Poller::new(slow, cfg(300), managed(1), None, Arc::new(Metrics::new()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(
        p.observe(tx)
            .without_startup_spread()
            .run(tokio::time::sleep(Duration::from_secs(3000))),
    );
    // The scheduled first poll is running (it takes a few seconds per round trip).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let got = h.refresh(None).await.unwrap();
    assert_eq!(got.len(), 1);
    let first = rx.recv().await.unwrap();
    let second = rx.recv().await.unwrap();
    assert!(first.started < asked, "the first poll was already running");
    assert!(
        second.started >= asked,
        "the refresh was answered by a poll started after it"
    );
    task.abort();
}

#[test]
fn the_content_hash_ignores_the_clock_but_not_the_values() {
    let mut a = crate::printer::PrinterReport {
        serial_number: Some("S1".into()),
        collected_at: 1000,
        ..crate::printer::PrinterReport::default()
    };
    a.device.uptime_seconds = Some(5);
    a.device.last_boot_at = Some(995);
    let before = a.clone();
    let ha = content_hash(&mut a);
    assert_eq!(a, before, "the clock fields are put back");
    let mut b = a.clone();
    b.collected_at = 2000;
    b.device.uptime_seconds = Some(1005);
    b.device.last_boot_at = Some(996);
    assert_eq!(ha, content_hash(&mut b));
    let mut c = b.clone();
    c.device.sys_name = Some("other".into());
    assert_ne!(ha, content_hash(&mut c));
    let mut d = a.clone();
    d.serial_number = Some("S2".into());
    assert_ne!(ha, content_hash(&mut d));
}

fn firmware_view(version: &str) -> MibView {
    let o = |s: &str| s.parse::<Oid>().unwrap();
    MibView::new(vec![
        (
            o("1.3.6.1.2.1.1.1.0"),
            Value::OctetString(format!("printer version {version}").into_bytes()),
        ),
        (o("1.3.6.1.2.1.43.10.2.1.4.1.1"), Value::Counter32(100)),
        (o("1.3.6.1.2.1.43.11.1.1.9.1.1"), Value::Integer(50)),
    ])
}

#[tokio::test(start_paused = true)]
async fn a_new_firmware_gets_its_quirks_asked_again_at_once_not_after_a_day() {
    let fake = FakeSnmp::new();
    fake.add(addr(0), firmware_view("1.0"));
    fake.set_faults(
        addr(0),
        fleet_snmp::agent::Faults {
            drop: vec!["1.3.6.1.2.1.43.11.1.1.9".parse().unwrap()],
            ..Default::default()
        },
    );
    let (p, _h) = Poller::new(
        fake.clone(),
        cfg(60),
        managed(1),
        None,
        Arc::new(Metrics::new()),
    );
    let f = fake.clone();
    let upgrade = async move {
        // After the first poll learned the quirk: a firmware that answers properly.
        tokio::time::sleep(Duration::from_secs(30)).await;
        f.add(addr(0), firmware_view("2.0"));
        f.set_faults(addr(0), fleet_snmp::agent::Faults::default());
    };
    let (obs, ()) = tokio::join!(run_for(p.without_startup_spread(), 400), upgrade);
    let learned: Vec<usize> = obs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.events.contains(&"quirksLearned"))
        .map(|(i, _)| i)
        .collect();
    // Poll 0 learns the skip; poll 1 sees the new firmware (still asked the known way);
    // poll 2 asks the plain way and forgets the quirk, minutes later, not a day.
    assert_eq!(learned, [0, 2], "{obs:?}");
    assert!(obs.iter().all(|o| o.failure.is_none()));
}

/// The fake, with the second GETBULK it is sent left unanswered for an hour (a poll that
/// learned a quirk and then stalls until its deadline).
#[derive(Clone)]
struct StallSecondBulk(FakeSnmp, Arc<std::sync::atomic::AtomicUsize>);

impl SnmpClient for StallSecondBulk {
    async fn request(&self, target: &Target, request: Request) -> Result<Pdu, SnmpError> {
        if request.kind == fleet_snmp::PduType::GetBulk
            && self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 1
        {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        self.0.request(target, request).await
    }
}

#[tokio::test(start_paused = true)]
async fn what_a_poll_learned_before_its_deadline_is_not_paid_for_again() {
    let fake = FakeSnmp::new();
    fake.add(addr(0), firmware_view("1.0"));
    fake.set_faults(
        addr(0),
        fleet_snmp::agent::Faults {
            drop: vec!["1.3.6.1.2.1.43.11.1.1.9".parse().unwrap()],
            ..Default::default()
        },
    );
    let client = StallSecondBulk(fake.clone(), Default::default());
    let (p, _h) = Poller::new(client, cfg(60), managed(1), None, Arc::new(Metrics::new()));
    let obs = run_for(p.without_startup_spread(), 150).await;
    assert!(obs.len() >= 2, "{obs:?}");
    // Poll 0 learned the dropped column, then stalled past its deadline.
    assert_eq!(obs[0].failure.as_deref(), Some("deadline"), "{obs:?}");
    // Poll 1 starts from what poll 0 learned: read at once, the quirk remembered now.
    assert_eq!(obs[1].failure, None, "{obs:?}");
    assert!(obs[1].events.contains(&"quirksLearned"), "{obs:?}");
    let log = fake.requests();
    let bulks: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| r.kind == fleet_snmp::PduType::GetBulk)
        .map(|(i, _)| i)
        .collect();
    // The stalled GETBULK never reached the fake: its second GETBULK starts poll 1.
    let probes_in_poll_1 = log[bulks[1]..]
        .iter()
        .filter(|(_, r)| r.kind != fleet_snmp::PduType::GetBulk)
        .count();
    let probes_in_poll_0 = log[..bulks[1]]
        .iter()
        .filter(|(_, r)| r.kind != fleet_snmp::PduType::GetBulk)
        .count();
    assert!(probes_in_poll_0 > 0);
    assert_eq!(probes_in_poll_1, 0, "poll 1 diagnosed again");
}

/// While a command holds a printer (a firmware update, a configuration), its polls are
/// put off, not run beside the write and not failed; the other printers keep their
/// cadence; once the command is done the printer is polled within a few seconds. A
/// command that asks for a printer being polled waits for the poll to end.
#[tokio::test(start_paused = true)]
async fn a_command_holding_a_printer_pauses_its_polls_only() {
    let fake = FakeSnmp::new();
    for i in 0..2 {
        fake.add(addr(i), view(100));
    }
    // Every request takes 1 s, so a command can meet a poll in flight.
    let client = Slow(fake.clone(), Duration::from_secs(1));
    let locks = crate::poller::PrinterLocks::default();
    let (p, _h) = Poller::new(client, cfg(60), managed(2), None, Arc::new(Metrics::new()));
    let p = p.without_startup_spread().with_locks(locks.clone());
    let start = Instant::now();
    let command = async {
        // The first polls are in flight: the command waits for printer 0's to end.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let held = locks.hold(addr(0)).await;
        let got = Instant::now();
        let seen = fake.requests().len();
        // A write of 200 s (more than three poll intervals).
        tokio::time::sleep(Duration::from_secs(200)).await;
        let during = fake.requests()[seen..]
            .iter()
            .filter(|(a, _)| *a == addr(0))
            .count();
        drop(held);
        (got, during)
    };
    let (obs, (got, during)) = tokio::join!(run_for(p, 300), command);
    let first_poll_end = obs.iter().find(|o| o.addr == addr(0)).map(|o| o.started);
    assert!(first_poll_end.is_some(), "{obs:?}");
    assert!(
        got >= start + Duration::from_secs(1),
        "the command waited for the poll in flight"
    );
    assert_eq!(during, 0, "no request to the printer during the command");
    let held_from = got;
    let held_to = got + Duration::from_secs(200);
    let polls0: Vec<&Observed> = obs.iter().filter(|o| o.addr == addr(0)).collect();
    assert!(
        polls0
            .iter()
            .all(|o| o.started < held_from || o.started >= held_to),
        "{polls0:?}"
    );
    assert!(
        polls0
            .iter()
            .all(|o| o.failure.is_none() && o.health == Health::Ok)
    );
    // Polled again within the put-off period of the command's end.
    let after = polls0
        .iter()
        .find(|o| o.started >= held_to)
        .expect("polled after");
    assert!(
        after.started - held_to <= PUT_OFF,
        "{:?}",
        after.started - held_to
    );
    // The other printer kept its cadence throughout.
    let starts1: Vec<Instant> = obs
        .iter()
        .filter(|o| o.addr == addr(1))
        .map(|o| o.started)
        .collect();
    assert_eq!(starts1.len(), 5, "{starts1:?}");
    for w in starts1.windows(2) {
        assert_eq!(w[1] - w[0], Duration::from_secs(60));
    }
}
