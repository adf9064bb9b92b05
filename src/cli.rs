//! Command-line interface: clap definitions and the handlers behind them.
//!
//! Exit codes (documented in the README): 0 success; 1 unexpected failure; 2 usage error;
//! 3 no response (timeout or port unreachable); 4 SNMP credentials rejected; 5 the agent
//! answered but the answer is unusable; 66 an input file or directory cannot be read.

use crate::poller::{self, PollError};
use crate::printer::PrinterReport;
use crate::simulator::{self, Layout, Simulator, synth};
use clap::{Args, Parser, Subcommand, ValueEnum};
use fleet_secret::Secret;
use fleet_snmp::snmprec;
use fleet_snmp::usm::{AuthProtocol, KeyExtension, PrivProtocol};
use fleet_snmp::{Oid, Security, SnmpError, Target, UdpClient, UsmUser, Version, walk};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Exit code: unexpected failure.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: no response from the agent.
pub const EXIT_NO_RESPONSE: i32 = 3;
/// Exit code: SNMP credentials rejected.
pub const EXIT_AUTH: i32 = 4;
/// Exit code: unusable answer.
pub const EXIT_BAD_ANSWER: i32 = 5;
/// Exit code: input file unreadable (sysexits EX_NOINPUT).
pub const EXIT_NO_INPUT: i32 = 66;

/// Fleet Agent: discovers and polls printers, and reports to the cloud.
#[derive(Parser, Debug)]
#[command(name = "fleet-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the built-in demo: a simulated fleet polled on a schedule (Ctrl-C stops).
    Demo(crate::demo::DemoArgs),
    /// Run the agent in the foreground: poll the configured printers on schedule, serve
    /// /metrics; SIGTERM or Ctrl-C stops it.
    Run(AgentArgs),
    /// Show every managed printer's latest state and health from the store.
    Status(StatusArgs),
    /// Activate this agent with a code created in the cloud (valid 72 h, single use).
    Activate(ActivateArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Find printers: sweep targets (IP, subnet, range, host name, import files, local
    /// network) politely over SNMP, listen to mDNS, and report an outcome per address.
    Discover(DiscoverArgs),
    /// Read one printer over SNMP and print its report.
    Poll(PollArgs),
    /// Walk an OID subtree of one agent (the "MIB walk" printer log).
    Walk(WalkArgs),
    /// Serve simulated printers over SNMP (recordings or synthetic), until Ctrl-C.
    Simulate(SimulateArgs),
    /// Measure polling throughput, CPU and memory against simulated printers.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Advertise a printer service over mDNS/DNS-SD until Ctrl-C (labs and tests).
    #[command(hide = true)]
    MdnsAdvertise(MdnsAdvertiseArgs),
    /// Install and control the Windows service (on Linux the .deb and .rpm packages
    /// install a systemd unit instead).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Print the version.
    Version,
}

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

/// Where the configuration and state are.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Configuration file (default: /etc/fleet-agent/fleet-agent.toml when it exists, else
    /// the built-in defaults).
    #[arg(long, env = "FLEET_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// State directory (overrides `agent.state_dir`).
    #[arg(long, env = "FLEET_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Port of the local web page (replaces `web.listen`'s port; the Windows installer's
    /// choice: 80, or another free one such as 8080 or 8088).
    #[arg(long, env = "FLEET_AGENT_WEB_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub web_port: Option<u16>,
    /// Also write the log to this file, rotated at 10 MiB, 5 kept (the Windows service
    /// writes `<state dir>\logs\fleet-agent.log` by default).
    #[arg(long, env = "FLEET_AGENT_LOG_FILE")]
    pub log_file: Option<PathBuf>,
}

impl AgentArgs {
    /// The same options as command-line arguments (paths made absolute), for the
    /// installed service's command line.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        let mut v: Vec<std::ffi::OsString> = Vec::new();
        if let Some(p) = &self.config {
            v.extend(["--config".into(), abs(p).into()]);
        }
        if let Some(p) = &self.state_dir {
            v.extend(["--state-dir".into(), abs(p).into()]);
        }
        if let Some(p) = self.web_port {
            v.extend(["--web-port".into(), p.to_string().into()]);
        }
        if let Some(p) = &self.log_file {
            v.extend(["--log-file".into(), abs(p).into()]);
        }
        v
    }
}

/// `discover` arguments.
#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// Include: an address, subnet (192.0.2.0/24), range (192.0.2.10-192.0.2.50 or
    /// 192.0.2.10-50) or host name (repeatable).
    #[arg(long = "target", short = 't')]
    pub targets: Vec<String>,
    /// Exclude (same forms; wins over every include, repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Import include entries from a CSV or TXT file (repeatable).
    #[arg(long)]
    pub import: Vec<PathBuf>,
    /// Import exclude entries from a CSV or TXT file (repeatable).
    #[arg(long)]
    pub import_exclude: Vec<PathBuf>,
    /// Imported entries replace the --target/--exclude lists instead of adding to them.
    #[arg(long)]
    pub replace: bool,
    /// Also search the host's local IPv4 networks (each capped at /22).
    #[arg(long)]
    pub local_network: bool,
    /// Listen to mDNS/DNS-SD printer announcements for this many seconds (0: off).
    #[arg(long, default_value_t = 0)]
    pub mdns_secs: u64,
    /// SNMPv2c community to try (repeatable, in order); default: the configured profiles.
    #[arg(short = 'c', long = "community")]
    pub communities: Vec<String>,
    /// Configured SNMP profile to try (repeatable, in order).
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// UDP port of the SNMP agents.
    #[arg(long, default_value_t = 161)]
    pub port: u16,
    /// Per-attempt timeout (overrides the profiles').
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Retries (overrides the profiles').
    #[arg(long)]
    pub retries: Option<u32>,
    /// The seed's "network usage delay": microseconds between two probe packets
    /// (250 = 4,000 packets/s; 0 = no limit, not recommended).
    #[arg(long, default_value_t = 250)]
    pub network_delay: u64,
    /// Addresses probed at the same time, at most.
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// Refuse target lists larger than this many addresses.
    #[arg(long, default_value_t = 65_536)]
    pub max_addresses: u128,
    /// Print the whole run (per-IP report and devices) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the per-IP report to this file (.csv or .json).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Do not read or write the store (identity is then per run only).
    #[arg(long)]
    pub no_store: bool,
    /// Configuration and state.
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// `mdns-advertise` arguments.
#[derive(Args, Debug)]
pub struct MdnsAdvertiseArgs {
    /// Instance name.
    #[arg(long)]
    pub instance: String,
    /// Service type.
    #[arg(long, default_value = "_ipp._tcp.local.")]
    pub service_type: String,
    /// Address of the advertised host.
    #[arg(long)]
    pub ip: IpAddr,
    /// Port.
    #[arg(long, default_value_t = 631)]
    pub port: u16,
    /// TXT record entry KEY=VALUE (repeatable).
    #[arg(long)]
    pub txt: Vec<String>,
}

/// Exit code: bad input data (sysexits EX_DATAERR).
pub const EXIT_DATA: i32 = 65;

/// `activate` arguments.
#[derive(Args, Debug)]
pub struct ActivateArgs {
    /// The activation code (XXXX-XXXX-XXXX).
    #[arg(long)]
    pub code: String,
    /// Configuration and state.
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// `status` arguments.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Configuration and state.
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Print JSON (every printer with its latest report).
    #[arg(long)]
    pub json: bool,
}

/// `config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a configuration file and print every problem with its key path; exit 64 if
    /// it is invalid.
    Validate {
        /// The file (default: as for `run`).
        file: Option<PathBuf>,
    },
    /// Print the commented default configuration.
    Default,
}

/// Exit code: invalid configuration (sysexits EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

fn config_path(explicit: Option<&PathBuf>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.clone());
    }
    let system = if cfg!(windows) {
        PathBuf::from(std::env::var_os("ProgramData")?)
            .join("FleetAgent")
            .join("fleet-agent.toml")
    } else {
        PathBuf::from("/etc/fleet-agent/fleet-agent.toml")
    };
    system.exists().then_some(system)
}

/// Loads the configuration `run`, `status` and `config validate` use.
///
/// # Errors
/// Every problem found, as an exit with code 64.
pub fn load_config(explicit: Option<&PathBuf>) -> Result<crate::config::Config, Exit> {
    let source = load_source(explicit)?;
    source.parse().map_err(config_exit)
}

fn config_exit(e: crate::config::ConfigErrors) -> Exit {
    Exit {
        code: EXIT_CONFIG,
        message: e.to_string().trim_end().to_string(),
    }
}

/// Reads the configuration file `run` uses (or the built-in defaults).
///
/// # Errors
/// An unreadable file, as an exit with code 64.
pub fn load_source(explicit: Option<&PathBuf>) -> Result<crate::config::Source, Exit> {
    match config_path(explicit) {
        Some(p) => crate::config::Source::read(&p).map_err(config_exit),
        None => Ok(crate::config::Source::new(
            "<built-in defaults>",
            crate::config::DEFAULT_TOML,
        )),
    }
}

fn state_dir(a: &AgentArgs, c: &crate::config::Config) -> PathBuf {
    a.state_dir
        .clone()
        .or_else(|| c.state_dir.clone())
        .unwrap_or_else(crate::config::default_state_dir)
}

/// SNMP credentials and patience, shared by `poll` and `walk`.
#[derive(Args, Debug, Clone)]
pub struct SnmpArgs {
    /// v1/v2c community.
    #[arg(
        short = 'c',
        long,
        default_value = "public",
        env = "FLEET_AGENT_COMMUNITY",
        hide_env_values = true
    )]
    pub community: String,
    /// Use SNMPv1 instead of v2c (with --community).
    #[arg(long, conflicts_with = "v3_user")]
    pub v1: bool,
    /// SNMPv3 user name (switches to SNMPv3).
    #[arg(long)]
    pub v3_user: Option<String>,
    /// SNMPv3 authentication protocol: md5, sha1, sha224, sha256, sha384, sha512.
    #[arg(long, requires = "v3_user")]
    pub auth_protocol: Option<AuthProtocol>,
    /// SNMPv3 authentication pass phrase (or env FLEET_AGENT_AUTH_PASS).
    #[arg(
        long,
        env = "FLEET_AGENT_AUTH_PASS",
        hide_env_values = true,
        requires = "auth_protocol"
    )]
    pub auth_pass: Option<String>,
    /// SNMPv3 privacy protocol: des, aes128, aes192, aes256.
    #[arg(long, requires = "auth_protocol")]
    pub priv_protocol: Option<PrivProtocol>,
    /// SNMPv3 privacy pass phrase (or env FLEET_AGENT_PRIV_PASS).
    #[arg(
        long,
        env = "FLEET_AGENT_PRIV_PASS",
        hide_env_values = true,
        requires = "priv_protocol"
    )]
    pub priv_pass: Option<String>,
    /// Key extension for AES-192/256 with short hashes: blumenthal (net-snmp) or reeder.
    #[arg(long, default_value = "blumenthal")]
    pub key_extension: KeyExtension,
    /// SNMPv3 context name.
    #[arg(long, default_value = "")]
    pub context: String,
    /// Time to wait for each attempt, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Extra attempts after a timeout.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Varbinds asked per GETBULK response.
    #[arg(long, default_value_t = 40)]
    pub max_repetitions: u32,
}

impl SnmpArgs {
    /// Builds the target for `addr`.
    ///
    /// # Errors
    /// When a v3 protocol is given without its pass phrase (or the pass phrase is short).
    pub fn target(&self, addr: SocketAddr) -> anyhow::Result<Target> {
        let security = match &self.v3_user {
            Some(user) => {
                let auth = match (self.auth_protocol, &self.auth_pass) {
                    (Some(p), Some(pw)) if pw.len() >= 8 => Some((p, Secret::new(pw.clone()))),
                    (Some(_), Some(_)) => {
                        anyhow::bail!("--auth-pass: SNMPv3 pass phrases need at least 8 characters")
                    }
                    (Some(_), None) => anyhow::bail!(
                        "--auth-protocol needs --auth-pass (or FLEET_AGENT_AUTH_PASS)"
                    ),
                    (None, _) => None,
                };
                let privacy = match (self.priv_protocol, &self.priv_pass) {
                    (Some(p), Some(pw)) if pw.len() >= 8 => Some((p, Secret::new(pw.clone()))),
                    (Some(_), Some(_)) => {
                        anyhow::bail!("--priv-pass: SNMPv3 pass phrases need at least 8 characters")
                    }
                    (Some(_), None) => anyhow::bail!(
                        "--priv-protocol needs --priv-pass (or FLEET_AGENT_PRIV_PASS)"
                    ),
                    (None, _) => None,
                };
                Security::Usm(Arc::new(
                    UsmUser::new(user.clone(), auth, privacy)
                        .with_context(self.context.clone())
                        .with_extension(self.key_extension),
                ))
            }
            None if self.v1 => Security::v1(&self.community),
            None => Security::v2c(&self.community),
        };
        Ok(Target {
            addr,
            security,
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            retries: self.retries,
            max_repetitions: self.max_repetitions.max(1),
        })
    }
}

/// `poll` arguments.
#[derive(Args, Debug)]
pub struct PollArgs {
    /// Printer address: IPv4, [IPv6] or host name, with optional :port (default 161).
    pub host: String,
    /// Credentials and timing.
    #[command(flatten)]
    pub snmp: SnmpArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Output format of `walk`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WalkFormat {
    /// `OID = TYPE: value`, like net-snmp's snmpwalk -On.
    Text,
    /// snmpsim's `.snmprec` (servable by `fleet-agent simulate` and snmpsim).
    Snmprec,
}

/// `walk` arguments.
#[derive(Args, Debug)]
pub struct WalkArgs {
    /// Agent address: IPv4, [IPv6] or host name, with optional :port (default 161).
    pub host: String,
    /// Subtree to walk (default: the whole MIB view, 1.3.6.1).
    #[arg(default_value = "1.3.6.1")]
    pub oid: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: WalkFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Credentials and timing.
    #[command(flatten)]
    pub snmp: SnmpArgs,
}

/// `simulate` arguments.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Directory of .snmprec recordings to serve (repeatable).
    #[arg(long)]
    pub data_dir: Vec<PathBuf>,
    /// A single .snmprec recording to serve (repeatable).
    #[arg(long)]
    pub file: Vec<PathBuf>,
    /// Number of synthetic printers to add (counters advance, toners fall).
    #[arg(long, default_value_t = 0)]
    pub synthetic: usize,
    /// Serve everything on this one address; the community (v3: context) picks the printer.
    #[arg(long, conflicts_with = "fleet_start")]
    pub listen: Option<SocketAddr>,
    /// Fleet mode: first loopback address (one address per printer, counting up).
    #[arg(long)]
    pub fleet_start: Option<Ipv4Addr>,
    /// Fleet mode: UDP port of every printer.
    #[arg(long, default_value_t = 161)]
    pub port: u16,
    /// Fleet mode: community every printer accepts (besides its own name).
    #[arg(long, default_value = "public")]
    pub community: String,
    /// SNMPv3 user accepted by every printer: NAME:AUTH:AUTHPASS[:PRIV:PRIVPASS],
    /// e.g. fleet:sha256:authpass123:aes128:privpass123 (repeatable).
    #[arg(long)]
    pub v3_user: Vec<String>,
    /// Simulated seconds per real second for synthetic printers.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Seed for synthetic printers' starting state.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the list of served printers (JSON) to this file once listening.
    #[arg(long)]
    pub targets_out: Option<PathBuf>,
}

/// Parses `NAME:AUTH:AUTHPASS[:PRIV:PRIVPASS]`.
///
/// # Errors
/// On a malformed specification or unknown protocol.
pub fn parse_v3_user(spec: &str) -> anyhow::Result<UsmUser> {
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [name] => Ok(UsmUser::new(*name, None, None)),
        [name, ap, apw] => Ok(UsmUser::new(
            *name,
            Some((ap.parse().map_err(anyhow::Error::msg)?, Secret::new(*apw))),
            None,
        )),
        [name, ap, apw, pp, ppw] => Ok(UsmUser::new(
            *name,
            Some((ap.parse().map_err(anyhow::Error::msg)?, Secret::new(*apw))),
            Some((pp.parse().map_err(anyhow::Error::msg)?, Secret::new(*ppw))),
        )),
        _ => anyhow::bail!(
            "--v3-user {:?}: expected NAME:AUTH:AUTHPASS[:PRIV:PRIVPASS]",
            parts.first().unwrap_or(&"")
        ),
    }
}

/// Resolves `host[:port]` (IPv6 in brackets) to one socket address.
///
/// # Errors
/// When the name does not resolve or the port is invalid.
pub async fn resolve(host: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| anyhow::anyhow!("{host}: cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{host}: the name resolved to no address"))
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Exit {
    /// Process exit code.
    pub code: i32,
    /// Message for standard error.
    pub message: String,
}

fn snmp_exit(e: &SnmpError) -> i32 {
    match e {
        SnmpError::Timeout { .. } | SnmpError::Unreachable { .. } => EXIT_NO_RESPONSE,
        SnmpError::UnknownUser { .. }
        | SnmpError::WrongDigest { .. }
        | SnmpError::NotInTimeWindow { .. }
        | SnmpError::DecryptionError { .. }
        | SnmpError::UnsupportedSecLevel { .. }
        | SnmpError::BadResponse { .. } => EXIT_AUTH,
        SnmpError::Io { .. } => EXIT_FAILURE,
        _ => EXIT_BAD_ANSWER,
    }
}

impl From<anyhow::Error> for Exit {
    fn from(e: anyhow::Error) -> Self {
        let code = e
            .downcast_ref::<PollError>()
            .map(|p| p.snmp().map_or(EXIT_BAD_ANSWER, snmp_exit))
            .or_else(|| e.downcast_ref::<SnmpError>().map(snmp_exit))
            .unwrap_or(EXIT_FAILURE);
        Exit {
            code,
            message: format!("{e:#}"),
        }
    }
}

/// The agent in the foreground (`run`, and the Windows service's body).
async fn run_agent(a: AgentArgs) -> Result<(), Exit> {
    let source = load_source(a.config.as_ref())?.with_web_port(a.web_port);
    let c = source.parse().map_err(config_exit)?;
    crate::telemetry::init_logging(&c.log_level);
    let dir = state_dir(&a, &c);
    // A verified staged update replaces this process here (it does not return then).
    let launched = crate::update::launch(&dir, &c.cloud.update_keys);
    crate::app::run(source, dir, launched, crate::platform::shutdown_signal())
        .await
        .map_err(Exit::from)?;
    if crate::update::restart_requested() {
        return Err(restart_for_update());
    }
    Ok(())
}

/// The way out of a run that stopped to start again for an update: status 75 for the
/// service manager, else (in the foreground) the installed launcher in this process.
fn restart_for_update() -> Exit {
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
        code: EXIT_FAILURE,
        message,
    }
}

/// `service ...`: the Windows service manager; elsewhere a usage error that points to
/// the packages' systemd unit.
fn service(cmd: ServiceCommand) -> Result<(), Exit> {
    #[cfg(windows)]
    {
        use crate::platform::winsvc;
        let fail = |message: String| Exit {
            code: EXIT_FAILURE,
            message,
        };
        match cmd {
            ServiceCommand::Install(a) => {
                let mut args: Vec<std::ffi::OsString> = vec!["service".into(), "run".into()];
                args.extend(a.to_args());
                winsvc::install(args).map_err(fail)?;
                println!(
                    "installed the service {} (automatic start); start it with `fleet-agent service start`",
                    winsvc::SERVICE_NAME
                );
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
        crate::telemetry::log_to_file(&log).ok();
        crate::telemetry::init_logging("info");
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "Cannot start the async runtime.");
                return EXIT_FAILURE;
            }
        };
        match rt.block_on(run_agent(a.clone())) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(code = e.code, "{}", e.message);
                e.code
            }
        }
    })
    .map_err(|message| Exit {
        code: EXIT_FAILURE,
        message,
    })
}

/// Runs a parsed command.
///
/// # Errors
/// Returns the exit code and message to print.
pub async fn run(cli: Cli) -> Result<(), Exit> {
    if !matches!(
        cli.command,
        Command::Run(_) | Command::Service(ServiceCommand::Run(_))
    ) {
        crate::telemetry::init_logging("warn");
    }
    match cli.command {
        Command::Run(a) => {
            if let Some(f) = &a.log_file {
                crate::telemetry::log_to_file(f).map_err(|e| Exit {
                    code: EXIT_NO_INPUT,
                    message: format!("--log-file {}: {e}", f.display()),
                })?;
            }
            run_agent(a).await
        }
        Command::Service(s) => service(s),
        Command::Status(a) => status(a).await,
        Command::Activate(a) => activate(a).await,
        Command::Discover(a) => discover(a).await,
        Command::Config(ConfigCommand::Validate { file }) => {
            let c = load_config(file.as_ref())?;
            println!(
                "{}: valid ({} SNMP profile(s), {} printer(s), poll every {} s)",
                config_path(file.as_ref())
                    .map_or("<built-in defaults>".into(), |p| p.display().to_string()),
                c.profiles.len(),
                c.printers.len(),
                c.poller.interval.as_secs()
            );
            Ok(())
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", crate::config::DEFAULT_TOML);
            Ok(())
        }
        Command::Demo(a) => crate::demo::run(a).await.map_err(Exit::from),
        Command::Poll(a) => poll(a).await.map_err(Exit::from),
        Command::Walk(a) => walk_cmd(a).await.map_err(Exit::from),
        Command::Simulate(a) => simulate(a).await,
        Command::Bench(b) => crate::bench::run(b).await.map_err(Exit::from),
        Command::MdnsAdvertise(a) => {
            let txt: Vec<(String, String)> = a
                .txt
                .iter()
                .filter_map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
            let pairs: Vec<(&str, &str)> =
                txt.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let host = format!("{}.local.", a.instance.to_lowercase().replace(' ', "-"));
            let daemon = crate::discovery::mdns::advertise(
                &a.instance,
                &a.service_type,
                &host,
                a.ip,
                a.port,
                &pairs,
            )
            .map_err(|e| Exit {
                code: EXIT_FAILURE,
                message: format!("mDNS: {e}"),
            })?;
            println!(
                "advertising {} ({}) at {}:{}",
                a.instance, a.service_type, a.ip, a.port
            );
            std::io::stdout().flush().ok();
            crate::platform::shutdown_signal().await;
            daemon.shutdown().ok();
            Ok(())
        }
        Command::Version => {
            println!("fleet-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

async fn activate(a: ActivateArgs) -> Result<(), Exit> {
    let c = load_config(a.agent.config.as_ref())?;
    let fail = |message: String| Exit {
        code: EXIT_FAILURE,
        message,
    };
    let Some(url) = c.cloud.url.clone() else {
        return Err(Exit {
            code: EXIT_CONFIG,
            message: "cloud.url is not set in the configuration".into(),
        });
    };
    let ca = match &c.cloud.ca_file {
        Some(p) => Some(
            std::fs::read(p).map_err(|e| fail(format!("cloud.ca_file {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let client = crate::cloud::client::CloudClient::with_proxy(
        &url,
        ca.as_deref(),
        c.cloud.timeout,
        &c.cloud.proxy,
    )
    .map_err(|e| fail(e.to_string()))?;
    let creds = client
        .activate(a.code.trim())
        .await
        .map_err(|e| fail(format!("activation failed: {e}")))?;
    let dir = state_dir(&a.agent, &c);
    let id = creds.agent_id.clone();
    tokio::task::spawn_blocking(move || crate::cloud::save_credentials(&dir, &creds))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.to_string()))?;
    println!("activated as {id}; `fleet-agent run` now uploads to {url}");
    Ok(())
}

async fn discover(a: DiscoverArgs) -> Result<(), Exit> {
    use crate::discovery::{self, targets};
    let c = load_config(a.agent.config.as_ref())?;
    let data = |message: String| Exit {
        code: EXIT_DATA,
        message,
    };
    let mut set = targets::TargetSet::default();
    let mut problems = Vec::new();
    for (list, out) in [
        (&a.targets, &mut set.include),
        (&a.exclude, &mut set.exclude),
    ] {
        for t in list {
            match t.parse::<targets::Spec>() {
                Ok(s) => out.push(s),
                Err(e) => problems.push(format!("argument {t:?}: {e}")),
            }
        }
    }
    let mode = if a.replace {
        targets::ImportMode::Replace
    } else {
        targets::ImportMode::Add
    };
    let mut replaced_include = false;
    let mut replaced_exclude = false;
    for (files, include) in [(&a.import, true), (&a.import_exclude, false)] {
        for f in files {
            let (specs, errors) = targets::read_import(f).map_err(|e| Exit {
                code: EXIT_NO_INPUT,
                message: format!("{}: {e}", f.display()),
            })?;
            problems.extend(errors.iter().map(ToString::to_string));
            // "Replace existing" replaces the command-line list once, then files add up.
            let m = if include && !replaced_include || !include && !replaced_exclude {
                mode
            } else {
                targets::ImportMode::Add
            };
            if include {
                set.import_include(specs, m);
                replaced_include = true;
            } else {
                set.import_exclude(specs, m);
                replaced_exclude = true;
            }
        }
    }
    if !problems.is_empty() {
        return Err(data(format!(
            "{} bad target entr{}; nothing was probed:\n  {}",
            problems.len(),
            if problems.len() == 1 { "y" } else { "ies" },
            problems.join("\n  ")
        )));
    }
    if set.include.is_empty() && !a.local_network && a.mdns_secs == 0 {
        return Err(Exit {
            code: 2,
            message: "nothing to search: give --target, --import, --local-network or --mdns-secs"
                .into(),
        });
    }
    let mut profiles: Vec<crate::config::Profile> = if !a.communities.is_empty() {
        a.communities
            .iter()
            .enumerate()
            .map(|(i, com)| crate::config::Profile {
                name: format!("community-{}", i + 1),
                security: Security::v2c(com),
                timeout: Duration::from_millis(1000),
                retries: 1,
                max_repetitions: 40,
            })
            .collect()
    } else if !a.profiles.is_empty() {
        let mut v = Vec::new();
        for n in &a.profiles {
            match c.profiles.iter().find(|p| &p.name == n) {
                Some(p) => v.push(p.clone()),
                None => {
                    return Err(Exit {
                        code: EXIT_CONFIG,
                        message: format!("--profile {n:?}: no such profile in the configuration"),
                    });
                }
            }
        }
        v
    } else {
        c.profiles.clone()
    };
    for p in &mut profiles {
        if let Some(t) = a.timeout_ms {
            p.timeout = Duration::from_millis(t.max(1));
        }
        if let Some(r) = a.retries {
            p.retries = r;
        }
    }
    if a.network_delay == 0 {
        eprintln!(
            "warning: --network-delay 0 sends probes as fast as possible; this can flood the network"
        );
    }
    let pps = (a.network_delay > 0).then(|| 1e6 / a.network_delay as f64);
    let client = UdpClient::connected()
        .and_then(|c| c.with_rate_limit(pps))
        .map_err(|e| Exit {
            code: EXIT_FAILURE,
            message: format!("cannot open SNMP sockets: {e}"),
        })?;
    let store = if a.no_store {
        None
    } else {
        let dir = state_dir(&a.agent, &c);
        Some(
            tokio::task::spawn_blocking(move || crate::store::Store::open(&dir))
                .await
                .map_err(|e| Exit::from(anyhow::Error::from(e)))?
                .map_err(|e| Exit::from(anyhow::Error::from(e)))?,
        )
    };
    let opts = discovery::Options {
        targets: set,
        local_network: a.local_network,
        profiles,
        port: a.port,
        max_in_flight: a.max_in_flight,
        max_addresses: a.max_addresses,
        mdns: Duration::from_secs(a.mdns_secs),
    };
    let (tx, rx) = tokio::sync::watch::channel(discovery::Progress::default());
    let shown = tokio::spawn(show_progress(rx));
    let report = discovery::run(client.clone(), opts, store, tx).await;
    shown.await.ok();
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = &a.report {
        let text = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            serde_json::to_string_pretty(&report.results).unwrap_or_default()
        } else {
            report.to_csv()
        };
        std::fs::write(path, text).map_err(|e| Exit {
            code: EXIT_FAILURE,
            message: format!("{}: {e}", path.display()),
        })?;
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report).ok();
        writeln!(out).ok();
    } else {
        writeln!(
            out,
            "{} printer(s) found, {} address(es) tried in {:.1} s",
            report.devices.len(),
            report.results.len(),
            (report.finished_at - report.started_at) as f64 / 1000.0
        )
        .ok();
        for d in &report.devices {
            writeln!(
                out,
                "  {:<18} {:<34} {:<22} {:<16} via {}",
                d.address.to_string(),
                d.device_key,
                d.model.as_deref().unwrap_or("-"),
                d.serial.as_deref().unwrap_or("-"),
                d.discovered_by.join("+")
            )
            .ok();
        }
        let summary: Vec<String> = report
            .summary()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        writeln!(out, "outcomes: {}", summary.join(", ")).ok();
        let s = client.stats();
        writeln!(
            out,
            "{} SNMP datagrams sent, {} answered",
            s.sent, s.received
        )
        .ok();
    }
    Ok(())
}

async fn show_progress(mut rx: tokio::sync::watch::Receiver<crate::discovery::Progress>) {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} addresses, {msg}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut last_line = tokio::time::Instant::now();
    loop {
        if rx.changed().await.is_err() {
            break;
        }
        let p = rx.borrow_and_update().clone();
        if let Some(b) = &bar {
            b.set_length(p.total as u64);
            b.set_position(p.done as u64);
            b.set_message(format!("{} found, {:.0}/s", p.found, p.rate));
        } else if last_line.elapsed() >= Duration::from_secs(2) || p.finished {
            last_line = tokio::time::Instant::now();
            eprintln!(
                "discover: {}/{} addresses, {} found, {:.0}/s, ETA {:.0} s",
                p.done, p.total, p.found, p.rate, p.eta_secs
            );
        }
        if p.finished {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

async fn status(a: StatusArgs) -> Result<(), Exit> {
    let c = load_config(a.agent.config.as_ref())?;
    let dir = state_dir(&a.agent, &c);
    if !dir.join("fleet-agent.db").exists() {
        return Err(Exit {
            code: EXIT_NO_INPUT,
            message: format!(
                "{}: no store yet (has `fleet-agent run` been started with this state directory?)",
                dir.display()
            ),
        });
    }
    let rows = tokio::task::spawn_blocking(
        move || -> anyhow::Result<Vec<(crate::store::PrinterRow, Option<String>)>> {
            let store = crate::store::Store::open(&dir)?;
            let rows = store.printers()?;
            rows.into_iter()
                .map(|r| {
                    let rep = store.latest_report(r.id)?;
                    Ok((r, rep))
                })
                .collect()
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
            let ago = (crate::poller::now_ms() - ms).max(0) / 1000;
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
            "(no printers yet: add [[printers]] to the configuration)"
        )
        .ok();
    }
    Ok(())
}

fn short(s: &str) -> String {
    let code = s.rsplit(": ").next().unwrap_or(s);
    code.chars().take(40).collect()
}

async fn poll(a: PollArgs) -> anyhow::Result<()> {
    let addr = resolve(&a.host, 161).await?;
    let target = a.snmp.target(addr)?;
    let client = UdpClient::new()?;
    let (report, stats) = poller::poll_printer(&client, &target).await?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render(&report, addr, target.security.version()))?;
        writeln!(
            out,
            "\n({} SNMP requests, {} values)",
            stats.requests, stats.values
        )?;
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

/// Renders a report for humans.
pub fn render(r: &PrinterReport, addr: SocketAddr, version: Version) -> String {
    use std::fmt::Write as _;
    let v = match version {
        Version::V1 => "v1",
        Version::V2c => "v2c",
        Version::V3 => "v3",
    };
    let d = &r.device;
    let mut s = String::new();
    writeln!(s, "Printer {addr} (SNMP {v})").ok();
    let rows = [
        ("Manufacturer", opt(&r.manufacturer)),
        ("Model", opt(&r.model_name)),
        (
            "Serial",
            match (&r.serial_number, &d.serial_source) {
                (Some(sn), Some(src)) => format!("{sn}  (from {src})"),
                (sn, _) => opt(sn),
            },
        ),
        ("Firmware", opt(&d.firmware_version)),
        ("MAC", opt(&d.mac_address)),
        ("sysName", opt(&d.sys_name)),
        ("Location", opt(&d.sys_location)),
        ("sysObjectID", opt(&d.sys_object_id)),
        ("sysDescr", opt(&d.sys_descr)),
        (
            "Uptime",
            d.uptime_seconds.map_or("-".into(), |u| {
                format!(
                    "{}d {:02}:{:02}",
                    u / 86400,
                    u % 86400 / 3600,
                    u % 3600 / 60
                )
            }),
        ),
        (
            "State",
            format!(
                "{} (hrDeviceStatus {}, hrPrinterStatus {}{})",
                d.printer_state,
                opt(&d.hr_device_status),
                opt(&d.hr_printer_status),
                if d.hr_printer_detected_error_state.is_empty() {
                    String::new()
                } else {
                    format!(", errors: {}", d.hr_printer_detected_error_state.join(", "))
                }
            ),
        ),
        (
            "Life count",
            match (r.counters.lifetime_count, &r.counters.lifetime_count_unit) {
                (Some(c), Some(u)) => format!("{c} {u}"),
                (Some(c), None) => c.to_string(),
                _ => "-".into(),
            },
        ),
    ];
    for (k, val) in rows {
        writeln!(s, "  {k:<13}{val}").ok();
    }
    writeln!(s, "Supplies").ok();
    if r.supplies.is_empty() {
        writeln!(s, "  (none reported)").ok();
    }
    for sp in &r.supplies {
        let state = sp
            .ext
            .level_state
            .map_or("-".to_string(), |l| format!("{l:?}"));
        writeln!(
            s,
            "  {:<7} {:<34} {:<15} level {:>6} / max {:>7}  {:>4}  {}{}",
            sp.supply_key,
            sp.description
                .as_deref()
                .unwrap_or("-")
                .replace('\n', "\\n"),
            sp.kind.as_deref().unwrap_or("-"),
            opt(&sp.ext.prt_marker_supplies_level),
            opt(&sp.ext.prt_marker_supplies_max_capacity),
            sp.current_level.map_or("-".into(), |p| format!("{p}%")),
            state.to_lowercase(),
            if sp.ext.prt_marker_supplies_class == Some(4) {
                " (receptacle: level = free space)"
            } else {
                ""
            },
        )
        .ok();
    }
    if !d.input_trays.is_empty() {
        writeln!(s, "Trays").ok();
        for t in &d.input_trays {
            writeln!(
                s,
                "  {:<7} {:<20} level {:>5} / max {:>5}",
                t.index,
                t.name.as_deref().unwrap_or("-"),
                opt(&t.current_level),
                opt(&t.max_capacity)
            )
            .ok();
        }
    }
    writeln!(s, "Alerts").ok();
    if r.alerts.is_empty() {
        writeln!(s, "  (none)").ok();
    }
    for a in &r.alerts {
        writeln!(
            s,
            "  {:<7} {:<16} {}",
            a.status.unwrap_or("-"),
            a.alert_key,
            a.issue.as_deref().unwrap_or("-")
        )
        .ok();
    }
    s
}

async fn walk_cmd(a: WalkArgs) -> anyhow::Result<()> {
    let root: Oid = a
        .oid
        .parse()
        .map_err(|e| anyhow::anyhow!("OID argument: {e}"))?;
    let addr = resolve(&a.host, 161).await?;
    let target = a.snmp.target(addr)?;
    let client = UdpClient::new()?;
    let values = walk::walk(&client, &target, &root).await?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for vb in &values {
        match a.format {
            WalkFormat::Snmprec => writeln!(out, "{}", snmprec::format_line(&vb.oid, &vb.value))?,
            WalkFormat::Text => writeln!(out, ".{} = {:?}", vb.oid, vb.value)?,
        }
    }
    out.flush()?;
    if values.is_empty() {
        eprintln!("{addr}: no object under {root}");
    }
    Ok(())
}

async fn simulate(a: SimulateArgs) -> Result<(), Exit> {
    let fail = |code: i32, message: String| Exit { code, message };
    let mut printers = Vec::new();
    let mut warnings = Vec::new();
    for dir in &a.data_dir {
        let (views, w) = simulator::load_dir(dir)
            .map_err(|e| fail(EXIT_NO_INPUT, format!("--data-dir {}: {e}", dir.display())))?;
        warnings.extend(w);
        printers.extend(
            views
                .into_iter()
                .map(|(name, v)| simulator::Printer::recorded(name, v)),
        );
    }
    for f in &a.file {
        let (pairs, w) = snmprec::read(f)
            .map_err(|e| fail(EXIT_NO_INPUT, format!("--file {}: {e}", f.display())))?;
        warnings.extend(w);
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        printers.push(simulator::Printer::recorded(
            name,
            Arc::new(fleet_snmp::agent::MibView::new(pairs)),
        ));
    }
    for w in &warnings {
        eprintln!("warning: {w} (line skipped)");
    }
    if a.synthetic > 0 {
        if !(a.speed.is_finite() && a.speed >= 0.0) {
            return Err(fail(
                2,
                format!("--speed {}: must be a finite number >= 0", a.speed),
            ));
        }
        printers.extend(simulator::synthetic_fleet(
            a.synthetic,
            synth::SynthParams {
                speed: a.speed,
                seed: a.seed,
            },
        ));
    }
    if printers.is_empty() {
        return Err(fail(
            2,
            "nothing to serve: give --data-dir, --file or --synthetic N".into(),
        ));
    }
    let users = a
        .v3_user
        .iter()
        .map(|s| parse_v3_user(s).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| fail(2, format!("{e:#}")))?;
    let layout = match (a.listen, a.fleet_start) {
        (Some(addr), _) => Layout::SinglePort(addr),
        (None, start) => Layout::Fleet {
            start: start.unwrap_or(Ipv4Addr::new(127, 1, 0, 1)),
            port: a.port,
            community: a.community.clone(),
        },
    };
    let count = printers.len();
    let sim = Simulator::start(printers, layout, users)
        .await
        .map_err(|e| fail(EXIT_FAILURE, format!("cannot start the simulator: {e}")))?;
    let served = sim.served();
    if let Some(p) = &a.targets_out {
        let json =
            serde_json::to_vec_pretty(&served).map_err(|e| fail(EXIT_FAILURE, e.to_string()))?;
        std::fs::write(p, json).map_err(|e| fail(EXIT_FAILURE, format!("{}: {e}", p.display())))?;
    }
    let addrs = sim.addrs();
    // Standard output may be a pipe that the reader closes after the first line: write
    // errors must not stop the simulator.
    let mut out = std::io::stdout().lock();
    if addrs.len() == 1 {
        writeln!(
            out,
            "listening on {} ({count} printers; community = printer name)",
            addrs[0]
        )
        .ok();
    } else {
        writeln!(
            out,
            "listening on {} addresses from {} ({count} printers; community {:?} or the printer name)",
            addrs.len(),
            addrs[0],
            a.community
        )
        .ok();
    }
    for s in served.iter().take(20) {
        writeln!(
            out,
            "  {:<28} {:<22} community {}",
            s.name, s.addr, s.community
        )
        .ok();
    }
    if served.len() > 20 {
        writeln!(
            out,
            "  ... and {} more (--targets-out FILE lists them all)",
            served.len() - 20
        )
        .ok();
    }
    out.flush().ok();
    drop(out);
    crate::platform::shutdown_signal().await;
    writeln!(
        std::io::stderr(),
        "stopping ({} requests answered)",
        sim.requests()
    )
    .ok();
    sim.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_command_line_carries_the_install_options_with_absolute_paths() {
        let cli = Cli::try_parse_from([
            "fleet-agent",
            "service",
            "install",
            "--config",
            "conf/agent.toml",
            "--web-port",
            "8088",
        ])
        .unwrap();
        let Command::Service(ServiceCommand::Install(a)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        let args: Vec<String> = a
            .to_args()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "--config");
        assert!(std::path::Path::new(&args[1]).is_absolute(), "{args:?}");
        assert!(args[1].ends_with("agent.toml"), "{args:?}");
        assert_eq!(&args[2..], ["--web-port", "8088"]);
        // Port 0 is refused at parse time, not at bind time.
        let e = Cli::try_parse_from(["fleet-agent", "run", "--web-port", "0"]).unwrap_err();
        assert!(e.to_string().contains("--web-port"), "{e}");
    }
}
