//! `fleet-agent demo`: the built-in default run. Starts a synthetic fleet on loopback,
//! polls every printer on a schedule and prints what it reads, until Ctrl-C.
//! (Later stages add the reference cloud and the local web UI to the same command.)

use crate::poller;
use crate::simulator::{self, Layout, Simulator, synth};
use crate::snmp::{Security, Target, UdpClient};
use clap::Args;
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Duration;

/// `demo` arguments.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of simulated printers.
    #[arg(long, default_value_t = 24)]
    pub printers: usize,
    /// Seconds between polls of the whole fleet.
    #[arg(long, default_value_t = 5)]
    pub interval_secs: u64,
    /// Simulated seconds per real second (600 = ten minutes of printing per second).
    #[arg(long, default_value_t = 600.0)]
    pub speed: f64,
    /// First loopback address of the fleet.
    #[arg(long, default_value = "127.42.0.1")]
    pub fleet_start: Ipv4Addr,
    /// UDP port of the simulated printers (unprivileged by default).
    #[arg(long, default_value_t = 16161)]
    pub port: u16,
    /// Stop after this many polling rounds (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub rounds: u64,
}

/// Runs the demo.
///
/// # Errors
/// When the simulated fleet cannot start (address or port in use).
pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    if !(a.speed.is_finite() && a.speed >= 0.0) {
        anyhow::bail!("--speed {}: must be a finite number >= 0", a.speed);
    }
    let printers = simulator::synthetic_fleet(
        a.printers.max(1),
        synth::SynthParams {
            speed: a.speed,
            seed: 42,
        },
    );
    let sim = Simulator::start(
        printers,
        Layout::Fleet {
            start: a.fleet_start,
            port: a.port,
            community: "public".into(),
        },
        vec![],
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!("cannot start the simulated fleet: {e} (try --port or --fleet-start)")
    })?;
    let addrs = sim.addrs();
    println!(
        "Fleet Agent demo: {} simulated printers on {}..{} port {} (community public), polled every {} s.",
        addrs.len(),
        addrs[0].ip(),
        addrs[addrs.len() - 1].ip(),
        a.port,
        a.interval_secs
    );
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "fleet-agent".into());
    println!("Try in another terminal:  {exe} poll {}", addrs[0]);
    println!(
        "                          {exe} walk {} 1.3.6.1.2.1.43",
        addrs[0]
    );
    println!("Ctrl-C stops.\n");
    let client = UdpClient::new()?;
    let targets: Vec<Target> = addrs
        .iter()
        .map(|ad| Target::new(*ad, Security::v2c("public")))
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs(a.interval_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut round = 0u64;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        round += 1;
        let t0 = tokio::time::Instant::now();
        let results = poller::poll_many(&client, &targets, 64).await;
        let dt = t0.elapsed();
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "round {round}: {} printers polled in {} ms",
            results.len(),
            dt.as_millis()
        )
        .ok();
        writeln!(
            out,
            "  {:<20} {:<20} {:<14} {:>9}  {:<28} alerts",
            "address", "model", "serial", "pages", "lowest supply"
        )
        .ok();
        for (t, r) in targets.iter().zip(&results) {
            match r {
                Ok((rep, _)) => {
                    let low = rep
                        .supplies
                        .iter()
                        .filter(|s| s.percent_remaining.is_some())
                        .min_by_key(|s| s.percent_remaining);
                    let low = low.map_or("-".into(), |s| {
                        format!(
                            "{} {}%",
                            s.description.as_deref().unwrap_or("?"),
                            s.percent_remaining.unwrap_or(0)
                        )
                    });
                    let alerts: Vec<&str> = rep
                        .alerts
                        .iter()
                        .filter_map(|al| al.issue.as_deref())
                        .collect();
                    writeln!(
                        out,
                        "  {:<20} {:<20} {:<14} {:>9}  {:<28} {}",
                        t.addr.to_string(),
                        rep.model_name.as_deref().unwrap_or("-"),
                        rep.serial_number.as_deref().unwrap_or("-"),
                        rep.counters
                            .lifetime_count
                            .map_or("-".into(), |c| c.to_string()),
                        low,
                        if alerts.is_empty() {
                            "-".into()
                        } else {
                            alerts.join("; ")
                        }
                    )
                    .ok();
                }
                Err(e) => {
                    writeln!(out, "  {:<20} error: {e}", t.addr.to_string()).ok();
                }
            }
        }
        writeln!(out).ok();
        if a.rounds > 0 && round >= a.rounds {
            break;
        }
    }
    println!(
        "stopping: {} SNMP requests answered by the simulated fleet",
        sim.requests()
    );
    sim.stop().await;
    Ok(())
}

/// Completes on Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    tokio::signal::ctrl_c().await.ok();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok();
    }
}
