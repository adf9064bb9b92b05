//! From the raw TOML tree to a [`Config`]: one function per section, each adding every
//! problem it finds (with its key path) to one list, so an admin sees them all at once.
//! Sections that depend on another (profiles on the poller's deadline, discovery and
//! printers on the profiles) take what they need from it.

use super::raw;
use super::{
    CloudConfig, Config, ConfigError, ConfigErrors, DiscoveryConfig, PollerConfig, PrinterEntry,
    Profile, Proxy, UploadRule, parse_address,
};
use fleet_secret::Secret;
use fleet_snmp::Security;
use fleet_snmp::UsmUser;
use fleet_snmp::usm::{AuthProtocol, KeyExtension, PrivProtocol};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Problems found so far, each with its key path.
#[derive(Default)]
pub(super) struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// `value` (or `default` when the key is absent) when it lies in `range`; otherwise a
    /// problem naming the key, and the nearest bound so later checks see a sane value.
    /// Every number key goes through here: a huge value from the file or the cloud must
    /// be refused at validation, not overflow an `Instant` later (issue 18).
    fn within<T>(
        &mut self,
        path: &str,
        value: Option<T>,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> T
    where
        T: PartialOrd + Copy + std::fmt::Display,
    {
        let v = value.unwrap_or(default);
        if range.contains(&v) {
            return v;
        }
        self.add(
            path,
            format!("{v} is out of range {}..={}", range.start(), range.end()),
        );
        if v < *range.start() {
            *range.start()
        } else {
            *range.end()
        }
    }

    /// A text key of at most `max` characters.
    fn short(&mut self, path: &str, value: &str, max: usize) {
        let n = value.chars().count();
        if n > max {
            self.add(path, format!("{n} characters; at most {max} are allowed"));
        }
    }

    /// A list key of at most `max` entries.
    fn few<T>(&mut self, path: &str, list: &[T], max: usize) {
        if list.len() > max {
            self.add(
                path,
                format!("{} entries; at most {max} are allowed", list.len()),
            );
        }
    }
}

/// Upper bounds shared by the checks below (a week, a month): generous for any real
/// schedule, small enough that every `Instant + Duration` stays representable.
const WEEK_SECS: u64 = 7 * 86_400;
const MONTH_SECS: u64 = 31 * 86_400;
/// The most addresses one discovery run may cover (a /8).
pub const MAX_ADDRESSES_CAP: u64 = 1 << 24;

/// Validates the whole tree; `web_port` overrides `web.listen`'s port (`--web-port`).
pub(super) fn validate(
    source: &str,
    raw: raw::RawConfig,
    web_port: Option<u16>,
) -> Result<Config, ConfigErrors> {
    let mut e = Problems::default();
    let (log_level, stop_timeout) = agent(&raw.agent, &mut e);
    let (web_listen, web_remote_listen) = web(&raw.web, web_port, &mut e);
    let web_allowed_hosts = allowed_hosts(raw.web.allowed_hosts.as_deref(), &mut e);
    let poller = poller(&raw.poller, &mut e);
    let profiles = profiles(raw.snmp_profiles, poller.deadline, &mut e);
    let discovery = discovery(&raw.discovery, &profiles, &mut e);
    let cloud = cloud(raw.cloud, &mut e);
    let upload = upload(&raw.upload, &mut e);
    let printers = printers(raw.printers, &profiles, &mut e);
    if !e.0.is_empty() {
        return Err(ConfigErrors {
            source: source.into(),
            errors: e.0,
        });
    }
    Ok(Config {
        state_dir: raw.agent.state_dir.map(PathBuf::from),
        log_level,
        stop_timeout,
        web_listen,
        web_remote_listen,
        web_allowed_hosts,
        poller,
        discovery,
        cloud,
        profiles,
        printers,
        upload,
    })
}

/// `[agent]`: the log filter and the stop deadline.
fn agent(a: &raw::RawAgent, e: &mut Problems) -> (String, Duration) {
    let log_level = a.log_level.clone().unwrap_or_else(|| "info".into());
    if let Some(d) = &a.state_dir {
        e.short("agent.state_dir", d, 1024);
    }
    if log_level.len() > 512 {
        e.short("agent.log_level", &log_level, 512);
    } else if let Err(why) = crate::telemetry::check_filter(&log_level) {
        e.add("agent.log_level", why);
    }
    let stop_timeout_secs = e.within(
        "agent.stop_timeout_secs",
        a.stop_timeout_secs,
        30,
        1..=crate::platform::MAX_STOP_TIMEOUT_SECS,
    );
    (log_level, Duration::from_secs(stop_timeout_secs))
}

/// `[web]`: the local page's address, and where it listens once remote access is on
/// (`remote_listen`, default every interface on the same port).
fn web(w: &raw::RawWeb, web_port: Option<u16>, e: &mut Problems) -> (SocketAddr, SocketAddr) {
    let listen = socket_addr(
        e,
        "web.listen",
        w.listen.as_deref().unwrap_or("127.0.0.1:8080"),
    )
    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let listen = match web_port {
        Some(p) => SocketAddr::new(listen.ip(), p),
        None => listen,
    };
    let remote = match w.remote_listen.as_deref() {
        Some(text) => socket_addr(e, "web.remote_listen", text).unwrap_or(listen),
        None => SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), listen.port()),
    };
    (listen, remote)
}

/// An `address:port` key, its problem recorded under `key`.
fn socket_addr(e: &mut Problems, key: &str, text: &str) -> Option<SocketAddr> {
    e.short(key, text, 64);
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(err) => {
            let hint = if text
                .rsplit_once(':')
                .is_some_and(|(h, _)| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('['))
            {
                " (an IP address is needed, not a host name: 127.0.0.1:8080 for this host only, 0.0.0.0:8080 for every interface, [::1]:8080 for IPv6)"
            } else {
                " (e.g. 127.0.0.1:8080)"
            };
            e.add(key, format!("{text:?} is not an address:port: {err}{hint}"));
            None
        }
    }
}

/// `web.allowed_hosts`: DNS names (letters, digits, `-`, `.`), lower-cased.
fn allowed_hosts(list: Option<&[String]>, e: &mut Problems) -> Vec<String> {
    let list = list.unwrap_or_default();
    e.few("web.allowed_hosts", list, 64);
    let mut out = Vec::new();
    for (i, name) in list.iter().take(64).enumerate() {
        let path = format!("web.allowed_hosts[{i}]");
        let name = name.trim_end_matches('.');
        let fine = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if fine {
            out.push(name.to_ascii_lowercase());
        } else {
            e.add(
                path,
                "not a host name (letters, digits, '-' and '.', at most 253 characters; no port, no address)",
            );
        }
    }
    out
}

/// `[poller]`: the schedule, its deadline, concurrency and backoff.
fn poller(p: &raw::RawPoller, e: &mut Problems) -> PollerConfig {
    let d = PollerConfig::default();
    let interval = Duration::from_secs(e.within(
        "poller.interval_secs",
        p.interval_secs,
        d.interval.as_secs(),
        10..=WEEK_SECS,
    ));
    let deadline = match p.deadline_secs {
        Some(s) => Duration::from_secs(s.min(WEEK_SECS)),
        None => d.deadline.min(interval.mul_f32(0.8)),
    };
    if deadline.is_zero() || deadline >= interval {
        e.add(
            "poller.deadline_secs",
            format!(
                "must be above 0 and below poller.interval_secs ({})",
                interval.as_secs()
            ),
        );
    }
    let max_in_flight = e.within(
        "poller.max_in_flight",
        p.max_in_flight,
        d.max_in_flight,
        1..=4096,
    );
    let backoff_max = Duration::from_secs(e.within(
        "poller.backoff_max_secs",
        p.backoff_max_secs,
        d.backoff_max.as_secs(),
        1..=MONTH_SECS,
    ));
    if backoff_max < interval {
        e.add(
            "poller.backoff_max_secs",
            "must be at least poller.interval_secs",
        );
    }
    let not_communicating_after = e.within(
        "poller.not_communicating_after",
        p.not_communicating_after,
        d.not_communicating_after,
        1..=10_000,
    );
    let max_pages_per_minute = e.within(
        "poller.max_pages_per_minute",
        p.max_pages_per_minute,
        d.max_pages_per_minute,
        0..=1_000_000,
    );
    let status_interval = match p.status_interval_secs.unwrap_or(0).min(WEEK_SECS) {
        0 => None,
        n => {
            let si = Duration::from_secs(n);
            if si >= interval {
                e.add(
                    "poller.status_interval_secs",
                    "must be below poller.interval_secs (0 turns status checks off)",
                );
            }
            Some(si)
        }
    };
    PollerConfig {
        interval,
        deadline,
        max_in_flight,
        backoff_max,
        not_communicating_after,
        max_pages_per_minute,
        status_interval,
    }
}

/// `[[snmp_profiles]]` (one v2c `public` profile named `default` when there is none):
/// a try must fit in the poller's deadline.
fn profiles(raw: Vec<raw::RawProfile>, deadline: Duration, e: &mut Problems) -> Vec<Profile> {
    let raw = if raw.is_empty() {
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
        raw
    };
    e.few("snmp_profiles", &raw, 64);
    let mut profiles: Vec<Profile> = Vec::new();
    for (i, rp) in raw.into_iter().enumerate() {
        let at = |k: &str| format!("snmp_profiles[{i}].{k}");
        if rp.name.trim().is_empty() {
            e.add(at("name"), "must not be empty");
        }
        e.short(&at("name"), &rp.name, 64);
        if profiles.iter().any(|p| p.name == rp.name) {
            e.add(
                at("name"),
                format!("profile {:?} is defined twice", rp.name),
            );
        }
        let timeout =
            Duration::from_millis(e.within(&at("timeout_ms"), rp.timeout_ms, 1000, 10..=60_000));
        let retries = e.within(&at("retries"), rp.retries, 1, 0..=10);
        let max_repetitions = e.within(&at("max_repetitions"), rp.max_repetitions, 40, 1..=200);
        if timeout * (retries + 1) >= deadline {
            e.add(
                at("timeout_ms"),
                format!(
                    "timeout_ms × (retries + 1) must stay below poller.deadline_secs ({} s)",
                    deadline.as_secs()
                ),
            );
        }
        let security = security(rp.auth, &at("auth"), &mut |p, m| e.add(p, m));
        profiles.push(Profile {
            name: rp.name,
            security,
            timeout,
            retries,
            max_repetitions,
        });
    }
    profiles
}

/// `[discovery]`: targets (inline and imported files, expanded under the address cap),
/// the profiles to try, the schedule and the pace.
fn discovery(rd: &raw::RawDiscovery, profiles: &[Profile], e: &mut Problems) -> DiscoveryConfig {
    let mut targets = crate::targets::TargetSet::default();
    e.few("discovery.include", &rd.include, 10_000);
    e.few("discovery.exclude", &rd.exclude, 10_000);
    e.few("discovery.import", &rd.import, 64);
    for (key, list, out) in [
        ("include", &rd.include, &mut targets.include),
        ("exclude", &rd.exclude, &mut targets.exclude),
    ] {
        for (i, t) in list.iter().enumerate() {
            match t.parse() {
                Ok(spec) => out.push(spec),
                Err(err) => e.add(format!("discovery.{key}[{i}]"), err),
            }
        }
    }
    for (i, f) in rd.import.iter().enumerate() {
        match crate::targets::read_import(Path::new(f)) {
            Ok((specs, errors)) => {
                // The first lines say what is wrong; a file of garbage is not echoed whole.
                for err in errors.iter().take(20) {
                    e.add(format!("discovery.import[{i}]"), err.to_string());
                }
                if errors.len() > 20 {
                    e.add(
                        format!("discovery.import[{i}]"),
                        format!("{} more bad lines in {f}", errors.len() - 20),
                    );
                }
                targets.include.extend(specs);
            }
            Err(err) => e.add(format!("discovery.import[{i}]"), format!("{f}: {err}")),
        }
    }
    let mut chosen = Vec::new();
    for (i, n) in rd.profiles.iter().enumerate() {
        match profiles.iter().position(|p| &p.name == n) {
            Some(ix) => chosen.push(ix),
            None => e.add(
                format!("discovery.profiles[{i}]"),
                format!("no snmp_profiles entry named {n:?}"),
            ),
        }
    }
    if chosen.is_empty() {
        chosen = (0..profiles.len()).collect();
    }
    let interval = Duration::from_secs(e.within(
        "discovery.interval_secs",
        rd.interval_secs,
        86_400,
        60..=MONTH_SECS,
    ));
    let max_addresses = u128::from(e.within(
        "discovery.max_addresses",
        rd.max_addresses,
        65_536,
        1..=MAX_ADDRESSES_CAP,
    ));
    if let Err(err) = targets.expand(max_addresses) {
        e.add("discovery.include", err.to_string());
    }
    let network_delay_us = e.within(
        "discovery.network_delay_us",
        rd.network_delay_us,
        250,
        0..=1_000_000,
    );
    let max_in_flight = e.within("discovery.max_in_flight", rd.max_in_flight, 512, 1..=4096);
    let mdns_secs = e.within("discovery.mdns_secs", rd.mdns_secs, 0, 0..=3600);
    DiscoveryConfig {
        targets,
        local_network: rd.local_network.unwrap_or(false),
        interval,
        network_delay_us,
        max_in_flight,
        max_addresses,
        mdns: Duration::from_secs(mdns_secs),
        port: rd.port.unwrap_or(161),
        profiles: chosen,
        takeover: rd.takeover.unwrap_or(false),
        ipp: rd.ipp.unwrap_or_default(),
    }
}

/// `[cloud]`: the URL (https only), the extra CA, the proxy, the keys trusted for
/// libraries and updates.
fn cloud(rc: raw::RawCloud, e: &mut Problems) -> CloudConfig {
    let url = rc.url.filter(|u| !u.trim().is_empty());
    if let Some(u) = &url {
        e.short("cloud.url", u, 2048);
    }
    if let Some(f) = &rc.ca_file {
        e.short("cloud.ca_file", f, 1024);
    }
    e.few("cloud.library_keys", &rc.library_keys, 16);
    e.few("cloud.update_keys", &rc.update_keys, 16);
    let timeout_secs = e.within("cloud.timeout_secs", rc.timeout_secs, 30, 1..=600);
    let outbox_max_bytes = e.within(
        "cloud.outbox_max_bytes",
        rc.outbox_max_bytes,
        64 << 20,
        1 << 20..=16 << 30,
    );
    if let Some(u) = &url
        && !u.starts_with("https://")
    {
        e.add(
            "cloud.url",
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
        e.add("cloud.ca_file", format!("{} does not exist", f.display()));
    }
    let proxy = match rc.proxy {
        None | Some(raw::RawProxy::System) => Proxy::System,
        Some(raw::RawProxy::None) => Proxy::None,
        Some(raw::RawProxy::Http {
            url,
            user,
            password,
            no_proxy,
        }) => http_proxy(url, user, password, no_proxy, e),
    };
    for (name, keys) in [
        ("library_keys", &rc.library_keys),
        ("update_keys", &rc.update_keys),
    ] {
        for (i, k) in keys.iter().enumerate() {
            if let Err(err) = fleet_protocol::signing::public_key(k) {
                e.add(format!("cloud.{name}[{i}]"), err);
            }
        }
    }
    CloudConfig {
        url,
        ca_file,
        timeout: Duration::from_secs(timeout_secs),
        outbox_max_bytes,
        proxy,
        library_keys: rc.library_keys,
        update_keys: rc.update_keys,
    }
}

/// `cloud.proxy = { type = "http", ... }`: credentials in their own keys, never in the URL.
fn http_proxy(
    url: String,
    user: Option<String>,
    password: Option<Secret>,
    no_proxy: Vec<String>,
    e: &mut Problems,
) -> Proxy {
    e.short("cloud.proxy.url", &url, 2048);
    if let Some(u) = &user {
        e.short("cloud.proxy.user", u, 256);
    }
    if let Some(p) = &password {
        e.short("cloud.proxy.password", p.expose(), 256);
    }
    e.few("cloud.proxy.no_proxy", &no_proxy, 256);
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        None => e.add(
            "cloud.proxy.url",
            format!("{url:?} must start with http:// or https://"),
        ),
        Some(r) if r.trim_end_matches('/').is_empty() => {
            e.add("cloud.proxy.url", format!("{url:?} has no host"));
        }
        Some(r) if r.split('/').next().is_some_and(|h| h.contains('@')) => e.add(
            "cloud.proxy.url",
            "credentials go in cloud.proxy.user and cloud.proxy.password, not in the URL",
        ),
        Some(_) => {}
    }
    if password.is_some() && user.as_deref().is_none_or(str::is_empty) {
        e.add("cloud.proxy.password", "a password needs cloud.proxy.user");
    }
    for (i, h) in no_proxy.iter().enumerate() {
        if h.trim().is_empty()
            || h.len() > 253
            || h.contains([',', ' ', '/']) && h.parse::<ipnetwork::IpNetwork>().is_err()
        {
            e.add(
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

/// `[upload]`: the seed's rule (a snapshot at least every 24 h, a delta per supply drop).
fn upload(u: &raw::RawUpload, e: &mut Problems) -> UploadRule {
    let secs = u.snapshot_interval_secs.unwrap_or(86_400);
    if !(600..=86_400).contains(&secs) {
        e.add(
            "upload.snapshot_interval_secs",
            format!(
                "{secs} is outside 600..=86400 (the cloud expects a full upload at least every 24 h)"
            ),
        );
    }
    let drop = u.supply_drop_min_percent.unwrap_or(1);
    if !(1..=50).contains(&drop) {
        e.add(
            "upload.supply_drop_min_percent",
            format!("{drop} is outside 1..=50"),
        );
    }
    UploadRule {
        heartbeat_ms: i64::from(secs.clamp(600, 86_400) as u32) * 1000,
        min_percent_drop: drop.clamp(1, 50) as u8,
    }
}

/// `[[printers]]`: addresses listed once, profiles that exist.
fn printers(
    raw: Vec<raw::RawPrinter>,
    profiles: &[Profile],
    e: &mut Problems,
) -> Vec<PrinterEntry> {
    e.few("printers", &raw, 100_000);
    let mut printers = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, rp) in raw.into_iter().enumerate() {
        let at = |k: &str| format!("printers[{i}].{k}");
        let address = match parse_address(&rp.address) {
            Ok(a) => a,
            Err(err) => {
                e.add(at("address"), err);
                continue;
            }
        };
        if !seen.insert(address) {
            e.add(at("address"), format!("{address} is listed twice"));
        }
        let profile = match rp.profile.as_deref() {
            None => 0,
            Some(name) => profiles
                .iter()
                .position(|p| p.name == name)
                .unwrap_or_else(|| {
                    e.add(
                        at("profile"),
                        format!("no snmp_profiles entry named {name:?}"),
                    );
                    0
                }),
        };
        printers.push(PrinterEntry { address, profile });
    }
    printers
}

/// Turns an `auth` entry (`snmp_profiles[i].auth`, a job's `params.auth`) into SNMP
/// security; every problem goes to `err` under `path`.
pub(super) fn security(
    auth: raw::RawAuth,
    path: &str,
    err: &mut impl FnMut(String, String),
) -> Security {
    let at = |k: &str| format!("{path}{k}");
    match auth {
        raw::RawAuth::V1 { community } | raw::RawAuth::V2c { community }
            if community.expose().len() > 255 =>
        {
            err(
                at(".community"),
                "longer than 255 bytes (the most an SNMP agent accepts)".into(),
            );
            Security::Community {
                version: fleet_snmp::Version::V2c,
                community,
            }
        }
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
            // RFC 3414: user and context names are SnmpAdminStrings of at most 32 bytes.
            if user.len() > 32 {
                err(at(".user"), "longer than 32 bytes (RFC 3414)".into());
            }
            if context.as_ref().is_some_and(|c| c.len() > 32) {
                err(at(".context"), "longer than 32 bytes (RFC 3414)".into());
            }
            let auth_len = auth.as_ref().map_or(0, |(_, p)| p.expose().len());
            let priv_len = privacy.as_ref().map_or(0, |(_, p)| p.expose().len());
            for (k, len) in [(".auth_pass", auth_len), (".priv_pass", priv_len)] {
                if len > 256 {
                    err(at(k), "longer than 256 bytes".into());
                }
            }
            Security::Usm(Arc::new(
                UsmUser::new(user, auth, privacy)
                    .with_context(context.unwrap_or_default())
                    .with_extension(ext),
            ))
        }
    }
}
