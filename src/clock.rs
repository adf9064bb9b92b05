//! The agent's wall clock, as a handle: every component that stamps or compares wall
//! times (readings' `collectedAt`, the outbox, jobs, panel messages, heartbeats) asks the
//! [`Clock`] it was given, never the system directly, so tests can run the agent on a
//! clock they control. Intervals and deadlines use tokio's clock, which tests pause; a
//! [`Clock::following_tokio`] clock keeps the two in step.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall time in Unix epoch milliseconds. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Clock(Arc<Source>);

enum Source {
    System,
    Manual(AtomicI64),
    Tokio {
        base_ms: i64,
        start: tokio::time::Instant,
    },
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.0 {
            Source::System => "system",
            Source::Manual(_) => "manual",
            Source::Tokio { .. } => "tokio",
        };
        write!(f, "Clock({kind}, {} ms)", self.now_ms())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The operating system's clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Source::System))
    }

    /// A clock that stands at `ms` until moved with [`Clock::set`] or [`Clock::advance`].
    pub fn manual(ms: i64) -> Clock {
        Clock(Arc::new(Source::Manual(AtomicI64::new(ms))))
    }

    /// A clock that starts at `ms` and moves with tokio's clock: on a runtime with paused
    /// time, `tokio::time::advance` moves both the timers and the wall time.
    pub fn following_tokio(ms: i64) -> Clock {
        Clock(Arc::new(Source::Tokio {
            base_ms: ms,
            start: tokio::time::Instant::now(),
        }))
    }

    /// Now, in Unix epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &*self.0 {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0),
            Source::Manual(ms) => ms.load(Ordering::SeqCst),
            Source::Tokio { base_ms, start } => base_ms
                .saturating_add(i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// Sets a manual clock (other clocks ignore it).
    pub fn set(&self, ms: i64) {
        if let Source::Manual(m) = &*self.0 {
            m.store(ms, Ordering::SeqCst);
        }
    }

    /// Moves a manual clock by `ms` (other clocks ignore it).
    pub fn advance(&self, ms: i64) {
        if let Source::Manual(m) = &*self.0 {
            m.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_after_2026() {
        assert!(Clock::system().now_ms() > 1_767_225_600_000);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::manual(1_000);
        let shared = c.clone();
        c.advance(500);
        assert_eq!(shared.now_ms(), 1_500);
        shared.set(42);
        assert_eq!(c.now_ms(), 42);
        Clock::system().advance(10); // harmless
    }

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_follows_paused_time() {
        let c = Clock::following_tokio(1_000_000);
        assert_eq!(c.now_ms(), 1_000_000);
        tokio::time::advance(std::time::Duration::from_secs(3600)).await;
        assert_eq!(c.now_ms(), 1_000_000 + 3_600_000);
    }
}
