//! The `fleet-agent` command line: clap definitions and the handlers behind them, by
//! command group. Every failure maps to one exit code of [`exit`].
//!
//! # Modules
//! - [`exit`]: the exit codes (the README's table) and the error type that carries one.
//! - [`agent`]: `run`, `service`, `activate`, `status`.
//! - [`discover`][mod@discover]: `discover`.
//! - [`snmp`]: `poll`, `walk` and their SNMP options.
//! - [`page`]: `page open` (the installer's "open in the browser" and shortcuts).
//! - this file: the command tree, `config`, `library`, `version`, and where the
//!   configuration and the state directory are.

pub mod agent;
pub mod discover;
pub mod exit;
pub mod page;
pub mod snmp;

use clap::{Args, Parser, Subcommand};
use exit::Exit;
use std::path::PathBuf;

pub use snmp::{SnmpArgs, render, resolve};

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
    /// Run the agent in the foreground: poll the configured printers on schedule, serve
    /// /metrics; SIGTERM or Ctrl-C stops it.
    Run(AgentArgs),
    /// Show every managed printer's latest state and health from the store.
    Status(agent::StatusArgs),
    /// Activate this agent with a code created in the cloud (valid 72 h, single use).
    Activate(agent::ActivateArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Find printers: sweep targets (IP, subnet, range, host name, import files, local
    /// network) politely over SNMP, listen to mDNS, and report an outcome per address.
    Discover(discover::DiscoverArgs),
    /// Read one printer over SNMP and print its report.
    Poll(snmp::PollArgs),
    /// Walk an OID subtree of one agent (the "MIB walk" printer log).
    Walk(snmp::WalkArgs),
    /// The printer support library (vendor knowledge as data).
    #[command(subcommand)]
    Library(LibraryCommand),
    /// Install and control the Windows service (on Linux the .deb and .rpm packages
    /// install a systemd unit instead).
    #[command(subcommand)]
    Service(agent::ServiceCommand),
    /// The local web page.
    #[command(subcommand)]
    Page(page::PageCommand),
    /// Print the version.
    Version,
}

/// `library` subcommands.
#[derive(Subcommand, Debug)]
pub enum LibraryCommand {
    /// Print the library built into this agent (JSON; the starting point of a newer one
    /// for `fleet-cloud library-sign`).
    Default,
}

/// Where the configuration and state are (`activate`, `status`, `discover`).
#[derive(Args, Debug, Clone)]
pub struct StateArgs {
    /// Configuration file (default: /etc/fleet-agent/fleet-agent.toml, on Windows
    /// %ProgramData%\FleetAgent\fleet-agent.toml, when it exists; else the built-in
    /// defaults).
    #[arg(long, env = "FLEET_AGENT_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,
    /// State directory (overrides `agent.state_dir`).
    #[arg(long, env = "FLEET_AGENT_STATE_DIR", hide_env_values = true)]
    pub state_dir: Option<PathBuf>,
}

/// Where the configuration and state are, and the running agent's page port and log
/// file (`run`, the service).
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Configuration file (default: /etc/fleet-agent/fleet-agent.toml, on Windows
    /// %ProgramData%\FleetAgent\fleet-agent.toml, when it exists; else the built-in
    /// defaults).
    #[arg(long, env = "FLEET_AGENT_CONFIG", hide_env_values = true)]
    pub config: Option<PathBuf>,
    /// State directory (overrides `agent.state_dir`).
    #[arg(long, env = "FLEET_AGENT_STATE_DIR", hide_env_values = true)]
    pub state_dir: Option<PathBuf>,
    /// Port of the local web page (replaces `web.listen`'s port; the Windows installer's
    /// choice: 80, or another free one such as 8080 or 8088).
    #[arg(long, env = "FLEET_AGENT_WEB_PORT", hide_env_values = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub web_port: Option<u16>,
    /// Also write the log to this file, rotated at 10 MiB, 5 kept (the Windows service
    /// writes `<state dir>\logs\fleet-agent.log` by default).
    #[arg(long, env = "FLEET_AGENT_LOG_FILE", hide_env_values = true)]
    pub log_file: Option<PathBuf>,
    /// The cloud's URL (replaces `cloud.url`; the Windows installer's CLOUDURL). Empty:
    /// the configuration's.
    #[arg(long, env = "FLEET_AGENT_CLOUD_URL", value_name = "URL")]
    pub cloud_url: Option<String>,
    /// Ports the local page moves to, in order, when its own is taken, comma-separated
    /// (the Windows installer's 8080,8088); empty or `none`: none.
    #[arg(long, value_name = "PORTS", value_parser = parse_ports, default_value = "")]
    pub web_port_fallback: PortList,
}

/// Ports, comma-separated (`8080,8088`); empty or `none` for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

pub(super) fn parse_ports(s: &str) -> Result<PortList, String> {
    // `none`: what the installer can remember (an empty property counts as not given).
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(PortList::default());
    }
    let ports = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{p:?} is not a TCP port (1..65535)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ports.len() > 8 {
        return Err(format!("{} ports; at most 8", ports.len()));
    }
    Ok(PortList(ports))
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
        if let Some(u) = self.cloud_url.as_ref().filter(|u| !u.trim().is_empty()) {
            v.extend(["--cloud-url".into(), u.into()]);
        }
        if !self.web_port_fallback.0.is_empty() {
            let ports: Vec<String> = self
                .web_port_fallback
                .0
                .iter()
                .map(u16::to_string)
                .collect();
            v.extend(["--web-port-fallback".into(), ports.join(",").into()]);
        }
        v
    }
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
    source.parse().map_err(Exit::from)
}

/// Reads the configuration file `run` uses (or the built-in defaults).
///
/// # Errors
/// An unreadable file, as an exit with code 66 (an input file that cannot be read).
pub fn load_source(explicit: Option<&PathBuf>) -> Result<crate::config::Source, Exit> {
    match config_path(explicit) {
        Some(p) => crate::config::Source::read(&p)
            .map_err(|e| Exit::new(exit::NO_INPUT, e.to_string().trim_end().to_owned())),
        None => Ok(crate::config::Source::new(
            "<built-in defaults>",
            crate::config::DEFAULT_TOML,
        )),
    }
}

pub(crate) fn state_dir(explicit: Option<&PathBuf>, c: &crate::config::Config) -> PathBuf {
    explicit
        .cloned()
        .or_else(|| c.state_dir.clone())
        .unwrap_or_else(crate::config::default_state_dir)
}

/// Runs a parsed command.
///
/// # Errors
/// Returns the exit code and message to print.
pub async fn run(cli: Cli) -> Result<(), Exit> {
    if !matches!(
        cli.command,
        Command::Run(_) | Command::Service(agent::ServiceCommand::Run(_))
    ) {
        // The tools log warnings to standard error; nothing keeps their lines.
        crate::telemetry::Logs::init("warn", None).ok();
    }
    match cli.command {
        Command::Run(a) => agent::run_agent(a, None).await,
        Command::Service(s) => agent::service(s),
        Command::Status(a) => agent::status(a).await,
        Command::Activate(a) => agent::activate(a).await,
        Command::Discover(a) => discover::discover(a).await,
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
        Command::Poll(a) => snmp::poll(a).await.map_err(Exit::from),
        Command::Walk(a) => snmp::walk_cmd(a).await.map_err(Exit::from),
        Command::Library(LibraryCommand::Default) => {
            let lib = crate::printer::library::builtin();
            println!(
                "{}",
                serde_json::to_string_pretty(&lib)
                    .map_err(|e| Exit::new(exit::FAILURE, e.to_string()))?
            );
            Ok(())
        }
        Command::Page(page::PageCommand::Open(a)) => page::open(a).await,
        Command::Version => {
            println!("fleet-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
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
            "--cloud-url",
            "https://cloud.example",
            "--web-port-fallback",
            " 8080, 8090 ",
        ])
        .unwrap();
        let Command::Service(agent::ServiceCommand::Install(a)) = cli.command else {
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
        assert_eq!(
            &args[2..],
            [
                "--web-port",
                "8088",
                "--cloud-url",
                "https://cloud.example",
                "--web-port-fallback",
                "8080,8090"
            ]
        );
        // Port 0 is refused at parse time, not at bind time.
        let e = Cli::try_parse_from(["fleet-agent", "run", "--web-port", "0"]).unwrap_err();
        assert!(e.to_string().contains("--web-port"), "{e}");
    }

    #[test]
    fn fallback_ports_are_a_comma_list_empty_for_none() {
        assert_eq!(parse_ports("8080,8088"), Ok(PortList(vec![8080, 8088])));
        assert_eq!(parse_ports(""), Ok(PortList(vec![])));
        assert_eq!(parse_ports(" , "), Ok(PortList(vec![])));
        // The installer's PORTFALLBACK=none (an empty property cannot be remembered).
        assert_eq!(parse_ports("none"), Ok(PortList(vec![])));
        assert_eq!(parse_ports(" None "), Ok(PortList(vec![])));
        assert!(parse_ports("none,8080").is_err());
        assert!(
            parse_ports("0")
                .unwrap_err()
                .contains("\"0\" is not a TCP port")
        );
        assert!(parse_ports("8080,http").is_err());
        assert!(parse_ports("70000").is_err());
        assert!(
            parse_ports("1,2,3,4,5,6,7,8,9")
                .unwrap_err()
                .contains("at most 8")
        );
        // Not given: none, and nothing on the service's command line.
        let cli = Cli::try_parse_from(["fleet-agent", "run"]).unwrap();
        let Command::Run(a) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert!(a.web_port_fallback.0.is_empty());
        assert!(a.to_args().is_empty(), "{:?}", a.to_args());
    }
}
