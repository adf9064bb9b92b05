//! Self-update (`updateAgent`): the signed manifest of a new agent binary, its staging in
//! the state directory, the launcher that starts it (verified again before every start),
//! the health check that confirms it, and the rollback when it does not come up.
//!
//! Why a launcher and not a replaced binary: the packaged service runs hardened
//! (`ProtectSystem=strict`), so it cannot write `/usr/bin`, and a half-written binary
//! there could not be rolled back. The installed binary stays as it is and is always what
//! the service manager starts; at start it looks in `<state>/update/` and, when a verified
//! newer version is staged there, `exec`s it (same process id, so systemd's notify and
//! watchdog keep working). Every decision goes through that installed launcher:
//!
//! - a job stages version N as a **trial** and asks for a restart (exit status 75 under a
//!   service manager, which starts the agent again; a foreground agent `exec`s itself);
//! - the launcher counts the trial's start and `exec`s it; the trial **confirms** itself
//!   once its components run and the cloud answered its heartbeat within the job's health
//!   time (`params.healthSecs`, default 120 s), then reports the job completed;
//! - a trial that crashes, hangs (the systemd watchdog kills it), exits, or is unhealthy
//!   when its time runs out (it marks itself so and asks for a restart) is **rolled back**
//!   at the next start: the launcher returns to the previous version (an earlier update
//!   or the installed one), deletes the trial's file and leaves a report that the previous
//!   version delivers as the job's failure, with the reason.
//!
//! On Windows there is no `exec`: the installed binary stays the service process and runs
//! the staged version as its child ([`child_handover`]), passes a stop on by closing the
//! child's input, and makes the launcher's decision again itself when the child exits for
//! a restart (status 75) or a trial dies.
//!
//! Never unsigned code: the manifest is signed with ed25519 by a key in
//! `cloud.update_keys` (set on the host only), and the file's size and SHA-256 must match
//! it — when it is downloaded and before every start.
//!
//! Here: the manifest checks (`verify`, `check_file`); `staging` (the files under
//! `<state>/update/`, staging a trial, the rollback report); `launcher` (the decision at
//! each start, the restart); `health` (a trial's confirmation or failure).

use fleet_protocol::signing::SignatureError;
pub use fleet_protocol::signing::sha256_hex;
pub use fleet_protocol::update::{
    Manifest, PRODUCT, Package, manifest_for, newer, sign, version_numbers,
};
mod health;
mod launcher;
mod staging;

pub use health::{Health, check_health};
#[cfg(unix)]
pub use launcher::restart_in_place;
pub use launcher::{Launch, Restart, launch};
pub use staging::{Phase, Report, Staged, dir, pending_job, settle, stage, state, status};

/// Largest agent binary accepted.
pub const MAX_BYTES: u64 = 256 << 20;
/// Exit status asking the service manager to start the agent again (sysexits
/// EX_TEMPFAIL; systemd's `Restart=on-failure` and the Windows recovery actions restart
/// on it).
pub const EXIT_RESTART: i32 = 75;
/// Health time when the job does not say.
pub const DEFAULT_HEALTH_SECS: u64 = 120;
/// Health times a job may ask for.
pub const HEALTH_SECS: std::ops::RangeInclusive<u64> = 5..=3600;
/// Set by the launcher in the environment of the version it starts: that version.
const LAUNCHED: &str = "FLEET_AGENT_UPDATE_LAUNCHED";
/// Set by the launcher: the installed binary, which a foreground restart runs again.
const LAUNCHER: &str = "FLEET_AGENT_UPDATE_LAUNCHER";
/// Set by a launcher that runs the staged version as its child: that version stops when
/// its standard input closes, and asks for a restart with [`EXIT_RESTART`].
const SUPERVISED: &str = "FLEET_AGENT_UPDATE_SUPERVISED";
/// `child` runs staged versions as child processes on Unix too (the Windows handover;
/// the tests run it on Linux this way).
const HANDOVER: &str = "FLEET_AGENT_UPDATE_HANDOVER";

/// Whether a staged version runs as a child of the installed binary rather than in its
/// place: always on Windows, where a process cannot become another executable (no
/// `exec`); on Unix when `FLEET_AGENT_UPDATE_HANDOVER=child`.
pub fn child_handover() -> bool {
    cfg!(windows) || std::env::var_os(HANDOVER).is_some_and(|v| v == "child")
}

/// Whether this process is a staged version run as a launcher's child: it stops when
/// its input closes and restarts by exiting with [`EXIT_RESTART`] (the launcher starts
/// what comes next).
pub fn supervised() -> bool {
    std::env::var_os(SUPERVISED).is_some()
}

/// Why an update was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    /// The agent trusts no update key.
    #[error(
        "this agent trusts no update key (cloud.update_keys is empty on its host), so it never updates itself"
    )]
    NoKeys,
    /// The job's parameters are not usable.
    #[error("{0}")]
    Params(String),
    /// The signature is not from a trusted key or does not match.
    #[error(
        "manifest refused: {0}{hint}",
        hint = if matches!(.0, SignatureError::UnknownKey(_)) { "; trusted keys are listed in cloud.update_keys" } else { "" }
    )]
    Signature(SignatureError),
    /// The manifest is signed but unusable.
    #[error("manifest: {0}")]
    Manifest(String),
    /// Built for another platform.
    #[error(
        "built for {os}/{arch}; this agent runs on {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )]
    Platform {
        /// The manifest's OS.
        os: String,
        /// The manifest's architecture.
        arch: String,
    },
    /// Not newer than the running version.
    #[error("version {offered} is not newer than the running version {running}")]
    NotNewer {
        /// The manifest's version.
        offered: String,
        /// This agent's.
        running: String,
    },
    /// The file is not the one signed.
    #[error("the file does not match the signed manifest: {0} (tampered or corrupted)")]
    File(String),
    /// The file could not be stored or started.
    #[error("{0}")]
    Io(String),
}

/// Verifies a package's signature and checks its manifest: product, version format,
/// platform, size limit. Whether it is newer is the caller's question.
///
/// # Errors
/// As [`UpdateError`].
pub fn verify(package: &Package, trusted: &[String]) -> Result<Manifest, UpdateError> {
    if trusted.is_empty() {
        return Err(UpdateError::NoKeys);
    }
    fleet_protocol::signing::verify(
        package.manifest.as_bytes(),
        &package.signature,
        &package.key_id,
        trusted,
    )
    .map_err(UpdateError::Signature)?;
    let m: Manifest = serde_json::from_str(&package.manifest)
        .map_err(|e| UpdateError::Manifest(e.to_string()))?;
    if m.product != PRODUCT {
        return Err(UpdateError::Manifest(format!(
            "product {:?} is not {PRODUCT}",
            m.product
        )));
    }
    if version_numbers(&m.version).is_none() || m.version.contains(['-', '+']) {
        return Err(UpdateError::Manifest(format!(
            "version {:?} is not dotted numbers",
            m.version
        )));
    }
    if m.os != std::env::consts::OS || m.arch != std::env::consts::ARCH {
        return Err(UpdateError::Platform {
            os: m.os,
            arch: m.arch,
        });
    }
    if m.size == 0 || m.size > MAX_BYTES {
        return Err(UpdateError::Manifest(format!(
            "size {} is not between 1 and {MAX_BYTES} bytes",
            m.size
        )));
    }
    if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UpdateError::Manifest("sha256: not 64 hex digits".into()));
    }
    Ok(m)
}

/// Checks a file's bytes against its manifest.
///
/// # Errors
/// [`UpdateError::File`] naming what differs.
pub fn check_file(m: &Manifest, bytes: &[u8]) -> Result<(), UpdateError> {
    if bytes.len() as u64 != m.size {
        return Err(UpdateError::File(format!(
            "{} bytes, the manifest says {}",
            bytes.len(),
            m.size
        )));
    }
    let got = sha256_hex(bytes);
    if !got.eq_ignore_ascii_case(&m.sha256) {
        return Err(UpdateError::File(format!(
            "SHA-256 {got}, the manifest says {}",
            m.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
