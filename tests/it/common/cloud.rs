//! The reference cloud in process (`fleet_cloud::testing`), and the agent's side of it:
//! activating an agent instance into a state directory.

pub use fleet_cloud::testing::{TestCloud, message};
use std::path::Path;
use std::time::Duration;

/// Starts the cloud on loopback, creates an agent instance and activates it into
/// `state` (the agent started later finds its credentials there). The CA goes to
/// `dir/ca.pem`.
pub async fn start(dir: &Path, state: &Path) -> TestCloud {
    let cloud = TestCloud::serve(dir, |c| c).await;
    cloud.activate(&cloud.code, state).await;
    cloud
}

/// What an agent does with the test cloud.
pub trait AgentSide {
    /// Activates with `code` as an agent would, stores the credentials in `state` and
    /// returns them.
    async fn activate(&self, code: &str, state: &Path) -> fleet_agent::cloud::client::Credentials;
}

impl AgentSide for TestCloud {
    async fn activate(&self, code: &str, state: &Path) -> fleet_agent::cloud::client::Credentials {
        let client = fleet_agent::cloud::client::CloudClient::new(
            &self.url,
            Some(self.ca_pem.as_bytes()),
            Duration::from_secs(10),
        )
        .unwrap();
        let creds = client.activate(code).await.unwrap();
        fleet_agent::cloud::save_credentials(state, &creds).unwrap();
        creds
    }
}

/// A finished job's result.
///
/// # Panics
/// When the job has none yet.
pub fn result(j: &fleet_protocol::admin::JobView) -> &fleet_protocol::jobs::JobResult {
    j.result
        .as_ref()
        .unwrap_or_else(|| panic!("job {} has no result: {j:?}", j.job_id))
}
