//! The reference cloud in process for end-to-end job tests: an activated agent instance,
//! its credentials stored in a state directory, and the admin calls a test makes (queue a
//! job, wait for its outcome, read heartbeats).

use fleet_agent::refcloud::{Cloud, cli as refcli};
use fleet_agent::store::refcloud::CloudDb;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A running reference cloud with one agent instance (`agent_id`, activation `code`).
pub struct TestCloud {
    pub db: CloudDb,
    pub url: String,
    pub agent_id: String,
    pub code: String,
    pub ca_file: PathBuf,
    pub ca_pem: String,
    /// A client that trusts the cloud's CA; admin calls carry [`ADMIN_TOKEN`].
    pub admin: reqwest::Client,
    /// The server; dropping the `TestCloud` shuts it down.
    pub server: axum_server::Handle<std::net::SocketAddr>,
    cloud: Cloud,
}

impl Drop for TestCloud {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

/// The admin token of every test cloud.
pub const ADMIN_TOKEN: &str = "admin-secret";

impl TestCloud {
    /// Starts the cloud on loopback, creates an agent instance and activates it into
    /// `state` (the agent started later finds its credentials there). The CA goes to
    /// `dir/ca.pem`.
    pub async fn start(dir: &Path, state: &Path) -> TestCloud {
        let cloud = Self::serve(dir, |c| c).await;
        cloud.activate(&cloud.code, state).await;
        cloud
    }

    /// Starts the cloud with the options `configure` sets (a test clock, the heartbeat)
    /// and one agent instance, not activated. The CA goes to `dir/ca.pem`.
    pub async fn serve(dir: &Path, configure: impl FnOnce(Cloud) -> Cloud) -> TestCloud {
        let db = CloudDb::open(None).unwrap();
        let cloud = configure(Cloud::new(db.clone(), ADMIN_TOKEN));
        let (agent_id, code, _) = cloud.create_agent("test site", &json!({})).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let cert = fleet_agent::refcloud::tls::generate(&["localhost", "127.0.0.1"]).unwrap();
        let server = refcli::start_with(listener, cloud.clone(), &cert)
            .await
            .unwrap();
        fleet_agent::cloud::install_crypto();
        let admin = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).unwrap())
            .no_proxy()
            .build()
            .unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &cert.ca_pem).unwrap();
        TestCloud {
            db,
            url,
            agent_id,
            code,
            ca_file,
            ca_pem: cert.ca_pem,
            admin,
            server,
            cloud,
        }
    }

    /// Creates another agent instance; returns its id and activation code.
    pub fn create_agent(&self, name: &str) -> (String, String) {
        let (id, code, _) = self.cloud.create_agent(name, &json!({})).unwrap();
        (id, code)
    }

    /// Activates with `code` as an agent would, stores the credentials in `state` and
    /// returns them.
    pub async fn activate(
        &self,
        code: &str,
        state: &Path,
    ) -> fleet_agent::cloud::client::Credentials {
        let client = fleet_agent::cloud::client::CloudClient::new(
            &self.url,
            Some(self.ca_pem.as_bytes()),
            Duration::from_secs(10),
        )
        .unwrap();
        let creds = client.activate(code).await.unwrap();
        fleet_agent::cloud::save_credentials(state, &creds).unwrap();
        creds
    }

    /// `url` + `path` for an admin call.
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// An admin GET of `path`, its JSON answer.
    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self
            .admin
            .get(self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Every job as the admin API lists them.
    pub async fn jobs(&self) -> Vec<Value> {
        self.admin_get("/admin/v1/jobs").await["jobs"]
            .as_array()
            .unwrap()
            .clone()
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

    /// Queues a job from its whole admin body (`type`, `printer`, `params`, `files`, ...)
    /// for this cloud's agent instance; returns its id.
    pub async fn submit(&self, body: &Value) -> String {
        self.submit_for(&self.agent_id, body).await
    }

    /// As [`TestCloud::submit`] for another agent instance.
    pub async fn submit_for(&self, agent_id: &str, body: &Value) -> String {
        let r = self
            .admin
            .post(self.admin_url(&format!("/admin/v1/agents/{agent_id}/jobs")))
            .bearer_auth(ADMIN_TOKEN)
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
            .get(self.admin_url(&format!("/admin/v1/jobs/{job_id}/files/{name}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().await.unwrap().to_vec()
    }

    /// The job as the admin API shows it.
    pub async fn job(&self, id: &str) -> Value {
        self.jobs()
            .await
            .into_iter()
            .find(|j| j["jobId"] == id)
            .unwrap_or_else(|| panic!("no job {id}"))
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
