//! Chaos: the agent **and** the reference cloud SIGKILLed again and again, each at its own
//! moments, while printers change (so every poll uploads) and the cloud queues jobs. When
//! both are left alone, the cloud's own record of applied readings must hold every
//! printer's reports exactly once and without a gap (sequence 1..=n), the agent's outbox
//! must be empty with nothing refused or evicted, and every job must have ended with one
//! result.
//!
//! The cloud runs as a process of its own so that it can be killed like one: this test
//! binary started again on [`a_cloud_process_for_the_chaos_test`], which serves a cloud
//! on a database and certificate kept in a directory (so a restart is the same cloud).

use serde_json::json;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

const ADMIN: &str = "admin-secret";
/// The environment variable that turns the helper below into a cloud process.
const CLOUD_DIR: &str = "FLEET_CHAOS_CLOUD_DIR";

/// Not a test: the cloud process of `agent_and_cloud_killed_at_random_lose_and_repeat_nothing`
/// (this binary run again on this one function with `FLEET_CHAOS_CLOUD_DIR` set). Without
/// the variable it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of the chaos test, started by it"]
async fn a_cloud_process_for_the_chaos_test() {
    let Some(dir) = std::env::var_os(CLOUD_DIR).map(PathBuf::from) else {
        return;
    };
    let db = fleet_cloud::db::CloudDb::open(Some(&dir.join("db"))).expect("cloud database");
    let cloud = fleet_cloud::Cloud::new(db, ADMIN).with_heartbeat_secs(10);
    let code = dir.join("code");
    if !code.exists() {
        let (agent_id, code_text, _) = cloud
            .create_agent("chaos site", &json!({}))
            .expect("agent instance");
        std::fs::write(dir.join("agent_id"), agent_id).unwrap();
        std::fs::write(&code, code_text).unwrap();
    }
    // The first start picks the port; restarts take the same one (the agent's URL).
    let addr_file = dir.join("addr");
    let listener = match std::fs::read_to_string(&addr_file) {
        Ok(a) => bind_again(a.trim()).await,
        Err(_) => {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            std::fs::write(&addr_file, l.local_addr().unwrap().to_string()).unwrap();
            l
        }
    };
    let (ca, _handle) = fleet_cloud::start_in(listener, cloud, Some(&dir.join("tls")))
        .await
        .expect("cloud started");
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("ready"), std::process::id().to_string()).unwrap();
    std::future::pending::<()>().await;
}

/// The port of a SIGKILLed process can take a moment to be free again.
async fn bind_again(addr: &str) -> std::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = std::net::TcpListener::bind(addr) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr} again");
}

/// A cloud process on `dir`, ready once it answers.
async fn start_cloud(dir: &Path) -> CloudProcess {
    std::fs::remove_file(dir.join("ready")).ok();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "chaos::a_cloud_process_for_the_chaos_test",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CLOUD_DIR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cloud process");
    let mut cloud = CloudProcess(child);
    let t = Instant::now();
    while !dir.join("ready").exists() {
        if let Ok(Some(status)) = cloud.0.try_wait() {
            panic!("the cloud process ended at start: {status}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the cloud did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cloud
}

fn kill(child: &mut Child) {
    child.kill().ok();
    child.wait().ok();
}

/// The cloud process, killed when dropped (also when the test fails half-way).
struct CloudProcess(Child);

impl Drop for CloudProcess {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

/// A small deterministic generator: the same kill schedule every run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_and_cloud_killed_at_random_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cloud_dir = dir.path().join("cloud");
    std::fs::create_dir_all(&cloud_dir).unwrap();
    let mut cloud = start_cloud(&cloud_dir).await;
    let read = |f: &str| std::fs::read_to_string(cloud_dir.join(f)).unwrap();
    let url = format!("https://{}", read("addr").trim());
    let (agent_id, ca_pem) = (read("agent_id"), read("ca.pem"));

    let state = dir.path().join("state");
    let client = fleet_agent::cloud::client::CloudClient::new(
        &url,
        Some(ca_pem.as_bytes()),
        Duration::from_secs(10),
    )
    .unwrap();
    let creds = client.activate(&read("code")).await.unwrap();
    fleet_agent::cloud::save_credentials(&state, &creds).unwrap();
    let admin = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // Four printers whose supplies fall fast: every poll has something to upload.
    let snmp_port = 32000 + (std::process::id() % 20000) as u16;
    let sim = crate::common::synthetic_printers(
        4,
        21,
        900.0,
        Ipv4Addr::new(127, 99, 0, 1),
        snmp_port,
        "public",
    )
    .await;
    let printers: String = (1..=4)
        .map(|i| format!("[[printers]]\naddress = \"127.99.0.{i}:{snmp_port}\"\n"))
        .collect();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
             [cloud]\nurl = \"{url}\"\nca_file = \"{}\"\n{printers}",
            state.display(),
            ca_file.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = crate::common::run_agent(&conf, Some(&log));

    // Jobs make the agent poll between its rounds (more uploads) and are killed mid-way too.
    let queue = || async {
        admin
            .post(format!("{url}/admin/v1/agents/{agent_id}/jobs"))
            .bearer_auth(ADMIN)
            .json(&json!({ "type": "refresh" }))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .is_some()
    };

    let mut dice = Dice(0x5eed_cafe_f00d);
    let (mut agent_kills, mut cloud_kills, mut jobs_queued) = (0, 0, 0);
    let chaos = Instant::now();
    while chaos.elapsed() < Duration::from_secs(75) {
        tokio::time::sleep(Duration::from_millis(500 + 250 * dice.below(12))).await;
        if queue().await {
            jobs_queued += 1;
        }
        match dice.below(3) {
            0 => {
                kill(&mut agent.child);
                agent_kills += 1;
                tokio::time::sleep(Duration::from_millis(100 * dice.below(10))).await;
                agent = crate::common::run_agent(&conf, Some(&log));
            }
            1 => {
                kill(&mut cloud.0);
                cloud_kills += 1;
                // An outage of up to 4 s, during which the agent keeps polling.
                tokio::time::sleep(Duration::from_millis(400 * dice.below(11))).await;
                cloud = start_cloud(&cloud_dir).await;
            }
            _ => {
                kill(&mut agent.child);
                kill(&mut cloud.0);
                agent_kills += 1;
                cloud_kills += 1;
                cloud = start_cloud(&cloud_dir).await;
                agent = crate::common::run_agent(&conf, Some(&log));
            }
        }
    }
    assert!(
        agent_kills >= 5 && cloud_kills >= 5,
        "{agent_kills} / {cloud_kills}"
    );
    assert!(jobs_queued >= 10, "{jobs_queued} jobs");

    // Left alone: the outbox drains and every job ends.
    let db = fleet_cloud::db::CloudDb::open(Some(&cloud_dir.join("db"))).unwrap();
    let mut settled = None;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let outbox = fleet_agent::store::Store::open(&state)
            .unwrap()
            .outbox_stats()
            .unwrap();
        let jobs = db.jobs(Some(&agent_id), None).unwrap_or_default();
        let open = jobs
            .iter()
            .filter(|j| matches!(j.state.as_str(), "pending" | "inProgress"))
            .count();
        if outbox.messages == 0 && open == 0 {
            settled = Some((outbox, jobs));
            break;
        }
    }
    let (outbox, jobs) = settled.expect("the outbox drains and every job ends within 120 s");
    kill(&mut agent.child);
    kill(&mut cloud.0);
    assert_eq!(outbox.rejected, 0, "nothing refused: {outbox:?}");
    assert_eq!(outbox.dropped, 0, "nothing evicted: {outbox:?}");

    let assets = db.assets().unwrap();
    assert_eq!(assets.len(), 4, "every printer reached the cloud");
    let mut applied = 0;
    for a in &assets {
        let seqs = db.applied_seqs(&a.agent_id, &a.serial).unwrap();
        let want: Vec<u64> = (1..=a.seq).collect();
        assert_eq!(seqs, want, "printer {}: duplicates or gaps", a.serial);
        applied += seqs.len();
    }
    assert_eq!(jobs.len(), jobs_queued, "every queued job is known");
    let completed = jobs.iter().filter(|j| j.state == "completed").count();
    for j in &jobs {
        assert!(
            matches!(j.state.as_str(), "completed" | "failed"),
            "job {} ended {:?}",
            j.job_id,
            j.state
        );
        assert!(j.result.is_some(), "job {} has its result", j.job_id);
    }
    println!(
        "chaos: {agent_kills} agent and {cloud_kills} cloud SIGKILLs in 75 s; {applied} readings \
         applied over {} printers, 0 duplicates, 0 gaps; {jobs_queued} jobs, {completed} completed, \
         {} failed",
        assets.len(),
        jobs.len() - completed
    );
    sim.stop().await;
}
