//! The agent's one retry policy: capped exponential backoff with jitter. The poller backs
//! off a printer that stopped answering, the sender and the jobs loop back off a cloud
//! that is down; each names its base, cap and jitter here, and the arithmetic is one.

use std::time::Duration;

/// Wait `base` after the first failure, doubling per further failure up to `cap`, each
/// wait spread by ±`jitter` (a fraction) so many waiters do not retry in step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Wait after the first failure.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
    /// Spread of each wait: 0.1 = ±10 %.
    pub jitter: f64,
}

impl Backoff {
    /// The wait after `failures` consecutive failures (1 = the first).
    pub fn delay(&self, failures: u32, rng: &mut fastrand::Rng) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        let wait = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let jitter = self.jitter.clamp(0.0, 1.0);
        wait.mul_f64(1.0 - jitter + 2.0 * jitter * rng.f64())
    }
}

/// A retry loop's state: failures counted since the last success.
#[derive(Debug)]
pub struct Retry {
    policy: Backoff,
    failures: u32,
    rng: fastrand::Rng,
}

impl Retry {
    /// Starts with no failure.
    pub fn new(policy: Backoff) -> Retry {
        Retry {
            policy,
            failures: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// Counts a failure; returns how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures, &mut self.rng)
    }

    /// Forgets the failures (the next one waits `base` again).
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_within_the_jitter() {
        let b = Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(100),
            jitter: 0.1,
        };
        let mut rng = fastrand::Rng::with_seed(7);
        for (failures, mid) in [
            (1, 10.0),
            (2, 20.0),
            (3, 40.0),
            (4, 80.0),
            (5, 100.0),
            (40, 100.0),
        ] {
            let d = b.delay(failures, &mut rng).as_secs_f64();
            assert!(
                (mid * 0.9..=mid * 1.1).contains(&d),
                "after {failures} failures: {d} s, expected {mid} ± 10 %"
            );
        }
    }

    #[test]
    fn a_retry_counts_failures_until_a_success() {
        let mut r = Retry::new(Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            jitter: 0.0,
        });
        assert_eq!(r.failed(), Duration::from_secs(1));
        assert_eq!(r.failed(), Duration::from_secs(2));
        assert_eq!(r.failed(), Duration::from_secs(4));
        assert_eq!(r.failures(), 3);
        r.succeeded();
        assert_eq!(r.failed(), Duration::from_secs(1));
    }
}
