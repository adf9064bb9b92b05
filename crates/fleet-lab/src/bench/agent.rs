//! `fleet-lab bench agent`: the process a user runs, measured from outside. A simulated
//! fleet (the LibreNMS recordings that carry a supplies table, repeated with unique
//! serial numbers, or synthetic printers whose levels fall) is polled by
//! `fleet-agent run` for several cycles; each cycle's line gives the agent's CPU per
//! printer poll (from `/proc/PID/task/*/schedstat`: everything the process did, polls,
//! decoding, store, upload rule, outbox, web page, timers), the bytes it sent to the
//! storage layer (`/proc/PID/io` `write_bytes`: the SQLite database and its WAL), its RSS
//! and the outbox (from the agent's own `/metrics`). Then snmp_exporter scrapes the same
//! fleet with its `printer_mib` module, and the ratio of CPU per printer is printed.

use clap::{Args, ValueEnum};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Which printers the simulated fleet serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FleetKind {
    /// The real recordings with a Printer-MIB supplies table (`--recordings`), repeated.
    Recordings,
    /// Synthetic printers: counters advance and levels fall, so uploads are queued.
    Synthetic,
}

/// `bench agent` arguments.
#[derive(Args, Debug)]
pub struct AgentBench {
    /// Simulated printers.
    #[arg(long, default_value_t = 1000)]
    pub printers: usize,
    /// What the fleet serves.
    #[arg(long, value_enum, default_value_t = FleetKind::Recordings)]
    pub fleet: FleetKind,
    /// Directory of LibreNMS `.snmprec` recordings (default:
    /// `$FLEET_AGENT_LIBRENMS_DIR/snmprec`, else `../shared/fixtures/librenms/snmprec`).
    #[arg(long)]
    pub recordings: Option<PathBuf>,
    /// Poll interval of the agent (one cycle per interval; printers are spread over it).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(10..=3600))]
    pub interval_secs: u64,
    /// Cycles measured (after the agent's start).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub cycles: u64,
    /// The agent's outbox cap (`cloud.outbox_max_bytes`); the default when not given.
    #[arg(long)]
    pub outbox_max_bytes: Option<u64>,
    /// First loopback address of the simulated fleet.
    #[arg(long, default_value = "127.70.0.1")]
    pub fleet_start: Ipv4Addr,
    /// UDP port of the simulated printers.
    #[arg(long, default_value_t = 161)]
    pub port: u16,
    /// snmp_exporter binary ("none" to skip).
    #[arg(long, default_value = "prometheus-snmp-exporter")]
    pub exporter: String,
    /// snmp_exporter configuration with the printer_mib module.
    #[arg(long, default_value = "../shared/bench/snmp_exporter-printer_mib.yml")]
    pub exporter_config: PathBuf,
    /// Upload to the reference cloud, started in this process on loopback (TLS, gzip
    /// offered), the agent activated against it: upload requests and bytes on the wire
    /// are printed. Without it the agent is not activated and the outbox grows.
    #[arg(long)]
    pub cloud: bool,
    /// Print the figures as JSON too.
    #[arg(long)]
    pub json: bool,
}

// The figures come from `/proc` and the fleet from Linux loopback addresses.
#[cfg(unix)]
mod linux;
#[cfg(unix)]
pub use linux::run;

#[cfg(not(unix))]
pub async fn run(_: AgentBench) -> anyhow::Result<()> {
    anyhow::bail!("bench agent measures the agent through /proc: Linux only")
}
