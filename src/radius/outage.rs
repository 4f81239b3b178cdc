//! What the RADIUS side does when the database cannot be reached: decide
//! logins from what was known shortly before (or reject them), as
//! configured.

use std::sync::{Mutex, PoisonError};

use hashlink::LruCache;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::OutagePolicy;
use crate::model::AuthRecord;

/// The last known authentication records, for `on_outage = "cache"`: at
/// most `capacity` logins, the least recently seen forgotten first. Each
/// look-up moves its login to the front with a fresh time, so the oldest,
/// the expired among them, are the first to go.
pub struct AuthCache {
    policy: OutagePolicy,
    ttl: Duration,
    records: Mutex<LruCache<String, (AuthRecord, Instant)>>,
}

impl AuthCache {
    pub fn new(policy: OutagePolicy, ttl: Duration, capacity: usize) -> AuthCache {
        AuthCache {
            policy,
            ttl,
            records: Mutex::new(LruCache::new(capacity.max(1))),
        }
    }

    /// Logins remembered now.
    pub fn len(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers what the store said about a login (only with the cache
    /// policy).
    pub fn remember(&self, username: &str, record: Option<&AuthRecord>, now: Instant) {
        if self.policy != OutagePolicy::Cache {
            return;
        }
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        match record {
            Some(record) => {
                records.insert(username.to_owned(), (record.clone(), now));
            }
            None => {
                records.remove(username);
            }
        }
    }

    /// What was known of a login within the time to live, if the policy
    /// allows answering from it.
    pub fn recall(&self, username: &str, now: Instant) -> Option<AuthRecord> {
        if self.policy != OutagePolicy::Cache {
            return None;
        }
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        // A peek: recalling does not make a record newer, so the order
        // stays that of the times the store gave them.
        records
            .peek(username)
            .filter(|(_, at)| now - *at <= self.ttl)
            .map(|(record, _)| record.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Password;
    use crate::policy::ContractState;

    fn record() -> AuthRecord {
        AuthRecord {
            username: "maria".into(),
            password: Password::Cleartext("pw".into()),
            contract_id: "1".into(),
            state: ContractState::Active,
            open_release_ends_at: None,
            reply: Vec::new(),
        }
    }

    #[test]
    fn the_cache_answers_within_its_time_to_live_only() {
        let t0 = Instant::now();
        let cache = AuthCache::new(OutagePolicy::Cache, Duration::from_secs(300), 10);
        cache.remember("maria", Some(&record()), t0);
        assert!(
            cache
                .recall("maria", t0 + Duration::from_secs(300))
                .is_some()
        );
        assert!(
            cache
                .recall("maria", t0 + Duration::from_secs(301))
                .is_none()
        );
        assert!(cache.recall("jose", t0).is_none());
        // A login the store no longer knows is forgotten.
        cache.remember("maria", None, t0);
        assert!(cache.recall("maria", t0).is_none());
        // The reject policy keeps nothing.
        let reject = AuthCache::new(OutagePolicy::Reject, Duration::from_secs(300), 10);
        reject.remember("maria", Some(&record()), t0);
        assert!(reject.recall("maria", t0).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_least_recently_seen_first() {
        let t0 = Instant::now();
        let cache = AuthCache::new(OutagePolicy::Cache, Duration::from_secs(300), 3);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            cache.remember(name, Some(&record()), t0 + Duration::from_secs(i as u64));
        }
        // Seen again: a moves to the front.
        cache.remember("a", Some(&record()), t0 + Duration::from_secs(5));
        cache.remember("d", Some(&record()), t0 + Duration::from_secs(6));
        assert_eq!(cache.len(), 3);
        let now = t0 + Duration::from_secs(7);
        assert!(cache.recall("b", now).is_none(), "the oldest went first");
        for name in ["a", "c", "d"] {
            assert!(cache.recall(name, now).is_some(), "{name}");
        }
        // A recall does not keep an old record from going next.
        cache.remember("e", Some(&record()), t0 + Duration::from_secs(8));
        assert!(cache.recall("c", now).is_none());
        for n in 0..1_000 {
            cache.remember(&format!("x{n}"), Some(&record()), now);
        }
        assert_eq!(cache.len(), 3);
    }
}
