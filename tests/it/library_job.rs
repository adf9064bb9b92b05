//! The printer support library from the cloud: a signed package queued as an
//! `updateLibrary` job reaches a running agent, is verified and swapped in; a tampered
//! one, one signed by a key the agent does not trust and an older one are refused with
//! the reason while the installed library stays; after a restart the agent still runs
//! the installed version and says so in its heartbeat.

use crate::common::cloud::message;
use base64::Engine;
use fleet_agent::printer::library;
use fleet_protocol::jobs::JobState;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_libraries_install_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = crate::common::cloud::start(dir.path(), &state).await;
    let (db, agent_id) = (cloud.db.clone(), cloud.agent_id.clone());

    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n\
             [cloud]\nurl = \"{}\"\nca_file = \"{}\"\nlibrary_keys = [\"{public}\"]\n",
            state.display(),
            cloud.url,
            cloud.ca_file.display()
        ),
    )
    .unwrap();
    let spawn = || crate::common::agent::InProcess::start(&conf, None);
    let agent = spawn();

    let queue = |params: Value| cloud.queue("updateLibrary", params, &[]);
    let outcome = |id: String| {
        let cloud = &cloud;
        async move { cloud.outcome(&id, 30).await }
    };

    let mut lib = library::builtin();
    lib.version = 2;
    let good = library::sign(&lib, &key);
    let j = outcome(queue(json!({ "package": good })).await).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert!(message(&j).contains("library 2 installed (was 1)"), "{j:?}");

    // One byte changed after signing: refused, version 2 stays.
    let mut tampered = library::sign(
        &library::Library {
            version: 3,
            ..lib.clone()
        },
        &key,
    );
    tampered.library = tampered.library.replacen("\"HP\"", "\"HQ\"", 1);
    let j = outcome(queue(json!({ "package": tampered })).await).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert!(message(&j).contains("tampered"), "{j:?}");
    assert!(message(&j).contains("version 2 stays"), "{j:?}");
    // Signed by a key the agent does not trust.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let j = outcome(
        queue(json!({ "package": library::sign(&library::Library { version: 4, ..lib.clone() }, &stranger) }))
            .await,
    )
    .await;
    assert_eq!(j.state, JobState::Failed);
    assert!(message(&j).contains("does not trust"), "{j:?}");
    // Not newer.
    let j = outcome(queue(json!({ "package": good })).await).await;
    assert_eq!(j.state, JobState::Failed);
    assert!(message(&j).contains("not newer"), "{j:?}");
    // No package at all.
    let j = outcome(queue(json!({})).await).await;
    assert!(message(&j).contains("params.package"), "{j:?}");

    // After a restart the stored package is verified and in use again; the heartbeat
    // says which version runs.
    agent.stop();
    let before = db
        .agents()
        .unwrap()
        .into_iter()
        .find(|a| a.id == agent_id)
        .and_then(|a| a.heartbeat)
        .map(|(at, _)| at);
    let _agent = spawn();
    let mut version = None;
    for _ in 0..200 {
        let hb = db
            .agents()
            .unwrap()
            .into_iter()
            .find(|a| a.id == agent_id)
            .and_then(|a| a.heartbeat);
        if let Some((at, body)) = hb
            && Some(at) != before
        {
            let v: Value = serde_json::from_str(&body).unwrap();
            version = v["libraryVersion"].as_u64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(version, Some(2), "the installed library survives a restart");
}

/// A signed library that adds a vendor's meter map makes that vendor's counters appear
/// in the readings from the next poll on, without a new agent; the cloud's asset carries
/// the meters the printer's snapshot held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_adding_a_vendors_meters_shows_them_from_the_next_poll() {
    use fleet_protocol::meters::{Colour, Function, Meter};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let recordings = dir.path().join("rec");
    std::fs::create_dir_all(&recordings).unwrap();
    // A printer of a vendor no library knows: enterprise 64999, counters under .5.1.
    std::fs::write(
        recordings.join("initech.snmprec"),
        "1.3.6.1.2.1.1.1.0|4|Initech TPS 9000\n\
         1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.64999.1\n\
         1.3.6.1.2.1.43.5.1.1.17.1|4|INI-0042\n\
         1.3.6.1.2.1.43.10.2.1.4.1.1|65|5000\n\
         1.3.6.1.2.1.43.10.2.1.3.1.1|2|7\n\
         1.3.6.1.4.1.64999.5.1.1.0|65|3000\n\
         1.3.6.1.4.1.64999.5.1.2.0|65|2000\n\
         1.3.6.1.4.1.64999.5.1.9.0|65|7\n",
    )
    .unwrap();
    let (_sim, snmp) = crate::common::simulate_dir(&recordings, &[]);
    let cloud = crate::common::cloud::start(dir.path(), &state).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n\
             [poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
             [cloud]\nurl = \"{}\"\nca_file = \"{}\"\nlibrary_keys = [\"{public}\"]\n\
             [[snmp_profiles]]\nname = \"initech\"\nauth = {{ type = \"v2c\", community = \"initech\" }}\n\
             [[printers]]\naddress = \"{snmp}\"\nprofile = \"initech\"\n",
            state.display(),
            cloud.url,
            cloud.ca_file.display()
        ),
    )
    .unwrap();
    fleet_agent::store::Store::open(&state).unwrap();
    let _agent = crate::common::agent::InProcess::start(&conf, None);
    let meters = || -> Option<Vec<Meter>> {
        let store = fleet_agent::store::Store::open(&state).ok()?;
        let id = store.printers().ok()?.first()?.id;
        let report: Value = serde_json::from_str(&store.latest_report(id).ok()??).ok()?;
        serde_json::from_value(report["meters"].clone()).ok()
    };
    let first = crate::common::wait_for("a first reading", 30, meters).await;
    let oids: Vec<&str> = first.iter().map(|m| m.oid.as_str()).collect();
    assert_eq!(
        oids,
        ["1.3.6.1.2.1.43.10.2.1.4.1.1"],
        "without a map, only the standard counter is a meter"
    );

    let mut lib = library::builtin();
    lib.version = 2;
    lib.vendors.push(
        serde_json::from_value(json!({
            "name": "Initech",
            "enterprise": 64999,
            "meters": [{
                "source": "Initech MIB 1.0",
                "tables": [{"oid": "1.3.6.1.4.1.64999.5.1"}],
                "rules": [
                    {"name": "initech.printMono", "oid": "1.3.6.1.4.1.64999.5.1.1.0",
                     "function": "print", "colour": "mono", "unit": "sides",
                     "counter": "monoPrintSideCount"},
                    {"name": "initech.printColour", "oid": "1.3.6.1.4.1.64999.5.1.2.0",
                     "function": "print", "colour": "colour", "unit": "sides"}
                ]
            }]
        }))
        .unwrap(),
    );
    let id = cloud
        .queue(
            "updateLibrary",
            json!({ "package": library::sign(&lib, &key) }),
            &[],
        )
        .await;
    let j = cloud.outcome(&id, 30).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let after = crate::common::wait_for("the vendor's meters", 30, || {
        meters().filter(|m| m.len() == 4)
    })
    .await;
    let mono = after
        .iter()
        .find(|m| m.oid == "1.3.6.1.4.1.64999.5.1.1.0")
        .unwrap();
    assert_eq!(mono.value, 3000);
    assert_eq!(mono.rule.as_deref(), Some("initech.printMono"));
    assert_eq!(
        (mono.function, mono.colour),
        (Some(Function::Print), Some(Colour::Mono))
    );
    // A counter in the vendor's subtree the map does not name: listed, OID and value only.
    let unknown = after
        .iter()
        .find(|m| m.oid == "1.3.6.1.4.1.64999.5.1.9.0")
        .unwrap();
    assert_eq!((unknown.value, unknown.rule.as_ref()), (7, None));
    let store = fleet_agent::store::Store::open(&state).unwrap();
    let pid = store.printers().unwrap()[0].id;
    let report: Value = serde_json::from_str(&store.latest_report(pid).unwrap().unwrap()).unwrap();
    assert_eq!(report["counters"]["monoPrintSideCount"], 3000);
    assert_eq!(
        report["counters"]["ext"]["sources"]["monoPrintSideCount"],
        "library:initech.printMono"
    );

    // Meters alone never trigger an upload; a refresh sends the reading as a snapshot,
    // and the cloud's asset then carries the vendor's meters, in OID order.
    let refresh = cloud.submit(&json!({ "type": "refresh" })).await;
    let j = cloud.outcome(&refresh, 30).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let mut oids = Vec::new();
    for _ in 0..100 {
        let assets = cloud.assets().await;
        oids = assets
            .content
            .first()
            .map(|a| a.meters.iter().map(|m| m.oid.clone()).collect())
            .unwrap_or_default();
        if oids.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        oids,
        [
            "1.3.6.1.2.1.43.10.2.1.4.1.1",
            "1.3.6.1.4.1.64999.5.1.1.0",
            "1.3.6.1.4.1.64999.5.1.2.0",
            "1.3.6.1.4.1.64999.5.1.9.0"
        ]
    );
}
