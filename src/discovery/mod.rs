//! Discovery: sweeps include/exclude targets (and optionally the local networks) with a
//! polite, rate-limited SNMP probe per address, trying SNMP profiles in order (the one
//! that worked last time first), classifies printer / not a printer before any full
//! poll, folds mDNS sightings into the same device records, gives every device a stable
//! identity that survives IP changes, and records one outcome for every address tried.

pub mod local;
pub mod mdns;

use crate::config::Profile;
use crate::poller;
use crate::store::{DeviceRecord, Store};
use crate::targets::{self, TargetSet};
use fleet_snmp::{Oid, SnmpClient, SnmpError, Value, walk};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// "Search the local network" searches at most this prefix around the host's address on
/// each interface (a /16 on the host becomes its /22: 1,022 addresses).
pub const LOCAL_MAX_PREFIX: u8 = 22;

/// What happened at one address (the per-IP report).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// Covered by the include list but excluded.
    Excluded,
    /// A host name that did not resolve.
    DnsFailure {
        /// The resolver's message.
        reason: String,
    },
    /// No answer within the timeout and retries, with every profile.
    NoAnswer,
    /// ICMP port unreachable: the host is up, no SNMP agent listens.
    Unreachable,
    /// SNMPv3 user unknown to the agent.
    V3UnknownUser,
    /// SNMPv3 wrong authentication pass phrase or protocol.
    V3WrongDigest,
    /// SNMPv3 time window could not be synchronised.
    V3NotInTimeWindow,
    /// Another SNMP failure (code as in `SnmpError::code`).
    SnmpError {
        /// Failure code.
        code: String,
        /// Message.
        reason: String,
    },
    /// An SNMP agent that is not a printer.
    NotAPrinter {
        /// sysObjectID.
        #[serde(rename = "sysObjectID")]
        sys_object_id: Option<String>,
        /// sysDescr.
        sys_descr: Option<String>,
    },
    /// The same device as one found at another address in this run.
    Duplicate {
        /// The device key.
        device_key: String,
        /// Where it was found first.
        first_address: IpAddr,
    },
    /// A printer.
    Found {
        /// Stable device key.
        device_key: String,
        /// Whether it is new to the store.
        new: bool,
        /// Previous address when the device moved.
        moved_from: Option<String>,
    },
}

impl Outcome {
    /// Short code for CSV and summaries.
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Excluded => "excluded",
            Outcome::DnsFailure { .. } => "dnsFailure",
            Outcome::NoAnswer => "noAnswer",
            Outcome::Unreachable => "unreachable",
            Outcome::V3UnknownUser => "v3UnknownUser",
            Outcome::V3WrongDigest => "v3WrongDigest",
            Outcome::V3NotInTimeWindow => "v3NotInTimeWindow",
            Outcome::SnmpError { .. } => "snmpError",
            Outcome::NotAPrinter { .. } => "notAPrinter",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Found { .. } => "found",
        }
    }
}

/// One row of the per-IP report.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpResult {
    /// The address.
    pub address: IpAddr,
    /// The host name it came from, if any.
    pub name: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The SNMP profile that answered.
    pub profile: Option<String>,
    /// Where the address came from.
    pub sources: Vec<Source>,
}

/// Where an address to probe came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// The configured or imported targets.
    Target,
    /// The host's own networks (`discovery.local_network`).
    LocalNetwork,
    /// An mDNS announcement.
    Mdns,
}

impl Source {
    /// The name the report uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Target => "target",
            Source::LocalNetwork => "localNetwork",
            Source::Mdns => "mdns",
        }
    }
}

/// A device found by this run.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundDevice {
    /// Stable key (`sn:`, `mac:`, `uuid:`, `ip:`).
    pub device_key: String,
    /// Address.
    pub address: IpAddr,
    /// Serial.
    pub serial: Option<String>,
    /// Manufacturer.
    pub manufacturer: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// MAC.
    pub mac: Option<String>,
    /// How it was seen: `snmp`, `mdns`.
    pub discovered_by: Vec<&'static str>,
    /// mDNS TXT hints (UUID, ty, product, adminurl, note) when seen by mDNS.
    pub mdns: BTreeMap<String, String>,
    /// SNMP profile that answered.
    pub profile: Option<String>,
    /// How its SNMP agent must be asked, when it needs anything unusual (learned by this
    /// run's read, or remembered and still holding), so the poller starts with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quirks: Option<fleet_snmp::quirks::Quirks>,
}

/// What a discovery run found, for the job (or page) that asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiscoverySummary {
    /// Addresses probed.
    pub addresses: usize,
    /// Devices found.
    pub found: usize,
    /// Printers newly handed to the poller.
    pub added: usize,
}

/// A "discover now" request: the reply comes when the run finished.
pub type DiscoverRequest = tokio::sync::oneshot::Sender<DiscoverySummary>;

/// Progress of a run (streamed while it runs).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Addresses finished.
    pub done: usize,
    /// Addresses to try.
    pub total: usize,
    /// Printers found so far.
    pub found: usize,
    /// Addresses per second so far.
    pub rate: f64,
    /// Estimated seconds left.
    pub eta_secs: f64,
    /// Whether the run is over.
    pub finished: bool,
    /// When the last run ended (epoch ms), so a run over in milliseconds still shows it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
}

/// What a run produced.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// Start, epoch ms.
    pub started_at: i64,
    /// End, epoch ms.
    pub finished_at: i64,
    /// One row per address tried (and per excluded address).
    pub results: Vec<IpResult>,
    /// Devices found (one per device, not per address).
    pub devices: Vec<FoundDevice>,
    /// Warnings (e.g. capped local networks).
    pub warnings: Vec<String>,
}

impl RunReport {
    /// Counts outcomes by code.
    pub fn summary(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for r in &self.results {
            *m.entry(r.outcome.code()).or_insert(0) += 1;
        }
        m
    }

    /// Writes the per-IP report as CSV ([`csv`]).
    pub fn to_csv(&self) -> String {
        csv(&self.results)
    }
}

impl IpResult {
    /// The outcome's particulars in words (the CSV's `detail` column; the page says the
    /// same).
    pub fn detail(&self) -> String {
        let d = match &self.outcome {
            Outcome::Excluded => "excluded by the discovery criteria".into(),
            Outcome::DnsFailure { reason } => reason.clone(),
            Outcome::NoAnswer => {
                "no answer with any SNMP profile (wrong community, SNMP off, or no host)".into()
            }
            Outcome::Unreachable => "ICMP port unreachable: no SNMP agent at this address".into(),
            Outcome::V3UnknownUser => "SNMPv3: unknown user".into(),
            Outcome::V3WrongDigest => "SNMPv3: wrong authentication password".into(),
            Outcome::V3NotInTimeWindow => "SNMPv3: not in time window".into(),
            Outcome::SnmpError { code, reason } => format!("{code}: {reason}"),
            Outcome::NotAPrinter {
                sys_object_id,
                sys_descr,
            } => [sys_descr.as_deref(), sys_object_id.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · "),
            Outcome::Duplicate {
                device_key,
                first_address,
            } => format!(
                "same printer as {first_address} ({})",
                device_words(device_key)
            ),
            Outcome::Found {
                device_key,
                new,
                moved_from,
            } => {
                let mut d = format!(
                    "{}, {}",
                    device_words(device_key),
                    if *new { "new" } else { "known" }
                );
                if let Some(f) = moved_from {
                    d.push_str(&format!(", moved from {f}"));
                }
                d
            }
        };
        d.trim().to_string()
    }
}

/// A device key in words: `sn:acme imaging|FAMLX1` → "serial FAMLX1 (acme imaging)".
pub fn device_words(key: &str) -> String {
    let (kind, rest) = key.split_once(':').unwrap_or(("", key));
    match kind {
        "sn" => match rest.split_once('|') {
            Some((vendor, serial)) if !vendor.is_empty() => format!("serial {serial} ({vendor})"),
            Some((_, serial)) => format!("serial {serial}"),
            None => format!("serial {rest}"),
        },
        "mac" => format!("MAC {rest}"),
        "uuid" => format!("UUID {rest}"),
        "ip" => format!("address {rest}"),
        _ => key.to_string(),
    }
}

/// The per-IP report as CSV, the one writer for the command line's report file and the
/// page's download: a header row, CRLF line ends (RFC 4180), every cell quoted, and a
/// cell starting with `=`, `+`, `-` or `@` prefixed with `'` so a spreadsheet shows it
/// instead of running it (names and sysDescr come from the network).
pub fn csv(rows: &[IpResult]) -> String {
    fn cell(s: &str) -> String {
        let s = if s.starts_with(['=', '+', '-', '@']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        format!("\"{}\"", s.replace('"', "\"\""))
    }
    let mut out = String::from("address,name,outcome,detail,profile,sources\r\n");
    for r in rows {
        let sources: Vec<&str> = r.sources.iter().map(|s| s.as_str()).collect();
        let cells = [
            cell(&r.address.to_string()),
            cell(r.name.as_deref().unwrap_or("")),
            cell(r.outcome.code()),
            cell(&r.detail()),
            cell(r.profile.as_deref().unwrap_or("")),
            cell(&sources.join(" ")),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// How to run discovery.
#[derive(Clone, Debug)]
pub struct Options {
    /// Include/exclude lists.
    pub targets: TargetSet,
    /// Also sweep the host's local networks.
    pub local_network: bool,
    /// SNMP profiles to try, in order.
    pub profiles: Vec<Profile>,
    /// UDP port of the agents (161).
    pub port: u16,
    /// Addresses probed at the same time, at most.
    pub max_in_flight: usize,
    /// Cap on the number of addresses (no accidental /8).
    pub max_addresses: u128,
    /// How long to listen for mDNS announcements (zero: no mDNS).
    pub mdns: Duration,
    /// Reads the printers found (support library, clock).
    pub reader: poller::Reader,
    /// Whether a printer announced over mDNS with no SNMP answer is asked over IPP.
    pub ipp: crate::config::IppUse,
}

/// Classifies the answer to the cheap probe.
fn classify(values: &BTreeMap<Oid, Value>) -> (bool, Option<String>, Option<String>) {
    let under = |p: &[u32]| {
        values
            .iter()
            .find(|(k, _)| k.arcs().starts_with(p))
            .map(|(_, v)| v)
    };
    let descr = under(&[1, 3, 6, 1, 2, 1, 1, 1])
        .and_then(Value::as_bytes)
        .map(crate::printer::text::decode);
    let oid = under(&[1, 3, 6, 1, 2, 1, 1, 2])
        .and_then(Value::as_oid)
        .map(ToString::to_string);
    let printer_mib = values
        .keys()
        .any(|k| k.arcs().starts_with(&[1, 3, 6, 1, 2, 1, 43]));
    let hr_printer = values.iter().any(|(k, v)| {
        k.arcs().starts_with(&[1, 3, 6, 1, 2, 1, 25, 3, 2, 1, 2])
            && v.as_oid()
                .is_some_and(|o| o.arcs() == [1, 3, 6, 1, 2, 1, 25, 3, 1, 5])
    });
    (printer_mib || hr_printer, oid, descr)
}

/// The cheap probe: sysDescr, sysObjectID, the first hrDeviceType and the first object
/// of the Printer-MIB general table, in one round trip.
fn probe_objects() -> Vec<Oid> {
    [
        &[1u32, 3, 6, 1, 2, 1, 1, 1][..],
        &[1, 3, 6, 1, 2, 1, 1, 2],
        &[1, 3, 6, 1, 2, 1, 25, 3, 2, 1, 2],
        &[1, 3, 6, 1, 2, 1, 43, 5, 1, 1],
    ]
    .iter()
    .map(|a| Oid::from_slice(a))
    .collect()
}

fn error_outcome(e: &SnmpError) -> Outcome {
    match e {
        SnmpError::Timeout { .. } => Outcome::NoAnswer,
        SnmpError::Unreachable { .. } => Outcome::Unreachable,
        SnmpError::UnknownUser { .. } => Outcome::V3UnknownUser,
        SnmpError::WrongDigest { .. } => Outcome::V3WrongDigest,
        SnmpError::NotInTimeWindow { .. } => Outcome::V3NotInTimeWindow,
        other => Outcome::SnmpError {
            code: other.code().into(),
            reason: other.to_string(),
        },
    }
}

/// Rank of an outcome when several profiles fail: keep the most informative one.
fn rank(o: &Outcome) -> u8 {
    match o {
        Outcome::NoAnswer => 0,
        Outcome::Unreachable => 1,
        Outcome::SnmpError { .. } => 2,
        _ => 3,
    }
}

struct Probed {
    outcome: Outcome,
    profile: Option<String>,
    /// Boxed: most addresses have none, and a report is large.
    report: Option<Box<crate::printer::PrinterReport>>,
}

async fn probe<C: SnmpClient>(
    client: &C,
    reader: &poller::Reader,
    ip: IpAddr,
    port: u16,
    profiles: &[&Profile],
    known: &fleet_snmp::quirks::Quirks,
) -> Probed {
    let mut worst: Option<Outcome> = None;
    // What the probe learns, the full read starts from.
    let mut known = known.clone();
    for p in profiles {
        let target = p.target(SocketAddr::new(ip, port));
        // A printer whose agent has known quirks (v1 only, objects it drops) is asked the
        // way that works; any other address the plain way, so a silent one costs no more.
        let answered = if known.is_empty() {
            walk::collect(client, &target, &probe_objects(), &[], walk::Budget::POLL).await
        } else {
            walk::collect_adaptive(
                client,
                &target,
                &probe_objects(),
                &[],
                walk::Budget::POLL,
                &mut known,
            )
            .await
        };
        match answered {
            Ok(c) => {
                let (printer, sys_object_id, sys_descr) = classify(&c.values);
                if !printer {
                    return Probed {
                        outcome: Outcome::NotAPrinter {
                            sys_object_id,
                            sys_descr,
                        },
                        profile: Some(p.name.clone()),
                        report: None,
                    };
                }
                // A printer: the full read gives the identity (serial, MAC).
                return match reader.read(client, &target, &mut known).await {
                    Ok((report, _)) => Probed {
                        outcome: Outcome::Found {
                            device_key: String::new(),
                            new: true,
                            moved_from: None,
                        },
                        profile: Some(p.name.clone()),
                        report: Some(Box::new(report)),
                    },
                    Err(e) => Probed {
                        outcome: e.snmp().map_or(Outcome::NoAnswer, error_outcome),
                        profile: Some(p.name.clone()),
                        report: None,
                    },
                };
            }
            Err(e) => {
                let o = error_outcome(&e);
                let unreachable = o == Outcome::Unreachable;
                if worst.as_ref().is_none_or(|w| rank(&o) > rank(w)) {
                    worst = Some(o);
                }
                // Nothing listens: other profiles will not change that.
                if unreachable {
                    break;
                }
            }
        }
    }
    Probed {
        outcome: worst.unwrap_or(Outcome::NoAnswer),
        profile: None,
        report: None,
    }
}

/// The stable identity of a device: serial (+ manufacturer), else MAC, else mDNS UUID,
/// else the address.
pub fn device_key(
    serial: Option<&str>,
    manufacturer: Option<&str>,
    mac: Option<&str>,
    uuid: Option<&str>,
    ip: IpAddr,
) -> String {
    if let Some(sn) = serial {
        return format!(
            "sn:{}|{}",
            manufacturer.unwrap_or("").to_lowercase(),
            sn.to_uppercase()
        );
    }
    if let Some(m) = mac {
        return format!("mac:{}", m.to_lowercase());
    }
    if let Some(u) = uuid {
        return format!("uuid:{}", u.to_lowercase());
    }
    format!("ip:{ip}")
}

/// IPP Get-Printer-Attributes answers, by address, from the addresses this run probed
/// that announced `_ipp._tcp` and gave no SNMP reading (no answer, or one refused): at most 8 at a time, 5 s each, one request per
/// address (mDNS said it speaks IPP, so one request is polite).
async fn ipp_identities(
    sightings: &[mdns::Sighting],
    probed: &HashMap<IpAddr, Probed>,
) -> HashMap<IpAddr, crate::printer::PrinterReport> {
    const AT_ONCE: usize = 8;
    const DEADLINE: Duration = Duration::from_secs(5);
    let mut uris: Vec<(IpAddr, String)> = Vec::new();
    for s in sightings
        .iter()
        .filter(|s| s.service_type.starts_with("_ipp._tcp"))
    {
        let path = s
            .txt
            .get("rp")
            .map_or("ipp/print", |p| p.trim_start_matches('/'));
        for ip in &s.addresses {
            // Only addresses this run probed (an excluded one never is) whose SNMP gave
            // no reading, and not those SNMP showed are no printer.
            let ask = probed.get(ip).is_some_and(|p| {
                p.report.is_none() && !matches!(p.outcome, Outcome::NotAPrinter { .. })
            });
            if !ask || uris.iter().any(|(a, _)| a == ip) || uris.len() >= 256 {
                continue;
            }
            let host = match ip {
                IpAddr::V4(v4) => v4.to_string(),
                // A link-local address would need its zone; such a printer has others.
                IpAddr::V6(v6) if v6.is_unicast_link_local() => continue,
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            uris.push((*ip, format!("ipp://{host}:{}/{path}", s.port)));
        }
    }
    if uris.is_empty() {
        return HashMap::new();
    }
    let http = match crate::printer::ipp::http_client(DEADLINE) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "IPP identities not read.");
            return HashMap::new();
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut out = HashMap::new();
    let mut set = tokio::task::JoinSet::new();
    let mut pending = uris.into_iter();
    loop {
        while set.len() < AT_ONCE {
            let Some((ip, uri)) = pending.next() else {
                break;
            };
            let http = http.clone();
            set.spawn(async move {
                let r = fleet_ipp::get_printer_attributes(
                    &http,
                    &uri,
                    crate::printer::ipp::REQUESTED,
                    DEADLINE,
                )
                .await;
                (ip, uri, r)
            });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        match done {
            Ok((ip, _, Ok(answer))) => {
                out.insert(ip, crate::printer::ipp::report(&answer, Some(ip), now));
            }
            Ok((_, uri, Err(e))) => {
                tracing::debug!(printer = %uri, error = %e, "IPP identity not read.")
            }
            Err(_) => {}
        }
    }
    out
}

/// Runs one discovery. Progress is published on `progress`; with a store, devices are
/// upserted (moves recorded) and the per-IP report of this run replaces the last one.
pub async fn run<C: SnmpClient + Clone>(
    client: C,
    opts: Options,
    store: Option<Store>,
    progress: watch::Sender<Progress>,
) -> RunReport {
    let started_at = opts.reader.clock.now_ms();
    let t0 = Instant::now();
    let mut warnings = Vec::new();
    let mut set = opts.targets.clone();
    if opts.local_network {
        let (specs, w) = local::local_networks(LOCAL_MAX_PREFIX, false);
        warnings.extend(w);
        set.include.extend(specs);
    }
    // Excluded host names exclude the addresses they resolve to now (each run: DHCP may
    // move them); one that does not resolve is said, not silently ignored.
    let names: Vec<String> = set
        .exclude
        .iter()
        .filter_map(|s| match s {
            targets::Spec::Fqdn(h) => Some(h.clone()),
            _ => None,
        })
        .collect();
    for name in names {
        let resolved = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::lookup_host((name.as_str(), 0)),
        )
        .await;
        match resolved {
            Ok(Ok(addrs)) => {
                let ips: Vec<targets::Spec> = addrs.map(|a| targets::Spec::Ip(a.ip())).collect();
                if ips.is_empty() {
                    warnings.push(format!(
                        "exclusion {name}: the name has no address; nothing is excluded by it this run"
                    ));
                }
                set.exclude.extend(ips);
            }
            Ok(Err(e)) => warnings.push(format!(
                "exclusion {name}: does not resolve ({e}); nothing is excluded by it this run"
            )),
            Err(_) => warnings.push(format!(
                "exclusion {name}: no DNS answer within 10 s; nothing is excluded by it this run"
            )),
        }
    }
    let mut results: Vec<IpResult> = Vec::new();
    let expanded = match set.expand(opts.max_addresses) {
        Ok(e) => e,
        Err(e) => {
            warnings.push(e.to_string());
            progress.send_replace(Progress {
                finished: true,
                finished_at_ms: Some(opts.reader.clock.now_ms()),
                ..Progress::default()
            });
            return RunReport {
                started_at,
                finished_at: opts.reader.clock.now_ms(),
                results,
                devices: Vec::new(),
                warnings,
            };
        }
    };
    for ip in &expanded.excluded {
        results.push(IpResult {
            address: *ip,
            name: None,
            outcome: Outcome::Excluded,
            profile: None,
            sources: vec![Source::Target],
        });
    }
    // Addresses to probe, with where they came from.
    let mut order: Vec<IpAddr> = Vec::new();
    let mut meta: HashMap<IpAddr, (Option<String>, Vec<Source>)> = HashMap::new();
    let local_set: Vec<targets::Spec> = if opts.local_network {
        set.include
            .iter()
            .skip(opts.targets.include.len())
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    for ip in &expanded.addresses {
        let src = if local_set.iter().any(|s| s.contains(*ip))
            && !opts.targets.include.iter().any(|s| s.contains(*ip))
        {
            Source::LocalNetwork
        } else {
            Source::Target
        };
        order.push(*ip);
        meta.insert(*ip, (None, vec![src]));
    }
    for name in &expanded.names {
        match tokio::net::lookup_host((name.as_str(), opts.port)).await {
            Ok(addrs) => {
                let mut any = false;
                for a in addrs {
                    any = true;
                    let ip = a.ip();
                    if set.excluded(ip) {
                        results.push(IpResult {
                            address: ip,
                            name: Some(name.clone()),
                            outcome: Outcome::Excluded,
                            profile: None,
                            sources: vec![Source::Target],
                        });
                        continue;
                    }
                    let e = meta.entry(ip).or_insert_with(|| {
                        order.push(ip);
                        (None, vec![Source::Target])
                    });
                    e.0 = Some(name.clone());
                }
                if !any {
                    results.push(IpResult {
                        address: IpAddr::from([0, 0, 0, 0]),
                        name: Some(name.clone()),
                        outcome: Outcome::DnsFailure {
                            reason: "the name has no address".into(),
                        },
                        profile: None,
                        sources: vec![Source::Target],
                    });
                }
            }
            Err(e) => results.push(IpResult {
                address: IpAddr::from([0, 0, 0, 0]),
                name: Some(name.clone()),
                outcome: Outcome::DnsFailure {
                    reason: e.to_string(),
                },
                profile: None,
                sources: vec![Source::Target],
            }),
        }
    }
    // mDNS listens while the SNMP sweep runs; its sightings are probed afterwards.
    let mut browse = (!opts.mdns.is_zero()).then(|| tokio::spawn(mdns::browse(opts.mdns)));
    let mut sightings: Vec<mdns::Sighting> = Vec::new();

    // Remembered profiles: the one that worked for the device last at this address.
    let remembered: HashMap<String, String> = match &store {
        Some(s) => {
            let s = s.clone();
            tokio::task::spawn_blocking(move || s.devices())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|d| Some((d.address?, d.profile?)))
                .collect()
        }
        None => HashMap::new(),
    };

    let mut total = order.len();
    progress.send_replace(Progress {
        total,
        ..Progress::default()
    });
    // Remembered quirks of the printers the agent polls, by address, so discovery asks a
    // known quirky printer the way that works instead of learning it again every run.
    let known_quirks: Arc<HashMap<String, fleet_snmp::quirks::Quirks>> = Arc::new(match &store {
        Some(s) => {
            let s = s.clone();
            tokio::task::spawn_blocking(move || s.printer_quirks())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| Some((r.address, crate::store::read_quirks(&r.quirks).ok()?)))
                .collect()
        }
        None => HashMap::new(),
    });
    let profiles = Arc::new(opts.profiles.clone());
    // Addresses are started as slots free up (not spawned all at once), so memory stays
    // bounded by max_in_flight even for a /16.
    let cap = opts.max_in_flight.max(1);
    let port = opts.port;
    let spawn_next = |tasks: &mut tokio::task::JoinSet<(IpAddr, Probed)>, ip: IpAddr| {
        let (client, profiles, reader) = (client.clone(), profiles.clone(), opts.reader.clone());
        let first = remembered
            .get(&SocketAddr::new(ip, port).to_string())
            .cloned();
        let known = known_quirks
            .get(&SocketAddr::new(ip, port).to_string())
            .cloned()
            .unwrap_or_default();
        tasks.spawn(async move {
            let mut ordered: Vec<&Profile> = profiles.iter().collect();
            if let Some(name) = first
                && let Some(pos) = ordered.iter().position(|p| p.name == name)
            {
                let p = ordered.remove(pos);
                ordered.insert(0, p);
            }
            (
                ip,
                probe(&client, &reader, ip, port, &ordered, &known).await,
            )
        });
    };
    let mut probed: HashMap<IpAddr, Probed> = HashMap::with_capacity(total);
    let mut found = 0usize;
    let mut batch: Vec<IpAddr> = order.clone();
    loop {
        let mut pending = batch.iter().copied();
        let mut tasks = tokio::task::JoinSet::new();
        for ip in pending.by_ref().take(cap) {
            spawn_next(&mut tasks, ip);
        }
        while let Some(r) = tasks.join_next().await {
            if let Some(ip) = pending.next() {
                spawn_next(&mut tasks, ip);
            }
            let Ok((ip, p)) = r else { continue };
            if p.report.is_some() {
                found += 1;
            }
            probed.insert(ip, p);
            let done = probed.len();
            let secs = t0.elapsed().as_secs_f64().max(1e-3);
            let rate = done as f64 / secs;
            progress.send_replace(Progress {
                done,
                total,
                found,
                rate,
                eta_secs: if rate > 0.0 {
                    (total.saturating_sub(done)) as f64 / rate
                } else {
                    0.0
                },
                finished: false,
                finished_at_ms: None,
            });
        }
        // Then the addresses only mDNS announced.
        let Some(b) = browse.take() else { break };
        match b.await {
            Ok(Ok(s)) => sightings = s,
            Ok(Err(e)) => warnings.push(format!("mDNS browse failed: {e}")),
            Err(e) => warnings.push(format!("mDNS browse task failed: {e}")),
        }
        batch.clear();
        for s in &sightings {
            for ip in &s.addresses {
                if set.excluded(*ip) {
                    continue;
                }
                let e = meta.entry(*ip).or_insert_with(|| {
                    order.push(*ip);
                    batch.push(*ip);
                    (None, Vec::new())
                });
                if !e.1.contains(&Source::Mdns) {
                    e.1.push(Source::Mdns);
                }
            }
        }
        total += batch.len();
        if batch.is_empty() {
            break;
        }
    }
    let mut mdns_by_ip: HashMap<IpAddr, &mdns::Sighting> = HashMap::new();
    for s in &sightings {
        for ip in &s.addresses {
            mdns_by_ip.entry(*ip).or_insert(s);
        }
    }

    // Addresses that announced IPP and gave no SNMP reading: IPP is asked who they are.
    let mut ipp = match opts.ipp {
        crate::config::IppUse::Auto => ipp_identities(&sightings, &probed).await,
        crate::config::IppUse::Off => HashMap::new(),
    };

    // Fold SNMP and mDNS into devices, in address order (stable across runs).
    let mut devices: Vec<FoundDevice> = Vec::new();
    let mut by_key: HashMap<String, IpAddr> = HashMap::new();
    for ip in order {
        let (name, sources) = meta.remove(&ip).unwrap_or_default();
        let p = probed.remove(&ip).unwrap_or(Probed {
            outcome: Outcome::NoAnswer,
            profile: None,
            report: None,
        });
        let sighting = mdns_by_ip.get(&ip).copied();
        let uuid = sighting.and_then(|s| s.txt.get("UUID").or_else(|| s.txt.get("uuid")).cloned());
        let (outcome, device) = match (&p.report, sighting) {
            (Some(r), _) => {
                let key = device_key(
                    r.serial_number.as_deref(),
                    r.manufacturer.as_deref(),
                    r.device.mac_address.as_deref(),
                    uuid.as_deref(),
                    ip,
                );
                let mut by = vec!["snmp"];
                if sighting.is_some() {
                    by.push("mdns");
                }
                let d = FoundDevice {
                    device_key: key.clone(),
                    address: ip,
                    serial: r.serial_number.clone(),
                    manufacturer: r.manufacturer.clone(),
                    model: r.model_name.clone(),
                    mac: r.device.mac_address.clone(),
                    discovered_by: by,
                    mdns: sighting.map(|s| s.txt.clone()).unwrap_or_default(),
                    profile: p.profile.clone(),
                    quirks: r.device.quirks.clone(),
                };
                (
                    Outcome::Found {
                        device_key: key,
                        new: true,
                        moved_from: None,
                    },
                    Some(d),
                )
            }
            (None, Some(s)) if !matches!(p.outcome, Outcome::NotAPrinter { .. }) => {
                // Seen only by mDNS (no SNMP answer): still a device, keyed by the serial
                // IPP gave, else the UUID (IPP's, else the TXT record's).
                let r = ipp.remove(&ip);
                let uuid = r
                    .as_ref()
                    .and_then(|r| r.device.printer_uuid.as_deref())
                    .map(|u| u.strip_prefix("urn:uuid:").unwrap_or(u).to_string())
                    .or(uuid);
                let serial = r.as_ref().and_then(|r| r.serial_number.clone());
                let manufacturer = r
                    .as_ref()
                    .and_then(|r| r.manufacturer.clone())
                    .or_else(|| s.txt.get("usb_MFG").cloned());
                let key = device_key(
                    serial.as_deref(),
                    manufacturer.as_deref(),
                    None,
                    uuid.as_deref(),
                    ip,
                );
                let d = FoundDevice {
                    device_key: key.clone(),
                    address: ip,
                    serial,
                    manufacturer,
                    model: r
                        .as_ref()
                        .and_then(|r| r.model_name.clone())
                        .or_else(|| s.txt.get("ty").or_else(|| s.txt.get("product")).cloned()),
                    mac: None,
                    discovered_by: if r.is_some() {
                        vec!["mdns", "ipp"]
                    } else {
                        vec!["mdns"]
                    },
                    mdns: s.txt.clone(),
                    profile: None,
                    quirks: None,
                };
                (
                    Outcome::Found {
                        device_key: key,
                        new: true,
                        moved_from: None,
                    },
                    Some(d),
                )
            }
            _ => (p.outcome, None),
        };
        let outcome = match (outcome, device) {
            (Outcome::Found { device_key, .. }, Some(d)) => match by_key.get(&device_key) {
                Some(first) => Outcome::Duplicate {
                    device_key,
                    first_address: *first,
                },
                None => {
                    by_key.insert(device_key.clone(), ip);
                    devices.push(d);
                    Outcome::Found {
                        device_key,
                        new: true,
                        moved_from: None,
                    }
                }
            },
            (o, _) => o,
        };
        results.push(IpResult {
            address: ip,
            name,
            outcome,
            profile: p.profile,
            sources,
        });
    }

    // Identity across runs: upsert devices, detect moves, keep this run's report.
    if let Some(s) = store {
        let records: Vec<DeviceRecord> = devices
            .iter()
            .map(|d| DeviceRecord {
                device_key: d.device_key.clone(),
                serial: d.serial.clone(),
                manufacturer: d.manufacturer.clone(),
                model: d.model.clone(),
                mac: d.mac.clone(),
                mdns_uuid: d.mdns.get("UUID").cloned(),
                address: Some(SocketAddr::new(d.address, opts.port).to_string()),
                profile: d.profile.clone(),
                sources: d.discovered_by.join(","),
            })
            .collect();
        let rows: Vec<(String, String, String)> = results
            .iter()
            .map(|r| {
                (
                    r.address.to_string(),
                    r.outcome.code().to_string(),
                    serde_json::to_string(r).unwrap_or_default(),
                )
            })
            .collect();
        let at = opts.reader.clock.now_ms();
        match tokio::task::spawn_blocking(move || s.save_discovery(at, &records, &rows)).await {
            Ok(Ok(moves)) => {
                for r in &mut results {
                    if let Outcome::Found {
                        device_key,
                        new,
                        moved_from,
                    } = &mut r.outcome
                        && let Some((was_new, from)) = moves.get(device_key)
                    {
                        *new = *was_new;
                        *moved_from = from.clone();
                    }
                }
            }
            Ok(Err(e)) => warnings.push(format!("could not store the discovery results: {e}")),
            Err(e) => warnings.push(format!("store task failed: {e}")),
        }
    }
    results.sort_by_key(|r| r.address);
    let done = Progress {
        done: total,
        total,
        found: devices.len(),
        rate: total as f64 / t0.elapsed().as_secs_f64().max(1e-3),
        eta_secs: 0.0,
        finished: true,
        finished_at_ms: Some(opts.reader.clock.now_ms()),
    };
    progress.send_replace(done);
    RunReport {
        started_at,
        finished_at: opts.reader.clock.now_ms(),
        results,
        devices,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_quotes_every_cell_and_never_lets_a_device_write_a_formula() {
        let row = |outcome: Outcome, name: Option<&str>| IpResult {
            address: "192.0.2.7".parse().unwrap(),
            name: name.map(str::to_string),
            outcome,
            profile: Some("office".into()),
            sources: vec![Source::Target, Source::Mdns],
        };
        let text = csv(&[
            row(
                Outcome::NotAPrinter {
                    sys_object_id: None,
                    sys_descr: Some("@SUM(A1) \"switch\"".into()),
                },
                Some("-sw1"),
            ),
            row(
                Outcome::Found {
                    device_key: "sn:hp|X1".into(),
                    new: false,
                    moved_from: Some("192.0.2.9".into()),
                },
                None,
            ),
        ]);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "address,name,outcome,detail,profile,sources");
        assert_eq!(
            lines[1],
            "\"192.0.2.7\",\"'-sw1\",\"notAPrinter\",\"'@SUM(A1) \"\"switch\"\"\",\"office\",\"target mdns\""
        );
        assert_eq!(
            lines[2],
            "\"192.0.2.7\",\"\",\"found\",\"serial X1 (hp), known, moved from 192.0.2.9\",\"office\",\"target mdns\""
        );
        assert_eq!(lines[3], "", "CRLF after the last row too");
        // The stored form reads back into the same rows (the page's download).
        let r = row(Outcome::NoAnswer, Some("p1"));
        let back: IpResult = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(csv(&[back]), csv(&[r]));
    }
}
