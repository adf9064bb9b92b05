//! The printer support library from the cloud: a signed package queued as an
//! `updateLibrary` job reaches a running agent, is verified and swapped in; a tampered
//! one, one signed by a key the agent does not trust and an older one are refused with
//! the reason while the installed library stays; after a restart the agent still runs
//! the installed version and says so in its heartbeat.

mod common;

use base64::Engine;
use fleet_agent::printer::library;
use fleet_agent::refcloud::{Cloud, cli as refcli};
use fleet_agent::store::refcloud::CloudDb;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_libraries_install_and_bad_ones_are_refused() {
    let db = CloudDb::open(None).unwrap();
    let cloud = Cloud::new(db.clone(), "admin-secret");
    let (agent_id, code, _) = cloud.create_agent("library site", &json!({})).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let cert = fleet_agent::refcloud::tls::generate(&["localhost", "127.0.0.1"]).unwrap();
    let _handle = refcli::start_with(listener, cloud, &cert).await.unwrap();
    fleet_agent::cloud::install_crypto();
    let admin = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap())
        .no_proxy()
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let client = fleet_agent::cloud::client::CloudClient::new(
        &url,
        Some(cert.ca_pem.as_bytes()),
        Duration::from_secs(10),
    )
    .unwrap();
    let creds = client.activate(&code).await.unwrap();
    fleet_agent::cloud::save_credentials(&state, &creds).unwrap();

    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cert.ca_pem).unwrap();
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n\
             [cloud]\nurl = \"{url}\"\nca_file = \"{}\"\nlibrary_keys = [\"{public}\"]\n",
            state.display(),
            ca_file.display()
        ),
    )
    .unwrap();
    let spawn = || common::Proc {
        child: std::process::Command::new(common::bin())
            .args(["run", "--config", conf.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        first_line: String::new(),
    };
    let mut agent = spawn();

    let queue = |params: Value| {
        let (admin, url, agent) = (admin.clone(), url.clone(), agent_id.clone());
        async move {
            let r = admin
                .post(format!("{url}/admin/v1/agents/{agent}/jobs"))
                .bearer_auth("admin-secret")
                .json(&json!({ "type": "updateLibrary", "params": params }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()["jobId"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let outcome = |id: String| {
        let (admin, url) = (admin.clone(), url.clone());
        async move {
            for _ in 0..300 {
                let v: Value = admin
                    .get(format!("{url}/admin/v1/jobs"))
                    .bearer_auth("admin-secret")
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let j = v["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|j| j["jobId"] == id)
                    .unwrap()
                    .clone();
                if j["state"] == "completed" || j["state"] == "failed" {
                    return j;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("job {id} did not finish");
        }
    };
    let message = |j: &Value| {
        j["result"]["messages"][0]["text"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    let mut lib = library::Library::builtin();
    lib.version = 2;
    let good = library::sign(&lib, &key);
    let j = outcome(queue(json!({ "package": good })).await).await;
    assert_eq!(j["state"], "completed", "{j}");
    assert!(message(&j).contains("library 2 installed (was 1)"), "{j}");

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
    assert_eq!(j["state"], "failed", "{j}");
    assert!(message(&j).contains("tampered"), "{j}");
    assert!(message(&j).contains("version 2 stays"), "{j}");
    // Signed by a key the agent does not trust.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let j = outcome(
        queue(json!({ "package": library::sign(&library::Library { version: 4, ..lib.clone() }, &stranger) }))
            .await,
    )
    .await;
    assert_eq!(j["state"], "failed");
    assert!(message(&j).contains("does not trust"), "{j}");
    // Not newer.
    let j = outcome(queue(json!({ "package": good })).await).await;
    assert_eq!(j["state"], "failed");
    assert!(message(&j).contains("not newer"), "{j}");
    // No package at all.
    let j = outcome(queue(json!({})).await).await;
    assert!(message(&j).contains("params.package"), "{j}");

    // After a restart the stored package is verified and in use again; the heartbeat
    // says which version runs.
    agent.child.kill().ok();
    agent.child.wait().ok();
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
