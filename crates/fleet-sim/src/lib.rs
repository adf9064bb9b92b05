//! Simulated printers served over real UDP (v1, v2c, v3): `.snmprec` recordings and
//! synthetic printers, either all on one port with community = recording name (as
//! snmpsim does), or as a fleet with one loopback address per printer.
//!
//! A lab tool (`fleet-lab simulate`), the demo's printers, and the test bed of the agent.
//!
//! # Modules
//! - this file: [`Simulator`] (sockets, routing by address and community, v3 engine),
//!   [`Printer`], [`Layout`], loading recordings.
//! - [`synth`]: synthetic printers whose counters advance and supplies fall with time.
//! - [`cli`]: the `simulate` command's arguments and what they start.
//! - [`hostile`]: printers whose agent misbehaves on purpose (huge values, endless or
//!   ever-longer OIDs, floods), for the agent's hardening tests.

pub mod cli;
pub mod hostile;
pub mod synth;

use fleet_snmp::agent::{self, Faults, MibStore, MibView, UsmAgent, V3Incoming, WritableView};
use fleet_snmp::message::{Version, decode_community, encode_community, peek_version};
use fleet_snmp::snmprec;
use fleet_snmp::{Oid, UsmUser};
use parking_lot::Mutex;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// Objects a simulated printer lets managers write (the agent's SET commands use them).
pub fn writable_objects() -> Vec<Oid> {
    [
        "1.3.6.1.2.1.1.4",
        "1.3.6.1.2.1.1.5",
        "1.3.6.1.2.1.1.6",
        "1.3.6.1.2.1.43.16.5.1.2",
        "1.3.6.1.2.1.43.5.1.1.3",
    ]
    .iter()
    .map(|s| s.parse().expect("static OID"))
    .collect()
}

/// One printer to serve.
pub struct Printer {
    /// Name: the recording's file stem, or `synth-<model>-<n>`.
    pub name: String,
    store: Box<dyn MibStore + Send>,
    /// How its agent misbehaves at the protocol level (`simulate --quirk`).
    faults: Faults,
    /// How its network misbehaves (`--quirk slow=`, `--quirk duplicate`).
    wire: Wire,
}

/// A printer whose answers come late, or twice (`simulate --quirk`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wire {
    /// Each answer waits a random time in this range (milliseconds).
    pub delay_ms: Option<(u64, u64)>,
    /// Each answer is sent again 50 ms later (a late duplicate).
    pub duplicate: bool,
}

impl Printer {
    /// A printer answering from a recording.
    pub fn recorded(name: impl Into<String>, view: Arc<MibView>) -> Self {
        Printer {
            name: name.into(),
            store: Box::new(WritableView::new(view, writable_objects())),
            faults: Faults::default(),
            wire: Wire::default(),
        }
    }

    /// A synthetic printer.
    pub fn synthetic(p: synth::SynthPrinter, name: impl Into<String>) -> Self {
        Printer {
            name: name.into(),
            store: Box::new(p),
            faults: Faults::default(),
            wire: Wire::default(),
        }
    }

    /// This printer with an agent that misbehaves as `mode` says.
    pub fn hostile(self, mode: hostile::Mode) -> Self {
        Printer {
            name: self.name,
            store: Box::new(hostile::Hostile::new(self.store, mode)),
            faults: self.faults,
            wire: self.wire,
        }
    }

    /// This printer with an agent that misbehaves at the protocol level as `faults` say
    /// (drops requests, breaks GETBULK, ...: issue 17's quirks).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// This printer with answers that come late or twice.
    pub fn with_wire(mut self, wire: Wire) -> Self {
        self.wire = wire;
        self
    }
}

/// Recordings loaded from a directory: (file stem, view) in name order.
pub type Loaded = Vec<(String, Arc<MibView>)>;

/// Loads every `*.snmprec` under `dir` (sorted by name). Bad lines are skipped; their
/// warnings are returned with the views.
///
/// # Errors
/// When the directory cannot be read or holds no recording.
pub fn load_dir(dir: &Path) -> std::io::Result<(Loaded, Vec<snmprec::Warning>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "snmprec"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no .snmprec files", dir.display()),
        ));
    }
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for f in files {
        let (pairs, w) = snmprec::read(&f)?;
        warnings.extend(w);
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((stem, Arc::new(MibView::new(pairs))));
    }
    Ok((out, warnings))
}

/// How printers are exposed.
pub enum Layout {
    /// All printers on one address; the v1/v2c community (or v3 context) picks the printer.
    SinglePort(SocketAddr),
    /// One address per printer, counting up from `start` (skipping .0 and .255), on `port`.
    Fleet {
        /// First address.
        start: Ipv4Addr,
        /// UDP port for every printer (161 by default).
        port: u16,
        /// Community accepted by every printer (besides its own name).
        community: String,
    },
}

struct Endpoint {
    /// Community / context name → printer slot.
    by_name: HashMap<Vec<u8>, usize>,
    /// Slot used when the community does not name a printer (fleet mode).
    default: Option<usize>,
    /// Communities accepted for `default`.
    accept: Vec<Vec<u8>>,
    silent: AtomicBool,
}

struct Shared {
    printers: Vec<Mutex<Printer>>,
    usm: Option<UsmAgent>,
    requests: AtomicU64,
}

/// A running simulator. Dropping it (or calling [`Simulator::stop`]) stops every socket.
pub struct Simulator {
    shared: Arc<Shared>,
    endpoints: Vec<(SocketAddr, Arc<Endpoint>)>,
    tasks: JoinSet<()>,
}

/// Where one printer answers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Served {
    /// Printer name.
    pub name: String,
    /// UDP address.
    pub addr: SocketAddr,
    /// Community that selects it.
    pub community: String,
}

fn next_ip(ip: Ipv4Addr) -> Ipv4Addr {
    let mut n = u32::from(ip).wrapping_add(1);
    while matches!(n & 0xff, 0 | 255) {
        n = n.wrapping_add(1);
    }
    Ipv4Addr::from(n)
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; 65_536]);
}

impl Simulator {
    /// Binds the sockets and starts serving `printers`.
    ///
    /// `v3_users` are accepted on every printer (context name selects the printer in
    /// single-port mode, like snmpsim).
    ///
    /// # Errors
    /// When a socket cannot be bound (port in use, too many open files).
    pub async fn start(
        printers: Vec<Printer>,
        layout: Layout,
        v3_users: Vec<Arc<UsmUser>>,
    ) -> std::io::Result<Simulator> {
        let usm = (!v3_users.is_empty()).then(|| {
            let mut engine_id = vec![0x80, 0x00, 0xfa, 0xfa, 0x04];
            engine_id.extend_from_slice(b"fleet-sim-");
            engine_id.extend_from_slice(&fastrand::u32(..).to_be_bytes());
            UsmAgent::new(engine_id, 1, v3_users)
        });
        Self::start_with_engine(printers, layout, usm).await
    }

    /// Like [`Simulator::start`] with a given SNMPv3 engine (fixed engine ID and boots,
    /// e.g. to simulate an agent reboot).
    ///
    /// # Errors
    /// When a socket cannot be bound.
    pub async fn start_with_engine(
        printers: Vec<Printer>,
        layout: Layout,
        usm: Option<UsmAgent>,
    ) -> std::io::Result<Simulator> {
        raise_fd_limit();
        let names: Vec<String> = printers.iter().map(|p| p.name.clone()).collect();
        let shared = Arc::new(Shared {
            printers: printers.into_iter().map(Mutex::new).collect(),
            usm,
            requests: AtomicU64::new(0),
        });
        let mut endpoints = Vec::new();
        match layout {
            Layout::SinglePort(addr) => {
                let sock = UdpSocket::bind(addr).await?;
                let local = sock.local_addr()?;
                let ep = Arc::new(Endpoint {
                    by_name: names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n.as_bytes().to_vec(), i))
                        .collect(),
                    // With a single printer, an SNMPv3 request without a context gets it.
                    default: (names.len() == 1).then_some(0),
                    accept: Vec::new(),
                    silent: AtomicBool::new(false),
                });
                endpoints.push((local, ep, sock));
            }
            Layout::Fleet {
                start,
                port,
                community,
            } => {
                let mut ip = start;
                for (i, n) in names.iter().enumerate() {
                    let addr = SocketAddr::new(IpAddr::V4(ip), port);
                    let sock = bind_reusable(addr).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("bind {addr} for printer {n}: {e}"))
                    })?;
                    let ep = Arc::new(Endpoint {
                        by_name: HashMap::from([(n.as_bytes().to_vec(), i)]),
                        default: Some(i),
                        accept: vec![community.as_bytes().to_vec()],
                        silent: AtomicBool::new(false),
                    });
                    endpoints.push((sock.local_addr()?, ep, sock));
                    ip = next_ip(ip);
                }
            }
        }
        let mut tasks = JoinSet::new();
        let mut eps = Vec::new();
        for (addr, ep, sock) in endpoints {
            tasks.spawn(serve(sock, ep.clone(), shared.clone()));
            eps.push((addr, ep));
        }
        Ok(Simulator {
            shared,
            endpoints: eps,
            tasks,
        })
    }

    /// Lists where each printer answers.
    pub fn served(&self) -> Vec<Served> {
        let mut out = Vec::new();
        for (addr, ep) in &self.endpoints {
            let mut names: Vec<(&Vec<u8>, &usize)> = ep.by_name.iter().collect();
            names.sort_by_key(|(_, i)| **i);
            for (n, i) in names {
                let name = self.shared.printers[*i].lock().name.clone();
                out.push(Served {
                    name,
                    addr: *addr,
                    community: String::from_utf8_lossy(ep.accept.first().unwrap_or(n)).into_owned(),
                });
            }
        }
        out
    }

    /// Returns the address of every endpoint, in printer order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.endpoints.iter().map(|(a, _)| *a).collect()
    }

    /// Makes the endpoint at `addr` drop every request (a printer that stops answering).
    pub fn set_silent(&self, addr: SocketAddr, silent: bool) -> bool {
        match self.endpoints.iter().find(|(a, _)| *a == addr) {
            Some((_, ep)) => {
                ep.silent.store(silent, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds a UDP socket with SO_REUSEADDR, so a catch-all socket on the same port can
/// coexist (the most specific address wins; used to simulate silent addresses).
pub fn bind_reusable(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Raises the open-files soft limit to the hard limit: a fleet uses one socket per printer.
/// (Windows has no such limit on sockets.)
fn raise_fd_limit() {
    #[cfg(unix)]
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < hard
    {
        rlimit::Resource::NOFILE.set(hard, hard).ok();
    }
}

async fn serve(sock: UdpSocket, ep: Arc<Endpoint>, shared: Arc<Shared>) {
    let sock = Arc::new(sock);
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        loop {
            let reply = BUF.with(|b| {
                let mut buf = b.borrow_mut();
                match sock.try_recv_from(&mut buf) {
                    Ok((n, from)) => Ok(handle(&buf[..n], &ep, &shared).map(|r| (r, from))),
                    Err(e) => Err(e),
                }
            });
            match reply {
                Ok(Some(((bytes, wire), to))) => {
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                    if wire == Wire::default() {
                        sock.try_send_to(&bytes, to).ok();
                    } else {
                        let sock = sock.clone();
                        tokio::spawn(async move {
                            if let Some((lo, hi)) = wire.delay_ms {
                                let ms = fastrand::u64(lo.min(hi)..=hi.max(lo));
                                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                            }
                            sock.send_to(&bytes, to).await.ok();
                            if wire.duplicate {
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                sock.send_to(&bytes, to).await.ok();
                            }
                        });
                    }
                }
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
    }
}

fn handle(bytes: &[u8], ep: &Endpoint, shared: &Shared) -> Option<(Vec<u8>, Wire)> {
    if ep.silent.load(Ordering::Relaxed) {
        return None;
    }
    match peek_version(bytes).ok()? {
        Version::V1 | Version::V2c => {
            let msg = decode_community(bytes).ok()?;
            let slot = match ep.by_name.get(&msg.community) {
                Some(i) => *i,
                None if ep.accept.contains(&msg.community) => ep.default?,
                // A wrong community is dropped silently, as real agents do.
                None => {
                    tracing::debug!(
                        community_len = msg.community.len(),
                        "Request with an unknown community dropped."
                    );
                    return None;
                }
            };
            let mut p = shared.printers[slot].lock();
            let p = &mut *p;
            let resp = agent::respond_with_faults(
                p.store.as_mut(),
                msg.version,
                &msg.pdu,
                65_507,
                &p.faults,
            )?;
            Some((encode_community(msg.version, &msg.community, &resp), p.wire))
        }
        Version::V3 => {
            let usm = shared.usm.as_ref()?;
            match usm.incoming(bytes) {
                V3Incoming::Drop => None,
                V3Incoming::Reply(r) => Some((r, Wire::default())),
                V3Incoming::Request(req) => {
                    let slot = match ep.by_name.get(&req.context_name).copied().or(ep.default) {
                        Some(i) => i,
                        None => {
                            tracing::debug!(context = %String::from_utf8_lossy(&req.context_name), "SNMPv3 request for an unknown context dropped.");
                            return None;
                        }
                    };
                    let mut guard = shared.printers[slot].lock();
                    let p = &mut *guard;
                    let resp = agent::respond_with_faults(
                        p.store.as_mut(),
                        Version::V3,
                        &req.pdu,
                        req.max_size(),
                        &p.faults,
                    )?;
                    let wire = p.wire;
                    drop(guard);
                    Some((usm.encode_response(&req, &resp), wire))
                }
            }
        }
    }
}

/// Builds `n` synthetic printers cycling through the built-in models.
pub fn synthetic_fleet(n: usize, params: synth::SynthParams) -> Vec<Printer> {
    let templates: Vec<Arc<synth::Template>> =
        synth::MODELS.iter().map(synth::Template::new).collect();
    (0..n)
        .map(|i| {
            let t = templates[i % templates.len()].clone();
            let name = format!("synth-{}-{:05}", t.model().code.to_lowercase(), i + 1);
            Printer::synthetic(synth::SynthPrinter::new(t, i as u32 + 1, params), name)
        })
        .collect()
}
