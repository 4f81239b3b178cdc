//! The duplicate cache: a retransmission (same source, identifier and
//! Request Authenticator) within the window gets the byte-identical reply
//! without running the request again; one still being processed is
//! ignored. Only packets that passed every check get here, so a forged
//! packet can neither fill nor evict it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

/// What identifies a request for retransmission purposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub source: SocketAddr,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

enum Entry {
    InProgress,
    Done { reply: Vec<u8>, expires: Instant },
}

/// What the cache says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: process it (and call [`ReplyCache::finish`]).
    New,
    /// Being processed: ignore the retransmission.
    InProgress,
    /// Answered already: send this again.
    Answered(Vec<u8>),
}

/// Replies by request, for a fixed window.
pub struct ReplyCache {
    entries: HashMap<Key, Entry>,
    /// Expiry order; an item may be stale (its entry was replaced).
    expiry: VecDeque<(Instant, Key)>,
    window: Duration,
    capacity: usize,
}

impl ReplyCache {
    /// A cache keeping replies for `window`, tracking at most `capacity`
    /// requests (beyond that, requests are processed without tracking).
    pub fn new(window: Duration, capacity: usize) -> ReplyCache {
        ReplyCache {
            entries: HashMap::new(),
            expiry: VecDeque::new(),
            window,
            capacity,
        }
    }

    /// Looks a request up; a new one is marked as in progress.
    pub fn begin(&mut self, key: Key, now: Instant) -> Seen {
        self.expire(now);
        match self.entries.get(&key) {
            Some(Entry::InProgress) => Seen::InProgress,
            Some(Entry::Done { reply, .. }) => Seen::Answered(reply.clone()),
            None => {
                if self.entries.len() < self.capacity {
                    self.entries.insert(key, Entry::InProgress);
                }
                Seen::New
            }
        }
    }

    /// Records the reply sent to a request.
    pub fn finish(&mut self, key: Key, reply: Vec<u8>, now: Instant) {
        if !self.entries.contains_key(&key) {
            return;
        }
        let expires = now + self.window;
        self.entries.insert(key, Entry::Done { reply, expires });
        self.expiry.push_back((expires, key));
    }

    /// Forgets a request that got no reply, so that its retransmission is
    /// processed again.
    pub fn abandon(&mut self, key: Key) {
        if matches!(self.entries.get(&key), Some(Entry::InProgress)) {
            self.entries.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.expiry.front().copied() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            if let Some(Entry::Done { expires, .. }) = self.entries.get(&key)
                && *expires <= now
            {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> Key {
        Key {
            source: "127.0.0.1:5000".parse().unwrap(),
            identifier: id,
            authenticator: [id; 16],
        }
    }

    #[test]
    fn a_retransmission_gets_the_same_reply_within_the_window() {
        let t0 = Instant::now();
        let mut cache = ReplyCache::new(Duration::from_secs(5), 100);
        assert_eq!(cache.begin(key(1), t0), Seen::New);
        assert_eq!(cache.begin(key(1), t0), Seen::InProgress);
        cache.finish(key(1), vec![1, 2, 3], t0);
        let t4 = t0 + Duration::from_secs(4);
        assert_eq!(cache.begin(key(1), t4), Seen::Answered(vec![1, 2, 3]));
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(cache.begin(key(1), t5), Seen::New);
    }

    #[test]
    fn another_authenticator_or_source_is_another_request() {
        let t0 = Instant::now();
        let mut cache = ReplyCache::new(Duration::from_secs(5), 100);
        cache.begin(key(1), t0);
        cache.finish(key(1), vec![1], t0);
        let mut other = key(1);
        other.authenticator = [9; 16];
        assert_eq!(cache.begin(other, t0), Seen::New);
        let mut moved = key(1);
        moved.source = "127.0.0.1:5001".parse().unwrap();
        assert_eq!(cache.begin(moved, t0), Seen::New);
    }

    #[test]
    fn abandoned_requests_are_processed_again_and_the_cache_is_bounded() {
        let t0 = Instant::now();
        let mut cache = ReplyCache::new(Duration::from_secs(5), 2);
        cache.begin(key(1), t0);
        cache.abandon(key(1));
        assert_eq!(cache.begin(key(1), t0), Seen::New);
        cache.begin(key(2), t0);
        // Full: a third is processed but not tracked.
        assert_eq!(cache.begin(key(3), t0), Seen::New);
        assert_eq!(cache.begin(key(3), t0), Seen::New);
        assert_eq!(cache.len(), 2);
        cache.finish(key(1), vec![], t0);
        cache.finish(key(2), vec![], t0);
        cache.begin(key(4), t0 + Duration::from_secs(6));
        assert_eq!(cache.len(), 1);
    }
}
