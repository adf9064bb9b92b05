//! Two agents see the same printer. Without takeover the second is told the printer is
//! managed by another agent and stops polling it; with takeover (set from the cloud) the
//! printer moves to it; the first agent, even with takeover on, cannot take it back
//! within the hold time, so the printer never flaps between them.

mod common;

use fleet_agent::refcloud::{Cloud, cli as refcli};
use fleet_agent::simulator::{self, Layout, Simulator, synth};
use fleet_agent::store::refcloud::CloudDb;
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_moves_by_takeover_and_does_not_flap() {
    let db = CloudDb::open(None).unwrap();
    let cloud = Cloud::new(db.clone(), "admin-secret").with_heartbeat_secs(10);
    let (id_a, code_a, _) = cloud.create_agent("site A", &json!({})).unwrap();
    let (id_b, code_b, _) = cloud.create_agent("site B", &json!({})).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let cert = fleet_agent::refcloud::tls::generate(&["localhost", "127.0.0.1"]).unwrap();
    let handle = refcli::start_with(listener, cloud, &cert).await.unwrap();
    fleet_agent::cloud::install_crypto();
    let admin = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap())
        .no_proxy()
        .build()
        .unwrap();

    let snmp_port = 33000 + (std::process::id() % 20000) as u16;
    let sim = Simulator::start(
        simulator::synthetic_fleet(
            1,
            synth::SynthParams {
                speed: 0.0,
                seed: 3,
            },
        ),
        Layout::Fleet {
            start: Ipv4Addr::new(127, 92, 0, 1),
            port: snmp_port,
            community: "public".into(),
        },
        vec![],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cert.ca_pem).unwrap();
    let client = fleet_agent::cloud::client::CloudClient::new(
        &url,
        Some(cert.ca_pem.as_bytes()),
        Duration::from_secs(10),
    )
    .unwrap();
    let start = |name: &str, code: &str| {
        let state = dir.path().join(name);
        let conf = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &conf,
            format!(
                "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
                 [cloud]\nurl = \"{url}\"\nca_file = \"{}\"\n[[printers]]\naddress = \"127.92.0.1:{snmp_port}\"\n",
                state.display(),
                ca_file.display()
            ),
        )
        .unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let code = code.to_string();
        let client = &client;
        async move {
            let creds = client.activate(&code).await.unwrap();
            fleet_agent::cloud::save_credentials(&state, &creds).unwrap();
            let child = common::Proc {
                child: std::process::Command::new(common::bin())
                    .args(["run", "--config", conf.to_str().unwrap()])
                    .env("FLEET_AGENT_LOG", "info")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap(),
                first_line: String::new(),
            };
            (child, log)
        }
    };
    let owner = || {
        let a = db.assets().unwrap();
        assert!(a.len() <= 1, "one printer, one owner: {a:?}");
        a.first().map(|x| x.agent_id.clone())
    };
    async fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        for _ in 0..secs * 10 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }
    let logged = |log: &std::path::Path, text: &str| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(text)
    };

    // A enrolls the printer.
    let (_a, log_a) = start("a", &code_a).await;
    wait("A owns the printer", 30, || {
        owner().as_deref() == Some(id_a.as_str())
    })
    .await;
    // B sees it too, without takeover: told it belongs to another agent, stops polling.
    let (_b, log_b) = start("b", &code_b).await;
    wait("B told", 30, || {
        logged(&log_b, "Printer managed by another agent")
    })
    .await;
    assert_eq!(owner().as_deref(), Some(id_a.as_str()));

    // Takeover switched on for B from the cloud: the printer moves to B.
    let settings = |agent: String| {
        let (admin, url) = (admin.clone(), url.clone());
        async move {
            let r = admin
                .put(format!("{url}/admin/v1/agents/{agent}/settings"))
                .bearer_auth("admin-secret")
                .json(&json!({ "discovery": { "takeover": true } }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    };
    settings(id_b.clone()).await;
    wait("B takes the printer over", 40, || {
        owner().as_deref() == Some(id_b.as_str())
    })
    .await;

    // A switched on too, and forced to upload (a refresh job): the printer stays with B.
    settings(id_a.clone()).await;
    wait("A applies its settings", 40, || {
        std::fs::read_to_string(&log_a)
            .unwrap_or_default()
            .matches("Configuration applied")
            .count()
            >= 1
    })
    .await;
    let r: Value = admin
        .post(format!("{url}/admin/v1/agents/{id_a}/jobs"))
        .bearer_auth("admin-secret")
        .json(&json!({ "type": "refresh" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["jobId"].is_string(), "{r}");
    wait("A told it belongs to B", 40, || {
        logged(&log_a, "Printer managed by another agent")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        owner().as_deref(),
        Some(id_b.as_str()),
        "no flapping back to A"
    );
    handle.shutdown();
    sim.stop().await;
}
