//! Discovery against a simulated fleet on loopback: several hundred printers, non-printer
//! agents, SNMPv3 printers with right and wrong credentials, silent addresses (sockets
//! that swallow requests, so they really time out), excluded and duplicate addresses;
//! every per-IP outcome must be exactly right. Then an IP change between two runs.

use crate::common::http_get;
use fleet_agent::config::Profile;
use fleet_agent::discovery::{self, Options, Outcome, Progress};
use fleet_agent::store::Store;
use fleet_agent::targets::TargetSet;
use fleet_secret::Secret;
use fleet_sim::{self, Layout, Printer, Simulator, synth};
use fleet_snmp::agent::MibView;
use fleet_snmp::usm::{AuthProtocol, PrivProtocol};
use fleet_snmp::{Security, UdpClient, UsmUser};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn fixture(name: &str) -> Arc<MibView> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let (pairs, _) = fleet_snmp::snmprec::read(&p).unwrap();
    Arc::new(MibView::new(pairs))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v3_user(name: &str, pass: &str) -> Arc<UsmUser> {
    Arc::new(UsmUser::new(
        name,
        Some((AuthProtocol::Sha256, Secret::new(pass))),
        Some((PrivProtocol::Aes128, Secret::new("privpass123"))),
    ))
}

fn profiles() -> Vec<Profile> {
    vec![
        Profile {
            name: "public".into(),
            security: Security::v2c("public"),
            timeout: Duration::from_millis(300),
            retries: 0,
            max_repetitions: 40,
        },
        Profile {
            name: "v3".into(),
            security: Security::Usm(v3_user("fleet", "authpass123")),
            timeout: Duration::from_millis(300),
            retries: 0,
            max_repetitions: 40,
        },
    ]
}

async fn fleet(
    start: [u8; 4],
    port: u16,
    printers: Vec<Printer>,
    community: &str,
    users: Vec<Arc<UsmUser>>,
) -> Simulator {
    Simulator::start(
        printers,
        Layout::Fleet {
            start: Ipv4Addr::from(start),
            port,
            community: community.into(),
        },
        users,
    )
    .await
    .unwrap()
}

/// Sockets that read and drop everything: addresses that really time out.
async fn swallowers(addrs: &[SocketAddr]) -> Vec<tokio::task::JoinHandle<()>> {
    let mut v = Vec::new();
    for a in addrs {
        let s = tokio::net::UdpSocket::bind(a).await.unwrap();
        v.push(tokio::spawn(async move {
            let mut b = [0u8; 2048];
            while s.recv_from(&mut b).await.is_ok() {}
        }));
    }
    v
}

async fn discover(targets: TargetSet, port: u16, store: Option<Store>) -> discovery::RunReport {
    let client = UdpClient::connected().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(Progress::default());
    let opts = Options {
        targets,
        local_network: false,
        profiles: profiles(),
        port,
        max_in_flight: 256,
        max_addresses: 65_536,
        mdns: Duration::ZERO,
        reader: Default::default(),
        ipp: Default::default(),
    };
    let r = discovery::run(client, opts, store, tx).await;
    assert!(rx.borrow().finished);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_per_ip_outcome_is_exactly_right() {
    let port = 24000 + (std::process::id() % 20000) as u16;
    let _printers = fleet(
        [127, 92, 0, 1],
        port,
        fleet_sim::synthetic_fleet(
            300,
            synth::SynthParams {
                speed: 1.0,
                seed: 3,
            },
        ),
        "public",
        vec![],
    )
    .await;
    let switch = fixture("other/switch.snmprec");
    let _others = fleet(
        [127, 92, 1, 100],
        port,
        (0..3)
            .map(|i| Printer::recorded(format!("switch{i}"), switch.clone()))
            .collect(),
        "public",
        vec![],
    )
    .await;
    // SNMPv3-only printers (their v2c community is not "public"): right user, unknown
    // user, right user with another pass phrase.
    let acme = fixture("snmprec/acme-color.snmprec");
    let _v3ok = fleet(
        [127, 92, 1, 110],
        port,
        vec![Printer::recorded("v3ok", acme.clone())],
        "secret",
        vec![v3_user("fleet", "authpass123")],
    )
    .await;
    let _v3user = fleet(
        [127, 92, 1, 111],
        port,
        vec![Printer::recorded(
            "v3user",
            fixture("snmprec/acme-mono-v1.snmprec"),
        )],
        "secret",
        vec![v3_user("other", "authpass123")],
    )
    .await;
    let _v3digest = fleet(
        [127, 92, 1, 112],
        port,
        vec![Printer::recorded("v3digest", acme.clone())],
        "secret",
        vec![v3_user("fleet", "different99")],
    )
    .await;
    // Two addresses serving the same printer (same serial): one device.
    let mono = fixture("snmprec/acme-mono-v1.snmprec");
    let _dup = fleet(
        [127, 92, 1, 130],
        port,
        vec![
            Printer::recorded("d1", mono.clone()),
            Printer::recorded("d2", mono.clone()),
        ],
        "public",
        vec![],
    )
    .await;
    let silent: Vec<SocketAddr> = (120..125)
        .map(|i| SocketAddr::new(ip(&format!("127.92.1.{i}")), port))
        .collect();
    let _sw = swallowers(&silent).await;

    let targets = TargetSet {
        include: vec!["127.92.0.0/23".parse().unwrap()],
        exclude: vec!["127.92.1.200-127.92.1.210".parse().unwrap()],
    };
    let r = discover(targets, port, None).await;
    assert_eq!(
        r.results.len(),
        510,
        "every address of the /23 has one outcome"
    );
    let by_ip: BTreeMap<IpAddr, &Outcome> =
        r.results.iter().map(|x| (x.address, &x.outcome)).collect();
    let printer_ips: Vec<IpAddr> = (1..=254)
        .map(|i| ip(&format!("127.92.0.{i}")))
        .chain((1..=46).map(|i| ip(&format!("127.92.1.{i}"))))
        .collect();
    for p in &printer_ips {
        assert!(
            matches!(by_ip[p], Outcome::Found { device_key, .. } if device_key.starts_with("sn:acme imaging|FA")),
            "{p}: {:?}",
            by_ip[p]
        );
    }
    for i in 100..103 {
        match by_ip[&ip(&format!("127.92.1.{i}"))] {
            Outcome::NotAPrinter {
                sys_object_id,
                sys_descr,
            } => {
                assert_eq!(sys_object_id.as_deref(), Some("1.3.6.1.4.1.9.1.1208"));
                assert!(sys_descr.as_deref().unwrap().starts_with("Acme Networks"));
            }
            o => panic!("127.92.1.{i}: {o:?}"),
        }
    }
    assert!(
        matches!(by_ip[&ip("127.92.1.110")], Outcome::Found { device_key, .. } if device_key == "sn:lexmark|ACX123456")
    );
    assert_eq!(
        r.results
            .iter()
            .find(|x| x.address == ip("127.92.1.110"))
            .unwrap()
            .profile
            .as_deref(),
        Some("v3")
    );
    assert_eq!(by_ip[&ip("127.92.1.111")], &Outcome::V3UnknownUser);
    assert_eq!(by_ip[&ip("127.92.1.112")], &Outcome::V3WrongDigest);
    assert!(
        matches!(by_ip[&ip("127.92.1.130")], Outcome::Found { device_key, .. } if device_key == "sn:hp|PHBXK12345")
    );
    assert_eq!(
        by_ip[&ip("127.92.1.131")],
        &Outcome::Duplicate {
            device_key: "sn:hp|PHBXK12345".into(),
            first_address: ip("127.92.1.130")
        }
    );
    for s in &silent {
        assert_eq!(by_ip[&s.ip()], &Outcome::NoAnswer, "{s}");
    }
    for i in 200..=210 {
        assert_eq!(by_ip[&ip(&format!("127.92.1.{i}"))], &Outcome::Excluded);
    }
    let summary = r.summary();
    let expected: BTreeMap<&str, usize> = [
        ("found", 300 + 1 + 1),
        ("notAPrinter", 3),
        ("v3UnknownUser", 1),
        ("v3WrongDigest", 1),
        ("duplicate", 1),
        ("noAnswer", 5),
        ("excluded", 11),
        ("unreachable", 510 - 302 - 3 - 2 - 1 - 5 - 11),
    ]
    .into_iter()
    .collect();
    assert_eq!(summary, expected);
    assert_eq!(r.devices.len(), 302);
    // The CSV export has one line per address plus the header.
    assert_eq!(r.to_csv().lines().count(), 511);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_that_changes_address_stays_one_device() {
    let port = 25000 + (std::process::id() % 20000) as u16;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let acme = fixture("snmprec/acme-color.snmprec");
    let targets = TargetSet {
        include: vec!["127.93.0.1-127.93.0.2".parse().unwrap()],
        exclude: vec![],
    };
    let a = fleet(
        [127, 93, 0, 1],
        port,
        vec![Printer::recorded("p", acme.clone())],
        "public",
        vec![],
    )
    .await;
    let r1 = discover(targets.clone(), port, Some(store.clone())).await;
    assert!(
        matches!(
            &r1.results[0].outcome,
            Outcome::Found {
                new: true,
                moved_from: None,
                ..
            }
        ),
        "{:?}",
        r1.results[0]
    );
    a.stop().await;
    // The printer gets a new DHCP lease: 127.93.0.2.
    let _b = fleet(
        [127, 93, 0, 2],
        port,
        vec![Printer::recorded("p", acme)],
        "public",
        vec![],
    )
    .await;
    let r2 = discover(targets, port, Some(store.clone())).await;
    let moved = r2
        .results
        .iter()
        .find(|x| x.address == ip("127.93.0.2"))
        .unwrap();
    match &moved.outcome {
        Outcome::Found {
            device_key,
            new,
            moved_from,
        } => {
            assert_eq!(device_key, "sn:lexmark|ACX123456");
            assert!(!new);
            assert_eq!(moved_from.as_deref(), Some(&*format!("127.93.0.1:{port}")));
        }
        o => panic!("{o:?}"),
    }
    let devices = store.devices().unwrap();
    assert_eq!(devices.len(), 1, "one device, not two");
    assert_eq!(
        devices[0].address.as_deref(),
        Some(&*format!("127.93.0.2:{port}"))
    );
    assert_eq!(store.device_moves("sn:lexmark|ACX123456").unwrap().len(), 1);
    // The last run's per-IP report is kept.
    assert_eq!(store.discovery_results().unwrap().len(), 2);
}

#[test]
fn the_cli_reports_bad_import_lines_and_refuses_huge_lists() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("list.txt");
    std::fs::write(&f, "# printers\n192.0.2.1\nnot/valid\n192.0.2.0/33\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
        .args(["discover", "--import", f.to_str().unwrap(), "--no-store"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("list.txt:3: ") && err.contains("list.txt:4: "),
        "{err}"
    );
    assert!(err.contains("nothing was probed"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
        .args(["discover", "-t", "10.0.0.0/8", "--no-store", "--json"])
        .output()
        .unwrap();
    // A run that would search nothing is bad input, not a success.
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("more than the cap of 65536") && err.contains("nothing was probed"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no report: nothing was sent");
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "a synchronous black-box test waiting on a child process"
)]
fn scheduled_discovery_hands_new_printers_to_the_poller() {
    let port = 26000 + (std::process::id() % 20000) as u16;
    let _sim = crate::common::simulate(&[
        "--synthetic",
        "3",
        "--fleet-start",
        "127.85.0.1",
        "--port",
        &port.to_string(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("a.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
             [discovery]\ninclude = [\"127.85.0.1-127.85.0.6\"]\nport = {port}\n[[snmp_profiles]]\nname = \"p\"\nauth = {{ type = \"v2c\", community = \"public\" }}\ntimeout_ms = 200\nretries = 0\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let agent = crate::common::agent::InProcess::start(&conf, None);
    let web = agent.web.port();
    let mut ok = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleet-agent"))
            .args(["status", "--config", conf.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && v.as_array()
                .is_some_and(|a| a.len() == 3 && a.iter().all(|p| p["printer"]["health"] == "ok"))
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "the three discovered printers are managed and polled");
    let body = crate::common::http_get_session(web, "/api/discovery");
    let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
    let rows: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
    assert_eq!(rows.len(), 6);
    assert_eq!(rows.iter().filter(|r| r["outcome"] == "found").count(), 3);
    assert!(http_get(web, "/metrics").contains("fleet_agent_discovery_printers_found 3"));
}

/// The agent as a user runs it, discovering a printer whose agent drops every request
/// naming one column: discovery learns the quirk, and the store and the poller get it with
/// the printer, so its polls spend no probe on learning it again (`/metrics`), and its page
/// says how it is asked.
#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "a synchronous black-box test waiting on a child process"
)]
fn discovery_hands_a_quirky_printer_to_the_poller_with_its_quirks() {
    let port = 26000 + (std::process::id() % 20000) as u16 + 1;
    let _sim = crate::common::simulate(&[
        "--synthetic",
        "1",
        "--fleet-start",
        "127.86.0.1",
        "--port",
        &port.to_string(),
        "--quirk",
        "drop=1.3.6.1.2.1.43.11.1.1.9",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("a.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 8\n\
             [discovery]\ninclude = [\"127.86.0.1\"]\nport = {port}\n[[snmp_profiles]]\nname = \"p\"\nauth = {{ type = \"v2c\", community = \"public\" }}\ntimeout_ms = 300\nretries = 0\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let agent = crate::common::agent::InProcess::start(&conf, None);
    let web = agent.web.port();
    let metric = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    let mut metrics = String::new();
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
        metrics = http_get(web, "/metrics");
        if metric(&metrics, "fleet_agent_polls_total ").is_some_and(|n| n >= 2)
            && metric(&metrics, "fleet_agent_printers{health=\"ok\"} ") == Some(1)
        {
            break;
        }
    }
    assert_eq!(
        metric(&metrics, "fleet_agent_printers{health=\"ok\"} "),
        Some(1),
        "the discovered printer is polled: {metrics}"
    );
    assert!(
        metric(&metrics, "fleet_agent_snmp_requests_total ").is_some_and(|n| n > 0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "fleet_agent_snmp_probes_total "),
        Some(0),
        "the poller learned again what discovery knew: {metrics}"
    );
    let body = crate::common::http_get_session(web, "/api/printers");
    let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
    let list: serde_json::Value = serde_json::from_str(json).unwrap();
    let rows = list["printers"].as_array().unwrap();
    assert_eq!((rows.len(), list["all"].as_u64()), (1, Some(1)), "{json}");
    let id = rows[0]["id"].as_i64().unwrap();
    let body = crate::common::http_get_session(web, &format!("/api/printers/{id}"));
    assert!(
        body.contains("1 object(s) skipped (1.3.6.1.2.1.43.11.1.1.9: no answer"),
        "{body}"
    );
}

/// A printer whose agent drops every request naming one column: discovery reads the rest,
/// learns the quirk and hands it on; once the agent remembers it (as it does when discovery
/// adds the printer), the next run asks the way that works and costs fewer round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_learns_a_quirky_printer_once_and_asks_it_the_known_way_after() {
    let port = 26000 + (std::process::id() % 20000) as u16;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let level: fleet_snmp::Oid = "1.3.6.1.2.1.43.11.1.1.9".parse().unwrap();
    let printer = fleet_sim::synthetic_fleet(
        1,
        synth::SynthParams {
            speed: 0.0,
            seed: 5,
        },
    )
    .remove(0)
    .with_faults(fleet_snmp::agent::Faults {
        drop: vec![level.clone()],
        ..Default::default()
    });
    let sim = fleet([127, 94, 7, 1], port, vec![printer], "public", vec![]).await;
    let targets = TargetSet {
        include: vec!["127.94.7.1".parse().unwrap()],
        exclude: vec![],
    };
    let before = sim.requests();
    let r1 = discover(targets.clone(), port, Some(store.clone())).await;
    let first = sim.requests() - before;
    assert_eq!(r1.devices.len(), 1, "{:?}", r1.results);
    let q = r1.devices[0].quirks.clone().expect("the quirk is learned");
    assert!(q.skips(&level).is_some(), "{q}");
    assert!(r1.devices[0].serial.is_some(), "the rest is read");

    // What the agent does when discovery adds the printer.
    let addr = SocketAddr::new(ip("127.94.7.1"), port).to_string();
    let id = store.printer_id(&addr).unwrap();
    store
        .set_quirks(
            id,
            Some(&serde_json::to_string(&q).unwrap()),
            r1.finished_at,
        )
        .unwrap();
    let before = sim.requests();
    let r2 = discover(targets, port, Some(store.clone())).await;
    let second = sim.requests() - before;
    assert_eq!(r2.devices.len(), 1);
    assert_eq!(r2.devices[0].quirks.as_ref(), Some(&q), "still holds");
    assert!(
        second < first,
        "the known way costs less: {second} requests vs {first} the first time"
    );
    println!("quirky printer: discovery requests {first} (learning), {second} (known)");
}

/// An excluded host name excludes the addresses it resolves to at the run (it matched
/// nothing before, silently); one that does not resolve is said in the run's warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_host_name_excludes_what_it_resolves_to() {
    let port = 26000 + (std::process::id() % 20000) as u16 + 2;
    let targets = TargetSet {
        include: vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
        exclude: vec![
            "localhost".parse().unwrap(),
            "no-such-printer.invalid".parse().unwrap(),
        ],
    };
    let r = discover(targets, port, None).await;
    let of = |ip: &str| {
        r.results
            .iter()
            .find(|x| x.address == ip.parse::<IpAddr>().unwrap())
            .map(|x| x.outcome.clone())
    };
    assert!(
        matches!(of("127.0.0.1"), Some(Outcome::Excluded)),
        "{:?}",
        r.results
    );
    assert!(
        !matches!(of("127.0.0.2"), Some(Outcome::Excluded)),
        "{:?}",
        r.results
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.starts_with("exclusion no-such-printer.invalid:")
                && w.ends_with("nothing is excluded by it this run")),
        "{:?}",
        r.warnings
    );
}
