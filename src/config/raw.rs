//! Serde mirror of `fleet-agent.toml`: strict (`deny_unknown_fields`), with defaults.
//! Private to `config`; the rest of the crate sees only the validated [`super::Config`].

use fleet_secret::Secret;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub agent: RawAgent,
    #[serde(default)]
    pub web: RawWeb,
    #[serde(default)]
    pub poller: RawPoller,
    #[serde(default)]
    pub discovery: RawDiscovery,
    #[serde(default)]
    pub cloud: RawCloud,
    #[serde(default)]
    pub upload: RawUpload,
    #[serde(default)]
    pub snmp_profiles: Vec<RawProfile>,
    #[serde(default)]
    pub printers: Vec<RawPrinter>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub state_dir: Option<String>,
    pub log_level: Option<String>,
    pub stop_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    pub listen: Option<String>,
    pub remote_listen: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoller {
    pub interval_secs: Option<u64>,
    pub deadline_secs: Option<u64>,
    pub max_in_flight: Option<usize>,
    pub backoff_max_secs: Option<u64>,
    pub not_communicating_after: Option<u32>,
    pub max_pages_per_minute: Option<u64>,
    pub status_interval_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub name: String,
    pub auth: RawAuth,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub max_repetitions: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawAuth {
    V1 {
        community: Secret,
    },
    V2c {
        community: Secret,
    },
    V3 {
        user: String,
        auth_protocol: Option<String>,
        auth_pass: Option<Secret>,
        priv_protocol: Option<String>,
        priv_pass: Option<Secret>,
        context: Option<String>,
        key_extension: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrinter {
    pub address: String,
    pub profile: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscovery {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub import: Vec<String>,
    pub local_network: Option<bool>,
    pub interval_secs: Option<u64>,
    pub network_delay_us: Option<u64>,
    pub max_in_flight: Option<usize>,
    pub max_addresses: Option<u64>,
    pub mdns_secs: Option<u64>,
    pub port: Option<u16>,
    #[serde(default)]
    pub profiles: Vec<String>,
    pub takeover: Option<bool>,
    pub ipp: Option<super::IppUse>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCloud {
    pub url: Option<String>,
    pub ca_file: Option<String>,
    pub timeout_secs: Option<u64>,
    pub outbox_max_bytes: Option<u64>,
    pub proxy: Option<RawProxy>,
    #[serde(default)]
    pub library_keys: Vec<String>,
    #[serde(default)]
    pub update_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawProxy {
    System,
    None,
    Http {
        url: String,
        user: Option<String>,
        password: Option<Secret>,
        #[serde(default)]
        no_proxy: Vec<String>,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpload {
    pub snapshot_interval_secs: Option<u64>,
    pub supply_drop_min_percent: Option<u64>,
}
