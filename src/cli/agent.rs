//! The agent's own commands: `run` (and the Windows service's body), `service`,
//! `activate`, `status`.

use super::exit::{self, Exit};
use super::{AgentArgs, StateArgs, load_config, load_source, state_dir};
use clap::{Args, Subcommand};
use std::io::Write;

/// `service` subcommands (Windows; elevated prompt).
#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Install the agent as the service "FleetAgent" (automatic start as LocalSystem,
    /// restarted after a failure). The options given here are the service's.
    Install(AgentArgs),
    /// Stop the service if it runs, and remove it (configuration and state stay).
    Uninstall,
    /// Start the service and wait until it runs.
    Start,
    /// Stop the service (running tasks finish first) and wait until it has.
    Stop,
    /// Set the installed service's recovery actions: restart after 10 s, then 60 s, also
    /// after a non-zero exit (`install` does this; the MSI runs it).
    Recovery,
    /// Run under the service manager (the installed service's command line).
    #[command(hide = true)]
    Run(AgentArgs),
}

/// `activate` arguments.
#[derive(Args, Debug)]
pub struct ActivateArgs {
    /// The activation code (XXXX-XXXX-XXXX).
    #[arg(long)]
    pub code: String,
    /// Configuration and state.
    #[command(flatten)]
    pub agent: StateArgs,
    /// The cloud's URL (replaces `cloud.url`, as `run --cloud-url` does; the Windows
    /// installer's CLOUDURL). Empty: the configuration's.
    #[arg(long, env = "FLEET_AGENT_CLOUD_URL", value_name = "URL")]
    pub cloud_url: Option<String>,
}

/// `status` arguments.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Configuration and state.
    #[command(flatten)]
    pub agent: StateArgs,
    /// Print JSON (every printer with its latest report).
    #[arg(long)]
    pub json: bool,
}

/// The agent in the foreground (`run`, and the Windows service's body). Its log goes to
/// standard error (and `--log-file`) unless `logs` was set up already (the service).
pub(super) async fn run_agent(
    a: AgentArgs,
    logs: Option<crate::telemetry::Logs>,
) -> Result<(), Exit> {
    let source = load_source(a.config.as_ref())?
        .with_web_port(a.web_port)
        .with_cloud_url(a.cloud_url.clone())
        .with_web_port_fallback(a.web_port_fallback.0.clone());
    let c = source.parse().map_err(Exit::from)?;
    let logs = match logs {
        Some(l) => l,
        None => crate::telemetry::Logs::init(&c.log_level, a.log_file.as_deref()).map_err(|e| {
            Exit::new(
                exit::NO_INPUT,
                format!(
                    "--log-file {}: {e}",
                    a.log_file
                        .as_deref()
                        .unwrap_or(std::path::Path::new(""))
                        .display()
                ),
            )
        })?,
    };
    let dir = state_dir(a.state_dir.as_ref(), &c);
    if crate::update::supervised() {
        crate::platform::stop_when_stdin_closes();
    }
    // A staged version run as a child is started as `run` (it is not the service).
    let mut child_args: Vec<std::ffi::OsString> = vec!["run".into()];
    child_args.extend(a.to_args());
    loop {
        // A verified staged update replaces this process here (it does not return then),
        // or runs as this process's child until it ends.
        let launched = launch(&dir, &c.cloud.update_keys, &child_args).await;
        if let crate::update::Launch::Ran(code) = launched {
            return match code {
                0 => Ok(()),
                code => Err(Exit {
                    code,
                    message: format!("the agent's staged version exited with status {code}"),
                }),
            };
        }
        let deps = crate::app::Deps::new(dir.clone(), logs.clone(), launched);
        let ended = crate::app::run(source.clone(), deps, crate::platform::shutdown_signal())
            .await
            .map_err(Exit::from)?;
        if ended != crate::app::Ended::Restart {
            return Ok(());
        }
        // Where staged versions run as children, this process starts the next one.
        if !crate::update::child_handover() || crate::update::supervised() {
            return Err(restart_for_update());
        }
        tracing::info!("Starting again for the agent update.");
    }
}

/// The launcher's decision (see [`crate::update::launch`]). While it waits on a staged
/// version run as a child, this process's own stop requests (SIGTERM, Ctrl-C) still
/// reach it, and through it the child.
async fn launch(
    dir: &std::path::Path,
    keys: &[String],
    child_args: &[std::ffi::OsString],
) -> crate::update::Launch {
    if !crate::update::child_handover() {
        return crate::update::launch(dir, keys, child_args);
    }
    let (d, k, a) = (dir.to_path_buf(), keys.to_vec(), child_args.to_vec());
    let mut waiting = tokio::task::spawn_blocking(move || crate::update::launch(&d, &k, &a));
    let done = tokio::select! {
        r = &mut waiting => r,
        () = crate::platform::relay_os_stop() => waiting.await,
    };
    done.unwrap_or(crate::update::Launch::Ran(exit::FAILURE))
}

/// The way out of a run that stopped to start again for an update: status 75 for the
/// service manager, else (in the foreground) the installed launcher in this process.
fn restart_for_update() -> Exit {
    if crate::update::supervised() {
        return Exit {
            code: crate::update::EXIT_RESTART,
            message: "stopped to start again for an agent update (status 75: the launcher starts what follows)".into(),
        };
    }
    if crate::platform::service_manager() {
        return Exit {
            code: crate::update::EXIT_RESTART,
            message: "stopped to start again for an agent update (status 75: the service manager starts it again)".into(),
        };
    }
    #[cfg(unix)]
    let message = format!(
        "the agent could not start again for its update: {}",
        crate::update::restart_in_place()
    );
    #[cfg(not(unix))]
    let message =
        "the agent stopped for an update but no service manager starts it again".to_string();
    Exit {
        code: exit::FAILURE,
        message,
    }
}

/// `service ...`: the Windows service manager; elsewhere a usage error that points to
/// the packages' systemd unit.
pub(super) fn service(cmd: ServiceCommand) -> Result<(), Exit> {
    #[cfg(windows)]
    {
        use crate::platform::winsvc;
        let fail = |message: String| Exit {
            code: exit::FAILURE,
            message,
        };
        match cmd {
            ServiceCommand::Install(a) => {
                let mut args: Vec<std::ffi::OsString> = vec!["service".into(), "run".into()];
                args.extend(a.to_args());
                let partial = winsvc::install(args).map_err(fail)?;
                println!(
                    "installed the service {} (automatic start); start it with `fleet-agent service start`",
                    winsvc::SERVICE_NAME
                );
                if let Some(why) = partial {
                    eprintln!(
                        "warning: {why}: the service will not be restarted after a failure; \
                         run `fleet-agent service recovery` again, or set it in services.msc (Recovery tab)"
                    );
                }
            }
            ServiceCommand::Uninstall => {
                winsvc::uninstall().map_err(fail)?;
                println!("removed the service {}", winsvc::SERVICE_NAME);
            }
            ServiceCommand::Start => {
                winsvc::start().map_err(fail)?;
                println!("the service {} is running", winsvc::SERVICE_NAME);
            }
            ServiceCommand::Stop => {
                winsvc::stop().map_err(fail)?;
                println!("the service {} is stopped", winsvc::SERVICE_NAME);
            }
            ServiceCommand::Recovery => {
                winsvc::recovery().map_err(fail)?;
                println!(
                    "the service {} restarts after a failure",
                    winsvc::SERVICE_NAME
                );
            }
            ServiceCommand::Run(a) => service_run(a)?,
        }
        Ok(())
    }
    #[cfg(not(windows))]
    {
        let _ = cmd;
        Err(Exit {
            code: 2,
            message: "`fleet-agent service` manages the Windows service; on Linux install the .deb or .rpm package, which brings the systemd unit (systemctl enable --now fleet-agent), or run `fleet-agent run` in the foreground".into(),
        })
    }
}

/// `service run`: the body the Windows service manager starts. Logs go to a file (a
/// service has no console): `--log-file`, else `logs\fleet-agent.log` in the state
/// directory; a configuration error is written there before the service stops with 64.
#[cfg(windows)]
fn service_run(a: AgentArgs) -> Result<(), Exit> {
    let log = a.log_file.clone().unwrap_or_else(|| {
        a.state_dir
            .clone()
            .unwrap_or_else(crate::config::default_state_dir)
            .join("logs")
            .join("fleet-agent.log")
    });
    crate::platform::winsvc::run(move || {
        // The log first: a configuration error is written there before the service stops.
        let logs = crate::telemetry::Logs::init("info", Some(&log))
            .or_else(|_| crate::telemetry::Logs::init("info", None))
            .unwrap_or_default();
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "Cannot start the async runtime.");
                return exit::FAILURE;
            }
        };
        // A staged version run as this service's child logs to the same file.
        let mut a = a.clone();
        a.log_file = Some(log.clone());
        match rt.block_on(run_agent(a, Some(logs.clone()))) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(code = e.code, "{}", e.message);
                e.code
            }
        }
    })
    .map_err(|message| Exit {
        code: exit::FAILURE,
        message,
    })
}

pub(super) async fn activate(a: ActivateArgs) -> Result<(), Exit> {
    use crate::cloud::activation::{self, ActivationError as E};
    let c = load_source(a.agent.config.as_ref())?
        .with_cloud_url(a.cloud_url.clone())
        .parse()
        .map_err(Exit::from)?;
    let fail = |message: String| Exit {
        code: exit::FAILURE,
        message,
    };
    let dir = state_dir(a.agent.state_dir.as_ref(), &c);
    // The same store, key and proxy in force as the running agent (a proxy entered on the
    // local page wins over the file's).
    let d = dir.clone();
    let (store, key) = tokio::task::spawn_blocking(move || {
        let store = crate::store::Store::open(&d)?;
        let key = crate::store::secrets::SealKey::for_store(&store, &d)?;
        Ok::<_, crate::store::StoreError>((store, key))
    })
    .await
    .map_err(|e| fail(e.to_string()))?
    .map_err(|e| fail(e.to_string()))?;
    let proxy = activation::proxy_in_force(&store, &key, &c);
    match activation::activate(&c, &proxy, &a.code, &store, &key).await {
        Ok(creds) => {
            let url = c.cloud.url.as_deref().unwrap_or_default();
            println!(
                "activated as {}; `fleet-agent run` now uploads to {url}",
                creds.agent_id
            );
            Ok(())
        }
        Err(e @ E::NoCloudUrl) => Err(Exit {
            code: exit::CONFIG,
            message: e.to_string(),
        }),
        Err(e @ (E::CodeShape | E::Refused { .. })) => Err(Exit {
            code: exit::DATA,
            message: format!("activation refused: {e}"),
        }),
        Err(e @ E::Config(_)) => Err(Exit {
            code: exit::CONFIG,
            message: e.to_string(),
        }),
        Err(e) => Err(fail(format!("activation failed: {e}"))),
    }
}

pub(super) async fn status(a: StatusArgs) -> Result<(), Exit> {
    let c = load_config(a.agent.config.as_ref())?;
    let dir = state_dir(a.agent.state_dir.as_ref(), &c);
    if !dir.join("fleet-agent.db").exists() {
        return Err(Exit {
            code: exit::NO_INPUT,
            message: format!(
                "{}: no store yet (has `fleet-agent run` been started with this state directory?)",
                dir.display()
            ),
        });
    }
    type Rows = Vec<(crate::store::PrinterRow, Option<String>)>;
    let (listen, remote_listen) = (c.web_listen, c.web_remote_listen);
    let (rows, page) = tokio::task::spawn_blocking(
        move || -> anyhow::Result<(Rows, String)> {
            let store = crate::store::Store::open(&dir)?;
            let rows = store.printers_seen()?;
            let remote = !store.localhost_only()? && store.page_password()?.is_some();
            let page = match crate::web::tls::stored_fingerprint(&store)? {
                Some(fp) if remote => {
                    let at = if listen.ip().is_loopback() { remote_listen } else { listen };
                    format!(
                        "local page: http://localhost:{}/ here, https://<this computer>:{}/ for other hosts (listening on {at}; certificate SHA-256 {fp})",
                        at.port(),
                        at.port()
                    )
                }
                _ => format!("local page: http://{listen}/ (this computer only)"),
            };
            let rows = rows
                .into_iter()
                .map(|r| {
                    let rep = store.latest_report(r.id)?;
                    Ok((r, rep))
                })
                .collect::<anyhow::Result<Rows>>()?;
            Ok((rows, page))
        },
    )
    .await
    .map_err(|e| Exit::from(anyhow::Error::from(e)))?
    .map_err(Exit::from)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(r, rep)| {
                serde_json::json!({
                    "printer": r,
                    "report": rep.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()),
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &v).ok();
        writeln!(out).ok();
        return Ok(());
    }
    writeln!(out, "{page}").ok();
    writeln!(
        out,
        "{:<22} {:<18} {:<16} {:<20} {:>9}  {:<26} last seen",
        "address", "health", "serial", "model", "pages", "lowest supply"
    )
    .ok();
    for (r, rep) in &rows {
        let v = rep
            .as_deref()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
        let pages = v
            .as_ref()
            .and_then(|v| v["counters"]["lifetimeCount"].as_u64())
            .map_or("-".into(), |p| p.to_string());
        let low = v
            .as_ref()
            .and_then(|v| {
                v["supplies"]
                    .as_array()?
                    .iter()
                    .filter_map(|s| {
                        Some((
                            s["percentRemaining"].as_u64()?,
                            s["description"].as_str().unwrap_or("?").to_string(),
                        ))
                    })
                    .min_by_key(|x| x.0)
            })
            .map_or("-".into(), |(p, d)| format!("{d} {p}%"));
        let seen = r.last_seen_ms.map_or("never".to_string(), |ms| {
            let ago = (crate::clock::Clock::system().now_ms() - ms).max(0) / 1000;
            format!("{ago} s ago")
        });
        let health = match &r.health_reason {
            Some(reason) if r.health != crate::store::Health::Ok => {
                format!("{} ({})", r.health.as_str(), short(reason))
            }
            _ => r.health.as_str().to_string(),
        };
        writeln!(
            out,
            "{:<22} {:<18} {:<16} {:<20} {:>9}  {:<26} {seen}",
            r.address,
            health,
            r.serial.as_deref().unwrap_or("-"),
            r.model.as_deref().unwrap_or("-"),
            pages,
            low
        )
        .ok();
    }
    if rows.is_empty() {
        writeln!(
            out,
            "(no managed printers yet: add [[printers]] to the configuration, or give [discovery] targets to `fleet-agent run`, which manages what it finds; `fleet-agent discover` alone only reports)"
        )
        .ok();
    }
    Ok(())
}

fn short(s: &str) -> String {
    let code = s.rsplit(": ").next().unwrap_or(s);
    code.chars().take(40).collect()
}
