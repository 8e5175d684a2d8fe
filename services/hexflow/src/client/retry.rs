//! Polling through a server that is briefly away: a proxy answering 502/503/504 while the
//! gateway restarts, or a refused connection, is retried with growing, jittered waits, within
//! a bounded time; the import itself goes on server-side meanwhile.

use std::{
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use reqwest::StatusCode;

/// The first wait after a failed poll.
const FIRST_WAIT: Duration = Duration::from_millis(250);
/// The longest single wait.
const MAX_WAIT: Duration = Duration::from_secs(8);

/// Whether a failed request is worth repeating: the server (or the proxy in front of it) was
/// unreachable or said so itself. Anything else (401, 404, a body that does not parse) will not
/// change by asking again.
pub(super) fn is_transient_status(status: StatusCode) -> bool {
    matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

/// A request error that is about reaching the server, not about what it answered.
pub(super) fn is_transient_error(err: &reqwest::Error) -> bool {
    err.is_connect() || err.is_timeout() || err.is_request()
}

/// Exponential waits, doubled from [`FIRST_WAIT`] up to [`MAX_WAIT`], each with up to 50 %
/// jitter (so clients cut off together do not come back together), until `budget` is spent.
#[derive(Debug)]
pub(super) struct Backoff {
    next: Duration,
    left: Duration,
}

impl Backoff {
    pub(super) fn new(budget: Duration) -> Backoff {
        Backoff { next: FIRST_WAIT, left: budget }
    }

    /// The wait before the next attempt, or `None` once the budget is spent.
    pub(super) fn next_wait(&mut self) -> Option<Duration> {
        if self.left.is_zero() {
            return None;
        }
        let jitter = self.next.mul_f64(random_fraction() * 0.5);
        let wait = (self.next.saturating_sub(self.next / 4) + jitter).min(self.left);
        self.left -= wait;
        self.next = (self.next * 2).min(MAX_WAIT);
        Some(wait)
    }
}

/// A number in `[0, 1)` from the standard library's randomly keyed hasher.
fn random_fraction() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_stay_jittered_within_bounds_and_stop_at_the_budget() {
        let mut backoff = Backoff::new(Duration::from_secs(30));
        let waits: Vec<Duration> = std::iter::from_fn(|| backoff.next_wait()).collect();
        let total: Duration = waits.iter().sum();
        assert_eq!(total, Duration::from_secs(30), "the whole budget and no more: {waits:?}");
        assert!(waits[0] >= FIRST_WAIT * 3 / 4 && waits[0] <= FIRST_WAIT * 5 / 4, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= MAX_WAIT * 5 / 4), "{waits:?}");
        assert!(waits[3] > waits[0] * 4, "waits grow: {waits:?}");
    }

    #[test]
    fn gateway_errors_and_unreachable_servers_are_retried_other_answers_are_not() {
        for code in [502, 503, 504] {
            assert!(is_transient_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 404, 500] {
            assert!(!is_transient_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
