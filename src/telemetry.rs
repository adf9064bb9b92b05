//! The agent's own metrics (Prometheus text format at `/metrics`) and log setup.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Metrics the components update. Names follow Prometheus conventions (`_total` for
/// counters, base units, `fleet_agent_` prefix).
pub struct Metrics {
    registry: Registry,
    /// Managed printers by health (`ok`, `suspect`, `not_communicating`, `unknown`).
    pub printers: Family<Labels, Gauge>,
    /// Polls started.
    pub polls: Counter,
    /// Failed polls by reason code (`timeout`, `wrongDigest`, `deadline`, ...).
    pub poll_failures: Family<Labels, Counter>,
    /// Duration of one printer's poll, seconds.
    pub poll_duration: Histogram,
    /// Polls in flight.
    pub polls_in_flight: Gauge,
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
        for h in ["ok", "suspect", "not_communicating", "unknown"] {
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
            events,
            store_errors,
            discovery_done,
            discovery_total,
            discovery_found,
            discovery_runs,
            outbox_messages,
            outbox_bytes,
            uploads_queued,
        }
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

/// Log lines kept in memory for the "request agent logs" job (the process logs to
/// standard error, which journald or the service wrapper owns).
const RING_LINES: usize = 5000;

static RING: std::sync::Mutex<std::collections::VecDeque<String>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Writes log output to standard error and keeps the last [`RING_LINES`] lines.
struct Tee;

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(buf)?;
        let text = strip_ansi(&String::from_utf8_lossy(buf));
        let mut ring = RING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if ring.len() == RING_LINES {
                ring.pop_front();
            }
            ring.push_back(line.to_string());
        }
        Ok(buf.len())
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

/// The last log lines (oldest first), as written to standard error, colours removed.
pub fn recent_logs() -> Vec<String> {
    RING.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

static LOG_FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// Installs the process's log subscriber (stderr; journald and the Windows service pick it
/// up from there). `FLEET_AGENT_LOG` overrides `default` and then also wins over later
/// [`set_log_level`] calls, so an operator's debugging filter is never replaced.
pub fn init_logging(default: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let from_env = tracing_subscriber::EnvFilter::try_from_env("FLEET_AGENT_LOG").ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    let (layer, handle) = tracing_subscriber::reload::Layer::new(filter);
    let ok = tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(|| Tee)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init()
        .is_ok();
    if ok && !pinned {
        LOG_FILTER.set(handle).ok();
    }
}

/// Changes the log filter at run time (settings from the cloud, SIGHUP). A filter that
/// does not parse was already refused by configuration validation; it is ignored here.
pub fn set_log_level(filter: &str) {
    if let (Some(h), Ok(f)) = (
        LOG_FILTER.get(),
        tracing_subscriber::EnvFilter::try_new(filter),
    ) {
        h.reload(f).ok();
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn log_lines_are_kept_without_colours() {
        use std::io::Write;
        Tee.write_all(b"\x1b[2m2026-11-28\x1b[0m \x1b[32m INFO\x1b[0m ring test line\n")
            .unwrap();
        let logs = super::recent_logs();
        assert!(
            logs.iter().any(|l| l == "2026-11-28  INFO ring test line"),
            "{logs:?}"
        );
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
