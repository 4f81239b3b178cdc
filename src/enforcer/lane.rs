//! One NAS's limits: requests in flight, the identifiers they use, and the
//! requests started in the last second (a sliding window, so that no second
//! sees more than the limit, even the one after a burst). Pure: the instant
//! is always given.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The sliding window's length.
const SECOND: Duration = Duration::from_secs(1);

/// Per-NAS limits, as the state machine keeps them.
#[derive(Debug, Default)]
pub(super) struct Lane {
    /// Requests waiting for an answer (or reserved, about to be sent).
    pub(super) in_flight: usize,
    /// Identifiers of the requests in flight: a NAS tells answers apart by
    /// identifier, so none is reused until its request ends.
    pub(super) identifiers: HashSet<u8>,
    next_identifier: u8,
    /// When each request of the last second was sent, oldest first.
    pub(super) started: VecDeque<Instant>,
    /// Requests prepared, not sent yet: they count as if sent now.
    pub(super) reserved: usize,
}

impl Lane {
    /// Whether one more request may start at `now`.
    pub(super) fn may_start(&mut self, now: Instant, per_second: u32) -> bool {
        while self.started.front().is_some_and(|&at| at + SECOND <= now) {
            self.started.pop_front();
        }
        self.started.len() + self.reserved < per_second as usize
    }

    /// When the next request may start (the window is full).
    pub(super) fn next_start(&self) -> Option<Instant> {
        self.started.front().map(|&at| at + SECOND)
    }

    /// An identifier no request in flight uses, taken; `None` when all
    /// 256 are.
    pub(super) fn allocate(&mut self) -> Option<u8> {
        for _ in 0..=u8::MAX {
            let candidate = self.next_identifier;
            self.next_identifier = self.next_identifier.wrapping_add(1);
            if self.identifiers.insert(candidate) {
                return Some(candidate);
            }
        }
        None
    }

    /// A request ended (or was never sent): its identifier and its place
    /// are free again.
    pub(super) fn release(&mut self, identifier: u8) {
        self.identifiers.remove(&identifier);
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_second_sees_more_requests_than_the_nas_limit() {
        let t0 = Instant::now();
        let mut lane = Lane::default();
        for _ in 0..20 {
            assert!(lane.may_start(t0, 20));
            lane.started.push_back(t0);
        }
        // A burst fills the second; the window slides, it does not refill.
        assert!(!lane.may_start(t0 + Duration::from_millis(999), 20));
        assert_eq!(lane.next_start(), Some(t0 + Duration::from_secs(1)));
        assert!(lane.may_start(t0 + Duration::from_secs(1), 20));
        // Prepared but not sent yet counts too.
        lane.reserved = 20;
        assert!(!lane.may_start(t0 + Duration::from_secs(1), 20));
        lane.reserved = 0;
        let t1 = t0 + Duration::from_millis(1500);
        for _ in 0..20 {
            assert!(lane.may_start(t1, 20));
            lane.started.push_back(t1);
        }
        assert!(!lane.may_start(t1 + Duration::from_millis(999), 20));
    }

    #[test]
    fn identifiers_in_use_are_not_given_out_again() {
        let mut lane = Lane::default();
        let all: HashSet<u8> = (0..256).map(|_| lane.allocate().unwrap()).collect();
        assert_eq!(all.len(), 256);
        assert_eq!(lane.allocate(), None, "all 256 in use");
        lane.in_flight = 256;
        lane.release(42);
        assert_eq!(lane.in_flight, 255);
        assert_eq!(lane.allocate(), Some(42), "the one freed, and only it");
        assert_eq!(lane.allocate(), None);
    }
}
