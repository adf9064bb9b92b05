//! `fleet-lab simulate`: serves `.snmprec` recordings and synthetic printers over real
//! UDP, on one port (community = recording name, as snmpsim) or as a fleet with one
//! loopback address per printer.

use fleet_agent::cli::exit::{self, Exit};
use fleet_sim::cli::{ArgsError, SimulateArgs};
use std::io::Write;

/// Serves until Ctrl-C.
///
/// # Errors
/// Unreadable recordings (66), unusable arguments (2), sockets that cannot be bound.
pub async fn run(a: SimulateArgs) -> Result<(), Exit> {
    let fail = |code: i32, message: String| Exit { code, message };
    let (sim, warnings) = a.start().await.map_err(|e| match e {
        ArgsError::Input(m) => fail(exit::NO_INPUT, m),
        ArgsError::Usage(m) => fail(exit::USAGE, m),
        e @ ArgsError::Start(_) => fail(exit::FAILURE, e.to_string()),
    })?;
    for w in &warnings {
        eprintln!("warning: {w} (line skipped)");
    }
    let served = sim.served();
    let count = served.len();
    if let Some(p) = &a.targets_out {
        let json =
            serde_json::to_vec_pretty(&served).map_err(|e| fail(exit::FAILURE, e.to_string()))?;
        std::fs::write(p, json)
            .map_err(|e| fail(exit::FAILURE, format!("{}: {e}", p.display())))?;
    }
    let addrs = sim.addrs();
    // Standard output may be a pipe that the reader closes after the first line: write
    // errors must not stop the simulator.
    let mut out = std::io::stdout().lock();
    if addrs.len() == 1 {
        writeln!(
            out,
            "listening on {} ({count} printers; community = printer name)",
            addrs[0]
        )
        .ok();
    } else {
        writeln!(
            out,
            "listening on {} addresses from {} ({count} printers; community {:?} or the printer name)",
            addrs.len(),
            addrs[0],
            a.community
        )
        .ok();
    }
    for s in served.iter().take(20) {
        writeln!(
            out,
            "  {:<28} {:<22} community {}",
            s.name, s.addr, s.community
        )
        .ok();
    }
    if served.len() > 20 {
        writeln!(
            out,
            "  ... and {} more (--targets-out FILE lists them all)",
            served.len() - 20
        )
        .ok();
    }
    out.flush().ok();
    drop(out);
    fleet_agent::platform::shutdown_signal().await;
    writeln!(
        std::io::stderr(),
        "stopping ({} requests answered)",
        sim.requests()
    )
    .ok();
    sim.stop().await;
    Ok(())
}
