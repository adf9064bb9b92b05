//! The SNMP tools: `poll` (one printer's report, as a table or JSON) and `walk` (a
//! subtree, as text or snmprec), with the credentials and patience options they share.

use crate::poller;
use crate::printer::PrinterReport;
use clap::{Args, ValueEnum};
use fleet_secret::Secret;
use fleet_snmp::snmprec;
use fleet_snmp::usm::{AuthProtocol, KeyExtension, PrivProtocol};
use fleet_snmp::{Oid, Security, Target, UdpClient, UsmUser, Version, walk};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// SNMP credentials and patience, shared by `poll` and `walk`.
#[derive(Args, Debug, Clone)]
pub struct SnmpArgs {
    /// v1/v2c community.
    #[arg(
        short = 'c',
        long,
        default_value = "public",
        env = "FLEET_AGENT_COMMUNITY",
        hide_env_values = true
    )]
    pub community: String,
    /// Use SNMPv1 instead of v2c (with --community).
    #[arg(long, conflicts_with = "v3_user")]
    pub v1: bool,
    /// SNMPv3 user name (switches to SNMPv3).
    #[arg(long)]
    pub v3_user: Option<String>,
    /// SNMPv3 authentication protocol: md5, sha1, sha224, sha256, sha384, sha512.
    #[arg(long, requires = "v3_user")]
    pub auth_protocol: Option<AuthProtocol>,
    /// SNMPv3 authentication pass phrase (or env FLEET_AGENT_AUTH_PASS).
    #[arg(
        long,
        env = "FLEET_AGENT_AUTH_PASS",
        hide_env_values = true,
        requires = "auth_protocol"
    )]
    pub auth_pass: Option<String>,
    /// SNMPv3 privacy protocol: des, aes128, aes192, aes256.
    #[arg(long, requires = "auth_protocol")]
    pub priv_protocol: Option<PrivProtocol>,
    /// SNMPv3 privacy pass phrase (or env FLEET_AGENT_PRIV_PASS).
    #[arg(
        long,
        env = "FLEET_AGENT_PRIV_PASS",
        hide_env_values = true,
        requires = "priv_protocol"
    )]
    pub priv_pass: Option<String>,
    /// Key extension for AES-192/256 with short hashes: blumenthal (net-snmp) or reeder.
    #[arg(long, default_value = "blumenthal")]
    pub key_extension: KeyExtension,
    /// SNMPv3 context name.
    #[arg(long, default_value = "")]
    pub context: String,
    /// Time to wait for each attempt, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Extra attempts after a timeout.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Varbinds asked per GETBULK response.
    #[arg(long, default_value_t = 40)]
    pub max_repetitions: u32,
}

impl SnmpArgs {
    /// Builds the target for `addr`.
    ///
    /// # Errors
    /// When a v3 protocol is given without its pass phrase (or the pass phrase is short).
    pub fn target(&self, addr: SocketAddr) -> anyhow::Result<Target> {
        let security = match &self.v3_user {
            Some(user) => {
                let auth = match (self.auth_protocol, &self.auth_pass) {
                    (Some(p), Some(pw)) if pw.len() >= 8 => Some((p, Secret::new(pw.clone()))),
                    (Some(_), Some(_)) => {
                        anyhow::bail!("--auth-pass: SNMPv3 pass phrases need at least 8 characters")
                    }
                    (Some(_), None) => anyhow::bail!(
                        "--auth-protocol needs --auth-pass (or FLEET_AGENT_AUTH_PASS)"
                    ),
                    (None, _) => None,
                };
                let privacy = match (self.priv_protocol, &self.priv_pass) {
                    (Some(p), Some(pw)) if pw.len() >= 8 => Some((p, Secret::new(pw.clone()))),
                    (Some(_), Some(_)) => {
                        anyhow::bail!("--priv-pass: SNMPv3 pass phrases need at least 8 characters")
                    }
                    (Some(_), None) => anyhow::bail!(
                        "--priv-protocol needs --priv-pass (or FLEET_AGENT_PRIV_PASS)"
                    ),
                    (None, _) => None,
                };
                Security::Usm(Arc::new(
                    UsmUser::new(user.clone(), auth, privacy)
                        .with_context(self.context.clone())
                        .with_extension(self.key_extension),
                ))
            }
            None if self.v1 => Security::v1(&self.community),
            None => Security::v2c(&self.community),
        };
        Ok(Target {
            addr,
            security,
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            retries: self.retries,
            max_repetitions: self.max_repetitions.max(1),
        })
    }
}

/// `poll` arguments.
#[derive(Args, Debug)]
pub struct PollArgs {
    /// Printer address: IPv4, [IPv6] or host name, with optional :port (default 161).
    pub host: String,
    /// Credentials and timing.
    #[command(flatten)]
    pub snmp: SnmpArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Read the printer over IPP (Get-Printer-Attributes) instead of SNMP; the host is
    /// then an `ipp://` URI or host[:port] (port 631 and path /ipp/print by default).
    #[arg(long)]
    pub ipp: bool,
}

/// Output format of `walk`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WalkFormat {
    /// `OID = TYPE: value`, like net-snmp's snmpwalk -On.
    Text,
    /// snmpsim's `.snmprec` (servable by `fleet-lab simulate` and snmpsim).
    Snmprec,
}

/// `walk` arguments.
#[derive(Args, Debug)]
pub struct WalkArgs {
    /// Agent address: IPv4, [IPv6] or host name, with optional :port (default 161).
    pub host: String,
    /// Subtree to walk (default: the whole MIB view, 1.3.6.1).
    #[arg(default_value = "1.3.6.1")]
    pub oid: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: WalkFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Credentials and timing.
    #[command(flatten)]
    pub snmp: SnmpArgs,
}

/// Resolves `host[:port]` (IPv6 in brackets) to one socket address.
///
/// # Errors
/// When the name does not resolve or the port is invalid.
pub async fn resolve(host: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    // "host:99999" is a port out of range, not a name to look up.
    if let Some((_, p)) = host.rsplit_once(':')
        && !p.is_empty()
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_err()
    {
        anyhow::bail!("{host}: port {p} is out of range (1-65535)");
    }
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| anyhow::anyhow!("{host}: cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{host}: the name resolved to no address"))
}

pub(super) async fn poll(a: PollArgs) -> anyhow::Result<()> {
    if a.ipp {
        return poll_ipp(a).await;
    }
    let addr = resolve(&a.host, 161).await?;
    let target = a.snmp.target(addr)?;
    let client = UdpClient::new()?;
    let (report, stats) = poller::Reader::default()
        .read(&client, &target, &mut fleet_snmp::quirks::Quirks::default())
        .await?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        let version = report
            .device
            .snmp_version
            .unwrap_or(target.security.version());
        write!(out, "{}", render(&report, addr, version))?;
        let probes = match stats.probes {
            0 => String::new(),
            n => format!(" and {n} probe(s) to learn how to ask it"),
        };
        writeln!(
            out,
            "\n({} SNMP requests{probes}, {} values)",
            stats.requests, stats.values
        )?;
    }
    Ok(())
}

/// `poll --ipp`: Get-Printer-Attributes instead of SNMP. `host` is an `ipp://` URI or
/// `host[:port]` (631 by default, path `/ipp/print`).
async fn poll_ipp(a: PollArgs) -> anyhow::Result<()> {
    let uri = if a.host.contains("://") {
        a.host.clone()
    } else {
        format!("ipp://{}/ipp/print", a.host)
    };
    let deadline = std::time::Duration::from_secs(10);
    let http =
        crate::printer::ipp::http_client(deadline).map_err(|e| anyhow::anyhow!("{uri}: {e}"))?;
    let answer =
        fleet_ipp::get_printer_attributes(&http, &uri, crate::printer::ipp::REQUESTED, deadline)
            .await
            .map_err(|e| anyhow::anyhow!("{uri}: {e}"))?;
    let ip = fleet_ipp::client::http_url(&uri)
        .ok()
        .and_then(|u| reqwest::Url::parse(&u).ok())
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
        .and_then(|h| h.parse().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let report = crate::printer::ipp::report(&answer, ip, now);
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render_as(&report, &format!("{uri} (IPP)")))?;
        let attrs: usize = answer.groups.iter().map(|g| g.attributes.len()).sum();
        writeln!(out, "\n(1 IPP request, {attrs} attributes)")?;
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

/// Renders a report for humans.
pub fn render(r: &PrinterReport, addr: SocketAddr, version: Version) -> String {
    let v = match version {
        Version::V1 => "v1",
        Version::V2c => "v2c",
        Version::V3 => "v3",
    };
    render_as(r, &format!("{addr} (SNMP {v})"))
}

/// Renders a report for humans, headed by where and how it was read.
pub fn render_as(r: &PrinterReport, read: &str) -> String {
    use std::fmt::Write as _;
    let d = &r.device;
    let mut s = String::new();
    writeln!(s, "Printer {read}").ok();
    let rows = [
        ("Manufacturer", opt(&r.manufacturer)),
        ("Model", opt(&r.model_name)),
        (
            "Serial",
            match (&r.serial_number, &d.serial_source) {
                (Some(sn), Some(src)) => format!("{sn}  (from {src})"),
                (sn, _) => opt(sn),
            },
        ),
        ("Firmware", opt(&d.firmware_version)),
        ("MAC", opt(&d.mac_address)),
        ("sysName", opt(&d.sys_name)),
        ("Location", opt(&d.sys_location)),
        ("sysObjectID", opt(&d.sys_object_id)),
        ("sysDescr", opt(&d.sys_descr)),
        ("UUID", opt(&d.printer_uuid)),
        (
            "Uptime",
            d.uptime_seconds.map_or("-".into(), |u| {
                format!(
                    "{}d {:02}:{:02}",
                    u / 86400,
                    u % 86400 / 3600,
                    u % 3600 / 60
                )
            }),
        ),
        (
            "State",
            format!(
                "{} (hrDeviceStatus {}, hrPrinterStatus {}{})",
                d.printer_state,
                opt(&d.hr_device_status),
                opt(&d.hr_printer_status),
                if d.hr_printer_detected_error_state.is_empty() {
                    String::new()
                } else {
                    format!(", errors: {}", d.hr_printer_detected_error_state.join(", "))
                }
            ),
        ),
        (
            "Life count",
            match (r.counters.lifetime_count, &r.counters.lifetime_count_unit) {
                (Some(c), Some(u)) => format!("{c} {u}"),
                (Some(c), None) => c.to_string(),
                _ => "-".into(),
            },
        ),
    ];
    for (k, val) in rows {
        writeln!(s, "  {k:<13}{val}").ok();
    }
    let counters = serde_json::to_value(&r.counters).unwrap_or_default();
    let filled: Vec<String> = counters
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| v.is_u64() && k.as_str() != "lifetimeCount")
        .map(|(k, v)| match r.counters.ext.sources.get(k) {
            Some(src) => format!("{k} {v} ({src})"),
            None => format!("{k} {v}"),
        })
        .collect();
    if !filled.is_empty() {
        writeln!(s, "Counters").ok();
        for line in filled {
            writeln!(s, "  {line}").ok();
        }
    }
    writeln!(s, "Meters").ok();
    if r.meters.is_empty() {
        writeln!(s, "  (none read)").ok();
    }
    let word = |v: serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    for m in &r.meters {
        let meaning = match (m.function, m.colour) {
            (Some(f), Some(c)) => format!(
                "{}/{}",
                word(serde_json::to_value(f).unwrap_or_default()),
                word(serde_json::to_value(c).unwrap_or_default())
            ),
            _ => "-".into(),
        };
        let unit = m.unit.map_or("-".into(), |u| {
            word(serde_json::to_value(u).unwrap_or_default())
        });
        let named = match (&m.rule, &m.label) {
            (Some(rule), Some(label)) => format!("{rule} \"{label}\""),
            (Some(rule), None) => rule.clone(),
            (None, Some(label)) => format!("(not in the library) \"{label}\""),
            (None, None) => "(not in the library)".into(),
        };
        writeln!(
            s,
            "  {:<44} {:>12} {:<12} {:<18} {named}",
            m.oid, m.value, unit, meaning
        )
        .ok();
    }
    writeln!(s, "Supplies").ok();
    if r.supplies.is_empty() {
        writeln!(s, "  (none reported)").ok();
    }
    for sp in &r.supplies {
        let state = sp
            .ext
            .level_state
            .map_or("-".to_string(), |l| format!("{l:?}"));
        writeln!(
            s,
            "  {:<7} {:<34} {:<15} level {:>6} / max {:>7}  {:>4}  {}{}",
            sp.supply_key,
            sp.description
                .as_deref()
                .unwrap_or("-")
                .replace('\n', "\\n"),
            sp.kind.as_deref().unwrap_or("-"),
            opt(&sp.ext.prt_marker_supplies_level),
            opt(&sp.ext.prt_marker_supplies_max_capacity),
            sp.current_level.map_or("-".into(), |p| format!("{p}%")),
            state.to_lowercase(),
            if sp.ext.prt_marker_supplies_class == Some(4) {
                " (receptacle: level = free space)"
            } else {
                ""
            },
        )
        .ok();
        if sp.serial_number.is_some() || sp.ext.part_number.is_some() {
            writeln!(
                s,
                "          chip serial {}, part {}",
                sp.serial_number.as_deref().unwrap_or("-"),
                sp.ext.part_number.as_deref().unwrap_or("-")
            )
            .ok();
        }
    }
    if !d.input_trays.is_empty() {
        writeln!(s, "Trays").ok();
        for t in &d.input_trays {
            writeln!(
                s,
                "  {:<7} {:<20} level {:>5} / max {:>5}",
                t.index,
                t.name.as_deref().unwrap_or("-"),
                opt(&t.current_level),
                opt(&t.max_capacity)
            )
            .ok();
        }
    }
    writeln!(s, "Alerts").ok();
    if r.alerts.is_empty() {
        writeln!(s, "  (none)").ok();
    }
    for a in &r.alerts {
        writeln!(
            s,
            "  {:<7} {:<16} {}",
            a.status.unwrap_or("-"),
            a.alert_key,
            a.issue.as_deref().unwrap_or("-")
        )
        .ok();
    }
    if let Some(q) = &d.quirks {
        writeln!(s, "Agent quirks (worked around)\n  {q}").ok();
    }
    if !d.unavailable.is_empty() {
        writeln!(s, "Not read (unknown, not empty)").ok();
        for u in &d.unavailable {
            writeln!(s, "  {u}").ok();
        }
    }
    let commands = crate::printer::library::commands(
        &crate::printer::library::builtin(),
        d.sys_object_id.as_deref(),
    );
    writeln!(
        s,
        "Commands (built-in support library)\n  {}",
        if commands.is_empty() {
            "none: an unknown vendor is only read".to_owned()
        } else {
            commands.join(", ")
        }
    )
    .ok();
    s
}

pub(super) async fn walk_cmd(a: WalkArgs) -> anyhow::Result<()> {
    let root: Oid = a
        .oid
        .parse()
        .map_err(|e| anyhow::anyhow!("OID argument: {e}"))?;
    let addr = resolve(&a.host, 161).await?;
    let target = a.snmp.target(addr)?;
    let client = UdpClient::new()?;
    let walked = walk::walk_subtree(&client, &target, &root).await?;
    let values = &walked.values;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for (oid, value) in values {
        match a.format {
            WalkFormat::Snmprec => writeln!(out, "{}", snmprec::format_line(oid, value))?,
            WalkFormat::Text => writeln!(out, ".{oid} = {value:?}")?,
        }
    }
    out.flush()?;
    if let Some(cut) = walked.cut {
        eprintln!("{addr}: {cut}; the output is incomplete");
    }
    if values.is_empty() {
        eprintln!("{addr}: no object under {root}");
    }
    Ok(())
}
