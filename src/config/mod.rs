//! Configuration: `fleet-agent.toml` parsed strictly, then validated whole into a typed
//! [`Config`] that reports every problem with its key path (or file:line for syntax).

mod raw;
mod validate;

use fleet_snmp::{Security, Target};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Where the page listens (HTTPS for other hosts) once remote access is turned on
    /// (`web.remote_listen`; default every IPv4 interface on `web.listen`'s port).
    pub web_remote_listen: SocketAddr,
    /// Host names (lower case) the page answers to besides loopback names, IP literals and
    /// this computer's name, once "localhost only" is off (`web.allowed_hosts`).
    pub web_allowed_hosts: Vec<String>,
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
    /// Whether discovery may ask a printer over IPP who it is.
    pub ipp: IppUse,
}

/// Whether the agent speaks IPP to printers (`discovery.ipp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IppUse {
    /// Asks IPP who a printer is when it announced IPP over mDNS and gave no SNMP
    /// reading (one request per address and run).
    #[default]
    Auto,
    /// Never speaks IPP.
    Off,
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

/// The key path of the `key = value` on `line` (0-based) of `text`: its table's path
/// (an array of tables counted: `printers[1]`) and the bare key, so that a wrong type
/// says `poller.interval_secs` and not only where. `None` where the line holds no plain
/// `key =` (a value continued over lines, a header, a quoted key).
fn key_path_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let key = lines.get(line)?.split_once('=')?.0.trim();
    let bare = |k: &str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    };
    if !bare(key) {
        return None;
    }
    let header = |l: &str| -> Option<(String, bool)> {
        let t = l.trim();
        if let Some(r) = t.strip_prefix("[[") {
            return Some((r.split("]]").next()?.trim().to_string(), true));
        }
        let r = t.strip_prefix('[')?;
        Some((r.split(']').next()?.trim().to_string(), false))
    };
    let before = &lines[..line];
    let table = before.iter().rev().find_map(|l| header(l));
    let table = match table {
        None => return Some(key.to_string()),
        Some((name, _)) if !bare(&name) => return None,
        Some((name, false)) => name,
        Some((name, true)) => {
            let n = before
                .iter()
                .filter(|l| header(l) == Some((name.clone(), true)))
                .count();
            format!("{name}[{}]", n.saturating_sub(1))
        }
    };
    Some(format!("{table}.{key}"))
}

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
    let report = |mut errors: Vec<ConfigError>| {
        // The reader's problems in file order, then the semantic ones.
        errors.sort_by_key(|e| {
            // "line 9, column 11" or "poller.deadline_secs (line 7, column 17)".
            e.path
                .split_once("line ")
                .and_then(|(_, r)| r.split(',').next()?.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        });
        ConfigErrors {
            source: source.into(),
            errors,
        }
    };
    // A syntax error (or an unknown key, a wrong type) stops the TOML reader at once: the
    // offending line (or the whole section, for a broken header) is set aside and the rest
    // read again, so one run reports every problem the file has, each with its line, and
    // then the semantic ones with their key paths.
    let mut errors = Vec::new();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let mut skipped = std::collections::BTreeSet::new();
    for _ in 0..MAX_READ_ERRORS {
        let attempt = lines.join("\n");
        match toml::from_str::<raw::RawConfig>(&attempt) {
            Ok(raw) => {
                return match validate::validate(source, raw, None) {
                    Ok(c) if errors.is_empty() => Ok(c),
                    Ok(_) => Err(report(errors)),
                    Err(mut e) => {
                        errors.append(&mut e.errors);
                        Err(report(errors))
                    }
                };
            }
            // A field missing only because a line was set aside: not the file's problem.
            Err(e) if !errors.is_empty() && e.message().starts_with("missing field") => break,
            Err(e) => {
                let at = e.span().map(|span| {
                    let start = span.start.min(attempt.len());
                    let line = attempt[..start].matches('\n').count();
                    let col = start - attempt[..start].rfind('\n').map_or(0, |p| p + 1) + 1;
                    (line, col)
                });
                errors.push(ConfigError {
                    path: match at {
                        Some((line, col)) => match key_path_at(text, line) {
                            Some(key) => format!("{key} (line {}, column {col})", line + 1),
                            None => format!("line {}, column {col}", line + 1),
                        },
                        None => "syntax".into(),
                    },
                    message: e.message().trim().to_string(),
                });
                let Some((line, _)) = at else { break };
                if !skipped.insert(line) || line >= lines.len() {
                    break;
                }
                let header = lines[line].trim_start().starts_with('[');
                lines[line].clear();
                if header {
                    // Its keys would land in the table before it: set them aside too.
                    for l in lines.iter_mut().skip(line + 1) {
                        if l.trim_start().starts_with('[') {
                            break;
                        }
                        l.clear();
                    }
                }
            }
        }
    }
    Err(report(errors))
}

/// Problems the TOML reader reports one at a time, at most (then the report stops).
const MAX_READ_ERRORS: usize = 20;

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
            "ipp",
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
    /// A URL that replaces `cloud.url` (`--cloud-url`, the Windows installer's CLOUDURL).
    pub cloud_url: Option<String>,
    /// Ports the page moves to, in order, when its own is taken (`--web-port-fallback`,
    /// the Windows installer's 8080 and 8088).
    pub web_port_fallback: Vec<u16>,
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
            cloud_url: None,
            web_port_fallback: Vec::new(),
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
            cloud_url: None,
            web_port_fallback: Vec::new(),
        })
    }

    /// The same source read again from its file (unchanged when it has none).
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn reread(&self) -> Result<Source, ConfigErrors> {
        match &self.path {
            Some(p) => Source::read(p).map(|s| Source {
                web_port: self.web_port,
                cloud_url: self.cloud_url.clone(),
                web_port_fallback: self.web_port_fallback.clone(),
                ..s
            }),
            None => Ok(self.clone()),
        }
    }

    /// The same source with `web.listen`'s port replaced (kept across re-reads).
    #[must_use]
    pub fn with_web_port(mut self, port: Option<u16>) -> Source {
        self.web_port = port;
        self
    }

    /// The same source with ports the page moves to when its own is taken (kept across
    /// re-reads).
    #[must_use]
    pub fn with_web_port_fallback(mut self, ports: Vec<u16>) -> Source {
        self.web_port_fallback = ports;
        self
    }

    /// The same source with `cloud.url` replaced (kept across re-reads); an empty or
    /// blank URL leaves the file's (the installer passes an empty CLOUDURL as "").
    #[must_use]
    pub fn with_cloud_url(mut self, url: Option<String>) -> Source {
        self.cloud_url = url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        self
    }

    /// Lays `--cloud-url` over a validated configuration, checked as `cloud.url` is.
    fn overlay(&self, mut c: Config) -> Result<Config, ConfigErrors> {
        if let Some(u) = &self.cloud_url {
            let problem = if u.len() > 2048 {
                Some(format!("{} bytes; at most 2048", u.len()))
            } else if !u.starts_with("https://") {
                Some(format!(
                    "{u:?} must start with https:// (the cloud is reached over HTTPS only)"
                ))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(ConfigErrors {
                    source: self.name.clone(),
                    errors: vec![ConfigError {
                        path: "--cloud-url (replaces cloud.url)".into(),
                        message,
                    }],
                });
            }
            c.cloud.url = Some(u.clone());
        }
        Ok(c)
    }

    /// Validates the text alone.
    ///
    /// # Errors
    /// Every problem, with its location.
    pub fn parse(&self) -> Result<Config, ConfigErrors> {
        let mut c = parse(&self.name, &self.text)?;
        if let Some(p) = self.web_port {
            c.web_listen.set_port(p);
            c.web_remote_listen.set_port(p);
        }
        self.overlay(c)
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
        self.overlay(validate::validate(&source, raw, self.web_port)?)
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
    let s = validate::security(raw, path, &mut |p, m| problems.push(format!("{p}: {m}")));
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
    if s.len() > 64 {
        return Err(format!(
            "a {}-character value is not an IP address with optional :port",
            s.len()
        ));
    }
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
