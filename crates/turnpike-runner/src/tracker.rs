//! Offset bookkeeping for one assigned partition: which offsets are in flight, which session each belongs
//! to, and the next offset that is safe to store.
//!
//! Offsets complete out of order (sessions run concurrently), but the stored offset only ever covers the
//! contiguous completed prefix: storing `n + k` while `n` is still running would lose `n` on a crash.
//! The value stored is the *next* offset to read (last completed + 1), as `rd_kafka_offsets_store` expects.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// Bookkeeping for one partition within one assignment.
#[derive(Debug)]
pub struct PartitionTracker<M> {
    /// Offsets received and not yet completed.
    in_flight: BTreeSet<i64>,
    /// Highest offset received in this assignment.
    highest_seen: Option<i64>,
    /// Last offset passed to the consumer's offset store (exclusive: the next to read).
    last_stored: Option<i64>,
    /// Sessions with a task running; the queue holds their later messages, in arrival order.
    sessions: HashMap<Vec<u8>, VecDeque<M>>,
}

impl<M> Default for PartitionTracker<M> {
    fn default() -> Self {
        PartitionTracker { in_flight: BTreeSet::new(), highest_seen: None, last_stored: None, sessions: HashMap::new() }
    }
}

/// What to do with a newly received message.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<M> {
    /// No task runs for this session: start one with the message.
    Start(M),
    /// A task runs for this session; the message waits in its queue.
    Queued,
}

impl<M> PartitionTracker<M> {
    /// Records a received message of `session` at `offset`.
    pub fn receive(&mut self, session: &[u8], offset: i64, message: M) -> Admit<M> {
        self.in_flight.insert(offset);
        self.highest_seen = Some(self.highest_seen.map_or(offset, |h| h.max(offset)));
        match self.sessions.get_mut(session) {
            Some(queue) => {
                queue.push_back(message);
                Admit::Queued
            }
            None => {
                self.sessions.insert(session.to_vec(), VecDeque::new());
                Admit::Start(message)
            }
        }
    }

    /// Marks `offset` of `session` done. Returns the session's next queued message (the task continues
    /// with it) or `None` (the session is idle and its entry is removed).
    pub fn complete(&mut self, session: &[u8], offset: i64) -> Option<M> {
        self.in_flight.remove(&offset);
        let queue = self.sessions.get_mut(session)?;
        match queue.pop_front() {
            Some(next) => Some(next),
            None => {
                self.sessions.remove(session);
                None
            }
        }
    }

    /// The offset to store if it moved forward since the last call: the lowest in-flight offset, or one past
    /// the highest seen when nothing is in flight.
    pub fn take_commit(&mut self) -> Option<i64> {
        let next = match self.in_flight.first() {
            Some(lowest) => *lowest,
            None => self.highest_seen? + 1,
        };
        if self.last_stored.is_some_and(|s| s >= next) {
            return None;
        }
        self.last_stored = Some(next);
        Some(next)
    }

    /// Messages received and not completed (running or queued).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sessions with a running task.
    pub fn active_sessions(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_only_the_contiguous_completed_prefix() {
        let mut t = PartitionTracker::default();
        assert_eq!(t.receive(b"a", 10, 10), Admit::Start(10));
        assert_eq!(t.receive(b"b", 11, 11), Admit::Start(11));
        assert_eq!(t.receive(b"c", 12, 12), Admit::Start(12));
        // 11 and 12 finish first: nothing may be stored while 10 runs.
        assert_eq!(t.complete(b"b", 11), None);
        assert_eq!(t.complete(b"c", 12), None);
        assert_eq!(t.take_commit(), Some(10), "10 is the next to read; storing it is a no-op advance");
        assert_eq!(t.take_commit(), None);
        assert_eq!(t.complete(b"a", 10), None);
        // Everything done: the next offset to read is 13 (last completed + 1), never 12.
        assert_eq!(t.take_commit(), Some(13));
        assert_eq!(t.take_commit(), None);
    }

    #[test]
    fn a_session_runs_one_message_at_a_time_in_order() {
        let mut t = PartitionTracker::default();
        assert_eq!(t.receive(b"s", 1, "m1"), Admit::Start("m1"));
        assert_eq!(t.receive(b"s", 2, "m2"), Admit::Queued);
        assert_eq!(t.receive(b"other", 3, "x"), Admit::Start("x"));
        assert_eq!(t.receive(b"s", 4, "m4"), Admit::Queued);
        assert_eq!(t.complete(b"s", 1), Some("m2"));
        assert_eq!(t.complete(b"s", 2), Some("m4"));
        assert_eq!(t.active_sessions(), 2);
        assert_eq!(t.complete(b"s", 4), None);
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.take_commit(), Some(3), "3 (other session) still runs");
        assert_eq!(t.complete(b"other", 3), None);
        assert_eq!(t.take_commit(), Some(5));
        assert_eq!(t.active_sessions(), 0);
    }
}
