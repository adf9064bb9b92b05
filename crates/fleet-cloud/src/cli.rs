//! The `fleet-cloud` command line: `serve`, `create-agent`, `activation-code`, `agents`,
//! `assets`, `settings`, `job`, `jobs`, `schedules`, `unschedule`, and the signing of printer support libraries and agent
//! updates (`library-key`, `library-sign`, `update-sign`).

use super::{Cloud, start_in};
use crate::db::CloudDb;
use clap::{Parser, Subcommand};
use fleet_protocol::admin::{
    CreatedAgent, MonthDay, NewAgent, NewJob, Recurrence, Repeat, Weekday,
};
use fleet_protocol::jobs::{Command, PrinterRef};
use fleet_protocol::{Reason, library, update};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The reference cloud for Fleet Agent (tests, demo, integrators).
#[derive(Parser, Debug)]
#[command(name = "fleet-cloud", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the protocol over HTTPS until Ctrl-C.
    Serve {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// State directory: the database and the CA (ca.pem, ca-key.pem), kept across
        /// restarts (default: in memory, a new CA at each start).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Bearer token for the admin API.
        #[arg(long, env = "FLEET_CLOUD_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        /// Write the generated CA certificate here (agents trust it with `cloud.ca_file`).
        #[arg(long)]
        ca_out: Option<PathBuf>,
    },
    /// Create an agent instance and print its activation code (valid 72 h).
    CreateAgent {
        #[command(flatten)]
        admin: AdminArgs,
        /// Instance name.
        #[arg(long, default_value = "fleet agent")]
        name: String,
    },
    /// Generate a new activation code for an existing agent (valid 72 h; its unused codes
    /// stop working, and activating with it cuts off the host that used the old one).
    ActivationCode {
        #[command(flatten)]
        admin: AdminArgs,
        /// Agent id.
        agent: String,
    },
    /// Print the assembled printers (the cloud API's shape) as JSON.
    Assets(AdminArgs),
    /// Print the agent instances with their last heartbeat as JSON.
    Agents(AdminArgs),
    /// Replace an agent's settings with a JSON file (docs/protocol.md, Configuration).
    Settings {
        #[command(flatten)]
        admin: AdminArgs,
        /// Agent id.
        agent: String,
        /// JSON object, e.g. {"poller": {"interval_secs": 120}}.
        file: PathBuf,
    },
    /// Queue a job for an agent and print it as JSON.
    Job {
        #[command(flatten)]
        admin: AdminArgs,
        /// Agent id.
        agent: String,
        /// Job type: refresh, refreshPrinter, discover, editSettings, …
        #[arg(long = "type")]
        kind: String,
        /// Target printer's serial number (printer jobs).
        #[arg(long)]
        serial: Option<String>,
        /// The job's parameters: a JSON object read from this file (`updateLibrary`:
        /// `{"package": ...}` as written by `library-sign --job`).
        #[arg(long)]
        params_file: Option<PathBuf>,
        /// Attach a file the agent downloads while the job runs (`deployFile`, ...;
        /// repeatable).
        #[arg(long = "file")]
        files: Vec<PathBuf>,
        /// Make it recurring: one job now, then one every this many seconds (>= 60).
        #[arg(long, conflicts_with = "repeat")]
        every_secs: Option<u64>,
        #[command(flatten)]
        calendar: CalendarArgs,
    },
    /// Create an ed25519 signing key (printer support libraries, agent updates: use one
    /// key for each): the private key goes to FILE (owner-only), the public key (for the
    /// agents' `cloud.library_keys` or `cloud.update_keys`) is printed.
    #[command(alias = "signing-key")]
    LibraryKey {
        /// Where to write the private key (base64 of the 32-byte seed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a printer support library (JSON: `fleet-agent library default` prints the
    /// agent's built-in one) and write the package.
    LibrarySign {
        /// The private key written by `library-key`.
        #[arg(long)]
        key: PathBuf,
        /// The library (JSON, docs/protocol.md "Printer support library").
        #[arg(long)]
        library: PathBuf,
        /// The version to give it (default: the file's).
        #[arg(long)]
        version: Option<u64>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Write `{"package": ...}`, ready for `job --type updateLibrary --params-file`.
        #[arg(long)]
        job: bool,
    },
    /// Sign an agent binary for `updateAgent`: writes the job's params (the signed
    /// manifest naming its version, platform, size and SHA-256, and the file's name) for
    /// `job --type updateAgent --params-file OUT --file BINARY`.
    UpdateSign {
        /// The private key written by `library-key` (`signing-key`).
        #[arg(long)]
        key: PathBuf,
        /// The agent binary.
        #[arg(long)]
        file: PathBuf,
        /// Its version (dotted numbers, higher than the agents' to update).
        #[arg(long)]
        version: String,
        /// Platform it runs on (default: this machine's, e.g. linux).
        #[arg(long)]
        os: Option<String>,
        /// Architecture (default: this machine's, e.g. x86_64).
        #[arg(long)]
        arch: Option<String>,
        /// Seconds the new version has to reach the cloud before it is rolled back
        /// (5..=3600; the agent's default is 120).
        #[arg(long)]
        health_secs: Option<u64>,
        /// Output file (the job's params).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the jobs (all agents) with their states and results as JSON.
    Jobs(AdminArgs),
    /// Print the recurring jobs with their next and last times as JSON.
    Schedules(AdminArgs),
    /// End a recurring job (the jobs it queued stay).
    Unschedule {
        #[command(flatten)]
        admin: AdminArgs,
        /// Schedule id (`sched-...`).
        schedule: String,
    },
}

/// How an admin command reaches the cloud.
/// A job on the calendar (docs/protocol.md, Recurring jobs).
#[derive(clap::Args, Debug)]
struct CalendarArgs {
    /// Make it recurring on the calendar: once, daily, weekly (with --days) or monthly
    /// (with --day, or --week and --weekday).
    #[arg(long, value_parser = ["once", "daily", "weekly", "monthly"], requires = "at")]
    repeat: Option<String>,
    /// Time of day, HH:MM (24-hour), in --time-zone.
    #[arg(long, requires = "repeat")]
    at: Option<String>,
    /// IANA time zone of --at and the dates.
    #[arg(long, default_value = "UTC", requires = "repeat")]
    time_zone: String,
    /// First day, YYYY-MM-DD (default: today in --time-zone).
    #[arg(long, requires = "repeat")]
    start_date: Option<String>,
    /// Last day, YYYY-MM-DD (inclusive; default: none).
    #[arg(long, requires = "repeat")]
    end_date: Option<String>,
    /// Weekly: the days, e.g. mon,thu.
    #[arg(long, value_delimiter = ',', requires = "repeat")]
    days: Vec<String>,
    /// Monthly: the date (1..31; shorter months run on their last day).
    #[arg(long, conflicts_with = "week", requires = "repeat")]
    day: Option<u8>,
    /// Monthly: which week (1..4, or -1 for the last) of --weekday.
    #[arg(long, allow_negative_numbers = true, requires = "weekday")]
    week: Option<i8>,
    /// Monthly: the day of the week with --week, e.g. tue.
    #[arg(long, requires = "week")]
    weekday: Option<String>,
}

impl CalendarArgs {
    fn recurrence(self) -> anyhow::Result<Option<Recurrence>> {
        let Some(repeat) = self.repeat else {
            return Ok(None);
        };
        let day_name = |d: &str| -> anyhow::Result<Weekday> {
            serde_json::from_value(serde_json::Value::String(d.trim().to_lowercase()))
                .map_err(|_| anyhow::anyhow!("{d:?} is not a day of the week (mon ... sun)"))
        };
        let repeat = match repeat.as_str() {
            "once" => Repeat::Once,
            "daily" => Repeat::Daily,
            "weekly" => Repeat::Weekly {
                days: self
                    .days
                    .iter()
                    .map(|d| day_name(d))
                    .collect::<anyhow::Result<_>>()?,
            },
            _ => Repeat::Monthly {
                on: match (self.day, self.week, self.weekday) {
                    (Some(d), _, _) => MonthDay::Day(d),
                    (None, Some(week), Some(w)) => MonthDay::Weekday {
                        week,
                        day: day_name(&w)?,
                    },
                    _ => anyhow::bail!("--repeat monthly needs --day, or --week and --weekday"),
                },
            },
        };
        let start_date = match self.start_date {
            Some(d) => d,
            None => jiff::Timestamp::now()
                .in_tz(&self.time_zone)
                .map_err(|_| {
                    anyhow::anyhow!("--time-zone {:?}: not a known time zone", self.time_zone)
                })?
                .date()
                .to_string(),
        };
        Ok(Some(Recurrence {
            repeat,
            start_date,
            end_date: self.end_date,
            time: self.at.unwrap_or_default(),
            time_zone: self.time_zone,
        }))
    }
}

#[derive(clap::Args, Debug)]
struct AdminArgs {
    /// Cloud URL.
    #[arg(long)]
    url: String,
    /// Admin token.
    #[arg(long, env = "FLEET_CLOUD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Extra CA certificate (PEM) to trust.
    #[arg(long)]
    ca: Option<PathBuf>,
}

fn client(ca: Option<&PathBuf>) -> anyhow::Result<reqwest::Client> {
    crate::install_crypto();
    let mut b = reqwest::Client::builder();
    if let Some(p) = ca {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(p)?)?);
    }
    Ok(b.build()?)
}

/// Runs the `fleet-cloud` command line.
///
/// # Errors
/// Start-up and request failures.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Cmd::Serve {
                listen,
                state_dir,
                admin_token,
                ca_out,
            } => {
                let db = CloudDb::open(state_dir.as_deref())?;
                let listener = std::net::TcpListener::bind(listen)?;
                let addr = listener.local_addr()?;
                let (ca, handle) =
                    start_in(listener, Cloud::new(db, &admin_token), state_dir.as_deref()).await?;
                if let Some(p) = ca_out {
                    std::fs::write(&p, &ca)?;
                }
                println!("listening on https://{addr}");
                stop_signal().await;
                handle.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
                Ok(())
            }
            Cmd::CreateAgent { admin, name } => {
                let r = client(admin.ca.as_ref())?
                    .post(format!(
                        "{}/admin/v1/agents",
                        admin.url.trim_end_matches('/')
                    ))
                    .bearer_auth(&admin.admin_token)
                    .json(&NewAgent {
                        name: Some(name),
                        settings: None,
                    });
                let v: CreatedAgent = admin_call(r).await?;
                println!(
                    "agent {} activation code {} (valid until {} ms)",
                    v.agent_id, v.activation_code, v.expires_at
                );
                Ok(())
            }
            Cmd::ActivationCode { admin, agent } => {
                let r = client(admin.ca.as_ref())?
                    .post(format!(
                        "{}/admin/v1/agents/{agent}/activation-code",
                        admin.url.trim_end_matches('/')
                    ))
                    .bearer_auth(&admin.admin_token);
                let v: CreatedAgent = admin_call(r).await?;
                println!(
                    "agent {} activation code {} (valid until {} ms)",
                    v.agent_id, v.activation_code, v.expires_at
                );
                Ok(())
            }
            Cmd::Assets(a) => admin_get(&a, "/v1.0/assets").await,
            Cmd::Agents(a) => admin_get(&a, "/admin/v1/agents").await,
            Cmd::Jobs(a) => admin_get(&a, "/admin/v1/jobs").await,
            Cmd::Schedules(a) => admin_get(&a, "/admin/v1/schedules").await,
            Cmd::Unschedule { admin, schedule } => {
                let r = client(admin.ca.as_ref())?
                    .delete(format!(
                        "{}/admin/v1/schedules/{schedule}",
                        admin.url.trim_end_matches('/')
                    ))
                    .bearer_auth(&admin.admin_token)
                    .send()
                    .await?;
                if !r.status().is_success() {
                    let status = r.status();
                    let why = r.json::<Reason>().await.map(|r| r.reason).unwrap_or_default();
                    anyhow::bail!("{status}: {why}");
                }
                println!("schedule {schedule} ended");
                Ok(())
            }
            Cmd::Settings { admin, agent, file } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                let body: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{}:{}:{}: {e}", file.display(), e.line(), e.column())
                })?;
                let r = client(admin.ca.as_ref())?
                    .put(format!(
                        "{}/admin/v1/agents/{agent}/settings",
                        admin.url.trim_end_matches('/')
                    ))
                    .bearer_auth(&admin.admin_token)
                    .json(&body);
                admin_send(r).await
            }
            Cmd::LibraryKey { out } => {
                use base64::Engine;
                let mut seed = [0u8; 32];
                fleet_secret::random_bytes(&mut seed);
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                fleet_secret::owner_only::write(
                    &out,
                    base64::engine::general_purpose::STANDARD.encode(seed).as_bytes(),
                    fleet_secret::owner_only::Existing::Replace,
                )
                .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
                println!(
                    "{}",
                    base64::engine::general_purpose::STANDARD
                        .encode(key.verifying_key().as_bytes())
                );
                Ok(())
            }
            Cmd::LibrarySign {
                key,
                library,
                version,
                out,
                job,
            } => {
                let key = signing_key(&key)?;
                let p = library;
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                let mut lib: library::Library = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{}:{}:{}: {e}", p.display(), e.line(), e.column())
                })?;
                if let Some(v) = version {
                    lib.version = v;
                }
                lib.check().map_err(|e| anyhow::anyhow!("{e}"))?;
                let pkg = library::sign(&lib, &key);
                let doc = if job {
                    serde_json::to_value(fleet_protocol::jobs::LibraryParams {
                        package: pkg.clone(),
                    })?
                } else {
                    serde_json::to_value(&pkg)?
                };
                std::fs::write(&out, serde_json::to_string_pretty(&doc)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
                println!(
                    "signed library version {} with key {} into {}",
                    lib.version,
                    pkg.key_id,
                    out.display()
                );
                Ok(())
            }
            Cmd::UpdateSign {
                key,
                file,
                version,
                os,
                arch,
                health_secs,
                out,
            } => {
                let key = signing_key(&key)?;
                let bytes =
                    std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                let mut m = update::manifest_for(&version, &bytes);
                if let Some(os) = os {
                    m.os = os;
                }
                if let Some(arch) = arch {
                    m.arch = arch;
                }
                if !update::newer(&version, "0") || version.contains(['-', '+']) {
                    anyhow::bail!("--version {version:?}: dotted numbers expected (1.2.3)");
                }
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let pkg = update::sign(&m, &key);
                let doc = fleet_protocol::jobs::UpdateParams {
                    package: pkg.clone(),
                    file: name.clone(),
                    health_secs,
                };
                std::fs::write(&out, serde_json::to_string_pretty(&doc)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
                println!(
                    "signed {name} as version {version} for {}/{} ({} bytes, sha256 {}) with key {} into {}",
                    m.os,
                    m.arch,
                    m.size,
                    m.sha256,
                    pkg.key_id,
                    out.display()
                );
                Ok(())
            }
            Cmd::Job {
                admin,
                agent,
                kind,
                serial,
                params_file,
                files,
                every_secs,
                calendar,
            } => {
                let printer = serial.map(|s| PrinterRef {
                    serial_number: Some(s),
                    address: None,
                });
                let params = match params_file {
                    Some(p) => {
                        let text = std::fs::read_to_string(&p)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                        serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                            anyhow::anyhow!("{}:{}:{}: {e}", p.display(), e.line(), e.column())
                        })?
                    }
                    None => serde_json::json!({}),
                };
                let mut body = NewJob::new(Command::from_parts(&kind, params));
                body.printer = printer;
                body.every_secs = every_secs;
                body.recurrence = calendar.recurrence()?;
                for f in &files {
                    use base64::Engine;
                    let bytes =
                        std::fs::read(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                    let name = f
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    body.files.insert(
                        name,
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                    );
                }
                let r = client(admin.ca.as_ref())?
                    .post(format!(
                        "{}/admin/v1/agents/{agent}/jobs",
                        admin.url.trim_end_matches('/')
                    ))
                    .bearer_auth(&admin.admin_token)
                    .json(&body);
                admin_send(r).await
            }
        }
    })
}

/// Reads a signing key written by `library-key`.
fn signing_key(path: &std::path::Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    use base64::Engine;
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("{}: not a key written by library-key", path.display()))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// GETs an admin resource and prints it as JSON; a refusal becomes an error with the
/// cloud's reason.
async fn admin_get(a: &AdminArgs, path: &str) -> anyhow::Result<()> {
    let r = client(a.ca.as_ref())?
        .get(format!("{}{path}", a.url.trim_end_matches('/')))
        .bearer_auth(&a.admin_token);
    admin_send(r).await
}

/// Sends an admin request and prints the answer as JSON; a refusal becomes an error with
/// the cloud's reason.
async fn admin_send(r: reqwest::RequestBuilder) -> anyhow::Result<()> {
    let v: serde_json::Value = admin_call(r).await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// Sends an admin request and reads its answer; a refusal becomes an error with the
/// cloud's reason.
async fn admin_call<T: serde::de::DeserializeOwned>(
    r: reqwest::RequestBuilder,
) -> anyhow::Result<T> {
    let r = r.send().await?;
    let status = r.status();
    if !status.is_success() {
        let why = r
            .json::<Reason>()
            .await
            .map(|r| r.reason)
            .unwrap_or_default();
        anyhow::bail!("{status}: {why}");
    }
    Ok(r.json().await?)
}

/// Resolves at Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    tokio::signal::ctrl_c().await.ok();
}
