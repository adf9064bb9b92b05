//! The Linux measurement of `bench agent` (see the parent module).

use super::{AgentBench, FleetKind};
use crate::bench::{
    AgentProc, ChildGuard, cpu_seconds_precise, exporter_bench, http_get, rss_kib, spawn_fleet_of,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// One reading of the agent from outside.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    cpu: f64,
    polls: f64,
    failures: f64,
    write_bytes: u64,
    rss_kib: u64,
    outbox_messages: f64,
    outbox_bytes: f64,
    queued: f64,
    acked: f64,
    requests: f64,
    json_bytes: f64,
    body_bytes: f64,
}

/// The recordings that carry a supplies table (prtMarkerSuppliesTable), sorted.
fn recordings_with_supplies(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "snmprec")
            && std::fs::read_to_string(&p)?
                .lines()
                .any(|l| l.starts_with("1.3.6.1.2.1.43.11.1.1."))
        {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        anyhow::bail!(
            "{}: no .snmprec recording with a supplies table",
            dir.display()
        );
    }
    Ok(out)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn sample(pid: u32, listen: &str) -> Sample {
    let text = http_get(listen, "/metrics").await.unwrap_or_default();
    Sample {
        cpu: cpu_seconds_precise(pid).unwrap_or(0.0),
        polls: metric(&text, "fleet_agent_polls_total"),
        failures: metric(&text, "fleet_agent_poll_failures_total"),
        write_bytes: write_bytes(pid),
        rss_kib: rss_kib(Some(pid)).map_or(0, |r| r.0),
        outbox_messages: metric(&text, "fleet_agent_outbox_messages"),
        outbox_bytes: metric(&text, "fleet_agent_outbox_bytes"),
        queued: metric(&text, "fleet_agent_uploads_queued_total"),
        acked: metric(&text, "fleet_agent_uploads_acked_total"),
        requests: metric(&text, "fleet_agent_upload_requests_total"),
        json_bytes: metric(&text, "fleet_agent_upload_json_bytes_total"),
        body_bytes: metric(&text, "fleet_agent_upload_body_bytes_total"),
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs the benchmark.
///
/// # Errors
/// When the fleet or the agent cannot start.
pub async fn run(b: AgentBench) -> anyhow::Result<()> {
    let mib = |k: u64| k as f64 / 1024.0;
    let (fleet, what) = start_fleet(&b)?;
    let (_fleet_guard, addrs): (ChildGuard, Vec<SocketAddr>) = fleet;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let mut extra = String::from("[cloud]\n");
    if let Some(n) = b.outbox_max_bytes {
        extra.push_str(&format!("outbox_max_bytes = {n}\n"));
    }
    let cloud = if b.cloud {
        let c = BenchCloud::start().await?;
        extra.push_str(&format!(
            "url = \"{}\"\nca_file = \"{}\"\n",
            c.cloud.url,
            c.cloud.ca_file.display()
        ));
        Some(c)
    } else {
        None
    };
    let creds = cloud.as_ref().map(|c| c.creds.clone());
    let setup = move |state: &Path| -> anyhow::Result<()> {
        if let Some(creds) = &creds {
            fleet_agent::cloud::save_credentials(state, creds)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    };
    let (mut agent, ready) =
        AgentProc::start_with(&addrs, b.interval_secs, &listen, &extra, &setup)?;
    let pid = agent.pid();
    println!(
        "agent bench: {} printers ({what}), poll interval {} s, {} cycles; fleet-agent run READY=1 after {:.0} ms",
        addrs.len(),
        b.interval_secs,
        b.cycles,
        ready.as_secs_f64() * 1000.0
    );
    println!(
        "  CPU = the whole agent process (all threads, /proc/PID/task/*/schedstat); written = bytes sent to the storage layer (/proc/PID/io write_bytes)"
    );
    let t0 = Instant::now();
    let mut prev = sample(pid, &listen).await;
    let mut cycles = Vec::new();
    for c in 1..=b.cycles {
        tokio::time::sleep_until(t0 + Duration::from_secs(b.interval_secs * c)).await;
        let s = sample(pid, &listen).await;
        let polls = (s.polls - prev.polls).max(0.0);
        let cpu = s.cpu - prev.cpu;
        let per_poll_ms = if polls > 0.0 {
            cpu / polls * 1000.0
        } else {
            f64::NAN
        };
        let written = s.write_bytes.saturating_sub(prev.write_bytes);
        println!(
            "  cycle {c}: {polls:.0} polls ({:.0} failed), CPU {cpu:.3} s = {per_poll_ms:.3} ms per poll, written {:.1} KiB = {:.0} B per poll, {:.0} uploads queued, outbox {:.0} messages / {:.1} MiB, RSS {:.1} MiB",
            s.failures - prev.failures,
            written as f64 / 1024.0,
            if polls > 0.0 {
                written as f64 / polls
            } else {
                0.0
            },
            s.queued - prev.queued,
            s.outbox_messages,
            s.outbox_bytes / 1048576.0,
            mib(s.rss_kib),
        );
        if cloud.is_some() {
            let req = s.requests - prev.requests;
            println!(
                "           uploads: {:.0} messages acknowledged in {req:.0} requests, {:.1} KiB on the wire ({:.1} KiB of JSON, {:.1}x smaller), {:.0} B per printer",
                s.acked - prev.acked,
                (s.body_bytes - prev.body_bytes) / 1024.0,
                (s.json_bytes - prev.json_bytes) / 1024.0,
                (s.json_bytes - prev.json_bytes) / (s.body_bytes - prev.body_bytes).max(1.0),
                (s.body_bytes - prev.body_bytes) / addrs.len().max(1) as f64,
            );
        }
        cycles.push((polls, cpu, written, s));
        prev = s;
    }
    let peak = rss_kib(Some(pid)).map_or(0, |r| r.1);
    let (stop, code) = agent.stop()?;
    // Steady state: the cycles after the first two (first snapshots, then the first
    // comparison with them).
    let steady: Vec<_> = cycles.iter().skip(2).collect();
    let steady = if steady.is_empty() {
        cycles.iter().skip(1).collect()
    } else {
        steady
    };
    let polls: f64 = steady.iter().map(|c| c.0).sum();
    let cpu: f64 = steady.iter().map(|c| c.1).sum();
    let written: u64 = steady.iter().map(|c| c.2).sum();
    let ours_ms = cpu / polls.max(1.0) * 1000.0;
    let first_steady_ms = steady
        .first()
        .map_or(f64::NAN, |c| c.1 / c.0.max(1.0) * 1000.0);
    let last_steady_ms = steady
        .last()
        .map_or(f64::NAN, |c| c.1 / c.0.max(1.0) * 1000.0);
    println!(
        "fleet-agent run, steady state (cycles 3..): {ours_ms:.3} ms CPU per printer poll ({:.0} polls per CPU-second), {:.0} B written per poll; last/first steady cycle {:.2}x; RSS peak {:.1} MiB; SIGTERM to exit {:.0} ms (status {code:?})",
        1000.0 / ours_ms,
        written as f64 / polls.max(1.0),
        last_steady_ms / first_steady_ms,
        mib(peak),
        stop.as_secs_f64() * 1000.0
    );
    if let (Some(c), Some(last)) = (&cloud, cycles.last()) {
        // With the recordings nothing changes after the first snapshots, so every byte
        // of the run is one snapshot per printer: what a printer whose only change is its
        // page count sends in a day (one heartbeat24h snapshot, nothing else). Bodies
        // only: HTTP headers and TLS framing (a few hundred bytes per request) come on
        // top, shared by the messages of a batch.
        let n = addrs.len().max(1) as f64;
        let s = &last.3;
        println!(
            "uploads to the reference cloud, whole run: {:.0} messages in {:.0} requests ({:.1} per request), {:.0} B of JSON and {:.0} B on the wire per printer ({:.1}x smaller); the cloud applied {} reports",
            s.acked,
            s.requests,
            s.acked / s.requests.max(1.0),
            s.json_bytes / n,
            s.body_bytes / n,
            s.json_bytes / s.body_bytes.max(1.0),
            c.applied()
        );
        println!(
            "  per printer per day, page counts alone (one 24-h snapshot, batched, gzip): {:.0} B of request body",
            s.body_bytes / s.acked.max(1.0)
        );
    }
    let exporter = if b.exporter == "none" {
        None
    } else {
        let mut runs = Vec::new();
        for _ in 0..2 {
            match exporter_bench(&b.exporter, &b.exporter_config, 256, &addrs).await {
                Ok(e) => runs.push(e),
                Err(e) => {
                    eprintln!("snmp_exporter: skipped: {e:#}");
                    break;
                }
            }
        }
        // The second scrape of each printer is the steady one (the exporter's first
        // scrape also pays for its connection set-up).
        runs.pop()
    };
    let mut ratio = None;
    if let Some(e) = &exporter {
        let theirs_ms = e.cpu / addrs.len().max(1) as f64 * 1000.0;
        ratio = Some(theirs_ms / ours_ms);
        println!(
            "snmp_exporter printer_mib, same fleet: {}/{} scrapes, {theirs_ms:.3} ms CPU per scrape, RSS peak {:.1} MiB",
            e.ok,
            addrs.len(),
            mib(e.hwm_kib)
        );
        println!(
            "ratio: fleet-agent run is {:.1}x as efficient per printer as snmp_exporter (whole agent: poll, decode, store, upload rule, outbox; vs one printer_mib scrape)",
            theirs_ms / ours_ms
        );
    }
    if b.json {
        let v = serde_json::json!({
            "printers": addrs.len(), "fleet": what, "intervalSecs": b.interval_secs,
            "cycles": cycles.iter().map(|c| serde_json::json!({
                "polls": c.0, "cpuSeconds": c.1, "writtenBytes": c.2,
                "outboxMessages": c.3.outbox_messages, "outboxBytes": c.3.outbox_bytes,
                "rssKib": c.3.rss_kib })).collect::<Vec<_>>(),
            "steadyCpuMsPerPoll": ours_ms, "steadyWrittenBytesPerPoll": written as f64 / polls.max(1.0),
            "peakRssKib": peak,
            "exporterCpuMsPerScrape": exporter.as_ref().map(|e| e.cpu / addrs.len().max(1) as f64 * 1000.0),
            "ratio": ratio,
        });
        println!("{v}");
    }
    Ok(())
}

/// The reference cloud in this process, one agent instance activated.
struct BenchCloud {
    cloud: fleet_cloud::testing::TestCloud,
    creds: fleet_agent::cloud::client::Credentials,
    dir: PathBuf,
}

impl BenchCloud {
    async fn start() -> anyhow::Result<BenchCloud> {
        let dir =
            std::env::temp_dir().join(format!("fleet-agent-bench-cloud-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let cloud = fleet_cloud::testing::TestCloud::serve(&dir, |c| c).await;
        let client = fleet_agent::cloud::client::CloudClient::new(
            &cloud.url,
            Some(cloud.ca_pem.as_bytes()),
            Duration::from_secs(10),
        )?;
        let creds = client.activate(&cloud.code).await?;
        Ok(BenchCloud { cloud, creds, dir })
    }

    /// Reports the cloud applied (snapshots and deltas), over every printer.
    fn applied(&self) -> usize {
        self.cloud
            .db
            .upload_totals()
            .map_or(0, |(_, applied, _)| applied as usize)
    }
}

impl Drop for BenchCloud {
    fn drop(&mut self) {
        // The cloud's server stops with it.
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

type Fleet = (ChildGuard, Vec<SocketAddr>);

fn start_fleet(b: &AgentBench) -> anyhow::Result<(Fleet, String)> {
    match b.fleet {
        FleetKind::Synthetic => Ok((
            spawn_fleet_of(
                &["--synthetic".to_string(), b.printers.to_string()],
                b.printers,
                b.fleet_start,
                b.port,
            )?,
            "synthetic".to_string(),
        )),
        FleetKind::Recordings => {
            let dir = b.recordings.clone().unwrap_or_else(|| {
                std::env::var_os("FLEET_AGENT_LIBRENMS_DIR")
                    .map_or_else(
                        || PathBuf::from("../shared/fixtures/librenms"),
                        PathBuf::from,
                    )
                    .join("snmprec")
            });
            let files = recordings_with_supplies(&dir)?;
            let mut args = Vec::new();
            for f in &files {
                args.push("--file".to_string());
                args.push(f.display().to_string());
            }
            args.push("--repeat-to".into());
            args.push(b.printers.to_string());
            // Serial numbers made unique per copy: the Printer-MIB's and every vendor
            // serial object the agent reads.
            args.push("--unique-prefix".into());
            args.push("1.3.6.1.2.1.43.5.1.1.17".into());
            for v in fleet_agent::printer::oids::VENDORS {
                for s in v.serial {
                    args.push("--unique-prefix".into());
                    args.push(s.iter().map(u32::to_string).collect::<Vec<_>>().join("."));
                }
            }
            let what = format!(
                "{} LibreNMS recordings with a supplies table, repeated",
                files.len()
            );
            Ok((
                spawn_fleet_of(&args, b.printers, b.fleet_start, b.port)?,
                what,
            ))
        }
    }
}
