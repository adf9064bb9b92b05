//! The agent: builds the components from a validated [`Config`], starts them in
//! dependency order (store, web, poller) and stops them in reverse within a deadline
//! when the shutdown future completes.

use crate::config::Config;
use crate::poller::scheduler::{Managed, Poller};
use crate::store::Store;
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
    mut now: tokio::sync::mpsc::Receiver<crate::jobs::DiscoverRequest>,
    page: Arc<web::Agent>,
    stop: impl std::future::Future<Output = ()>,
) {
    use crate::discovery;
    tokio::pin!(stop);
    let (store, seal) = (page.store.clone(), page.key.clone());
    let d = &config.discovery;
    // Jobs waiting for the end of the current run.
    let mut waiting: Vec<crate::jobs::DiscoverRequest> = Vec::new();
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
        let known: std::collections::HashSet<String> = {
            let s = store.clone();
            tokio::task::spawn_blocking(move || s.printers())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.address)
                .collect()
        };
        let mut added = 0;
        for dev in report
            .devices
            .iter()
            .filter(|d| d.discovered_by.contains(&"snmp"))
        {
            let addr = std::net::SocketAddr::new(dev.address, d.port);
            if known.contains(&addr.to_string()) {
                poller.sighted(addr);
                continue;
            }
            let profile = config
                .profiles
                .iter()
                .find(|p| Some(&p.name) == dev.profile.as_ref())
                .unwrap_or(&config.profiles[0]);
            let (s, k) = (store.clone(), seal.clone());
            let found = tokio::task::spawn_blocking(move || {
                Ok::<_, crate::store::StoreError>((
                    s.printer_id(&addr.to_string())?,
                    crate::jobs::stored_security(&s, &k, addr),
                ))
            })
            .await;
            if let Ok(Ok((id, stored))) = found {
                let mut target = profile.target(addr);
                if let Some(sec) = stored {
                    target.security = sec;
                }
                poller.add(Managed {
                    target,
                    printer_id: id,
                });
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
        let summary = crate::jobs::DiscoverySummary {
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
                    && s.setting(&crate::cloud::uploader::unenrolled_key(&format!("sn:{sn}")))?
                        .is_some()
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

/// Builds the cloud client and loads the activation credentials, when both exist.
async fn cloud_link(
    config: &Config,
    state_dir: &std::path::Path,
    store: &Store,
) -> anyhow::Result<
    Option<(
        Arc<crate::cloud::client::CloudClient>,
        crate::cloud::client::Credentials,
    )>,
> {
    let Some(url) = config.cloud.url.clone() else {
        return Ok(None);
    };
    let ca = match &config.cloud.ca_file {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("cloud.ca_file {}", p.display()))?)
        }
        None => None,
    };
    let (s, dir) = (store.clone(), state_dir.to_path_buf());
    let c = config.clone();
    // The credentials and the proxy in force (the local page's, else the file's), with one
    // load of the seal key.
    let found = tokio::task::spawn_blocking(
        move || -> anyhow::Result<Option<(crate::cloud::client::Credentials, crate::config::Proxy)>> {
            let key = crate::store::secrets::SealKey::load_or_create(&dir)?;
            let (Some(agent_id), Some(client_id), Some(client_secret)) = (
                s.setting("cloud.agent_id")?,
                s.setting("cloud.client_id")?,
                s.secret(&key, "cloud.client_secret")?,
            ) else {
                return Ok(None);
            };
            let creds = crate::cloud::client::Credentials {
                agent_id,
                client_id,
                client_secret,
            };
            Ok(Some((creds, web::api::effective_proxy(&s, &key, &c))))
        },
    )
    .await??;
    let Some((creds, proxy)) = found else {
        return Ok(None);
    };
    let client = crate::cloud::client::CloudClient::with_proxy(
        &url,
        ca.as_deref(),
        config.cloud.timeout,
        &proxy,
    )?;
    Ok(Some((Arc::new(client), creds)))
}

/// Why the running components are being stopped.
enum Next {
    /// Shut the agent down.
    Stop,
    /// Restart the components with this configuration.
    Apply(Box<Config>, &'static str),
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

/// Runs the agent until `shutdown` completes.
///
/// The configuration in force is `source` with the cloud's stored settings laid over it.
/// Settings accepted from the cloud and SIGHUP (which re-reads the file) restart the
/// reloadable components (poller, discovery, uploader, sender, heartbeat) with the new
/// configuration; an invalid one is refused with its reasons and the old one keeps
/// running. The store and the web listener stay up throughout.
///
/// # Errors
/// Start-up failures (store, listener, an invalid file); runtime faults are logged and
/// retried inside the components.
pub async fn run(
    source: crate::config::Source,
    state_dir: PathBuf,
    launched: crate::update::Launch,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let _claim = crate::platform::lock_state_dir(&state_dir)?;
    let store = {
        let dir = state_dir.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir)).await??
    };
    tracing::info!(state_dir = %state_dir.display(), "Store opened.");
    let key = {
        let dir = state_dir.clone();
        tokio::task::spawn_blocking(move || crate::store::secrets::SealKey::load_or_create(&dir))
            .await??
    };
    let stored = crate::cloud::settings::stored(&store, &key)?;
    let (mut config, unfit) = crate::cloud::settings::effective(&source, stored.as_ref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(e) = unfit {
        tracing::error!(problems = %e, "The stored cloud settings do not fit the local configuration; running on the file alone.");
    }
    crate::telemetry::set_log_level(&config.log_level);
    {
        let (s, keys, dir) = (
            store.clone(),
            config.cloud.library_keys.clone(),
            state_dir.clone(),
        );
        tokio::task::spawn_blocking(move || {
            crate::jobs::load_library(&s, &keys);
            // A rolled-back update's outcome, for its job.
            crate::update::settle(&dir, &s);
        })
        .await?;
    }
    // A level chosen on the local page wins until the next change from the cloud.
    if let Some(level) = store.setting(web::keys::LOG_LEVEL)? {
        crate::telemetry::set_log_level(&level);
    }
    let mut source = source;
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.web_listen)
        .await
        .with_context(|| format!("web.listen {}: cannot listen", config.web_listen))?;
    if !config.web_listen.ip().is_loopback() {
        tracing::warn!(listen = %config.web_listen, "The local web listener is reachable from the network.");
    }
    let web_listen = config.web_listen;
    tracing::info!(listen = %listener.local_addr()?, "Web listener ready.");
    let (web_stop_tx, web_stop_rx) = watch::channel(false);
    let (apply_tx, mut apply_rx) = tokio::sync::mpsc::channel::<Box<Config>>(4);
    // Restarts asked by the local page (activation, a new proxy), logged as such.
    let (page_tx, mut page_rx) = tokio::sync::mpsc::channel::<Box<Config>>(4);
    let page = Arc::new(web::Agent::new(
        store.clone(),
        key.clone(),
        state_dir.clone(),
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
    let mut result = Ok(());
    let mut health = None;
    loop {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut components = start_components(
            &config,
            &source,
            &state_dir,
            &store,
            &key,
            &metrics,
            &stop_rx,
            apply_tx.clone(),
            &page,
        )
        .await?;
        tracing::info!(printers = config.printers.len(), "Agent running.");
        // A staged version on trial confirms itself once the cloud answers (once per process).
        if health.is_none()
            && let crate::update::Launch::Staged(v) = &launched
        {
            health = Some(tokio::spawn(crate::update::check_health(
                state_dir.clone(),
                store.clone(),
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
                Some(c) = apply_rx.recv() => break Next::Apply(c, "cloud"),
                Some(c) = page_rx.recv() => break Next::Apply(c, "local page"),
                _ = sighup.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration.");
                    let s = store.clone();
                    let k = key.clone();
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
            Next::Stop => crate::platform::ServiceState::Stopping,
            Next::Apply(..) => crate::platform::ServiceState::Reloading,
        });
        stop_tx.send(true).ok();
        stop_all(&mut components, config.stop_timeout).await?;
        match next {
            Next::Stop => break,
            Next::Apply(c, why) => {
                if c.web_listen != web_listen {
                    tracing::warn!(listen = %c.web_listen, "web.listen changed; it takes effect at the next start.");
                }
                config = *c;
                crate::telemetry::set_log_level(&config.log_level);
                tracing::info!(from = why, "Configuration applied; components restarted.");
            }
        }
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(h) = health {
        h.abort();
    }
    web_stop_tx.send(true).ok();
    match tokio::time::timeout(config.stop_timeout, web).await {
        Ok(Ok(Err(e))) => {
            tracing::warn!(component = "web", error = %e, "Component stopped with an error.")
        }
        Ok(_) => tracing::info!(component = "web", "Component stopped."),
        Err(_) => tracing::error!(component = "web", "Stop deadline passed."),
    }
    tracing::info!("Agent stopped.");
    result
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
#[allow(clippy::too_many_arguments)]
async fn start_components(
    config: &Config,
    source: &crate::config::Source,
    state_dir: &std::path::Path,
    store: &Store,
    key: &crate::store::secrets::SealKey,
    metrics: &Arc<Metrics>,
    stop_rx: &watch::Receiver<bool>,
    apply: tokio::sync::mpsc::Sender<Box<Config>>,
    page: &Arc<web::Agent>,
) -> anyhow::Result<Components> {
    let mut managed = Vec::new();
    for p in &config.printers {
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
    // Disabled by the cloud: the cloud link and jobs run, the printer work does not.
    let disabled = {
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.setting(crate::jobs::DISABLED))
            .await??
            .is_some()
    };
    if disabled {
        tracing::warn!(
            "The agent is disabled by the cloud: printers are not polled or discovered."
        );
    }
    let client = UdpClient::new().context("cannot open the SNMP socket")?;
    // Printer commands share the poller's socket.
    let snmp = client.clone();
    let (poller, handle) = Poller::new(
        client,
        config.poller.clone(),
        managed,
        Some(store.clone()),
        metrics.clone(),
    );
    // Readings flow from the poller to the uploader, which queues uploads in the outbox.
    let (readings_tx, readings_rx) = tokio::sync::mpsc::channel(4096);
    let poller = poller.with_readings(readings_tx);
    // The uploader ends when the poller's readings end: it runs only with the poller.
    if !disabled {
        let uploader = crate::cloud::uploader::Uploader::new(
            store.clone(),
            config.upload,
            config.cloud.outbox_max_bytes,
        )
        .with_metrics(metrics.clone());
        let stop = stopped(stop_rx.clone());
        components.spawn("uploader", async move {
            uploader.run(readings_rx, stop).await;
            ("uploader", Ok(()))
        });
    }
    // "Discover now" requests (jobs, later the web page) reach the discovery loop here;
    // runs never overlap because the loop awaits each one.
    let (now_tx, now_rx) = tokio::sync::mpsc::channel::<crate::jobs::DiscoverRequest>(8);
    let discover = config.discovery.enabled().then_some(now_tx);
    page.set_live(web::Live {
        config: config.clone(),
        poller: (!disabled).then(|| handle.clone()),
        discover: discover.clone().filter(|_| !disabled),
    });
    // The sender drains the outbox once the agent is activated and a cloud URL is set.
    match cloud_link(config, state_dir, store).await {
        Ok(Some((client, creds))) => {
            tracing::info!(agent = %creds.agent_id, "Cloud link ready.");
            let link = crate::cloud::heartbeat::SettingsLink {
                source: source.clone(),
                key: key.clone(),
                apply,
            };
            let jobs = crate::jobs::Context {
                store: store.clone(),
                poller: handle.clone(),
                discover,
                settings: Some(link.clone()),
                snmp: snmp.clone(),
                disabled,
                printer_locks: Default::default(),
                library_keys: config.cloud.library_keys.clone(),
                update_keys: config.cloud.update_keys.clone(),
                state_dir: state_dir.to_path_buf(),
                progress: Some(page.progress.subscribe()),
            };
            let (c, cr, stop) = (client.clone(), creds.clone(), stopped(stop_rx.clone()));
            components.spawn("jobs", async move {
                crate::jobs::run(c, cr, jobs, stop).await;
                ("jobs", Ok(()))
            });
            let (c, cr, s, stop) = (
                client.clone(),
                creds.clone(),
                store.clone(),
                stopped(stop_rx.clone()),
            );
            components.spawn("heartbeat", async move {
                crate::cloud::heartbeat::run(c, cr, s, Some(link), stop).await;
                ("heartbeat", Ok(()))
            });
            let (s, stop) = (store.clone(), stopped(stop_rx.clone()));
            let ownership = crate::cloud::sender::Ownership {
                takeover: config.discovery.takeover,
                poller: Some(handle.clone()),
            };
            components.spawn("sender", async move {
                crate::cloud::sender::run(client, creds, s, ownership, stop).await;
                ("sender", Ok(()))
            });
        }
        Ok(None) => tracing::info!("Not activated or no cloud URL: uploads wait in the outbox."),
        Err(e) => {
            tracing::error!(error = %e, "Cloud link unavailable: uploads wait in the outbox.")
        }
    }
    if config.discovery.enabled() && !disabled {
        let (cfg, m, stop) = (config.clone(), metrics.clone(), stopped(stop_rx.clone()));
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
