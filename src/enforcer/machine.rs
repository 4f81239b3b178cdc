//! The enforcer's state machine, sans-IO: every decision of the enforcer
//! and none of its input or output.
//!
//! It owns the queue of jobs read from the outbox, a lane per NAS (requests
//! in flight, their identifiers, the sliding one-second window), the
//! requests in flight keyed by (destination, identifier) with their
//! retransmission deadlines, the one-job-per-session rule, the outcomes not
//! recorded yet, the lease this instance holds on what it sends, and the
//! drain at shutdown.
//!
//! It is driven by calls that say what happened — [`Machine::pump`] (look
//! for work), [`Machine::received`] (a datagram), [`Machine::time_passed`],
//! and one call per store operation it asked for, with the store's answer
//! ([`Machine::fetched`], [`Machine::claimed`], …) — and each returns the
//! [`Action`]s to carry out, in order: send these bytes, call the store
//! thus, count finished jobs. [`Machine::wake_at`] says when time must be
//! passed in next. Every call takes a [`Context`]: both clocks, read by
//! the caller, and the settings in force. Nothing here reads a clock, a
//! socket or the database, so the tests drive it with plain values.
//!
//! The caller carries out an action that calls the store, feeds the
//! answer back, and carries out what that returns before the actions
//! after it: the store's answers are the machine's inputs, in the order
//! the calls were asked for.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::lane::Lane;
use super::request::{self, Answer, Plan, SESSION_CONTEXT_NOT_FOUND};
use crate::config::{CoaMode, EnforcementConfig};
use crate::model::{JobClaim, JobResult, JobState, Lease, OutboxJob, RequestKind};
use crate::radius::Settings;
use crate::radius::settings::NasClient;
use crate::telemetry;

/// Pending jobs read from the store at a time.
pub const FETCH: u32 = 1024;
/// Below this many queued jobs, more are read.
const LOW_WATER: usize = 256;
/// After a store error, wait this long before trying again.
pub const STORE_RETRY: Duration = Duration::from_secs(1);

/// What the caller tells the machine with every input: the instant (for
/// deadlines and the rate window), the wall clock (for leases, the
/// store's records and the requests' Event-Timestamp), and the settings
/// in force (NAS entries and profiles; a reload applies from the next
/// input).
#[derive(Clone)]
pub struct Context {
    pub at: Instant,
    pub wall: DateTime<Utc>,
    pub settings: Arc<Settings>,
}

/// A request in flight: where it went and its identifier, which is how
/// the answer is matched to it.
pub type RequestKey = (SocketAddr, u8);

/// The store did not do what was asked (the caller has logged why).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the store did not carry out the enforcer's request")]
pub struct StoreFailed;

/// A job to claim, with the request built for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub id: i64,
    pub kind: RequestKind,
    pub packet: Vec<u8>,
}

impl Claim {
    /// The claim as the store takes it.
    pub fn as_job_claim(&self) -> JobClaim<'_> {
        JobClaim {
            id: self.id,
            kind: self.kind,
            packet: &self.packet,
        }
    }
}

/// What the machine asks the caller to do. The store calls are answered
/// through the method each names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `packet` to `to`. A send that fails counts as sent: the
    /// retransmission timer covers it.
    Send { to: SocketAddr, packet: Vec<u8> },
    /// Read pending jobs (`Outbox::pending_jobs`); answer with
    /// [`Machine::fetched`].
    Fetch { after: i64, limit: u32 },
    /// Claim these jobs in one transaction (`Outbox::claim_jobs`); answer
    /// with [`Machine::claimed`].
    Claim {
        claims: Vec<Claim>,
        lease: Lease,
        now: DateTime<Utc>,
    },
    /// Record how these jobs ended, in one transaction
    /// (`Outbox::finish_jobs`); answer with [`Machine::recorded`].
    /// `stopping`: the last try before the enforcer stops.
    Record {
        results: Vec<(i64, JobResult)>,
        now: DateTime<Utc>,
        stopping: bool,
    },
    /// Count a retransmission and renew the lease (`Outbox::job_resent`);
    /// answer with [`Machine::resent`], which then says whether to send.
    Resent {
        key: RequestKey,
        id: i64,
        sends: u32,
        lease: Lease,
        now: DateTime<Utc>,
    },
    /// Turn a failed CoA into a pending Disconnect (`Outbox::fall_back`);
    /// answer with [`Machine::fell_back`].
    FallBack {
        id: i64,
        outcome: String,
        now: DateTime<Utc>,
    },
    /// Take the requests left in flight by a stop or by another instance
    /// (`Outbox::inflight_jobs`); answer with [`Machine::taken_over`].
    /// `starting`: the enforcer waits for it before any other work.
    TakeOver {
        lease: Lease,
        now: DateTime<Utc>,
        starting: bool,
    },
    /// Count the send of a request taken over, already sent again, and
    /// take its lease (`Outbox::job_resent`); answer with
    /// [`Machine::resumed`].
    Resumed {
        id: i64,
        sends: u32,
        lease: Lease,
        now: DateTime<Utc>,
        starting: bool,
    },
    /// This many more jobs finished (for those waiting on the progress).
    Progress(u64),
}

/// Where the machine is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Until the first look for requests left in flight succeeds, no new
    /// work is taken: a job sent before a restart must not be claimed as
    /// if it were new.
    Starting,
    Running,
    /// Shutting down: only the requests in flight go on (answers and
    /// retransmissions) until none is left or `until`.
    Draining {
        until: Instant,
    },
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
    /// A retransmission is due and waits for the store to count it.
    retransmitting: bool,
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

/// A failed CoA waiting for the store to turn it into a Disconnect.
struct FallingBack {
    job: OutboxJob,
    nas: Arc<NasClient>,
    outcome: String,
}

/// The enforcer's state (see the module's documentation).
pub struct Machine {
    config: EnforcementConfig,
    /// This instance's name on the jobs it sends.
    instance: String,
    phase: Phase,
    queue: VecDeque<OutboxJob>,
    /// Jobs this instance works on (queued, being claimed, in flight or
    /// falling back): a job read again is not queued twice.
    queued: HashSet<i64>,
    last_fetched: i64,
    in_flight: HashMap<RequestKey, InFlight>,
    busy_sessions: HashSet<i64>,
    lanes: HashMap<String, Lane>,
    /// When queued work waits for a NAS's rate limit.
    rate_wake: Option<Instant>,
    /// When to try again after the store failed a step of the pump.
    retry_at: Option<Instant>,
    /// When to look for jobs another instance stopped sending.
    takeover_at: Instant,
    /// Outcomes not recorded yet: written in one transaction before new
    /// work is taken (and kept for the next try if the store fails).
    unrecorded: Vec<(i64, JobResult)>,
    /// How many of `unrecorded` the [`Action::Record`] asked for holds.
    recording: usize,
    /// The batch an [`Action::Claim`] asked for.
    claiming: Vec<Prepared>,
    /// Jobs taken over, resumed one at a time (a store failure stops the
    /// rest, which the next look finds again).
    taking_over: VecDeque<OutboxJob>,
    falling_back: HashMap<i64, FallingBack>,
}

impl Machine {
    /// A machine that, first of all, looks for requests left in flight
    /// (due at `at`).
    pub fn new(config: EnforcementConfig, instance: &str, at: Instant) -> Machine {
        Machine {
            config,
            instance: instance.to_owned(),
            phase: Phase::Starting,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            last_fetched: 0,
            in_flight: HashMap::new(),
            busy_sessions: HashSet::new(),
            lanes: HashMap::new(),
            rate_wake: None,
            retry_at: None,
            takeover_at: at,
            unrecorded: Vec::new(),
            recording: 0,
            claiming: Vec::new(),
            taking_over: VecDeque::new(),
            falling_back: HashMap::new(),
        }
    }

    /// When [`Self::time_passed`] is to be called next: a retransmission,
    /// a rate-limited job, a retry after a store error, the periodic look
    /// for abandoned requests, or the end of the drain.
    pub fn wake_at(&self) -> Instant {
        let retransmission = self.in_flight.values().map(|f| f.deadline).min();
        let candidates = match self.phase {
            Phase::Starting => [retransmission, Some(self.takeover_at), None, None],
            Phase::Running => [
                retransmission,
                self.rate_wake,
                self.retry_at,
                Some(self.takeover_at),
            ],
            Phase::Draining { until } => [retransmission, Some(until), None, None],
        };
        candidates
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.takeover_at)
    }

    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Records the outcomes waiting to be, then reads more pending jobs
    /// when few are queued, and starts what the NAS limits allow: the
    /// first of these steps, the others follow the store's answers. A
    /// store failure stops the pump until the next one (at the latest
    /// [`STORE_RETRY`] later).
    pub fn pump(&mut self, cx: &Context) -> Vec<Action> {
        if self.phase != Phase::Running {
            return Vec::new();
        }
        // Both are found again by the steps that set them; a stale one
        // would wake the caller over and over.
        self.retry_at = None;
        self.rate_wake = None;
        if !self.unrecorded.is_empty() {
            return vec![self.record(cx, false)];
        }
        self.fetch_or_schedule(cx)
    }

    /// The store's answer to [`Action::Record`].
    pub fn recorded(&mut self, result: Result<(), StoreFailed>, cx: &Context) -> Vec<Action> {
        let count = std::mem::take(&mut self.recording);
        if result.is_err() {
            // Kept: the next pump writes them again.
            self.store_failed(cx);
            return Vec::new();
        }
        self.unrecorded.drain(..count.min(self.unrecorded.len()));
        let mut actions = Vec::new();
        if count > 0 {
            actions.push(Action::Progress(count as u64));
        }
        if self.phase == Phase::Running {
            actions.extend(self.fetch_or_schedule(cx));
        }
        actions
    }

    /// The store's answer to [`Action::Fetch`]: the jobs are queued, and
    /// what the NAS limits allow is prepared for a claim.
    pub fn fetched(
        &mut self,
        result: Result<Vec<OutboxJob>, StoreFailed>,
        cx: &Context,
    ) -> Vec<Action> {
        let Ok(jobs) = result else {
            self.store_failed(cx);
            return Vec::new();
        };
        for job in jobs {
            self.last_fetched = self.last_fetched.max(job.id);
            if self.queued.insert(job.id) {
                self.queue.push_back(job);
            }
        }
        self.schedule(cx)
    }

    /// The store's answer to [`Action::Claim`]: for each job, whether it is
    /// this instance's to send. The claimed ones are sent; when the store
    /// failed, nothing was sent: the places are given back and the jobs go
    /// back to the front of the queue, in their order.
    pub fn claimed(&mut self, result: Result<Vec<bool>, StoreFailed>, cx: &Context) -> Vec<Action> {
        let batch = std::mem::take(&mut self.claiming);
        let Ok(claimed) = result else {
            for request in batch.into_iter().rev() {
                self.unreserve(&request);
                self.queue.push_front(request.job);
            }
            self.store_failed(cx);
            return Vec::new();
        };
        let mut actions = Vec::new();
        for (i, request) in batch.into_iter().enumerate() {
            if !claimed.get(i).copied().unwrap_or(false) {
                // Superseded, or taken by another instance.
                self.unreserve(&request);
                self.queued.remove(&request.job.id);
                continue;
            }
            // The window counts from the send: a claim that took a while
            // must not let the next second's requests follow too closely.
            let lane = self.lane(&request.nas.name);
            lane.reserved = lane.reserved.saturating_sub(1);
            lane.started.push_back(cx.at);
            actions.push(Action::Send {
                to: request.destination,
                packet: request.packet.clone(),
            });
            let prior = prior_outcome(&request.job);
            self.in_flight.insert(
                (request.destination, request.identifier),
                InFlight {
                    deadline: cx.at
                        + request::retransmission_timeout(&self.config, 1, request.job.id),
                    job: request.job,
                    kind: request.kind,
                    packet: request.packet,
                    sends: 1,
                    nas: request.nas,
                    destination: request.destination,
                    prior,
                    retransmitting: false,
                },
            );
        }
        actions
    }

    /// A datagram on the CoA socket: an answer ends its request if it
    /// matches one in flight and authenticates; anything else is ignored.
    pub fn received(&mut self, from: SocketAddr, bytes: &[u8], cx: &Context) -> Vec<Action> {
        let Some(&identifier) = bytes.get(1) else {
            return Vec::new();
        };
        let key = (canonical(from), identifier);
        let Some(flight) = self.in_flight.get(&key) else {
            tracing::debug!(%from, identifier, "enforcement: an answer to no request in flight");
            return Vec::new();
        };
        let Some(answer) = request::interpret(bytes, &flight.packet, &flight.nas.secret) else {
            tracing::warn!(nas = %flight.nas.name, %from, "enforcement: an answer that does not authenticate, ignored");
            return Vec::new();
        };
        let Some(flight) = self.in_flight.remove(&key) else {
            return Vec::new();
        };
        self.conclude(flight, key, Some(answer), cx)
    }

    /// Time passed: the requests whose deadline came are sent again (once
    /// the store counts the send) or, after the last send, end; then, when
    /// due, the look for requests other instances left.
    pub fn time_passed(&mut self, cx: &Context) -> Vec<Action> {
        if let Phase::Draining { until } = self.phase
            && cx.at >= until
        {
            return Vec::new();
        }
        let mut due: Vec<(Instant, i64, RequestKey)> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= cx.at && !f.retransmitting)
            .map(|(k, f)| (f.deadline, f.job.id, *k))
            .collect();
        // Oldest deadline first, so that runs can be replayed.
        due.sort_unstable();
        let mut actions = Vec::new();
        for (_, _, key) in due {
            let Some(flight) = self.in_flight.get_mut(&key) else {
                continue;
            };
            if flight.sends < self.config.max_sends {
                flight.sends += 1;
                flight.deadline = cx.at
                    + request::retransmission_timeout(&self.config, flight.sends, flight.job.id);
                flight.retransmitting = true;
                let (id, sends) = (flight.job.id, flight.sends);
                actions.push(Action::Resent {
                    key,
                    id,
                    sends,
                    lease: self.lease(cx),
                    now: cx.wall,
                });
                continue;
            }
            if let Some(flight) = self.in_flight.remove(&key) {
                actions.extend(self.conclude(flight, key, None, cx));
            }
        }
        let draining = matches!(self.phase, Phase::Draining { .. });
        if !draining && cx.at >= self.takeover_at {
            actions.push(self.take_over(cx));
        }
        actions
    }

    /// The store's answer to [`Action::Resent`]: the request goes out
    /// again unless the job is no longer this instance's. A store that
    /// failed to count it does not stop the retransmission.
    pub fn resent(
        &mut self,
        key: RequestKey,
        id: i64,
        result: Result<bool, StoreFailed>,
        _cx: &Context,
    ) -> Vec<Action> {
        let Some(flight) = self
            .in_flight
            .get_mut(&key)
            .filter(|f| f.job.id == id && f.retransmitting)
        else {
            return Vec::new();
        };
        flight.retransmitting = false;
        if result == Ok(false) {
            // The session stopped (the job ended as "session ended"), or
            // another instance took it over.
            if let Some(flight) = self.in_flight.remove(&key) {
                self.forget(&flight, key);
            }
            return Vec::new();
        }
        vec![Action::Send {
            to: flight.destination,
            packet: flight.packet.clone(),
        }]
    }

    /// The store's answer to [`Action::FallBack`]: the Disconnect is queued
    /// first, or the job ended because a newer one makes it moot.
    pub fn fell_back(
        &mut self,
        id: i64,
        result: Result<bool, StoreFailed>,
        _cx: &Context,
    ) -> Vec<Action> {
        let Some(FallingBack { job, nas, outcome }) = self.falling_back.remove(&id) else {
            return Vec::new();
        };
        match result {
            Ok(true) => {
                tracing::info!(
                    nas = %nas.name,
                    user = %job.target.username,
                    outcome,
                    "enforcement: CoA failed, falling back to Disconnect"
                );
                let mut job = job;
                job.fallback = true;
                job.kind = Some(RequestKind::Disconnect);
                job.packet = None;
                // The Disconnect's outcome is appended to this one.
                job.outcome = Some(outcome);
                self.queue.push_front(job);
                Vec::new()
            }
            Ok(false) => {
                self.queued.remove(&id);
                vec![Action::Progress(1)]
            }
            // The job stays `sent` in the store, under this instance's
            // lease: it is sent again at the next start.
            Err(StoreFailed) => Vec::new(),
        }
    }

    /// The store's answer to [`Action::TakeOver`]: the requests this
    /// instance does not already hold are sent again, identically, one
    /// after the other as the store counts each.
    pub fn taken_over(
        &mut self,
        result: Result<Vec<OutboxJob>, StoreFailed>,
        cx: &Context,
    ) -> Vec<Action> {
        let Ok(jobs) = result else {
            self.take_over_failed(cx);
            return Vec::new();
        };
        let concluded: HashSet<i64> = self.unrecorded.iter().map(|(id, _)| *id).collect();
        let jobs: VecDeque<OutboxJob> = jobs
            .into_iter()
            .filter(|job| !self.queued.contains(&job.id) && !concluded.contains(&job.id))
            .collect();
        if !jobs.is_empty() {
            tracing::info!(
                jobs = jobs.len(),
                "enforcement: resending requests left in flight (by a stop or by another instance)"
            );
        }
        self.taking_over = jobs;
        self.resume_next(cx)
    }

    /// The store's answer to [`Action::Resumed`]: the next job taken over
    /// is sent, or, the store failing, the rest wait for the next look.
    pub fn resumed(&mut self, result: Result<bool, StoreFailed>, cx: &Context) -> Vec<Action> {
        // Whether the job is still this instance's is the next
        // retransmission's to find out: the request is out already.
        if result.is_err() {
            self.taking_over.clear();
            self.take_over_failed(cx);
            return Vec::new();
        }
        self.resume_next(cx)
    }

    /// Stops taking new work: the requests in flight go on until none is
    /// left or `drain` has passed.
    pub fn stop(&mut self, drain: Duration, cx: &Context) {
        self.phase = Phase::Draining {
            until: cx.at + drain,
        };
    }

    /// Whether the drain is over at `at`.
    pub fn drained(&self, at: Instant) -> bool {
        match self.phase {
            Phase::Draining { until } => self.in_flight.is_empty() || at >= until,
            _ => false,
        }
    }

    /// The last actions before stopping: recording the outcomes waiting to
    /// be. Requests still unanswered stay `sent` in the outbox and are sent
    /// again, identically, at the next start.
    pub fn close(&mut self, cx: &Context) -> Vec<Action> {
        if self.unrecorded.is_empty() {
            return Vec::new();
        }
        vec![self.record(cx, true)]
    }

    fn record(&mut self, cx: &Context, stopping: bool) -> Action {
        self.recording = self.unrecorded.len();
        Action::Record {
            results: self.unrecorded.clone(),
            now: cx.wall,
            stopping,
        }
    }

    fn store_failed(&mut self, cx: &Context) {
        if self.phase == Phase::Running {
            self.retry_at = Some(cx.at + STORE_RETRY);
        }
    }

    fn fetch_or_schedule(&mut self, cx: &Context) -> Vec<Action> {
        if self.queue.len() < LOW_WATER {
            return vec![Action::Fetch {
                after: self.last_fetched,
                limit: FETCH,
            }];
        }
        self.schedule(cx)
    }

    /// Goes through the queue once, in order, and prepares each job the
    /// limits allow now: its session has nothing in flight, its NAS has a
    /// place and room in this second. The rest stay queued, in order.
    fn schedule(&mut self, cx: &Context) -> Vec<Action> {
        if self.phase != Phase::Running {
            return Vec::new();
        }
        let per_second = self.config.max_per_second_per_nas;
        let max_in_flight = self.config.max_in_flight_per_nas;
        let mut ready = Vec::new();
        for _ in 0..self.queue.len() {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            if self.busy_sessions.contains(&job.session_id) {
                self.queue.push_back(job);
                continue;
            }
            let (nas, destination) = match route(&job, &cx.settings) {
                Ok(route) => route,
                Err(why) => {
                    self.queued.remove(&job.id);
                    self.drop_job(&job, why);
                    continue;
                }
            };
            let lane = self.lane(&nas.name);
            if lane.in_flight >= max_in_flight {
                self.queue.push_back(job);
                continue;
            }
            if !lane.may_start(cx.at, per_second) {
                if let Some(at) = lane.next_start() {
                    self.rate_wake = Some(self.rate_wake.map_or(at, |w| w.min(at)));
                }
                self.queue.push_back(job);
                continue;
            }
            if let Some(request) = self.prepare(job, nas, destination, cx) {
                ready.push(request);
            }
        }
        if ready.is_empty() {
            return Vec::new();
        }
        let claims = ready
            .iter()
            .map(|r| Claim {
                id: r.job.id,
                kind: r.kind,
                packet: r.packet.clone(),
            })
            .collect();
        self.claiming = ready;
        vec![Action::Claim {
            claims,
            lease: self.lease(cx),
            now: cx.wall,
        }]
    }

    /// Builds a job's first request and reserves its place within the
    /// NAS's limits; `None` if it cannot be sent now.
    fn prepare(
        &mut self,
        job: OutboxJob,
        nas: Arc<NasClient>,
        destination: SocketAddr,
        cx: &Context,
    ) -> Option<Prepared> {
        let plan: Plan = request::plan(&job, &nas, &cx.settings);
        let Some(identifier) = self.lane(&nas.name).allocate() else {
            self.queue.push_back(job);
            return None;
        };
        let Some(packet) = request::build(&job, &plan, identifier, &nas.secret, cx.wall) else {
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

    /// Gives back what [`Self::prepare`] reserved for a request not sent.
    fn unreserve(&mut self, request: &Prepared) {
        if let Some(lane) = self.lanes.get_mut(&request.nas.name) {
            lane.release(request.identifier);
            lane.reserved = lane.reserved.saturating_sub(1);
        }
        self.busy_sessions.remove(&request.job.session_id);
    }

    /// This instance's hold on a job, from now.
    fn lease(&self, cx: &Context) -> Lease {
        let length = chrono::Duration::seconds(
            i64::try_from(self.config.lease_secs).unwrap_or(i64::MAX / 1000),
        );
        Lease {
            instance: self.instance.clone(),
            until: cx.wall + length,
        }
    }

    /// Asks for the requests in flight that are this instance's from
    /// before a restart, or another instance's that stopped sending them
    /// (its lease ran out), and schedules the next look.
    fn take_over(&mut self, cx: &Context) -> Action {
        self.takeover_at = cx.at + Duration::from_secs(self.config.lease_secs.max(3) / 3);
        Action::TakeOver {
            lease: self.lease(cx),
            now: cx.wall,
            starting: self.phase == Phase::Starting,
        }
    }

    fn take_over_failed(&mut self, cx: &Context) {
        if self.phase == Phase::Starting {
            self.takeover_at = cx.at + STORE_RETRY;
        }
    }

    /// Sends the next job taken over that can be; when none is left, the
    /// look is done (and, at the start, new work may be taken).
    fn resume_next(&mut self, cx: &Context) -> Vec<Action> {
        while let Some(job) = self.taking_over.pop_front() {
            let (Some(kind), Some(packet)) = (job.kind, job.packet.clone()) else {
                continue;
            };
            let (nas, destination) = match route(&job, &cx.settings) {
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
            let sends = job.sends.saturating_add(1);
            let id = job.id;
            self.queued.insert(id);
            self.busy_sessions.insert(job.session_id);
            let send = Action::Send {
                to: destination,
                packet: packet.clone(),
            };
            self.in_flight.insert(
                (destination, identifier),
                InFlight {
                    deadline: cx.at + request::retransmission_timeout(&self.config, sends, id),
                    prior: prior_outcome(&job),
                    job,
                    kind,
                    packet,
                    sends,
                    nas,
                    destination,
                    retransmitting: false,
                },
            );
            return vec![
                send,
                Action::Resumed {
                    id,
                    sends,
                    lease: self.lease(cx),
                    now: cx.wall,
                    starting: self.phase == Phase::Starting,
                },
            ];
        }
        if self.phase == Phase::Starting {
            self.phase = Phase::Running;
        }
        Vec::new()
    }

    /// Lets go of a request without an outcome (another instance has it).
    fn forget(&mut self, flight: &InFlight, key: RequestKey) {
        if let Some(lane) = self.lanes.get_mut(&flight.nas.name) {
            lane.release(key.1);
        }
        self.busy_sessions.remove(&flight.job.session_id);
        self.queued.remove(&flight.job.id);
    }

    /// Ends a request: with the NAS's answer, or `None` after the last
    /// send. A CoA to a `coa_then_disconnect` NAS falls back to Disconnect.
    fn conclude(
        &mut self,
        flight: InFlight,
        key: RequestKey,
        answer: Option<Answer>,
        cx: &Context,
    ) -> Vec<Action> {
        if let Some(lane) = self.lanes.get_mut(&flight.nas.name) {
            lane.release(key.1);
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
            let id = flight.job.id;
            self.falling_back.insert(
                id,
                FallingBack {
                    job: flight.job,
                    nas: flight.nas,
                    outcome: outcome.clone(),
                },
            );
            return vec![Action::FallBack {
                id,
                outcome,
                now: cx.wall,
            }];
        }
        self.queued.remove(&flight.job.id);
        self.finish(&flight.job, state, outcome, error_cause, not_found);
        Vec::new()
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

    fn lane(&mut self, nas: &str) -> &mut Lane {
        self.lanes.entry(nas.to_owned()).or_default()
    }
}

/// Where the job's request goes, or why it goes nowhere.
fn route(
    job: &OutboxJob,
    settings: &Settings,
) -> Result<(Arc<NasClient>, SocketAddr), &'static str> {
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

/// What a job that fell back to Disconnect says happened to its CoA.
fn prior_outcome(job: &OutboxJob) -> Option<String> {
    job.fallback.then(|| {
        job.outcome
            .clone()
            .unwrap_or_else(|| "CoA failed; fell back to Disconnect".to_owned())
    })
}

/// The address as requests are keyed: an IPv4 answer on a dual-stack
/// socket comes from an IPv4-mapped IPv6 address.
fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

#[cfg(test)]
mod tests;
