//! The seed's 24-hour limit on jobs in progress: an acknowledged job whose result has not
//! come 24 h later is expired by the cloud, and the agent's late result is refused with
//! the job's state; the per-printer counts of a result. Over the real HTTPS routes, with
//! the agent's side scripted and the cloud's clock moved.

use fleet_cloud::testing::TestCloud;
use fleet_protocol::admin::PrinterCounts;
use fleet_protocol::jobs::JobState;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Activates `code` and returns a bearer token for it.
async fn bearer(cloud: &TestCloud, code: &str) -> String {
    let a: Value = cloud
        .admin
        .post(format!("{}/v1/activate", cloud.url))
        .json(&json!({ "activationCode": code, "agentVersion": "0.1.0" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t: Value = cloud
        .admin
        .post(format!("{}/v1/oauth/token", cloud.url))
        .json(
            &json!({ "grant_type": "client_credentials", "client_id": a["clientId"],
            "client_secret": a["clientSecret"] }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    t["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_job_in_progress_for_24_hours_expires_and_its_late_result_is_refused() {
    let start = 1_800_000_000_000;
    let clock = Arc::new(AtomicI64::new(start));
    let c2 = clock.clone();
    let dir = tempfile::tempdir().unwrap();
    let cloud = TestCloud::serve(dir.path(), |c| {
        c.with_clock(Arc::new(move || c2.load(Ordering::SeqCst)))
    })
    .await;
    let agent = cloud.agent_id.clone();
    let token = bearer(&cloud, &cloud.code).await;
    let post = |path: String, body: Value, token: String| {
        let (http, url, agent) = (cloud.admin.clone(), cloud.url.clone(), agent.clone());
        async move {
            http.post(format!("{url}/v1/agents/{agent}/jobs/{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let slow = cloud
        .submit_for(&agent, &json!({ "type": "discover" }))
        .await;
    let quick = cloud
        .submit_for(&agent, &json!({ "type": "refresh" }))
        .await;
    for id in [&slow, &quick] {
        let r = post(format!("{id}/ack"), json!({}), token.clone()).await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    let result = json!({ "status": "completed", "finishedAt": start, "printers": [
        { "address": "10.0.0.1:161", "serialNumber": "A", "status": "completed" },
        { "address": "10.0.0.2:161", "serialNumber": "B", "status": "completed" },
        { "address": "10.0.0.3:161", "status": "printerNotCommunicating",
          "message": "no answer" } ] });
    let r = post(format!("{quick}/result"), result.clone(), token.clone()).await;
    assert!(r.status().is_success(), "{}", r.status());
    let q = cloud.job(&quick).await;
    assert_eq!(q.state, JobState::Completed);
    assert_eq!(
        q.printer_counts,
        Some(PrinterCounts {
            total: 3,
            completed: 2,
            printer_not_communicating: 1,
            ..PrinterCounts::default()
        })
    );

    // One millisecond short of 24 h after the acknowledgement: still in progress.
    clock.store(start + 24 * 3_600_000 - 1, Ordering::SeqCst);
    assert_eq!(cloud.job(&slow).await.state, JobState::InProgress);
    clock.store(start + 24 * 3_600_000, Ordering::SeqCst);
    let s = cloud.job(&slow).await;
    assert_eq!(s.state, JobState::Expired);
    assert_eq!(s.finished_at, Some(start + 24 * 3_600_000));
    assert_eq!(
        cloud.job(&quick).await.state,
        JobState::Completed,
        "finished jobs stay"
    );

    // The agent's result arrives late (on a fresh token: the old one ran out).
    let token = {
        let a: Value = cloud.admin_get::<Value>("/admin/v1/agents").await;
        assert_eq!(a["agents"][0]["agentId"], agent);
        // A new code and activation stand in for the agent's token refresh.
        let code: Value = cloud
            .admin
            .post(cloud.admin_url(&format!("/admin/v1/agents/{agent}/activation-code")))
            .bearer_auth("admin-secret")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        bearer(&cloud, code["activationCode"].as_str().unwrap()).await
    };
    let r = post(format!("{slow}/result"), result, token).await;
    assert_eq!(r.status(), 409);
    let why: fleet_protocol::Reason = r.json().await.unwrap();
    assert!(why.reason.contains("expired"), "{why:?}");
    assert_eq!(cloud.job(&slow).await.state, JobState::Expired);
}
