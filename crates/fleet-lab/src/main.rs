//! `fleet-lab`: what a developer, a tester or an integrator runs beside the agent, never
//! installed on an agent host: the whole-product demo, the printer simulator, the
//! benchmarks and an mDNS advertiser.
//!
//! # Modules
//! - [`demo`]: simulated fleet + reference cloud + the agent and its page, in one process.
//! - [`simulate`]: simulated printers over real UDP (recordings and synthetic).
//! - [`bench`]: measured figures against simulated printers and snmp_exporter.
//! - [`mdns`]: advertise a printer service over mDNS/DNS-SD.

mod bench;
mod demo;
mod mdns;
mod simulate;

use clap::{Parser, Subcommand};
use fleet_agent::cli::exit::{self, Exit};

/// Fleet Agent's lab tools: demo, simulator, benchmarks.
#[derive(Parser, Debug)]
#[command(name = "fleet-lab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the demo: simulated printers, the reference cloud and the agent with its page
    /// (Ctrl-C stops).
    Demo(demo::DemoArgs),
    /// Serve simulated printers over SNMP (recordings or synthetic), until Ctrl-C.
    Simulate(fleet_sim::cli::SimulateArgs),
    /// Measure the agent against simulated printers (and snmp_exporter).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Advertise a printer service over mDNS/DNS-SD until Ctrl-C.
    MdnsAdvertise(mdns::MdnsAdvertiseArgs),
}

/// A binary of the same build, beside this one (`fleet-agent`, `fleet-cloud`).
fn sibling(name: &str) -> std::path::PathBuf {
    let exe = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(&exe)))
        .unwrap_or_else(|| exe.into())
}

fn main() {
    let cli = Cli::parse();
    let logs = fleet_agent::telemetry::Logs::init("warn", None).unwrap_or_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(exit::FAILURE);
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Demo(a) => demo::run(a, logs).await.map_err(Exit::from),
            Command::Simulate(a) => simulate::run(a).await,
            Command::Bench(b) => bench::run(b).await.map_err(Exit::from),
            Command::MdnsAdvertise(a) => mdns::run(a).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {}", e.message);
        std::process::exit(e.code);
    }
}
