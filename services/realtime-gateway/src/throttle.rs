//! The per-room throttle: at most one `progress-update` per interval, latest value wins, the
//! last value before a pause is sent when the interval ends (trailing emit), terminal events go
//! out at once and end the room, and nothing older than what was sent ever follows it.
//!
//! Pure state and decisions; the fan-out task owns the clock and does the emitting.

use std::time::{Duration, Instant};

use shared::{ProgressEvent, Status};

/// The Socket.IO event a progress event is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `progress-update` (throttled).
    Update,
    /// `progress-complete`.
    Complete,
    /// `progress-error`.
    Error,
    /// `progress-cancelled`.
    Cancelled,
}

impl EventKind {
    /// The kind of an event, by its status.
    pub fn of(event: &ProgressEvent) -> Self {
        match event.status {
            Status::Completed => EventKind::Complete,
            Status::Error => EventKind::Error,
            Status::Cancelled => EventKind::Cancelled,
            Status::Queued | Status::Processing => EventKind::Update,
        }
    }

    /// The Socket.IO event name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Update => "progress-update",
            EventKind::Complete => "progress-complete",
            EventKind::Error => "progress-error",
            EventKind::Cancelled => "progress-cancelled",
        }
    }
}

/// What to do with an offered event.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Send it now.
    Emit(EventKind),
    /// Held as the room's latest value; send it at this instant unless something newer comes.
    /// Only returned when no flush was already due, so each pending value has one timer.
    Hold(Instant),
    /// Held, replacing an older held value; the timer already set stays.
    Coalesced,
    /// Older than (or as old as) what the room already got, or after the terminal event.
    Stale,
}

/// One room's throttle state.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    /// Highest `seq` sent to the room (or seen by its only member in the join snapshot).
    last_seq: Option<u64>,
    /// When the last `progress-update` went out.
    last_update_at: Option<Instant>,
    /// The latest update waiting for the interval to end.
    pending: Option<ProgressEvent>,
    /// The terminal event went out: the session is over for this room.
    ended: bool,
}

impl Throttle {
    /// A room that has sent nothing yet.
    pub fn new(interval: Duration) -> Self {
        Throttle { interval, last_seq: None, last_update_at: None, pending: None, ended: false }
    }

    /// Decides what to do with the next event of the session.
    pub fn offer(&mut self, event: &ProgressEvent, now: Instant) -> Decision {
        let newest = self.pending.as_ref().map(|p| p.seq).max(self.last_seq);
        if self.ended || newest.is_some_and(|seq| event.seq <= seq) {
            return Decision::Stale;
        }
        let kind = EventKind::of(event);
        if kind != EventKind::Update {
            // A held update is older than the terminal event, so it is dropped, never sent after it.
            self.pending = None;
            self.ended = true;
            self.last_seq = Some(event.seq);
            return Decision::Emit(kind);
        }
        let due = self.last_update_at.map(|at| at + self.interval);
        match due {
            Some(due) if now < due => {
                let replaced = self.pending.replace(event.clone()).is_some();
                if replaced { Decision::Coalesced } else { Decision::Hold(due) }
            }
            _ => {
                self.pending = None;
                self.sent_update(event.seq, now);
                Decision::Emit(kind)
            }
        }
    }

    /// The held update, if its time has come (`Err(due)` when it has not yet).
    pub fn flush(&mut self, now: Instant) -> Result<Option<ProgressEvent>, Instant> {
        if self.pending.is_none() {
            return Ok(None);
        }
        if let Some(due) = self.last_update_at.map(|at| at + self.interval)
            && now < due
        {
            return Err(due);
        }
        let event = self.pending.take();
        if let Some(event) = &event {
            self.sent_update(event.seq, now);
        }
        Ok(event)
    }

    /// Records that the room has seen `seq` by other means (the join snapshot of its only member).
    pub fn observe(&mut self, seq: u64, terminal: bool) {
        if self.last_seq.is_none_or(|last| seq > last) {
            self.last_seq = Some(seq);
        }
        if self.pending.as_ref().is_some_and(|p| p.seq <= seq) {
            self.pending = None;
        }
        self.ended |= terminal;
    }

    /// Highest `seq` the room has been sent.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// True once the terminal event went out.
    pub fn ended(&self) -> bool {
        self.ended
    }

    fn sent_update(&mut self, seq: u64, now: Instant) {
        self.last_seq = Some(seq);
        self.last_update_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Phase, events::Metadata};
    use uuid::Uuid;

    fn event(seq: u64, status: Status) -> ProgressEvent {
        ProgressEvent {
            progress: seq as f64,
            attempt: 1,
            timestamp: 0,
            ..ProgressEvent::new(Uuid::nil(), seq, status, Phase::Loading, Metadata::new("a.csv", "generic", "", 2))
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn updates_inside_the_interval_are_coalesced_and_the_latest_is_flushed_at_its_end() {
        let t0 = Instant::now();
        let mut room = Throttle::new(100 * MS);
        assert_eq!(room.offer(&event(1, Status::Processing), t0), Decision::Emit(EventKind::Update));
        assert_eq!(room.offer(&event(2, Status::Processing), t0 + 10 * MS), Decision::Hold(t0 + 100 * MS));
        assert_eq!(room.offer(&event(3, Status::Processing), t0 + 20 * MS), Decision::Coalesced);
        assert_eq!(room.flush(t0 + 50 * MS), Err(t0 + 100 * MS), "not before the interval ends");
        assert_eq!(room.flush(t0 + 100 * MS).unwrap().map(|e| e.seq), Some(3), "latest wins");
        assert_eq!(room.flush(t0 + 300 * MS).unwrap(), None);
        assert_eq!(room.offer(&event(4, Status::Processing), t0 + 150 * MS), Decision::Hold(t0 + 200 * MS));
        assert_eq!(room.offer(&event(5, Status::Processing), t0 + 400 * MS), Decision::Emit(EventKind::Update));
    }

    #[test]
    fn terminal_events_go_at_once_drop_the_held_update_and_end_the_room() {
        let t0 = Instant::now();
        let mut room = Throttle::new(100 * MS);
        room.offer(&event(1, Status::Processing), t0);
        room.offer(&event(2, Status::Processing), t0 + MS);
        assert_eq!(room.offer(&event(3, Status::Completed), t0 + 2 * MS), Decision::Emit(EventKind::Complete));
        assert_eq!(room.flush(t0 + 200 * MS).unwrap(), None, "the held update never follows the terminal event");
        assert_eq!(room.offer(&event(2, Status::Processing), t0 + 300 * MS), Decision::Stale);
        assert_eq!(room.offer(&event(9, Status::Processing), t0 + 300 * MS), Decision::Stale, "nothing after the end");
        assert!(room.ended());
    }

    #[test]
    fn stale_sequence_numbers_are_dropped() {
        let t0 = Instant::now();
        let mut room = Throttle::new(100 * MS);
        room.offer(&event(5, Status::Processing), t0);
        assert_eq!(room.offer(&event(5, Status::Processing), t0 + 200 * MS), Decision::Stale);
        assert_eq!(room.offer(&event(4, Status::Error), t0 + 200 * MS), Decision::Stale);
        room.observe(8, false);
        assert_eq!(room.offer(&event(7, Status::Processing), t0 + 400 * MS), Decision::Stale);
        assert_eq!(room.last_seq(), Some(8));
        assert_eq!(EventKind::of(&event(1, Status::Cancelled)).name(), "progress-cancelled");
    }
}
