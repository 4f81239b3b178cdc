//! The enforcer: sends the CoA and Disconnect requests the outbox holds,
//! and records what the NAS answered.
//!
//! Jobs are queued by the application ([`crate::app`]) in the same
//! transaction as the change that causes them; the enforcer takes pending jobs oldest first, builds each
//! request once (kept in the outbox, so that a retransmission — even after
//! a restart — is byte-identical), sends it within the NAS's limits (in
//! flight, per second), retransmits at RFC 5080 intervals, and finishes
//! the job on the checked answer or after the last send. One job per
//! session is in flight at a time, so a NAS sees changes in order.
//!
//! - [`machine`]: every decision, sans-IO — the queue, the lanes per NAS,
//!   the requests in flight and their deadlines, leases, the drain; it
//!   takes events and returns actions;
//! - `lane`: one NAS's limits (in flight, identifiers, the sliding
//!   one-second window);
//! - [`request`]: which request, its bytes, the meaning of an answer (pure);
//! - [`transport`]: the UDP socket (or, in tests, channels);
//! - this file: the async shell — the store, the socket, the timers and
//!   the wake-ups; it carries out the machine's actions and feeds back what
//!   came of them.

mod lane;
pub mod machine;
pub mod request;
#[cfg(test)]
mod tests;
pub mod transport;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::EnforcementConfig;
use crate::radius::server::SharedSettings;
use crate::store::{Outbox, StoreError};
use machine::{Action, Context, Machine, StoreFailed};
pub use transport::{Transport, UdpTransport};

/// Answers already received that are handled before their outcomes are
/// recorded together.
const ANSWERS_AT_ONCE: usize = 256;

/// What the log says when a step of the pump (fetch, claim, record) fails.
const PUMP_FAILED: &str = "enforcement: outbox not processed; retrying";

/// What other parts hold to wake the enforcer and follow its progress.
#[derive(Clone)]
pub struct EnforcerHandle {
    wake: Arc<Notify>,
    progress: watch::Receiver<u64>,
}

impl EnforcerHandle {
    /// New jobs were queued: look at the outbox now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A receiver that changes each time a job finishes.
    pub fn progress(&self) -> watch::Receiver<u64> {
        self.progress.clone()
    }
}

/// The enforcer task: the [`Machine`] and what it acts through.
pub struct Enforcer<T: Transport> {
    store: Arc<dyn Outbox>,
    settings: SharedSettings,
    clock: Arc<dyn Clock>,
    transport: T,
    wake: Arc<Notify>,
    progress: watch::Sender<u64>,
    machine: Machine,
}

enum Wake {
    Stop,
    Notified,
    Reply(Option<(SocketAddr, Vec<u8>)>),
    Deadline,
}

impl<T: Transport> Enforcer<T> {
    pub fn new(
        store: Arc<dyn Outbox>,
        settings: SharedSettings,
        clock: Arc<dyn Clock>,
        config: EnforcementConfig,
        instance: &str,
        transport: T,
    ) -> (Enforcer<T>, EnforcerHandle) {
        let wake = Arc::new(Notify::new());
        let (progress, progress_rx) = watch::channel(0);
        let handle = EnforcerHandle {
            wake: Arc::clone(&wake),
            progress: progress_rx,
        };
        let enforcer = Enforcer {
            store,
            settings,
            clock,
            transport,
            wake,
            progress,
            machine: Machine::new(config, instance, Instant::now().into_std()),
        };
        (enforcer, handle)
    }

    /// Runs until `shutdown`, then waits (at most `drain`) for the answers
    /// to the requests in flight, sending no new ones. Requests still
    /// unanswered stay `sent` in the outbox and are sent again,
    /// identically, at the next start.
    pub async fn run(mut self, shutdown: CancellationToken, drain: Duration) {
        loop {
            let actions = self.machine.pump(&self.context());
            self.carry_out(actions).await;
            let deadline = Instant::from_std(self.machine.wake_at());
            let wake = if shutdown.is_cancelled() {
                Wake::Stop
            } else if deadline <= Instant::now() {
                // Due already (the first look for requests left in flight):
                // a timer would wait for the next millisecond tick.
                Wake::Deadline
            } else {
                let notified = self.wake.notified();
                tokio::select! {
                    () = shutdown.cancelled() => Wake::Stop,
                    () = notified => Wake::Notified,
                    received = self.transport.recv() => Wake::Reply(received),
                    () = tokio::time::sleep_until(deadline) => Wake::Deadline,
                }
            };
            match wake {
                Wake::Stop => {
                    self.drain(drain).await;
                    break;
                }
                Wake::Notified => {}
                Wake::Reply(Some((from, bytes))) => {
                    self.receive(from, &bytes).await;
                    // The answers already here too, so that their outcomes
                    // are recorded in one transaction.
                    for _ in 1..ANSWERS_AT_ONCE {
                        match self.transport.recv().now_or_never() {
                            Some(Some((from, bytes))) => self.receive(from, &bytes).await,
                            _ => break,
                        }
                    }
                }
                Wake::Reply(None) => {
                    tracing::error!("enforcement: the CoA socket closed");
                    break;
                }
                Wake::Deadline => {
                    let actions = self.machine.time_passed(&self.context());
                    self.carry_out(actions).await;
                }
            }
        }
    }

    /// Lets the requests in flight finish (answers and retransmissions)
    /// until none is left or the deadline passes, then records what is
    /// left to record.
    async fn drain(&mut self, deadline: Duration) {
        self.machine.stop(deadline, &self.context());
        while !self.machine.drained(Instant::now().into_std()) {
            let next = Instant::from_std(self.machine.wake_at());
            if next <= Instant::now() {
                let actions = self.machine.time_passed(&self.context());
                self.carry_out(actions).await;
                continue;
            }
            tokio::select! {
                received = self.transport.recv() => match received {
                    Some((from, bytes)) => self.receive(from, &bytes).await,
                    None => break,
                },
                () = tokio::time::sleep_until(next) => {
                    let actions = self.machine.time_passed(&self.context());
                    self.carry_out(actions).await;
                }
            }
        }
        let actions = self.machine.close(&self.context());
        self.carry_out(actions).await;
        let unanswered = self.machine.in_flight();
        if unanswered > 0 {
            tracing::info!(
                requests = unanswered,
                "enforcement: stopping with requests unanswered; they are sent again at the next start"
            );
        }
    }

    /// Both clocks, read now, and the settings in force.
    fn context(&self) -> Context {
        Context {
            at: Instant::now().into_std(),
            wall: self.clock.now(),
            settings: self.settings.load_full(),
        }
    }

    async fn receive(&mut self, from: SocketAddr, bytes: &[u8]) {
        let actions = self.machine.received(from, bytes, &self.context());
        self.carry_out(actions).await;
    }

    /// Carries out the machine's actions in order; what the machine makes
    /// of a store call's answer is carried out before the actions after it.
    async fn carry_out(&mut self, actions: Vec<Action>) {
        let mut todo = VecDeque::from(actions);
        while let Some(action) = todo.pop_front() {
            let then = self.carry_out_one(action).await;
            for action in then.into_iter().rev() {
                todo.push_front(action);
            }
        }
    }

    async fn carry_out_one(&mut self, action: Action) -> Vec<Action> {
        match action {
            Action::Send { to, packet } => {
                if let Err(e) = self.transport.send(to, &packet).await {
                    // Counted as a send: the retransmission timer covers it.
                    tracing::warn!(destination = %to, error = %e, "enforcement: send failed");
                }
                Vec::new()
            }
            Action::Progress(finished) => {
                self.progress.send_modify(|n| *n = n.wrapping_add(finished));
                Vec::new()
            }
            Action::Fetch { after, limit } => {
                let result = self.store.pending_jobs(after, limit).await;
                let result = self.logged(result, PUMP_FAILED);
                self.machine.fetched(result, &self.context())
            }
            Action::Claim { claims, lease, now } => {
                let claims: Vec<_> = claims.iter().map(machine::Claim::as_job_claim).collect();
                let result = self.store.claim_jobs(&claims, &lease, now).await;
                let result = self.logged(result, PUMP_FAILED);
                self.machine.claimed(result, &self.context())
            }
            Action::Record {
                results,
                now,
                stopping,
            } => {
                let result = self.store.finish_jobs(&results, now).await;
                let result = match result {
                    Err(e) if stopping => {
                        tracing::error!(
                            error = %e,
                            jobs = results.len(),
                            "enforcement: outcomes not recorded; those requests are sent again at the next start"
                        );
                        Err(StoreFailed)
                    }
                    result => self.logged(result, PUMP_FAILED),
                };
                self.machine.recorded(result, &self.context())
            }
            Action::Resent {
                key,
                id,
                sends,
                lease,
                now,
            } => {
                let result = self.store.job_resent(id, sends, &lease, now).await;
                let result = self.logged(result, "enforcement: retransmission not recorded");
                self.machine.resent(key, id, result, &self.context())
            }
            Action::FallBack { id, outcome, now } => {
                let result = self.store.fall_back(id, &outcome, now).await;
                let result = self.logged(result, "enforcement: outcome not recorded");
                self.machine.fell_back(id, result, &self.context())
            }
            Action::TakeOver {
                lease,
                now,
                starting,
            } => {
                let result = self.store.inflight_jobs(&lease, now).await;
                let result = self.logged(result, take_over_failed(starting));
                self.machine.taken_over(result, &self.context())
            }
            Action::Resumed {
                id,
                sends,
                lease,
                now,
                starting,
            } => {
                let result = self.store.job_resent(id, sends, &lease, now).await;
                let result = self.logged(result, take_over_failed(starting));
                self.machine.resumed(result, &self.context())
            }
        }
    }

    /// The store's answer as the machine takes it, the failure logged.
    fn logged<V>(&self, result: Result<V, StoreError>, what: &str) -> Result<V, StoreFailed> {
        result.map_err(|e| {
            crate::store::log_failure(self.store.as_ref(), what, &e);
            StoreFailed
        })
    }
}

/// What the log says when looking for requests left in flight fails.
fn take_over_failed(starting: bool) -> &'static str {
    if starting {
        "enforcement: cannot read the outbox; retrying"
    } else {
        "enforcement: cannot look for abandoned requests"
    }
}
