//! The reference cloud in process for end-to-end job tests: an activated agent instance,
//! its credentials stored in a state directory, and the admin calls a test makes (queue a
//! job, wait for its outcome, read heartbeats).

use fleet_agent::refcloud::{Cloud, cli as refcli};
use fleet_agent::store::refcloud::CloudDb;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A running reference cloud with one activated agent instance.
pub struct TestCloud {
    pub db: CloudDb,
    pub url: String,
    pub agent_id: String,
    pub ca_file: PathBuf,
    admin: reqwest::Client,
    _server: Box<dyn std::any::Any + Send>,
}

impl TestCloud {
    /// Starts the cloud on loopback, creates an agent instance and activates it into
    /// `state` (the agent started later finds its credentials there). The CA goes to
    /// `dir/ca.pem`.
    pub async fn start(dir: &Path, state: &Path) -> TestCloud {
        let db = CloudDb::open(None).unwrap();
        let cloud = Cloud::new(db.clone(), "admin-secret");
        let (agent_id, code, _) = cloud.create_agent("test site", &json!({})).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let cert = fleet_agent::refcloud::tls::generate(&["localhost", "127.0.0.1"]).unwrap();
        let server = refcli::start_with(listener, cloud, &cert).await.unwrap();
        fleet_agent::cloud::install_crypto();
        let admin = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap())
            .no_proxy()
            .build()
            .unwrap();
        let client = fleet_agent::cloud::client::CloudClient::new(
            &url,
            Some(cert.ca_pem.as_bytes()),
            Duration::from_secs(10),
        )
        .unwrap();
        let creds = client.activate(&code).await.unwrap();
        fleet_agent::cloud::save_credentials(state, &creds).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &cert.ca_pem).unwrap();
        TestCloud {
            db,
            url,
            agent_id,
            ca_file,
            admin,
            _server: Box::new(server),
        }
    }

    /// Queues a job of `kind` with `params` and attached `files` (name, bytes); returns
    /// its id.
    pub async fn queue(&self, kind: &str, params: Value, files: &[(&str, &[u8])]) -> String {
        use base64::Engine;
        let mut body = json!({ "type": kind, "params": params });
        if !files.is_empty() {
            let map: serde_json::Map<String, Value> = files
                .iter()
                .map(|(n, b)| {
                    (
                        n.to_string(),
                        base64::engine::general_purpose::STANDARD.encode(b).into(),
                    )
                })
                .collect();
            body["files"] = map.into();
        }
        self.submit(&body).await
    }

    /// Queues a job from its whole admin body (`type`, `printer`, `params`, `files`, ...);
    /// returns its id.
    pub async fn submit(&self, body: &Value) -> String {
        let r = self
            .admin
            .post(format!(
                "{}/admin/v1/agents/{}/jobs",
                self.url, self.agent_id
            ))
            .bearer_auth("admin-secret")
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        r.json::<Value>().await.unwrap()["jobId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A file the agent uploaded for a job.
    pub async fn job_file(&self, job_id: &str, name: &str) -> Vec<u8> {
        let r = self
            .admin
            .get(format!("{}/admin/v1/jobs/{job_id}/files/{name}", self.url))
            .bearer_auth("admin-secret")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().await.unwrap().to_vec()
    }

    /// The job as the admin API shows it.
    pub async fn job(&self, id: &str) -> Value {
        let v: Value = self
            .admin
            .get(format!("{}/admin/v1/jobs", self.url))
            .bearer_auth("admin-secret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["jobId"] == id)
            .unwrap()
            .clone()
    }

    /// Waits (up to `secs`) until the job is completed or failed.
    pub async fn outcome(&self, id: &str, secs: u64) -> Value {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let j = self.job(id).await;
            if j["state"] == "completed" || j["state"] == "failed" {
                return j;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "job {id} did not finish within {secs} s: {j}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The first message of a job's result.
pub fn message(j: &Value) -> String {
    j["result"]["messages"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string()
}
