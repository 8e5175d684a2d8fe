//! What the gateway keeps per socket: who it is, which imports it watches, and its rate budget.

use std::{collections::HashSet, sync::Mutex, time::Instant};

use shared::{auth::Identity, events::now_ms};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::Options,
    error::{Error, Result},
};

/// One connected socket's state, stored in its extensions by the connect middleware.
#[derive(Debug)]
pub struct Session {
    /// Who authenticated the handshake.
    pub identity: Identity,
    /// Imports whose rooms the socket is in (freed from the rooms on disconnect).
    watching: Mutex<HashSet<Uuid>>,
    /// Client events allowed right now.
    budget: Mutex<TokenBucket>,
    max_rooms: u32,
    /// When the handshake's token stops being valid (seconds since the epoch); `None` in open mode.
    pub valid_until: Option<i64>,
    /// Cancelled when the socket disconnects (stops its expiry timer).
    pub closed: CancellationToken,
}

impl Session {
    /// A fresh session with a full rate budget, valid until `valid_until` (seconds since the epoch).
    pub fn new(identity: Identity, valid_until: Option<i64>, options: &Options) -> Self {
        Session {
            identity,
            valid_until,
            closed: CancellationToken::new(),
            watching: Mutex::default(),
            budget: Mutex::new(TokenBucket::full(
                f64::from(options.rate_limit_per_sec),
                f64::from(options.rate_burst),
                Instant::now(),
            )),
            max_rooms: options.max_rooms_per_socket,
        }
    }

    /// Spends one client event from the budget, or says `RATE_LIMITED`; `TOKEN_EXPIRED` once the
    /// handshake's token has expired (the socket is being disconnected).
    pub fn spend(&self) -> Result<()> {
        if self.expired_at(now_ms() / 1000) {
            return Err(Error::TokenExpired);
        }
        if lock(&self.budget).take(Instant::now()) { Ok(()) } else { Err(Error::RateLimited) }
    }

    /// True when the token is no longer valid at `now` (seconds since the epoch).
    pub fn expired_at(&self, now: i64) -> bool {
        self.valid_until.is_some_and(|until| now > until)
    }

    /// Records that the socket watches `id`; `TOO_MANY_ROOMS` beyond the cap.
    pub fn watch(&self, id: Uuid) -> Result<()> {
        let mut watching = lock(&self.watching);
        if !watching.contains(&id) && watching.len() >= self.max_rooms as usize {
            return Err(Error::TooManyRooms(self.max_rooms));
        }
        watching.insert(id);
        Ok(())
    }

    /// Records that the socket stopped watching `id`; false if it was not.
    pub fn unwatch(&self, id: Uuid) -> bool {
        lock(&self.watching).remove(&id)
    }

    /// Every import the socket watches, emptied (on disconnect).
    pub fn take_watching(&self) -> Vec<Uuid> {
        lock(&self.watching).drain().collect()
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` saved.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl TokenBucket {
    fn full(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket { tokens: burst, rate, burst, at: now }
    }

    fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while these locks are held, so a poisoned one still holds consistent data.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(10.0, 3.0, t0);
        assert!((0..3).all(|_| bucket.take(t0)));
        assert!(!bucket.take(t0), "the burst is spent");
        assert!(bucket.take(t0 + Duration::from_millis(100)), "one token per 100 ms at 10/s");
        assert!(!bucket.take(t0 + Duration::from_millis(150)));
    }

    #[test]
    fn a_socket_watches_at_most_the_cap() {
        let options = Options { max_rooms_per_socket: 2, ..Options::default() };
        let session = Session::new(Identity::anonymous(), None, &options);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        session.watch(a).unwrap();
        session.watch(b).unwrap();
        session.watch(a).unwrap();
        assert!(matches!(session.watch(c), Err(Error::TooManyRooms(2))));
        assert!(session.unwatch(a));
        session.watch(c).unwrap();
        assert_eq!(session.take_watching().len(), 2);
    }

    #[test]
    fn events_after_the_token_expired_are_refused() {
        let now = now_ms() / 1000;
        let live = Session::new(Identity::anonymous(), Some(now + 60), &Options::default());
        assert!(live.spend().is_ok());
        assert!(live.expired_at(now + 61));
        let expired = Session::new(Identity::anonymous(), Some(now - 1), &Options::default());
        assert!(matches!(expired.spend(), Err(Error::TokenExpired)));
        assert!(!Session::new(Identity::anonymous(), None, &Options::default()).expired_at(i64::MAX));
    }
}
