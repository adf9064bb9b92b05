//! Activation (`POST /v1/activate`) and tokens (`POST /v1/oauth/token`).

use fleet_secret::Secret;
use serde::{Deserialize, Serialize};

/// `POST /v1/activate`: an activation code created in the cloud, exchanged once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivateRequest {
    /// `XXXX-XXXX-XXXX`.
    pub activation_code: String,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: String,
    /// The host's name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `linux-x86_64`, `windows-x86_64`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// `201` answer to an activation: the agent's client credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activated {
    /// The agent instance.
    pub agent_id: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (stored sealed by the agent).
    #[serde(with = "fleet_secret::exposed")]
    pub client_secret: Secret,
    /// Entity tag of the instance settings, when there are some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_etag: Option<String>,
}

/// The only grant type: OAuth 2 client credentials.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// `POST /v1/oauth/token` (snake case, as OAuth 2 and the seed's API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// [`CLIENT_CREDENTIALS`].
    pub grant_type: String,
    /// From [`Activated`].
    pub client_id: String,
    /// From [`Activated`].
    #[serde(with = "fleet_secret::exposed")]
    pub client_secret: Secret,
}

/// A bearer token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Sent as `Authorization: Bearer …`.
    #[serde(with = "fleet_secret::exposed")]
    pub access_token: Secret,
    /// `bearer`.
    pub token_type: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Issue time, Unix seconds (as the seed's API).
    pub created_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_travel_on_the_wire_but_never_print() {
        let doc = r#"{ "agentId": "a", "clientId": "c", "clientSecret": "s3cr3t" }"#;
        let a: Activated = serde_json::from_str(doc).unwrap();
        assert_eq!(a.client_secret.expose(), "s3cr3t");
        assert!(!format!("{a:?}").contains("s3cr3t"));
        assert!(serde_json::to_string(&a).unwrap().contains("s3cr3t"));
    }
}
