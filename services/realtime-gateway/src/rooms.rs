//! The progress rooms this replica serves: who is in each, its throttle, and the sockets that
//! are joining (so a joiner gets its snapshot first and nothing older after it).
//!
//! A room exists while it has members and its session has not ended; at the terminal event it is
//! retired (its state freed) and a small tombstone keeps late, older events from reaching anyone.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use shared::ProgressEvent;
use socketioxide::socket::Sid;
use tokio::sync::Mutex as AsyncMutex;
use uuid::Uuid;

use crate::throttle::Throttle;

/// How long an ended session's tombstone is kept.
const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);

/// A shared handle on one room. The lock is held across an emit, so a join never interleaves
/// with one (that is what keeps "snapshot first, nothing older after it" exact).
pub type RoomRef = Arc<AsyncMutex<Room>>;

/// Where a socket stands while it joins.
#[derive(Debug)]
enum Joiner {
    /// Its snapshot is being read; room emits skip it and the newest one is kept for it.
    Waiting(Option<Box<ProgressEvent>>),
    /// It got a snapshot at this `seq`; room emits at or below it skip it.
    CatchingUp(u64),
}

/// One session's room on this replica.
#[derive(Debug)]
pub struct Room {
    /// Local sockets in the room.
    members: HashSet<Sid>,
    /// Rate and order of what the room is sent.
    pub throttle: Throttle,
    joiners: HashMap<Sid, Joiner>,
}

impl Room {
    fn new(interval: Duration) -> Self {
        Room { members: HashSet::new(), throttle: Throttle::new(interval), joiners: HashMap::new() }
    }

    /// True when nobody here would receive an emit.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The sockets an emit of `event` must skip; joiners that have caught up stop being special.
    pub fn skipped_by(&mut self, event: &ProgressEvent) -> Vec<Sid> {
        let mut skipped = Vec::new();
        self.joiners.retain(|sid, joiner| match joiner {
            Joiner::Waiting(newest) => {
                if newest.as_ref().is_none_or(|n| n.seq < event.seq) {
                    *newest = Some(Box::new(event.clone()));
                }
                skipped.push(*sid);
                true
            }
            Joiner::CatchingUp(seen) if event.seq <= *seen => {
                skipped.push(*sid);
                true
            }
            Joiner::CatchingUp(_) => false,
        });
        skipped
    }

    /// Ends `sid`'s join with the snapshot read for it: returns what it must be shown (the newer
    /// of the snapshot and anything the room emitted meanwhile), and sets up what follows.
    pub fn welcome(&mut self, sid: Sid, snapshot: Option<ProgressEvent>) -> Option<ProgressEvent> {
        if !self.members.contains(&sid) {
            return None;
        }
        let emitted_meanwhile = match self.joiners.remove(&sid) {
            Some(Joiner::Waiting(newest)) => newest.map(|n| *n),
            _ => None,
        };
        let shown = match (snapshot, emitted_meanwhile) {
            (Some(a), Some(b)) => Some(if a.seq >= b.seq { a } else { b }),
            (a, b) => a.or(b),
        };
        let shown = shown?;
        if self.members.len() == 1 {
            // Its only member has seen this: the room need never send anything older.
            self.throttle.observe(shown.seq, shown.is_terminal());
        } else if self.throttle.last_seq().is_none_or(|last| last < shown.seq) {
            self.joiners.insert(sid, Joiner::CatchingUp(shown.seq));
        }
        Some(shown)
    }
}

/// How a join found the session.
pub enum Entry {
    /// The room, with the socket in it and marked as joining.
    Live(RoomRef),
    /// The session ended while this replica watched it: nothing more will be emitted.
    Ended,
}

/// Every room of this replica.
#[derive(Debug)]
pub struct Rooms {
    interval: Duration,
    live: Mutex<HashMap<Uuid, RoomRef>>,
    ended: Mutex<HashMap<Uuid, Instant>>,
}

impl Rooms {
    /// No rooms yet; each will throttle updates to one per `interval`.
    pub fn new(interval: Duration) -> Self {
        Rooms { interval, live: Mutex::default(), ended: Mutex::default() }
    }

    /// The live room of a session, if any local socket is in it.
    pub fn get(&self, id: Uuid) -> Option<RoomRef> {
        lock(&self.live).get(&id).cloned()
    }

    /// Sessions with a live room here (the heartbeat's `activeSessions`).
    pub fn active(&self) -> usize {
        lock(&self.live).len()
    }

    /// Puts `sid` in the session's room as a joiner (creating the room).
    pub async fn enter(&self, id: Uuid, sid: Sid) -> Entry {
        if lock(&self.ended).contains_key(&id) {
            return Entry::Ended;
        }
        let room =
            lock(&self.live).entry(id).or_insert_with(|| Arc::new(AsyncMutex::new(Room::new(self.interval)))).clone();
        {
            let mut guard = room.lock().await;
            guard.members.insert(sid);
            guard.joiners.insert(sid, Joiner::Waiting(None));
        }
        Entry::Live(room)
    }

    /// Takes `sid` out of the session's room; an emptied room is freed.
    pub async fn leave(&self, id: Uuid, sid: Sid) {
        let Some(room) = self.get(id) else { return };
        let empty = {
            let mut guard = room.lock().await;
            guard.members.remove(&sid);
            guard.joiners.remove(&sid);
            guard.members.is_empty()
        };
        if empty {
            self.free_if_empty(id);
        }
    }

    /// Frees the room of a session that has ended and remembers that it did.
    pub fn retire(&self, id: Uuid) {
        lock(&self.live).remove(&id);
        lock(&self.ended).insert(id, Instant::now());
    }

    /// Drops old tombstones and rooms left empty (a leave that raced an emit skips the freeing).
    pub fn sweep(&self) {
        lock(&self.ended).retain(|_, at| at.elapsed() < TOMBSTONE_TTL);
        let ids: Vec<Uuid> = lock(&self.live).keys().copied().collect();
        for id in ids {
            self.free_if_empty(id);
        }
    }

    fn free_if_empty(&self, id: Uuid) {
        let mut live = lock(&self.live);
        // `try_lock`: a room being emitted to or joined is in use, so it is not empty for long.
        if live.get(&id).is_some_and(|room| room.try_lock().is_ok_and(|r| r.members.is_empty())) {
            live.remove(&id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while these locks are held, so a poisoned one still holds consistent data.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{Metadata, Phase, Status};

    fn event(seq: u64, status: Status) -> ProgressEvent {
        ProgressEvent {
            progress: 1.0,
            attempt: 1,
            timestamp: 0,
            ..ProgressEvent::new(Uuid::nil(), seq, status, Phase::Loading, Metadata::new("a.csv", "generic", "", 2))
        }
    }

    #[tokio::test]
    async fn a_joiner_is_shown_the_newest_value_first_and_nothing_older_after_it() {
        let rooms = Rooms::new(Duration::from_millis(100));
        let (early, late) = (Sid::new(), Sid::new());
        let Entry::Live(room) = rooms.enter(Uuid::nil(), early).await else { panic!("a live room") };
        let mut guard = room.lock().await;
        assert_eq!(guard.welcome(early, Some(event(3, Status::Processing))).map(|e| e.seq), Some(3));
        assert_eq!(guard.throttle.last_seq(), Some(3), "its only member saw seq 3");
        drop(guard);

        let Entry::Live(room) = rooms.enter(Uuid::nil(), late).await else { panic!("a live room") };
        let mut guard = room.lock().await;
        assert_eq!(guard.skipped_by(&event(4, Status::Processing)), vec![late], "a joiner waits for its snapshot");
        let shown = guard.welcome(late, Some(event(3, Status::Processing)));
        assert_eq!(shown.map(|e| e.seq), Some(4), "what the room sent meanwhile is newer than the snapshot");
        assert!(guard.skipped_by(&event(5, Status::Processing)).is_empty(), "newer events reach everyone");
        drop(guard);

        rooms.retire(Uuid::nil());
        assert!(matches!(rooms.enter(Uuid::nil(), Sid::new()).await, Entry::Ended));
        assert_eq!(rooms.active(), 0);
    }
}
