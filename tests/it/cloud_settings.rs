//! Settings defined in the cloud (docs/protocol.md, Configuration) reach a running agent
//! process: pulled with an entity tag, laid over the local file, applied by restarting the
//! components; a document the agent refuses is reported with its reason in the heartbeat
//! and the running configuration stays; SIGHUP re-reads the file and keeps the old
//! configuration when the new one is invalid.

use crate::common::cloud::AgentSide;
use crate::common::cloud::TestCloud;
use serde_json::json;
use std::net::Ipv4Addr;
use std::time::Duration;

const COMMUNITY: &str = "s3cr3t-comm";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_settings_apply_and_a_bad_document_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = TestCloud::serve(dir.path(), |c| c.with_heartbeat_secs(10)).await;
    let creds = cloud.activate(&cloud.code, &state).await;
    let (db, url, admin, ca_file) = (&cloud.db, &cloud.url, &cloud.admin, &cloud.ca_file);
    let agent_id = &cloud.agent_id;

    let snmp_port = 31000 + (std::process::id() % 20000) as u16;
    let sim = crate::common::synthetic_printers(
        3,
        5,
        0.0,
        Ipv4Addr::new(127, 95, 0, 1),
        snmp_port,
        COMMUNITY,
    )
    .await;
    let printer = |n: u8| format!("127.95.0.{n}:{snmp_port}");

    // The file knows one printer and the wrong community: alone, nothing reaches the cloud.
    let conf = dir.path().join("agent.toml");
    let file = |extra: &str| {
        format!(
            "{extra}[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
             [cloud]\nurl = \"{url}\"\nca_file = \"{}\"\n\
             [[snmp_profiles]]\nname = \"site\"\nauth = {{ type = \"v2c\", community = \"wrong\" }}\ntimeout_ms = 300\nretries = 0\n\
             [[printers]]\naddress = \"{}\"\n",
            state.display(),
            ca_file.display(),
            printer(1)
        )
    };
    std::fs::write(&conf, file("")).unwrap();

    // The cloud's settings: the right community and a second printer.
    let good = cloud.put_settings(&json!({
        "snmp_profiles": [ { "name": "site", "auth": { "type": "v2c", "community": COMMUNITY }, "timeout_ms": 500 } ],
        "printers": [ { "address": printer(1) }, { "address": printer(2) } ],
        "poller": { "interval_secs": 10 }
    }))
    .await;

    // The protocol itself: 200 with the tag, then 304 for the same tag.
    let token: fleet_protocol::activation::Token = admin
        .post(format!("{url}/v1/oauth/token"))
        .json(&json!({ "grant_type": "client_credentials", "client_id": creds.client_id, "client_secret": creds.client_secret.expose() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token.access_token.expose().to_string();
    let get = |tag: Option<&str>| {
        let mut r = admin
            .get(format!("{url}/v1/agents/{agent_id}/config"))
            .bearer_auth(&bearer);
        if let Some(t) = tag {
            r = r.header("If-None-Match", t);
        }
        r.send()
    };
    let r = get(None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), good);
    assert_eq!(get(Some(&good)).await.unwrap().status(), 304);
    assert_eq!(get(Some("\"other\"")).await.unwrap().status(), 200);

    let log = dir.path().join("agent.log");
    let mut agent = crate::common::run_agent(&conf, Some(&log));

    let serials = crate::common::wait_for("both printers in the cloud", 60, || {
        let a = db.assets().unwrap();
        (a.len() == 2).then(|| a.iter().map(|x| x.serial.clone()).collect::<Vec<_>>())
    })
    .await;
    let status = cloud
        .wait_settings("the heartbeat naming the settings in force", 15, |s| {
            s.etag.as_ref() == Some(&good)
        })
        .await;
    assert!(status.rejected.is_none(), "{status:?}");

    // The community from the cloud is sealed at rest, in every file of the state directory.
    for f in std::fs::read_dir(&state).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(COMMUNITY.len())
                .any(|w| w == COMMUNITY.as_bytes()),
            "community in clear in the state directory"
        );
    }

    // A document with a host-only key and a third printer is refused as a whole.
    let bad = cloud.put_settings(&json!({
        "web": { "listen": "0.0.0.0:80" },
        "snmp_profiles": [ { "name": "site", "auth": { "type": "v2c", "community": COMMUNITY } } ],
        "printers": [ { "address": printer(1) }, { "address": printer(2) }, { "address": printer(3) } ]
    }))
    .await;
    let status = cloud
        .wait_settings("the refusal in the heartbeat", 25, |s| {
            s.rejected.as_ref().is_some_and(|r| r.etag == bad)
        })
        .await;
    let reason = status
        .rejected
        .as_ref()
        .map(|r| r.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("web") && reason.contains("may not set"),
        "{status:?}"
    );
    assert_eq!(
        status.etag.as_ref(),
        Some(&good),
        "the old settings stay in force"
    );

    // SIGHUP with an invalid file: refused, still running; then a valid one applies.
    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &agent.child.id().to_string()])
            .status()
            .unwrap()
    };
    std::fs::write(&conf, file("bogus = 1\n")).unwrap();
    assert!(hup().success());
    let text = crate::common::wait_for("the refusal in the log", 20, || {
        let t = std::fs::read_to_string(&log).unwrap();
        t.contains("The new configuration is invalid").then_some(t)
    })
    .await;
    assert!(text.contains("bogus"), "the reason names the key:\n{text}");
    std::fs::write(&conf, file("")).unwrap();
    assert!(hup().success());
    crate::common::wait_for("the SIGHUP reload", 20, || {
        let t = std::fs::read_to_string(&log).unwrap();
        (t.matches("Configuration applied").count() >= 2).then_some(())
    })
    .await;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );

    // Still two printers: the refused document's third printer was never polled.
    let assets = db.assets().unwrap();
    assert_eq!(assets.len(), 2);
    assert!(assets.iter().all(|a| serials.contains(&a.serial)));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(COMMUNITY), "no community in the log");

    drop(agent);
    sim.stop().await;
}

/// A cloud document can validate and still stop the agent (a fault no check foresaw); a
/// service manager would then restart it into the same fault for ever. A new document is
/// on trial: runs that end abnormally (SIGKILL here, as a crash would) count, and after
/// two the next start sets it aside, runs on the file and reports it in the heartbeat. A
/// document that once ran long enough or stopped cleanly is trusted: later kills are not
/// its fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_settings_on_which_the_agent_keeps_dying_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = TestCloud::serve(dir.path(), |c| c.with_heartbeat_secs(10)).await;
    cloud.activate(&cloud.code, &state).await;
    let conf = dir.path().join("agent.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 300\n\
             [cloud]\nurl = \"{}\"\nca_file = \"{}\"\n",
            state.display(),
            cloud.url,
            cloud.ca_file.display()
        ),
    )
    .unwrap();
    let cloud = &cloud;
    let put = |secs: u64| async move {
        cloud
            .put_settings(&json!({ "poller": { "interval_secs": secs } }))
            .await
    };
    let log = dir.path().join("agent.log");
    let count = |what: &str| {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches(what)
            .count()
    };
    let running = |n: usize| {
        crate::common::wait_for("the agent running", 30, move || {
            (count("Agent running.") >= n).then_some(())
        })
    };
    let kill = |agent: &mut crate::common::Proc| {
        agent.child.kill().unwrap();
        agent.child.wait().unwrap();
    };

    // A new document arrives and is applied (run 1 on it); killed at once, then once more
    // after the next start (run 2): the third start sets it aside.
    let a = put(120).await;
    let mut agent = crate::common::run_agent(&conf, Some(&log));
    crate::common::wait_for("the cloud settings applied", 30, || {
        (count("Configuration applied") >= 1).then_some(())
    })
    .await;
    kill(&mut agent);
    // Counted from before each start: a run logs "Agent running." again after applying.
    let before = count("Agent running.");
    agent = crate::common::run_agent(&conf, Some(&log));
    running(before + 1).await;
    assert_eq!(count("set aside"), 0, "one failed run is not enough");
    kill(&mut agent);
    let before = count("Agent running.");
    agent = crate::common::run_agent(&conf, Some(&log));
    running(before + 1).await;
    assert_eq!(count("The cloud settings were set aside"), 1);
    let status = cloud
        .wait_settings("the set-aside document reported", 40, |s| {
            s.rejected.as_ref().is_some_and(|r| r.etag == a)
        })
        .await;
    assert_eq!(status.etag, None, "no cloud document in force");
    let reason = &status.rejected.as_ref().unwrap().reason;
    assert!(reason.contains("ended abnormally"), "{reason}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent keeps running"
    );
    assert_eq!(
        count("New settings from the cloud accepted"),
        1,
        "not fetched again"
    );

    // A changed document is applied by the running agent, which then stops cleanly: trusted.
    let b = put(150).await;
    crate::common::wait_for("the new settings applied", 40, || {
        (count("Configuration applied") >= 2).then_some(())
    })
    .await;
    let pid = agent.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(agent.child.wait().unwrap().success(), "a clean stop");
    for _ in 0..2 {
        let before = count("Agent running.");
        agent = crate::common::run_agent(&conf, Some(&log));
        running(before + 1).await;
        kill(&mut agent);
    }
    let before = count("Agent running.");
    agent = crate::common::run_agent(&conf, Some(&log));
    running(before + 1).await;
    assert_eq!(
        count("The cloud settings were set aside"),
        1,
        "a trusted document stays"
    );
    cloud
        .wait_settings("the trusted document in force", 40, |s| {
            s.etag.as_ref() == Some(&b)
        })
        .await;
    drop(agent);
}
