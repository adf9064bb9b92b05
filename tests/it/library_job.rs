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
