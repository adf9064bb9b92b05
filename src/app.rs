//! The agent: builds the components from a validated [`Config`], starts them in
//! dependency order (store, web, poller) and stops them in reverse within a deadline
//! when the shutdown future completes.

use crate::config::Config;
use crate::poller::scheduler::{Managed, Poller};
use crate::snmp::UdpClient;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::web;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Default time allowed for components to stop.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the agent until `shutdown` completes.
///
/// # Errors
/// Start-up failures (store, listener); runtime faults are logged and retried inside
/// the components.
pub async fn run(
    config: Config,
    state_dir: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let store = {
        let dir = state_dir.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir)).await??
    };
    tracing::info!(state_dir = %state_dir.display(), "Store opened.");
    let mut managed = Vec::new();
    for p in &config.printers {
        let s = store.clone();
        let addr = p.address.to_string();
        let id = tokio::task::spawn_blocking(move || s.printer_id(&addr)).await??;
        managed.push(Managed {
            target: config.profiles[p.profile].target(p.address),
            printer_id: id,
        });
    }
    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(config.web_listen)
        .await
        .with_context(|| format!("web.listen {}: cannot listen", config.web_listen))?;
    if !config.web_listen.ip().is_loopback() {
        tracing::warn!(listen = %config.web_listen, "The local web listener is reachable from the network.");
    }
    tracing::info!(listen = %listener.local_addr()?, "Web listener ready.");
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    let mut components = tokio::task::JoinSet::new();
    let web_state = web::WebState {
        metrics: metrics.clone(),
        store: Some(store.clone()),
    };
    let web_stop = stopped(stop_rx.clone());
    components.spawn(async move {
        (
            "web",
            web::serve(listener, web_state, web_stop)
                .await
                .map_err(anyhow::Error::from),
        )
    });
    let client = UdpClient::new().context("cannot open the SNMP socket")?;
    let (poller, _handle) = Poller::new(
        client,
        config.poller.clone(),
        managed,
        Some(store.clone()),
        metrics.clone(),
    );
    let poll_stop = stopped(stop_rx.clone());
    components.spawn(async move {
        poller.run(poll_stop).await;
        ("poller", Ok(()))
    });
    tracing::info!(printers = config.printers.len(), "Agent running.");
    tokio::select! {
        _ = shutdown => tracing::info!("Shutting down."),
        Some(r) = components.join_next() => {
            if let Ok((name, res)) = r {
                tracing::error!(component = name, result = ?res.as_ref().err().map(|e| e.to_string()), "A component stopped on its own; shutting down.");
            }
        }
    }
    stop_tx.send(true).ok();
    let deadline = tokio::time::sleep(STOP_DEADLINE);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = components.join_next() => match r {
                Some(Ok((name, res))) => {
                    if let Err(e) = res {
                        tracing::warn!(component = name, error = %e, "Component stopped with an error.");
                    } else {
                        tracing::info!(component = name, "Component stopped.");
                    }
                }
                Some(Err(e)) => tracing::error!(error = %e, "Component task failed."),
                None => break,
            },
            _ = &mut deadline => {
                tracing::error!(remaining = components.len(), "Stop deadline passed; aborting the remaining components.");
                components.abort_all();
                anyhow::bail!("components did not stop within {} s", STOP_DEADLINE.as_secs());
            }
        }
    }
    tracing::info!("Agent stopped.");
    Ok(())
}
