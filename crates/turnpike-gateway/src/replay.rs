//! The events this gateway instance appended lately, per input partition, kept in memory so they can be put
//! back when Redis comes back empty.
//!
//! Why: the session streams are the only copy of what a disconnected client has not read yet. If Redis
//! restarts without its data, the outbound records behind those events are already consumed (their offsets
//! committed), so nothing would bring them back and a resuming client would silently miss the end of a reply.
//! The stage notices the loss through a marker key per partition (see `stage.rs`) and re-appends what this
//! buffer holds for that partition, in the order it was first appended, before anything newer. Entry ids are
//! the same as the first time, so events a client already has are not sent again.
//!
//! Bounded: events older than the window, and the oldest beyond a per-partition cap, are dropped. What it does
//! not cover: events appended by an instance that has since restarted or lost the partition in a rebalance
//! (docs/kafka-contract.md says so).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One appended event, with everything needed to append it again.
#[derive(Clone, Debug)]
pub struct Appended {
    pub stream: String,
    pub trim_mark: String,
    pub id: String,
    pub channel: String,
    pub turn_id: String,
    pub kind: &'static str,
    pub json: String,
    /// Set as the trim mark when this event creates the stream (see `stage.rs`).
    pub gap_mark: String,
}

/// Recent appends per input partition.
pub struct Recent {
    window: Duration,
    cap: usize,
    partitions: Mutex<HashMap<String, VecDeque<(Instant, Appended)>>>,
}

impl Recent {
    pub fn new(window: Duration, cap: usize) -> Recent {
        Recent { window, cap, partitions: Mutex::new(HashMap::new()) }
    }

    /// Keeps `event`, appended from `partition`, and forgets what fell out of the window or the cap.
    pub fn remember(&self, partition: &str, event: Appended) {
        if self.cap == 0 {
            return;
        }
        let now = Instant::now();
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let kept = partitions.entry(partition.to_owned()).or_default();
        kept.push_back((now, event));
        while kept.len() > self.cap || kept.front().is_some_and(|(at, _)| now.duration_since(*at) > self.window) {
            kept.pop_front();
        }
    }

    /// Whether anything appended from `partition` is still kept (then a missing marker means lost events).
    pub fn holds(&self, partition: &str) -> bool {
        let partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        partitions.get(partition).is_some_and(|kept| kept.back().is_some_and(|(at, _)| at.elapsed() <= self.window))
    }

    /// What `partition`'s events are still kept, oldest first.
    pub fn events(&self, partition: &str) -> Vec<Appended> {
        let partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(kept) = partitions.get(partition) else { return Vec::new() };
        kept.iter().filter(|(at, _)| at.elapsed() <= self.window).map(|(_, e)| e.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> Appended {
        Appended {
            stream: "s".into(),
            trim_mark: "m".into(),
            id: id.into(),
            channel: "c".into(),
            turn_id: "t".into(),
            kind: "delta",
            json: "{}".into(),
            gap_mark: String::new(),
        }
    }

    #[test]
    fn keeps_events_per_partition_in_order_up_to_the_cap() {
        let recent = Recent::new(Duration::from_secs(60), 3);
        for id in ["1-0", "1-1", "1-2", "2-0"] {
            recent.remember("p/0", event(id));
        }
        recent.remember("p/1", event("9-0"));
        let ids: Vec<String> = recent.events("p/0").into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["1-1", "1-2", "2-0"], "the oldest beyond the cap is dropped");
        assert!(recent.holds("p/1"));
        assert!(!recent.holds("p/2"));
    }

    #[test]
    fn forgets_what_fell_out_of_the_window() {
        let recent = Recent::new(Duration::from_millis(20), 10);
        recent.remember("p/0", event("1-0"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!recent.holds("p/0"));
        assert!(recent.events("p/0").is_empty());
        let off = Recent::new(Duration::from_secs(60), 0);
        off.remember("p/0", event("1-0"));
        assert!(!off.holds("p/0"), "a cap of 0 turns the buffer off");
    }
}
