//! The `fleet-cloud` command line: `serve`, `create-agent`, `agents`, `assets`,
//! `settings`, `job`, `jobs`, and the signing of printer support libraries and agent
//! updates (`library-key`, `library-sign`, `update-sign`).

use super::{Cloud, tls};
use crate::store::refcloud::CloudDb;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The reference cloud for Fleet Agent (tests, demo, integrators).
#[derive(Parser, Debug)]
#[command(name = "fleet-cloud", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the protocol over HTTPS until Ctrl-C.
    Serve {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Database directory (default: in memory).
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
    /// Print the assembled printers (the seed API's shape) as JSON.
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
        #[arg(long)]
        every_secs: Option<u64>,
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
    /// Sign a printer support library (JSON; default: the agent's built-in library with
    /// `--version`) and write the package.
    LibrarySign {
        /// The private key written by `library-key`.
        #[arg(long)]
        key: PathBuf,
        /// The library (JSON, docs/protocol.md "Printer support library").
        #[arg(long)]
        library: Option<PathBuf>,
        /// With the built-in library: the version to give it.
        #[arg(long, default_value_t = 2)]
        version: u64,
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
}

/// How an admin command reaches the cloud.
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

/// Starts the reference cloud on `listener` with a generated certificate; returns the CA
/// PEM and a handle that stops it.
///
/// # Errors
/// When certificates cannot be generated or the listener is unusable.
pub async fn start(
    listener: std::net::TcpListener,
    cloud: Cloud,
) -> anyhow::Result<(String, axum_server::Handle<SocketAddr>)> {
    let ip = listener.local_addr()?.ip().to_string();
    let g = tls::generate(&["localhost", &ip])?;
    let handle = start_with(listener, cloud, &g).await?;
    Ok((g.ca_pem, handle))
}

/// Starts the reference cloud with a given certificate (a restart that agents must
/// still trust, as after an outage).
///
/// # Errors
/// When the certificate or the listener is unusable.
pub async fn start_with(
    listener: std::net::TcpListener,
    cloud: Cloud,
    g: &tls::Generated,
) -> anyhow::Result<axum_server::Handle<SocketAddr>> {
    crate::cloud::install_crypto();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        g.cert_pem.clone().into_bytes(),
        g.key_pem.clone().into_bytes(),
    )
    .await?;
    let handle = axum_server::Handle::new();
    listener.set_nonblocking(true)?;
    let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle.clone());
    tokio::spawn(async move {
        if let Err(e) = server.serve(cloud.router().into_make_service()).await {
            tracing::error!(error = %e, "Reference cloud stopped.");
        }
    });
    Ok(handle)
}

fn client(ca: Option<&PathBuf>) -> anyhow::Result<reqwest::Client> {
    crate::cloud::install_crypto();
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
                let (ca, handle) = start(listener, Cloud::new(db, &admin_token)).await?;
                if let Some(p) = ca_out {
                    std::fs::write(&p, &ca)?;
                }
                println!("listening on https://{addr}");
                crate::platform::shutdown_signal().await;
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
                    .json(&serde_json::json!({ "name": name }))
                    .send()
                    .await?;
                let status = r.status();
                let v: serde_json::Value = r.json().await?;
                if !status.is_success() {
                    anyhow::bail!("{status}: {}", v["reason"]);
                }
                println!(
                    "agent {} activation code {} (valid until {} ms)",
                    v["agentId"].as_str().unwrap_or(""),
                    v["activationCode"].as_str().unwrap_or(""),
                    v["expiresAt"]
                );
                Ok(())
            }
            Cmd::Assets(a) => admin_get(&a, "/v1.0/assets").await,
            Cmd::Agents(a) => admin_get(&a, "/admin/v1/agents").await,
            Cmd::Jobs(a) => admin_get(&a, "/admin/v1/jobs").await,
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
                use crate::printer::library;
                let key = signing_key(&key)?;
                let lib = match library {
                    Some(p) => {
                        let text = std::fs::read_to_string(&p)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
                        let lib: library::Library = serde_json::from_str(&text).map_err(|e| {
                            anyhow::anyhow!("{}:{}:{}: {e}", p.display(), e.line(), e.column())
                        })?;
                        lib
                    }
                    None => library::Library {
                        version,
                        ..library::Library::builtin()
                    },
                };
                lib.check().map_err(|e| anyhow::anyhow!("{e}"))?;
                let pkg = library::sign(&lib, &key);
                let doc = if job {
                    serde_json::json!({ "package": pkg })
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
                let mut m = crate::update::manifest_for(&version, &bytes);
                if let Some(os) = os {
                    m.os = os;
                }
                if let Some(arch) = arch {
                    m.arch = arch;
                }
                if !crate::update::newer(&version, "0") || version.contains(['-', '+']) {
                    anyhow::bail!("--version {version:?}: dotted numbers expected (1.2.3)");
                }
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let pkg = crate::update::sign(&m, &key);
                let mut doc = serde_json::json!({ "package": pkg, "file": name });
                if let Some(s) = health_secs {
                    doc["healthSecs"] = s.into();
                }
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
            } => {
                let printer = serial.map(|s| serde_json::json!({ "serialNumber": s }));
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
                let mut body =
                    serde_json::json!({ "type": kind, "printer": printer, "params": params });
                if let Some(every) = every_secs {
                    body["everySecs"] = every.into();
                }
                if !files.is_empty() {
                    use base64::Engine;
                    let mut map = serde_json::Map::new();
                    for f in &files {
                        let bytes = std::fs::read(f)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                        let name = f
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        map.insert(
                            name,
                            base64::engine::general_purpose::STANDARD
                                .encode(bytes)
                                .into(),
                        );
                    }
                    body["files"] = map.into();
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
    let r = r.send().await?;
    let status = r.status();
    let v: serde_json::Value = r.json().await?;
    if !status.is_success() {
        anyhow::bail!("{status}: {}", v["reason"]);
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
