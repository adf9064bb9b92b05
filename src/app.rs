//! The supervisor: given its dependencies as handles ([`Deps`]), builds the components
//! from a validated [`Config`], starts them in dependency order (store, web, poller, cloud
//! link, jobs) and stops them in reverse within a deadline when the shutdown future
//! completes or a restart is asked for. No component reaches for process-wide state: the
//! clock, the support library, the cloud link's status and the log are handles from here,
//! so several agents can run in one process (the integration tests do).

use crate::clock::Clock;
use crate::cloud::link::Link;
use crate::cloud::settings::TrialStart;
use crate::config::Config;
use crate::poller::scheduler::{Managed, Poller};
use crate::printer::library;
use crate::store::Store;
use crate::telemetry::Logs;
use crate::telemetry::Metrics;
use crate::web;
use anyhow::Context;
use fleet_snmp::UdpClient;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Outbox byte cap (oldest deltas are evicted first; the cloud link makes it configurable).
pub const OUTBOX_MAX_BYTES: u64 = 64 << 20;

/// Runs discovery at the configured interval (and when `now` receives), one run at a
/// time, handing new printers to the poller and reporting sightings of known ones.
async fn discovery_loop(
    config: Config,
    poller: crate::poller::scheduler::PollerHandle,
    metrics: Arc<Metrics>,
    mut now: tokio::sync::mpsc::Receiver<crate::discovery::DiscoverRequest>,
    page: Arc<web::Agent>,
    stop: impl std::future::Future<Output = ()>,
) {
    use crate::discovery;
    tokio::pin!(stop);
    let (store, seal) = (page.store.clone(), page.key.clone());
    let d = &config.discovery;
    // Jobs waiting for the end of the current run.
    let mut waiting: Vec<crate::discovery::DiscoverRequest> = Vec::new();
    // Activated on the page without "discover now": the first run waits for the schedule.
    if page
        .defer_discovery
        .swap(false, std::sync::atomic::Ordering::Relaxed)
    {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(d.interval) => {}
            Some(w) = now.recv() => waiting.push(w),
        }
    }
    loop {
        let pps = (d.network_delay_us > 0).then(|| 1e6 / d.network_delay_us as f64);
        let client = match UdpClient::connected().and_then(|c| c.with_rate_limit(pps)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "Discovery cannot open SNMP sockets.");
                return;
            }
        };
        let opts = discovery::Options {
            targets: d.targets.clone(),
            local_network: d.local_network,
            profiles: d
                .profiles
                .iter()
                .map(|i| config.profiles[*i].clone())
                .collect(),
            port: d.port,
            max_in_flight: d.max_in_flight,
            max_addresses: d.max_addresses,
            mdns: d.mdns,
            reader: page.reader(),
            ipp: d.ipp,
        };
        let (tx, mut rx) = tokio::sync::watch::channel(discovery::Progress::default());
        let m = metrics.clone();
        let shown = page.clone();
        shown.progress.send_replace(discovery::Progress::default());
        let progress = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let p = rx.borrow_and_update().clone();
                shown.progress.send_replace(p.clone());
                m.discovery_done.set(p.done as i64);
                m.discovery_total.set(p.total as i64);
                m.discovery_found.set(p.found as i64);
                if p.finished {
                    break;
                }
            }
        });
        let run = discovery::run(client, opts, Some(store.clone()), tx);
        let report = tokio::select! {
            r = run => r,
            _ = &mut stop => {
                page.progress.send_modify(|p| p.finished = true);
                return;
            }
        };
        progress.await.ok();
        metrics.discovery_runs.inc();
        // Address → serial of the printers the store knows.
        let known: std::collections::HashMap<String, Option<String>> = {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.printers())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.address, p.serial))
                .collect()
        };
        // A printer found at a new address: its own state (credentials, certificate pin)
        // follows it, and the old address is no longer polled (unless the file names it).
        for r in &report.results {
            let discovery::Outcome::Found {
                moved_from: Some(from),
                ..
            } = &r.outcome
            else {
                continue;
            };
            let to = std::net::SocketAddr::new(r.address, d.port);
            let from = from.parse::<std::net::SocketAddr>().or_else(|_| {
                from.parse::<std::net::IpAddr>()
                    .map(|ip| std::net::SocketAddr::new(ip, d.port))
            });
            let Ok(from) = from else { continue };
            if from == to {
                continue;
            }
            // Another device answers at the old address now (two printers swapped
            // addresses): nothing is handed over rather than the wrong state.
            if report.devices.iter().any(|dv| dv.address == from.ip()) {
                tracing::warn!(printer = %to, from = %from, "Printer moved to an address another printer left, and another device took its old one; their stored credentials stay where they are (set them again).");
                continue;
            }
            let (s, k, pairs) = (
                store.clone(),
                seal.clone(),
                crate::jobs::state_moves(from, to),
            );
            let configured = config.printers.iter().any(|p| p.address == from);
            let at = report.finished_at;
            let moved = tokio::task::spawn_blocking(move || {
                let n = s.rename_settings(&pairs)?;
                // Its row too (history, quirks), so the page and the cloud show one
                // printer at its new address; not a row the file's address still polls.
                if !configured {
                    s.move_printer(&from.to_string(), &to.to_string(), at)?;
                }
                Ok::<_, crate::store::StoreError>((n, crate::jobs::stored_security(&s, &k, to)))
            })
            .await;
            let Ok(Ok((n, security))) = moved else {
                tracing::warn!(printer = %to, from = %from, "Printer moved, but its stored state could not follow it.");
                continue;
            };
            if let Some(sec) = security {
                poller.set_security(to, sec);
            }
            if !configured {
                poller.remove(from).await;
            }
            tracing::info!(printer = %to, from = %from, settings = n, "Printer moved; its credentials and certificate pin follow it.");
        }
        let mut added = 0;
        for dev in report
            .devices
            .iter()
            .filter(|d| d.discovered_by.contains(&"snmp"))
        {
            let addr = std::net::SocketAddr::new(dev.address, d.port);
            // A printer the cloud unenrolled is enrolled again when a run finds it (the
            // guide's rule; excluded addresses are never found), wherever it is now.
            let serial = dev
                .serial
                .clone()
                .or_else(|| known.get(&addr.to_string()).cloned().flatten());
            let again = match serial {
                Some(sn) => {
                    let (s, k) = (store.clone(), format!("sn:{sn}"));
                    tokio::task::spawn_blocking(move || s.clear_unenrolled(&k))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(false)
                }
                None => false,
            };
            if again {
                tracing::info!(printer = %addr, "Printer unenrolled by the cloud found again by discovery; enrolled again.");
            } else if known.contains_key(&addr.to_string()) {
                poller.sighted(addr);
                continue;
            }
            let profile = config
                .profiles
                .iter()
                .find(|p| Some(&p.name) == dev.profile.as_ref())
                .unwrap_or(&config.profiles[0]);
            let (s, k) = (store.clone(), seal.clone());
            let (quirks, at) = (dev.quirks.clone().unwrap_or_default(), report.finished_at);
            let json = (!quirks.is_empty())
                .then(|| serde_json::to_string(&quirks).ok())
                .flatten();
            let found = tokio::task::spawn_blocking(move || {
                let id = s.printer_id(&addr.to_string())?;
                // What discovery learned of how to ask it is remembered like a poll's.
                if json.is_some() {
                    s.set_quirks(id, json.as_deref(), at)?;
                }
                Ok::<_, crate::store::StoreError>((id, crate::jobs::stored_security(&s, &k, addr)))
            })
            .await;
            if let Ok(Ok((id, stored))) = found {
                let mut target = profile.target(addr);
                if let Some(sec) = stored {
                    target.security = sec;
                }
                poller.add_with_quirks(
                    Managed {
                        target,
                        printer_id: id,
                    },
                    quirks,
                    at,
                );
                added += 1;
            }
        }
        for w in &report.warnings {
            tracing::warn!(warning = %w, "Discovery warning.");
        }
        tracing::info!(
            found = report.devices.len(),
            new = added,
            addresses = report.results.len(),
            "Discovery run finished."
        );
        let summary = crate::discovery::DiscoverySummary {
            addresses: report.results.len(),
            found: report.devices.len(),
            added,
        };
        for w in waiting.drain(..) {
            w.send(summary).ok();
        }
        // A request that arrived during the run gets a fresh run of its own.
        if let Ok(w) = now.try_recv() {
            waiting.push(w);
            continue;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(d.interval) => {}
            Some(w) = now.recv() => waiting.push(w),
        }
    }
}

/// A printer discovery found earlier: address, store id, the SNMP profile that answered,
/// credentials the cloud set for it.
type Discovered = (
    std::net::SocketAddr,
    i64,
    Option<String>,
    Option<fleet_snmp::Security>,
);

/// The printers in the store that discovery found (not those of the configuration file,
/// not the unenrolled ones).
async fn discovered_printers(
    config: &Config,
    store: &Store,
    key: &crate::store::secrets::SealKey,
) -> anyhow::Result<Vec<Discovered>> {
    let configured: std::collections::HashSet<std::net::SocketAddr> =
        config.printers.iter().map(|p| p.address).collect();
    let (s, k) = (store.clone(), key.clone());
    let found = tokio::task::spawn_blocking(
        move || -> Result<Vec<Discovered>, crate::store::StoreError> {
            let devices = s.devices()?;
            let mut out = Vec::new();
            for p in s.printers()? {
                let Ok(addr) = p.address.parse::<std::net::SocketAddr>() else {
                    continue;
                };
                if configured.contains(&addr) {
                    continue;
                }
                let ip = addr.ip().to_string();
                // Device addresses are `ip:port` (older rows: the IP alone).
                let Some(d) = devices.iter().find(|d| {
                    (d.address.as_deref() == Some(p.address.as_str())
                        || d.address.as_deref() == Some(ip.as_str()))
                        && d.sources.contains("snmp")
                }) else {
                    continue;
                };
                if let Some(sn) = &p.serial
                    && s.unenrolled_at(&format!("sn:{sn}"))?.is_some()
                {
                    continue;
                }
                out.push((
                    addr,
                    p.id,
                    d.profile.clone(),
                    crate::jobs::stored_security(&s, &k, addr),
                ));
            }
            Ok(out)
        },
    )
    .await??;
    Ok(found)
}

/// Builds the cloud connection from the activation credentials, when the agent is
/// activated and a cloud URL is set.
async fn cloud_link(
    config: &Config,
    shared: &Shared,
) -> anyhow::Result<Option<crate::cloud::Connection>> {
    if config.cloud.url.is_none() {
        return Ok(None);
    }
    let (s, key, c) = (shared.store.clone(), shared.key.clone(), config.clone());
    // The credentials and the proxy in force (the local page's, else the file's).
    let found = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let Some(creds) = s.cloud_credentials(&key)? else {
            return Ok(None);
        };
        Ok(Some((
            creds,
            crate::cloud::activation::proxy_in_force(&s, &key, &c),
        )))
    })
    .await??;
    let Some((creds, proxy)) = found else {
        return Ok(None);
    };
    let Some(client) = crate::cloud::activation::client(&config.cloud, &proxy)? else {
        return Ok(None);
    };
    Ok(Some(crate::cloud::Connection {
        client: Arc::new(client),
        creds,
        link: shared.deps.link.clone(),
        clock: shared.deps.clock.clone(),
    }))
}

/// Why the running components are being stopped.
enum Next {
    /// Shut the agent down.
    Stop,
    /// Shut down to start again (an update staged, or on trial and unhealthy).
    Restart,
    /// Restart the components with this configuration.
    Apply(Box<Config>, &'static str),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Stopped as asked.
    Stopped,
    /// Stopped to start again (an agent update): the caller starts it again (status 75
    /// for the service manager, an in-place restart in the foreground).
    Restart,
}

/// What the supervisor is given: the state directory it works on, the local page's
/// listener, and the process-wide state as handles. The command line builds one for a
/// real run ([`Deps::new`]); a test builds its own (a listener on port 0, a clock it
/// moves, a detached log) to run agents in process.
pub struct Deps {
    /// The state directory: locked for this agent, the store and the sealing key in it.
    pub state_dir: PathBuf,
    /// The local page's listener; `None` binds `web.listen`.
    pub listener: Option<std::net::TcpListener>,
    /// The agent's wall clock.
    pub clock: Clock,
    /// The printer support library in use.
    pub library: library::Handle,
    /// The cloud link's status.
    pub link: Link,
    /// The agent's log.
    pub logs: Logs,
    /// How this process was started (a staged update on trial confirms itself).
    pub launched: crate::update::Launch,
    /// The printers' SNMP client; `None` opens a UDP socket at each (re)start.
    pub snmp: Option<crate::poller::Snmp>,
}

impl Deps {
    /// The dependencies of a real run: the system clock, the built-in library (a stored
    /// newer one is installed at start), a new link status.
    pub fn new(state_dir: PathBuf, logs: Logs, launched: crate::update::Launch) -> Deps {
        let clock = Clock::system();
        Deps {
            state_dir,
            listener: None,
            link: Link::new(clock.clone()),
            clock,
            library: library::Handle::default(),
            logs,
            launched,
            snmp: None,
        }
    }

    /// The same dependencies on another wall clock (tests: one that follows paused tokio
    /// time, so a simulated day passes in seconds).
    pub fn with_clock(mut self, clock: Clock) -> Deps {
        self.link = Link::new(clock.clone());
        self.clock = clock;
        self
    }
}

/// What every (re)start of the components shares with the supervisor.
struct Shared {
    deps: Deps,
    store: Store,
    key: crate::store::secrets::SealKey,
    metrics: Arc<Metrics>,
    page: Arc<web::Agent>,
    /// Where accepted cloud settings go (the supervisor applies them).
    apply: tokio::sync::mpsc::Sender<Box<Config>>,
    /// Told when a job's result was stored outside the jobs' own tasks.
    results_waiting: Arc<tokio::sync::Notify>,
    /// Asked when the agent must stop to start again.
    restart: crate::update::Restart,
}

/// Resolves when the watch turns true (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// SIGHUP, where the platform has it (Windows reloads through the service manager).
struct Hangup {
    #[cfg(unix)]
    sig: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Hangup {
        Hangup {
            #[cfg(unix)]
            sig: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Waits for the next SIGHUP (never, where there is none).
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.sig {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// Binds the local page's address; when its port is taken (or refused), the first free one of
/// `fallback` (the Windows installer's 8080 and 8088), said in the log. The port moved
/// to, if any.
///
/// # Errors
/// The first address's error when no fallback could be bound (or it failed otherwise).
async fn bind_page(
    addr: std::net::SocketAddr,
    fallback: &[u16],
) -> std::io::Result<(tokio::net::TcpListener, Option<u16>)> {
    let taken = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => return Ok((l, None)),
        Err(e) => e,
    };
    // Windows says "access denied" for a port in a reserved range or held exclusively.
    if matches!(
        taken.kind(),
        std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
    ) {
        for &port in fallback {
            let mut at = addr;
            at.set_port(port);
            if let Ok(l) = tokio::net::TcpListener::bind(at).await {
                tracing::warn!(taken = %addr, listen = %at, "Local page: port {} is taken; the page is on port {port}.", addr.port());
                return Ok((l, Some(port)));
            }
        }
    }
    Err(taken)
}

/// Runs the agent until `shutdown` completes (or a restart is asked for).
///
/// The configuration in force is `source` with the cloud's stored settings laid over it.
/// Settings accepted from the cloud and SIGHUP (which re-reads the file) restart the
/// reloadable components (poller, discovery, uploader, sender, heartbeat, jobs) with the
/// new configuration; an invalid one is refused with its reasons and the old one keeps
/// running. The store and the web listener stay up throughout.
///
/// # Errors
/// Start-up failures (state directory, store, listener, an invalid file); runtime faults
/// are logged and retried inside the components.
pub async fn run(
    source: crate::config::Source,
    mut deps: Deps,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Ended> {
    let state_dir = deps.state_dir.clone();
    let _claim = crate::platform::lock_state_dir(&state_dir)?;
    let store = {
        let dir = state_dir.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir)).await??
    };
    tracing::info!(state_dir = %state_dir.display(), "Store opened.");
    let key = {
        let (dir, store) = (state_dir.clone(), store.clone());
        tokio::task::spawn_blocking(move || crate::store::secrets::SealKey::for_store(&store, &dir))
            .await??
    };
    let stored = crate::cloud::settings::stored(&store, &key)?;
    let (mut config, unfit) =
        crate::cloud::settings::effective(&source, stored.as_ref(), store.search_local_networks()?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(e) = &unfit {
        tracing::error!(problems = %e, "The stored cloud settings do not fit the local configuration; running on the file alone.");
    }
    deps.logs.set_level(&config.log_level);
    {
        let (s, keys, dir, lib, now) = (
            store.clone(),
            config.cloud.library_keys.clone(),
            state_dir.clone(),
            deps.library.clone(),
            deps.clock.now_ms(),
        );
        tokio::task::spawn_blocking(move || {
            crate::jobs::load_library(&s, &lib, &keys);
            // A rolled-back update's outcome, for its job.
            crate::update::settle(&dir, &s, now);
        })
        .await?;
    }
    // A level chosen on the local page wins until the next change from the cloud.
    if let Some(level) = store.log_level()? {
        deps.logs.set_level(&level);
    }
    let mut source = source;
    let metrics = Arc::new(Metrics::new());
    let listener = match deps.listener.take() {
        Some(l) => {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)?
        }
        None => {
            // Opened to other hosts on the page (behind its password): where it listens
            // then; if that cannot be bound, this host only, said.
            let remote = !store.localhost_only().unwrap_or(true)
                && store.page_password().ok().flatten().is_some()
                && config.web_listen.ip().is_loopback();
            let bound = match remote {
                true => tokio::net::TcpListener::bind(config.web_remote_listen)
                    .await
                    .inspect_err(|e| {
                        tracing::error!(listen = %config.web_remote_listen, error = %e, "Local page: cannot listen for other hosts (web.remote_listen); this computer only.");
                    })
                    .ok(),
                false => None,
            };
            match bound {
                Some(l) => l,
                None => {
                    let (l, moved) = bind_page(config.web_listen, &source.web_port_fallback)
                        .await
                        .with_context(|| {
                            format!("web.listen {}: cannot listen", config.web_listen)
                        })?;
                    if let Some(port) = moved {
                        // Where the page is from now on, for every later reading of the
                        // configuration (a reload, the cloud's settings, the page's own).
                        source = source.with_web_port(Some(port));
                        config.web_listen.set_port(port);
                        config.web_remote_listen.set_port(port);
                    }
                    l
                }
            }
        }
    };
    let listening = listener.local_addr()?;
    // Counted once the host's own start-up steps (store, key, listener) are done: their
    // failures are not the cloud document's.
    let mut trial = None;
    if unfit.is_none() && stored.is_some() {
        let start = begin_settings_trial(&store, &deps.clock).await?;
        trial = trial_deadline(&start);
        if let TrialStart::SetAside(_) = start {
            config = source.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            config.discovery.local_network |= store.search_local_networks()?;
            deps.logs.set_level(&config.log_level);
        }
    }
    if !listening.ip().is_loopback() {
        tracing::warn!(listen = %listening, "The local web listener is reachable from the network.");
    }
    let web_listen = config.web_listen;
    tracing::info!(listen = %listening, "Web listener ready.");
    let (web_stop_tx, web_stop_rx) = watch::channel(false);
    let (apply_tx, mut apply_rx) = tokio::sync::mpsc::channel::<Box<Config>>(4);
    // Restarts asked by the local page (activation, a new proxy), logged as such.
    let (page_tx, mut page_rx) = tokio::sync::mpsc::channel::<Box<Config>>(4);
    let page = Arc::new(web::Agent::new(
        web::Handles {
            store: store.clone(),
            key: key.clone(),
            state_dir: state_dir.clone(),
            clock: deps.clock.clone(),
            library: deps.library.clone(),
            link: deps.link.clone(),
            logs: deps.logs.clone(),
        },
        config.clone(),
        page_tx,
    ));
    let web = tokio::spawn(web::serve(
        listener,
        web::WebState {
            metrics: metrics.clone(),
            agent: Some(page.clone()),
        },
        stopped(web_stop_rx),
    ));
    let shared = Shared {
        store,
        key,
        metrics,
        page,
        apply: apply_tx,
        results_waiting: Arc::new(tokio::sync::Notify::new()),
        restart: crate::update::Restart::default(),
        deps,
    };
    let mut sighup = Hangup::new();
    tokio::pin!(shutdown);
    // The service manager's watchdog, when it asked for one (systemd WatchdogSec).
    let watchdog = crate::platform::watchdog_interval().map(|every| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                crate::platform::notify(crate::platform::ServiceState::Alive);
            }
        })
    });
    let mut result = Ok(Ended::Stopped);
    let mut health = None;
    loop {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut components = start_components(&config, &source, &shared, &stop_rx).await?;
        tracing::info!(printers = config.printers.len(), "Agent running.");
        // A staged version on trial confirms itself once the cloud answers (once per process).
        if health.is_none()
            && let crate::update::Launch::Staged(v) = &shared.deps.launched
        {
            health = Some(tokio::spawn(crate::update::check_health(
                crate::update::Health {
                    state_dir: state_dir.clone(),
                    store: shared.store.clone(),
                    link: shared.deps.link.clone(),
                    clock: shared.deps.clock.clone(),
                    results_waiting: shared.results_waiting.clone(),
                    restart: shared.restart.clone(),
                },
                v.clone(),
            )));
        }
        crate::platform::notify(crate::platform::ServiceState::Ready(&format!(
            "running; {} configured printers",
            config.printers.len()
        )));
        let next = loop {
            tokio::select! {
                _ = &mut shutdown => {
                    tracing::info!("Shutting down.");
                    break Next::Stop;
                }
                () = shared.restart.requested() => {
                    tracing::info!("Stopping to start again (agent update).");
                    break Next::Restart;
                }
                () = until(trial) => {
                    trial = None;
                    pass_settings_trial(&shared.store).await;
                }
                Some(c) = apply_rx.recv() => break Next::Apply(c, "cloud"),
                Some(c) = page_rx.recv() => break Next::Apply(c, "local page"),
                _ = sighup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration.");
                    let (s, k) = (shared.store.clone(), shared.key.clone());
                    let stored = tokio::task::spawn_blocking(move || crate::cloud::settings::stored(&s, &k))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten();
                    let fresh = source.reread().and_then(|src| {
                        let c = match &stored {
                            Some(doc) => src.parse_with_cloud(doc)?,
                            None => src.parse()?,
                        };
                        Ok((src, c))
                    });
                    match fresh {
                        Ok((src, c)) => {
                            source = src;
                            break Next::Apply(Box::new(c), "SIGHUP");
                        }
                        Err(e) => tracing::error!(problems = %e, "The new configuration is invalid; the running one stays."),
                    }
                }
                Some(r) = components.join_next() => {
                    if let Ok((name, res)) = r {
                        tracing::error!(component = name, result = ?res.as_ref().err().map(|e| e.to_string()), "A component stopped on its own; shutting down.");
                    }
                    result = Err(anyhow::anyhow!("a component stopped on its own"));
                    break Next::Stop;
                }
            }
        };
        crate::platform::notify(match next {
            Next::Stop | Next::Restart => crate::platform::ServiceState::Stopping,
            Next::Apply(..) => crate::platform::ServiceState::Reloading,
        });
        stop_tx.send(true).ok();
        stop_all(&mut components, config.stop_timeout).await?;
        match next {
            Next::Stop => break,
            Next::Restart => {
                result = Ok(Ended::Restart);
                break;
            }
            Next::Apply(c, why) => {
                // A new document from the cloud is on trial as a start on it would be.
                let mut c = c;
                if why == "cloud" {
                    let start = begin_settings_trial(&shared.store, &shared.deps.clock).await?;
                    trial = trial_deadline(&start);
                    if let TrialStart::SetAside(_) = start {
                        match source.parse() {
                            Ok(file) => *c = file,
                            Err(e) => {
                                tracing::error!(problems = %e, "The local file is invalid now; the running configuration stays.");
                                *c = config.clone();
                            }
                        }
                    }
                }
                if c.web_listen != web_listen {
                    tracing::warn!(listen = %c.web_listen, "web.listen changed; it takes effect at the next start.");
                }
                // The page's choice to search the host's networks holds whatever the
                // new configuration came from (SIGHUP, the cloud, the page).
                let s = shared.store.clone();
                c.discovery.local_network |=
                    tokio::task::spawn_blocking(move || s.search_local_networks())
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(false);
                config = *c;
                shared.deps.logs.set_level(&config.log_level);
                tracing::info!(from = why, "Configuration applied; components restarted.");
            }
        }
    }
    // A clean stop passes the trial: only runs that end otherwise count against the document.
    if trial.is_some() && result.is_ok() {
        pass_settings_trial(&shared.store).await;
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(h) = health {
        h.abort();
    }
    web_stop_tx.send(true).ok();
    let abort = web.abort_handle();
    match tokio::time::timeout(config.stop_timeout, web).await {
        Ok(Ok(Err(e))) => {
            tracing::warn!(component = "web", error = %e, "Component stopped with an error.")
        }
        Ok(_) => tracing::info!(component = "web", "Component stopped."),
        Err(_) => {
            // Cut short: it must not keep the port and the store past this run (an
            // in-process restart binds them again).
            abort.abort();
            tracing::error!(component = "web", "Stop deadline passed.");
        }
    }
    tracing::info!("Agent stopped.");
    result
}

/// Counts a run on the cloud settings in force, or sets them aside after failed runs
/// (logged here; the caller then runs on the file).
async fn begin_settings_trial(store: &Store, clock: &Clock) -> anyhow::Result<TrialStart> {
    let (s, now) = (store.clone(), clock.now_ms());
    let start =
        tokio::task::spawn_blocking(move || crate::cloud::settings::begin_trial(&s, now)).await??;
    if let TrialStart::SetAside(reason) = &start {
        tracing::error!(%reason, "The cloud settings were set aside; running on the local file.");
    }
    Ok(start)
}

/// When a run that began on trial has lasted long enough to pass it.
fn trial_deadline(start: &TrialStart) -> Option<tokio::time::Instant> {
    matches!(start, TrialStart::OnTrial)
        .then(|| tokio::time::Instant::now() + crate::cloud::settings::STABLE)
}

/// Records that the settings in force passed their trial (ran long enough, or stopped
/// cleanly): they are trusted from now on.
async fn pass_settings_trial(store: &Store) {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || crate::cloud::settings::trial_passed(&s)).await {
        Ok(Ok(())) => tracing::debug!("The cloud settings passed their trial."),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "Cannot record that the cloud settings passed their trial.")
        }
        Err(e) => tracing::warn!(error = %e, "Settings trial task failed."),
    }
}

/// Completes at `deadline`, never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The running reloadable components, by name (so a slow stop can say what it waits on).
#[derive(Default)]
struct Components {
    set: tokio::task::JoinSet<(&'static str, anyhow::Result<()>)>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Components {
    fn new() -> Components {
        Components::default()
    }

    fn spawn(
        &mut self,
        name: &'static str,
        task: impl std::future::Future<Output = (&'static str, anyhow::Result<()>)> + Send + 'static,
    ) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, name);
    }

    async fn join_next(
        &mut self,
    ) -> Option<Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>> {
        let r = self.set.join_next_with_id().await?;
        let id = match &r {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        self.names.remove(&id);
        Some(r.map(|(_, v)| v))
    }

    fn waiting_on(&self) -> String {
        let mut v: Vec<&str> = self.names.values().copied().collect();
        v.sort_unstable();
        v.join(", ")
    }
}

/// Stops every component within `deadline`, saying every 5 s which ones it still waits on.
async fn stop_all(components: &mut Components, deadline: Duration) -> anyhow::Result<()> {
    let limit = deadline;
    let deadline = tokio::time::sleep(deadline);
    tokio::pin!(deadline);
    let mut report = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(5),
        Duration::from_secs(5),
    );
    loop {
        tokio::select! {
            _ = report.tick() => {
                tracing::info!(waiting_on = %components.waiting_on(), "Still stopping.");
            }
            r = components.join_next() => match r {
                Some(Ok((name, res))) => {
                    if let Err(e) = res {
                        tracing::warn!(component = name, error = %e, "Component stopped with an error.");
                    } else {
                        tracing::debug!(component = name, "Component stopped.");
                    }
                }
                Some(Err(e)) => tracing::error!(error = %e, "Component task failed."),
                None => return Ok(()),
            },
            _ = &mut deadline => {
                tracing::error!(waiting_on = %components.waiting_on(), "Stop deadline passed; aborting the remaining components.");
                components.set.abort_all();
                anyhow::bail!("components did not stop within {} s", limit.as_secs());
            }
        }
    }
}

/// Starts the reloadable components (poller, uploader, cloud link, discovery) for one
/// configuration; they stop when `stop_rx` turns true.
async fn start_components(
    config: &Config,
    source: &crate::config::Source,
    shared: &Shared,
    stop_rx: &watch::Receiver<bool>,
) -> anyhow::Result<Components> {
    let (store, key, deps) = (&shared.store, &shared.key, &shared.deps);
    let mut managed = Vec::new();
    let unenrolled: std::collections::HashSet<String> = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
            let mut out = std::collections::HashSet::new();
            for p in s.printers()? {
                if let Some(sn) = &p.serial
                    && s.unenrolled_at(&format!("sn:{sn}"))?.is_some()
                {
                    out.insert(p.address);
                }
            }
            Ok(out)
        })
        .await??
    };
    for p in &config.printers {
        // Unenrolled by the cloud: not polled, even though the file names it, until a
        // discovery run finds it again.
        if unenrolled.contains(&p.address.to_string()) {
            tracing::info!(printer = %p.address, "Printer unenrolled by the cloud; not polled until discovery finds it again.");
            continue;
        }
        let (s, k, addr) = (store.clone(), key.clone(), p.address);
        let (id, stored) = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((
                s.printer_id(&addr.to_string())?,
                crate::jobs::stored_security(&s, &k, addr),
            ))
        })
        .await??;
        let mut target = config.profiles[p.profile].target(p.address);
        // Credentials the cloud set for this printer win over the profile's.
        if let Some(sec) = stored {
            target.security = sec;
        }
        managed.push(Managed {
            target,
            printer_id: id,
        });
    }
    // Printers found by earlier discovery runs stay managed across restarts (a new
    // configuration, SIGHUP, activation, a service restart); discovery itself only adds
    // printers it has not seen before.
    for (addr, id, profile, stored) in discovered_printers(config, store, key).await? {
        let profile = config
            .profiles
            .iter()
            .find(|p| Some(&p.name) == profile.as_ref())
            .unwrap_or(&config.profiles[0]);
        let mut target = profile.target(addr);
        if let Some(sec) = stored {
            target.security = sec;
        }
        managed.push(Managed {
            target,
            printer_id: id,
        });
    }
    let mut components = Components::new();
    // Disabled (or deleted) by the cloud: the cloud link and jobs run, the printer work
    // does not.
    let disabled = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.agent_state()).await??
            != crate::store::AgentState::Active
    };
    if disabled {
        tracing::warn!(
            "The agent is disabled by the cloud: printers are not polled or discovered."
        );
    }
    let reader = crate::poller::Reader::new(deps.library.clone(), deps.clock.clone());
    let client = match &deps.snmp {
        Some(c) => c.clone(),
        None => crate::poller::Snmp::Udp(UdpClient::new().context("cannot open the SNMP socket")?),
    };
    // Printer commands share the poller's socket.
    let snmp = client.clone();
    let (poller, handle) = Poller::new(
        client,
        config.poller.clone(),
        managed,
        Some(store.clone()),
        shared.metrics.clone(),
    );
    // Readings flow from the poller to the uploader, which queues uploads in the outbox.
    let (readings_tx, readings_rx) = tokio::sync::mpsc::channel(4096);
    // One task at a time per printer: commands and polls share the printers' locks.
    let locks = crate::poller::PrinterLocks::default();
    let poller = poller
        .with_readings(readings_tx)
        .with_reader(reader)
        .with_locks(locks.clone());
    // The uploader ends when the poller's readings end: it runs only with the poller.
    if !disabled {
        let uploader = crate::cloud::uploader::Uploader::new(
            store.clone(),
            config.upload,
            config.cloud.outbox_max_bytes,
        )
        .with_clock(deps.clock.clone())
        .with_metrics(shared.metrics.clone());
        let stop = stopped(stop_rx.clone());
        components.spawn("uploader", async move {
            uploader.run(readings_rx, stop).await;
            ("uploader", Ok(()))
        });
    }
    // "Discover now" requests (jobs, the page) reach the discovery loop here; runs never
    // overlap because the loop awaits each one.
    let (now_tx, now_rx) = tokio::sync::mpsc::channel::<crate::discovery::DiscoverRequest>(8);
    let discover = config.discovery.enabled().then_some(now_tx);
    let page = &shared.page;
    page.set_live(web::Live {
        config: config.clone(),
        poller: (!disabled).then(|| handle.clone()),
        discover: discover.clone().filter(|_| !disabled),
    });
    // The sender drains the outbox once the agent is activated and a cloud URL is set.
    match cloud_link(config, shared).await {
        Ok(Some(conn)) => {
            tracing::info!(agent = %conn.creds.agent_id, "Cloud link ready.");
            let link = crate::cloud::heartbeat::SettingsLink {
                source: source.clone(),
                key: key.clone(),
                apply: shared.apply.clone(),
            };
            let jobs = crate::jobs::Context {
                cloud: conn.clone(),
                clock: deps.clock.clone(),
                store: store.clone(),
                library: deps.library.clone(),
                logs: deps.logs.clone(),
                results_waiting: shared.results_waiting.clone(),
                restart: shared.restart.clone(),
                poller: handle.clone(),
                discover,
                settings: Some(link.clone()),
                snmp: snmp.clone(),
                disabled,
                printer_locks: locks.clone(),
                library_keys: config.cloud.library_keys.clone(),
                update_keys: config.cloud.update_keys.clone(),
                state_dir: deps.state_dir.clone(),
                progress: Some(page.progress.subscribe()),
            };
            let stop = stopped(stop_rx.clone());
            components.spawn("jobs", async move {
                crate::jobs::run(jobs, stop).await;
                ("jobs", Ok(()))
            });
            let dir = deps.state_dir.clone();
            let sources = crate::cloud::heartbeat::Sources {
                library: deps.library.clone(),
                update: Arc::new(move || crate::update::status(&dir)),
            };
            let (c, s, stop) = (conn.clone(), store.clone(), stopped(stop_rx.clone()));
            components.spawn("heartbeat", async move {
                crate::cloud::heartbeat::run(c, s, sources, Some(link), stop).await;
                ("heartbeat", Ok(()))
            });
            let (s, stop) = (store.clone(), stopped(stop_rx.clone()));
            let ownership = crate::cloud::sender::Ownership {
                takeover: config.discovery.takeover,
                poller: Some(handle.clone()),
                metrics: Some(shared.metrics.clone()),
            };
            components.spawn("sender", async move {
                crate::cloud::sender::run(conn, s, ownership, stop).await;
                ("sender", Ok(()))
            });
        }
        Ok(None) => tracing::info!("Not activated or no cloud URL: uploads wait in the outbox."),
        Err(e) => {
            tracing::error!(error = %e, "Cloud link unavailable: uploads wait in the outbox.")
        }
    }
    if config.discovery.enabled() && !disabled {
        let (cfg, m, stop) = (
            config.clone(),
            shared.metrics.clone(),
            stopped(stop_rx.clone()),
        );
        let page = page.clone();
        components.spawn("discovery", async move {
            discovery_loop(cfg, handle, m, now_rx, page, stop).await;
            ("discovery", Ok(()))
        });
    }
    if !disabled {
        let poll_stop = stopped(stop_rx.clone());
        components.spawn("poller", async move {
            poller.run(poll_stop).await;
            ("poller", Ok(()))
        });
    }
    Ok(components)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_page_port_moves_to_the_first_free_fallback() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        // Two distinct free ports (held together while chosen).
        let (a, b) = {
            let x = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let y = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            (
                x.local_addr().unwrap().port(),
                y.local_addr().unwrap().port(),
            )
        };
        // The taken port, then a free one: the first free fallback is used.
        let (l, moved) = bind_page(busy, &[busy.port(), a, b]).await.unwrap();
        assert_eq!(moved, Some(a));
        assert_eq!(l.local_addr().unwrap().port(), a);
        // No fallback: the port's own error.
        let e = bind_page(busy, &[]).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        // A free port stays where it is.
        let mut at = busy;
        at.set_port(b);
        let (l2, moved) = bind_page(at, &[a]).await.unwrap();
        assert_eq!((moved, l2.local_addr().unwrap()), (None, at));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_waits_for_components_within_the_configured_deadline_and_names_laggards() {
        let mut c = Components::new();
        c.spawn("quick", async { ("quick", Ok(())) });
        c.spawn("slow", async {
            tokio::time::sleep(Duration::from_secs(8)).await;
            ("slow", Ok(()))
        });
        c.spawn("stuck", async {
            std::future::pending::<()>().await;
            ("stuck", Ok(()))
        });
        assert_eq!(c.waiting_on(), "quick, slow, stuck");
        let t = tokio::time::Instant::now();
        let e = stop_all(&mut c, Duration::from_secs(12)).await.unwrap_err();
        assert_eq!(t.elapsed(), Duration::from_secs(12));
        assert!(e.to_string().contains("12 s"), "{e}");
        assert_eq!(
            c.waiting_on(),
            "stuck",
            "the one named when the deadline passed"
        );

        // Everything stopping in time: back as soon as the last one has.
        let mut c = Components::new();
        c.spawn("slow", async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ("slow", Ok(()))
        });
        let t = tokio::time::Instant::now();
        stop_all(&mut c, Duration::from_secs(30)).await.unwrap();
        assert_eq!(t.elapsed(), Duration::from_secs(3));
        assert_eq!(c.waiting_on(), "");
    }
}
