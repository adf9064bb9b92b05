//! The simulator's command-line arguments (`fleet-lab simulate`) and what they start;
//! tests start simulators from the same arguments in process.

use crate::{Layout, Printer, Simulator, synth};
use clap::Args;
use fleet_snmp::agent::MibView;
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
    /// Fleet mode: serve the recordings again and again, in order, until this many
    /// printers are served (benchmarks on real recordings). Each copy's texts under
    /// `--unique-prefix` get `-<copy>` appended, so no two printers share a serial number.
    #[arg(long, requires = "fleet_start")]
    pub repeat_to: Option<usize>,
    /// With `--repeat-to`: OID prefix whose text values are made unique per copy
    /// (repeatable; the Printer-MIB serial number column when none is given).
    #[arg(long, requires = "repeat_to")]
    pub unique_prefix: Vec<fleet_snmp::Oid>,
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
    /// Make every printer's SNMP agent misbehave this way (repeatable), as real ones do:
    /// `drop=OID` (no answer to a request naming an object under OID), `generr=OID`
    /// (genErr for objects under OID), `nosuchname=OID` (noSuchName for them), `bulk=drop|generr|one` (GETBULK unanswered,
    /// refused, or one repetition only), `too-big-above=N` (tooBig for more than N
    /// objects in a request), `too-big-response=N` (tooBig for a response of more than N
    /// values instead of a shorter GETBULK answer), `v1-only` (v2c and v3 unanswered), `slow=MS` or
    /// `slow=MIN-MAX` (each answer that late), `duplicate` (each answer sent twice),
    /// `backwards=OID` (a walk inside a column under OID gets the asked OID back),
    /// `wrong-type=OID` (values under OID with the wrong type).
    #[arg(long, value_parser = parse_quirk)]
    pub quirk: Vec<Quirk>,
    /// Write the list of served printers (JSON) to this file once listening.
    #[arg(long)]
    pub targets_out: Option<PathBuf>,
}

/// One `--quirk`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quirk {
    /// `drop=OID`.
    Drop(fleet_snmp::Oid),
    /// `generr=OID`.
    GenErr(fleet_snmp::Oid),
    /// `nosuchname=OID`.
    NoSuchName(fleet_snmp::Oid),
    /// `bulk=drop|generr|one`.
    Bulk(fleet_snmp::agent::BulkFault),
    /// `too-big-above=N`.
    TooBigAbove(usize),
    /// `too-big-response=N`.
    TooBigResponse(usize),
    /// `v1-only`.
    V1Only,
    /// `slow=MS` or `slow=MIN-MAX`.
    Slow(u64, u64),
    /// `duplicate`.
    Duplicate,
    /// `backwards=OID`.
    Backwards(fleet_snmp::Oid),
    /// `wrong-type=OID`.
    WrongType(fleet_snmp::Oid),
}

fn parse_quirk(s: &str) -> Result<Quirk, String> {
    use fleet_snmp::agent::BulkFault;
    let oid = |v: &str| {
        v.parse::<fleet_snmp::Oid>()
            .map_err(|e| format!("{s:?}: {e}"))
    };
    match s.split_once('=') {
        Some(("drop", v)) => Ok(Quirk::Drop(oid(v)?)),
        Some(("generr", v)) => Ok(Quirk::GenErr(oid(v)?)),
        Some(("nosuchname", v)) => Ok(Quirk::NoSuchName(oid(v)?)),
        Some(("backwards", v)) => Ok(Quirk::Backwards(oid(v)?)),
        Some(("wrong-type", v)) => Ok(Quirk::WrongType(oid(v)?)),
        Some(("bulk", "drop")) => Ok(Quirk::Bulk(BulkFault::Drop)),
        Some(("bulk", "generr")) => Ok(Quirk::Bulk(BulkFault::GenErr)),
        Some(("bulk", "one")) => Ok(Quirk::Bulk(BulkFault::OneRepetition)),
        Some(("too-big-above", v)) => v
            .parse()
            .map(Quirk::TooBigAbove)
            .map_err(|e| format!("{s:?}: {e}")),
        Some(("too-big-response", v)) => v
            .parse()
            .map(Quirk::TooBigResponse)
            .map_err(|e| format!("{s:?}: {e}")),
        None if s == "v1-only" => Ok(Quirk::V1Only),
        None if s == "duplicate" => Ok(Quirk::Duplicate),
        Some(("slow", v)) => {
            let ms = |x: &str| x.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
            let (lo, hi) = match v.split_once('-') {
                Some((a, b)) => (ms(a)?, ms(b)?),
                None => (ms(v)?, ms(v)?),
            };
            if lo > hi || hi > 60_000 {
                return Err(format!("{s:?}: expected MS or MIN-MAX, at most 60000"));
            }
            Ok(Quirk::Slow(lo, hi))
        }
        _ => Err(format!(
            "{s:?}: expected drop=OID, generr=OID, nosuchname=OID, bulk=drop|generr|one, too-big-above=N, too-big-response=N, v1-only, slow=MS[-MS], duplicate, backwards=OID or wrong-type=OID"
        )),
    }
}

/// The agent faults the `--quirk`s describe.
pub fn faults(quirks: &[Quirk]) -> fleet_snmp::agent::Faults {
    let mut f = fleet_snmp::agent::Faults::default();
    for q in quirks {
        match q {
            Quirk::Drop(o) => f.drop.push(o.clone()),
            Quirk::GenErr(o) => f.gen_err.push(o.clone()),
            Quirk::NoSuchName(o) => f.no_such_name.push(o.clone()),
            Quirk::Bulk(b) => f.bulk = Some(*b),
            Quirk::TooBigAbove(n) => f.too_big_above = Some(*n),
            Quirk::TooBigResponse(n) => f.too_big_response_above = Some(*n),
            Quirk::V1Only => f.v1_only = true,
            Quirk::Backwards(o) => f.backwards.push(o.clone()),
            Quirk::WrongType(o) => f.wrong_type.push(o.clone()),
            Quirk::Slow(..) | Quirk::Duplicate => {}
        }
    }
    f
}

/// The network behaviour the `--quirk`s describe.
pub fn wire(quirks: &[Quirk]) -> crate::Wire {
    let mut w = crate::Wire::default();
    for q in quirks {
        match q {
            Quirk::Slow(lo, hi) => w.delay_ms = Some((*lo, *hi)),
            Quirk::Duplicate => w.duplicate = true,
            _ => {}
        }
    }
    w
}

/// The most printers `--repeat-to` serves (a /16 of loopback addresses).
pub const MAX_REPEAT: usize = 65_000;

/// Cycles `printers` (recordings) until there are `n`; copies get unique texts under
/// `prefixes` (default: prtGeneralSerialNumber).
fn repeat_recordings(
    printers: &mut Vec<(String, Arc<MibView>)>,
    n: usize,
    prefixes: &[fleet_snmp::Oid],
) -> Result<(), ArgsError> {
    if n > MAX_REPEAT {
        return Err(ArgsError::Usage(format!(
            "--repeat-to {n}: at most {MAX_REPEAT}"
        )));
    }
    let originals = printers.clone();
    if originals.is_empty() {
        return Err(ArgsError::Usage(
            "--repeat-to needs recordings (--data-dir or --file)".into(),
        ));
    }
    let serial: fleet_snmp::Oid = "1.3.6.1.2.1.43.5.1.1.17"
        .parse()
        .map_err(|e| ArgsError::Usage(format!("{e}")))?;
    let prefixes = if prefixes.is_empty() {
        std::slice::from_ref(&serial)
    } else {
        prefixes
    };
    let mut copy = 1usize;
    while printers.len() < n {
        for (name, view) in &originals {
            if printers.len() >= n {
                break;
            }
            let suffix = format!("-{copy}");
            let pairs = view
                .iter()
                .map(|(oid, v)| match v {
                    fleet_snmp::Value::OctetString(b)
                        if prefixes.iter().any(|p| oid.starts_with(p)) =>
                    {
                        let mut b = b.clone();
                        b.extend_from_slice(suffix.as_bytes());
                        (oid.clone(), fleet_snmp::Value::OctetString(b))
                    }
                    _ => (oid.clone(), v.clone()),
                })
                .collect();
            printers.push((format!("{name}{suffix}"), Arc::new(MibView::new(pairs))));
        }
        copy += 1;
    }
    Ok(())
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
        let mut recorded = Vec::new();
        let mut warnings = Vec::new();
        for dir in &self.data_dir {
            let (views, w) = crate::load_dir(dir)
                .map_err(|e| ArgsError::Input(format!("--data-dir {}: {e}", dir.display())))?;
            warnings.extend(w);
            recorded.extend(views);
        }
        for f in &self.file {
            let (pairs, w) = snmprec::read(f)
                .map_err(|e| ArgsError::Input(format!("--file {}: {e}", f.display())))?;
            warnings.extend(w);
            let name = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            recorded.push((name, Arc::new(MibView::new(pairs))));
        }
        if let Some(n) = self.repeat_to {
            repeat_recordings(&mut recorded, n, &self.unique_prefix)?;
        }
        let mut printers: Vec<Printer> = recorded
            .into_iter()
            .map(|(name, v)| Printer::recorded(name, v))
            .collect();
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
        if !self.quirk.is_empty() {
            let (f, w) = (faults(&self.quirk), wire(&self.quirk));
            printers = printers
                .into_iter()
                .map(|p| p.with_faults(f.clone()).with_wire(w))
                .collect();
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
