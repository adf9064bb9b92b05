//! Activation, the one way both the local page and `fleet-agent activate` take: the
//! client built from the configuration and the proxy in force, the code checked for shape
//! before it leaves the host, the cloud's answer turned into an error that says what to
//! fix, the credentials stored sealed.

use super::client::{CloudClient, CloudError, Credentials};
use crate::config::{CloudConfig, Config, Proxy};
use crate::store::Store;
use crate::store::secrets::SealKey;

/// Why activation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// No cloud URL in the configuration file.
    #[error(
        "cloud.url is not set in the configuration file: the agent does not know which cloud to activate with"
    )]
    NoCloudUrl,
    /// The code cannot be one (a typing mistake); nothing was sent.
    #[error(
        "code: an activation code looks like XXXX-XXXX-XXXX (letters and digits); check for a typing mistake"
    )]
    CodeShape,
    /// The local configuration cannot be used (CA file, proxy URL).
    #[error("{0}")]
    Config(String),
    /// The cloud refused the code (unknown, expired, already used, malformed).
    #[error("code: {reason}")]
    Refused {
        /// The cloud's HTTP status.
        status: u16,
        /// The cloud's reason.
        reason: String,
    },
    /// The cloud could not be reached (network, proxy, TLS, a 5xx).
    #[error("cannot reach the cloud at {url}{via}: {why}{hint}")]
    Unreachable {
        /// The cloud URL.
        url: String,
        /// " through the proxy …" when one is used.
        via: String,
        /// The transport's error.
        why: String,
        /// What to check.
        hint: &'static str,
    },
    /// Activated, but the credentials could not be stored.
    #[error("activated, but the credentials could not be saved: {0}")]
    NotSaved(String),
}

/// Normalizes a code as typed (spaces around, lower case) and checks its shape.
///
/// # Errors
/// [`ActivationError::CodeShape`].
pub fn normalize_code(code: &str) -> Result<String, ActivationError> {
    let code = code.trim().to_uppercase();
    let parts: Vec<&str> = code.split('-').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| p.len() == 4 && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(code)
    } else {
        Err(ActivationError::CodeShape)
    }
}

/// The proxy in force: the one entered on the page when set, else the configuration
/// file's `cloud.proxy`.
pub fn proxy_in_force(store: &Store, key: &SealKey, config: &Config) -> Proxy {
    store
        .page_proxy(key)
        .ok()
        .flatten()
        .map_or_else(|| config.cloud.proxy.clone(), |p| p.proxy())
}

/// The cloud client for this configuration (its URL, CA file and timeout) through
/// `proxy`: the one builder the agent uses. `Ok(None)` when no cloud URL is set.
///
/// # Errors
/// An unreadable CA file (named), a non-https URL, an unusable proxy URL.
pub fn client(cloud: &CloudConfig, proxy: &Proxy) -> Result<Option<CloudClient>, CloudError> {
    let Some(url) = &cloud.url else {
        return Ok(None);
    };
    let ca = match &cloud.ca_file {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| CloudError::Config(format!("cloud.ca_file {}: {e}", p.display())))?,
        ),
        None => None,
    };
    CloudClient::with_proxy(url, ca.as_deref(), cloud.timeout, proxy).map(Some)
}

/// Exchanges `code` for credentials with the configured cloud through `proxy`, and
/// stores them sealed in `store`.
///
/// # Errors
/// See [`ActivationError`]; nothing is stored unless the cloud accepted the code.
pub async fn activate(
    config: &Config,
    proxy: &Proxy,
    code: &str,
    store: &Store,
    key: &SealKey,
) -> Result<Credentials, ActivationError> {
    let code = normalize_code(code)?;
    let url = config
        .cloud
        .url
        .clone()
        .ok_or(ActivationError::NoCloudUrl)?;
    let client = client(&config.cloud, proxy)
        .map_err(|e| ActivationError::Config(e.to_string()))?
        .ok_or(ActivationError::NoCloudUrl)?;
    let creds = match client.activate(&code).await {
        Ok(c) => c,
        Err(CloudError::Rejected { status, reason }) => {
            return Err(ActivationError::Refused { status, reason });
        }
        Err(CloudError::Config(e)) => return Err(ActivationError::Config(e)),
        Err(e) => {
            let why = match e {
                CloudError::Transient(w) => w,
                other => other.to_string(),
            };
            let hint = if why.contains("407") || why.to_lowercase().contains("proxy") {
                " (check the proxy's address, user and password)"
            } else {
                ""
            };
            let via = match proxy {
                Proxy::Http { url, .. } => format!(" through the proxy {url}"),
                _ => String::new(),
            };
            return Err(ActivationError::Unreachable {
                url,
                via,
                why,
                hint,
            });
        }
    };
    let (s, k, c) = (store.clone(), key.clone(), creds.clone());
    tokio::task::spawn_blocking(move || s.save_cloud_credentials(&k, &c))
        .await
        .map_err(|e| ActivationError::NotSaved(e.to_string()))?
        .map_err(|e| ActivationError::NotSaved(e.to_string()))?;
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_normalized_and_bad_shapes_never_leave_the_host() {
        assert_eq!(
            normalize_code(" ab12-CD34-ef56 ").unwrap(),
            "AB12-CD34-EF56"
        );
        for bad in [
            "",
            "AB12-CD34",
            "AB12-CD34-EF5",
            "AB12-CD34-EF56-GH78",
            "AB12_CD34_EF56",
            "AB1!-CD34-EF56",
        ] {
            assert!(
                matches!(normalize_code(bad), Err(ActivationError::CodeShape)),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn no_cloud_url_and_an_unreadable_ca_are_named() {
        let store = Store::open_in_memory().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = SealKey::load_or_create(dir.path()).unwrap();
        let mut config = crate::config::parse("test.toml", "").unwrap();
        let e = activate(&config, &Proxy::None, "AAAA-BBBB-CCCC", &store, &key)
            .await
            .unwrap_err();
        assert!(matches!(e, ActivationError::NoCloudUrl), "{e}");
        config.cloud.url = Some("https://127.0.0.1:9".into());
        config.cloud.ca_file = Some(dir.path().join("missing.pem"));
        let e = activate(&config, &Proxy::None, "AAAA-BBBB-CCCC", &store, &key)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("cloud.ca_file") && e.to_string().contains("missing.pem"),
            "{e}"
        );
        // Nothing listens there: the error names the cloud and the proxy in use.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        config.cloud.url = Some(format!("https://{closed}"));
        config.cloud.ca_file = None;
        let proxy = Proxy::Http {
            url: format!("http://{closed}"),
            user: None,
            password: None,
            no_proxy: vec![],
        };
        let e = activate(&config, &proxy, "AAAA-BBBB-CCCC", &store, &key)
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ActivationError::Unreachable { .. }), "{text}");
        assert!(
            text.contains(&format!(
                "cannot reach the cloud at https://{closed} through the proxy http://{closed}"
            )),
            "{text}"
        );
        assert!(
            store.cloud_credentials(&key).unwrap().is_none(),
            "nothing stored"
        );
    }
}
