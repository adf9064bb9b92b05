//! A new activation code for an existing agent (the seed's "Générer un code
//! d'activation"): the code it replaces stops working, and activating with it cuts off the
//! host that held the instance (its credentials and tokens are refused), over the real
//! HTTPS routes.

use fleet_cloud::testing::TestCloud;
use fleet_protocol::admin::CreatedAgent;
use fleet_protocol::{Reason, activation::Activated};
use serde_json::json;

async fn activate(cloud: &TestCloud, code: &str) -> reqwest::Response {
    cloud
        .admin
        .post(format!("{}/v1/activate", cloud.url))
        .json(&json!({ "activationCode": code, "agentVersion": "0.1.0" }))
        .send()
        .await
        .unwrap()
}

async fn token(cloud: &TestCloud, a: &Activated) -> reqwest::StatusCode {
    cloud
        .admin
        .post(format!("{}/v1/oauth/token", cloud.url))
        .json(
            &json!({ "grant_type": "client_credentials", "client_id": a.client_id,
            "client_secret": a.client_secret.expose() }),
        )
        .send()
        .await
        .unwrap()
        .status()
}

async fn new_code(cloud: &TestCloud, agent: &str) -> reqwest::Response {
    cloud
        .admin
        .post(cloud.admin_url(&format!("/admin/v1/agents/{agent}/activation-code")))
        .bearer_auth("admin-secret")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_new_code_replaces_the_old_and_cuts_off_the_old_host() {
    let dir = tempfile::tempdir().unwrap();
    let cloud = TestCloud::serve(dir.path(), |c| c).await;
    let agent = cloud.agent_id.clone();

    // A code generated before the first is used replaces it.
    let r = new_code(&cloud, &agent).await;
    assert_eq!(r.status(), 201);
    let second: CreatedAgent = r.json().await.unwrap();
    assert_eq!(second.agent_id, agent);
    assert_ne!(second.activation_code, cloud.code);
    let r = activate(&cloud, &cloud.code).await;
    assert_eq!(r.status(), 404, "the replaced code is gone");
    let r = activate(&cloud, &second.activation_code).await;
    assert_eq!(r.status(), 201);
    let host_a: Activated = r.json().await.unwrap();
    assert_eq!(host_a.agent_id, agent);
    assert!(token(&cloud, &host_a).await.is_success());
    let access: serde_json::Value = cloud
        .admin
        .post(format!("{}/v1/oauth/token", cloud.url))
        .json(
            &json!({ "grant_type": "client_credentials", "client_id": host_a.client_id,
            "client_secret": host_a.client_secret.expose() }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = access["access_token"].as_str().unwrap().to_string();
    let config = |t: String| {
        let (http, url, agent) = (cloud.admin.clone(), cloud.url.clone(), agent.clone());
        async move {
            http.get(format!("{url}/v1/agents/{agent}/config"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert!(config(bearer.clone()).await.is_success());

    // The agent is reinstalled on host B with a new code: host A is cut off at once.
    let third: CreatedAgent = new_code(&cloud, &agent).await.json().await.unwrap();
    let r = activate(&cloud, &third.activation_code).await;
    assert_eq!(r.status(), 201);
    let host_b: Activated = r.json().await.unwrap();
    assert_eq!(
        host_b.agent_id, agent,
        "the same instance, its printers kept"
    );
    assert_eq!(token(&cloud, &host_a).await, 401, "host A's credentials");
    assert_eq!(config(bearer).await, 401, "host A's token");
    assert!(token(&cloud, &host_b).await.is_success());

    // No such agent; no admin token.
    let r = new_code(&cloud, "agent-nosuch").await;
    assert_eq!(r.status(), 404);
    let v: Reason = r.json().await.unwrap();
    assert_eq!(v.reason, "no such agent");
    let r = cloud
        .admin
        .post(cloud.admin_url(&format!("/admin/v1/agents/{agent}/activation-code")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
