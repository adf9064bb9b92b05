//! The reference cloud on loopback for tests: a generated CA, one
//! agent instance, and the admin calls a test makes (queue a job, wait for its outcome,
//! read its files, heartbeats and assets), every answer typed.

use crate::db::CloudDb;
use crate::{Cloud, start_with, tls};
use fleet_protocol::admin::{Agents, AssetsPage, JobView, Jobs, SettingsSaved};
use fleet_protocol::heartbeat::ConfigStatus;
use fleet_protocol::jobs::JobState;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The admin token of every test cloud.
pub const ADMIN_TOKEN: &str = "admin-secret";

/// A running reference cloud with one agent instance (`agent_id`, activation `code`).
pub struct TestCloud {
    /// Its database.
    pub db: CloudDb,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The agent instance created at start.
    pub agent_id: String,
    /// Its activation code.
    pub code: String,
    /// The CA certificate, written to a file.
    pub ca_file: PathBuf,
    /// The CA certificate.
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

impl TestCloud {
    /// Starts the cloud with the options `configure` sets (a test clock, the heartbeat)
    /// and one agent instance, not activated. The CA goes to `dir/ca.pem`.
    ///
    /// # Panics
    /// When anything fails to start (a test harness).
    pub async fn serve(dir: &Path, configure: impl FnOnce(Cloud) -> Cloud) -> TestCloud {
        let db = CloudDb::open(None).expect("in-memory database");
        let cloud = configure(Cloud::new(db.clone(), ADMIN_TOKEN));
        let (agent_id, code, _) = cloud
            .create_agent("test site", &json!({}))
            .expect("agent instance");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback listener");
        let url = format!("https://{}", listener.local_addr().expect("local address"));
        let cert = tls::generate(&["localhost", "127.0.0.1"]).expect("certificates");
        let server = start_with(listener, cloud.clone(), &cert)
            .await
            .expect("cloud started");
        let admin = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(cert.ca_pem.as_bytes()).expect("CA"),
            )
            .no_proxy()
            .build()
            .expect("admin client");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &cert.ca_pem).expect("CA file");
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

    /// The server state (test hooks: [`Cloud::set_upload_answer_delay_ms`],
    /// [`Cloud::uploads_seen`]).
    pub fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    /// Creates another agent instance; returns its id and activation code.
    ///
    /// # Panics
    /// On a database failure.
    pub fn create_agent(&self, name: &str) -> (String, String) {
        let (id, code, _) = self
            .cloud
            .create_agent(name, &json!({}))
            .expect("agent instance");
        (id, code)
    }

    /// `url` + `path` for an admin call.
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// An admin GET of `path`, its answer.
    ///
    /// # Panics
    /// When the call fails or the answer does not fit `T`.
    pub async fn admin_get<T: DeserializeOwned>(&self, path: &str) -> T {
        let r = self
            .admin
            .get(self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("a typed answer")
    }

    /// Every job as the admin API lists them.
    pub async fn jobs(&self) -> Vec<JobView> {
        self.admin_get::<Jobs>("/admin/v1/jobs").await.jobs
    }

    /// The agent instances.
    pub async fn agents(&self) -> Agents {
        self.admin_get("/admin/v1/agents").await
    }

    /// Saves `body` as this cloud's agent instance settings; returns their entity tag.
    ///
    /// # Panics
    /// When the cloud refuses them.
    pub async fn put_settings(&self, body: &Value) -> String {
        let path = format!("/admin/v1/agents/{}/settings", self.agent_id);
        let r = self
            .admin
            .put(self.admin_url(&path))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("admin PUT");
        assert!(r.status().is_success(), "PUT {path}: {}", r.status());
        r.json::<SettingsSaved>().await.expect("the saved tag").etag
    }

    /// The settings status in this cloud's agent instance's last heartbeat (empty before
    /// the first).
    pub async fn settings_status(&self) -> ConfigStatus {
        self.agents()
            .await
            .agents
            .into_iter()
            .find(|a| a.agent_id == self.agent_id)
            .and_then(|a| a.last_heartbeat)
            .map(|h| h.config)
            .unwrap_or_default()
    }

    /// Waits up to `secs` for the last heartbeat's settings status to satisfy `f`.
    ///
    /// # Panics
    /// When it does not in time, naming `what` and the last status.
    pub async fn wait_settings(
        &self,
        what: &str,
        secs: u64,
        f: impl Fn(&ConfigStatus) -> bool,
    ) -> ConfigStatus {
        let mut status = self.settings_status().await;
        for _ in 0..secs * 10 {
            if f(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            status = self.settings_status().await;
        }
        panic!("timed out waiting for {what}: {status:?}");
    }

    /// The assembled printers.
    pub async fn assets(&self) -> AssetsPage {
        self.admin_get("/v1.0/assets").await
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

    /// Queues a job from its whole admin body as the wire carries it (`type`, `printer`,
    /// `params`, `files`, ...) for this cloud's agent instance; returns its id.
    pub async fn submit(&self, body: &Value) -> String {
        self.submit_for(&self.agent_id, body).await
    }

    /// As [`TestCloud::submit`] for another agent instance.
    ///
    /// # Panics
    /// When the cloud does not queue it.
    pub async fn submit_for(&self, agent_id: &str, body: &Value) -> String {
        let r = self
            .admin
            .post(self.admin_url(&format!("/admin/v1/agents/{agent_id}/jobs")))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .expect("admin POST");
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        r.json::<JobView>().await.expect("the queued job").job_id
    }

    /// A file the agent uploaded for a job.
    ///
    /// # Panics
    /// When there is no such file.
    pub async fn job_file(&self, job_id: &str, name: &str) -> Vec<u8> {
        let r = self
            .admin
            .get(self.admin_url(&format!("/admin/v1/jobs/{job_id}/files/{name}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin GET");
        assert!(r.status().is_success(), "{}", r.status());
        r.bytes().await.expect("file").to_vec()
    }

    /// The job as the admin API shows it.
    ///
    /// # Panics
    /// When there is no such job.
    pub async fn job(&self, id: &str) -> JobView {
        self.jobs()
            .await
            .into_iter()
            .find(|j| j.job_id == id)
            .unwrap_or_else(|| panic!("no job {id}"))
    }

    /// Waits (up to `secs`) until the job is completed or failed.
    ///
    /// # Panics
    /// When it does not finish in time.
    pub async fn outcome(&self, id: &str, secs: u64) -> JobView {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let j = self.job(id).await;
            if matches!(j.state, JobState::Completed | JobState::Failed) {
                return j;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "job {id} did not finish within {secs} s: {j:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The first message of a job's result ("" when it has none).
pub fn message(j: &JobView) -> &str {
    j.result.as_ref().map_or("", |r| r.first_text())
}
