//! How uploads travel: request bodies gzip-compressed once the cloud says it takes them
//! (and plain for a cloud that does not, or that stops), and several outbox messages per
//! request, resent as the same batch after a SIGKILL between sending and recording the
//! answer, so the cloud applies every report exactly once.

use crate::common::cloud::{AgentSide, TestCloud};
use fleet_agent::cloud::client::CloudClient;
use fleet_protocol::upload::{Report, ReportStatus, Snapshot, Trigger};
use std::net::Ipv4Addr;
use std::time::Duration;

/// A snapshot report of about `pad` bytes of JSON.
fn snapshot(serial: &str, seq: u64, pad: usize) -> Report {
    let mut body = serde_json::Map::new();
    body.insert("modelName".into(), "Laser 500".into());
    body.insert("location".into(), "x".repeat(pad).into());
    Report::Snapshot(Snapshot {
        report_seq: seq,
        trigger: Trigger::Enrolment,
        serial_number: Some(serial.into()),
        collected_at: 1_790_000_000_000,
        body,
    })
}

fn client(cloud_url: &str, ca_pem: &str) -> CloudClient {
    CloudClient::new(cloud_url, Some(ca_pem.as_bytes()), Duration::from_secs(10)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_compressed_once_the_cloud_says_it_takes_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = TestCloud::serve(dir.path(), |c| c).await;
    let c = client(&cloud.url, &cloud.ca_pem);
    assert!(
        !c.compresses(),
        "nothing is compressed before the cloud answered"
    );
    let creds = c.activate(&cloud.code).await.unwrap();
    assert!(
        c.compresses(),
        "the activation answer said Accept-Encoding: gzip"
    );
    let st = c
        .upload(&creds, "m-1", vec![snapshot("GZ1", 1, 4000)], false, 1)
        .await
        .unwrap();
    assert_eq!(st, vec![ReportStatus::Applied]);
    let seen = cloud.cloud().uploads_seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].gzip && seen[0].first, "{seen:?}");
    let w = c.wire_stats();
    assert_eq!(w.requests, 1);
    assert!(
        w.body_bytes * 5 < w.json_bytes,
        "gzip shrinks a repetitive body: {w:?}"
    );
    // What was applied is the report itself.
    let assets = cloud.db.assets().unwrap();
    assert_eq!(assets.len(), 1);
    assert!(assets[0].keyed.contains(&"x".repeat(4000)));

    // The cloud refuses codings it does not take, and bodies that unfold past its limit,
    // before any work (no token needed to be told).
    let url = format!("{}/v1/agents/{}/uploads", cloud.url, creds.agent_id);
    let r = cloud
        .admin
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(r.headers()["accept-encoding"], "gzip");
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b' '; fleet_cloud::MAX_DECODED_BYTES + 10])
            .unwrap();
        e.finish().unwrap()
    };
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    let r = cloud
        .admin
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let text = r.text().await.unwrap();
    assert!(text.contains("unfolds to more than"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_without_compression_gets_plain_bodies() {
    let dir = tempfile::tempdir().unwrap();
    // A cloud that predates compression: the agent never sends it a gzip body.
    let old = TestCloud::serve(dir.path(), |c| c.without_gzip()).await;
    let c = client(&old.url, &old.ca_pem);
    let creds = c.activate(&old.code).await.unwrap();
    assert!(!c.compresses());
    c.upload(&creds, "m-1", vec![snapshot("P1", 1, 4000)], false, 1)
        .await
        .unwrap();
    let seen = old.cloud().uploads_seen();
    assert!(!seen[0].gzip && seen[0].first, "{seen:?}");
    let w = c.wire_stats();
    assert_eq!(w.body_bytes, w.json_bytes);

    // A cloud that said it takes gzip, then (upgraded back, or behind a proxy that
    // refuses it) answers 415: the same request goes again plain, counted once.
    let dir2 = tempfile::tempdir().unwrap();
    let db = fleet_cloud::db::CloudDb::open(None).unwrap();
    let cloud = fleet_cloud::Cloud::new(db.clone(), "admin-secret");
    let (_, code, _) = cloud.create_agent("site", &serde_json::json!({})).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cert = fleet_cloud::tls::generate(&["localhost", "127.0.0.1"]).unwrap();
    let h = fleet_cloud::start_with(listener, cloud.clone(), &cert)
        .await
        .unwrap();
    let url = format!("https://{addr}");
    let c = client(&url, &cert.ca_pem);
    let creds = c.activate(&code).await.unwrap();
    assert!(c.compresses());
    h.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let plain = fleet_cloud::Cloud::new(db.clone(), "admin-secret").without_gzip();
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let h = fleet_cloud::start_with(listener, plain.clone(), &cert)
        .await
        .unwrap();
    let st = c
        .upload(&creds, "m-2", vec![snapshot("P2", 1, 4000)], false, 1)
        .await
        .unwrap();
    assert_eq!(st, vec![ReportStatus::Applied]);
    assert!(!c.compresses(), "a 415 turned compression off");
    let seen = plain.uploads_seen();
    assert_eq!(
        seen.len(),
        1,
        "the refused gzip request never reached the handler"
    );
    assert!(!seen[0].gzip && seen[0].first);
    assert_eq!(db.applied_seqs(&creds.agent_id, "P2").unwrap(), vec![1]);
    h.shutdown();
    drop(dir2);
}

/// The backlog goes as batches; the agent is SIGKILLed after the cloud applied a batch and
/// before its answer arrived. Restarted, it resends that very batch (same key, same
/// reports), the cloud answers `duplicate`, and every printer's reports are applied once,
/// in order, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_before_its_answer_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let cloud = TestCloud::serve(dir.path(), |c| c).await;
    let snmp_port = 30000 + (std::process::id() % 20000) as u16 + 7;
    let sim = crate::common::synthetic_printers(
        4,
        21,
        600.0,
        Ipv4Addr::new(127, 98, 0, 1),
        snmp_port,
        "public",
    )
    .await;
    let mut conf = format!(
        "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[poller]\ninterval_secs = 10\ndeadline_secs = 5\n\
         [cloud]\nurl = \"{}\"\nca_file = \"{}\"\n",
        state.display(),
        cloud.url,
        cloud.ca_file.display()
    );
    for i in 1..=4 {
        conf.push_str(&format!(
            "[[printers]]\naddress = \"127.98.0.{i}:{snmp_port}\"\n"
        ));
    }
    let conf_file = dir.path().join("agent.toml");
    std::fs::write(&conf_file, conf).unwrap();
    let outbox = || {
        fleet_agent::store::Store::open(&state)
            .unwrap()
            .outbox_stats()
            .unwrap()
    };

    // Not activated yet: readings wait in the outbox (4 snapshots, then deltas).
    // The store exists before the agent starts, so the test's readings of it never race
    // the agent's creation of it.
    fleet_agent::store::Store::open(&state).unwrap();
    let mut agent = crate::common::run_agent(&conf_file, None);
    crate::common::wait_for("a backlog of 6 messages", 60, || {
        (outbox().messages >= 6).then_some(())
    })
    .await;
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let backlog = outbox().messages;

    // Activated, the agent sends the backlog as one batch; the cloud applies it and
    // holds the answer while the agent is killed.
    cloud.activate(&cloud.code, &state).await;
    cloud.cloud().set_upload_answer_delay_ms(60_000);
    let mut agent = crate::common::run_agent(&conf_file, None);
    let first = crate::common::wait_for("the first batch applied", 60, || {
        cloud.cloud().uploads_seen().into_iter().next()
    })
    .await;
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    assert!(first.first);
    assert!(
        first.reports > 1 && first.reports as u64 <= backlog,
        "one request carried several messages: {first:?} of {backlog}"
    );
    assert!(first.message_id.ends_with(&format!("+{}", first.reports)));
    assert!(
        outbox().messages >= first.reports as u64,
        "nothing was acknowledged"
    );

    // Restarted: the same batch again, answered duplicate, then the rest.
    cloud.cloud().set_upload_answer_delay_ms(0);
    let mut agent = crate::common::run_agent(&conf_file, None);
    crate::common::wait_for("the outbox drained", 60, || {
        (outbox().messages == 0 && cloud.db.assets().unwrap().len() == 4).then_some(())
    })
    .await;
    agent.child.kill().ok();
    agent.child.wait().ok();
    let seen = cloud.cloud().uploads_seen();
    assert_eq!(
        seen[1].message_id, first.message_id,
        "the batch was resent as it was: {seen:?}"
    );
    assert!(!seen[1].first);
    assert_eq!(seen[1].reports, first.reports);
    let stats = outbox();
    assert_eq!((stats.rejected, stats.dropped), (0, 0), "{stats:?}");
    for a in cloud.db.assets().unwrap() {
        let seqs = cloud.db.applied_seqs(&a.agent_id, &a.serial).unwrap();
        let want: Vec<u64> = (1..=a.seq).collect();
        assert_eq!(
            seqs, want,
            "printer {}: applied once each, in order",
            a.serial
        );
    }
    sim.stop().await;
}
