//! The real SNMP client: one UDP socket per address family shared by every target,
//! replies routed by request-id/msgID, per-attempt timeouts with retries, late and
//! stray replies dropped and counted, SNMPv3 engine discovery and one time resync.

use super::message::{
    self, MsgData, Pdu, PduType, ScopedPdu, UsmParams, V3Out, Version, decode_community,
    encode_community, encode_v3, flags, parse_v3, peek_correlation_id,
};
use super::usm::{self, LocalizedKeys};
use super::{Request, Security, SnmpClient, SnmpError, Target, UsmUser};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// Largest datagram we accept and advertise (IPv4 UDP payload limit).
const MAX_DATAGRAM: usize = 65_507;

/// Counters of what the client saw, for diagnostics and benchmarks.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientStats {
    /// Datagrams sent (retries included).
    pub sent: u64,
    /// Datagrams received and routed to a waiting request.
    pub received: u64,
    /// Datagrams dropped: late replies after a retry was answered, unknown ids, wrong source.
    pub stale: u64,
    /// Attempts that timed out.
    pub timeouts: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    stale: AtomicU64,
    timeouts: AtomicU64,
}

struct Pending {
    from: SocketAddr,
    tx: oneshot::Sender<Vec<u8>>,
}

/// SNMPv3 state learned from one authoritative engine (per agent address, whatever the
/// user: keys are localized per user and engine in [`UsmUser::keys_for`]).
#[derive(Clone)]
struct EngineState {
    engine_id: Vec<u8>,
    boots: u32,
    time: u32,
    learned_at: Instant,
}

impl EngineState {
    fn clock(&self) -> (u32, u32) {
        let elapsed = self.learned_at.elapsed().as_secs();
        let t = u64::from(self.time)
            .saturating_add(elapsed)
            .min(i32::MAX as u64) as u32;
        (self.boots, t)
    }
}

struct Shared {
    sock4: UdpSocket,
    sock6: Option<UdpSocket>,
    pending: Mutex<HashMap<i32, Pending>>,
    next_id: AtomicU32,
    salt: AtomicU64,
    engines: Mutex<HashMap<SocketAddr, EngineState>>,
    counters: Counters,
    /// Addresses that sent a datagram with no readable request id while a request to
    /// them was pending: their timeout is reported as a malformed reply, not as silence.
    garbled: Mutex<std::collections::HashSet<SocketAddr>>,
}

/// Addresses remembered in [`Shared::garbled`] at most.
const MAX_GARBLED: usize = 4096;

fn unparsable(target: &Target) -> SnmpError {
    SnmpError::Malformed {
        target: target.addr,
        source: super::ber::BerError {
            offset: 0,
            reason: "the reply is not an SNMP message (no request id can be read)",
        },
    }
}

struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// Each exchange uses its own connected socket (discovery sweeps: ICMP port
    /// unreachable then surfaces as `Unreachable` instead of a timeout).
    connected: bool,
    /// Minimum spacing between two datagrams (politeness), with the next free slot.
    pacing: Option<(Duration, Mutex<Instant>)>,
    _tasks: Tasks,
}

/// The real SNMP client. Cheap to clone; all clones share the sockets.
#[derive(Clone)]
pub struct UdpClient {
    inner: Arc<Inner>,
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // A burst of replies from hundreds of printers must not overflow the default buffer.
    s.set_recv_buffer_size(4 << 20).ok();
    s.set_send_buffer_size(1 << 20).ok();
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

impl UdpClient {
    /// Creates a client bound to ephemeral ports on all addresses (IPv6 when available).
    ///
    /// # Errors
    /// Fails when no IPv4 UDP socket can be created.
    pub fn new() -> std::io::Result<Self> {
        Self::bind_to(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// Creates a client whose IPv4 socket is bound to `local` (tests use a loopback address).
    ///
    /// # Errors
    /// Fails when the socket cannot be bound.
    pub fn bind_to(local: IpAddr) -> std::io::Result<Self> {
        let sock4 = bind(SocketAddr::new(local, 0))?;
        let sock6 = bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)).ok();
        let seed = fastrand::u32(1..0x4000_0000);
        let shared = Arc::new(Shared {
            sock4,
            sock6,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(seed),
            salt: AtomicU64::new(fastrand::u64(..)),
            engines: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            garbled: Mutex::new(std::collections::HashSet::new()),
        });
        let mut tasks = vec![tokio::spawn(receive_loop(shared.clone(), false))];
        if shared.sock6.is_some() {
            tasks.push(tokio::spawn(receive_loop(shared.clone(), true)));
        }
        Ok(UdpClient {
            inner: Arc::new(Inner {
                shared,
                connected: false,
                pacing: None,
                _tasks: Tasks(tasks),
            }),
        })
    }

    /// Creates a client whose every exchange uses its own connected socket, so an ICMP
    /// port-unreachable answer is reported as [`SnmpError::Unreachable`] at once. Meant
    /// for discovery sweeps, where most addresses never answer; replies of any size.
    ///
    /// # Errors
    /// Fails when no IPv4 UDP socket can be created.
    pub fn connected() -> std::io::Result<Self> {
        Self::new()?.with(true, None)
    }

    /// Limits this client to `packets_per_second` datagrams (every send, retries
    /// included); `None` or 0 means no limit. Must be called before the client is cloned.
    ///
    /// # Errors
    /// When the client was already cloned.
    pub fn with_rate_limit(self, packets_per_second: Option<f64>) -> std::io::Result<Self> {
        let connected = self.inner.connected;
        self.with(connected, packets_per_second)
    }

    fn with(self, connected: bool, pps: Option<f64>) -> std::io::Result<Self> {
        let inner = Arc::try_unwrap(self.inner)
            .map_err(|_| std::io::Error::other("the client is already shared"))?;
        let pacing = pps.filter(|r| r.is_finite() && *r > 0.0).map(|r| {
            (
                Duration::from_nanos((1e9 / r) as u64),
                Mutex::new(Instant::now()),
            )
        });
        Ok(UdpClient {
            inner: Arc::new(Inner {
                connected,
                pacing: pacing.or(inner.pacing),
                ..inner
            }),
        })
    }

    /// Waits for the next send slot when a rate limit is set.
    async fn pace(&self) {
        let Some((gap, next)) = &self.inner.pacing else {
            return;
        };
        let slot = {
            let mut n = next.lock();
            let now = Instant::now();
            let slot = (*n).max(now);
            *n = slot + *gap;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Returns the counters so far.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.shared.counters;
        ClientStats {
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
        }
    }

    /// The SNMPv3 authoritative engine ID learned for `addr`, if any.
    pub fn engine_id(&self, addr: SocketAddr) -> Option<Vec<u8>> {
        self.inner
            .shared
            .engines
            .lock()
            .get(&normalize(addr))
            .map(|s| s.engine_id.clone())
    }

    /// Forgets learned SNMPv3 engine state for `addr` (e.g. after a device swap).
    pub fn forget_engine(&self, addr: SocketAddr) {
        {
            let mut e = self.inner.shared.engines.lock();
            e.remove(&normalize(addr));
        }
    }

    fn next_id(&self) -> i32 {
        // Positive, non-zero, wrapping inside i32 range.
        let v = self.inner.shared.next_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        if v == 0 { 1 } else { v as i32 }
    }

    async fn exchange(
        &self,
        target: &Target,
        id: i32,
        bytes: &[u8],
        hint: &'static str,
    ) -> Result<Vec<u8>, SnmpError> {
        if self.inner.connected {
            return self.exchange_connected(target, id, bytes, hint).await;
        }
        let shared = &self.inner.shared;
        let addr = normalize(target.addr);
        let sock = match addr {
            SocketAddr::V4(_) => &shared.sock4,
            SocketAddr::V6(_) => shared.sock6.as_ref().ok_or_else(|| SnmpError::Io {
                target: target.addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "IPv6 is not available on this host",
                ),
            })?,
        };
        let (tx, mut rx) = oneshot::channel();
        {
            let mut p = shared.pending.lock();
            p.insert(id, Pending { from: addr, tx });
        }
        shared.garbled.lock().remove(&addr);
        // Removes the entry if this future is dropped or times out.
        struct Unregister<'a>(&'a Shared, i32);
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                {
                    let mut p = self.0.pending.lock();
                    p.remove(&self.1);
                }
            }
        }
        let _guard = Unregister(shared, id);
        let attempts = target.retries + 1;
        for _ in 0..attempts {
            self.pace().await;
            if let Err(e) = sock.send_to(bytes, addr).await {
                return Err(SnmpError::Io {
                    target: target.addr,
                    source: e,
                });
            }
            shared.counters.sent.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(target.timeout, &mut rx).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(_)) => break,
                Err(_) => {
                    shared.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if shared.garbled.lock().remove(&addr) {
            return Err(unparsable(target));
        }
        Err(SnmpError::Timeout {
            target: target.addr,
            attempts,
            timeout: target.timeout,
            hint,
        })
    }

    async fn exchange_connected(
        &self,
        target: &Target,
        id: i32,
        bytes: &[u8],
        hint: &'static str,
    ) -> Result<Vec<u8>, SnmpError> {
        let counters = &self.inner.shared.counters;
        let addr = normalize(target.addr);
        let io = |source: std::io::Error| SnmpError::Io {
            target: target.addr,
            source,
        };
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await.map_err(io)?;
        sock.connect(addr).await.map_err(io)?;
        let attempts = target.retries + 1;
        let mut garbled = false;
        for _ in 0..attempts {
            self.pace().await;
            match sock.send(bytes).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(SnmpError::Unreachable {
                        target: target.addr,
                    });
                }
                Err(e) => return Err(io(e)),
            }
            counters.sent.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + target.timeout;
            loop {
                match tokio::time::timeout_at(deadline, recv_whole(&sock)).await {
                    Ok(Ok(datagram)) => {
                        match peek_correlation_id(&datagram) {
                            Some(got) if got == id => {
                                counters.received.fetch_add(1, Ordering::Relaxed);
                                return Ok(datagram);
                            }
                            Some(_) => {}
                            None => garbled = true,
                        }
                        counters.stale.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        return Err(SnmpError::Unreachable {
                            target: target.addr,
                        });
                    }
                    Ok(Err(e)) => return Err(io(e)),
                    Err(_) => {
                        counters.timeouts.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        if garbled {
            return Err(unparsable(target));
        }
        Err(SnmpError::Timeout {
            target: target.addr,
            attempts,
            timeout: target.timeout,
            hint,
        })
    }

    async fn request_community(
        &self,
        target: &Target,
        version: Version,
        community: &[u8],
        req: Request,
    ) -> Result<Pdu, SnmpError> {
        let id = self.next_id();
        let pdu = to_pdu(id, req);
        let bytes = encode_community(version, community, &pdu);
        let reply = self.exchange(target, id, &bytes, "").await?;
        let msg = decode_community(&reply).map_err(|source| SnmpError::Malformed {
            target: target.addr,
            source,
        })?;
        check_response(target, id, msg.pdu)
    }

    async fn engine(&self, target: &Target) -> Result<EngineState, SnmpError> {
        let key = normalize(target.addr);
        if let Some(s) = self.inner.shared.engines.lock().get(&key) {
            return Ok(s.clone());
        }
        // Engine discovery (RFC 3414 §4): an unauthenticated, empty GET with no user.
        let id = self.next_id();
        let scoped = ScopedPdu {
            context_engine_id: Vec::new(),
            context_name: Vec::new(),
            pdu: Pdu {
                kind: PduType::Get,
                request_id: id,
                error_status: 0,
                error_index: 0,
                varbinds: Vec::new(),
            },
        };
        let usm = UsmParams::default();
        let bytes = encode_v3(&V3Out {
            msg_id: id,
            max_size: MAX_DATAGRAM as i32,
            reportable: true,
            usm: &usm,
            keys: None,
            auth: false,
            privacy: false,
            salt: 0,
            scoped: &scoped,
        });
        let reply = self.exchange(target, id, &bytes, "").await?;
        let parsed = parse_v3(&reply).map_err(|source| SnmpError::Malformed {
            target: target.addr,
            source,
        })?;
        if parsed.usm.engine_id.is_empty() {
            return Err(SnmpError::EngineDiscovery {
                target: target.addr,
                reason: "the report carried no engine ID".into(),
            });
        }
        let state = EngineState {
            engine_id: parsed.usm.engine_id.clone(),
            boots: parsed.usm.boots,
            time: parsed.usm.time,
            learned_at: Instant::now(),
        };
        self.inner.shared.engines.lock().insert(key, state.clone());
        Ok(state)
    }

    fn update_engine(&self, target: &Target, f: impl FnOnce(&mut EngineState)) {
        let key = normalize(target.addr);
        if let Some(s) = self.inner.shared.engines.lock().get_mut(&key) {
            f(s);
        }
    }

    async fn request_usm(
        &self,
        target: &Target,
        user: &UsmUser,
        req: Request,
    ) -> Result<Pdu, SnmpError> {
        let mut resynced = false;
        let mut rediscovered = false;
        let want_auth = user.auth.is_some();
        let want_priv = user.privacy.is_some();
        let hint = if want_priv {
            " (with SNMPv3 authPriv a wrong privacy pass phrase also looks like this)"
        } else {
            ""
        };
        loop {
            let state = self.engine(target).await?;
            if let Some(pin) = user.engine_pin.as_ref().filter(|p| **p != state.engine_id) {
                return Err(SnmpError::EngineChanged {
                    target: target.addr,
                    expected: crate::value::hex(pin),
                    found: crate::value::hex(&state.engine_id),
                });
            }
            let keys: Arc<LocalizedKeys> = user.keys_for(&state.engine_id);
            let (boots, time) = state.clock();
            let id = self.next_id();
            let scoped = ScopedPdu {
                context_engine_id: state.engine_id.clone(),
                context_name: user.context.as_bytes().to_vec(),
                pdu: to_pdu(id, req.clone()),
            };
            let usm = UsmParams {
                engine_id: state.engine_id.clone(),
                boots,
                time,
                user: user.name.as_bytes().to_vec(),
            };
            let salt = self.inner.shared.salt.fetch_add(1, Ordering::Relaxed);
            let bytes = encode_v3(&V3Out {
                msg_id: id,
                max_size: MAX_DATAGRAM as i32,
                reportable: true,
                usm: &usm,
                keys: Some(&keys),
                auth: want_auth,
                privacy: want_priv,
                salt,
                scoped: &scoped,
            });
            let reply = self.exchange(target, id, &bytes, hint).await?;
            let parsed = parse_v3(&reply).map_err(|source| SnmpError::Malformed {
                target: target.addr,
                source,
            })?;
            let authenticated = parsed.flags & flags::AUTH != 0;
            if authenticated {
                let Some((proto, key)) = keys.auth.as_ref() else {
                    return Err(SnmpError::BadResponse {
                        target: target.addr,
                        what: "authentication (agent signed, we have no key)",
                    });
                };
                if !message::verify_auth(&reply, &parsed, *proto, key) {
                    return Err(SnmpError::BadResponse {
                        target: target.addr,
                        what: "authentication",
                    });
                }
            }
            let scoped_bytes;
            let scoped = match parsed.data {
                MsgData::Plain(p) => ScopedPdu::decode(p),
                MsgData::Encrypted(c) => {
                    let Some((proto, key)) = keys.privacy.as_ref() else {
                        return Err(SnmpError::BadResponse {
                            target: target.addr,
                            what: "decryption (agent encrypted, we have no key)",
                        });
                    };
                    scoped_bytes = usm::decrypt(
                        *proto,
                        key,
                        parsed.usm.boots,
                        parsed.usm.time,
                        parsed.priv_params,
                        c,
                    )
                    .map_err(|_| SnmpError::BadResponse {
                        target: target.addr,
                        what: "decryption",
                    })?;
                    ScopedPdu::decode(&scoped_bytes)
                }
            }
            .map_err(|source| SnmpError::Malformed {
                target: target.addr,
                source,
            })?;
            if scoped.pdu.kind == PduType::Report {
                let oid = scoped
                    .pdu
                    .varbinds
                    .first()
                    .map(|v| v.oid.arcs().to_vec())
                    .unwrap_or_default();
                let usm_stat = |s: &[u32]| oid.as_slice() == s;
                if usm_stat(usm::stats::NOT_IN_TIME_WINDOWS) {
                    if resynced {
                        return Err(SnmpError::NotInTimeWindow {
                            target: target.addr,
                        });
                    }
                    resynced = true;
                    let (b, t) = (parsed.usm.boots, parsed.usm.time);
                    self.update_engine(target, |s| {
                        s.boots = b;
                        s.time = t;
                        s.learned_at = Instant::now();
                    });
                    continue;
                }
                if usm_stat(usm::stats::UNKNOWN_ENGINE_IDS) {
                    if rediscovered {
                        return Err(SnmpError::EngineDiscovery {
                            target: target.addr,
                            reason: "the agent still reports an unknown engine ID".into(),
                        });
                    }
                    rediscovered = true;
                    self.forget_engine(target.addr);
                    continue;
                }
                let t = target.addr;
                return Err(if usm_stat(usm::stats::UNKNOWN_USER_NAMES) {
                    SnmpError::UnknownUser {
                        target: t,
                        user: user.name.clone(),
                    }
                } else if usm_stat(usm::stats::WRONG_DIGESTS) {
                    SnmpError::WrongDigest { target: t }
                } else if usm_stat(usm::stats::DECRYPTION_ERRORS) {
                    SnmpError::DecryptionError { target: t }
                } else if usm_stat(usm::stats::UNSUPPORTED_SEC_LEVELS) {
                    SnmpError::UnsupportedSecLevel { target: t }
                } else {
                    SnmpError::EngineDiscovery {
                        target: t,
                        reason: format!(
                            "unexpected report {}",
                            scoped
                                .pdu
                                .varbinds
                                .first()
                                .map(|v| v.oid.to_string())
                                .unwrap_or_default()
                        ),
                    }
                });
            }
            if want_auth && !authenticated {
                return Err(SnmpError::BadResponse {
                    target: target.addr,
                    what: "authentication (response was not signed)",
                });
            }
            if authenticated {
                let (b, t) = (parsed.usm.boots, parsed.usm.time);
                self.update_engine(target, |s| {
                    s.boots = b;
                    s.time = t;
                    s.learned_at = Instant::now();
                });
            }
            return check_response(target, id, scoped.pdu);
        }
    }
}

fn to_pdu(id: i32, req: Request) -> Pdu {
    let (es, ei) = if req.kind == PduType::GetBulk {
        (
            i32::try_from(req.non_repeaters).unwrap_or(i32::MAX),
            i32::try_from(req.max_repetitions).unwrap_or(i32::MAX),
        )
    } else {
        (0, 0)
    };
    Pdu {
        kind: req.kind,
        request_id: id,
        error_status: es,
        error_index: ei,
        varbinds: req.varbinds,
    }
}

fn check_response(target: &Target, id: i32, pdu: Pdu) -> Result<Pdu, SnmpError> {
    if pdu.kind != PduType::Response || pdu.request_id != id {
        return Err(SnmpError::Malformed {
            target: target.addr,
            source: super::ber::BerError {
                offset: 0,
                reason: "reply is not a Response to our request",
            },
        });
    }
    Ok(pdu)
}

/// Receives one datagram whole (up to the UDP maximum): a reply cut at a smaller buffer
/// would look like no answer at all. The buffer is reserved, not zeroed, so the pages a
/// small reply does not touch never become resident (discovery runs hundreds of these
/// at once).
async fn recv_whole(sock: &UdpSocket) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(MAX_DATAGRAM + 1);
    sock.recv_buf(&mut buf).await?;
    Ok(buf)
}

/// Maps IPv4-mapped IPv6 addresses to plain IPv4 so replies match what was sent.
fn normalize(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

async fn receive_loop(shared: Arc<Shared>, v6: bool) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let sock = if v6 {
            shared.sock6.as_ref().expect("v6 loop without v6 socket")
        } else {
            &shared.sock4
        };
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors surface here on some platforms; they carry no request id.
                tracing::trace!(error = %e, "SNMP socket receive error.");
                continue;
            }
        };
        let data = &buf[..n];
        let from = normalize(from);
        let Some(id) = peek_correlation_id(data) else {
            shared.counters.stale.fetch_add(1, Ordering::Relaxed);
            // Only for an address we are waiting for, and bounded: noise from anywhere
            // else must not grow the set.
            let waited = shared.pending.lock().values().any(|w| w.from == from);
            let mut g = shared.garbled.lock();
            if waited && g.len() < MAX_GARBLED {
                g.insert(from);
            }
            continue;
        };
        let waiter = {
            let mut p = shared.pending.lock();
            match p.get(&id) {
                Some(w) if w.from == from => p.remove(&id),
                _ => None,
            }
        };
        match waiter {
            Some(w) => {
                shared.counters.received.fetch_add(1, Ordering::Relaxed);
                w.tx.send(data.to_vec()).ok();
            }
            None => {
                shared.counters.stale.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl SnmpClient for UdpClient {
    async fn request(&self, target: &Target, request: Request) -> Result<Pdu, SnmpError> {
        match &target.security {
            Security::Community { version, community } => {
                self.request_community(target, *version, community.expose().as_bytes(), request)
                    .await
            }
            Security::Usm(user) => self.request_usm(target, user, request).await,
        }
    }
}
