//! Jobs from the reference cloud reach a running agent (in process) by long-poll and end
//! in the seed's states: refresh (all, one printer), discover now, an unknown type
//! answered `agentNotSupported`; a job interrupted by a crash is reported failed after
//! the restart, never run twice; printer commands (panel message and clear, reboot refused as
//! not supported, unenroll); pending jobs can be stopped and expire after a week.

use crate::common::cloud::{self, AgentSide, TestCloud};
use fleet_protocol::admin::JobView;
use fleet_protocol::jobs::{JobState, Status};
use fleet_snmp::{Security, Target, UdpClient};
use serde_json::{Value, json};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_once_and_end_in_the_seed_states() {
    let clock = Arc::new(AtomicI64::new(fleet_agent::clock::Clock::system().now_ms()));
    let c2 = clock.clone();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cloud = TestCloud::serve(dir.path(), |c| {
        c.with_clock(Arc::new(move || c2.load(Ordering::SeqCst)))
    })
    .await;
    let creds = cloud.activate(&cloud.code, &state).await;
    let (idle_agent, _) = cloud.create_agent("idle site");
    let (db, url, admin, ca_file) = (&cloud.db, &cloud.url, &cloud.admin, &cloud.ca_file);
    let agent_id = cloud.agent_id.clone();

    let snmp_port = 32000 + (std::process::id() % 20000) as u16;
    let sim = crate::common::synthetic_printers(
        2,
        9,
        0.0,
        Ipv4Addr::new(127, 94, 0, 1),
        snmp_port,
        "public",
    )
    .await;
    let conf = dir.path().join("agent.toml");
    // Discovery also searches a silent /24 at 100 probes/s, so a run lasts seconds (time
    // to kill it).
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 3600\ndeadline_secs = 5\n\
             [discovery]\ninclude = [\"127.94.0.1-127.94.0.2\", \"127.94.1.0/24\"]\nport = {snmp_port}\ninterval_secs = 86400\nnetwork_delay_us = 10000\n\
             [cloud]\nurl = \"{url}\"\nca_file = \"{}\"\n\
             [[snmp_profiles]]\nname = \"default\"\nauth = {{ type = \"v2c\", community = \"public\" }}\ntimeout_ms = 1500\nretries = 1\n\
             [[printers]]\naddress = \"127.94.0.1:{snmp_port}\"\n[[printers]]\naddress = \"127.94.0.2:{snmp_port}\"\n",
            state.display(),
            ca_file.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let spawn = || crate::common::agent::InProcess::start(&conf, Some(&log));
    let agent = spawn();
    crate::common::wait_for("both printers in the cloud", 30, || {
        (db.assets().unwrap().len() == 2).then_some(())
    })
    .await;
    let assets = db.assets().unwrap();
    assert_eq!(assets.len(), 2, "both printers enrolled");
    let serial = assets[0].serial.clone();
    let snapshots_before = db.applied_seqs(&agent_id, &serial).unwrap().len();

    let queue = |agent: String, body: Value| {
        let cloud = &cloud;
        async move { cloud.submit_for(&agent, &body).await }
    };
    let jobs = || cloud.jobs();
    let job = |all: &[JobView], id: &str| all.iter().find(|j| j.job_id == id).unwrap().clone();
    let finished = |j: &JobView| j.state == JobState::Completed || j.state == JobState::Failed;

    // Refresh first, alone: two refreshes asked at the same moment are rightly served by
    // one poll, so the second one waits for this one to finish.
    let refresh = queue(agent_id.clone(), json!({ "type": "refresh" })).await;
    for _ in 0..300 {
        if finished(&job(&jobs().await, &refresh)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let one = queue(
        agent_id.clone(),
        json!({ "type": "refreshPrinter", "printer": { "serialNumber": serial } }),
    )
    .await;
    let unknown = queue(agent_id.clone(), json!({ "type": "frobnicate" })).await;
    let missing = queue(
        agent_id.clone(),
        json!({ "type": "refreshPrinter", "printer": { "serialNumber": "NOPE" } }),
    )
    .await;
    let ids = [&refresh, &one, &unknown, &missing];
    let mut all = Vec::new();
    for _ in 0..300 {
        all = jobs().await;
        if ids.iter().all(|id| finished(&job(&all, id))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = job(&all, &refresh);
    assert_eq!(r.state, JobState::Completed, "{r:?}");
    assert_eq!(cloud::result(&r).status, Status::Completed);
    let printers = &cloud::result(&r).printers;
    assert_eq!(printers.len(), 2, "{r:?}");
    assert!(
        printers.iter().all(|p| p.status == Status::Completed),
        "{r:?}"
    );
    let counts = r.printer_counts.unwrap();
    assert_eq!((counts.total, counts.completed), (2, 2), "{r:?}");
    assert!(r.acknowledged_at.is_some());
    let o = job(&all, &one);
    assert_eq!(o.state, JobState::Completed, "{o:?}");
    assert_eq!(
        cloud::result(&o).printers[0].serial_number,
        Some(serial.clone())
    );
    let u = job(&all, &unknown);
    assert_eq!(u.state, JobState::Failed);
    assert_eq!(cloud::result(&u).status, Status::AgentNotSupported, "{u:?}");
    let m = job(&all, &missing);
    assert_eq!(m.state, JobState::Failed);
    assert!(cloud::message(&m).contains("not managed"), "{m:?}");
    // Refreshed readings were uploaded as snapshots (counters alone would send nothing).
    let mut after = 0;
    for _ in 0..100 {
        after = db.applied_seqs(&agent_id, &serial).unwrap().len();
        if after >= snapshots_before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        after >= snapshots_before + 2,
        "refresh and refreshPrinter each uploaded: {snapshots_before} → {after}"
    );

    // Discover now, killed while it runs: after the restart it is reported, not rerun.
    let discover = queue(agent_id.clone(), json!({ "type": "discover" })).await;
    for _ in 0..300 {
        if job(&jobs().await, &discover).state == JobState::InProgress {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(job(&jobs().await, &discover).state, JobState::InProgress);
    drop(agent); // a crash: no orderly stop
    let agent = spawn();
    let mut d = job(&jobs().await, &discover);
    for _ in 0..300 {
        d = job(&jobs().await, &discover);
        if finished(&d) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.state, JobState::Failed, "{d:?}");
    assert!(cloud::message(&d).contains("restarted"), "{d:?}");
    // A second discover runs to the end and reports what it found.
    let discover2 = queue(agent_id.clone(), json!({ "type": "discover" })).await;
    let mut d = job(&jobs().await, &discover2);
    for _ in 0..400 {
        d = job(&jobs().await, &discover2);
        if finished(&d) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.state, JobState::Completed, "{d:?}");
    let text = cloud::message(&d);
    assert!(
        text.contains("256 addresses searched, 2 devices found"),
        "{text}"
    );
    // The agent reported its progress while the run lasted (about 3 s at 100 probes/s).
    assert_eq!(d.progress.as_ref().unwrap().total, Some(256), "{d:?}");
    assert!(
        d.progress
            .as_ref()
            .unwrap()
            .text
            .contains("of 256 addresses"),
        "{d:?}"
    );

    // Printer commands over SNMP with the poller's credentials.
    let run = |body: Value| {
        let (agent_id, log) = (agent_id.clone(), log.clone());
        async move {
            let id = queue(agent_id, body.clone()).await;
            let mut last = None;
            for _ in 0..300 {
                let all = jobs().await;
                let j = all.iter().find(|j| j.job_id == id).unwrap().clone();
                if j.state == JobState::Completed || j.state == JobState::Failed {
                    return j;
                }
                last = Some(j);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            panic!(
                "job {body} did not finish: {last:?}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };
    let target = json!({ "serialNumber": serial });
    let console = |addr: std::net::SocketAddr| async move {
        let c = UdpClient::new().unwrap();
        let t = Target::new(addr, Security::v2c("public"));
        let v = fleet_snmp::walk::get(&c, &t, &["1.3.6.1.2.1.43.16.5.1.2.1.1".parse().unwrap()])
            .await
            .unwrap();
        String::from_utf8_lossy(v[0].value.as_bytes().unwrap()).into_owned()
    };
    let addr: std::net::SocketAddr = cloud::result(&r)
        .printers
        .iter()
        .find(|p| p.serial_number.as_deref() == Some(serial.as_str()))
        .unwrap()
        .address
        .parse()
        .unwrap();
    let j = run(json!({ "type": "panelMessage", "printer": target, "params": { "message": "tonerOrdered" } })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert_eq!(console(addr).await, "Toner cartridge ordered");
    let j =
        run(json!({ "type": "panelMessage", "printer": target, "params": { "message": "hello" } }))
            .await;
    assert_eq!(j.state, JobState::Failed);
    assert!(cloud::message(&j).contains("tonerShipped"), "{j:?}");
    // Shown for 48 h: past that, the agent clears it (the test moves the deadline back and
    // wakes the job loop with a harmless job).
    let entry_name = format!("panel.{addr}");
    let entry: Value = serde_json::from_str(
        &fleet_agent::store::Store::open(&state)
            .unwrap()
            .setting(&entry_name)
            .unwrap()
            .expect("the message is remembered"),
    )
    .unwrap();
    let left_ms =
        entry["expiresMs"].as_i64().unwrap() - fleet_agent::clock::Clock::system().now_ms();
    assert!(
        (47 * 3600 * 1000..=48 * 3600 * 1000).contains(&left_ms),
        "{entry}"
    );
    fleet_agent::store::Store::open(&state)
        .unwrap()
        .set_setting(
            &entry_name,
            &json!({ "text": "Toner cartridge ordered", "expiresMs": 1 }).to_string(),
        )
        .unwrap();
    run(json!({ "type": "frobnicate" })).await;
    let mut text = String::new();
    for _ in 0..50 {
        text = console(addr).await;
        if text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text, "", "an expired message is cleared");
    let j = run(json!({ "type": "panelMessage", "printer": target, "params": { "message": "tonerShipped" } })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let j = run(json!({ "type": "clearPanelMessage", "printer": target })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert_eq!(console(addr).await, "");
    // Only a message from the cloud is cleared: someone else's stays.
    {
        let c = UdpClient::new().unwrap();
        let t = Target::new(addr, Security::v2c("public"));
        fleet_snmp::walk::set(
            &c,
            &t,
            vec![fleet_snmp::VarBind {
                oid: "1.3.6.1.2.1.43.16.5.1.2.1.1".parse().unwrap(),
                value: fleet_snmp::Value::OctetString(b"Hello from IT".to_vec()),
            }],
        )
        .await
        .unwrap();
    }
    let j = run(json!({ "type": "clearPanelMessage", "printer": target })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert!(cloud::message(&j).contains("nothing cleared"), "{j:?}");
    assert_eq!(console(addr).await, "Hello from IT");
    // The simulated printer does not let prtGeneralReset be written: honest "not supported".
    let j = run(json!({ "type": "reboot", "printer": target })).await;
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(cloud::result(&j).status, Status::NotSupported, "{j:?}");
    assert!(
        cloud::result(&j).printers[0]
            .message
            .as_deref()
            .unwrap()
            .contains("notWritable"),
        "{j:?}"
    );
    // Printer log (MIB walk) and agent logs arrive as files of their jobs.
    let download = |job: String, name: String| {
        let cloud = &cloud;
        async move {
            let gz = cloud.job_file(&job, &name).await;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
                .unwrap();
            text
        }
    };
    let j = run(json!({ "type": "mibWalk", "printer": target })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let name = cloud::result(&j).files[0].name.as_str().to_string();
    assert!(name.ends_with(".snmprec.gz"), "{name}");
    let walk = download(j.job_id.clone(), name).await;
    let lines: Vec<&str> = walk.lines().collect();
    assert!(lines.len() > 50, "{} lines", lines.len());
    assert!(
        lines.iter().any(|l| l.starts_with("1.3.6.1.2.1.1.1.0|4")),
        "sysDescr"
    );
    assert!(
        lines.iter().any(|l| l.contains(&serial)),
        "the walk holds the serial"
    );
    let j = run(json!({ "type": "requestLogs" })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let logs = download(j.job_id.clone(), "fleet-agent-logs.txt.gz".into()).await;
    assert!(logs.contains("== recent log lines =="), "{logs}");
    assert!(logs.contains("Job started."), "{logs}");
    assert!(logs.contains(&serial), "printers listed");
    assert!(
        !logs.contains(creds.client_secret.expose()),
        "no secret in the bundle"
    );

    // Access credentials: checked against the printer first, stored sealed, never shown.
    let j = run(json!({ "type": "updateCredentials", "printer": target, "params": { "auth": { "type": "v3", "user": "" } } })).await;
    assert_eq!(j.state, JobState::Failed);
    assert!(cloud::message(&j).contains("params.auth"), "{j:?}");
    let j = run(json!({ "type": "updateCredentials", "printer": target, "params": { "auth": { "type": "v2c", "community": "not-the-community" } } })).await;
    assert_eq!(
        cloud::result(&j).status,
        Status::PrinterNotCommunicating,
        "{j:?}"
    );
    assert!(cloud::message(&j).contains("old ones stay"), "{j:?}");
    assert_eq!(
        j.params["auth"]["community"], "<set>",
        "the admin view redacts: {j:?}"
    );
    let j = run(json!({ "type": "updateCredentials", "printer": target, "params": { "auth": { "type": "v2c", "community": "public" } } })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    {
        let st = fleet_agent::store::Store::open(&state).unwrap();
        for row in st.recent_jobs(100).unwrap() {
            assert!(
                !row.body.contains("not-the-community"),
                "job bodies hold no secret: {}",
                row.body
            );
        }
    }
    // Still polled with the stored credentials.
    let j = run(json!({ "type": "refreshPrinter", "printer": target })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");

    // Compliance with an assigned configuration of generic settings: check, enforce, check.
    let assigned =
        json!({ "sysName": "lobby-printer", "sysLocation": "2nd floor", "colour": "blue" });
    let j = run(
        json!({ "type": "complianceCheck", "printer": target, "params": { "settings": assigned } }),
    )
    .await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert_eq!(cloud::result(&j).compliant, Some(false), "{j:?}");
    assert_eq!(
        cloud::result(&j).differences.as_ref().unwrap().len(),
        2,
        "{j:?}"
    );
    assert!(
        format!("{:?}", cloud::result(&j).messages).contains("colour"),
        "unknown keys are named: {j:?}"
    );
    let j = run(json!({ "type": "complianceEnforce", "printer": target, "params": { "settings": assigned } })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    assert_eq!(cloud::result(&j).compliant, Some(true), "{j:?}");
    {
        let c = UdpClient::new().unwrap();
        let t = Target::new(addr, Security::v2c("public"));
        let v = fleet_snmp::walk::get(&c, &t, &["1.3.6.1.2.1.1.5.0".parse().unwrap()])
            .await
            .unwrap();
        assert_eq!(v[0].value.as_bytes().unwrap(), b"lobby-printer");
    }
    let j = run(
        json!({ "type": "complianceCheck", "printer": target, "params": { "settings": assigned } }),
    )
    .await;
    assert_eq!(cloud::result(&j).compliant, Some(true), "{j:?}");
    let j = run(json!({ "type": "complianceCheck", "printer": target, "params": { "settings": { "sysName": 5 } } })).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");

    // Unenroll: the printer leaves the cloud's list and the agent's schedule.
    let j = run(json!({ "type": "unenroll", "printer": target })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let left = db.assets().unwrap();
    assert_eq!(left.len(), 1, "the unenrolled printer left the assets");
    assert_ne!(left[0].serial, serial);
    let j = run(json!({ "type": "refresh" })).await;
    assert_eq!(cloud::result(&j).printers.len(), 1, "{j:?}");

    // The seed: the next discovery run that finds it enrolls it again...
    let j = run(json!({ "type": "discover" })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    crate::common::wait_for("the printer enrolled again", 30, || {
        (db.assets().unwrap().len() == 2).then_some(())
    })
    .await;
    let j = run(json!({ "type": "refresh" })).await;
    assert_eq!(cloud::result(&j).printers.len(), 2, "{j:?}");
    // ...unless it is excluded (here from the cloud's settings): unenrolled again, it stays
    // out through a restart (though the file names it) and the next discovery run.
    let j = run(json!({ "type": "unenroll", "printer": target })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    cloud
        .put_settings(&json!({ "discovery": { "exclude": [addr.ip().to_string()] } }))
        .await;
    let j = run(json!({ "type": "editSettings" })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let j = run(json!({ "type": "discover" })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let j = run(json!({ "type": "refresh" })).await;
    assert_eq!(cloud::result(&j).printers.len(), 1, "{j:?}");
    assert_eq!(
        db.assets().unwrap().len(),
        1,
        "excluded: not enrolled again"
    );

    // Disable, then enable: printer work refused while disabled, back afterwards.
    let j = run(json!({ "type": "disable" })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let j = run(json!({ "type": "refresh" })).await;
    assert_eq!(j.state, JobState::Failed, "{j:?}");
    assert!(cloud::message(&j).contains("disabled"), "{j:?}");
    let j = run(json!({ "type": "enable" })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let j = run(json!({ "type": "refresh" })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");

    // Delete: the result reaches the cloud, then credentials and data are wiped.
    let j = run(json!({ "type": "delete" })).await;
    assert_eq!(j.state, JobState::Completed, "{j:?}");
    let mut wiped = false;
    for _ in 0..100 {
        let st = fleet_agent::store::Store::open(&state).unwrap();
        if st.setting("cloud.agent_id").unwrap().is_none() {
            // The configured addresses come back as rows, without any reading.
            let printers = st.printers().unwrap();
            assert!(
                printers
                    .iter()
                    .all(|p| p.serial.is_none() && p.last_seen_ms.is_none()),
                "data wiped: {printers:?}"
            );
            assert_eq!(st.outbox_stats().unwrap().messages, 0);
            assert_eq!(
                st.setting("agent.disabled").unwrap().as_deref(),
                Some("deleted")
            );
            wiped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(wiped, "credentials wiped after delete");

    // Stop and expiry, on an agent that never polls.
    let stop_me = queue(idle_agent.clone(), json!({ "type": "refresh" })).await;
    let r = admin
        .post(format!("{url}/admin/v1/jobs/{stop_me}/stop"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = admin
        .post(format!("{url}/admin/v1/jobs/{stop_me}/stop"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "stopping twice is harmless");
    let r = admin
        .post(format!("{url}/admin/v1/jobs/{refresh}/stop"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "only pending jobs stop");
    let unenroll = queue(idle_agent.clone(), json!({ "type": "unenroll" })).await;
    let r = admin
        .post(format!("{url}/admin/v1/jobs/{unenroll}/stop"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "unenroll cannot be stopped");
    let windowed = queue(
        idle_agent.clone(),
        json!({ "type": "firmwareUpdate", "notAfter": clock.load(Ordering::SeqCst) + 3_600_000 }),
    )
    .await;
    clock.fetch_add(2 * 3_600_000, Ordering::SeqCst);
    let all = jobs().await;
    assert_eq!(job(&all, &stop_me).state, JobState::Stopped);
    assert_eq!(
        job(&all, &windowed).state,
        JobState::Expired,
        "its window closed"
    );
    assert_eq!(job(&all, &unenroll).state, JobState::Pending);
    clock.fetch_add(7 * 24 * 3_600_000, Ordering::SeqCst);
    assert_eq!(
        job(&jobs().await, &unenroll).state,
        JobState::Expired,
        "a week undelivered"
    );

    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("Job started.").count(),
        text.lines()
            .filter(|l| l.contains("Job started."))
            .map(|l| l
                .split("job=")
                .nth(1)
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or(""))
            .collect::<std::collections::HashSet<_>>()
            .len(),
        "no job started twice:\n{text}"
    );
    drop(agent);
    sim.stop().await;
}
