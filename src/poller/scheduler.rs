//! The `poller` component: polls every managed printer at the refresh interval with
//! start-up jitter, a per-printer deadline below the interval, a global cap on printers
//! in flight and skip-missed-ticks semantics; unreachable printers back off (capped,
//! jittered, exponential) and recover at once when sighted. Results and change events go
//! to the store in batches.

use super::integrity::{self, Memory};
use super::{Reader, Reading};
use crate::config::PollerConfig;
use crate::store::{Event, Health, PollRecord, Store};
use crate::telemetry::Metrics;
use fleet_snmp::quirks::Quirks;
use fleet_snmp::{SnmpClient, Target};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};

/// A printer the poller manages.
#[derive(Clone, Debug)]
pub struct Managed {
    /// How to reach it.
    pub target: Target,
    /// Its store row id.
    pub printer_id: i64,
}

/// What happened to one poll, for observers (tests, the CLI, later the UI).
#[derive(Clone, Debug)]
pub struct Observed {
    /// Printer address.
    pub addr: SocketAddr,
    /// When the poll started (tokio clock).
    pub started: Instant,
    /// `None` on success, else the failure code (`timeout`, `deadline`, ...).
    pub failure: Option<String>,
    /// Health after the poll.
    pub health: Health,
    /// Events the poll produced.
    pub events: Vec<&'static str>,
    /// When the next poll of this printer is due.
    pub next_due: Instant,
}

/// Control messages to a running poller.
#[derive(Debug)]
enum Control {
    Sighted(SocketAddr),
    /// A printer, with the quirks discovery learned for it and when.
    Add(Box<Managed>, Option<(Quirks, i64)>),
    Refresh(Option<SocketAddr>, oneshot::Sender<Vec<Refreshed>>),
    Target(SocketAddr, oneshot::Sender<Option<Target>>),
    Remove(SocketAddr, oneshot::Sender<bool>),
    Security(SocketAddr, fleet_snmp::Security),
    Flush(oneshot::Sender<()>),
}

/// The outcome of one printer's on-demand refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refreshed {
    /// Printer address.
    pub addr: SocketAddr,
    /// Store id.
    pub printer_id: i64,
    /// Serial number, when the poll read one.
    pub serial: Option<String>,
    /// Why the poll failed (`None`: it succeeded).
    pub failure: Option<String>,
}

/// A refresh waiting for its printers' polls.
struct Waiter {
    /// Slot → the first poll (by start count) that answers the refresh: one that starts
    /// after the request, never one already running.
    waiting: std::collections::HashMap<usize, u64>,
    got: Vec<Refreshed>,
    tx: oneshot::Sender<Vec<Refreshed>>,
}

/// A handle to a running poller.
#[derive(Clone)]
pub struct PollerHandle {
    tx: mpsc::UnboundedSender<Control>,
}

impl PollerHandle {
    /// Reports that `addr` was seen alive (mDNS announcement, discovery hit): a printer
    /// that is backing off is polled at once.
    pub fn sighted(&self, addr: SocketAddr) {
        self.tx.send(Control::Sighted(addr)).ok();
    }

    /// Starts managing a printer (found by discovery); it is polled at once. A printer
    /// already managed at that address is left as it is.
    pub fn add(&self, printer: Managed) {
        self.tx.send(Control::Add(Box::new(printer), None)).ok();
    }

    /// As [`PollerHandle::add`], with the quirks discovery learned at `learned_ms` (stored by
    /// the caller), so the first poll asks the way that works.
    pub fn add_with_quirks(&self, printer: Managed, quirks: Quirks, learned_ms: i64) {
        let q = (!quirks.is_empty()).then_some((quirks, learned_ms));
        self.tx.send(Control::Add(Box::new(printer), q)).ok();
    }

    /// Polls one printer (`Some(addr)`) or every managed printer now, outside the
    /// schedule; each successful reading is uploaded as a snapshot (the seed's "refresh").
    /// Resolves with every printer's outcome once all polls finished (empty when no
    /// printer matches; an error when the poller stopped first).
    pub fn refresh(&self, addr: Option<SocketAddr>) -> oneshot::Receiver<Vec<Refreshed>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Control::Refresh(addr, tx)).ok();
        rx
    }

    /// The SNMP target (address, credentials, patience) the poller uses for a printer.
    pub async fn target(&self, addr: SocketAddr) -> Option<Target> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Control::Target(addr, tx)).ok();
        rx.await.ok().flatten()
    }

    /// Uses other credentials for a printer from its next poll on.
    pub fn set_security(&self, addr: SocketAddr, security: fleet_snmp::Security) {
        self.tx.send(Control::Security(addr, security)).ok();
    }

    /// Writes the readings the poller holds to the store now (they are batched for up to
    /// half a second, while the uploader gets them at once); resolves once written, or
    /// at once when the poller stopped.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Control::Flush(tx)).ok();
        rx.await.ok();
    }

    /// Stops polling a printer (unenroll); false when it was not managed.
    pub async fn remove(&self, addr: SocketAddr) -> bool {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Control::Remove(addr, tx)).ok();
        rx.await.unwrap_or(false)
    }
}

struct Slot {
    target: Target,
    id: i64,
    health: Health,
    failures: u32,
    in_flight: bool,
    due: Instant,
    memory: Memory,
    /// Next cheap status check (when status checks are on).
    status_due: Option<Instant>,
    checking: bool,
    /// The current or next poll was asked for (its reading is uploaded as a snapshot).
    on_demand: bool,
    /// Unenrolled: skipped by every schedule.
    removed: bool,
    /// Polls started so far.
    started: u64,
    /// Content hash of the report last handed to the store (times left out): an equal
    /// report is not written again.
    stored: Option<u64>,
    /// How its agent must be asked (learned, remembered in the store).
    quirks: Quirks,
    /// When `quirks` were learned or last re-probed (epoch ms).
    quirks_at: i64,
    /// The running poll asks the plain way again, to see whether the quirks still hold.
    reprobing: bool,
    /// What a poll that then failed (or missed its deadline) had learned: the next poll
    /// starts from it instead of paying the same probes again, and the next successful
    /// one remembers it.
    partial: Option<Quirks>,
    /// Firmware version of the last reading (a new firmware gets its quirks re-probed).
    firmware: Option<String>,
    /// sysObjectID of the last reading: its vendor's subtrees are asked with the rest
    /// of the poll instead of in a second step.
    vendor: Option<fleet_snmp::Oid>,
}

/// Error codes (`SnmpError::code`) by which a printer that answers refuses the agent's
/// credentials.
const CREDENTIAL_REFUSALS: [&str; 5] = [
    "unknownUser",
    "wrongDigest",
    "decryptionError",
    "unsupportedSecLevel",
    // Another device took the address of the one its credentials were set for.
    "engineChanged",
];

/// How often a printer with quirks is asked the plain way again (a fixed firmware gets
/// the fast path back; a quirk still there costs its probes once more).
pub const REPROBE_QUIRKS: Duration = Duration::from_secs(24 * 3600);

/// Hashes a report without the values that move with the clock alone (`collectedAt`,
/// `uptimeSeconds`, `lastBootAt`, alerts' `raisedAt`, set aside for the hash and put back): two polls that
/// read the same values hash alike. The report is serialised straight into the hasher,
/// so an unchanged poll builds no JSON text at all.
pub fn content_hash(report: &mut crate::printer::PrinterReport) -> u64 {
    use std::hash::Hasher;
    struct Hashing(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for Hashing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.write(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let clock = (
        std::mem::take(&mut report.collected_at),
        report.device.uptime_seconds.take(),
        report.device.last_boot_at.take(),
    );
    // An alert's raisedAt is worked out from the clock and the uptime: it moves too.
    let raised: Vec<Option<i64>> = report
        .alerts
        .iter_mut()
        .map(|a| a.ext.raised_at.take())
        .collect();
    // serde_json writes token by token; SipHash pays a setup per write, so whole blocks
    // are handed over (the unbuffered hash was 7 % of the agent's CPU under `perf`).
    let mut h = std::io::BufWriter::with_capacity(
        8192,
        Hashing(std::collections::hash_map::DefaultHasher::new()),
    );
    serde_json::to_writer(&mut h, &*report).ok();
    std::io::Write::flush(&mut h).ok();
    for (a, r) in report.alerts.iter_mut().zip(raised) {
        a.ext.raised_at = r;
    }
    (
        report.collected_at,
        report.device.uptime_seconds,
        report.device.last_boot_at,
    ) = clock;
    h.get_ref().0.finish()
}

impl Slot {
    fn new(m: Managed, due: Instant) -> Slot {
        Slot {
            due,
            target: m.target,
            id: m.printer_id,
            health: Health::Unknown,
            failures: 0,
            in_flight: false,
            memory: Memory::default(),
            stored: None,
            status_due: None,
            checking: false,
            on_demand: false,
            removed: false,
            started: 0,
            quirks: Quirks::default(),
            quirks_at: 0,
            reprobing: false,
            partial: None,
            firmware: None,
            vendor: None,
        }
    }
}

/// Columns of the cheap status check: device and printer status, error bits, supply
/// levels and the alert table's identity columns (one or two round trips).
fn status_columns() -> Vec<fleet_snmp::Oid> {
    use crate::printer::oids::*;
    [
        HR_DEVICE_TYPE,
        HR_DEVICE_STATUS,
        HR_PRINTER_STATUS,
        HR_PRINTER_ERROR_STATE,
        PRT_SUPPLIES_MAX_CAPACITY,
        PRT_SUPPLIES_LEVEL,
        PRT_ALERT_SEVERITY,
        PRT_ALERT_GROUP,
        PRT_ALERT_GROUP_INDEX,
        PRT_ALERT_CODE,
        PRT_ALERT_LOCATION,
    ]
    .iter()
    .map(|o| fleet_snmp::Oid::from_slice(o))
    .collect()
}

/// Runs one status check: `Some(true)` when alerts or supply levels differ from `memory`.
async fn status_check<C: SnmpClient>(
    client: &C,
    target: &Target,
    memory: &Memory,
    library: &crate::printer::library::Library,
) -> Option<bool> {
    let c = fleet_snmp::walk::collect(
        client,
        target,
        &[],
        &status_columns(),
        fleet_snmp::walk::Budget::POLL,
    )
    .await
    .ok()?;
    let partial = crate::printer::decode(&crate::printer::Collected {
        values: &c.values,
        ip: None,
        collected_at: 0,
        version: None,
        library,
    });
    let now = Memory::of(&partial);
    let levels = |m: &Memory| m.supplies.iter().map(|x| (x.0, x.2)).collect::<Vec<_>>();
    let mut a = now.alerts.clone();
    let mut b = memory.alerts.clone();
    a.sort_unstable();
    b.sort_unstable();
    Some(levels(&now) != levels(memory) || a != b)
}

/// The scheduled poller.
pub struct Poller<C> {
    client: C,
    cfg: PollerConfig,
    slots: Vec<Slot>,
    store: Option<Store>,
    metrics: Arc<Metrics>,
    rx: mpsc::UnboundedReceiver<Control>,
    observer: Option<mpsc::UnboundedSender<Observed>>,
    /// Successful readings for the uploader (bounded: a full queue drops a reading, and
    /// the next poll's decision covers it).
    readings: Option<mpsc::Sender<Reading>>,
    /// Reads printers with the support library in use and stamps them with the clock.
    reader: Reader,
    rng: fastrand::Rng,
    spread: bool,
    refreshes: Vec<Waiter>,
    /// Printers a job's command holds: their polls are put off.
    locks: super::PrinterLocks,
}

/// How long a poll of a printer a command holds is put off before it is tried again.
const PUT_OFF: Duration = Duration::from_secs(2);

/// Deterministic start-up offset in `[0, interval)` from the address, so printers are
/// spread over the interval and keep their phase across restarts.
pub fn startup_offset(addr: SocketAddr, interval: Duration) -> Duration {
    let h = addr
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let frac = (h % 1_000_000) as f64 / 1_000_000.0;
    interval.mul_f64(frac)
}

/// How a printer that stopped answering is retried: the interval doubled per extra
/// failure, capped at `poller.backoff_max_secs`, jittered by ±10 %.
pub fn backoff(cfg: &PollerConfig) -> crate::retry::Backoff {
    crate::retry::Backoff {
        base: cfg.interval,
        cap: cfg.backoff_max,
        jitter: 0.1,
    }
}

impl<C: SnmpClient + Clone> Poller<C> {
    /// Creates a poller for `printers`. With `store`, results and events are written to it.
    pub fn new(
        client: C,
        cfg: PollerConfig,
        printers: Vec<Managed>,
        store: Option<Store>,
        metrics: Arc<Metrics>,
    ) -> (Self, PollerHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let slots = printers.into_iter().map(|m| Slot::new(m, now)).collect();
        (
            Poller {
                client,
                cfg,
                slots,
                store,
                metrics,
                rx,
                observer: None,
                readings: None,
                reader: Reader::default(),
                rng: fastrand::Rng::new(),
                spread: true,
                refreshes: Vec::new(),
                locks: super::PrinterLocks::default(),
            },
            PollerHandle { tx },
        )
    }

    /// Sends every poll outcome to `tx` as well.
    pub fn observe(mut self, tx: mpsc::UnboundedSender<Observed>) -> Self {
        self.observer = Some(tx);
        self
    }

    /// Hands every successful reading to the uploader through `tx`.
    pub fn with_readings(mut self, tx: mpsc::Sender<Reading>) -> Self {
        self.readings = Some(tx);
        self
    }

    /// Reads with this support library and clock (default: the built-in library and the
    /// system clock).
    pub fn with_reader(mut self, reader: Reader) -> Self {
        self.reader = reader;
        self
    }

    /// Polls every printer at start instead of spreading them over the interval
    /// (benchmarks measure the raw cycle time this way).
    pub fn without_startup_spread(mut self) -> Self {
        self.spread = false;
        self
    }

    /// Shares the printers' locks with the jobs that write to them.
    pub fn with_locks(mut self, locks: super::PrinterLocks) -> Self {
        self.locks = locks;
        self
    }

    /// Seeds the backoff jitter (tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    fn health_counts(&self) {
        let mut c = [0i64; 5];
        for s in self.slots.iter().filter(|s| !s.removed) {
            c[match s.health {
                Health::Ok => 0,
                Health::Suspect => 1,
                Health::NotCommunicating => 2,
                Health::Unknown => 3,
                Health::NeedsCredentials => 4,
            }] += 1;
        }
        self.metrics.set_health_counts(&[
            ("ok", c[0]),
            ("suspect", c[1]),
            ("not_communicating", c[2]),
            ("unknown", c[3]),
            ("needs_credentials", c[4]),
        ]);
    }

    /// Runs until `shutdown` completes; pending store writes are flushed before return.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let start = Instant::now();
        let mut heap: BinaryHeap<Reverse<(Instant, usize)>> =
            BinaryHeap::with_capacity(self.slots.len());
        let status_every = self.cfg.status_interval;
        let mut status_heap: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            s.due = if self.spread {
                start + startup_offset(s.target.addr, self.cfg.interval)
            } else {
                start
            };
            heap.push(Reverse((s.due, i)));
            if let Some(every) = status_every {
                let t = s.due + every;
                s.status_due = Some(t);
                status_heap.push(Reverse((t, i)));
            }
        }
        let mut checks: JoinSet<(usize, Option<bool>)> = JoinSet::new();
        self.load_quirks().await;
        self.health_counts();
        // Due printers wait here (not as spawned tasks) until a slot in the cap frees up,
        // so memory stays bounded by max_in_flight even when thousands are due at once.
        let mut ready: VecDeque<usize> = VecDeque::new();
        let cap = self.cfg.max_in_flight.max(1);
        let mut running: JoinSet<Finished> = JoinSet::new();
        let mut batch: Vec<PollRecord> = Vec::new();
        let mut flush = tokio::time::interval(Duration::from_millis(500));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tracing::info!(
            printers = self.slots.len(),
            interval_secs = self.cfg.interval.as_secs(),
            "Poller started."
        );
        loop {
            let next = heap.peek().map(|Reverse((t, _))| *t);
            let next_status = status_heap.peek().map(|Reverse((t, _))| *t);
            tokio::select! {
                _ = &mut shutdown => break,
                Some(c) = self.rx.recv() => match c {
                    Control::Sighted(addr) => {
                        let now = Instant::now();
                        for (i, s) in self.slots.iter_mut().enumerate() {
                            if s.target.addr == addr && !s.in_flight && s.health != Health::Ok && s.due > now {
                                s.due = now;
                                heap.push(Reverse((now, i)));
                            }
                        }
                    }
                    Control::Security(addr, security) => {
                        for s in self.slots.iter_mut().filter(|s| s.target.addr == addr) {
                            s.target.security = security.clone();
                        }
                    }
                    Control::Flush(tx) => {
                        if !batch.is_empty() {
                            self.write(&mut batch).await;
                        }
                        tx.send(()).ok();
                    }
                    Control::Target(addr, tx) => {
                        // Jobs ask the way the printer's agent bears (v1, fewer repetitions).
                        let t = self.slots.iter().find(|s| s.target.addr == addr && !s.removed).map(|s| s.quirks.target(&s.target));
                        tx.send(t).ok();
                    }
                    Control::Remove(addr, tx) => {
                        let mut found = false;
                        for (i, s) in self.slots.iter_mut().enumerate().filter(|(_, s)| s.target.addr == addr && !s.removed) {
                            // The slot stays (indexes in the heaps), marked: never polled again.
                            s.removed = true;
                            found = true;
                            for w in &mut self.refreshes {
                                w.waiting.remove(&i);
                            }
                        }
                        if found {
                            self.health_counts();
                            self.flush_refreshes();
                        }
                        tx.send(found).ok();
                    }
                    Control::Refresh(addr, tx) => {
                        let now = Instant::now();
                        let mut waiting = std::collections::HashMap::new();
                        for (i, s) in self.slots.iter_mut().enumerate() {
                            if s.removed || addr.is_some_and(|a| a != s.target.addr) {
                                continue;
                            }
                            s.on_demand = true;
                            waiting.insert(i, s.started + 1);
                            // A poll already running does not answer: the next one is
                            // scheduled when it finishes (see refresh_done).
                            if !s.in_flight {
                                s.due = now;
                                heap.push(Reverse((now, i)));
                            }
                        }
                        if waiting.is_empty() {
                            tx.send(Vec::new()).ok();
                        } else {
                            self.refreshes.push(Waiter { waiting, got: Vec::new(), tx });
                        }
                    }
                    Control::Add(m, learned) => {
                        if let Some(i) = self.slots.iter().position(|s| s.target.addr == m.target.addr && s.removed) {
                            // Unenrolled or moved away, then found again by discovery:
                            // managed again, as what is there now (its row, its target).
                            let now = Instant::now();
                            let in_flight = self.slots[i].in_flight;
                            self.slots[i] = Slot::new(*m, now);
                            self.slots[i].in_flight = in_flight;
                            if let Some((q, at)) = learned {
                                self.slots[i].quirks = q.bounded();
                                self.slots[i].quirks_at = at;
                            }
                            heap.push(Reverse((now, i)));
                            self.health_counts();
                        } else if !self.slots.iter().any(|s| s.target.addr == m.target.addr) {
                            let now = Instant::now();
                            self.slots.push(Slot::new(*m, now));
                            let i = self.slots.len() - 1;
                            if let Some((q, at)) = learned {
                                self.slots[i].quirks = q.bounded();
                                self.slots[i].quirks_at = at;
                            }
                            heap.push(Reverse((now, i)));
                            if let Some(every) = status_every {
                                self.slots[i].status_due = Some(now + every);
                                status_heap.push(Reverse((now + every, i)));
                            }
                            self.health_counts();
                        }
                    }
                },
                Some(done) = running.join_next(), if !running.is_empty() => {
                    if let Ok((i, started, result, took, learned)) = done {
                        if let Some(rec) = self.finish(i, started, (result, learned), took, &mut heap) {
                            self.refresh_done(i, &rec, &mut heap);
                            if batch.is_empty() {
                                // Records wait at most one period; an idle poller keeps
                                // no timer running (no wake-ups twice a second).
                                flush.reset();
                            }
                            batch.push(rec);
                        }
                        self.launch(&mut ready, &mut running, cap, &mut heap);
                        if batch.len() >= 512 {
                            self.write(&mut batch).await;
                        }
                    }
                },
                Some(done) = checks.join_next(), if !checks.is_empty() => {
                    if let Ok((i, changed)) = done {
                        let now = Instant::now();
                        let s = &mut self.slots[i];
                        s.checking = false;
                        if changed == Some(true) && !s.in_flight && s.due > now {
                            // An alert or a supply level changed: read everything now.
                            s.due = now;
                            heap.push(Reverse((now, i)));
                        }
                        if let Some(every) = status_every {
                            let t = now + every;
                            s.status_due = Some(t);
                            status_heap.push(Reverse((t, i)));
                        }
                    }
                },
                _ = sleep_until_opt(next_status) => {
                    let now = Instant::now();
                    while let Some(Reverse((t, i))) = status_heap.peek().copied() {
                        if t > now {
                            break;
                        }
                        status_heap.pop();
                        let s = &mut self.slots[i];
                        if s.status_due != Some(t) || s.checking || s.removed {
                            continue;
                        }
                        // Sick printers, those about to get a full poll and those a command
                        // holds are not checked.
                        let held = self.locks.try_hold(s.target.addr);
                        if s.in_flight || s.health != Health::Ok || running.len() + checks.len() >= cap || held.is_none() {
                            if let Some(every) = status_every {
                                let t = now + every;
                                s.status_due = Some(t);
                                status_heap.push(Reverse((t, i)));
                            }
                            continue;
                        }
                        s.checking = true;
                        let (client, target, memory) = (self.client.clone(), s.target.clone(), s.memory.clone());
                        let (deadline, library) = (self.cfg.deadline, self.reader.library.current());
                        checks.spawn(async move {
                            let _held = held;
                            let r = tokio::time::timeout(deadline, status_check(&client, &target, &memory, &library)).await.ok().flatten();
                            (i, r)
                        });
                    }
                },
                _ = flush.tick(), if !batch.is_empty() => {
                    self.write(&mut batch).await;
                },
                _ = sleep_until_opt(next) => {
                    let now = Instant::now();
                    while let Some(Reverse((t, i))) = heap.peek().copied() {
                        if t > now {
                            break;
                        }
                        heap.pop();
                        let s = &mut self.slots[i];
                        // Stale heap entries (rescheduled since) and printers still being
                        // polled are skipped: a slow cycle never piles up.
                        if s.due != t || s.in_flight || s.removed {
                            continue;
                        }
                        s.in_flight = true;
                        ready.push_back(i);
                    }
                    self.launch(&mut ready, &mut running, cap, &mut heap);
                },
            }
        }
        running.abort_all();
        checks.abort_all();
        while running.join_next().await.is_some() {}
        while checks.join_next().await.is_some() {}
        if !batch.is_empty() {
            self.write(&mut batch).await;
        }
        tracing::info!("Poller stopped.");
    }

    /// Gives each printer the agent quirks the store remembers for it.
    async fn load_quirks(&mut self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let rows = match tokio::task::spawn_blocking(move || store.printer_quirks()).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Could not read the printers' remembered quirks; they are learned again.");
                return;
            }
            Err(_) => return,
        };
        let by_id: HashMap<i64, usize> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        for row in rows {
            let Some(&i) = by_id.get(&row.printer_id) else {
                continue;
            };
            match crate::store::read_quirks(&row.quirks) {
                Ok(q) => {
                    self.slots[i].quirks = q;
                    self.slots[i].quirks_at = row.learned_ms;
                }
                // Learned again at the next poll.
                Err(e) => {
                    tracing::warn!(printer = %self.slots[i].target.addr, error = %e, "Remembered quirks unreadable; ignored.")
                }
            }
        }
    }

    /// Starts polls from `ready` while fewer than `cap` are running.
    fn launch(
        &mut self,
        ready: &mut VecDeque<usize>,
        running: &mut JoinSet<Finished>,
        cap: usize,
        heap: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    ) {
        let now_ms = self.reader.clock.now_ms();
        while running.len() < cap {
            let Some(i) = ready.pop_front() else { break };
            let s = &mut self.slots[i];
            let Some(held) = self.locks.try_hold(s.target.addr) else {
                // A command is writing to it: polled once it is done, not failed.
                s.in_flight = false;
                s.due = Instant::now() + PUT_OFF;
                heap.push(Reverse((s.due, i)));
                continue;
            };
            s.started += 1;
            s.reprobing = !s.quirks.is_empty()
                && now_ms.saturating_sub(s.quirks_at) >= REPROBE_QUIRKS.as_millis() as i64;
            let quirks = match &s.partial {
                Some(p) if !s.reprobing => p.clone(),
                _ if s.reprobing => Quirks::default(),
                _ => s.quirks.clone(),
            };
            let (client, target, deadline, reader, vendor) = (
                self.client.clone(),
                s.target.clone(),
                self.cfg.deadline,
                self.reader.clone(),
                s.vendor.clone(),
            );
            let metrics = self.metrics.clone();
            running.spawn(async move {
                let _held = held;
                let started = Instant::now();
                metrics.polls.inc();
                metrics.polls_in_flight.inc();
                let mut known = quirks.clone();
                let read = reader.read_hinted(&client, &target, &mut known, vendor.as_ref());
                let r = match tokio::time::timeout(deadline, read).await {
                    Ok(Ok(ok)) => Ok(ok),
                    Ok(Err(e)) => Err(format!("{}|{e}", e.snmp().map_or("empty", |s| s.code()))),
                    Err(_) => Err(format!(
                        "deadline|printer {}: no complete answer within the {} s deadline",
                        target.addr,
                        deadline.as_secs()
                    )),
                };
                metrics.polls_in_flight.dec();
                let learned = (r.is_err() && known != quirks).then_some(known);
                (i, started, r, started.elapsed(), learned)
            });
        }
    }

    /// Hands a finished poll to the refreshes waiting for it.
    fn refresh_done(
        &mut self,
        i: usize,
        rec: &PollRecord,
        heap: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    ) {
        if self.refreshes.is_empty() {
            return;
        }
        self.slots[i].on_demand = false;
        let generation = self.slots[i].started;
        let mut again = false;
        let outcome = Refreshed {
            addr: self.slots[i].target.addr,
            printer_id: rec.printer_id,
            serial: rec.success.as_ref().and_then(|s| s.serial.clone()),
            failure: rec.reason.clone(),
        };
        for w in &mut self.refreshes {
            match w.waiting.get(&i) {
                Some(&need) if need <= generation => {
                    w.waiting.remove(&i);
                    w.got.push(outcome.clone());
                }
                Some(_) => again = true,
                None => {}
            }
        }
        if again {
            // Asked for while this poll ran: poll again now.
            let now = Instant::now();
            let s = &mut self.slots[i];
            s.on_demand = true;
            s.due = now;
            heap.push(Reverse((now, i)));
        }
        self.flush_refreshes();
    }

    /// Answers the refreshes no longer waiting for any printer.
    fn flush_refreshes(&mut self) {
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.refreshes)
            .into_iter()
            .partition(|w| w.waiting.is_empty());
        self.refreshes = wait;
        for w in done {
            w.tx.send(w.got).ok();
        }
    }

    async fn write(&self, batch: &mut Vec<PollRecord>) {
        let Some(store) = self.store.clone() else {
            batch.clear();
            return;
        };
        let records = std::mem::take(batch);
        let n = records.len();
        match tokio::task::spawn_blocking(move || store.save_polls(&records)).await {
            Ok(Ok(())) => tracing::debug!(records = n, "Poll results stored."),
            Ok(Err(e)) => {
                self.metrics.store_errors.inc();
                tracing::error!(error = %e, records = n, "Could not store poll results.");
            }
            Err(e) => tracing::error!(error = %e, "Store writer task failed."),
        }
    }

    fn finish(
        &mut self,
        i: usize,
        started: Instant,
        (result, learned): (
            Result<(crate::printer::PrinterReport, super::PollStats), String>,
            Option<Quirks>,
        ),
        took: Duration,
        heap: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    ) -> Option<PollRecord> {
        self.metrics.poll_duration.observe(took.as_secs_f64());
        let now = Instant::now();
        let cfg = &self.cfg;
        let s = &mut self.slots[i];
        s.in_flight = false;
        let before = s.health;
        let mut events: Vec<Event> = Vec::new();
        let at_ms = self.reader.clock.now_ms();
        let (record, failure) = match result {
            Ok((report, stats)) => {
                self.metrics.snmp_requests.inc_by(u64::from(stats.requests));
                self.metrics.snmp_probes.inc_by(u64::from(stats.probes));
                s.failures = 0;
                s.health = Health::Ok;
                events.extend(integrity::compare(
                    &s.memory,
                    &report,
                    cfg.max_pages_per_minute,
                ));
                s.memory = Memory::after(&s.memory, &report);
                let mut quirks_changed = None;
                let reprobed = std::mem::take(&mut s.reprobing);
                let had_partial = s.partial.take().is_some();
                if stats.learned || reprobed || had_partial {
                    let q = report.device.quirks.clone().unwrap_or_default();
                    if q != s.quirks {
                        tracing::debug!(printer = %s.target.addr, quirks = %q, "Agent quirks learned.");
                        events.push(Event {
                            kind: "quirksLearned",
                            detail: serde_json::json!({
                                "quirks": q.to_string(),
                                "unavailable": report.device.unavailable.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            }),
                        });
                    }
                    quirks_changed = Some(
                        (!q.is_empty()).then(|| serde_json::to_string(&q).unwrap_or_default()),
                    );
                    s.quirks = q;
                    s.quirks_at = at_ms;
                }
                s.vendor = report
                    .device
                    .sys_object_id
                    .as_deref()
                    .and_then(|o| o.parse().ok());
                if let Some(fw) = &report.device.firmware_version
                    && s.firmware.as_ref() != Some(fw)
                {
                    if s.firmware.is_some() && !s.quirks.is_empty() {
                        // New firmware: ask the plain way at the next poll.
                        s.quirks_at = 0;
                    }
                    s.firmware = Some(fw.clone());
                }
                // Skip missed ticks: the next due time stays on the printer's phase.
                let mut next = s.due + cfg.interval;
                while next <= now {
                    next += cfg.interval;
                }
                s.due = next;
                let mut report = report;
                let hash = content_hash(&mut report);
                let changed = s.stored != Some(hash);
                s.stored = Some(hash);
                // An unenrolled printer's last poll is stored but not uploaded.
                if let Some(tx) = self.readings.as_ref().filter(|_| !s.removed)
                    && tx
                        .try_send(Reading {
                            printer_id: s.id,
                            report: report.clone(),
                            on_demand: std::mem::take(&mut s.on_demand),
                        })
                        .is_err()
                {
                    tracing::warn!(printer = %s.target.addr, "Upload queue full; this reading waits for the next poll.");
                }
                (
                    PollRecord {
                        printer_id: s.id,
                        at_ms,
                        health: Health::Ok,
                        reason: None,
                        failures: 0,
                        success: Some(crate::store::Success {
                            serial: report.serial_number.clone(),
                            manufacturer: report.manufacturer.clone(),
                            model: report.model_name.clone(),
                            report: changed
                                .then(|| serde_json::to_string(&report).unwrap_or_default()),
                            quirks: quirks_changed,
                            point: changed.then(|| trend_point(&report)),
                        }),
                        events: Vec::new(),
                    },
                    None,
                )
            }
            Err(msg) => {
                // The next poll asks without the vendor's subtrees: if they made this
                // one fail, the reading comes back (they then fail apart, in the second
                // step, which keeps the reading).
                s.vendor = None;
                if std::mem::take(&mut s.reprobing) {
                    // The plain way failed: back to the known quirks, asked again in a day.
                    s.quirks_at = at_ms;
                } else if let Some(q) = learned {
                    tracing::debug!(printer = %s.target.addr, quirks = %q, "Agent quirks learned by a poll that failed; the next poll starts from them.");
                    s.partial = Some(q);
                }
                let (code, text) = msg.split_once('|').unwrap_or(("error", msg.as_str()));
                s.failures = s.failures.saturating_add(1);
                s.health = if CREDENTIAL_REFUSALS.contains(&code) {
                    // Asking again will not help; the admin must update the credentials.
                    Health::NeedsCredentials
                } else if s.failures >= cfg.not_communicating_after {
                    Health::NotCommunicating
                } else {
                    Health::Suspect
                };
                s.due = now + backoff(cfg).delay(s.failures, &mut self.rng);
                self.metrics.poll_failed(code);
                tracing::debug!(printer = %s.target.addr, error = %text, failures = s.failures, "Poll failed.");
                (
                    PollRecord {
                        printer_id: s.id,
                        at_ms,
                        health: s.health,
                        reason: Some(text.to_string()),
                        failures: s.failures,
                        success: None,
                        events: Vec::new(),
                    },
                    Some(code.to_string()),
                )
            }
        };
        if before != s.health {
            events.push(Event {
                kind: "healthChanged",
                detail: serde_json::json!({"from": before.as_str(), "to": s.health.as_str(), "reason": record.reason}),
            });
            if s.health == Health::NotCommunicating {
                tracing::warn!(printer = %s.target.addr, reason = record.reason.as_deref().unwrap_or(""), "Printer not communicating.");
            } else if s.health == Health::NeedsCredentials {
                tracing::warn!(printer = %s.target.addr, reason = record.reason.as_deref().unwrap_or(""), "Printer refuses the agent's credentials; update them.");
            }
        }
        heap.push(Reverse((s.due, i)));
        for e in &events {
            self.metrics.event(e.kind);
        }
        let health = s.health;
        let (addr, due) = (s.target.addr, s.due);
        // The gauges move only when a health does (a count over every printer per poll
        // would make a cycle quadratic in the fleet).
        if before != health {
            self.health_counts();
        }
        if let Some(tx) = &self.observer {
            tx.send(Observed {
                addr,
                started,
                failure,
                health,
                events: events.iter().map(|e| e.kind).collect(),
                next_due: due,
            })
            .ok();
        }
        let mut record = record;
        record.events = events;
        Some(record)
    }
}

#[cfg(test)]
mod tests;

/// A finished poll: slot, start, outcome (report or `code|message`), duration, and the
/// quirks a failed poll learned.
type Finished = (
    usize,
    Instant,
    Result<(crate::printer::PrinterReport, super::PollStats), String>,
    Duration,
    Option<Quirks>,
);

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The day's trend point of a reading: its page count and each supply's level (left, or
/// filled for a waste receptacle).
fn trend_point(r: &crate::printer::PrinterReport) -> crate::store::Point {
    crate::store::Point {
        pages: r.counters.lifetime_count,
        levels: r
            .supplies
            .iter()
            .map(|s| {
                let level = match s.ext.prt_marker_supplies_class {
                    Some(4) => s.ext.percent_filled,
                    _ => s.percent_remaining,
                };
                (s.supply_key.clone(), level)
            })
            .collect(),
    }
}
