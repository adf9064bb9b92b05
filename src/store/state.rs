//! The agent's own state that several components share, behind typed methods (the
//! setting names stay here): whether the cloud disabled or deleted the agent, its cloud
//! credentials, unenrolled printers, the last message the cloud accepted, the log level
//! chosen on the page, the installed support library, the page's password, its
//! "localhost only" switch and the proxy entered on it.

use super::secrets::SealKey;
use super::{Store, StoreError};
use fleet_secret::Secret;

pub(super) const AGENT_STATE: &str = "agent.disabled";
/// [`AGENT_STATE`] of a deleted agent.
pub(super) const DELETED: &str = "deleted";
const AGENT_ID: &str = "cloud.agent_id";
const CLIENT_ID: &str = "cloud.client_id";
const CLIENT_SECRET: &str = "cloud.client_secret";
const LAST_SENT: &str = "outbox.last_sent";
const LOG_LEVEL: &str = "ui.log_level";
const LIBRARY: &str = "library.package";
const PASSWORD: &str = "ui.password";
const LOCALHOST_ONLY: &str = "ui.localhost_only";
/// "Search this host's networks", chosen on the activation page (`"1"`).
const SEARCH_LOCAL: &str = "ui.search_local_networks";
/// Prefix of "this printer's web server refused our credentials" (`"CODE AT_MS"`), by
/// address.
pub const WEB_REFUSED: &str = "web_refused.";
const PROXY: &str = "ui.proxy";

fn unenrolled(printer_key: &str) -> String {
    format!("unenrolled.{printer_key}")
}

/// What the cloud made of the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    /// Polling and discovering.
    Active,
    /// Disabled by the cloud (`disable`): the cloud link and jobs run, printer work not.
    Disabled,
    /// Deleted by the cloud (`delete`): credentials and data wiped, idle until activated.
    Deleted,
}

/// The credentials activation gave: the agent instance and its OAuth client.
#[derive(Clone, Debug)]
pub struct CloudCredentials {
    /// Agent instance id.
    pub agent_id: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (sealed at rest).
    pub client_secret: Secret,
}

/// The proxy entered on the local page (the seed's fields), sealed at rest. It wins over
/// the configuration file's `cloud.proxy`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PageProxy {
    /// Host name or address (no scheme, port or credentials).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Proxy user, when it asks for one.
    #[serde(default)]
    pub user: Option<String>,
    /// Proxy password.
    #[serde(default, with = "fleet_secret::exposed::option")]
    pub password: Option<Secret>,
}

impl PageProxy {
    /// The proxy to use: HTTP CONNECT through `host:port`, with basic credentials when set.
    pub fn proxy(&self) -> crate::config::Proxy {
        let host = self.host.trim();
        let host = if host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        crate::config::Proxy::Http {
            url: format!("http://{host}:{}", self.port),
            user: self
                .user
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            password: self.password.clone().filter(|p| !p.expose().is_empty()),
            no_proxy: vec![],
        }
    }
}

impl Store {
    /// The agent password's argon2id PHC string, when one is set.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn page_password(&self) -> Result<Option<String>, StoreError> {
        self.setting(PASSWORD)
    }

    /// Sets the agent password (its argon2id PHC string).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_page_password(&self, phc: &str) -> Result<(), StoreError> {
        self.set_setting(PASSWORD, phc)
    }

    /// "Allow localhost access only" (on unless turned off).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn localhost_only(&self) -> Result<bool, StoreError> {
        Ok(self.setting(LOCALHOST_ONLY)?.is_none_or(|v| v != "0"))
    }

    /// Turns "allow localhost access only" on or off.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_localhost_only(&self, on: bool) -> Result<(), StoreError> {
        self.set_setting(LOCALHOST_ONLY, if on { "1" } else { "0" })
    }

    /// Whether the admin chose on the page to search the host's own networks (laid over
    /// the file's and the cloud's `discovery.local_network`).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn search_local_networks(&self) -> Result<bool, StoreError> {
        Ok(self.setting(SEARCH_LOCAL)?.is_some_and(|v| v == "1"))
    }

    /// Records that choice.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_search_local_networks(&self, on: bool) -> Result<(), StoreError> {
        if on {
            self.set_setting(SEARCH_LOCAL, "1")
        } else {
            self.remove_setting(SEARCH_LOCAL)
        }
    }

    /// The proxy entered on the page, if any (an unreadable one counts as none).
    ///
    /// # Errors
    /// On SQL failure or a seal that does not open.
    pub fn page_proxy(&self, key: &SealKey) -> Result<Option<PageProxy>, StoreError> {
        Ok(self
            .secret(key, PROXY)?
            .and_then(|s| serde_json::from_str(s.expose()).ok()))
    }

    /// Stores the page's proxy (sealed), or removes it with `None`.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_page_proxy(
        &self,
        key: &SealKey,
        proxy: Option<&PageProxy>,
    ) -> Result<(), StoreError> {
        match proxy {
            None => self.remove_setting(PROXY),
            Some(p) => {
                // Strings and a number: serializing cannot fail.
                let text = serde_json::to_string(p).unwrap_or_default();
                self.set_secret(key, PROXY, &Secret::new(text))
            }
        }
    }

    /// What the cloud made of the agent.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn agent_state(&self) -> Result<AgentState, StoreError> {
        Ok(match self.setting(AGENT_STATE)?.as_deref() {
            None => AgentState::Active,
            Some(DELETED) => AgentState::Deleted,
            Some(_) => AgentState::Disabled,
        })
    }

    /// Records what the cloud made of the agent.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_agent_state(&self, state: AgentState) -> Result<(), StoreError> {
        match state {
            AgentState::Active => self.remove_setting(AGENT_STATE),
            AgentState::Disabled => self.set_setting(AGENT_STATE, "1"),
            AgentState::Deleted => self.set_setting(AGENT_STATE, DELETED),
        }
    }

    /// The credentials of the last activation, when the agent is activated.
    ///
    /// # Errors
    /// On SQL failure or a sealed secret that does not open with `key`.
    pub fn cloud_credentials(&self, key: &SealKey) -> Result<Option<CloudCredentials>, StoreError> {
        let (Some(agent_id), Some(client_id), Some(client_secret)) = (
            self.setting(AGENT_ID)?,
            self.setting(CLIENT_ID)?,
            self.secret(key, CLIENT_SECRET)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(CloudCredentials {
            agent_id,
            client_id,
            client_secret,
        }))
    }

    /// The agent instance the agent is activated as, if any (no secret needed).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn agent_id(&self) -> Result<Option<String>, StoreError> {
        self.setting(AGENT_ID)
    }

    /// Stores an activation's credentials (the secret sealed with `key`); a new
    /// activation also ends a disabled or deleted state.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn save_cloud_credentials(
        &self,
        key: &SealKey,
        creds: &CloudCredentials,
    ) -> Result<(), StoreError> {
        self.set_agent_state(AgentState::Active)?;
        self.set_setting(AGENT_ID, &creds.agent_id)?;
        self.set_setting(CLIENT_ID, &creds.client_id)?;
        self.set_secret(key, CLIENT_SECRET, &creds.client_secret)
    }

    /// When a printer (by its printer key) was unenrolled: readings taken until then are
    /// never uploaded.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn unenrolled_at(&self, printer_key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .setting(&unenrolled(printer_key))?
            .map(|t| t.parse().unwrap_or(i64::MAX)))
    }

    /// Records that a printer was unenrolled at `at_ms`.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_unenrolled(&self, printer_key: &str, at_ms: i64) -> Result<(), StoreError> {
        self.set_setting(&unenrolled(printer_key), &at_ms.to_string())
    }

    /// Records that a printer's web server refused the agent's credentials (HTTP `code`,
    /// at `at_ms`), or with `None` that it accepted them (or new ones were set).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_web_refused(
        &self,
        address: &str,
        refused: Option<(u16, i64)>,
    ) -> Result<(), StoreError> {
        let name = format!("{WEB_REFUSED}{address}");
        let before = self.setting(&name)?;
        match refused {
            Some((code, at)) => self.set_setting(&name, &format!("{code} {at}"))?,
            None if before.is_some() => self.remove_setting(&name)?,
            None => return Ok(()),
        }
        // A printer's status changed: the heartbeat tells the cloud.
        if before.is_none() != refused.is_none() {
            self.status_changed.notify_one();
        }
        Ok(())
    }

    /// The printers as an admin and the cloud should see them: [`Store::printers`], where
    /// a printer that answers but whose web server refused the agent's credentials
    /// needs credentials (the seed's "the agent needs credentials").
    ///
    /// # Errors
    /// On SQL failure.
    pub fn printers_seen(&self) -> Result<Vec<super::PrinterRow>, StoreError> {
        use super::Health;
        let mut rows = self.printers()?;
        let refused = self.settings_under(WEB_REFUSED)?;
        if refused.is_empty() {
            return Ok(rows);
        }
        let refused: std::collections::HashMap<&str, (u16, i64)> = refused
            .iter()
            .filter_map(|(k, v)| {
                let (code, at) = v.split_once(' ')?;
                Some((
                    k.strip_prefix(WEB_REFUSED)?,
                    (code.parse().ok()?, at.parse().ok()?),
                ))
            })
            .collect();
        for p in &mut rows {
            if let Some((code, at)) = refused.get(p.address.as_str())
                && matches!(p.health, Health::Ok | Health::Suspect | Health::Unknown)
            {
                p.health = Health::NeedsCredentials;
                p.health_reason = Some(format!(
                    "its web server refused the agent's credentials (HTTP {code}); set them with updateCredentials params.web"
                ));
                p.health_since_ms = Some(*at);
            }
        }
        Ok(rows)
    }

    /// Forgets that a printer was unenrolled (discovery found it again: it is enrolled
    /// again, as the seed describes). True when it was.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn clear_unenrolled(&self, printer_key: &str) -> Result<bool, StoreError> {
        let was = self.unenrolled_at(printer_key)?.is_some();
        if was {
            self.remove_setting(&unenrolled(printer_key))?;
        }
        Ok(was)
    }

    /// The last message the cloud accepted (JSON: messageId, kind, printerKey, sentAtMs,
    /// body), for the local page's "what will be sent".
    ///
    /// # Errors
    /// On SQL failure.
    pub fn last_sent(&self) -> Result<Option<String>, StoreError> {
        self.setting(LAST_SENT)
    }

    /// Records the last message the cloud accepted.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_last_sent(&self, doc: &str) -> Result<(), StoreError> {
        self.set_setting(LAST_SENT, doc)
    }

    /// The log level chosen on the local page (wins until the next change from the cloud).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn log_level(&self) -> Result<Option<String>, StoreError> {
        self.setting(LOG_LEVEL)
    }

    /// Records the log level chosen on the local page.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_log_level(&self, level: &str) -> Result<(), StoreError> {
        self.set_setting(LOG_LEVEL, level)
    }

    /// The installed support library's signed package (JSON), if the cloud installed one.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn library_package(&self) -> Result<Option<String>, StoreError> {
        self.setting(LIBRARY)
    }

    /// Records the installed support library's signed package.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_library_package(&self, package: &str) -> Result<(), StoreError> {
        self.set_setting(LIBRARY, package)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_state_reads_back_typed() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let key = SealKey::load_or_create(d.path()).unwrap();
        assert_eq!(s.agent_state().unwrap(), AgentState::Active);
        s.set_agent_state(AgentState::Deleted).unwrap();
        assert_eq!(s.agent_state().unwrap(), AgentState::Deleted);
        s.set_agent_state(AgentState::Disabled).unwrap();
        assert_eq!(s.agent_state().unwrap(), AgentState::Disabled);
        assert!(s.cloud_credentials(&key).unwrap().is_none());
        s.save_cloud_credentials(
            &key,
            &CloudCredentials {
                agent_id: "a".into(),
                client_id: "c".into(),
                client_secret: Secret::new("s3cr3t"),
            },
        )
        .unwrap();
        assert_eq!(
            s.agent_state().unwrap(),
            AgentState::Active,
            "activation enables"
        );
        let c = s.cloud_credentials(&key).unwrap().unwrap();
        assert_eq!(
            (c.agent_id.as_str(), c.client_secret.expose()),
            ("a", "s3cr3t")
        );
        assert_eq!(s.agent_id().unwrap().as_deref(), Some("a"));
        assert_eq!(s.unenrolled_at("sn:X").unwrap(), None);
        s.set_unenrolled("sn:X", 42).unwrap();
        assert_eq!(s.unenrolled_at("sn:X").unwrap(), Some(42));
        assert!(s.clear_unenrolled("sn:X").unwrap());
        assert_eq!(s.unenrolled_at("sn:X").unwrap(), None);
        assert!(!s.clear_unenrolled("sn:X").unwrap());
    }
}
