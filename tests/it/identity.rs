//! A printer's stored state follows the printer, not the address (issue: state keyed by
//! IP:port offered stored secrets to whatever device took the old address). Credentials
//! set by `updateCredentials` are bound to the device (serial, SNMPv3 engine ID): when
//! discovery finds the printer at a new address they follow it there and the old
//! address is no longer polled; a different device at the address (another engine) is
//! never sent them, and the printer needs credentials, saying why.

use crate::common::cloud::{self, AgentSide, TestCloud};
use fleet_protocol::admin::JobView;
use fleet_protocol::jobs::{JobState, Status};
use fleet_secret::Secret;
use fleet_snmp::agent::UsmAgent;
use fleet_snmp::usm::AuthProtocol;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

fn user() -> Arc<fleet_snmp::UsmUser> {
    Arc::new(fleet_snmp::UsmUser::new(
        "fleet",
        Some((AuthProtocol::Sha256, Secret::new("authpass123"))),
        None,
    ))
}

/// One simulated printer (always the same one: same seed, same serial) at `ip`, with an
/// SNMPv3 engine `engine`.
async fn printer_at(ip: Ipv4Addr, port: u16, engine: &[u8]) -> fleet_sim::Simulator {
    fleet_sim::Simulator::start_with_engine(
        fleet_sim::synthetic_fleet(
            1,
            fleet_sim::synth::SynthParams {
                speed: 0.0,
                seed: 77,
            },
        ),
        fleet_sim::Layout::Fleet {
            start: ip,
            port,
            community: "public".into(),
        },
        Some(UsmAgent::new(engine.to_vec(), 1, vec![user()])),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_follow_the_printer_and_no_other_device_gets_them() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = TestCloud::serve(dir.path(), |c| c).await;
    cloud.activate(&cloud.code, &state).await;
    let port = 36000 + (std::process::id() % 20000) as u16;
    let net = (std::process::id() % 200) as u8;
    let (a, b) = (
        Ipv4Addr::new(127, 88, net, 1),
        Ipv4Addr::new(127, 88, net, 2),
    );
    let (at_a, at_b) = (
        SocketAddr::new(a.into(), port),
        SocketAddr::new(b.into(), port),
    );
    let engine = b"\x80\x00\xfa\xfa\x04printer-one";
    let sim = printer_at(a, port, engine).await;

    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 3600\n\
             [discovery]\ninclude = [\"{a}-{b}\"]\nport = {port}\ninterval_secs = 86400\n\
             [cloud]\nurl = \"{}\"\nca_file = \"{}\"\n\
             [[snmp_profiles]]\nname = \"default\"\nauth = {{ type = \"v2c\", community = \"public\" }}\ntimeout_ms = 500\nretries = 1\n",
            state.display(),
            cloud.url,
            cloud.ca_file.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let _agent = crate::common::agent::InProcess::start(&conf, Some(&log));
    let run = |body: Value| {
        let cloud = &cloud;
        async move { cloud.outcome(&cloud.submit(&body).await, 30).await }
    };
    let printers = |j: &JobView| {
        cloud::result(j)
            .printers
            .iter()
            .map(|p| (p.address.clone(), p.status))
            .collect::<Vec<_>>()
    };
    let serial = crate::common::wait_for("the printer in the cloud", 30, || {
        cloud.db.assets().unwrap().first().map(|a| a.serial.clone())
    })
    .await;
    let printer = json!({ "serialNumber": serial });

    // SNMPv3 credentials for this printer: tried, stored, bound to its engine.
    let j = run(json!({ "type": "updateCredentials", "printer": printer,
        "params": { "auth": { "type": "v3", "user": "fleet", "auth_protocol": "sha256",
                              "auth_pass": "authpass123" } } }))
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let j = run(json!({ "type": "refreshPrinter", "printer": printer })).await;
    assert_eq!(printers(&j), [(at_a.to_string(), Status::Completed)]);

    // DHCP gives the printer another address: the next discovery finds it there, its
    // credentials follow it, and the old address is no longer polled.
    sim.stop().await;
    let sim = printer_at(b, port, engine).await;
    let j = run(json!({ "type": "discover" })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    {
        let store = fleet_agent::store::Store::open(&state).unwrap();
        let key = fleet_agent::store::secrets::SealKey::for_store(&store, &state).unwrap();
        assert!(fleet_agent::jobs::stored_security(&store, &key, at_b).is_some());
        assert!(fleet_agent::jobs::stored_security(&store, &key, at_a).is_none());
        // One printer, at its new address (its row moved with it: same id, history).
        let rows: Vec<String> = store
            .printers()
            .unwrap()
            .into_iter()
            .map(|p| p.address)
            .collect();
        assert_eq!(rows, [at_b.to_string()]);
        let id = store.printers().unwrap()[0].id;
        let events = store.events(id).unwrap();
        assert!(
            events
                .iter()
                .any(|(_, kind, detail)| kind == "moved" && detail.contains(&at_a.to_string())),
            "{events:?}"
        );
    }
    let j = run(json!({ "type": "refresh" })).await;
    assert_eq!(
        printers(&j),
        [(at_b.to_string(), Status::Completed)],
        "polled at the new address only, with the stored credentials"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Printer moved"), "{text}");

    // Another device takes that address (another engine, which also knows the user):
    // the stored credentials are not sent to it, and the printer needs credentials.
    sim.stop().await;
    let _impostor = printer_at(b, port, b"\x80\x00\xfa\xfa\x04someone-else").await;
    let j =
        run(json!({ "type": "refreshPrinter", "printer": { "address": at_b.to_string() } })).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    let why = format!("{:?}", cloud::result(&j));
    assert!(
        why.contains("is not") && why.contains("the device these credentials were set for"),
        "{why}"
    );
    let mut seen = None;
    for _ in 0..300 {
        let agents = cloud.agents().await;
        seen = agents
            .agents
            .first()
            .and_then(|a| a.printers.iter().find(|p| p.address == at_b.to_string()))
            .cloned();
        if seen
            .as_ref()
            .is_some_and(|p| serde_json::to_value(p.communication).unwrap() == "needsCredentials")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let seen = seen.unwrap();
    assert_eq!(
        serde_json::to_value(seen.communication).unwrap(),
        "needsCredentials",
        "{seen:?}"
    );
    assert!(
        seen.reason.as_deref().unwrap_or("").contains("engine ID"),
        "{seen:?}"
    );
}
