//! `fleet-lab demo`: the whole product on one machine. Starts a synthetic fleet on loopback, the
//! reference cloud (HTTPS, generated CA) and the agent itself (store, discovery, poller,
//! uploader, sender, heartbeat, local web page) with a fresh activation code to enter on
//! the page (or activated at once with `--activate`), then prints what the cloud holds
//! after each polling interval, until Ctrl-C.

use anyhow::Context;
use clap::Args;
use fleet_agent as agent;
use fleet_cloud::Cloud;
use fleet_cloud::db::CloudDb;
use fleet_protocol::admin::Asset;
use fleet_sim::{Layout, Simulator, synth};
use serde_json::Value;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// `demo` arguments.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Number of simulated printers.
    #[arg(long, default_value_t = 24)]
    pub printers: usize,
    /// Seconds between polls of the whole fleet (10 at least, as for the agent).
    #[arg(long, default_value_t = 10)]
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
    /// Local web page of the agent (/metrics, /api/...); 0 picks a free port, as does
    /// the default when it is taken.
    #[arg(long, default_value_t = DEFAULT_WEB_PORT)]
    pub web_port: u16,
    /// HTTPS port of the reference cloud on 127.0.0.1; 0 picks a free port, as does the
    /// default when it is taken.
    #[arg(long, default_value_t = DEFAULT_CLOUD_PORT)]
    pub cloud_port: u16,
    /// State directory of the demo (agent store, cloud database, CA). Default: a fresh
    /// directory under the system temporary directory, removed at the end.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Stop after this many rounds of printing the cloud's view (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub rounds: u64,
    /// Activate the agent at start instead of leaving the code to be entered on the
    /// local page (http://127.0.0.1:WEB_PORT/).
    #[arg(long)]
    pub activate: bool,
}

const DEFAULT_WEB_PORT: u16 = 18080;
const DEFAULT_CLOUD_PORT: u16 = 18443;

/// Binds 127.0.0.1:`port`; the default port falls back to a free one when taken (a port
/// given on the command line does not: the user asked for it).
fn listen(
    port: u16,
    default: u16,
    what: &str,
    flag: &str,
) -> anyhow::Result<std::net::TcpListener> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => Ok(l),
        Err(e) if port == default => {
            let l = std::net::TcpListener::bind(("127.0.0.1", 0))
                .with_context(|| format!("cannot listen on 127.0.0.1 for {what}"))?;
            eprintln!(
                "127.0.0.1:{port} is taken ({e}); {what} uses port {} instead",
                l.local_addr()?.port()
            );
            Ok(l)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot listen on 127.0.0.1:{port} for {what}: {e} (try another {flag})"
        )),
    }
}

/// Runs the demo.
///
/// # Errors
/// When a part cannot start (address or port in use, state directory not writable).
pub async fn run(a: DemoArgs, logs: agent::telemetry::Logs) -> anyhow::Result<()> {
    if !(a.speed.is_finite() && a.speed >= 0.0) {
        anyhow::bail!("--speed {}: must be a finite number >= 0", a.speed);
    }
    let interval = a.interval_secs.max(10);
    let (dir, temporary) = match &a.state_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("fleet-agent-demo-{}", std::process::id())),
            true,
        ),
    };
    let (agent_dir, cloud_dir) = (dir.join("agent"), dir.join("cloud"));
    for d in [&agent_dir, &cloud_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("{}: cannot create", d.display()))?;
    }
    let printers = fleet_sim::synthetic_fleet(
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

    // The reference cloud, with an agent record and its one-time activation code.
    let db = {
        let d = cloud_dir.clone();
        tokio::task::spawn_blocking(move || CloudDb::open(Some(&d))).await??
    };
    let admin_token = fleet_secret::random_token(2);
    let cloud = Cloud::new(db.clone(), &admin_token);
    let (_, code, _) = cloud.create_agent("demo agent", &serde_json::json!({}))?;
    let listener = listen(
        a.cloud_port,
        DEFAULT_CLOUD_PORT,
        "the reference cloud",
        "--cloud-port",
    )?;
    let cloud_addr = listener.local_addr()?;
    let (ca_pem, cloud_handle) = fleet_cloud::start(listener, cloud).await?;
    let ca_file = dir.join("cloud-ca.pem");
    std::fs::write(&ca_file, &ca_pem)
        .with_context(|| format!("{}: cannot write", ca_file.display()))?;
    let url = format!("https://127.0.0.1:{}", cloud_addr.port());
    // The admin token is a secret: it goes to an owner-only file, not to the terminal.
    let token_file = dir.join("cloud-admin-token");
    fleet_secret::owner_only::write(
        &token_file,
        admin_token.as_bytes(),
        fleet_secret::owner_only::Existing::Replace,
    )
    .with_context(|| format!("{}: cannot write", token_file.display()))?;

    // The agent's configuration: the simulated printers, the cloud, the local listener.
    let web = listen(
        a.web_port,
        DEFAULT_WEB_PORT,
        "the agent's web page",
        "--web-port",
    )?;
    let web_addr = web.local_addr()?;
    drop(web);
    let config = demo_config(
        &addrs,
        interval,
        &web_addr.to_string(),
        &url,
        &ca_file.display().to_string(),
    );
    let source = agent::config::Source::new("demo configuration", &config);
    let config = source.parse().map_err(|e| anyhow::anyhow!("{e}"))?;

    // With --activate, as an administrator would do it with `fleet-agent activate --code`;
    // otherwise the code is entered on the local page, as the seed's installer does.
    let agent_id = if a.activate {
        let client = agent::cloud::client::CloudClient::with_proxy(
            &url,
            Some(ca_pem.as_bytes()),
            config.cloud.timeout,
            &config.cloud.proxy,
        )?;
        let creds = client
            .activate(&code)
            .await
            .context("activation against the reference cloud")?;
        let agent_id = creds.agent_id.clone();
        let d = agent_dir.clone();
        tokio::task::spawn_blocking(move || agent::cloud::save_credentials(&d, &creds)).await??;
        Some(agent_id)
    } else {
        None
    };

    println!(
        "Fleet Agent demo: {} simulated printers on {}..{} port {} (community public)",
        addrs.len(),
        addrs[0].ip(),
        addrs[addrs.len() - 1].ip(),
        a.port,
    );
    println!("  reference cloud   {url}  (CA {})", ca_file.display());
    match &agent_id {
        Some(id) => println!("  agent             {id}, activated with code {code}"),
        None => {
            println!("  agent             not activated yet: activation code {code} (valid 72 h)")
        }
    }
    println!(
        "  agent web page    http://localhost:{}/   (/metrics, /api/...)",
        web_addr.port()
    );
    if agent_id.is_none() {
        println!(
            "Open the page, enter the code {code}, and watch the printers reach the cloud;
until then the agent polls and its uploads wait in the outbox (\"What will be sent\")."
        );
    }
    println!(
        "  state             {} (agent: {}, cloud: {})",
        dir.display(),
        agent_dir.display(),
        cloud_dir.display()
    );
    let exe = crate::sibling("fleet-agent").display().to_string();
    println!("Try in another terminal:  {exe} poll {}", addrs[0]);
    println!("  {exe} status --state-dir {}", agent_dir.display());
    println!(
        "  {} assets --url {url} --ca {} --admin-token \"$(cat {})\"",
        crate::sibling("fleet-cloud").display(),
        ca_file.display(),
        token_file.display()
    );
    println!(
        "The agent discovers the fleet's range, polls every {interval} s and uploads; the table\nbelow is what the cloud holds. Ctrl-C stops.\n"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let deps = agent::app::Deps::new(agent_dir, logs, agent::update::Launch::Installed);
    let agent = tokio::spawn(agent::app::run(source, deps, async move {
        stop_rx.await.ok();
    }));
    let mut tick = tokio::time::interval(Duration::from_secs(interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    let mut round = 0u64;
    let stop = agent::platform::shutdown_signal();
    tokio::pin!(stop);
    let outcome = loop {
        tokio::select! {
            _ = &mut stop => break Ok(()),
            _ = tick.tick() => {}
        }
        if agent.is_finished() {
            break Err(anyhow::anyhow!("the agent stopped on its own"));
        }
        round += 1;
        let assets: Vec<Asset> = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || fleet_cloud::admin::assets_view(&db)).await??
        };
        print_assets(round, &assets);
        if a.rounds > 0 && round >= a.rounds {
            break Ok(());
        }
    };
    stop_tx.send(()).ok();
    match agent.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "Agent stopped with an error."),
        Err(e) => tracing::error!(error = %e, "Agent task failed."),
    }
    cloud_handle.graceful_shutdown(Some(Duration::from_secs(2)));
    println!(
        "stopping: {} SNMP requests answered by the simulated fleet",
        sim.requests()
    );
    sim.stop().await;
    if temporary {
        std::fs::remove_dir_all(&dir).ok();
    }
    outcome
}

/// The agent configuration the demo runs with (TOML, checked by the normal parser).
fn demo_config(
    addrs: &[std::net::SocketAddr],
    interval: u64,
    web: &str,
    url: &str,
    ca_file: &str,
) -> String {
    // The agent finds the printers by discovery over the fleet's range, as at a customer
    // site, rather than from a static list.
    let (first, last) = (addrs[0], addrs[addrs.len() - 1]);
    format!(
        "[web]\nlisten = \"{web}\"\n\n[poller]\ninterval_secs = {interval}\ndeadline_secs = 5\n\n\
         [cloud]\nurl = \"{url}\"\nca_file = {}\ntimeout_secs = 10\nproxy = {{ type = \"none\" }}\n\n\
         [[snmp_profiles]]\nname = \"demo\"\nauth = {{ type = \"v2c\", community = \"public\" }}\n\n\
         [discovery]\ninclude = [\"{}-{}\"]\nport = {}\ninterval_secs = 3600\n",
        toml_string(ca_file),
        first.ip(),
        last.ip(),
        first.port(),
    )
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn print_assets(round: u64, assets: &[Asset]) {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "round {round}: the cloud holds {} assets",
        assets.len()
    )
    .ok();
    writeln!(
        out,
        "  {:<22} {:<16} {:>9}  {:<30} alerts",
        "model", "serial", "pages", "lowest supply"
    )
    .ok();
    for v in assets {
        let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
        let low = v
            .supplies
            .iter()
            .filter_map(|x| Some((x["percentRemaining"].as_u64()?, x)))
            .min_by_key(|(p, _)| *p)
            .map_or("-".into(), |(p, x)| {
                format!("{} {p}%", s(&x["description"]))
            });
        let alerts: Vec<String> = v
            .alerts
            .iter()
            .filter_map(|x| x["issue"].as_str().map(str::to_string))
            .collect();
        writeln!(
            out,
            "  {:<22} {:<16} {:>9}  {:<30} {}",
            v.model_name.as_deref().unwrap_or("-"),
            v.serial_number,
            v.counters["lifetimeCount"]
                .as_u64()
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
    writeln!(out).ok();
}
