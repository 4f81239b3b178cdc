//! Counters of what each NAS sent and what became of it, for `nas list`
//! (and, later, metrics).

use std::sync::atomic::{AtomicU64, Ordering};

use super::packet::DropReason;
use crate::model::CounterSnapshot;

/// The counters of one NAS (or of packets from unknown addresses).
#[derive(Debug, Default)]
pub struct Counters {
    access_requests: AtomicU64,
    accepts: AtomicU64,
    rejects: AtomicU64,
    accounting_requests: AtomicU64,
    accounting_responses: AtomicU64,
    status_server: AtomicU64,
    duplicates: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

/// What can be counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    AccessRequest,
    Accept,
    Reject,
    AccountingRequest,
    AccountingResponse,
    StatusServer,
    Duplicate,
    Drop(DropReason),
}

impl Counters {
    pub fn count(&self, event: Event) {
        let counter = match event {
            Event::AccessRequest => &self.access_requests,
            Event::Accept => &self.accepts,
            Event::Reject => &self.rejects,
            Event::AccountingRequest => &self.accounting_requests,
            Event::AccountingResponse => &self.accounting_responses,
            Event::StatusServer => &self.status_server,
            Event::Duplicate => &self.duplicates,
            Event::Drop(reason) => &self.drops[reason.index()],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            access_requests: get(&self.access_requests),
            accepts: get(&self.accepts),
            rejects: get(&self.rejects),
            accounting_requests: get(&self.accounting_requests),
            accounting_responses: get(&self.accounting_responses),
            status_server: get(&self.status_server),
            duplicates: get(&self.duplicates),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.as_str().to_owned(), get(&self.drops[r.index()])))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}
