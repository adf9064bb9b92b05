//! Who may use the local page: the agent password (argon2id, stored as a PHC string),
//! sessions in memory (a random id in an HttpOnly, SameSite=Strict cookie, each with its
//! own CSRF token), and a per-peer limit on failed logins.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// The session cookie's name.
pub const COOKIE: &str = "fleet_session";
/// A session unused this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Failed logins allowed per peer address within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES: usize = 5;
/// The window over which failed logins are counted.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(300);
/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// Hashes a password with argon2id and a random salt (PHC string).
///
/// # Errors
/// Only on an internal argon2 failure.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::PasswordHasher;
    let mut salt = [0u8; 16];
    fleet_secret::random_bytes(&mut salt);
    let salt = argon2::password_hash::SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a stored PHC string (false for a malformed one).
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::password_hash::PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Checks a new password's shape.
///
/// # Errors
/// The reason, for the page.
pub fn check_new_password(p: &str) -> Result<(), String> {
    if p.chars().count() < MIN_PASSWORD {
        return Err(format!(
            "the password needs at least {MIN_PASSWORD} characters"
        ));
    }
    if p.len() > 1024 {
        return Err("the password is longer than 1024 bytes".into());
    }
    Ok(())
}

/// One browser session.
#[derive(Clone)]
pub struct Session {
    /// Sent back in `X-CSRF-Token` on every state-changing request.
    pub csrf: String,
    /// Logged in with the agent password (always true when none is set).
    pub authenticated: bool,
    last_used: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

/// Sessions and login attempts, in memory (a restart logs everyone out).
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl Sessions {
    /// The session behind a cookie value, refreshed, if it is still valid.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut m = self.by_id.lock();
        let now = Instant::now();
        m.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE);
        let s = m.get_mut(id)?;
        s.last_used = now;
        Some(s.clone())
    }

    /// Starts a session; returns its id (the cookie value).
    pub fn create(&self, authenticated: bool) -> (String, Session) {
        let id = fleet_secret::random_token(4);
        let s = Session {
            csrf: fleet_secret::random_token(4),
            authenticated,
            last_used: Instant::now(),
        };
        self.by_id.lock().insert(id.clone(), s.clone());
        (id, s)
    }

    /// Marks a session as logged in (it just set the password).
    pub fn authenticate(&self, id: &str) {
        if let Some(s) = self.by_id.lock().get_mut(id) {
            s.authenticated = true;
        }
    }

    /// Ends one session.
    pub fn end(&self, id: &str) {
        self.by_id.lock().remove(id);
    }

    /// Ends every session but `keep` (after a password change).
    pub fn end_others(&self, keep: &str) {
        self.by_id.lock().retain(|k, _| k == keep);
    }

    /// How long `peer` must wait before trying again, when it failed too often.
    pub fn login_blocked(&self, peer: IpAddr) -> Option<Duration> {
        let mut m = self.failures.lock();
        let now = Instant::now();
        let v = m.entry(peer).or_default();
        v.retain(|t| now.duration_since(*t) < LOGIN_WINDOW);
        (v.len() >= LOGIN_FAILURES).then(|| LOGIN_WINDOW - now.duration_since(v[0]))
    }

    /// Records a failed login from `peer`.
    pub fn login_failed(&self, peer: IpAddr) {
        self.failures
            .lock()
            .entry(peer)
            .or_default()
            .push(Instant::now());
    }

    /// Forgets `peer`'s failures (after a successful login).
    pub fn login_succeeded(&self, peer: IpAddr) {
        self.failures.lock().remove(&peer);
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Compares two strings in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        // Salted: the same password hashes differently.
        assert_ne!(h, hash_password("correct horse").unwrap());
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_block_a_peer_for_the_window_only() {
        let s = Sessions::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..LOGIN_FAILURES {
            assert!(s.login_blocked(a).is_none());
            s.login_failed(a);
        }
        let wait = s.login_blocked(a).unwrap();
        assert!(wait <= LOGIN_WINDOW && wait > Duration::from_secs(290));
        assert!(s.login_blocked(b).is_none(), "another peer is not blocked");
        tokio::time::advance(LOGIN_WINDOW).await;
        assert!(s.login_blocked(a).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_when_idle_and_carry_their_own_csrf_token() {
        let s = Sessions::default();
        let (id, first) = s.create(false);
        let (id2, second) = s.create(true);
        assert_ne!(first.csrf, second.csrf);
        assert_eq!(id.len(), 64);
        assert!(!s.get(&id).unwrap().authenticated);
        tokio::time::advance(SESSION_IDLE / 2).await;
        assert!(s.get(&id).is_some(), "use refreshes it");
        tokio::time::advance(SESSION_IDLE / 2 + Duration::from_secs(1)).await;
        assert!(s.get(&id2).is_none(), "idle too long");
        assert!(s.get(&id).is_some());
        s.end_others(&id);
        s.end(&id);
        assert!(s.get(&id).is_none());
        assert_eq!(cookie("a=1; fleet_session=xyz; b=2", COOKIE), Some("xyz"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
