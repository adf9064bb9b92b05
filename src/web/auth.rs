//! Who may use the local page: the agent password (argon2id, stored as a PHC string),
//! sessions in memory (a random id in an HttpOnly, SameSite=Strict cookie, each with its
//! own CSRF token, capped in number), and a login limiter with growing waits (all loopback
//! peers count as one source, other hosts by address).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// The session cookie's name.
pub const COOKIE: &str = "fleet_session";
/// A session unused this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Sessions held at most; past it the least recently used anonymous session goes first,
/// so cookie-less requests cannot grow memory nor push out a logged-in admin.
pub const MAX_SESSIONS: usize = 256;
/// Wrong passwords allowed from one source before it has to wait.
pub const LOGIN_FAILURES: u32 = 5;
/// The first wait; each further wrong password doubles it, up to [`LOGIN_MAX_WAIT`].
pub const LOGIN_FIRST_WAIT: Duration = Duration::from_secs(30);
/// The longest wait between two guesses.
pub const LOGIN_MAX_WAIT: Duration = Duration::from_secs(3600);
/// A source's count is forgotten after this long without a wrong password.
pub const LOGIN_FORGET: Duration = Duration::from_secs(3600);
/// Sources tracked one by one; past it, new sources share one count (blocked sources are
/// never pushed out to make room).
pub const LOGIN_SOURCES: usize = 4096;
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
    logins: Mutex<Logins>,
}

/// Where wrong passwords are counted: every loopback peer is one source (a local user can
/// pick any of 127/8), another host is counted by its address (an IPv6 host by its /64),
/// and past [`LOGIN_SOURCES`] the newcomers share one count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// Any peer on this machine.
    Loopback,
    /// Another host (IPv6: the /64 network).
    Host(IpAddr),
    /// Sources beyond the table's size.
    Overflow,
}

impl Source {
    /// The source a peer address counts under (the table decides about overflow).
    pub fn of(peer: IpAddr) -> Source {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        match peer {
            ip if ip.is_loopback() => Source::Loopback,
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Source::Host(IpAddr::V6(std::net::Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
            v4 => Source::Host(v4),
        }
    }
}

#[derive(Default)]
struct Logins {
    by_source: HashMap<Source, Attempts>,
}

#[derive(Clone, Copy)]
struct Attempts {
    /// Wrong (or still unanswered) passwords since the count was last forgotten.
    failures: u32,
    /// The latest attempt.
    last: Instant,
    /// No attempt is checked before this.
    blocked_until: Option<Instant>,
}

impl Logins {
    fn key(&mut self, peer: IpAddr, now: Instant) -> Source {
        let source = Source::of(peer);
        if self.by_source.contains_key(&source) || self.by_source.len() < LOGIN_SOURCES {
            return source;
        }
        self.by_source
            .retain(|_, a| !a.expired(now) || a.blocked_until.is_some_and(|b| b > now));
        if self.by_source.len() < LOGIN_SOURCES {
            source
        } else {
            Source::Overflow
        }
    }
}

impl Attempts {
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= LOGIN_FORGET
            && self.blocked_until.is_none_or(|b| b <= now)
    }
}

/// The wait after `failures` wrong passwords: none up to [`LOGIN_FAILURES`], then
/// [`LOGIN_FIRST_WAIT`] doubling at each one up to [`LOGIN_MAX_WAIT`].
pub fn login_wait(failures: u32) -> Duration {
    match failures.checked_sub(LOGIN_FAILURES) {
        None => Duration::ZERO,
        Some(extra) => LOGIN_FIRST_WAIT
            .checked_mul(1u32 << extra.min(16))
            .map_or(LOGIN_MAX_WAIT, |w| w.min(LOGIN_MAX_WAIT)),
    }
}

impl Sessions {
    /// The session behind a cookie value, refreshed, if it is still valid (one lookup;
    /// expired sessions are swept when sessions are created).
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut m = self.by_id.lock();
        let now = Instant::now();
        let s = m.get_mut(id)?;
        if now.saturating_duration_since(s.last_used) >= SESSION_IDLE {
            m.remove(id);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    /// Starts a session; returns its id (the cookie value). At [`MAX_SESSIONS`] the expired
    /// ones are swept, then the least recently used anonymous one (or, when every session
    /// is logged in, the least recently used) makes room.
    pub fn create(&self, authenticated: bool) -> (String, Session) {
        let id = fleet_secret::random_token(4);
        let now = Instant::now();
        let s = Session {
            csrf: fleet_secret::random_token(4),
            authenticated,
            last_used: now,
        };
        let mut m = self.by_id.lock();
        if m.len() >= MAX_SESSIONS {
            m.retain(|_, s| now.saturating_duration_since(s.last_used) < SESSION_IDLE);
        }
        if m.len() >= MAX_SESSIONS {
            let victim = m
                .iter()
                .min_by_key(|(_, s)| (s.authenticated, s.last_used))
                .map(|(k, _)| k.clone());
            if let Some(v) = victim {
                m.remove(&v);
            }
        }
        m.insert(id.clone(), s.clone());
        (id, s)
    }

    /// How many sessions are held.
    pub fn len(&self) -> usize {
        self.by_id.lock().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// Starts a password check from `peer`: counted as a wrong password until
    /// [`Sessions::login_succeeded`] says otherwise, so guesses sent in parallel cannot
    /// all slip in before the first is judged.
    ///
    /// # Errors
    /// How long the peer's source must wait before its next guess.
    pub fn login_attempt(&self, peer: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut l = self.logins.lock();
        let key = l.key(peer, now);
        let a = l.by_source.entry(key).or_insert(Attempts {
            failures: 0,
            last: now,
            blocked_until: None,
        });
        if a.expired(now) {
            a.failures = 0;
        }
        if let Some(until) = a.blocked_until.filter(|u| *u > now) {
            return Err(until - now);
        }
        a.failures = a.failures.saturating_add(1);
        a.last = now;
        let wait = login_wait(a.failures);
        a.blocked_until = (!wait.is_zero()).then(|| now + wait);
        Ok(())
    }

    /// Forgets the failures of `peer`'s source (the right password was given).
    pub fn login_succeeded(&self, peer: IpAddr) {
        let mut l = self.logins.lock();
        let key = Source::of(peer);
        l.by_source.remove(&key);
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
    async fn wrong_passwords_make_their_source_wait_longer_and_longer() {
        let s = Sessions::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..LOGIN_FAILURES - 1 {
            s.login_attempt(a).unwrap();
        }
        // The fifth wrong password starts the first wait.
        s.login_attempt(a).unwrap();
        let wait = s.login_attempt(a).unwrap_err();
        assert_eq!(wait, LOGIN_FIRST_WAIT);
        assert!(s.login_attempt(b).is_ok(), "another host is not blocked");
        tokio::time::advance(LOGIN_FIRST_WAIT).await;
        s.login_attempt(a).unwrap();
        assert_eq!(s.login_attempt(a).unwrap_err(), LOGIN_FIRST_WAIT * 2);
        tokio::time::advance(LOGIN_FIRST_WAIT * 2).await;
        s.login_attempt(a).unwrap();
        assert_eq!(s.login_attempt(a).unwrap_err(), LOGIN_FIRST_WAIT * 4);
        assert_eq!(login_wait(40), LOGIN_MAX_WAIT);
        assert_eq!(login_wait(u32::MAX), LOGIN_MAX_WAIT);
        // Blocked while waiting even for the right password; the right one then clears it.
        tokio::time::advance(LOGIN_FIRST_WAIT * 4).await;
        s.login_attempt(a).unwrap();
        s.login_succeeded(a);
        for _ in 0..LOGIN_FAILURES {
            s.login_attempt(a).unwrap();
        }
        assert!(s.login_attempt(a).is_err());
        // Forgotten after an hour without guesses.
        tokio::time::advance(LOGIN_FORGET + LOGIN_MAX_WAIT).await;
        assert!(s.login_attempt(a).is_ok());
    }

    /// The finding: 200 guesses from 40 other 127/8 addresses went unthrottled.
    #[tokio::test(start_paused = true)]
    async fn every_loopback_address_shares_one_count() {
        let s = Sessions::default();
        let mut refused = 0;
        for i in 0..200u32 {
            let peer = IpAddr::from([127, 0, (i / 40) as u8, (i % 40 + 1) as u8]);
            if s.login_attempt(peer).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 200 - LOGIN_FAILURES as usize);
        assert!(s.login_attempt("::1".parse().unwrap()).is_err());
        assert!(
            s.login_attempt("::ffff:127.9.9.9".parse().unwrap())
                .is_err()
        );
        // One IPv6 host cannot rotate through its /64.
        for i in 0..LOGIN_FAILURES {
            let peer = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            s.login_attempt(peer).unwrap();
        }
        assert!(
            s.login_attempt("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_err()
        );
        assert!(s.login_attempt("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn many_sources_share_one_count_past_the_table_size() {
        let s = Sessions::default();
        for i in 0..LOGIN_SOURCES as u32 {
            s.login_attempt(IpAddr::from((0x0a00_0000 + i).to_be_bytes()))
                .unwrap();
        }
        // Newcomers now count together: five of them use up the shared allowance.
        for i in 0..LOGIN_FAILURES {
            s.login_attempt(IpAddr::from((0x0b00_0000 + i).to_be_bytes()))
                .unwrap();
        }
        assert!(s.login_attempt("11.9.9.9".parse().unwrap()).is_err());
        assert!(s.logins.lock().by_source.len() <= LOGIN_SOURCES + 1);
    }

    /// The finding: every cookie-less request made a session (1.2 million took 355 MB).
    #[tokio::test(start_paused = true)]
    async fn the_session_table_is_capped_and_keeps_logged_in_sessions() {
        let s = Sessions::default();
        let (admin, _) = s.create(true);
        for _ in 0..10 * MAX_SESSIONS {
            s.create(false);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&admin).is_some(), "anonymous sessions went first");
        let (last, _) = s.create(false);
        assert!(s.get(&last).is_some(), "the newest stays");
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
