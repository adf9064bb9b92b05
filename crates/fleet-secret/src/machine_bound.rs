//! Key files bound to the machine that wrote them: on Windows the bytes are wrapped with
//! DPAPI in machine scope (CryptProtectData, `CRYPTPROTECT_LOCAL_MACHINE`), so a copy of
//! the state directory (a backup, a disk image, a share) does not carry a usable key
//! off the host; the file's ACL still decides who on the host may read it. Elsewhere
//! the bytes are kept as they are (mode 0600 decides).
//!
//! A wrapped file starts with [`MAGIC`]; anything else is the bytes themselves (what
//! every version wrote before, and what Unix writes), so an older file still opens and
//! the caller can wrap it.

/// The first bytes of a DPAPI-wrapped key file.
pub const MAGIC: &[u8] = b"fleet-agent dpapi v1\n";

/// Mixed into DPAPI's key so that another program calling DPAPI on this machine cannot
/// unwrap the file by accident; it is not a secret.
#[cfg_attr(not(windows), allow(dead_code))]
const ENTROPY: &[u8] = b"fleet-agent secret.key";

/// Why a key file's bytes cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnwrapError {
    /// Wrapped by DPAPI, on a host that has none.
    #[error("the key is bound to a Windows host (DPAPI); it cannot be read on this system")]
    NotWindows,
    /// DPAPI refused: another machine's key, or a damaged file.
    #[error(
        "the key is bound to another Windows machine, or damaged (DPAPI: {0}); a state directory copied from another host cannot open its secrets"
    )]
    Refused(String),
}

/// Whether `bytes` are a wrapped key file.
pub fn is_wrapped(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The bytes to write for `key`: wrapped on Windows, as they are elsewhere. `Err` with
/// DPAPI's reason when it fails (the caller decides whether to keep the key unwrapped).
///
/// # Errors
/// DPAPI failing (Windows only).
pub fn wrap(key: &[u8]) -> Result<Vec<u8>, String> {
    #[cfg(windows)]
    {
        let blob = windows_dpapi::encrypt_data(key, windows_dpapi::Scope::Machine, Some(ENTROPY))
            .map_err(|e| format!("{e:#}"))?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&blob);
        Ok(out)
    }
    #[cfg(not(windows))]
    {
        Ok(key.to_vec())
    }
}

/// The key in a key file's bytes (wrapped or not).
///
/// # Errors
/// A wrapped file on a system without DPAPI, or one DPAPI refuses.
pub fn unwrap(bytes: &[u8]) -> Result<Vec<u8>, UnwrapError> {
    let Some(blob) = bytes.strip_prefix(MAGIC) else {
        return Ok(bytes.to_vec());
    };
    #[cfg(windows)]
    {
        windows_dpapi::decrypt_data(blob, windows_dpapi::Scope::Machine, Some(ENTROPY))
            .map_err(|e| UnwrapError::Refused(format!("{e:#}")))
    }
    #[cfg(not(windows))]
    {
        let _ = blob;
        Err(UnwrapError::NotWindows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_a_plain_file_reads_as_itself() {
        let key = [7u8; 32];
        let written = wrap(&key).unwrap();
        assert_eq!(unwrap(&written).unwrap(), key);
        assert_eq!(is_wrapped(&written), cfg!(windows));
        // What older versions (and Unix) wrote.
        assert_eq!(unwrap(&key).unwrap(), key);
    }

    #[cfg(not(windows))]
    #[test]
    fn a_windows_key_is_refused_elsewhere_with_the_reason() {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&[1, 2, 3]);
        assert!(is_wrapped(&file));
        assert_eq!(unwrap(&file), Err(UnwrapError::NotWindows));
    }
}
