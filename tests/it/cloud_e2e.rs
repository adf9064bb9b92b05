//! End to end over HTTPS: simulator → agent (`run`) → reference cloud. Activation with
//! malformed, unknown, expired and reused codes; the assembled assets equal what the
//! simulated printers serve; each printer's communication status reaches the cloud,
//! including a printer that refuses the agent's SNMPv3 user.

use fleet_agent::poller;
use fleet_cloud::Cloud;
use fleet_cloud::db::CloudDb;
use fleet_snmp::{Security, Target, UdpClient};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(crate::common::bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_reach_the_reference_cloud_over_https() {
    let clock = Arc::new(AtomicI64::new(fleet_agent::clock::Clock::system().now_ms()));
    let c2 = clock.clone();
    let db = CloudDb::open(None).unwrap();
    let cloud = Cloud::new(db.clone(), "admin-secret")
        .with_clock(Arc::new(move || c2.load(Ordering::SeqCst)));
    let (_, code, _) = cloud
        .create_agent("site A", &serde_json::json!({}))
        .unwrap();
    let (_, old_code, _) = cloud
        .create_agent("site B", &serde_json::json!({}))
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (ca, handle) = fleet_cloud::start(listener, cloud).await.unwrap();

    let snmp_port = 28000 + (std::process::id() % 20000) as u16;
    // Speed 0: the simulated printers do not change, so the cloud must show exactly them.
    // A third printer answers SNMPv3 for user "fleet" only; the agent is given another.
    let sim = fleet_sim::Simulator::start(
        fleet_sim::synthetic_fleet(
            3,
            fleet_sim::synth::SynthParams {
                speed: 0.0,
                seed: 11,
            },
        ),
        fleet_sim::Layout::Fleet {
            start: Ipv4Addr::new(127, 96, 0, 1),
            port: snmp_port,
            community: "public".into(),
        },
        vec![Arc::new(fleet_snmp::UsmUser::new(
            "fleet",
            Some((
                fleet_snmp::usm::AuthProtocol::Sha256,
                fleet_secret::Secret::new("authpass123"),
            )),
            None,
        ))],
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let web = 29000 + (std::process::id() % 20000) as u16;
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:{web}\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
             [cloud]\nurl = \"https://127.0.0.1:{port}\"\nca_file = \"{}\"\n\
             [[snmp_profiles]]\nname = \"public\"\nauth = {{ type = \"v2c\", community = \"public\" }}\n\
             [[snmp_profiles]]\nname = \"stranger\"\nauth = {{ type = \"v3\", user = \"stranger\", auth_protocol = \"sha256\", auth_pass = \"authpass123\" }}\n\
             [[printers]]\naddress = \"127.96.0.1:{snmp_port}\"\n[[printers]]\naddress = \"127.96.0.2:{snmp_port}\"\n\
             [[printers]]\naddress = \"127.96.0.3:{snmp_port}\"\nprofile = \"stranger\"\n",
            dir.path().join("state").display(),
            ca_file.display()
        ),
    )
    .unwrap();
    let conf_s = conf.to_str().unwrap().to_string();

    // Activation errors are clear; the right code works once.
    let (code1, _, err) = tokio::task::spawn_blocking({
        let c = conf_s.clone();
        move || run_cli(&["activate", "--config", &c, "--code", "bad"])
    })
    .await
    .unwrap();
    // A malformed code never leaves the host; refused codes are bad input data (65).
    assert_eq!(code1, Some(65));
    assert!(err.contains("looks like XXXX-XXXX-XXXX"), "{err}");
    let (code2, _, err) = tokio::task::spawn_blocking({
        let c = conf_s.clone();
        move || run_cli(&["activate", "--config", &c, "--code", "ZZZZ-ZZZZ-ZZZZ"])
    })
    .await
    .unwrap();
    assert_eq!(code2, Some(65));
    assert!(err.contains("unknown activation code"), "{err}");
    clock.fetch_add(73 * 3600 * 1000, Ordering::SeqCst);
    let (_, _, err) = tokio::task::spawn_blocking({
        let (c, k) = (conf_s.clone(), old_code.clone());
        move || run_cli(&["activate", "--config", &c, "--code", &k])
    })
    .await
    .unwrap();
    assert!(err.contains("expired"), "{err}");
    clock.fetch_sub(73 * 3600 * 1000, Ordering::SeqCst);
    let (ok, out, err) = tokio::task::spawn_blocking({
        let (c, k) = (conf_s.clone(), code.clone());
        move || run_cli(&["activate", "--config", &c, "--code", &k])
    })
    .await
    .unwrap();
    assert_eq!(ok, Some(0), "{err}");
    assert!(out.contains("activated as agent-"), "{out}");
    let (_, _, err) = tokio::task::spawn_blocking({
        let (c, k) = (conf_s.clone(), code.clone());
        move || run_cli(&["activate", "--config", &c, "--code", &k])
    })
    .await
    .unwrap();
    assert!(err.contains("already used"), "{err}");

    let mut agent = std::process::Command::new(crate::common::bin())
        .args(["run", "--config", &conf_s])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut assets = Vec::new();
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assets = db.assets().unwrap();
        if assets.len() == 2 {
            break;
        }
    }
    // The agent's heartbeat reached the cloud (sent at start, then every minute), and the
    // administration lists it.
    let mut listed = serde_json::Value::Null;
    for _ in 0..300 {
        fleet_agent::cloud::install_crypto();
        let http = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        listed = http
            .get(format!("https://127.0.0.1:{port}/admin/v1/agents"))
            .bearer_auth("admin-secret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let site_a = listed["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == "site A");
        // Statuses follow the polls' health changes within a few seconds (not a period).
        let statuses = |a: &serde_json::Value| {
            a["printers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["communication"] != "unknown")
                .count()
        };
        if site_a.is_some_and(|a| a["lastHeartbeat"].is_object() && statuses(a) == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.kill().ok();
    agent.wait().ok();
    assert_eq!(assets.len(), 2, "both printers reached the cloud");
    let agents = listed["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2, "{listed}");
    let a = agents.iter().find(|a| a["name"] == "site A").unwrap();
    let b = agents.iter().find(|a| a["name"] == "site B").unwrap();
    assert_eq!(a["activated"], true);
    assert_eq!(b["activated"], false, "site B's code expired unused");
    let hb = &a["lastHeartbeat"];
    assert_eq!(hb["agentVersion"], env!("CARGO_PKG_VERSION"), "{listed}");
    assert_eq!(hb["printers"]["total"], 3, "{listed}");
    assert_eq!(
        hb["printers"]["byHealth"]["needs_credentials"], 1,
        "{listed}"
    );
    assert!(hb["outbox"]["messages"].is_u64(), "{listed}");
    assert!(hb.get("printerStatus").is_none(), "kept apart: {listed}");
    assert!(b["lastHeartbeat"].is_null());
    assert_eq!(a["communicating"], true, "{listed}");
    assert_eq!(b["communicating"], false, "{listed}");
    let status = |host: &str| {
        a["printers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["address"] == format!("{host}:{snmp_port}"))
            .unwrap_or_else(|| panic!("no status for {host}: {listed}"))
            .clone()
    };
    for host in ["127.96.0.1", "127.96.0.2"] {
        let s = status(host);
        assert_eq!(s["communication"], "ok", "{s}");
        assert!(s["serialNumber"].is_string() && s["since"].is_i64(), "{s}");
    }
    let refused = status("127.96.0.3");
    assert_eq!(refused["communication"], "needsCredentials", "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unknown user name")),
        "{refused}"
    );
    assert!(refused.get("serialNumber").is_none(), "{refused}");
    assert!(
        !listed.to_string().contains("authpass123"),
        "no secret in the cloud's view"
    );
    let shown = fleet_cloud::admin::assets_view(&db).unwrap();
    assert_eq!(shown.len(), 2);
    for x in &shown {
        assert_eq!(
            x.communication,
            Some(fleet_protocol::heartbeat::Communication::Ok)
        );
        assert_eq!((x.communicating, x.authenticated), (true, Some(true)));
    }

    // Compare with a direct read of each simulated printer.
    let client = UdpClient::new().unwrap();
    for (i, a) in sim.addrs().iter().take(2).enumerate() {
        let (r, _) = poller::Reader::default()
            .read(
                &client,
                &Target::new(*a, Security::v2c("public")),
                &mut Default::default(),
            )
            .await
            .unwrap();
        let serial = r.serial_number.clone().unwrap();
        let row = assets
            .iter()
            .find(|x| x.serial == serial)
            .unwrap_or_else(|| panic!("printer {i} ({serial}) missing"));
        let asset = fleet_cloud::admin::asset(row, None);
        assert_eq!(asset.model_name, r.model_name);
        assert_eq!(asset.manufacturer, r.manufacturer);
        assert_eq!(
            asset.counters["lifetimeCount"],
            serde_json::json!(r.counters.lifetime_count)
        );
        let supplies = &asset.supplies;
        assert_eq!(supplies.len(), r.supplies.len());
        for (s, want) in supplies.iter().zip(&r.supplies) {
            assert_eq!(s["description"], serde_json::json!(want.description));
            assert_eq!(
                s.get("currentLevel")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null),
                serde_json::json!(want.current_level)
            );
            assert!(
                s.get("supplyKey").is_none() && s.get("ext").is_none(),
                "agent-only fields are stripped"
            );
        }
    }
    handle.shutdown();
    sim.stop().await;
}

/// The agent keeps polling through a cloud outage and a SIGKILL of its own process, and is
/// killed again during the uploads that follow: the readings wait in the durable outbox and
/// reach the cloud once it is back, each applied exactly once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_sigkill_lose_nothing() {
    let db = CloudDb::open(None).unwrap();
    let cloud = Cloud::new(db.clone(), "admin-secret");
    let (_, code, _) = cloud
        .create_agent("site C", &serde_json::json!({}))
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cloud_addr = listener.local_addr().unwrap();
    let cert = fleet_cloud::tls::generate(&["localhost", "127.0.0.1"]).unwrap();
    let handle = fleet_cloud::start_with(listener, cloud.clone(), &cert)
        .await
        .unwrap();
    let url = format!("https://{cloud_addr}");

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let client = fleet_agent::cloud::client::CloudClient::new(
        &url,
        Some(cert.ca_pem.as_bytes()),
        Duration::from_secs(10),
    )
    .unwrap();
    let creds = client.activate(&code).await.unwrap();
    fleet_agent::cloud::save_credentials(&state, &creds).unwrap();

    // The cloud goes away before the agent's first upload.
    handle.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let snmp_port = 30000 + (std::process::id() % 20000) as u16;
    let sim = crate::common::synthetic_printers(
        2,
        12,
        600.0,
        Ipv4Addr::new(127, 97, 0, 1),
        snmp_port,
        "public",
    )
    .await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cert.ca_pem).unwrap();
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
             [cloud]\nurl = \"{url}\"\nca_file = \"{}\"\n\
             [[printers]]\naddress = \"127.97.0.1:{snmp_port}\"\n[[printers]]\naddress = \"127.97.0.2:{snmp_port}\"\n",
            state.display(),
            ca_file.display()
        ),
    )
    .unwrap();
    let conf_s = conf.to_str().unwrap().to_string();
    let spawn_agent = || {
        std::process::Command::new(crate::common::bin())
            .args(["run", "--config", &conf_s])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };

    // Two polling rounds with no cloud, then SIGKILL.
    let mut agent = spawn_agent();
    let mut queued = 0;
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let store = fleet_agent::store::Store::open(&state).unwrap();
        queued = store.outbox_stats().unwrap().messages;
        if queued >= 2 {
            break;
        }
    }
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert!(queued >= 2, "the first readings wait in the outbox");
    let after_kill = fleet_agent::store::Store::open(&state)
        .unwrap()
        .outbox_stats()
        .unwrap();
    assert!(after_kill.messages >= queued, "{after_kill:?}");
    assert!(db.assets().unwrap().is_empty());

    // The cloud comes back on the same address and certificate; the agent restarts.
    let listener = std::net::TcpListener::bind(cloud_addr).unwrap();
    let handle = fleet_cloud::start_with(listener, cloud, &cert)
        .await
        .unwrap();
    // Killed again as soon as the first upload lands, while the rest are in flight.
    let mut agent = spawn_agent();
    for _ in 0..1500 {
        if !db.assets().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.kill().unwrap();
    agent.wait().unwrap();
    let mut agent = spawn_agent();
    let mut stats = after_kill;
    let mut assets = Vec::new();
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assets = db.assets().unwrap();
        stats = fleet_agent::store::Store::open(&state)
            .unwrap()
            .outbox_stats()
            .unwrap();
        if assets.len() == 2 && stats.messages == 0 {
            break;
        }
    }
    agent.kill().ok();
    agent.wait().ok();
    assert_eq!(assets.len(), 2, "both printers reached the cloud");
    assert_eq!(stats.messages, 0, "the outbox drained: {stats:?}");
    assert_eq!(stats.rejected, 0, "nothing rejected: {stats:?}");
    assert_eq!(stats.dropped, 0, "nothing evicted: {stats:?}");
    // Exactly once: every report the agent queued (sequence 1..=n per printer, nothing
    // evicted) was applied once, in order, although some were resent after the SIGKILL.
    for a in &assets {
        let seqs = db.applied_seqs(&a.agent_id, &a.serial).unwrap();
        let want: Vec<u64> = (1..=a.seq).collect();
        assert_eq!(seqs, want, "printer {}: applied reports", a.serial);
    }
    handle.shutdown();
    sim.stop().await;
}

/// A minimal HTTP CONNECT proxy on loopback that demands basic authentication and records
/// every request line it receives.
async fn connect_proxy(
    expected_auth: &'static str,
) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push(line.clone());
                let authorized = head.lines().any(|h| {
                    h.to_ascii_lowercase().starts_with("proxy-authorization:")
                        && h.ends_with(&format!("Basic {expected_auth}"))
                });
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                if !line.starts_with("CONNECT ") || !authorized {
                    c.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n").await.ok();
                    return;
                }
                let Ok(mut up) = tokio::net::TcpStream::connect(&target).await else {
                    c.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await.ok();
                    return;
                };
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .ok();
                tokio::io::copy_bidirectional(&mut c, &mut up).await.ok();
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_through_an_authenticating_proxy() {
    // "agent:s3cret-proxy" in base64.
    let (proxy, seen) = connect_proxy("YWdlbnQ6czNjcmV0LXByb3h5").await;
    let cloud_addr = activate_through(proxy).await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&format!("CONNECT {cloud_addr} "))),
        "the cloud was reached through the proxy: {seen:?}"
    );
}

/// The same through Debian's tinyproxy with Basic authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tinyproxy (Debian tinyproxy-bin); .ci/run installs it"]
async fn activation_through_tinyproxy() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("tinyproxy.conf");
    let log = dir.path().join("tinyproxy.log");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nAllow 127.0.0.1\n\
             BasicAuth agent s3cret-proxy\nLogLevel Connect\nLogFile \"{}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let mut proxy = std::process::Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tinyproxy not installed (apt-get install tinyproxy-bin)");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..50 {
        if std::net::TcpStream::connect(addr).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cloud_addr = activate_through(addr).await;
    proxy.kill().ok();
    proxy.wait().ok();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.contains(&format!("CONNECT {cloud_addr}")),
        "tinyproxy carried the activation: {log}"
    );
}

/// Activates an agent through the proxy at `proxy` (user "agent", password
/// "s3cret-proxy"): a wrong password fails clearly without printing it, the right one
/// works. Returns the cloud's address.
async fn activate_through(proxy: std::net::SocketAddr) -> std::net::SocketAddr {
    let db = CloudDb::open(None).unwrap();
    let cloud = Cloud::new(db.clone(), "admin-secret");
    let (_, code, _) = cloud
        .create_agent("site D", &serde_json::json!({}))
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cloud_addr = listener.local_addr().unwrap();
    let (ca, handle) = fleet_cloud::start(listener, cloud).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let write_conf = |name: &str, password: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "[agent]\nstate_dir = \"{}\"\n[cloud]\nurl = \"https://{cloud_addr}\"\nca_file = \"{}\"\n\
                 proxy = {{ type = \"http\", url = \"http://{proxy}\", user = \"agent\", password = \"{password}\" }}\n",
                dir.path().join("state").display(),
                ca_file.display()
            ),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    };
    let wrong = write_conf("wrong.toml", "not-the-password");
    let right = write_conf("right.toml", "s3cret-proxy");

    // A wrong proxy password: a clear failure, the code stays usable, no secret printed.
    let (status, out, err) = tokio::task::spawn_blocking({
        let (c, k) = (wrong.clone(), code.clone());
        move || run_cli(&["activate", "--config", &c, "--code", &k])
    })
    .await
    .unwrap();
    assert_eq!(status, Some(1), "{out}{err}");
    assert!(err.contains("activation failed"), "{err}");
    assert!(err.to_lowercase().contains("tunnel"), "{err}");
    assert!(!err.contains("not-the-password") && !out.contains("not-the-password"));

    let (status, out, err) = tokio::task::spawn_blocking({
        let (c, k) = (right.clone(), code.clone());
        move || run_cli(&["activate", "--config", &c, "--code", &k])
    })
    .await
    .unwrap();
    assert_eq!(status, Some(0), "{out}{err}");
    assert!(out.contains("activated as agent-"), "{out}");
    assert!(!err.contains("s3cret-proxy") && !out.contains("s3cret-proxy"));
    handle.shutdown();
    cloud_addr
}

/// Hosts in `no_proxy` are reached directly; others go to the (here dead) proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_hosts_bypass_the_proxy() {
    let cloud = Cloud::new(CloudDb::open(None).unwrap(), "admin-secret");
    let (_, code, _) = cloud
        .create_agent("site E", &serde_json::json!({}))
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cloud_addr = listener.local_addr().unwrap();
    let (ca, handle) = fleet_cloud::start(listener, cloud).await.unwrap();
    // A port nobody listens on: the proxy is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let write_conf = |name: &str, no_proxy: &str| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "[agent]\nstate_dir = \"{}\"\n[cloud]\nurl = \"https://{cloud_addr}\"\nca_file = \"{}\"\n\
                 proxy = {{ type = \"http\", url = \"http://{dead}\", no_proxy = [{no_proxy}] }}\n",
                dir.path().join("state").display(),
                ca_file.display()
            ),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    };
    let via_proxy = write_conf("via.toml", "\"printers.example\"");
    let direct = write_conf("direct.toml", "\"printers.example\", \"127.0.0.0/8\"");
    let (status, _, err) = tokio::task::spawn_blocking({
        let (c, k) = (via_proxy, code.clone());
        move || run_cli(&["activate", "--config", &c, "--code", &k])
    })
    .await
    .unwrap();
    assert_eq!(status, Some(1), "{err}");
    assert!(err.contains("activation failed"), "{err}");
    let (status, out, err) = tokio::task::spawn_blocking({
        let (c, k) = (direct, code.clone());
        move || run_cli(&["activate", "--config", &c, "--code", &k])
    })
    .await
    .unwrap();
    assert_eq!(status, Some(0), "{out}{err}");
    handle.shutdown();
}
