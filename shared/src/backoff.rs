//! Waits between retries: doubling from a first delay up to a cap, with jitter, so that workers
//! that failed together (a broker restart, a deadlock between two merges) do not retry together.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// An exponential backoff: retry `n` waits between half of `first · 2^(n-1)` (capped at `max`)
/// and the whole of it, so the upper bound is the plain doubling and never more than `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff whose first retry waits up to `first`, doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The delays of retries 1, 2, 3, …, each drawn afresh.
    pub fn delays(self) -> impl Iterator<Item = Duration> {
        // backon adds a random share (0–100 %) of each delay to it: starting from halves gives
        // delays between half and all of the doubling sequence.
        ExponentialBuilder::default()
            .with_min_delay(self.first / 2)
            .with_max_delay(self.max / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// The delay before retry `retry` (1 is the first retry).
    pub fn delay(self, retry: u32) -> Duration {
        self.delays().nth(retry.saturating_sub(1) as usize).unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_between_half_and_all_of_it() {
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        for _ in 0..50 {
            for (retry, delay) in (1..=8).zip(backoff.delays()) {
                let full = (Duration::from_millis(200) * 2u32.pow(retry - 1)).min(Duration::from_secs(5));
                assert!(
                    delay >= full / 2 && delay <= full,
                    "retry {retry}: {delay:?} outside {:?}..={full:?}",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn retries_of_one_step_are_not_all_alike() {
        let backoff = Backoff::new(Duration::from_secs(4), Duration::from_secs(60));
        let drawn: std::collections::HashSet<Duration> = (0..20).map(|_| backoff.delay(1)).collect();
        assert!(drawn.len() > 1, "twenty first retries all waited {drawn:?}");
    }
}
