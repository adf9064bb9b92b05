//! The agent's own metrics (Prometheus text format at `/metrics`) and log setup.

use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Labels = Vec<(String, String)>;

/// Metrics the components update. Names follow Prometheus conventions (`_total` for
/// counters, base units, `fleet_agent_` prefix).
pub struct Metrics {
    registry: Registry,
    /// Managed printers by health (`ok`, `suspect`, `not_communicating`, `needs_credentials`, `unknown`).
    pub printers: Family<Labels, Gauge>,
    /// Polls started.
    pub polls: Counter,
    /// Failed polls by reason code (`timeout`, `wrongDigest`, `deadline`, ...).
    pub poll_failures: Family<Labels, Counter>,
    /// Duration of one printer's poll, seconds.
    pub poll_duration: Histogram,
    /// Polls in flight.
    pub polls_in_flight: Gauge,
    /// SNMP requests answered in successful polls.
    pub snmp_requests: Counter,
    /// SNMP requests sent in successful polls to learn how an agent must be asked.
    pub snmp_probes: Counter,
    /// Events recorded by kind (counter resets, supply replacements, ...).
    pub events: Family<Labels, Counter>,
    /// Store write failures.
    pub store_errors: Counter,
    /// Addresses finished in the current (or last) discovery run.
    pub discovery_done: Gauge,
    /// Addresses to try in the current (or last) discovery run.
    pub discovery_total: Gauge,
    /// Printers found by the current (or last) discovery run.
    pub discovery_found: Gauge,
    /// Discovery runs completed.
    pub discovery_runs: Counter,
    /// Messages waiting in the outbox.
    pub outbox_messages: Gauge,
    /// Bytes waiting in the outbox.
    pub outbox_bytes: Gauge,
    /// Messages queued for upload, by kind (snapshot, delta).
    pub uploads_queued: Family<Labels, Counter>,
    /// Messages the cloud acknowledged.
    pub uploads_acked: Counter,
    /// Upload requests sent (one carries up to a batch of messages).
    pub upload_requests: Counter,
    /// Upload bodies as JSON, before compression, bytes.
    pub upload_json_bytes: Counter,
    /// Upload bodies as sent on the wire (gzip when the cloud takes it), bytes.
    pub upload_body_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fleet_agent");
        let printers = Family::<Labels, Gauge>::default();
        registry.register(
            "printers",
            "Managed printers by health state",
            printers.clone(),
        );
        let polls = Counter::default();
        registry.register("polls", "Printer polls started", polls.clone());
        let poll_failures = Family::<Labels, Counter>::default();
        registry.register(
            "poll_failures",
            "Failed printer polls by reason",
            poll_failures.clone(),
        );
        let poll_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "poll_duration_seconds",
            "Duration of one printer poll",
            poll_duration.clone(),
        );
        let polls_in_flight = Gauge::default();
        registry.register(
            "polls_in_flight",
            "Printer polls in progress",
            polls_in_flight.clone(),
        );
        let snmp_requests = Counter::default();
        registry.register(
            "snmp_requests",
            "SNMP requests answered in successful polls",
            snmp_requests.clone(),
        );
        let snmp_probes = Counter::default();
        registry.register(
            "snmp_probes",
            "SNMP requests sent in successful polls to learn how an agent must be asked",
            snmp_probes.clone(),
        );
        let events = Family::<Labels, Counter>::default();
        registry.register("events", "Printer events recorded by kind", events.clone());
        let store_errors = Counter::default();
        registry.register("store_errors", "Store write failures", store_errors.clone());
        let discovery_done = Gauge::default();
        registry.register(
            "discovery_addresses_done",
            "Addresses finished in the current or last discovery run",
            discovery_done.clone(),
        );
        let discovery_total = Gauge::default();
        registry.register(
            "discovery_addresses",
            "Addresses to try in the current or last discovery run",
            discovery_total.clone(),
        );
        let discovery_found = Gauge::default();
        registry.register(
            "discovery_printers_found",
            "Printers found by the current or last discovery run",
            discovery_found.clone(),
        );
        let discovery_runs = Counter::default();
        registry.register(
            "discovery_runs",
            "Discovery runs completed",
            discovery_runs.clone(),
        );
        let outbox_messages = Gauge::default();
        registry.register(
            "outbox_messages",
            "Messages waiting in the outbox",
            outbox_messages.clone(),
        );
        let outbox_bytes = Gauge::default();
        registry.register(
            "outbox_bytes",
            "Bytes waiting in the outbox",
            outbox_bytes.clone(),
        );
        let uploads_queued = Family::<Labels, Counter>::default();
        registry.register(
            "uploads_queued",
            "Uploads queued by kind",
            uploads_queued.clone(),
        );
        let uploads_acked = Counter::default();
        registry.register(
            "uploads_acked",
            "Uploaded messages the cloud acknowledged",
            uploads_acked.clone(),
        );
        let upload_requests = Counter::default();
        registry.register(
            "upload_requests",
            "Upload requests sent",
            upload_requests.clone(),
        );
        let upload_json_bytes = Counter::default();
        registry.register(
            "upload_json_bytes",
            "Upload request bodies before compression, bytes",
            upload_json_bytes.clone(),
        );
        let upload_body_bytes = Counter::default();
        registry.register(
            "upload_body_bytes",
            "Upload request bodies as sent (compressed when the cloud takes gzip), bytes",
            upload_body_bytes.clone(),
        );
        for h in [
            "ok",
            "suspect",
            "not_communicating",
            "unknown",
            "needs_credentials",
        ] {
            printers
                .get_or_create(&vec![("health".into(), h.into())])
                .set(0);
        }
        Metrics {
            registry,
            printers,
            polls,
            poll_failures,
            poll_duration,
            polls_in_flight,
            snmp_requests,
            snmp_probes,
            events,
            store_errors,
            discovery_done,
            discovery_total,
            discovery_found,
            discovery_runs,
            outbox_messages,
            outbox_bytes,
            uploads_queued,
            uploads_acked,
            upload_requests,
            upload_json_bytes,
            upload_body_bytes,
        }
    }

    /// Counts upload requests and their bodies (JSON bytes, bytes as sent).
    pub fn upload_sent(&self, requests: u64, json_bytes: u64, body_bytes: u64) {
        self.upload_requests.inc_by(requests);
        self.upload_json_bytes.inc_by(json_bytes);
        self.upload_body_bytes.inc_by(body_bytes);
    }

    /// Sets the per-health printer gauges.
    pub fn set_health_counts(&self, counts: &[(&str, i64)]) {
        for (h, n) in counts {
            self.printers
                .get_or_create(&vec![("health".into(), (*h).into())])
                .set(*n);
        }
    }

    /// Counts a failed poll.
    pub fn poll_failed(&self, reason: &str) {
        self.poll_failures
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    /// Counts an event.
    pub fn event(&self, kind: &str) {
        self.events
            .get_or_create(&vec![("kind".into(), kind.into())])
            .inc();
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        encode(&mut s, &self.registry).ok();
        s
    }
}

/// Checks a log filter as an admin writes it: a level (`info`), or comma-separated
/// directives each a level or `target=level` (`info,fleet_agent::poller=debug`). A bare
/// word that is not a level is refused: the filter syntax would read `verbose` as "all
/// levels of a target named verbose, nothing else", silencing the log.
///
/// # Errors
/// What is wrong, for the admin.
pub fn check_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let bad = || {
        format!(
            "{filter:?} is not a log filter (off, error, warn, info, debug, trace, or target=level, comma-separated)"
        )
    };
    if filter.trim().is_empty() || tracing_subscriber::EnvFilter::try_new(filter).is_err() {
        return Err(bad());
    }
    for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !d.contains('=')
            && !d.contains('[')
            && !LEVELS.contains(&d.to_ascii_lowercase().as_str())
        {
            return Err(format!(
                "{filter:?}: {d:?} is not a level (off, error, warn, info, debug, trace); for one module write target=level"
            ));
        }
    }
    Ok(())
}

/// Log lines kept in memory for the "request agent logs" job and the page (the process
/// logs to standard error, which journald or the service wrapper owns).
const RING_LINES: usize = 5000;

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// The agent's log as a handle: the last [`RING_LINES`] lines (for `requestLogs` and
/// the page) and the level, changed at run time. [`Logs::init`] makes the process's one;
/// an agent run in process by a test gets a detached one.
#[derive(Clone, Default)]
pub struct Logs {
    ring: Arc<Mutex<VecDeque<String>>>,
    /// `None` when the level is pinned (`FLEET_AGENT_LOG`) or nothing is installed.
    filter: Option<Arc<FilterHandle>>,
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs").finish_non_exhaustive()
    }
}

impl Logs {
    /// Installs the process's log subscriber (stderr, journald and the Windows service
    /// pick it up from there; with `file`, also a file rotated by size,
    /// [`LOG_FILE_MAX_BYTES`], [`LOG_FILES_KEPT`] kept). `FLEET_AGENT_LOG` overrides
    /// `default` and then also wins over later [`Logs::set_level`] calls, so an operator's
    /// debugging filter is never replaced. A second call leaves the first subscriber in
    /// place and returns a detached handle.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn init(default: &str, file: Option<&Path>) -> std::io::Result<Logs> {
        use tracing_subscriber::util::SubscriberInitExt;
        let from_env = tracing_subscriber::EnvFilter::try_from_env("FLEET_AGENT_LOG").ok();
        let pinned = from_env.is_some();
        let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let (subscriber, ring, handle) = Self::subscriber(filter, file, true, ansi)?;
        if subscriber.try_init().is_err() {
            return Ok(Logs::default());
        }
        Ok(Logs {
            ring,
            filter: (!pinned).then(|| Arc::new(handle)),
        })
    }

    /// The log of an agent that runs embedded in another process on a thread of its own
    /// (the tests run agents so): the same subscriber as [`Logs::init`], without standard
    /// error, made the default of the calling thread only, for as long as the returned
    /// guard lives. Events of the agent's tasks on that thread land here; a blocking task
    /// on another thread logs to the process's own subscriber, if any.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn for_this_thread(
        default: &str,
        file: Option<&Path>,
    ) -> std::io::Result<(Logs, tracing::subscriber::DefaultGuard)> {
        let filter = tracing_subscriber::EnvFilter::new(default);
        let (subscriber, ring, handle) = Self::subscriber(filter, file, false, false)?;
        let guard = tracing::subscriber::set_default(subscriber);
        Ok((
            Logs {
                ring,
                filter: Some(Arc::new(handle)),
            },
            guard,
        ))
    }

    /// The one subscriber both build: a reloadable `filter`, then lines teed to the ring,
    /// the rotated `file` when given, and standard error when `stderr`.
    #[allow(clippy::type_complexity)]
    fn subscriber(
        filter: tracing_subscriber::EnvFilter,
        file: Option<&Path>,
        stderr: bool,
        ansi: bool,
    ) -> std::io::Result<(
        impl tracing::Subscriber + Send + Sync + 'static,
        Arc<Mutex<VecDeque<String>>>,
        FilterHandle,
    )> {
        use tracing_subscriber::layer::SubscriberExt;
        let file = match file {
            Some(p) => Some(Arc::new(Mutex::new(RotatingFile::open(
                p,
                LOG_FILE_MAX_BYTES,
                LOG_FILES_KEPT,
            )?))),
            None => None,
        };
        let (layer, handle) = tracing_subscriber::reload::Layer::new(filter);
        let ring = Arc::new(Mutex::new(VecDeque::new()));
        let tee = Tee {
            ring: ring.clone(),
            file,
            stderr,
        };
        let subscriber = tracing_subscriber::registry().with(layer).with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || tee.clone())
                .with_ansi(ansi),
        );
        Ok((subscriber, ring, handle))
    }

    /// The last log lines (oldest first), as written to standard error, colours removed.
    pub fn recent(&self) -> Vec<String> {
        self.ring.lock().iter().cloned().collect()
    }

    /// Changes the log filter at run time (settings from the cloud, SIGHUP, the page). A
    /// filter that does not parse was already refused by configuration validation; it is
    /// ignored here.
    pub fn set_level(&self, filter: &str) {
        if let (Some(h), Ok(f)) = (&self.filter, tracing_subscriber::EnvFilter::try_new(filter)) {
            h.reload(f).ok();
        }
    }
}

/// Writes log output to standard error (and the file) and keeps the last lines.
#[derive(Clone)]
struct Tee {
    ring: Arc<Mutex<VecDeque<String>>>,
    file: Option<Arc<Mutex<RotatingFile>>>,
    /// Also to standard error (not for an agent embedded in another process).
    stderr: bool,
}

/// The longest log line kept whole; longer ones (a printer's or a document's text
/// echoed in an error) are cut, saying how much was cut.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// `buf` cut to [`MAX_LINE_BYTES`] (on a character boundary) plus a note, when longer.
fn cut_line(buf: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if buf.len() <= MAX_LINE_BYTES {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut end = MAX_LINE_BYTES;
    // Back to the start of a UTF-8 character (at most 3 continuation bytes).
    while end > 0 && (buf[end] & 0xc0) == 0x80 {
        end -= 1;
    }
    let mut out = buf[..end].to_vec();
    out.extend_from_slice(format!(" [... {} bytes cut]\n", buf.len() - end).as_bytes());
    std::borrow::Cow::Owned(out)
}

impl std::io::Write for Tee {
    fn write(&mut self, whole: &[u8]) -> std::io::Result<usize> {
        let buf = cut_line(whole);
        let buf = &buf[..];
        // A Windows service has no standard error: a failed write there must not lose the
        // line for the file and the in-memory copy.
        let stderr = if self.stderr {
            std::io::stderr().write_all(buf)
        } else {
            Ok(())
        };
        let text = strip_ansi(&String::from_utf8_lossy(buf));
        if let Some(file) = &self.file {
            // Nowhere to report a failing log file but the log itself; keep going.
            file.lock().write_all(text.as_bytes()).ok();
        }
        let mut ring = self.ring.lock();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if ring.len() == RING_LINES {
                ring.pop_front();
            }
            ring.push_back(line.to_string());
        }
        if self.file.is_none() {
            stderr?;
        }
        Ok(whole.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A log file that is rotated by size: when a write would take it past `max_bytes`,
/// `name.log` becomes `name.log.1` (`.1` becomes `.2`, ...; the oldest beyond `keep` is
/// removed) and a new file starts. Used where no journal collects standard error (the
/// Windows service, `run --log-file`).
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<std::fs::File>,
    size: u64,
}

impl RotatingFile {
    /// Opens (appends to) `path`, creating its directory.
    ///
    /// # Errors
    /// When the directory or the file cannot be created.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            file: Some(file),
            size,
        })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        // Windows cannot rename an open file.
        self.file = None;
        std::fs::remove_file(self.numbered(self.keep)).ok();
        for n in (1..self.keep).rev() {
            std::fs::rename(self.numbered(n), self.numbered(n + 1)).ok();
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        self.file = Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.size = 0;
        Ok(())
    }
}

impl std::io::Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                // A failed rotation left no file: try again from scratch.
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                self.size = f.metadata()?.len();
                self.file.insert(f)
            }
        };
        file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), std::io::Write::flush)
    }
}

/// Default size at which the log file is rotated.
pub const LOG_FILE_MAX_BYTES: u64 = 10 << 20;
/// Rotated log files kept besides the current one.
pub const LOG_FILES_KEPT: usize = 5;

#[cfg(test)]
mod tests {
    #[test]
    fn log_file_rotates_by_size_and_keeps_a_bounded_number() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("logs").join("agent.log");
        let mut f = super::RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..10 {
            // 40 bytes a line: two lines fit in 100 bytes, the third starts a new file.
            // One write per line, as the log formatter does.
            f.write_all(format!("line {i:02} {}\n", "x".repeat(31)).as_bytes())
                .unwrap();
        }
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
        let current = read(&path);
        assert_eq!(current.lines().count(), 2, "{current}");
        assert!(current.starts_with("line 08"), "{current}");
        assert!(read(&d.path().join("logs/agent.log.1")).starts_with("line 06"));
        assert!(read(&d.path().join("logs/agent.log.2")).starts_with("line 04"));
        assert!(!d.path().join("logs/agent.log.3").exists());
        for p in [&path, &d.path().join("logs/agent.log.1")] {
            assert!(std::fs::metadata(p).unwrap().len() <= 100);
        }
        // Reopening appends to what is there and counts it against the limit.
        drop(f);
        let mut f = super::RotatingFile::open(&path, 100, 2).unwrap();
        f.write_all(format!("line 10 {}\n", "x".repeat(31)).as_bytes())
            .unwrap();
        assert!(read(&path).starts_with("line 10"));
        assert!(read(&d.path().join("logs/agent.log.1")).starts_with("line 08"));
    }

    /// A log that keeps lines in memory only, and the writer that feeds it.
    fn ring_only() -> (super::Logs, super::Tee) {
        let logs = super::Logs::default();
        let tee = super::Tee {
            ring: logs.ring.clone(),
            file: None,
            stderr: false,
        };
        (logs, tee)
    }

    #[test]
    fn log_lines_are_kept_without_colours() {
        use std::io::Write;
        let (logs, mut tee) = ring_only();
        tee.write_all(b"\x1b[2m2026-11-28\x1b[0m \x1b[32m INFO\x1b[0m ring test line\n")
            .unwrap();
        let logs = logs.recent();
        assert!(
            logs.iter().any(|l| l == "2026-11-28  INFO ring test line"),
            "{logs:?}"
        );
    }

    #[test]
    fn long_log_lines_are_cut_and_say_so() {
        use std::io::Write;
        let (logs, mut tee) = ring_only();
        let mut line = "é".repeat(50_000).into_bytes();
        line.push(b'\n');
        assert_eq!(tee.write(&line).unwrap(), line.len());
        let kept = logs.recent().pop().unwrap();
        assert!(kept.len() <= super::MAX_LINE_BYTES + 40, "{}", kept.len());
        assert!(kept.ends_with("bytes cut]"), "{}", &kept[kept.len() - 40..]);
        assert!(!kept.contains('\u{fffd}'), "cut on a character boundary");
    }
    use super::*;

    #[test]
    fn renders_prometheus_text_with_conventional_names() {
        let m = Metrics::new();
        m.polls.inc();
        m.poll_failed("timeout");
        m.poll_duration.observe(0.02);
        m.set_health_counts(&[("ok", 3)]);
        let t = m.render();
        assert!(t.contains("fleet_agent_polls_total 1"), "{t}");
        assert!(
            t.contains("fleet_agent_poll_failures_total{reason=\"timeout\"} 1"),
            "{t}"
        );
        assert!(t.contains("fleet_agent_printers{health=\"ok\"} 3"), "{t}");
        assert!(
            t.contains("fleet_agent_poll_duration_seconds_bucket"),
            "{t}"
        );
        assert!(t.ends_with("# EOF\n"));
    }
}
