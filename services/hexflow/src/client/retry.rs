//! Polling through a server that is briefly away: a proxy answering 502/503/504 while the
//! gateway restarts, or a refused connection, is retried with growing, jittered waits, within
//! a bounded time; the import itself goes on server-side meanwhile.

use std::time::Duration;

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

/// Waits doubled from about [`FIRST_WAIT`] up to [`MAX_WAIT`], jittered (so clients cut off
/// together do not come back together: [`shared::backoff::Backoff`]), until `budget` is spent.
pub(super) struct Backoff {
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    left: Duration,
}

impl Backoff {
    pub(super) fn new(budget: Duration) -> Backoff {
        let delays = shared::backoff::Backoff::new(FIRST_WAIT, MAX_WAIT).delays();
        Backoff { delays: Box::new(delays), left: budget }
    }

    /// The wait before the next attempt, or `None` once the budget is spent.
    pub(super) fn next_wait(&mut self) -> Option<Duration> {
        if self.left.is_zero() {
            return None;
        }
        let wait = self.delays.next().unwrap_or(MAX_WAIT).min(self.left);
        self.left -= wait;
        Some(wait)
    }
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff").field("left", &self.left).finish()
    }
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
        assert!(waits[0] >= FIRST_WAIT / 2 && waits[0] <= FIRST_WAIT, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= MAX_WAIT), "{waits:?}");
        assert!(waits[3] >= waits[0] * 4, "waits grow: {waits:?}");
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
