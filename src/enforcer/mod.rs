//! The enforcer: sends the CoA and Disconnect requests the store's outbox
//! holds, and records what the NAS answered.
//!
//! Jobs are written by the store in the same transaction as the change that
//! causes them; this task takes pending jobs oldest first, builds each
//! request once (kept in the outbox, so that a retransmission — even after
//! a restart — is byte-identical), sends it within the NAS's limits (in
//! flight, per second), retransmits at RFC 5080 intervals, and finishes
//! the job on the checked answer or after the last send. One job per
//! session is in flight at a time, so a NAS sees changes in order.
//!
//! - [`request`]: which request, its bytes, the meaning of an answer (pure);
//! - [`transport`]: the UDP socket (or, in tests, channels).

pub mod request;
#[cfg(test)]
mod tests;
pub mod transport;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{CoaMode, EnforcementConfig};
use crate::model::{JobClaim, JobResult, Lease, OutboxJob};
use crate::model::{JobState, RequestKind};
use crate::radius::server::SharedSettings;
use crate::radius::settings::NasClient;
use crate::store::{Outbox, StoreError};
use crate::telemetry;
use request::{Answer, Plan, SESSION_CONTEXT_NOT_FOUND};
pub use transport::{Transport, UdpTransport};

/// Pending jobs read from the store at a time.
const FETCH: u32 = 1024;
/// Answers already received that are handled before their outcomes are
/// recorded together.
const ANSWERS_AT_ONCE: usize = 256;
/// Below this many queued jobs, more are read.
const LOW_WATER: usize = 256;
/// After a store error, wait this long before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);

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

/// A request waiting for its answer.
struct InFlight {
    job: OutboxJob,
    kind: RequestKind,
    packet: Vec<u8>,
    sends: u32,
    deadline: Instant,
    nas: Arc<NasClient>,
    destination: SocketAddr,
    /// What happened before (a CoA that fell back to this Disconnect).
    prior: Option<String>,
}

/// A job's first request, built, with its place within the NAS's limits
/// reserved, waiting to be claimed in the store and sent.
struct Prepared {
    job: OutboxJob,
    kind: RequestKind,
    packet: Vec<u8>,
    identifier: u8,
    nas: Arc<NasClient>,
    destination: SocketAddr,
}

/// Per-NAS limits: requests in flight, identifiers in use, and new
/// requests in any one second (a sliding window, so that no second sees
/// more than the limit, even the one after a burst).
struct Lane {
    in_flight: usize,
    identifiers: HashSet<u8>,
    next_identifier: u8,
    /// When each request of the last second was sent, oldest first.
    started: VecDeque<Instant>,
    /// Requests prepared, not sent yet: they count as if sent now.
    reserved: usize,
}

impl Lane {
    fn new() -> Lane {
        Lane {
            in_flight: 0,
            identifiers: HashSet::new(),
            next_identifier: 0,
            started: VecDeque::new(),
            reserved: 0,
        }
    }

    /// Whether one more request may start at `now`.
    fn may_start(&mut self, now: Instant, per_second: u32) -> bool {
        while self
            .started
            .front()
            .is_some_and(|&at| at + Duration::from_secs(1) <= now)
        {
            self.started.pop_front();
        }
        self.started.len() + self.reserved < per_second as usize
    }

    /// When the next request may start (the window is full).
    fn next_start(&self) -> Option<Instant> {
        self.started.front().map(|&at| at + Duration::from_secs(1))
    }

    fn allocate(&mut self) -> Option<u8> {
        for _ in 0..=u8::MAX {
            let candidate = self.next_identifier;
            self.next_identifier = self.next_identifier.wrapping_add(1);
            if self.identifiers.insert(candidate) {
                return Some(candidate);
            }
        }
        None
    }
}

/// The enforcer task's state.
pub struct Enforcer<T: Transport> {
    store: Arc<dyn Outbox>,
    settings: SharedSettings,
    clock: Arc<dyn Clock>,
    config: EnforcementConfig,
    transport: T,
    wake: Arc<Notify>,
    progress: watch::Sender<u64>,
    queue: VecDeque<OutboxJob>,
    queued: HashSet<i64>,
    last_fetched: i64,
    in_flight: HashMap<(SocketAddr, u8), InFlight>,
    busy_sessions: HashSet<i64>,
    lanes: HashMap<String, Lane>,
    /// When queued work waits for a NAS's rate limit.
    rate_wake: Option<Instant>,
    /// Outcomes not recorded yet: written in one transaction before new
    /// work is taken (and kept for the next try if the store fails).
    unrecorded: Vec<(i64, JobResult)>,
    /// This instance's name on the jobs it sends.
    instance: String,
    /// When to look for jobs another instance stopped sending.
    takeover_at: Instant,
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
            config,
            transport,
            wake,
            progress,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            last_fetched: 0,
            in_flight: HashMap::new(),
            busy_sessions: HashSet::new(),
            lanes: HashMap::new(),
            rate_wake: None,
            unrecorded: Vec::new(),
            instance: instance.to_owned(),
            takeover_at: Instant::now(),
        };
        (enforcer, handle)
    }

    /// Runs until `shutdown`, then waits (at most `drain`) for the answers
    /// to the requests in flight, sending no new ones. Requests still
    /// unanswered stay `sent` in the outbox and are sent again,
    /// identically, at the next start.
    pub async fn run(mut self, shutdown: CancellationToken, drain: Duration) {
        while let Err(e) = self.take_over().await {
            crate::store::log_failure(
                self.store.as_ref(),
                "enforcement: cannot read the outbox; retrying",
                &e,
            );
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(STORE_RETRY) => {}
            }
        }
        loop {
            let mut store_failed = false;
            if let Err(e) = self.pump().await {
                crate::store::log_failure(
                    self.store.as_ref(),
                    "enforcement: outbox not processed; retrying",
                    &e,
                );
                store_failed = true;
            }
            let deadline = self
                .next_deadline(store_failed)
                .map_or(self.takeover_at, |d| d.min(self.takeover_at));
            let wake = {
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
                    self.on_reply(from, &bytes).await;
                    // The answers already here too, so that their outcomes
                    // are recorded in one transaction.
                    for _ in 1..ANSWERS_AT_ONCE {
                        match self.transport.recv().now_or_never() {
                            Some(Some((from, bytes))) => self.on_reply(from, &bytes).await,
                            _ => break,
                        }
                    }
                }
                Wake::Reply(None) => {
                    tracing::error!("enforcement: the CoA socket closed");
                    break;
                }
                Wake::Deadline => {
                    self.on_deadlines().await;
                    if Instant::now() >= self.takeover_at
                        && let Err(e) = self.take_over().await
                    {
                        crate::store::log_failure(
                            self.store.as_ref(),
                            "enforcement: cannot look for abandoned requests",
                            &e,
                        );
                    }
                }
            }
        }
    }

    /// Lets the requests in flight finish (answers and retransmissions)
    /// until none is left or the deadline passes.
    async fn drain(&mut self, deadline: Duration) {
        let until = Instant::now() + deadline;
        while !self.in_flight.is_empty() {
            let next = self.next_deadline(false).map_or(until, |d| d.min(until));
            tokio::select! {
                received = self.transport.recv() => match received {
                    Some((from, bytes)) => self.on_reply(from, &bytes).await,
                    None => break,
                },
                () = tokio::time::sleep_until(next) => {
                    if Instant::now() >= until {
                        break;
                    }
                    self.on_deadlines().await;
                }
            }
        }
        if let Err(e) = self.record_outcomes().await {
            tracing::error!(
                error = %e,
                jobs = self.unrecorded.len(),
                "enforcement: outcomes not recorded; those requests are sent again at the next start"
            );
        }
        if !self.in_flight.is_empty() {
            tracing::info!(
                requests = self.in_flight.len(),
                "enforcement: stopping with requests unanswered; they are sent again at the next start"
            );
        }
    }

    /// This instance's hold on a job, from now.
    fn lease(&self) -> Lease {
        let length = chrono::Duration::seconds(
            i64::try_from(self.config.lease_secs).unwrap_or(i64::MAX / 1000),
        );
        Lease {
            instance: self.instance.clone(),
            until: self.clock.now() + length,
        }
    }

    /// Sends again, identically, the requests in flight that are this
    /// instance's from before a restart, or another instance's that
    /// stopped sending them (its lease ran out).
    async fn take_over(&mut self) -> Result<(), StoreError> {
        self.takeover_at = Instant::now() + Duration::from_secs(self.config.lease_secs.max(3) / 3);
        let jobs = self
            .store
            .inflight_jobs(&self.lease(), self.clock.now())
            .await?;
        let concluded: HashSet<i64> = self.unrecorded.iter().map(|(id, _)| *id).collect();
        let jobs: Vec<OutboxJob> = jobs
            .into_iter()
            .filter(|job| !self.queued.contains(&job.id) && !concluded.contains(&job.id))
            .collect();
        if !jobs.is_empty() {
            tracing::info!(
                jobs = jobs.len(),
                "enforcement: resending requests left in flight (by a stop or by another instance)"
            );
        }
        let now = Instant::now();
        for job in jobs {
            let (Some(kind), Some(packet)) = (job.kind, job.packet.clone()) else {
                continue;
            };
            let (nas, destination) = match self.route(&job) {
                Ok(route) => route,
                Err(why) => {
                    self.drop_job(&job, why);
                    continue;
                }
            };
            let Some(&identifier) = packet.get(1) else {
                continue;
            };
            let lane = self.lane(&nas.name);
            if !lane.identifiers.insert(identifier) {
                // Another request to this NAS uses the identifier: the
                // next look takes this one.
                continue;
            }
            lane.in_flight += 1;
            let sends = job.sends + 1;
            self.transport_send(destination, &packet).await;
            self.store
                .job_resent(job.id, sends, &self.lease(), self.clock.now())
                .await?;
            self.queued.insert(job.id);
            self.busy_sessions.insert(job.session_id);
            self.in_flight.insert(
                (destination, identifier),
                InFlight {
                    deadline: now + request::retransmission_timeout(&self.config, sends, job.id),
                    prior: prior_outcome(&job),
                    job,
                    kind,
                    packet,
                    sends,
                    nas,
                    destination,
                },
            );
        }
        Ok(())
    }

    /// Records the outcomes waiting to be, then reads more pending jobs
    /// when few are queued, and starts what the NAS limits allow.
    async fn pump(&mut self) -> Result<(), StoreError> {
        self.record_outcomes().await?;
        if self.queue.len() < LOW_WATER {
            let jobs = self.store.pending_jobs(self.last_fetched, FETCH).await?;
            for job in jobs {
                self.last_fetched = self.last_fetched.max(job.id);
                if self.queued.insert(job.id) {
                    self.queue.push_back(job);
                }
            }
        }
        self.rate_wake = None;
        let per_second = self.config.max_per_second_per_nas;
        let mut ready = Vec::new();
        for _ in 0..self.queue.len() {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            if self.busy_sessions.contains(&job.session_id) {
                self.queue.push_back(job);
                continue;
            }
            let (nas, destination) = match self.route(&job) {
                Ok(route) => route,
                Err(why) => {
                    self.queued.remove(&job.id);
                    self.drop_job(&job, why);
                    continue;
                }
            };
            let now = Instant::now();
            let max_in_flight = self.config.max_in_flight_per_nas;
            let lane = self.lane(&nas.name);
            if lane.in_flight >= max_in_flight {
                self.queue.push_back(job);
                continue;
            }
            if !lane.may_start(now, per_second) {
                if let Some(at) = lane.next_start() {
                    self.rate_wake = Some(self.rate_wake.map_or(at, |w| w.min(at)));
                }
                self.queue.push_back(job);
                continue;
            }
            if let Some(request) = self.prepare(job, nas, destination) {
                ready.push(request);
            }
        }
        self.start(ready).await
    }

    /// Writes the outcomes waiting to be recorded, in one transaction.
    async fn record_outcomes(&mut self) -> Result<(), StoreError> {
        if self.unrecorded.is_empty() {
            return Ok(());
        }
        self.store
            .finish_jobs(&self.unrecorded, self.clock.now())
            .await?;
        let recorded = self.unrecorded.len() as u64;
        self.unrecorded.clear();
        self.progress.send_modify(|n| *n = n.wrapping_add(recorded));
        Ok(())
    }

    /// Builds a job's first request and reserves its place within the
    /// NAS's limits; `None` if it cannot be sent now.
    fn prepare(
        &mut self,
        job: OutboxJob,
        nas: Arc<NasClient>,
        destination: SocketAddr,
    ) -> Option<Prepared> {
        let plan: Plan = request::plan(&job, &nas, &self.settings.load());
        let Some(identifier) = self.lane(&nas.name).allocate() else {
            self.queue.push_back(job);
            return None;
        };
        let Some(packet) = request::build(&job, &plan, identifier, &nas.secret, self.clock.now())
        else {
            self.lane(&nas.name).identifiers.remove(&identifier);
            self.queued.remove(&job.id);
            self.drop_job(&job, "the request does not fit in a RADIUS packet");
            return None;
        };
        let lane = self.lane(&nas.name);
        lane.reserved += 1;
        lane.in_flight += 1;
        self.busy_sessions.insert(job.session_id);
        Some(Prepared {
            job,
            kind: plan.kind,
            packet,
            identifier,
            nas,
            destination,
        })
    }

    /// Claims the prepared jobs in one transaction and sends the first
    /// request of each one claimed.
    async fn start(&mut self, ready: Vec<Prepared>) -> Result<(), StoreError> {
        if ready.is_empty() {
            return Ok(());
        }
        let claims: Vec<JobClaim> = ready
            .iter()
            .map(|r| JobClaim {
                id: r.job.id,
                kind: r.kind,
                packet: &r.packet,
            })
            .collect();
        let claimed = match self
            .store
            .claim_jobs(&claims, &self.lease(), self.clock.now())
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                // Nothing was sent: give the places back, keep the order.
                for request in ready.into_iter().rev() {
                    self.unreserve(&request);
                    self.queue.push_front(request.job);
                }
                return Err(e);
            }
        };
        let now = Instant::now();
        for (request, claimed) in ready.into_iter().zip(claimed) {
            if !claimed {
                // Superseded, or taken by another instance.
                self.unreserve(&request);
                self.queued.remove(&request.job.id);
                continue;
            }
            self.transport_send(request.destination, &request.packet)
                .await;
            // The window counts from the send: a claim that took a while
            // must not let the next second's requests follow too closely.
            let lane = self.lane(&request.nas.name);
            lane.reserved = lane.reserved.saturating_sub(1);
            lane.started.push_back(Instant::now());
            let prior = prior_outcome(&request.job);
            self.in_flight.insert(
                (request.destination, request.identifier),
                InFlight {
                    deadline: now
                        + request::retransmission_timeout(&self.config, 1, request.job.id),
                    job: request.job,
                    kind: request.kind,
                    packet: request.packet,
                    sends: 1,
                    nas: request.nas,
                    destination: request.destination,
                    prior,
                },
            );
        }
        Ok(())
    }

    /// Gives back what [`Self::prepare`] reserved for a request not sent.
    fn unreserve(&mut self, request: &Prepared) {
        if let Some(lane) = self.lanes.get_mut(&request.nas.name) {
            lane.identifiers.remove(&request.identifier);
            lane.in_flight = lane.in_flight.saturating_sub(1);
            lane.reserved = lane.reserved.saturating_sub(1);
        }
        self.busy_sessions.remove(&request.job.session_id);
    }

    async fn on_reply(&mut self, from: SocketAddr, bytes: &[u8]) {
        let Some(&identifier) = bytes.get(1) else {
            return;
        };
        let key = (canonical(from), identifier);
        let Some(flight) = self.in_flight.get(&key) else {
            tracing::debug!(%from, identifier, "enforcement: an answer to no request in flight");
            return;
        };
        let Some(answer) = request::interpret(bytes, &flight.packet, &flight.nas.secret) else {
            tracing::warn!(nas = %flight.nas.name, %from, "enforcement: an answer that does not authenticate, ignored");
            return;
        };
        let Some(flight) = self.in_flight.remove(&key) else {
            return;
        };
        if let Err(e) = self.conclude(flight, key, Some(answer)).await {
            crate::store::log_failure(self.store.as_ref(), "enforcement: outcome not recorded", &e);
        }
    }

    async fn on_deadlines(&mut self) {
        let now = Instant::now();
        let due: Vec<(SocketAddr, u8)> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(mut flight) = self.in_flight.remove(&key) else {
                continue;
            };
            if flight.sends < self.config.max_sends {
                flight.sends += 1;
                let lease = self.lease();
                match self
                    .store
                    .job_resent(flight.job.id, flight.sends, &lease, self.clock.now())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        // The session stopped (the job ended as "session
                        // ended"), or another instance took it over.
                        self.forget(&flight, key);
                        continue;
                    }
                    Err(e) => {
                        crate::store::log_failure(
                            self.store.as_ref(),
                            "enforcement: retransmission not recorded",
                            &e,
                        );
                    }
                }
                self.transport_send(flight.destination, &flight.packet)
                    .await;
                flight.deadline = now
                    + request::retransmission_timeout(&self.config, flight.sends, flight.job.id);
                self.in_flight.insert(key, flight);
                continue;
            }
            if let Err(e) = self.conclude(flight, key, None).await {
                crate::store::log_failure(
                    self.store.as_ref(),
                    "enforcement: outcome not recorded",
                    &e,
                );
            }
        }
    }

    /// Lets go of a request without an outcome (another instance has it).
    fn forget(&mut self, flight: &InFlight, key: (SocketAddr, u8)) {
        if let Some(lane) = self.lanes.get_mut(&flight.nas.name) {
            lane.identifiers.remove(&key.1);
            lane.in_flight = lane.in_flight.saturating_sub(1);
        }
        self.busy_sessions.remove(&flight.job.session_id);
        self.queued.remove(&flight.job.id);
    }

    /// Ends a request: with the NAS's answer, or `None` after the last
    /// send. A CoA to a `coa_then_disconnect` NAS falls back to Disconnect.
    async fn conclude(
        &mut self,
        flight: InFlight,
        key: (SocketAddr, u8),
        answer: Option<Answer>,
    ) -> Result<(), StoreError> {
        if let Some(lane) = self.lanes.get_mut(&flight.nas.name) {
            lane.identifiers.remove(&key.1);
            lane.in_flight = lane.in_flight.saturating_sub(1);
        }
        self.busy_sessions.remove(&flight.job.session_id);
        let name = request::kind_name(flight.kind);
        let (state, mut outcome, error_cause) = match answer {
            Some(Answer::Ack) => (JobState::Acked, format!("{name}-ACK"), None),
            Some(Answer::Nak { error_cause }) => {
                let cause = match error_cause {
                    Some(c) => format!(" (Error-Cause {c} {})", request::error_cause_name(c)),
                    None => String::new(),
                };
                (JobState::Nak, format!("{name}-NAK{cause}"), error_cause)
            }
            None => (
                JobState::Timeout,
                format!("{name}: no answer after {} sends", flight.sends),
                None,
            ),
        };
        if let Some(prior) = &flight.prior {
            outcome = format!("{prior}; {outcome}");
        }
        let not_found = error_cause == Some(SESSION_CONTEXT_NOT_FOUND);
        let may_fall_back = flight.kind == RequestKind::Coa
            && flight.nas.coa_mode == CoaMode::CoaThenDisconnect
            && !flight.job.fallback
            && !not_found;
        if state != JobState::Acked && may_fall_back {
            let now = self.clock.now();
            if self.store.fall_back(flight.job.id, &outcome, now).await? {
                tracing::info!(
                    nas = %flight.nas.name,
                    user = %flight.job.target.username,
                    outcome,
                    "enforcement: CoA failed, falling back to Disconnect"
                );
                let mut job = flight.job;
                job.fallback = true;
                job.kind = Some(RequestKind::Disconnect);
                job.packet = None;
                job.outcome = Some(outcome);
                self.queue.push_front(job);
                // The Disconnect's outcome is appended to this one.
                return Ok(());
            }
            self.queued.remove(&flight.job.id);
            self.bump_progress();
            return Ok(());
        }
        self.queued.remove(&flight.job.id);
        self.finish(&flight.job, state, outcome, error_cause, not_found);
        Ok(())
    }

    /// Finishes a job that cannot be sent.
    fn drop_job(&mut self, job: &OutboxJob, why: &str) {
        self.finish(job, JobState::Dropped, why.to_owned(), None, false);
    }

    /// Ends a job; the store records it at the next [`Self::pump`].
    fn finish(
        &mut self,
        job: &OutboxJob,
        state: JobState,
        outcome: String,
        error_cause: Option<u32>,
        close_session: bool,
    ) {
        if state.is_failure() {
            tracing::warn!(
                nas = %job.target.nas_name,
                user = %job.target.username,
                contract = %job.contract_id,
                outcome,
                "enforcement failed"
            );
        } else {
            tracing::debug!(nas = %job.target.nas_name, user = %job.target.username, outcome, "enforcement done");
        }
        metrics::counter!(
            telemetry::ENFORCEMENT,
            "nas" => job.target.nas_name.clone(),
            "outcome" => state.as_str()
        )
        .increment(1);
        let result = JobResult {
            state,
            outcome,
            error_cause,
            close_session,
        };
        self.unrecorded.push((job.id, result));
    }

    fn bump_progress(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The NAS of a job's session and where its CoA goes.
    /// Where the job's request goes, or why it goes nowhere.
    fn route(&self, job: &OutboxJob) -> Result<(Arc<NasClient>, SocketAddr), &'static str> {
        let settings = self.settings.load();
        let gone = "its NAS is not configured any more";
        let nas = settings.nas.by_name(&job.target.nas_name).ok_or(gone)?;
        if nas.coa_mode == CoaMode::None {
            // Queued before a reload said so.
            return Err(
                "its NAS takes no CoA (coa_mode = \"none\"): the change applies at the next connection",
            );
        }
        let address: IpAddr = job.target.nas_address.parse().map_err(|_| gone)?;
        Ok((Arc::clone(nas), SocketAddr::new(address, nas.coa_port)))
    }

    fn lane(&mut self, nas: &str) -> &mut Lane {
        self.lanes.entry(nas.to_owned()).or_insert_with(Lane::new)
    }

    async fn transport_send(&self, destination: SocketAddr, packet: &[u8]) {
        if let Err(e) = self.transport.send(destination, packet).await {
            // Counted as a send: the retransmission timer covers it.
            tracing::warn!(%destination, error = %e, "enforcement: send failed");
        }
    }

    /// The next moment something is due: a retransmission, a rate-limited
    /// job, or a retry after a store error. The periodic look for
    /// abandoned requests (`takeover_at`) comes on top, in `run`.
    fn next_deadline(&self, store_failed: bool) -> Option<Instant> {
        let retransmission = self.in_flight.values().map(|f| f.deadline).min();
        let retry = store_failed.then(|| Instant::now() + STORE_RETRY);
        [retransmission, self.rate_wake, retry]
            .into_iter()
            .flatten()
            .min()
    }
}

/// What a job that fell back to Disconnect says happened to its CoA.
fn prior_outcome(job: &OutboxJob) -> Option<String> {
    job.fallback.then(|| {
        job.outcome
            .clone()
            .unwrap_or_else(|| "CoA failed; fell back to Disconnect".to_owned())
    })
}

fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}
