//! The outage benchmark (issue 16, goals 2 and 3): a day without the cloud at 10,000
//! printers, then the cloud's return. Figures, not assertions.
//!
//! 1. **The outage**, on a paused clock: the whole agent (`app::run`, as `fleet-agent run`
//!    builds it: supervisor, poller, store, upload rule, outbox, page) runs in this process
//!    on a current-thread runtime whose time is paused, its wall clock following tokio's,
//!    so a simulated day passes in minutes and the same thing happens every run. The
//!    printers are the simulator's synthetic printers in memory (`FakeSnmp`), printing
//!    fast enough that a supply falls by the upload rule's step every cycle, so every poll
//!    queues a delta. No cloud is configured: every upload waits in the outbox, which
//!    fills to its byte cap and evicts. Printed per simulated hour: CPU of the process per
//!    printer poll (the agent, and the in-memory printers' answers: no UDP, no BER on the
//!    printers' side), the outbox, RSS. At the end: what the outbox kept, and whether
//!    every printer's latest snapshot is in it.
//! 2. **The return**: the reference cloud starts (HTTPS on loopback, in this process), the
//!    agent is activated against it, and the real `fleet-agent run` process (no printers
//!    configured, so it only sends) drains the backlog. Printed: messages per second from
//!    the process's start to an empty outbox, and the cloud's own counts (message ids,
//!    reports applied, distinct reports applied: equal when nothing was applied twice).
//!
//! `cargo bench --bench outage -- --printers 10000` (the figures in docs/performance.md);
//! `.ci/run` runs a smaller fleet. `--agent-bin` names the `fleet-agent` binary to drain
//! with (default: the one cargo built beside this bench).

use clap::Parser;
use fleet_agent::app::{self, Deps, Ended};
use fleet_agent::clock::Clock;
use fleet_sim::synth::{MODELS, SynthParams, SynthPrinter, Template};
use fleet_snmp::fake::FakeSnmp;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "A day without the cloud at N printers, then the backlog's drain")]
struct Args {
    /// Printers (synthetic, in memory).
    #[arg(long, default_value_t = 10_000)]
    printers: u32,
    /// Simulated hours without the cloud.
    #[arg(long, default_value_t = 24)]
    hours: u64,
    /// The agent's poll interval (simulated seconds; the agent's default is 300).
    #[arg(long, default_value_t = 300)]
    interval_secs: u64,
    /// The printers' speed (simulated seconds per second of the agent's clock): high
    /// enough that toner falls by the upload rule's 1 % step every cycle.
    #[arg(long, default_value_t = 40.0)]
    speed: f64,
    /// The outbox cap (`cloud.outbox_max_bytes`); the agent's default (64 MiB) when not given.
    #[arg(long)]
    outbox_max_bytes: Option<u64>,
    /// The `fleet-agent` binary that drains the backlog.
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// Skip the drain (the outage only).
    #[arg(long)]
    no_drain: bool,
}

const HOUR_MS: i64 = 3_600_000;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`. Without it this is `cargo test --all-targets`
    // (with the test harness's arguments): a small run, the checks below included, so
    // the bench is known to work before anyone reads its figures.
    let args = if std::env::args().any(|a| a == "--bench") {
        Args::parse_from(std::env::args().filter(|a| a != "--bench"))
    } else {
        println!("outage bench under cargo test: 100 printers, 4 hours, a 1 MiB cap");
        Args {
            printers: 100,
            hours: 4,
            interval_secs: 300,
            speed: 40.0,
            outbox_max_bytes: Some(1 << 20),
            agent_bin: None,
            no_drain: false,
        }
    };
    let dir = tempfile::tempdir()?;
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()?;
    let day = paused.block_on(outage(&args, dir.path()))?;
    drop(paused);
    if !args.no_drain {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(drain(&args, dir.path(), &day))?;
    }
    Ok(())
}

/// CPU seconds of this process's threads (`/proc/self/task/*/schedstat`, nanoseconds).
fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU seconds of a process's threads: `pid` is a number or `self`.
fn cpu_seconds_of(pid: &str) -> f64 {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 / 1e9
}

/// (current, peak) RSS of this process in MiB.
fn rss_mib() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |k| k / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the outage left behind.
struct Day {
    state: PathBuf,
    messages: u64,
    queued: u64,
    dropped: u64,
}

async fn outage(a: &Args, dir: &Path) -> anyhow::Result<Day> {
    let start_rss = rss_mib().0;
    // The printers, in memory; their page counts and supplies move with tokio's clock.
    let fake = FakeSnmp::unlogged();
    let templates: Vec<_> = MODELS.iter().map(Template::new).collect();
    let base = u32::from(Ipv4Addr::new(127, 98, 0, 0));
    let mut conf = String::new();
    for i in 0..a.printers {
        let addr = SocketAddr::from((Ipv4Addr::from(base + 1 + i), 161));
        let t = templates[i as usize % templates.len()].clone();
        let p = SynthPrinter::new(
            t,
            i + 1,
            SynthParams {
                speed: a.speed,
                seed: 16,
            },
        );
        fake.add_store(addr, Box::new(p));
        conf.push_str(&format!("[[printers]]\naddress = \"{addr}\"\n"));
    }
    let fleet_rss = rss_mib().0 - start_rss;
    let state = dir.join("state");
    let cap = a
        .outbox_max_bytes
        .map(|n| format!("[cloud]\noutbox_max_bytes = {n}\n"))
        .unwrap_or_default();
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[poller]\ninterval_secs = {}\ndeadline_secs = {}\n{cap}\
             [[snmp_profiles]]\nname = \"default\"\nauth = {{ type = \"v2c\", community = \"public\" }}\ntimeout_ms = 2000\nretries = 1\n{conf}",
            state.display(),
            a.interval_secs,
            (a.interval_secs * 8 / 10).max(1),
        ),
    )?;
    let source = fleet_agent::config::Source::read(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (logs, _guard) =
        fleet_agent::telemetry::Logs::for_this_thread("warn", Some(&dir.join("agent.log")))?;
    // The day ends about now, so the backlog's times are plausible to the cloud.
    let hours_ms = i64::try_from(a.hours)? * HOUR_MS;
    let clock = Clock::following_tokio(Clock::system().now_ms() - hours_ms - 60_000);
    let mut deps = Deps::new(state.clone(), logs, fleet_agent::update::Launch::Installed)
        .with_clock(clock.clone());
    deps.listener = Some(std::net::TcpListener::bind("127.0.0.1:0")?);
    deps.snmp = Some(fleet_agent::poller::Snmp::Fake(fake.clone()));
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(app::run(source, deps, async move {
        stop_rx.await.ok();
    }));
    println!(
        "outage bench: {} synthetic printers in memory ({fleet_rss:.1} MiB of RSS before the agent started), poll every {} s, {} simulated hours without the cloud, outbox cap {}",
        a.printers,
        a.interval_secs,
        a.hours,
        a.outbox_max_bytes
            .map_or("64 MiB (default)".to_string(), |n| format!("{n} B")),
    );
    println!(
        "  CPU = this process per printer poll (the agent in process on a paused clock, plus the in-memory printers' answers); outbox from the store"
    );
    // Sample once per simulated hour (the store is read through its own connection).
    let interval = Duration::from_secs(a.interval_secs);
    let hour = Duration::from_secs(3600);
    tokio::time::sleep(interval / 2).await;
    if run.is_finished() {
        run.await??;
        anyhow::bail!("the agent stopped at start");
    }
    let store = loop {
        match fleet_agent::store::Store::open(&state) {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    let cycles_per_hour = (3600.0 / a.interval_secs as f64).max(1.0);
    let polls_per_hour = cycles_per_hour * f64::from(a.printers);
    let t_start = tokio::time::Instant::now();
    let (mut cpu0, mut queued0) = (cpu_seconds(), 0u64);
    let mut first_steady: Option<f64> = None;
    let mut at_cap: Vec<f64> = Vec::new();
    let mut peak_outbox = 0u64;
    let cap_bytes = a.outbox_max_bytes.unwrap_or(64 << 20);
    for h in 1..=a.hours {
        tokio::time::sleep_until(t_start + hour * u32::try_from(h)?).await;
        let st = store.outbox_stats()?;
        let queued = st.messages + st.dropped;
        let cpu = cpu_seconds();
        let ms_per_poll = (cpu - cpu0) / polls_per_hour * 1000.0;
        let full = st.bytes * 100 >= cap_bytes * 95;
        if h >= 2 && first_steady.is_none() {
            first_steady = Some(ms_per_poll);
        }
        if full && st.dropped > 0 {
            at_cap.push(ms_per_poll);
        }
        peak_outbox = peak_outbox.max(st.bytes);
        let (rss, hwm) = rss_mib();
        println!(
            "  hour {h:>2}: {:.3} ms CPU per poll, {} queued ({:.1} per poll), outbox {} messages / {:.1} MiB{}, {} evicted so far, RSS {rss:.1} MiB (peak {hwm:.1})",
            ms_per_poll,
            queued - queued0,
            (queued - queued0) as f64 / polls_per_hour,
            st.messages,
            st.bytes as f64 / 1048576.0,
            if full { " (at the cap)" } else { "" },
            st.dropped,
        );
        cpu0 = cpu;
        queued0 = queued;
    }
    stop.send(()).ok();
    let ended = run.await??;
    anyhow::ensure!(matches!(ended, Ended::Stopped), "the agent did not stop");
    let st = store.outbox_stats()?;
    // Before the check below reads the whole outbox into this process.
    let (_, hwm) = rss_mib();
    // What was kept: every printer's latest snapshot must be there (the README's promise).
    let msgs = store.due_messages(usize::MAX >> 1, i64::MAX)?;
    let mut with_snapshot = BTreeSet::new();
    let (mut snaps, mut deltas) = (0usize, 0usize);
    for m in &msgs {
        match m.kind.as_str() {
            "snapshot" => {
                snaps += 1;
                if let Some(k) = &m.printer_key {
                    with_snapshot.insert(k.clone());
                }
            }
            "delta" => deltas += 1,
            _ => {}
        }
    }
    println!(
        "after {} simulated hours: outbox {} messages ({snaps} snapshots, {deltas} deltas) / {:.1} MiB of {:.1} MiB (peak {:.1} MiB), {} queued, {} evicted; {} of {} printers have a snapshot kept",
        a.hours,
        st.messages,
        st.bytes as f64 / 1048576.0,
        cap_bytes as f64 / 1048576.0,
        peak_outbox as f64 / 1048576.0,
        st.messages + st.dropped,
        st.dropped,
        with_snapshot.len(),
        a.printers,
    );
    anyhow::ensure!(
        with_snapshot.len() == a.printers as usize,
        "the outbox lost the latest snapshot of {} printers",
        a.printers as usize - with_snapshot.len()
    );
    // Over the cap only when nothing but latest snapshots is left (kept over it).
    anyhow::ensure!(
        st.bytes <= cap_bytes || st.messages == with_snapshot.len() as u64,
        "the outbox is over its cap"
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    match (first_steady, at_cap.last()) {
        (Some(f), Some(last)) => println!(
            "flat under backlog: {f:.3} ms per poll in hour 2 (first steady hour), {:.3} ms mean over the {} hours at the cap, {last:.3} ms in the last ({:.2}x the first steady hour); peak RSS of the process {hwm:.1} MiB, of which the in-memory printers {fleet_rss:.1} MiB",
            mean(&at_cap),
            at_cap.len(),
            last / f
        ),
        _ => println!(
            "the outbox did not reach its cap in {} hours; peak RSS {hwm:.1} MiB",
            a.hours
        ),
    }
    Ok(Day {
        state,
        messages: st.messages,
        queued: st.messages + st.dropped,
        dropped: st.dropped,
    })
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

async fn get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

async fn drain(a: &Args, dir: &Path, day: &Day) -> anyhow::Result<()> {
    let cloud = fleet_cloud::testing::TestCloud::serve(dir, |c| c).await;
    let (db, url, ca_file) = (&cloud.db, &cloud.url, &cloud.ca_file);
    let client = fleet_agent::cloud::client::CloudClient::new(
        url,
        Some(cloud.ca_pem.as_bytes()),
        Duration::from_secs(10),
    )?;
    let creds = client.activate(&cloud.code).await?;
    fleet_agent::cloud::save_credentials(&day.state, &creds).map_err(|e| anyhow::anyhow!("{e}"))?;
    let web = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let conf = dir.join("drain.toml");
    std::fs::write(
        &conf,
        format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"{web}\"\n[cloud]\nurl = \"{url}\"\nca_file = \"{}\"\n{}",
            day.state.display(),
            ca_file.display(),
            a.outbox_max_bytes
                .map(|n| format!("outbox_max_bytes = {n}\n"))
                .unwrap_or_default(),
        ),
    )?;
    let bin = a
        .agent_bin
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fleet-agent")));
    let log = std::fs::File::create(dir.join("drain.log"))?;
    let t0 = tokio::time::Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .args(["run", "--config"])
        .arg(&conf)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let addr = web.to_string();
    let cloud_cpu0 = cpu_seconds();
    let pid = child.id().unwrap_or(0).to_string();
    let agent_cpu = || cpu_seconds_of(&pid);
    let mut agent_cpu_s = 0.0;
    let deadline = t0 + Duration::from_secs(600);
    let mut first_ack = None;
    let drained = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = get(&addr, "/metrics").await.unwrap_or_default();
        let (left, acked) = (
            metric(&text, "fleet_agent_outbox_messages"),
            metric(&text, "fleet_agent_uploads_acked_total").unwrap_or(0.0),
        );
        agent_cpu_s = agent_cpu().max(agent_cpu_s);
        if first_ack.is_none() && acked > 0.0 {
            first_ack = Some(t0.elapsed());
        }
        // The gauge moves once the sender has acknowledged a batch.
        if acked >= day.messages as f64 || (acked > 0.0 && left == Some(0.0)) {
            break Some(t0.elapsed());
        }
        if tokio::time::Instant::now() > deadline {
            break None;
        }
    };
    let cloud_cpu_s = cpu_seconds() - cloud_cpu0;
    let text = get(&addr, "/metrics").await.unwrap_or_default();
    let acked = metric(&text, "fleet_agent_uploads_acked_total").unwrap_or(0.0);
    let requests = metric(&text, "fleet_agent_upload_requests_total").unwrap_or(0.0);
    if let Some(pid) = child.id() {
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
    }
    child.wait().await?;
    let left = fleet_agent::store::Store::open(&day.state)?.outbox_stats()?;
    let (ids, applied, distinct) = db.upload_totals()?;
    let reached = day.queued - day.dropped;
    anyhow::ensure!(
        left.messages == 0 && applied == distinct && applied == reached,
        "after the drain: {} messages left, {applied} reports applied ({distinct} distinct) of {reached}",
        left.messages
    );
    match drained {
        Some(t) => println!(
            "the cloud's return: fleet-agent run drained {} messages in {:.2} s from its start ({:.0} messages per second; first acknowledgement after {:.2} s), {acked:.0} acknowledged in {requests:.0} requests; {} left in the outbox, {} rejected by the cloud; CPU meanwhile: the agent process {agent_cpu_s:.2} s, the reference cloud (this process) {cloud_cpu_s:.2} s",
            day.messages,
            t.as_secs_f64(),
            day.messages as f64 / t.as_secs_f64(),
            first_ack.map_or(f64::NAN, |f| f.as_secs_f64()),
            left.messages,
            left.rejected,
        ),
        None => println!(
            "the cloud's return: the outbox was not empty after 600 s ({acked:.0} of {} acknowledged)",
            day.messages
        ),
    }
    println!(
        "  counted by the cloud: {ids} upload ids (batches) received, {applied} reports applied ({} distinct printer and sequence numbers: {} applied twice); the agent queued {} in the outage and evicted {} (oldest deltas with the deltas built on them), so {} were to reach the cloud: {} not applied",
        distinct,
        applied.saturating_sub(distinct),
        day.queued,
        day.dropped,
        reached,
        reached.saturating_sub(applied),
    );
    Ok(())
}
