//! What differs between Linux and Windows hosts: keeping the state directory and secret
//! files readable by the agent's account only (mode 0700/0600 on Unix; on Windows an ACL
//! without inherited entries granting SYSTEM, Administrators and the running account).

use std::path::Path;

/// Restricts `path` (a file, or a directory and what it will contain) to the account
/// running the agent (and, on Windows, SYSTEM and Administrators).
///
/// # Errors
/// When the permissions cannot be set; callers treat that as fatal, since a secret file
/// readable by others must not be used.
pub fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if path.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(windows)]
    {
        windows_acl(path)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = path;
        Ok(())
    }
}

/// The running account's SID, from `whoami /user` (`"nt authority\system","S-1-5-18"`).
#[cfg(windows)]
fn current_sid() -> std::io::Result<String> {
    let out = std::process::Command::new("whoami")
        .args(["/user", "/fo", "csv", "/nh"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .rsplit(',')
        .next()
        .map(|s| s.trim_matches('"').to_string())
        .filter(|s| s.starts_with("S-1-"))
        .ok_or_else(|| std::io::Error::other(format!("whoami /user gave {text:?}")))
}

/// Replaces the ACL with SYSTEM, Administrators and the running account (full control),
/// dropping inherited entries (ProgramData grants Users read by inheritance).
#[cfg(windows)]
fn windows_acl(path: &Path) -> std::io::Result<()> {
    let rights = if path.is_dir() { "(OI)(CI)F" } else { "F" };
    let mut cmd = std::process::Command::new("icacls");
    cmd.arg(path).arg("/inheritance:r");
    for sid in [
        "S-1-5-18".to_string(),
        "S-1-5-32-544".to_string(),
        current_sid()?,
    ] {
        cmd.arg("/grant:r").arg(format!("*{sid}:{rights}"));
    }
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "icacls {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_and_directories_become_owner_only() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict_to_owner(&f).unwrap();
        restrict_to_owner(d.path()).unwrap();
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(d.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
