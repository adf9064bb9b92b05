//! Files only the running account can read: the agent's state directory, its sealing key,
//! the reference cloud's admin token. Mode 0700/0600 on Unix; on Windows an ACL without
//! inherited entries granting SYSTEM, Administrators and the file's owner.

use std::io::Write;
use std::path::Path;

/// Restricts `path` (a file, or a directory and what it will contain) to the account
/// running the process (and, on Windows, SYSTEM and Administrators).
///
/// # Errors
/// When the permissions cannot be set; callers treat that as fatal, since a secret file
/// readable by others must not be used.
pub fn restrict(path: &Path) -> std::io::Result<()> {
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

/// How [`write`] treats an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Replace its contents.
    Replace,
    /// Fail with `AlreadyExists` (a key must never be overwritten by a second writer).
    Refuse,
    /// Write a temporary file beside it, sync it, then rename it over the old one: a crash
    /// leaves the old contents or the new, never half of either (state files).
    Swap,
}

/// Writes `bytes` to `path` as a file only the running account can read: created with
/// mode 0600 on Unix (never readable by others, not even for a moment), restricted by ACL
/// on Windows, and synced.
///
/// # Errors
/// I/O errors; `AlreadyExists` with [`Existing::Refuse`].
pub fn write(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    if existing == Existing::Swap {
        // Unique per writer: two processes swapping the same file (the service and an
        // `activate` beside it) must not rename each other's half-written part.
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(
            ".{}-{}.part",
            std::process::id(),
            crate::random_token(4)
        ));
        let part = path.with_file_name(name);
        write(&part, bytes, Existing::Replace)?;
        return std::fs::rename(&part, path);
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    match existing {
        Existing::Replace | Existing::Swap => o.create(true).truncate(true),
        Existing::Refuse => o.create_new(true),
    };
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path)?;
    // An existing file keeps its mode through `open`: restrict it before writing.
    restrict(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Lets the running account (only) run `path` as a program: mode 0700 on Unix; on
/// Windows the owner-only ACL already allows it.
///
/// # Errors
/// I/O errors.
pub fn make_executable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        restrict(path)
    }
}

/// Creates `dir` (and its parents) and restricts it to the running account.
///
/// # Errors
/// I/O errors.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    restrict(dir)
}

/// Replaces the ACL with SYSTEM, Administrators and the file's owner (full control),
/// dropping inherited entries (ProgramData grants Users read by inheritance).
///
/// Only well-known SIDs, never account names or a command's text: `icacls` and `whoami`
/// print localized text (French Windows among the seed's readers) and Wine's `whoami`
/// gives no SID. The owner is the account that created the file (the service's
/// LocalSystem, or the admin running the agent by hand), reached through the OWNER
/// RIGHTS SID S-1-3-4, so nothing has to be looked up; icacls's exit status is all that
/// is read.
#[cfg(windows)]
fn windows_acl(path: &Path) -> std::io::Result<()> {
    let rights = if path.is_dir() { "(OI)(CI)F" } else { "F" };
    let mut cmd = std::process::Command::new("icacls");
    cmd.arg(path).arg("/inheritance:r");
    // SYSTEM, Administrators, OWNER RIGHTS.
    for sid in ["S-1-5-18", "S-1-5-32-544", "S-1-3-4"] {
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

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_directories_become_owner_only() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict(&f).unwrap();
        restrict(d.path()).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(d.path()), 0o700);
    }

    #[test]
    fn written_files_are_owner_only_and_refuse_mode_keeps_the_first() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("token");
        std::fs::write(&f, b"old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&f, b"new", Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        assert_eq!(mode(&f), 0o600);
        let e = write(&f, b"second", Existing::Refuse).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        let sub = d.path().join("a/b");
        create_dir(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        // Swap: the new contents whole, owner-only, no temporary file left behind.
        write(&f, b"swapped", Existing::Swap).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"swapped");
        assert_eq!(mode(&f), 0o600);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            2,
            "token and a/"
        );
        make_executable(&f).unwrap();
        assert_eq!(mode(&f), 0o700);
    }
}
