//! Settings and secrets at rest: secrets are sealed with ChaCha20-Poly1305 under a random
//! key kept in `secret.key` in the state directory (created owner-only: mode 0600 on
//! Unix, an ACL for SYSTEM, Administrators and the agent's account on Windows, where the
//! key is also wrapped with DPAPI in machine scope: a copied state directory does not
//! open on another host).

use super::{Store, StoreError};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use fleet_secret::Secret;
use rusqlite::{OptionalExtension, params};
use std::path::Path;

/// The key that seals secrets in one state directory.
#[derive(Clone)]
pub struct SealKey(Key);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    /// Loads `secret.key` from `dir`, creating it (mode 0600) on first use.
    ///
    /// # Errors
    /// When the file cannot be read or written, or has the wrong size.
    pub fn load_or_create(dir: &Path) -> Result<SealKey, StoreError> {
        let path = dir.join("secret.key");
        let err = |e: std::io::Error| StoreError::Open {
            path: path.clone(),
            source: Box::new(e),
        };
        use fleet_secret::machine_bound;
        // Read up to a bound: a key is 32 bytes (about 200 wrapped with DPAPI).
        const MAX_KEY_FILE: u64 = 4096;
        let read = std::fs::File::open(&path).and_then(|f| {
            use std::io::Read;
            let mut b = Vec::new();
            f.take(MAX_KEY_FILE + 1).read_to_end(&mut b)?;
            Ok(b)
        });
        if let Ok(bytes) = read {
            if bytes.len() as u64 > MAX_KEY_FILE {
                return Err(err(std::io::Error::other(format!(
                    "secret.key is larger than {MAX_KEY_FILE} bytes: not a key this agent wrote"
                ))));
            }
            let arr: [u8; 32] = machine_bound::unwrap(&bytes)
                .map_err(|e| err(std::io::Error::other(e.to_string())))?
                .try_into()
                .map_err(|_| err(std::io::Error::other("secret.key must hold 32 bytes")))?;
            // A key an older version wrote unwrapped (Windows): the same key, wrapped now.
            if cfg!(windows) && !machine_bound::is_wrapped(&bytes) {
                match machine_bound::wrap(&arr) {
                    Ok(w) => {
                        if let Err(e) = fleet_secret::owner_only::write(
                            &path,
                            &w,
                            fleet_secret::owner_only::Existing::Swap,
                        ) {
                            tracing::warn!(file = %path.display(), error = %e, "secret.key could not be rewritten bound to this machine; kept as it was.");
                        }
                    }
                    Err(why) => {
                        tracing::warn!(file = %path.display(), error = %why, "secret.key could not be bound to this machine (DPAPI); kept as it was, protected by its ACL.");
                    }
                }
            }
            return Ok(SealKey(arr.into()));
        }
        std::fs::create_dir_all(dir).map_err(err)?;
        // The directory first: on Windows the new file then inherits its restricted ACL.
        fleet_secret::owner_only::restrict(dir).map_err(err)?;
        let mut k = [0u8; 32];
        fleet_secret::random_bytes(&mut k);
        // Bound to this machine on Windows (DPAPI); if that fails the key is still
        // protected by the directory's ACL, so the agent goes on.
        let file = machine_bound::wrap(&k).unwrap_or_else(|why| {
            tracing::warn!(file = %path.display(), error = %why, "secret.key could not be bound to this machine (DPAPI); kept protected by its ACL only.");
            k.to_vec()
        });
        // Never overwrite a key another process just created: its secrets are sealed with it.
        fleet_secret::owner_only::write(&path, &file, fleet_secret::owner_only::Existing::Refuse)
            .map_err(err)?;
        Ok(SealKey(k.into()))
    }

    /// Loads the key for `store`, checking the pair: the key file readable by its owner
    /// only, and the key the one the store's secrets were sealed with (a sealed check
    /// value, written on first use). A missing key is created only while the store holds
    /// no sealed secret; otherwise the agent would silently lose its activation.
    ///
    /// # Errors
    /// [`StoreError::KeyMissing`], [`StoreError::KeyMismatch`], [`StoreError::KeyExposed`],
    /// or the key file or store failing.
    pub fn for_store(store: &Store, dir: &Path) -> Result<SealKey, StoreError> {
        let path = dir.join("secret.key");
        let sealed_before = store.has_sealed()?;
        if !path.exists() && sealed_before {
            return Err(StoreError::KeyMissing { path });
        }
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&path) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::KeyExposed { path, mode });
            }
        }
        let key = SealKey::load_or_create(dir)?;
        match store.secret(&key, KEY_CHECK)? {
            Some(v) if v.expose() == KEY_CHECK_TEXT => Ok(key),
            Some(_) => Err(StoreError::KeyMismatch { path }),
            None if store.setting_exists(KEY_CHECK)? => Err(StoreError::KeyMismatch { path }),
            None => {
                // A store sealed before the check value existed: the first sealed secret
                // that opens proves the key.
                if sealed_before && !store.any_secret_opens(&key)? {
                    return Err(StoreError::KeyMismatch { path });
                }
                store.set_secret(&key, KEY_CHECK, &Secret::new(KEY_CHECK_TEXT))?;
                Ok(key)
            }
        }
    }

    fn seal(&self, plain: &str) -> String {
        let mut n = [0u8; 12];
        fleet_secret::random_bytes(&mut n);
        let c = ChaCha20Poly1305::new(&self.0)
            .encrypt(Nonce::from_slice(&n), plain.as_bytes())
            .expect("sealing cannot fail");
        let mut out: Vec<u8> = n.to_vec();
        out.extend_from_slice(&c);
        hex::encode(out)
    }

    fn open(&self, sealed: &str) -> Option<String> {
        let bytes = hex::decode(sealed).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (n, c) = bytes.split_at(12);
        let p = ChaCha20Poly1305::new(&self.0)
            .decrypt(Nonce::from_slice(n), c)
            .ok()?;
        String::from_utf8(p).ok()
    }
}

/// The sealed value that proves `secret.key` is the store's key.
const KEY_CHECK: &str = "store.key_check";
const KEY_CHECK_TEXT: &str = "fleet-agent secret.key check";

impl Store {
    /// Whether any setting is sealed.
    fn has_sealed(&self) -> Result<bool, StoreError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM settings WHERE encrypted = 1)",
            [],
            |r| r.get(0),
        )?)
    }

    fn setting_exists(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM settings WHERE name = ?1)",
            params![name],
            |r| r.get(0),
        )?)
    }

    /// Whether at least one sealed setting opens with `key`.
    fn any_secret_opens(&self, key: &SealKey) -> Result<bool, StoreError> {
        let c = self.conn();
        let mut st = c.prepare("SELECT value FROM settings WHERE encrypted = 1")?;
        let values = st.query_map([], |r| r.get::<_, String>(0))?;
        for v in values {
            if key.open(&v?).is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stores a plain setting.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO settings(name, value, encrypted) VALUES (?1, ?2, 0) ON CONFLICT(name) DO UPDATE SET value = excluded.value, encrypted = 0",
            params![name, value],
        )?;
        Ok(())
    }

    /// Plain settings whose name starts with `prefix`, by name.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT name, value FROM settings WHERE encrypted = 0 AND substr(name, 1, length(?1)) = ?1 ORDER BY name",
        )?;
        let rows = st.query_map(params![prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a setting (plain or sealed).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn remove_setting(&self, name: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM settings WHERE name = ?1", params![name])?;
        Ok(())
    }

    /// Empties every table (the cloud's "delete agent"): credentials, settings, printers,
    /// history, outbox, jobs, and leaves the agent marked deleted in the same transaction
    /// (no component ever sees an empty store that is not marked). The schema stays, so the
    /// agent can be activated again.
    ///
    /// # Errors
    /// On SQL failure (nothing is removed).
    pub fn wipe(&self) -> Result<(), StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let tables: Vec<String> = {
            let mut st = tx.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        for t in tables {
            tx.execute(&format!("DELETE FROM \"{t}\""), [])?;
        }
        // The outbox's running totals are schema, not data: an empty outbox has a row of
        // zeros.
        tx.execute(
            "INSERT OR REPLACE INTO outbox_totals(id, messages, bytes) VALUES (1, 0, 0)",
            [],
        )?;
        tx.execute(
            "INSERT INTO settings(name, value, encrypted) VALUES (?1, ?2, 0)",
            params![super::state::AGENT_STATE, super::state::DELETED],
        )?;
        self.sent_memo.lock().clear();
        tx.commit()?;
        Ok(())
    }

    /// Reads a plain setting.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT value FROM settings WHERE name = ?1 AND encrypted = 0")?
            .query_row(params![name], |r| r.get(0))
            .optional()?)
    }

    /// Every plain setting whose name starts with `prefix`, by name.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn settings_under(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        // A range on the primary key, not a scan: names from `prefix` up to the next
        // string after every name with that prefix.
        let end = format!("{prefix}\u{10FFFF}");
        let c = self.conn();
        let mut st = c.prepare_cached(
            "SELECT name, value FROM settings WHERE name >= ?1 AND name < ?2 AND encrypted = 0 ORDER BY name",
        )?;
        let rows = st.query_map(params![prefix, end], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Renames settings, plain or sealed (a printer's state following it to a new
    /// address), in one transaction. Every new name is cleared first, whether or not its
    /// source exists: what was stored there belonged to the address's previous device.
    /// Returns how many moved.
    ///
    /// # Errors
    /// On SQL failure (nothing moves).
    pub fn rename_settings(&self, pairs: &[(String, String)]) -> Result<usize, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let mut moved = 0;
        for (from, to) in pairs.iter().filter(|(f, t)| f != t) {
            let there: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM settings WHERE name = ?1)",
                params![from],
                |r| r.get(0),
            )?;
            tx.execute("DELETE FROM settings WHERE name = ?1", params![to])?;
            if there {
                moved += tx.execute(
                    "UPDATE settings SET name = ?2 WHERE name = ?1",
                    params![from, to],
                )?;
            }
        }
        tx.commit()?;
        Ok(moved)
    }

    /// Stores a secret, sealed with `key`.
    ///
    /// # Errors
    /// On SQL failure.
    pub fn set_secret(&self, key: &SealKey, name: &str, value: &Secret) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO settings(name, value, encrypted) VALUES (?1, ?2, 1) ON CONFLICT(name) DO UPDATE SET value = excluded.value, encrypted = 1",
            params![name, key.seal(value.expose())],
        )?;
        Ok(())
    }

    /// Reads a secret (`None` when absent or sealed with another key).
    ///
    /// # Errors
    /// On SQL failure.
    pub fn secret(&self, key: &SealKey, name: &str) -> Result<Option<Secret>, StoreError> {
        let v: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM settings WHERE name = ?1 AND encrypted = 1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|s| key.open(&s)).map(Secret::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_of_the_wrong_size_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        for (bytes, why) in [
            (vec![7u8; 31], "must hold 32 bytes"),
            (vec![7u8; 100_000], "larger than 4096 bytes"),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let e = SealKey::load_or_create(dir.path()).err().unwrap();
            assert!(e.to_string().contains(why), "{e}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "the file is left as it was"
            );
        }
        std::fs::write(&path, [9u8; 32]).unwrap();
        assert_eq!(
            SealKey::load_or_create(dir.path()).unwrap().0.as_slice(),
            &[9u8; 32],
            "an unwrapped 32-byte key (Linux) is read as it is"
        );
    }

    #[test]
    fn secrets_are_sealed_at_rest_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SealKey::load_or_create(dir.path()).unwrap();
        store
            .set_secret(
                &key,
                "cloud.client_secret",
                &Secret::new("very-secret-value"),
            )
            .unwrap();
        store.set_setting("cloud.agent_id", "agent-1").unwrap();
        assert_eq!(
            store
                .secret(&key, "cloud.client_secret")
                .unwrap()
                .unwrap()
                .expose(),
            "very-secret-value"
        );
        assert_eq!(
            store.setting("cloud.agent_id").unwrap().as_deref(),
            Some("agent-1")
        );
        drop(store);
        let raw = std::fs::read(dir.path().join("fleet-agent.db")).unwrap();
        let wal = std::fs::read(dir.path().join("fleet-agent.db-wal")).unwrap_or_default();
        let needle = b"very-secret-value";
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle)
                && !wal.windows(needle.len()).any(|w| w == needle),
            "plaintext on disk"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(dir.path().join("secret.key"))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o600
            );
        }
        // The same key is loaded again; another key cannot read it.
        let key2 = SealKey::load_or_create(dir.path()).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(
            store
                .secret(&key2, "cloud.client_secret")
                .unwrap()
                .is_some()
        );
        let other = SealKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(
            store
                .secret(&other, "cloud.client_secret")
                .unwrap()
                .is_none()
        );
    }

    /// The finding: a replaced `secret.key` silently un-activated the agent.
    #[test]
    fn a_missing_replaced_or_exposed_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SealKey::for_store(&store, dir.path()).unwrap();
        store
            .set_secret(&key, "cloud.client_secret", &Secret::new("s"))
            .unwrap();
        assert!(
            SealKey::for_store(&store, dir.path()).is_ok(),
            "the same key again"
        );
        let path = dir.path().join("secret.key");
        let original = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let e = SealKey::for_store(&store, dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::KeyMissing { .. }), "{e}");
        assert!(e.to_string().contains("secret.key is missing"), "{e}");
        assert!(
            !path.exists(),
            "no new key was made over the sealed secrets"
        );
        // Another key in its place.
        SealKey::load_or_create(dir.path()).unwrap();
        let e = SealKey::for_store(&store, dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::KeyMismatch { .. }), "{e}");
        std::fs::remove_file(&path).unwrap();
        fleet_secret::owner_only::write(
            &path,
            &original,
            fleet_secret::owner_only::Existing::Refuse,
        )
        .unwrap();
        assert!(
            SealKey::for_store(&store, dir.path()).is_ok(),
            "the original restored"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = SealKey::for_store(&store, dir.path()).unwrap_err();
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        // A store sealed before the check value existed: its own key passes, another fails.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SealKey::load_or_create(dir.path()).unwrap();
        store
            .set_secret(&key, "cloud.client_secret", &Secret::new("s"))
            .unwrap();
        assert!(SealKey::for_store(&store, dir.path()).is_ok());
        let dir2 = tempfile::tempdir().unwrap();
        let store2 = Store::open(dir2.path()).unwrap();
        store2
            .set_secret(&key, "cloud.client_secret", &Secret::new("s"))
            .unwrap();
        SealKey::load_or_create(dir2.path()).unwrap();
        assert!(SealKey::for_store(&store2, dir2.path()).is_err());
    }
}
