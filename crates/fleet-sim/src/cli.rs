//! The simulator's command-line arguments (`fleet-lab simulate`) and what they start;
//! tests start simulators from the same arguments in process.

use crate::{Layout, Printer, Simulator, synth};
use clap::Args;
use fleet_snmp::{UsmUser, snmprec};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Make the synthetic printers' agents misbehave (hardening tests).
    #[arg(long, value_enum, requires = "synthetic")]
    pub hostile: Option<crate::hostile::Mode>,
    /// Write the list of served printers (JSON) to this file once listening.
    #[arg(long)]
    pub targets_out: Option<PathBuf>,
}

/// Why the arguments cannot start a simulator.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// A recording cannot be read.
    #[error("{0}")]
    Input(String),
    /// The arguments do not fit.
    #[error("{0}")]
    Usage(String),
    /// A socket cannot be bound.
    #[error("cannot start the simulator: {0}")]
    Start(std::io::Error),
}

impl SimulateArgs {
    /// Loads the printers the arguments name and starts serving them; also returns the
    /// recording lines that were skipped.
    ///
    /// # Errors
    /// As [`ArgsError`].
    pub async fn start(&self) -> Result<(Simulator, Vec<snmprec::Warning>), ArgsError> {
        let mut printers = Vec::new();
        let mut warnings = Vec::new();
        for dir in &self.data_dir {
            let (views, w) = crate::load_dir(dir)
                .map_err(|e| ArgsError::Input(format!("--data-dir {}: {e}", dir.display())))?;
            warnings.extend(w);
            printers.extend(
                views
                    .into_iter()
                    .map(|(name, v)| Printer::recorded(name, v)),
            );
        }
        for f in &self.file {
            let (pairs, w) = snmprec::read(f)
                .map_err(|e| ArgsError::Input(format!("--file {}: {e}", f.display())))?;
            warnings.extend(w);
            let name = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            printers.push(Printer::recorded(
                name,
                Arc::new(fleet_snmp::agent::MibView::new(pairs)),
            ));
        }
        if self.synthetic > 0 {
            if !(self.speed.is_finite() && self.speed >= 0.0) {
                return Err(ArgsError::Usage(format!(
                    "--speed {}: must be a finite number >= 0",
                    self.speed
                )));
            }
            let fleet = crate::synthetic_fleet(
                self.synthetic,
                synth::SynthParams {
                    speed: self.speed,
                    seed: self.seed,
                },
            );
            printers.extend(fleet.into_iter().map(|p| match self.hostile {
                Some(mode) => p.hostile(mode),
                None => p,
            }));
        }
        if printers.is_empty() {
            return Err(ArgsError::Usage(
                "nothing to serve: give --data-dir, --file or --synthetic N".into(),
            ));
        }
        let users = self
            .v3_user
            .iter()
            .map(|s| UsmUser::from_spec(s).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ArgsError::Usage(format!("--v3-user {e}")))?;
        let layout = match (self.listen, self.fleet_start) {
            (Some(addr), _) => Layout::SinglePort(addr),
            (None, start) => Layout::Fleet {
                start: start.unwrap_or(Ipv4Addr::new(127, 1, 0, 1)),
                port: self.port,
                community: self.community.clone(),
            },
        };
        let sim = Simulator::start(printers, layout, users)
            .await
            .map_err(ArgsError::Start)?;
        Ok((sim, warnings))
    }
}
