//! `require_message_authenticator = "auto"`, FreeRADIUS 3.2.5's answer to
//! BlastRADIUS (CVE-2024-3596): a NAS that does not sign its
//! Access-Requests (pppd's RADIUS client never does) is served, and one
//! that has been seen signing them must go on signing them, so that a
//! forger cannot fall back to unsigned requests. What was seen is kept per
//! NAS entry and source address, and remembered in the database across
//! restarts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

/// Where a source's signing stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Recorded in the database.
    Remembered,
    /// Being recorded now.
    Storing,
    /// Seen, but the database did not take it yet: recorded again at the
    /// next signed request.
    NotStored,
}

/// The NAS entries and source addresses that have sent Message-Authenticator:
/// by entry name, then by address, so that the check each Access-Request
/// makes allocates nothing.
#[derive(Debug, Default)]
pub struct Signers {
    seen: Mutex<HashMap<String, HashMap<IpAddr, Seen>>>,
}

/// What to do about a signed Access-Request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// The source was known and remembered: nothing.
    Known,
    /// First seen now: required from now on; record it (and say so).
    New,
    /// Known, but not recorded yet: record it again.
    Unstored,
}

impl Signers {
    /// Those the database remembers.
    pub fn remembered<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Signers {
        let signers = Signers::default();
        signers.merge(entries);
        signers
    }

    /// Whether Message-Authenticator is required from `source` of `nas`.
    pub fn required(&self, nas: &str, source: IpAddr) -> bool {
        self.lock()
            .get(nas)
            .is_some_and(|sources| sources.contains_key(&source.to_canonical()))
    }

    /// Adds what the database remembers (at start, and later what another
    /// instance on the same database saw); entries that do not parse as an
    /// address are skipped. Returns how many were new here.
    pub fn merge<'a>(&self, entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
        let mut seen = self.lock();
        let mut added = 0;
        for (nas, source) in entries {
            let Ok(ip) = source.parse::<IpAddr>() else {
                continue;
            };
            let sources = seen.entry(nas.to_owned()).or_default();
            match sources.get(&ip.to_canonical()) {
                Some(Seen::Remembered | Seen::Storing) => {}
                Some(Seen::NotStored) => {
                    sources.insert(ip.to_canonical(), Seen::Remembered);
                }
                None => {
                    sources.insert(ip.to_canonical(), Seen::Remembered);
                    added += 1;
                }
            }
        }
        added
    }

    /// A signed Access-Request came from `source` of `nas`.
    pub fn saw_signed(&self, nas: &str, source: IpAddr) -> Learned {
        let mut seen = self.lock();
        let sources = seen.entry(nas.to_owned()).or_default();
        let ip = source.to_canonical();
        match sources.get(&ip).copied() {
            Some(Seen::Remembered | Seen::Storing) => Learned::Known,
            Some(Seen::NotStored) => {
                sources.insert(ip, Seen::Storing);
                Learned::Unstored
            }
            None => {
                sources.insert(ip, Seen::Storing);
                Learned::New
            }
        }
    }

    /// The database took the record (`true`) or refused it.
    pub fn stored(&self, nas: &str, source: IpAddr, stored: bool) {
        let state = if stored {
            Seen::Remembered
        } else {
            Seen::NotStored
        };
        self.lock()
            .entry(nas.to_owned())
            .or_default()
            .insert(source.to_canonical(), state);
    }

    /// The sources of `nas` it is required from, for `nas list`.
    pub fn sources_of(&self, nas: &str) -> Vec<IpAddr> {
        let mut sources: Vec<IpAddr> = self
            .lock()
            .get(nas)
            .map(|sources| sources.keys().copied().collect())
            .unwrap_or_default();
        sources.sort_unstable();
        sources
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<IpAddr, Seen>>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_source_is_required_to_sign_once_it_has_signed() {
        let signers = Signers::default();
        assert!(!signers.required("bras", ip("10.0.0.1")));
        assert_eq!(signers.saw_signed("bras", ip("10.0.0.1")), Learned::New);
        assert!(signers.required("bras", ip("10.0.0.1")));
        // Per NAS entry and per address.
        assert!(!signers.required("bras", ip("10.0.0.2")));
        assert!(!signers.required("other", ip("10.0.0.1")));
        // An IPv4-mapped IPv6 source is the same address.
        assert!(signers.required("bras", ip("::ffff:10.0.0.1")));
        assert_eq!(signers.saw_signed("bras", ip("10.0.0.1")), Learned::Known);
    }

    #[test]
    fn what_the_database_refused_is_recorded_again_and_stays_required() {
        let signers = Signers::default();
        assert_eq!(signers.saw_signed("bras", ip("10.0.0.1")), Learned::New);
        signers.stored("bras", ip("10.0.0.1"), false);
        assert!(signers.required("bras", ip("10.0.0.1")));
        assert_eq!(
            signers.saw_signed("bras", ip("10.0.0.1")),
            Learned::Unstored
        );
        // One record at a time.
        assert_eq!(signers.saw_signed("bras", ip("10.0.0.1")), Learned::Known);
        signers.stored("bras", ip("10.0.0.1"), true);
        assert_eq!(signers.saw_signed("bras", ip("10.0.0.1")), Learned::Known);
    }

    #[test]
    fn what_another_instance_remembered_is_merged_in() {
        let signers = Signers::default();
        assert_eq!(signers.saw_signed("bras", ip("10.0.0.1")), Learned::New);
        let added = signers.merge([("bras", "10.0.0.1"), ("bras", "10.0.0.2"), ("x", "bad")]);
        assert_eq!(added, 1);
        assert!(signers.required("bras", ip("10.0.0.2")));
        assert_eq!(signers.merge([("bras", "10.0.0.2")]), 0);
    }

    #[test]
    fn remembered_sources_are_required_from_the_start() {
        let signers = Signers::remembered([("bras", "10.0.0.1"), ("bras", "not an address")]);
        assert!(signers.required("bras", ip("10.0.0.1")));
        assert_eq!(signers.sources_of("bras"), vec![ip("10.0.0.1")]);
    }
}
