//! Two agents see the same printer. Without takeover the second is told the printer is
//! managed by another agent and stops polling it; with takeover (set from the cloud) the
//! printer moves to it; the first agent, even with takeover on, cannot take it back
//! within the hold time, so the printer never flaps between them.

use crate::common::cloud::AgentSide;
use crate::common::cloud::TestCloud;
use serde_json::json;
use std::net::Ipv4Addr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_moves_by_takeover_and_does_not_flap() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = TestCloud::serve(dir.path(), |c| c.with_heartbeat_secs(10)).await;
    let (id_a, code_a) = (cloud.agent_id.clone(), cloud.code.clone());
    let (id_b, code_b) = cloud.create_agent("site B");
    let (db, url, admin, ca_file) = (&cloud.db, &cloud.url, &cloud.admin, &cloud.ca_file);

    let snmp_port = 33000 + (std::process::id() % 20000) as u16;
    let sim = crate::common::synthetic_printers(
        1,
        3,
        0.0,
        Ipv4Addr::new(127, 92, 0, 1),
        snmp_port,
        "public",
    )
    .await;
    let start = |name: &str, code: &str| {
        let state = dir.path().join(name);
        let conf = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &conf,
            format!(
                "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
                 [cloud]\nurl = \"{url}\"\nca_file = \"{}\"\n[[printers]]\naddress = \"127.92.0.1:{snmp_port}\"\n",
                state.display(),
                ca_file.display()
            ),
        )
        .unwrap();
        let log = dir.path().join(format!("{name}.log"));
        let code = code.to_string();
        let cloud = &cloud;
        async move {
            cloud.activate(&code, &state).await;
            (
                crate::common::agent::InProcess::start(&conf, Some(&log)),
                log,
            )
        }
    };
    let owner = || {
        let a = db.assets().unwrap();
        assert!(a.len() <= 1, "one printer, one owner: {a:?}");
        a.first().map(|x| x.agent_id.clone())
    };
    async fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        crate::common::wait_for(what, secs, || f().then_some(())).await
    }
    let logged = |log: &std::path::Path, text: &str| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains(text)
    };

    // A enrolls the printer.
    let (_a, log_a) = start("a", &code_a).await;
    wait("A owns the printer", 30, || {
        owner().as_deref() == Some(id_a.as_str())
    })
    .await;
    // B sees it too, without takeover: told it belongs to another agent, stops polling.
    let (_b, log_b) = start("b", &code_b).await;
    wait("B told", 30, || {
        logged(&log_b, "Printer managed by another agent")
    })
    .await;
    assert_eq!(owner().as_deref(), Some(id_a.as_str()));

    // Takeover switched on for B from the cloud: the printer moves to B.
    let settings = |agent: String| async move {
        let r = admin
            .put(format!("{url}/admin/v1/agents/{agent}/settings"))
            .bearer_auth("admin-secret")
            .json(&json!({ "discovery": { "takeover": true } }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    };
    settings(id_b.clone()).await;
    wait("B takes the printer over", 40, || {
        owner().as_deref() == Some(id_b.as_str())
    })
    .await;

    // A switched on too, and forced to upload (a refresh job): the printer stays with B.
    settings(id_a.clone()).await;
    wait("A applies its settings", 40, || {
        std::fs::read_to_string(&log_a)
            .unwrap_or_default()
            .matches("Configuration applied")
            .count()
            >= 1
    })
    .await;
    cloud.submit_for(&id_a, &json!({ "type": "refresh" })).await;
    wait("A told it belongs to B", 40, || {
        logged(&log_a, "Printer managed by another agent")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        owner().as_deref(),
        Some(id_b.as_str()),
        "no flapping back to A"
    );
    sim.stop().await;
}
