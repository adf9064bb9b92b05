//! `fleet-lab bench`: measured figures, never assertions. `bench poll` starts a
//! synthetic fleet (a child `fleet-lab simulate` process, so its CPU is not counted as
//! ours), polls every printer for the full report, and prints printers/s, CPU seconds and
//! peak RSS; with Debian's `prometheus-snmp-exporter` installed it scrapes the same
//! printers with the `printer_mib` module and prints the ratio.

use clap::{Args, Subcommand};
use fleet_agent::poller;
use fleet_snmp::{Security, Target, UdpClient};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

mod agent;
pub use agent::AgentBench;

/// Bench subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Poll N simulated printers for the full report; compare with snmp_exporter.
    Poll(PollBench),
    /// Run the scheduled poller (with its SQLite store) over N simulated printers for
    /// several cycles: cycle time, CPU, RSS, and idle CPU between cycles.
    PollCycle(PollCycleBench),
    /// Sweep a /16 (65,536 addresses, ~1 % printers, the rest silent) inside a network
    /// namespace created for the run; prints time, packets/s against the limit, CPU, RSS.
    Discover(DiscoverBench),
    /// The agent as a service process (`fleet-agent run`): start-up time to systemd's
    /// READY=1, idle RSS with no printers, RSS with N printers after a full cycle, and the
    /// time from SIGTERM to exit.
    Service(ServiceBench),
    /// The whole agent process (`fleet-agent run`) polling a simulated fleet (real
    /// recordings repeated, or synthetic printers) for several cycles, measured from
    /// outside: CPU per printer poll, RSS, store bytes written, outbox; beside
    /// snmp_exporter's CPU per scrape of the same fleet.
    Agent(AgentBench),
}

/// `bench service` arguments.
#[derive(Args, Debug)]
pub struct ServiceBench {
    /// Simulated printers for the loaded measurement.
    #[arg(long, default_value_t = 1000)]
    pub printers: usize,
    /// First loopback address of the simulated fleet.
    #[arg(long, default_value = "127.60.0.1")]
    pub fleet_start: Ipv4Addr,
    /// UDP port of the simulated printers.
    #[arg(long, default_value_t = 161)]
    pub port: u16,
    /// Poll interval of the loaded agent (printers are spread over it; 10 at least).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(10..))]
    pub interval_secs: u64,
}

/// `bench discover` arguments.
#[derive(Args, Debug)]
pub struct DiscoverBench {
    /// Simulated printers among the 65,536 addresses.
    #[arg(long, default_value_t = 655)]
    pub printers: usize,
    /// Per-attempt timeout.
    #[arg(long, default_value_t = 250)]
    pub timeout_ms: u64,
    /// Retries.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Microseconds between probe packets (the seed's network usage delay; 250 = 4,000/s).
    #[arg(long, default_value_t = 250)]
    pub network_delay: u64,
    /// Addresses in flight.
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Internal: already inside the namespace.
    #[arg(long, hide = true)]
    pub inside: bool,
}

/// `bench poll-cycle` arguments.
#[derive(Args, Debug)]
pub struct PollCycleBench {
    /// Number of simulated printers.
    #[arg(long, default_value_t = 10_000)]
    pub printers: usize,
    /// Cycles to run.
    #[arg(long, default_value_t = 3)]
    pub cycles: usize,
    /// Poll interval (one cycle per interval).
    #[arg(long, default_value_t = 60)]
    pub interval_secs: u64,
    /// Printers polled at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// First loopback address of the simulated fleet.
    #[arg(long, default_value = "127.30.0.1")]
    pub fleet_start: Ipv4Addr,
    /// UDP port of the simulated printers.
    #[arg(long, default_value_t = 161)]
    pub port: u16,
}

/// `bench poll` arguments.
#[derive(Args, Debug)]
pub struct PollBench {
    /// Number of simulated printers.
    #[arg(long, default_value_t = 1000)]
    pub printers: usize,
    /// Printers polled at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Full passes over the fleet (the best and median are printed).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// First loopback address of the simulated fleet.
    #[arg(long, default_value = "127.20.0.1")]
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
    /// Print the figures as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// Dispatches a bench subcommand.
///
/// # Errors
/// When the simulator cannot start or the poll fails wholesale.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Poll(b) => poll_bench(b).await,
        BenchCommand::PollCycle(b) => poll_cycle_bench(b).await,
        BenchCommand::Discover(b) => discover_bench(b).await,
        BenchCommand::Service(b) => service_bench(b).await,
        BenchCommand::Agent(b) => agent::run(b).await,
    }
}

/// One `fleet-agent run` process watched through a notify socket.
#[cfg(unix)]
struct AgentProc {
    child: ChildGuard,
    sock: std::os::unix::net::UnixDatagram,
    dir: PathBuf,
}

#[cfg(unix)]
impl Drop for AgentProc {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[cfg(unix)]
impl AgentProc {
    /// Starts the agent with `printers`; returns it and the time to READY=1.
    fn start(printers: &[SocketAddr], interval_secs: u64) -> anyhow::Result<(AgentProc, Duration)> {
        Self::start_with(printers, interval_secs, "127.0.0.1:0", "", &|_| Ok(()))
    }

    /// As [`AgentProc::start`], with the web page on `listen`, `extra` TOML appended, and
    /// `setup` run on the state directory before the start (to store credentials).
    fn start_with(
        printers: &[SocketAddr],
        interval_secs: u64,
        listen: &str,
        extra: &str,
        setup: &dyn Fn(&std::path::Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<(AgentProc, Duration)> {
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fleet-agent-bench-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let sock_path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path)?;
        let mut conf = format!(
            "[agent]\nstate_dir = \"{}\"\n[web]\nlisten = \"{listen}\"\n[poller]\ninterval_secs = {interval_secs}\ndeadline_secs = {}\n{extra}\n",
            dir.join("state").display(),
            (interval_secs * 8 / 10).max(1)
        );
        for a in printers {
            conf.push_str(&format!("[[printers]]\naddress = \"{a}\"\n"));
        }
        fleet_agent::config::parse("bench configuration", &conf)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let conf_path = dir.join("agent.toml");
        std::fs::write(&conf_path, conf)?;
        std::fs::create_dir_all(dir.join("state"))?;
        setup(&dir.join("state"))?;
        let t = Instant::now();
        let child = Command::new(crate::sibling("fleet-agent"))
            .args(["run", "--config"])
            .arg(&conf_path)
            .env("NOTIFY_SOCKET", &sock_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let p = AgentProc {
            child: ChildGuard(child),
            sock,
            dir,
        };
        p.wait_for("READY=1", Duration::from_secs(30))?;
        Ok((p, t.elapsed()))
    }

    fn wait_for(&self, what: &str, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        let mut buf = [0u8; 2048];
        while Instant::now() < until {
            self.sock.set_read_timeout(Some(until - Instant::now()))?;
            let Ok(n) = self.sock.recv(&mut buf) else {
                break;
            };
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == what)
            {
                return Ok(());
            }
        }
        anyhow::bail!("the agent did not say {what} within {within:?}")
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// SIGTERM, then the time until the process exited (and its status).
    fn stop(&mut self) -> anyhow::Result<(Duration, Option<i32>)> {
        let t = Instant::now();
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        let status = self.child.0.wait()?;
        Ok((t.elapsed(), status.code()))
    }
}

#[cfg(unix)]
async fn service_bench(b: ServiceBench) -> anyhow::Result<()> {
    let mib = |k: u64| k as f64 / 1024.0;
    // Idle: no printers, no cloud.
    let (mut idle, ready) = AgentProc::start(&[], 300)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu0 = cpu_seconds_precise(idle.pid()).unwrap_or(0.0);
    let (idle_rss, _) = rss_kib(Some(idle.pid())).unwrap_or((0, 0));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu = cpu_seconds_precise(idle.pid()).unwrap_or(0.0) - cpu0;
    let (stop_idle, code_idle) = idle.stop()?;
    println!(
        "service, idle: READY=1 after {:.0} ms, RSS {:.1} MiB, CPU {:.3} % over 5 s ({:.1} ms), SIGTERM to exit {:.0} ms (status {code_idle:?})",
        ready.as_secs_f64() * 1000.0,
        mib(idle_rss),
        idle_cpu / 5.0 * 100.0,
        idle_cpu * 1000.0,
        stop_idle.as_secs_f64() * 1000.0
    );
    // Loaded: N simulated printers, one full cycle.
    let (_fleet, addrs) = spawn_fleet(b.printers, b.fleet_start, b.port)?;
    let (mut agent, ready) = AgentProc::start(&addrs, b.interval_secs)?;
    tokio::time::sleep(Duration::from_secs(b.interval_secs + 3)).await;
    let (rss, peak) = rss_kib(Some(agent.pid())).unwrap_or((0, 0));
    let cpu = cpu_seconds(Some(agent.pid())).unwrap_or(0.0);
    let (stop, code) = agent.stop()?;
    println!(
        "service, {} printers: READY=1 after {:.0} ms, after one {} s cycle RSS {:.1} MiB (peak {:.1} MiB), CPU {:.2} s, SIGTERM to exit {:.0} ms (status {code:?})",
        b.printers,
        ready.as_secs_f64() * 1000.0,
        b.interval_secs,
        mib(rss),
        mib(peak),
        cpu,
        stop.as_secs_f64() * 1000.0
    );
    Ok(())
}

#[cfg(not(unix))]
async fn service_bench(_: ServiceBench) -> anyhow::Result<()> {
    anyhow::bail!("bench service measures through systemd's notify socket and /proc: Linux only")
}

/// CPU seconds (user + system) of a process from /proc (Linux).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    // Fields after the ")" of the command name: state is field 3; utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU time on the processor, in seconds, of a live process's threads, summed from
/// `/proc/PID/task/*/schedstat` (nanoseconds; Linux). `cpu_seconds` counts in 10 ms ticks,
/// too coarse for an idle process: over 5 s one tick more or less is 0.2 %.
#[cfg(unix)]
pub fn cpu_seconds_precise(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let s = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
        ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// Resident set size (current, peak) in KiB of a process from /proc (Linux).
pub fn rss_kib(pid: Option<u32>) -> Option<(u64, u64)> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

struct ChildGuard(Child);

struct Fleet {
    printers: usize,
    fleet_start: Ipv4Addr,
    port: u16,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn start_fleet(b: &PollBench) -> anyhow::Result<(ChildGuard, Vec<SocketAddr>)> {
    spawn_fleet(b.printers, b.fleet_start, b.port)
}

fn spawn_fleet(
    printers: usize,
    fleet_start: Ipv4Addr,
    port: u16,
) -> anyhow::Result<(ChildGuard, Vec<SocketAddr>)> {
    spawn_fleet_of(
        &["--synthetic".to_string(), printers.to_string()],
        printers,
        fleet_start,
        port,
    )
}

/// Starts `fleet-lab simulate` in fleet mode with `what` (the printers to serve, which
/// must come to `printers`); returns it and the printers' addresses.
fn spawn_fleet_of(
    what: &[String],
    printers: usize,
    fleet_start: Ipv4Addr,
    port: u16,
) -> anyhow::Result<(ChildGuard, Vec<SocketAddr>)> {
    let b = Fleet {
        printers,
        fleet_start,
        port,
    };
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("simulate")
        .args(what)
        .args([
            "--fleet-start",
            &b.fleet_start.to_string(),
            "--port",
            &b.port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no simulator stdout"))?;
    let guard = ChildGuard(child);
    let mut reader = BufReader::new(stdout);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    if !first.starts_with("listening") {
        anyhow::bail!("simulator did not start: {first}");
    }
    // Drain the rest so the simulator never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let mut addrs = Vec::with_capacity(b.printers);
    let mut ip = b.fleet_start;
    for _ in 0..b.printers {
        addrs.push(SocketAddr::new(ip.into(), b.port));
        let mut n = u32::from(ip).wrapping_add(1);
        while matches!(n & 0xff, 0 | 255) {
            n += 1;
        }
        ip = Ipv4Addr::from(n);
    }
    Ok((guard, addrs))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn poll_cycle_bench(b: PollCycleBench) -> anyhow::Result<()> {
    use fleet_agent::config::PollerConfig;
    use fleet_agent::poller::scheduler::{Managed, Poller};
    use fleet_agent::store::Store;
    use fleet_agent::telemetry::Metrics;
    println!(
        "bench poll-cycle: {} synthetic printers, {} cycles of {} s, {} in flight, SQLite store on disk",
        b.printers, b.cycles, b.interval_secs, b.concurrency
    );
    let (sim, addrs) = spawn_fleet(b.printers, b.fleet_start, b.port)?;
    let dir = tempfile_dir()?;
    let store = Store::open(&dir)?;
    let mut managed = Vec::with_capacity(addrs.len());
    for a in &addrs {
        let mut t = Target::new(*a, Security::v2c("public"));
        t.timeout = Duration::from_millis(2000);
        t.max_repetitions = 60;
        managed.push(Managed {
            target: t,
            printer_id: store.printer_id(&a.to_string())?,
        });
    }
    let interval = Duration::from_secs(b.interval_secs.max(2));
    let cfg = PollerConfig {
        interval,
        deadline: interval.mul_f64(0.8).min(Duration::from_secs(50)),
        max_in_flight: b.concurrency.max(1),
        backoff_max: interval * 8,
        not_communicating_after: 3,
        max_pages_per_minute: 1_000_000,
        status_interval: None,
    };
    let (rss_before, _) = rss_kib(None).unwrap_or((0, 0));
    let (poller, _h) = Poller::new(
        UdpClient::new()?,
        cfg,
        managed,
        Some(store.clone()),
        std::sync::Arc::new(Metrics::new()),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(poller.observe(tx).without_startup_spread().run(async move {
        stop_rx.await.ok();
    }));
    let n = addrs.len();
    let mut last_end_cpu = None::<(f64, Instant)>;
    let mut idle = Vec::new();
    let mut figures = Vec::new();
    for cycle in 1..=b.cycles.max(1) {
        let mut done = 0;
        let mut failed = 0;
        let mut first = None;
        let c0 = cpu_seconds(None).unwrap_or(0.0);
        while done < n {
            let Some(o) = rx.recv().await else { break };
            first.get_or_insert(o.started);
            if o.failure.is_some() {
                failed += 1;
            }
            done += 1;
        }
        let end = Instant::now();
        let start = first.unwrap_or(end);
        let took = (end - start).as_secs_f64();
        let cpu = cpu_seconds(None).unwrap_or(0.0) - c0;
        if let Some((cpu_end, t_end)) = last_end_cpu {
            // CPU spent between the end of the previous cycle and this cycle's start.
            let idle_secs = (start - t_end).as_secs_f64().max(1e-9);
            idle.push((c0 - cpu_end) / idle_secs * 100.0);
        }
        let (rss, hwm) = rss_kib(None).unwrap_or((0, 0));
        println!(
            "  cycle {cycle}: {} printers in {took:.2} s ({failed} failed), CPU {cpu:.2} s, RSS {:.1} MiB (peak {:.1} MiB)",
            n,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
        figures.push((took, cpu, rss, hwm));
        last_end_cpu = Some((cpu_seconds(None).unwrap_or(0.0), Instant::now()));
    }
    stop_tx.send(()).ok();
    task.await.ok();
    let worst = figures.iter().map(|f| f.0).fold(0.0, f64::max);
    let steady = figures.last().map_or(0, |f| f.2);
    let peak = figures.iter().map(|f| f.3).max().unwrap_or(0);
    println!(
        "poll-cycle: worst cycle {worst:.2} s for {n} printers (interval {} s)",
        b.interval_secs
    );
    println!(
        "poll-cycle: steady RSS {:.1} MiB, peak {:.1} MiB, {:.1} KiB per printer above the empty agent ({:.1} MiB)",
        steady as f64 / 1024.0,
        peak as f64 / 1024.0,
        steady.saturating_sub(rss_before) as f64 / n as f64,
        rss_before as f64 / 1024.0
    );
    if !idle.is_empty() {
        println!(
            "poll-cycle: idle CPU between cycles {:.2} % of one core (mean)",
            idle.iter().sum::<f64>() / idle.len() as f64
        );
    }
    drop(sim);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

async fn discover_bench(b: DiscoverBench) -> anyhow::Result<()> {
    if !b.inside {
        // Run ourselves inside a fresh network namespace: only its loopback exists there,
        // so a catch-all socket can swallow probes to silent addresses (real timeouts,
        // no ICMP shortcut) without touching any real network.
        let ns = format!("fa-bench-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            anyhow::bail!("cannot create network namespace {ns} (needs root and iproute2)");
        }
        let exe = std::env::current_exe()?;
        let status = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(exe)
            .args([
                "bench",
                "discover",
                "--inside",
                "--printers",
                &b.printers.to_string(),
                "--timeout-ms",
                &b.timeout_ms.to_string(),
                "--retries",
                &b.retries.to_string(),
                "--network-delay",
                &b.network_delay.to_string(),
                "--max-in-flight",
                &b.max_in_flight.to_string(),
            ])
            .status();
        Command::new("ip").args(["netns", "del", &ns]).status().ok();
        let status = status?;
        if !status.success() {
            anyhow::bail!("the benchmark failed inside the namespace ({status})");
        }
        return Ok(());
    }
    Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()?;
    let start = Ipv4Addr::new(127, 1, 0, 1);
    let (sim, _addrs) = spawn_fleet(b.printers, start, 161)?;
    // Everything else on port 161 of this namespace is swallowed.
    let swallow = fleet_sim::bind_reusable("0.0.0.0:161".parse()?)?;
    let swallowed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = swallowed.clone();
    let sink = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while swallow.recv_from(&mut buf).await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let targets = fleet_agent::targets::TargetSet {
        include: vec![
            "127.1.0.0-127.1.255.255"
                .parse()
                .map_err(anyhow::Error::msg)?,
        ],
        exclude: vec![],
    };
    let profile = fleet_agent::config::Profile {
        name: "public".into(),
        security: Security::v2c("public"),
        timeout: Duration::from_millis(b.timeout_ms),
        retries: b.retries,
        max_repetitions: 40,
    };
    let pps = (b.network_delay > 0).then(|| 1e6 / b.network_delay as f64);
    let client = UdpClient::connected()?.with_rate_limit(pps)?;
    let opts = fleet_agent::discovery::Options {
        targets,
        local_network: false,
        profiles: vec![profile],
        port: 161,
        max_in_flight: b.max_in_flight,
        max_addresses: 65_536,
        mdns: Duration::ZERO,
        reader: fleet_agent::poller::Reader::default(),
        ipp: fleet_agent::config::IppUse::Off,
    };
    println!(
        "bench discover: 65,536 addresses (127.1.0.0/16 in a private namespace), {} printers, timeout {} ms, {} retry, limit {} packets/s, {} in flight",
        b.printers,
        b.timeout_ms,
        b.retries,
        pps.map_or("none".into(), |p| format!("{p:.0}")),
        b.max_in_flight
    );
    let (tx, mut rx) = tokio::sync::watch::channel(fleet_agent::discovery::Progress::default());
    let progress = tokio::spawn(async move {
        let mut last = Instant::now();
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            if last.elapsed() >= Duration::from_secs(10) || p.finished {
                last = Instant::now();
                println!(
                    "  progress: {}/{} done, {} found, {:.0} addresses/s, ETA {:.0} s",
                    p.done, p.total, p.found, p.rate, p.eta_secs
                );
            }
            if p.finished {
                break;
            }
        }
    });
    let c0 = cpu_seconds(None).unwrap_or(0.0);
    let t0 = Instant::now();
    let report = fleet_agent::discovery::run(client.clone(), opts, None, tx).await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(None).unwrap_or(0.0) - c0;
    progress.await.ok();
    let stats = client.stats();
    let (rss, hwm) = rss_kib(None).unwrap_or((0, 0));
    let summary: Vec<String> = report
        .summary()
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "discover: {} addresses in {secs:.1} s ({:.0} addresses/s), {} printers found",
        report.results.len(),
        report.results.len() as f64 / secs,
        report.devices.len()
    );
    println!("discover: outcomes {}", summary.join(", "));
    println!(
        "discover: {} packets sent = {:.0} packets/s (limit {}), {} swallowed by silent addresses",
        stats.sent,
        stats.sent as f64 / secs,
        pps.map_or("none".into(), |p| format!("{p:.0}")),
        swallowed.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "discover: CPU {cpu:.2} s, RSS {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    sink.abort();
    drop(sim);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("fleet-agent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

async fn poll_bench(b: PollBench) -> anyhow::Result<()> {
    println!(
        "bench poll: {} synthetic printers, concurrency {}, {} rounds",
        b.printers, b.concurrency, b.rounds
    );
    let (sim, addrs) = start_fleet(&b)?;
    let client = UdpClient::new()?;
    let targets: Vec<Target> = addrs
        .iter()
        .map(|a| {
            let mut t = Target::new(*a, Security::v2c("public"));
            t.timeout = Duration::from_millis(2000);
            t.max_repetitions = 60;
            t
        })
        .collect();
    let cpu0 = cpu_seconds(None).unwrap_or(0.0);
    let mut times = Vec::new();
    let mut cpus = Vec::new();
    let mut ok = 0;
    let mut requests = 0u64;
    for round in 0..b.rounds.max(1) {
        let c0 = cpu_seconds(None).unwrap_or(0.0);
        let t0 = Instant::now();
        let results = poller::Reader::default()
            .read_many(&client, &targets, b.concurrency)
            .await;
        let dt = t0.elapsed().as_secs_f64();
        let dc = cpu_seconds(None).unwrap_or(0.0) - c0;
        ok = results.iter().filter(|r| r.is_ok()).count();
        requests = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|(_, s)| u64::from(s.requests))
            .sum();
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            eprintln!("  round {}: first failure: {e}", round + 1);
        }
        println!(
            "  round {}: {ok}/{} printers in {dt:.3} s = {:.0} printers/s, agent CPU {dc:.3} s, {requests} SNMP requests",
            round + 1,
            targets.len(),
            targets.len() as f64 / dt
        );
        times.push(dt);
        cpus.push(dc);
    }
    let cpu_total = cpu_seconds(None).unwrap_or(0.0) - cpu0;
    let (rss, hwm) = rss_kib(None).unwrap_or((0, 0));
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(times.clone());
    let cpu_med = median(cpus.clone());
    let ours_per_cpu = targets.len() as f64 / cpu_med.max(1e-9);
    println!(
        "fleet-agent: best {best:.3} s, median {med:.3} s for {} printers ({:.0} printers/s median)",
        targets.len(),
        targets.len() as f64 / med
    );
    println!(
        "fleet-agent: CPU {cpu_total:.3} s over {} rounds ({cpu_med:.3} s median per round = {ours_per_cpu:.0} printers per CPU-second)",
        b.rounds
    );
    println!(
        "fleet-agent: RSS {:.1} MiB now, peak {:.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let client_stats = client.stats();
    println!(
        "fleet-agent: {} datagrams sent, {} received, {} stale dropped, {} attempts timed out",
        client_stats.sent, client_stats.received, client_stats.stale, client_stats.timeouts
    );

    let exporter = if b.exporter == "none" {
        None
    } else {
        exporter_bench(&b.exporter, &b.exporter_config, b.concurrency, &addrs)
            .await
            .map_err(|e| eprintln!("snmp_exporter: skipped: {e:#}"))
            .ok()
    };
    if let Some(e) = &exporter {
        println!(
            "snmp_exporter printer_mib: {}/{} scrapes in {:.3} s = {:.0} printers/s, exporter CPU {:.3} s = {:.0} printers per CPU-second, RSS peak {:.1} MiB",
            e.ok,
            addrs.len(),
            e.seconds,
            addrs.len() as f64 / e.seconds,
            e.cpu,
            addrs.len() as f64 / e.cpu.max(1e-9),
            e.hwm_kib as f64 / 1024.0
        );
        println!(
            "ratio: fleet-agent does {:.1}x the printers per CPU-second of snmp_exporter (full report vs printer_mib module), wall time {:.1}x",
            ours_per_cpu / (addrs.len() as f64 / e.cpu.max(1e-9)),
            e.seconds / med
        );
    }
    if b.json {
        let v = serde_json::json!({
            "printers": targets.len(), "ok": ok, "bestSeconds": best, "medianSeconds": med,
            "cpuSecondsMedian": cpu_med, "printersPerCpuSecond": ours_per_cpu,
            "rssKib": rss, "peakRssKib": hwm, "requestsPerRound": requests,
            "exporter": exporter.as_ref().map(|e| serde_json::json!({"seconds": e.seconds, "cpu": e.cpu, "ok": e.ok, "peakRssKib": e.hwm_kib})),
        });
        println!("{v}");
    }
    drop(sim);
    Ok(())
}

struct ExporterFigures {
    seconds: f64,
    cpu: f64,
    ok: usize,
    hwm_kib: u64,
}

/// Scrapes every address once with snmp_exporter's `printer_mib` module, `concurrency` at
/// a time; the exporter's CPU is read from /proc around the scrapes only.
async fn exporter_bench(
    exporter: &str,
    config: &std::path::Path,
    concurrency: usize,
    addrs: &[SocketAddr],
) -> anyhow::Result<ExporterFigures> {
    if !config.exists() {
        anyhow::bail!("config {} not found", config.display());
    }
    let listen = "127.0.0.1:19116";
    let child = Command::new(exporter)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("{exporter}: {e}"))?;
    let pid = child.id();
    let _guard = ChildGuard(child);
    // Wait until it listens.
    let mut ready = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !ready {
        anyhow::bail!("did not listen on {listen}");
    }
    let cpu0 = cpu_seconds(Some(pid)).unwrap_or(0.0);
    let t0 = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for &a in addrs {
        let sem = sem.clone();
        set.spawn(async move {
            let _p = sem.acquire_owned().await.ok()?;
            let path = format!("/snmp?module=printer_mib&target={}:{}", a.ip(), a.port());
            let body = http_get(listen, &path).await.ok()?;
            Some(body.contains("prtMarkerSuppliesLevel"))
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        if let Ok(Some(true)) = r {
            ok += 1;
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(Some(pid)).unwrap_or(0.0) - cpu0;
    let hwm_kib = rss_kib(Some(pid)).map_or(0, |r| r.1);
    Ok(ExporterFigures {
        seconds,
        cpu,
        ok,
        hwm_kib,
    })
}

async fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
