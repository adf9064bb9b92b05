//! Recurring jobs in the reference cloud (the seed's compliance checks on a schedule):
//! each period queues one new pending job for the agent, however long the cloud was
//! idle; a removed schedule queues nothing more. Time is the cloud's test clock.

use fleet_cloud::testing::TestCloud;
use fleet_protocol::admin::{CreatedSchedule, Schedules};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[tokio::test]
async fn schedules_queue_one_job_per_period() {
    let clock = Arc::new(AtomicI64::new(1_800_000_000_000));
    let c2 = clock.clone();
    let dir = tempfile::tempdir().unwrap();
    let cloud = TestCloud::serve(dir.path(), |c| {
        c.with_clock(Arc::new(move || c2.load(Ordering::SeqCst)))
    })
    .await;
    let (url, admin, agent_id) = (&cloud.url, &cloud.admin, &cloud.agent_id);
    let jobs = || cloud.jobs();

    let body = json!({ "type": "complianceCheck", "printer": { "serialNumber": "X1" },
        "params": { "settings": { "sysLocation": "Floor 2" } }, "everySecs": 86_400 });
    let r = admin
        .post(format!("{url}/admin/v1/agents/{agent_id}/jobs"))
        .bearer_auth("admin-secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s: CreatedSchedule = r.json().await.unwrap();
    let schedule = s.schedule_id.clone();
    // The first job is queued at once, with the schedule's type, printer and params.
    let all = jobs().await;
    assert_eq!(all.len(), 1);
    assert_eq!(Some(&all[0].job_id), s.first_job_id.as_ref());
    assert_eq!(all[0].type_name, "complianceCheck");
    assert_eq!(all[0].params["settings"]["sysLocation"], "Floor 2");
    assert_eq!(
        all[0]
            .printer
            .as_ref()
            .and_then(|p| p.serial_number.as_deref()),
        Some("X1")
    );

    // Half a period: nothing new. A period: one more.
    clock.fetch_add(43_200_000, Ordering::SeqCst);
    assert_eq!(jobs().await.len(), 1);
    clock.fetch_add(43_200_000, Ordering::SeqCst);
    assert_eq!(jobs().await.len(), 2);
    // Three periods while nobody looked: one job, not three.
    clock.fetch_add(3 * 86_400_000, Ordering::SeqCst);
    assert_eq!(jobs().await.len(), 3);
    let listed: Schedules = cloud.admin_get("/admin/v1/schedules").await;
    assert_eq!(listed.schedules[0].every_secs, 86_400);
    assert_eq!(
        listed.schedules[0].next_at,
        1_800_000_000_000 + 5 * 86_400_000,
        "the next period on the schedule's own grid"
    );

    // Removed: nothing more.
    let r = admin
        .delete(format!("{url}/admin/v1/schedules/{schedule}"))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    clock.fetch_add(10 * 86_400_000, Ordering::SeqCst);
    let all = jobs().await;
    assert_eq!(all.len(), 3);

    // Too short a period is refused with the reason.
    let r = admin
        .post(format!("{url}/admin/v1/agents/{agent_id}/jobs"))
        .bearer_auth("admin-secret")
        .json(&json!({ "type": "refresh", "everySecs": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: fleet_protocol::Reason = r.json().await.unwrap();
    assert!(v.reason.contains("everySecs"), "{v:?}");
}
