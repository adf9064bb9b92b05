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
    assert_eq!(listed.schedules[0].every_secs, Some(86_400));
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

/// The seed's recurring tasks: weekly on named days at a local time in a time zone, from
/// a start date to an end date; `once` runs once. Jobs are queued at those instants on the
/// cloud's clock (Paris is UTC+1 in January), and the schedule ends after its last day.
#[tokio::test]
async fn calendar_schedules_run_at_local_times_until_their_end() {
    let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let clock = Arc::new(AtomicI64::new(ms("2027-01-01T00:00:00Z")));
    let c2 = clock.clone();
    let dir = tempfile::tempdir().unwrap();
    let cloud = TestCloud::serve(dir.path(), |c| {
        c.with_clock(Arc::new(move || c2.load(Ordering::SeqCst)))
    })
    .await;
    let (url, admin, agent_id) = (&cloud.url, &cloud.admin, &cloud.agent_id);
    let create = |body: serde_json::Value| {
        let (admin, url, agent_id) = (admin.clone(), url.clone(), agent_id.clone());
        async move {
            admin
                .post(format!("{url}/admin/v1/agents/{agent_id}/jobs"))
                .bearer_auth("admin-secret")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = create(
        json!({ "type": "refresh", "recurrence": { "repeat": "weekly",
        "days": ["mon", "thu"], "time": "02:30", "timeZone": "Europe/Paris",
        "startDate": "2027-01-01", "endDate": "2027-01-11" } }),
    )
    .await;
    assert_eq!(r.status(), 201);
    let s: CreatedSchedule = r.json().await.unwrap();
    assert_eq!(s.first_job_id, None, "nothing until its first time");
    assert_eq!(
        s.next_at,
        ms("2027-01-04T01:30:00Z"),
        "Monday 02:30 in Paris"
    );
    assert!(s.recurrence.is_some() && s.every_secs.is_none());

    let at = |t: &str| clock.store(ms(t), Ordering::SeqCst);
    at("2027-01-04T01:29:59Z");
    assert_eq!(cloud.jobs().await.len(), 0);
    at("2027-01-04T01:30:00Z");
    assert_eq!(cloud.jobs().await.len(), 1);
    let listed: Schedules = cloud.admin_get("/admin/v1/schedules").await;
    assert_eq!(listed.schedules[0].next_at, ms("2027-01-07T01:30:00Z"));
    assert_eq!(
        listed.schedules[0].last_at,
        Some(ms("2027-01-04T01:30:00Z"))
    );
    // Thursday, then Monday the 11th (its last day), then the schedule has ended.
    at("2027-01-07T09:00:00Z");
    assert_eq!(cloud.jobs().await.len(), 2);
    at("2027-01-11T01:30:00Z");
    assert_eq!(cloud.jobs().await.len(), 3);
    let listed: Schedules = cloud.admin_get("/admin/v1/schedules").await;
    assert!(listed.schedules.is_empty(), "ended: {listed:?}");
    at("2027-01-20T00:00:00Z");
    assert_eq!(cloud.jobs().await.len(), 3);

    // Once: one job, then gone.
    let r = create(
        json!({ "type": "discover", "recurrence": { "repeat": "once",
        "time": "23:00", "timeZone": "UTC", "startDate": "2027-01-20" } }),
    )
    .await;
    assert_eq!(r.status(), 201);
    at("2027-01-21T00:00:00Z");
    assert_eq!(cloud.jobs().await.len(), 4);
    at("2027-02-21T00:00:00Z");
    let all = cloud.jobs().await;
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].type_name, "discover");
    assert_eq!(all[3].created_at, ms("2027-01-21T00:00:00Z"));

    // Bad input names the field; a calendar that never runs again is refused.
    for (body, field) in [
        (
            json!({ "repeat": "daily", "time": "02:30", "timeZone": "Europe/Pariss",
            "startDate": "2027-01-01" }),
            "recurrence.timeZone",
        ),
        (
            json!({ "repeat": "daily", "time": "2:30", "timeZone": "UTC",
            "startDate": "2027-01-01" }),
            "recurrence.time",
        ),
        (
            json!({ "repeat": "once", "time": "02:30", "timeZone": "UTC",
            "startDate": "2027-01-01" }),
            "recurrence: it never runs",
        ),
    ] {
        let r = create(json!({ "type": "refresh", "recurrence": body })).await;
        assert_eq!(r.status(), 400);
        let v: fleet_protocol::Reason = r.json().await.unwrap();
        assert!(v.reason.starts_with(field), "{v:?}");
    }
    let r = create(
        json!({ "type": "refresh", "everySecs": 3600, "recurrence": {
        "repeat": "daily", "time": "02:30", "timeZone": "UTC", "startDate": "2027-01-01" } }),
    )
    .await;
    assert_eq!(r.status(), 400);
}
