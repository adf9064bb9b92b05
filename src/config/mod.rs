//! Configuration: `fleet-agent.toml` parsed strictly, then validated whole into a typed
//! [`Config`] that reports every problem with its key path (or file:line for syntax).

mod raw;

use fleet_secret::Secret;
use fleet_snmp::usm::{AuthProtocol, KeyExtension, PrivProtocol};
use fleet_snmp::{Security, Target, UsmUser};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The commented default configuration, shipped in `config/fleet-agent.toml`.
pub const DEFAULT_TOML: &str = include_str!("../../config/fleet-agent.toml");

/// A validated configuration: the only configuration type the rest of the crate sees.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the store lives (`None`: the platform default, see [`default_state_dir`]).
    pub state_dir: Option<PathBuf>,
    /// Log filter (`info`, `debug`, `fleet_agent=trace`, ...).
    pub log_level: String,
    /// Time the components get to stop (SIGTERM, service stop) before they are aborted.
    pub stop_timeout: Duration,
    /// Local web listener (metrics now; the UI later).
    pub web_listen: SocketAddr,
    /// Poller settings.
    pub poller: PollerConfig,
    /// Scheduled discovery.
    pub discovery: DiscoveryConfig,
    /// The cloud link.
    pub cloud: CloudConfig,
    /// SNMP profiles by name, in file order.
    pub profiles: Vec<Profile>,
    /// Printers polled on schedule (a static target list).
    pub printers: Vec<PrinterEntry>,
    /// The upload rule's thresholds (`[upload]`).
    pub upload: UploadRule,
}

/// Scheduled polling.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// Time between two full polls of a healthy printer.
    pub interval: Duration,
    /// Time allowed for one printer's poll (kept below the interval).
    pub deadline: Duration,
    /// Printers polled at the same time, at most.
    pub max_in_flight: usize,
    /// Longest wait between attempts on an unreachable printer.
    pub backoff_max: Duration,
    /// Consecutive failed polls before a printer is "not communicating".
    pub not_communicating_after: u32,
    /// Pages per minute above which a counter jump is flagged.
    pub max_pages_per_minute: u64,
    /// Cheaper status checks between full polls (alerts, status, supply levels); a change
    /// triggers a full poll at once. `None`: off.
    pub status_interval: Option<Duration>,
}

impl Default for PollerConfig {
    fn default() -> Self {
        PollerConfig {
            interval: Duration::from_secs(300),
            deadline: Duration::from_secs(60),
            max_in_flight: 128,
            backoff_max: Duration::from_secs(3600),
            not_communicating_after: 3,
            max_pages_per_minute: 600,
            status_interval: None,
        }
    }
}

/// The cloud link (off when `url` is empty).
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// Base URL (https only); `None` runs offline, uploads wait in the outbox.
    pub url: Option<String>,
    /// Extra CA certificate (PEM) trusted besides the platform roots.
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout (the seed's "server timeout").
    pub timeout: Duration,
    /// Outbox byte cap.
    pub outbox_max_bytes: u64,
    /// How the cloud is reached.
    pub proxy: Proxy,
    /// Ed25519 public keys (base64) whose signatures make a printer support library
    /// installable (host-only: the cloud cannot add keys it trusts itself).
    pub library_keys: Vec<String>,
    /// Ed25519 public keys (base64) whose signatures make an agent update installable
    /// (host-only; empty: the agent never updates itself).
    pub update_keys: Vec<String>,
}

/// The way to the cloud (the seed's proxy settings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Proxy {
    /// The platform's settings: `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY` (the default).
    #[default]
    System,
    /// Direct connections only, whatever the environment says.
    None,
    /// An HTTP proxy (CONNECT tunnels for HTTPS), with optional basic authentication.
    Http {
        /// `http://host:port` or `https://host:port`.
        url: String,
        /// Proxy user.
        user: Option<String>,
        /// Proxy password (never printed).
        password: Option<fleet_secret::Secret>,
        /// Hosts reached directly: names (`.corp.example` covers subdomains), IP
        /// addresses or subnets.
        no_proxy: Vec<String>,
    },
}

/// Scheduled discovery (off when it has no targets and no local-network search).
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Include and exclude lists (import files already merged).
    pub targets: crate::targets::TargetSet,
    /// Also search the local networks.
    pub local_network: bool,
    /// Time between two runs.
    pub interval: Duration,
    /// Microseconds between two probe packets (the seed's "network usage delay").
    pub network_delay_us: u64,
    /// Addresses probed at once.
    pub max_in_flight: usize,
    /// Cap on addresses per run.
    pub max_addresses: u128,
    /// Seconds of mDNS listening per run.
    pub mdns: Duration,
    /// SNMP agent port.
    pub port: u16,
    /// Indexes into [`Config::profiles`] to try, in order.
    pub profiles: Vec<usize>,
    /// Take over printers another agent manages (the seed's "transfer management of
    /// printers enrolled via another agent").
    pub takeover: bool,
}

impl DiscoveryConfig {
    /// Tells whether scheduled discovery has anything to do.
    pub fn enabled(&self) -> bool {
        !self.targets.include.is_empty() || self.local_network || !self.mdns.is_zero()
    }
}

/// An SNMP profile: credentials and patience.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Unique name.
    pub name: String,
    /// Credentials.
    pub security: Security,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Extra attempts.
    pub retries: u32,
    /// GETBULK varbind budget.
    pub max_repetitions: u32,
}

impl Profile {
    /// Builds the SNMP target for `addr` with this profile.
    pub fn target(&self, addr: SocketAddr) -> Target {
        Target {
            addr,
            security: self.security.clone(),
            timeout: self.timeout,
            retries: self.retries,
            max_repetitions: self.max_repetitions,
        }
    }
}

/// One configured printer.
#[derive(Debug, Clone)]
pub struct PrinterEntry {
    /// Address (port 161 unless given).
    pub address: SocketAddr,
    /// Index into [`Config::profiles`].
    pub profile: usize,
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path (`printers[2].address`) or `line N, column M` for syntax errors.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    /// The file (or `<default>`).
    pub source: String,
    /// The problems, in file order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} problem(s):", self.source, self.errors.len())?;
        for e in &self.errors {
            writeln!(f, "  {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Returns the platform's state directory: `/var/lib/fleet-agent` for root on Unix,
/// `%ProgramData%\FleetAgent` on Windows, else the user's data directory.
pub fn default_state_dir() -> PathBuf {
    #[cfg(windows)]
    {
        if let Some(pd) = std::env::var_os("ProgramData") {
            return PathBuf::from(pd).join("FleetAgent");
        }
    }
    #[cfg(unix)]
    {
        if is_root() {
            return PathBuf::from("/var/lib/fleet-agent");
        }
    }
    directories::ProjectDirs::from("org", "FleetAgent", "fleet-agent")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".fleet-agent"))
}

#[cfg(unix)]
fn is_root() -> bool {
    // The process owner of /proc/self is the effective user.
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// `[upload]`: the upload rule's thresholds beyond the seed's defaults.
#[derive(Clone, Copy, Debug)]
pub struct UploadRule {
    /// Full upload at least this often (the seed: 24 h).
    pub heartbeat_ms: i64,
    /// A supply percentage must drop by at least this many points to count (seed: any
    /// decrease, i.e. 1).
    pub min_percent_drop: u8,
}

impl Default for UploadRule {
    fn default() -> Self {
        UploadRule {
            heartbeat_ms: 24 * 3600 * 1000,
            min_percent_drop: 1,
        }
    }
}

/// Loads and validates a configuration file.
///
/// # Errors
/// Every syntax and validation problem, with its location.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source: path.display().to_string(),
        errors: vec![ConfigError {
            path: "file".into(),
            message: e.to_string(),
        }],
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parses and validates configuration text; `source` names it in errors.
///
/// # Errors
/// Every syntax and validation problem, with its location.
pub fn parse(source: &str, text: &str) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
        let path = match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                let col = span.start
                    - text[..span.start.min(text.len())]
                        .rfind('\n')
                        .map_or(0, |p| p + 1)
                    + 1;
                format!("line {line}, column {col}")
            }
            None => "syntax".into(),
        };
        ConfigErrors {
            source: source.into(),
            errors: vec![ConfigError {
                path,
                message: e.message().to_string(),
            }],
        }
    })?;
    validate(source, raw, None)
}

/// Keys the cloud's settings document may set (`docs/protocol.md`, Configuration): the
/// rest (state directory, listener, cloud URL, CA, proxy, import files) belong to the host.
const CLOUD_KEYS: &[(&str, &[&str])] = &[
    ("agent", &["log_level"]),
    (
        "poller",
        &[
            "interval_secs",
            "deadline_secs",
            "max_in_flight",
            "backoff_max_secs",
            "not_communicating_after",
            "max_pages_per_minute",
            "status_interval_secs",
        ],
    ),
    (
        "discovery",
        &[
            "include",
            "exclude",
            "local_network",
            "interval_secs",
            "network_delay_us",
            "max_in_flight",
            "max_addresses",
            "mdns_secs",
            "port",
            "profiles",
            "takeover",
        ],
    ),
    ("cloud", &["timeout_secs", "outbox_max_bytes"]),
    (
        "upload",
        &["snapshot_interval_secs", "supply_drop_min_percent"],
    ),
    ("snmp_profiles", &[]),
    ("printers", &[]),
];

/// The local configuration text, kept so that settings pushed by the cloud can be laid
/// over it and the whole validated again (and so SIGHUP can re-read the file).
#[derive(Clone)]
pub struct Source {
    /// Where it came from (a path, or a description), used in errors.
    pub name: String,
    /// The file to re-read on reload, if any.
    pub path: Option<PathBuf>,
    /// The TOML text.
    pub text: String,
    /// A port that replaces `web.listen`'s (`--web-port`, the Windows installer's choice).
    pub web_port: Option<u16>,
}

impl fmt::Debug for Source {
    // The text may hold communities and pass phrases.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// A source from text (the built-in defaults, the demo, tests).
    pub fn new(name: &str, text: &str) -> Source {
        Source {
            name: name.into(),
            path: None,
            text: text.into(),
            web_port: None,
        }
    }

    /// Reads a configuration file.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn read(path: &Path) -> Result<Source, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            source: path.display().to_string(),
            errors: vec![ConfigError {
                path: "file".into(),
                message: e.to_string(),
            }],
        })?;
        Ok(Source {
            name: path.display().to_string(),
            path: Some(path.to_path_buf()),
            text,
            web_port: None,
        })
    }

    /// The same source read again from its file (unchanged when it has none).
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn reread(&self) -> Result<Source, ConfigErrors> {
        match &self.path {
            Some(p) => Source::read(p).map(|s| s.with_web_port(self.web_port)),
            None => Ok(self.clone()),
        }
    }

    /// The same source with `web.listen`'s port replaced (kept across re-reads).
    #[must_use]
    pub fn with_web_port(mut self, port: Option<u16>) -> Source {
        self.web_port = port;
        self
    }

    /// Validates the text alone.
    ///
    /// # Errors
    /// Every problem, with its location.
    pub fn parse(&self) -> Result<Config, ConfigErrors> {
        let mut c = parse(&self.name, &self.text)?;
        if let Some(p) = self.web_port {
            c.web_listen.set_port(p);
        }
        Ok(c)
    }

    /// Validates the text with the cloud's settings document laid over it (JSON Merge
    /// Patch semantics: objects merge, a `null` removes the local value, arrays replace).
    ///
    /// # Errors
    /// Keys the cloud may not set, and every problem of the merged whole, with key paths;
    /// the source is named "cloud settings over <file>".
    pub fn parse_with_cloud(&self, cloud: &serde_json::Value) -> Result<Config, ConfigErrors> {
        let source = format!("cloud settings over {}", self.name);
        let fail = |errors: Vec<ConfigError>| ConfigErrors {
            source: source.clone(),
            errors,
        };
        let mut base: toml::Table = toml::from_str(&self.text).map_err(|e| {
            fail(vec![ConfigError {
                path: "syntax".into(),
                message: e.message().to_string(),
            }])
        })?;
        let serde_json::Value::Object(doc) = cloud else {
            return Err(fail(vec![ConfigError {
                path: "(document)".into(),
                message: "the settings document must be a JSON object".into(),
            }]));
        };
        let mut errors = Vec::new();
        for (section, v) in doc {
            let Some((_, allowed)) = CLOUD_KEYS.iter().find(|(s, _)| s == section) else {
                errors.push(ConfigError {
                    path: section.clone(),
                    message: "a section the cloud may not set (it belongs to this host)".into(),
                });
                continue;
            };
            if allowed.is_empty() || v.is_null() {
                continue;
            }
            match v {
                serde_json::Value::Object(m) => {
                    for k in m.keys().filter(|k| !allowed.contains(&k.as_str())) {
                        errors.push(ConfigError {
                            path: format!("{section}.{k}"),
                            message: "set on this host only (or unknown); the cloud may not set it"
                                .into(),
                        });
                    }
                }
                _ => errors.push(ConfigError {
                    path: section.clone(),
                    message: "must be an object".into(),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(fail(errors));
        }
        merge(&mut base, doc, "", &mut errors);
        if !errors.is_empty() {
            return Err(fail(errors));
        }
        // serde_path_to_error keeps the key path that a value-level error would lose.
        let raw: raw::RawConfig = serde_path_to_error::deserialize(toml::Value::Table(base))
            .map_err(|e| {
                fail(vec![ConfigError {
                    path: e.path().to_string(),
                    message: e.inner().message().to_string(),
                }])
            })?;
        validate(&source, raw, self.web_port)
    }
}

/// Lays `patch` over `base` (RFC 7386), converting JSON values to TOML.
fn merge(
    base: &mut toml::Table,
    patch: &serde_json::Map<String, serde_json::Value>,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) {
    for (k, v) in patch {
        let path = format!("{prefix}{k}");
        match v {
            serde_json::Value::Null => {
                base.remove(k);
            }
            serde_json::Value::Object(m) => {
                let entry = base
                    .entry(k.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                if let toml::Value::Table(t) = entry {
                    merge(t, m, &format!("{path}."), errors);
                }
            }
            other => match json_to_toml(other) {
                Some(t) => {
                    base.insert(k.clone(), t);
                }
                None => errors.push(ConfigError {
                    path,
                    message: "null inside an array, or a number out of range".into(),
                }),
            },
        }
    }
}

fn json_to_toml(v: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(a) => toml::Value::Array(a.iter().map(json_to_toml).collect::<Option<_>>()?),
        J::Object(m) => toml::Value::Table(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

fn validate(
    source: &str,
    raw: raw::RawConfig,
    web_port: Option<u16>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut err = |path: String, message: String| errors.push(ConfigError { path, message });

    let log_level = raw.agent.log_level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        err(
            "agent.log_level".into(),
            format!("{log_level:?} is not a log filter (error, warn, info, debug, trace)"),
        );
    }
    let stop_timeout_secs = raw.agent.stop_timeout_secs.unwrap_or(30);
    if !(1..=300).contains(&stop_timeout_secs) {
        err(
            "agent.stop_timeout_secs".into(),
            format!("{stop_timeout_secs} is out of range 1..=300"),
        );
    }
    let web_listen = match raw
        .web
        .listen
        .as_deref()
        .unwrap_or("127.0.0.1:8080")
        .parse::<SocketAddr>()
    {
        Ok(a) => a,
        Err(e) => {
            err("web.listen".into(), format!("not an address:port: {e}"));
            "127.0.0.1:8080".parse().expect("static address")
        }
    };

    let d = PollerConfig::default();
    let p = raw.poller;
    let interval = Duration::from_secs(p.interval_secs.unwrap_or(d.interval.as_secs()));
    if interval < Duration::from_secs(10) {
        err("poller.interval_secs".into(), "must be at least 10".into());
    }
    let deadline = match p.deadline_secs {
        Some(s) => Duration::from_secs(s),
        None => d.deadline.min(interval.mul_f32(0.8)),
    };
    if deadline.is_zero() || deadline >= interval {
        err(
            "poller.deadline_secs".into(),
            format!(
                "must be above 0 and below poller.interval_secs ({})",
                interval.as_secs()
            ),
        );
    }
    let max_in_flight = p.max_in_flight.unwrap_or(d.max_in_flight);
    if max_in_flight == 0 || max_in_flight > 4096 {
        err(
            "poller.max_in_flight".into(),
            "must be between 1 and 4096".into(),
        );
    }
    let backoff_max = Duration::from_secs(p.backoff_max_secs.unwrap_or(d.backoff_max.as_secs()));
    if backoff_max < interval {
        err(
            "poller.backoff_max_secs".into(),
            "must be at least poller.interval_secs".into(),
        );
    }
    let not_communicating_after = p
        .not_communicating_after
        .unwrap_or(d.not_communicating_after);
    if not_communicating_after == 0 {
        err(
            "poller.not_communicating_after".into(),
            "must be at least 1".into(),
        );
    }
    let poller = PollerConfig {
        interval,
        deadline,
        max_in_flight,
        backoff_max,
        not_communicating_after,
        max_pages_per_minute: p.max_pages_per_minute.unwrap_or(d.max_pages_per_minute),
        status_interval: match p.status_interval_secs.unwrap_or(0) {
            0 => None,
            n => {
                let si = Duration::from_secs(n);
                if si >= interval {
                    err(
                        "poller.status_interval_secs".into(),
                        "must be below poller.interval_secs (0 turns status checks off)".into(),
                    );
                }
                Some(si)
            }
        },
    };

    let mut profiles = Vec::new();
    let raw_profiles = if raw.snmp_profiles.is_empty() {
        vec![raw::RawProfile {
            name: "default".into(),
            auth: raw::RawAuth::V2c {
                community: Secret::new("public"),
            },
            timeout_ms: None,
            retries: None,
            max_repetitions: None,
        }]
    } else {
        raw.snmp_profiles
    };
    for (i, rp) in raw_profiles.into_iter().enumerate() {
        let at = |k: &str| format!("snmp_profiles[{i}].{k}");
        if rp.name.trim().is_empty() {
            err(at("name"), "must not be empty".into());
        }
        if profiles.iter().any(|p: &Profile| p.name == rp.name) {
            err(
                at("name"),
                format!("profile {:?} is defined twice", rp.name),
            );
        }
        let timeout = Duration::from_millis(rp.timeout_ms.unwrap_or(1000));
        if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(60) {
            err(at("timeout_ms"), "must be between 10 and 60000".into());
        }
        let retries = rp.retries.unwrap_or(1);
        if retries > 10 {
            err(at("retries"), "must be at most 10".into());
        }
        if timeout * (retries + 1) >= deadline {
            err(
                at("timeout_ms"),
                format!(
                    "timeout_ms × (retries + 1) must stay below poller.deadline_secs ({} s)",
                    deadline.as_secs()
                ),
            );
        }
        let security = security(rp.auth, &at("auth"), &mut err);
        profiles.push(Profile {
            name: rp.name,
            security,
            timeout,
            retries,
            max_repetitions: rp.max_repetitions.unwrap_or(40).clamp(1, 200),
        });
    }

    let rd = raw.discovery;
    let mut targets = crate::targets::TargetSet::default();
    for (key, list, out) in [
        ("include", &rd.include, &mut targets.include),
        ("exclude", &rd.exclude, &mut targets.exclude),
    ] {
        for (i, t) in list.iter().enumerate() {
            match t.parse() {
                Ok(spec) => out.push(spec),
                Err(e) => err(format!("discovery.{key}[{i}]"), e),
            }
        }
    }
    for (i, f) in rd.import.iter().enumerate() {
        match crate::targets::read_import(Path::new(f)) {
            Ok((specs, errors)) => {
                for e in errors {
                    err(format!("discovery.import[{i}]"), e.to_string());
                }
                targets.include.extend(specs);
            }
            Err(e) => err(format!("discovery.import[{i}]"), format!("{f}: {e}")),
        }
    }
    let mut discovery_profiles = Vec::new();
    for (i, n) in rd.profiles.iter().enumerate() {
        match profiles.iter().position(|p| &p.name == n) {
            Some(ix) => discovery_profiles.push(ix),
            None => err(
                format!("discovery.profiles[{i}]"),
                format!("no snmp_profiles entry named {n:?}"),
            ),
        }
    }
    if discovery_profiles.is_empty() {
        discovery_profiles = (0..profiles.len()).collect();
    }
    let d_interval = Duration::from_secs(rd.interval_secs.unwrap_or(86_400));
    if d_interval < Duration::from_secs(60) {
        err(
            "discovery.interval_secs".into(),
            "must be at least 60".into(),
        );
    }
    let max_addresses = u128::from(rd.max_addresses.unwrap_or(65_536));
    if let Err(e) = targets.expand(max_addresses) {
        err("discovery.include".into(), e.to_string());
    }
    let discovery = DiscoveryConfig {
        targets,
        local_network: rd.local_network.unwrap_or(false),
        interval: d_interval,
        network_delay_us: rd.network_delay_us.unwrap_or(250),
        max_in_flight: rd.max_in_flight.unwrap_or(512).clamp(1, 4096),
        max_addresses,
        mdns: Duration::from_secs(rd.mdns_secs.unwrap_or(0)),
        port: rd.port.unwrap_or(161),
        profiles: discovery_profiles,
        takeover: rd.takeover.unwrap_or(false),
    };

    let rc = raw.cloud;
    let url = rc.url.filter(|u| !u.trim().is_empty());
    if let Some(u) = &url
        && !u.starts_with("https://")
    {
        err(
            "cloud.url".into(),
            format!("{u:?} must start with https:// (the cloud is reached over HTTPS only)"),
        );
    }
    let ca_file = rc
        .ca_file
        .filter(|f| !f.trim().is_empty())
        .map(PathBuf::from);
    if let Some(f) = &ca_file
        && !f.exists()
    {
        err(
            "cloud.ca_file".into(),
            format!("{} does not exist", f.display()),
        );
    }
    let proxy = match rc.proxy {
        None | Some(raw::RawProxy::System) => Proxy::System,
        Some(raw::RawProxy::None) => Proxy::None,
        Some(raw::RawProxy::Http {
            url,
            user,
            password,
            no_proxy,
        }) => {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            match rest {
                None => err(
                    "cloud.proxy.url".into(),
                    format!("{url:?} must start with http:// or https://"),
                ),
                Some(r) if r.trim_end_matches('/').is_empty() => {
                    err("cloud.proxy.url".into(), format!("{url:?} has no host"))
                }
                Some(r) if r.split('/').next().is_some_and(|h| h.contains('@')) => err(
                    "cloud.proxy.url".into(),
                    "credentials go in cloud.proxy.user and cloud.proxy.password, not in the URL"
                        .into(),
                ),
                Some(_) => {}
            }
            if password.is_some() && user.as_deref().is_none_or(str::is_empty) {
                err(
                    "cloud.proxy.password".into(),
                    "a password needs cloud.proxy.user".into(),
                );
            }
            for (i, h) in no_proxy.iter().enumerate() {
                if h.trim().is_empty()
                    || h.contains([',', ' ', '/']) && h.parse::<ipnetwork::IpNetwork>().is_err()
                {
                    err(
                        format!("cloud.proxy.no_proxy[{i}]"),
                        format!("{h:?} is not a host name, address or subnet"),
                    );
                }
            }
            Proxy::Http {
                url,
                user: user.filter(|u| !u.is_empty()),
                password,
                no_proxy,
            }
        }
    };
    for (name, keys) in [
        ("library_keys", &rc.library_keys),
        ("update_keys", &rc.update_keys),
    ] {
        for (i, k) in keys.iter().enumerate() {
            if let Err(e) = fleet_protocol::signing::public_key(k) {
                err(format!("cloud.{name}[{i}]"), e);
            }
        }
    }
    let cloud = CloudConfig {
        url,
        ca_file,
        timeout: Duration::from_secs(rc.timeout_secs.unwrap_or(30).max(1)),
        outbox_max_bytes: rc.outbox_max_bytes.unwrap_or(64 << 20),
        proxy,
        library_keys: rc.library_keys,
        update_keys: rc.update_keys,
    };

    let upload = {
        let secs = raw.upload.snapshot_interval_secs.unwrap_or(86_400);
        if !(600..=86_400).contains(&secs) {
            err(
                "upload.snapshot_interval_secs".into(),
                format!(
                    "{secs} is outside 600..=86400 (the seed asks for a full upload at least every 24 h)"
                ),
            );
        }
        let drop = raw.upload.supply_drop_min_percent.unwrap_or(1);
        if !(1..=50).contains(&drop) {
            err(
                "upload.supply_drop_min_percent".into(),
                format!("{drop} is outside 1..=50"),
            );
        }
        UploadRule {
            heartbeat_ms: secs as i64 * 1000,
            min_percent_drop: drop.clamp(1, 50) as u8,
        }
    };

    let mut printers = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, rp) in raw.printers.into_iter().enumerate() {
        let at = |k: &str| format!("printers[{i}].{k}");
        let address = match parse_address(&rp.address) {
            Ok(a) => a,
            Err(e) => {
                err(at("address"), e);
                continue;
            }
        };
        if !seen.insert(address) {
            err(at("address"), format!("{address} is listed twice"));
        }
        let profile = match rp.profile.as_deref() {
            None => 0,
            Some(name) => match profiles.iter().position(|p| p.name == name) {
                Some(ix) => ix,
                None => {
                    err(
                        at("profile"),
                        format!("no snmp_profiles entry named {name:?}"),
                    );
                    0
                }
            },
        };
        printers.push(PrinterEntry { address, profile });
    }

    if !errors.is_empty() {
        return Err(ConfigErrors {
            source: source.into(),
            errors,
        });
    }
    Ok(Config {
        state_dir: raw.agent.state_dir.map(PathBuf::from),
        log_level,
        stop_timeout: Duration::from_secs(stop_timeout_secs),
        web_listen: match web_port {
            Some(p) => SocketAddr::new(web_listen.ip(), p),
            None => web_listen,
        },
        poller,
        discovery,
        cloud,
        profiles,
        printers,
        upload,
    })
}

/// Turns an `auth` entry (`snmp_profiles[i].auth`, a job's `params.auth`) into SNMP
/// security; every problem goes to `err` under `path`.
fn security(auth: raw::RawAuth, path: &str, err: &mut impl FnMut(String, String)) -> Security {
    let at = |k: &str| format!("{path}{k}");
    match auth {
        raw::RawAuth::V1 { community } => Security::Community {
            version: fleet_snmp::Version::V1,
            community,
        },
        raw::RawAuth::V2c { community } => Security::Community {
            version: fleet_snmp::Version::V2c,
            community,
        },
        raw::RawAuth::V3 {
            user,
            auth_protocol,
            auth_pass,
            priv_protocol,
            priv_pass,
            context,
            key_extension,
        } => {
            let ap = auth_protocol.map(|s| s.parse::<AuthProtocol>());
            let pp = priv_protocol.map(|s| s.parse::<PrivProtocol>());
            let mut auth = None;
            let mut privacy = None;
            match (ap, auth_pass) {
                (Some(Ok(p)), Some(pw)) if pw.expose().len() >= 8 => auth = Some((p, pw)),
                (Some(Ok(_)), Some(_)) => err(
                    at(".auth_pass"),
                    "SNMPv3 pass phrases need at least 8 characters".into(),
                ),
                (Some(Ok(_)), None) => err(at(".auth_pass"), "required with auth_protocol".into()),
                (Some(Err(e)), _) => err(at(".auth_protocol"), e),
                (None, Some(_)) => err(at(".auth_protocol"), "required with auth_pass".into()),
                (None, None) => {}
            }
            match (pp, priv_pass) {
                (Some(Ok(p)), Some(pw)) if pw.expose().len() >= 8 => privacy = Some((p, pw)),
                (Some(Ok(_)), Some(_)) => err(
                    at(".priv_pass"),
                    "SNMPv3 pass phrases need at least 8 characters".into(),
                ),
                (Some(Ok(_)), None) => err(at(".priv_pass"), "required with priv_protocol".into()),
                (Some(Err(e)), _) => err(at(".priv_protocol"), e),
                (None, Some(_)) => err(at(".priv_protocol"), "required with priv_pass".into()),
                (None, None) => {}
            }
            if privacy.is_some() && auth.is_none() {
                err(
                    at(".priv_protocol"),
                    "privacy needs authentication (auth_protocol and auth_pass)".into(),
                );
            }
            let ext = match key_extension.as_deref().map(str::parse::<KeyExtension>) {
                None => KeyExtension::Blumenthal,
                Some(Ok(k)) => k,
                Some(Err(e)) => {
                    err(at(".key_extension"), e);
                    KeyExtension::Blumenthal
                }
            };
            if user.is_empty() {
                err(at(".user"), "must not be empty".into());
            }
            Security::Usm(Arc::new(
                UsmUser::new(user, auth, privacy)
                    .with_context(context.unwrap_or_default())
                    .with_extension(ext),
            ))
        }
    }
}

/// Validates SNMP credentials in the configuration's `auth` shape, as a job carries them
/// (`{ "type": "v3", "user", "auth_protocol", "auth_pass", ... }`); problems are named
/// under `path` (`params.auth.auth_pass: ...`).
///
/// # Errors
/// Every problem, `path: message`, joined by "; ".
pub fn auth_security(auth: &serde_json::Value, path: &str) -> Result<Security, String> {
    let raw: raw::RawAuth = serde_path_to_error::deserialize(auth).map_err(|e| {
        let at = e.path().to_string();
        let at = if at == "." {
            path.to_string()
        } else {
            format!("{path}.{at}")
        };
        format!("{at}: {}", e.into_inner())
    })?;
    let mut problems = Vec::new();
    let s = security(raw, path, &mut |p, m| problems.push(format!("{p}: {m}")));
    if problems.is_empty() {
        Ok(s)
    } else {
        Err(problems.join("; "))
    }
}

/// Parses `ip`, `ip:port` or `[v6]:port` (port 161 by default). Host names are resolved
/// by discovery at each run, not here: configuration never touches the network.
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 161));
    }
    Err(format!("{s:?} is not an IP address with optional :port"))
}

#[cfg(test)]
mod tests;
