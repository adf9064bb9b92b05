//! `discover`: find printers on the targets given, with progress on the terminal, and
//! report them (table, JSON, or a per-address CSV/JSON file).

use super::exit::{self, Exit};
use super::{StateArgs, load_config, state_dir};
use clap::Args;
use fleet_snmp::{Security, UdpClient};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// `discover` arguments.
#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// Include: an address, subnet (192.0.2.0/24), range (192.0.2.10-192.0.2.50 or
    /// 192.0.2.10-50) or host name (repeatable).
    #[arg(long = "target", short = 't')]
    pub targets: Vec<String>,
    /// Exclude (same forms; wins over every include, repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Import include entries from a CSV or TXT file (repeatable).
    #[arg(long)]
    pub import: Vec<PathBuf>,
    /// Import exclude entries from a CSV or TXT file (repeatable).
    #[arg(long)]
    pub import_exclude: Vec<PathBuf>,
    /// Imported entries replace the --target/--exclude lists instead of adding to them.
    #[arg(long)]
    pub replace: bool,
    /// Also search the host's local IPv4 networks (each capped at /22).
    #[arg(long)]
    pub local_network: bool,
    /// Listen to mDNS/DNS-SD printer announcements for this many seconds (0: off).
    #[arg(long, default_value_t = 0)]
    pub mdns_secs: u64,
    /// SNMPv2c community to try (repeatable, in order); default: the configured profiles.
    #[arg(short = 'c', long = "community")]
    pub communities: Vec<String>,
    /// Configured SNMP profile to try (repeatable, in order).
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// UDP port of the SNMP agents.
    #[arg(long, default_value_t = 161)]
    pub port: u16,
    /// Per-attempt timeout (overrides the profiles').
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Retries (overrides the profiles').
    #[arg(long)]
    pub retries: Option<u32>,
    /// The "network usage delay" of fleet portals: microseconds between two probe packets
    /// (250 = 4,000 packets/s; 0 = no limit, not recommended).
    #[arg(long, default_value_t = 250)]
    pub network_delay: u64,
    /// Addresses probed at the same time, at most.
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// Refuse target lists larger than this many addresses.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub max_addresses: u64,
    /// Print the whole run (per-IP report and devices) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the per-IP report to this file (.csv or .json).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Do not read or write the store (identity is then per run only).
    #[arg(long)]
    pub no_store: bool,
    /// Never ask a printer over IPP who it is (by default a printer announced over mDNS
    /// that gives no SNMP reading is asked once).
    #[arg(long)]
    pub no_ipp: bool,
    /// Configuration and state.
    #[command(flatten)]
    pub agent: StateArgs,
}

pub(super) async fn discover(a: DiscoverArgs) -> Result<(), Exit> {
    use crate::{discovery, targets};
    let c = load_config(a.agent.config.as_ref())?;
    let data = |message: String| Exit {
        code: exit::DATA,
        message,
    };
    let mut set = targets::TargetSet::default();
    let mut problems = Vec::new();
    for (list, out) in [
        (&a.targets, &mut set.include),
        (&a.exclude, &mut set.exclude),
    ] {
        for t in list {
            match t.parse::<targets::Spec>() {
                Ok(s) => out.push(s),
                Err(e) => problems.push(format!("argument {t:?}: {e}")),
            }
        }
    }
    let mode = if a.replace {
        targets::ImportMode::Replace
    } else {
        targets::ImportMode::Add
    };
    let mut replaced_include = false;
    let mut replaced_exclude = false;
    for (files, include) in [(&a.import, true), (&a.import_exclude, false)] {
        for f in files {
            let (specs, errors) = targets::read_import(f).map_err(|e| Exit {
                code: exit::NO_INPUT,
                message: format!("{}: {e}", f.display()),
            })?;
            problems.extend(errors.iter().map(ToString::to_string));
            // "Replace existing" replaces the command-line list once, then files add up.
            let m = if include && !replaced_include || !include && !replaced_exclude {
                mode
            } else {
                targets::ImportMode::Add
            };
            if include {
                set.import_include(specs, m);
                replaced_include = true;
            } else {
                set.import_exclude(specs, m);
                replaced_exclude = true;
            }
        }
    }
    if !problems.is_empty() {
        return Err(data(format!(
            "{} bad target entr{}; nothing was probed:\n  {}",
            problems.len(),
            if problems.len() == 1 { "y" } else { "ies" },
            problems.join("\n  ")
        )));
    }
    // More addresses than the cap: refused before a socket opens, and said as bad input
    // (a run that searched nothing is not a success).
    if let Err(e) = set.expand(u128::from(a.max_addresses)) {
        return Err(data(format!("{e}; nothing was probed")));
    }
    if set.include.is_empty() && !a.local_network && a.mdns_secs == 0 {
        return Err(Exit {
            code: 2,
            message: "nothing to search: give --target, --import, --local-network or --mdns-secs"
                .into(),
        });
    }
    let mut profiles: Vec<crate::config::Profile> = if !a.communities.is_empty() {
        a.communities
            .iter()
            .enumerate()
            .map(|(i, com)| crate::config::Profile {
                name: format!("community-{}", i + 1),
                security: Security::v2c(com),
                timeout: Duration::from_millis(1000),
                retries: 1,
                max_repetitions: 40,
            })
            .collect()
    } else if !a.profiles.is_empty() {
        let mut v = Vec::new();
        for n in &a.profiles {
            match c.profiles.iter().find(|p| &p.name == n) {
                Some(p) => v.push(p.clone()),
                None => {
                    return Err(Exit {
                        code: exit::CONFIG,
                        message: format!("--profile {n:?}: no such profile in the configuration"),
                    });
                }
            }
        }
        v
    } else {
        c.profiles.clone()
    };
    for p in &mut profiles {
        if let Some(t) = a.timeout_ms {
            p.timeout = Duration::from_millis(t.max(1));
        }
        if let Some(r) = a.retries {
            p.retries = r;
        }
    }
    if a.network_delay == 0 {
        eprintln!(
            "warning: --network-delay 0 sends probes as fast as possible; this can flood the network"
        );
    }
    let pps = (a.network_delay > 0).then(|| 1e6 / a.network_delay as f64);
    let client = UdpClient::connected()
        .and_then(|c| c.with_rate_limit(pps))
        .map_err(|e| Exit {
            code: exit::FAILURE,
            message: format!("cannot open SNMP sockets: {e}"),
        })?;
    let store = if a.no_store {
        None
    } else {
        let dir = state_dir(a.agent.state_dir.as_ref(), &c);
        Some(
            tokio::task::spawn_blocking(move || crate::store::Store::open(&dir))
                .await
                .map_err(|e| Exit::from(anyhow::Error::from(e)))?
                .map_err(|e| Exit::from(anyhow::Error::from(e)))?,
        )
    };
    let opts = discovery::Options {
        targets: set,
        local_network: a.local_network,
        profiles,
        port: a.port,
        max_in_flight: a.max_in_flight,
        max_addresses: u128::from(a.max_addresses),
        mdns: Duration::from_secs(a.mdns_secs),
        reader: crate::poller::Reader::default(),
        ipp: if a.no_ipp {
            crate::config::IppUse::Off
        } else {
            crate::config::IppUse::Auto
        },
    };
    let (tx, rx) = tokio::sync::watch::channel(discovery::Progress::default());
    let shown = tokio::spawn(show_progress(rx));
    let report = discovery::run(client.clone(), opts, store, tx).await;
    shown.await.ok();
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = &a.report {
        let text = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            serde_json::to_string_pretty(&report.results).unwrap_or_default()
        } else {
            report.to_csv()
        };
        std::fs::write(path, text).map_err(|e| Exit {
            code: exit::FAILURE,
            message: format!("{}: {e}", path.display()),
        })?;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report).ok();
        writeln!(out).ok();
    } else {
        writeln!(
            out,
            "{} printer(s) found, {} address(es) tried in {:.1} s",
            report.devices.len(),
            report.results.len(),
            (report.finished_at - report.started_at) as f64 / 1000.0
        )
        .ok();
        for d in &report.devices {
            writeln!(
                out,
                "  {:<18} {:<34} {:<22} {:<16} via {}",
                d.address.to_string(),
                d.device_key,
                d.model.as_deref().unwrap_or("-"),
                d.serial.as_deref().unwrap_or("-"),
                d.discovered_by.join("+")
            )
            .ok();
        }
        let summary: Vec<String> = report
            .summary()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(out, "outcomes: {}", summary.join(", ")).ok();
        let s = client.stats();
        writeln!(
            out,
            "{} SNMP datagrams sent, {} answered",
            s.sent, s.received
        )
        .ok();
    }
    Ok(())
}

async fn show_progress(mut rx: tokio::sync::watch::Receiver<crate::discovery::Progress>) {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} addresses, {msg}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut last_line = tokio::time::Instant::now();
    loop {
        if rx.changed().await.is_err() {
            break;
        }
        let p = rx.borrow_and_update().clone();
        if let Some(b) = &bar {
            b.set_length(p.total as u64);
            b.set_position(p.done as u64);
            b.set_message(format!("{} found, {:.0}/s", p.found, p.rate));
        } else if last_line.elapsed() >= Duration::from_secs(2) || p.finished {
            last_line = tokio::time::Instant::now();
            eprintln!(
                "discover: {}/{} addresses, {} found, {:.0}/s, ETA {:.0} s",
                p.done, p.total, p.found, p.rate, p.eta_secs
            );
        }
        if p.finished {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
