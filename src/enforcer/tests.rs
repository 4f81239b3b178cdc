//! The scheduler and the enforcer together, on a real SQLite store, with
//! paused tokio time and a clock that follows it, and a NAS on channels:
//! time moves only when the test advances it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::America::Sao_Paulo;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Enforcer;
use super::transport::{ChannelPeer, ChannelTransport};
use crate::app::{App, ReleasesChanged, Wake};
use crate::clock::{Clock, TokioClock};
use crate::config::{Config, EnforcementConfig};
use crate::model::AccountingEvent;
use crate::model::{Actor, JobState, Password};
use crate::model::{ContractId, Username};
use crate::model::{JobClaim, JobResult, Lease, OutboxJob, WriteStatus};
use crate::policy::ContractState;
use crate::radius::Settings;
use crate::radius::packet::{self, Attributes, code};
use crate::scheduler::Scheduler;
use crate::store::{self, Outbox, Store, StoreError};

const SECRET: &[u8] = b"coa-secret";

/// How the test NAS answers.
#[derive(Clone, Copy)]
enum Behaviour {
    Ack,
    /// Never: every request goes unanswered.
    Silent,
}

/// One request the NAS received, and when (tokio time).
#[derive(Clone)]
struct Received {
    at: Instant,
    bytes: Vec<u8>,
}

struct World {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    watched: Arc<Watched>,
    app: Arc<App>,
    clock: Arc<TokioClock>,
    received: Arc<Mutex<Vec<Received>>>,
    shutdown: CancellationToken,
}

/// 2026-11-27 22:00:00 in São Paulo: the release made now ends in 2 hours.
fn start_wall() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-27T22:00:00-03:00")
        .unwrap()
        .with_timezone(&Utc)
}

/// Opens the store with the real clock, then keeps the runtime busy and
/// pauses time: from then on only `advance` moves it (an idle runtime would
/// jump time forward while the store works on another thread).
async fn world(config: EnforcementConfig) -> World {
    world_with(config, Behaviour::Ack).await
}

/// [`world`] with a NAS that behaves as told.
async fn world_with(config: EnforcementConfig, behaviour: Behaviour) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store::sqlite::open(&dir.path().join("t.db")).await.unwrap());
    let shutdown = CancellationToken::new();
    let busy = shutdown.clone();
    tokio::spawn(async move {
        while !busy.is_cancelled() {
            tokio::task::yield_now().await;
        }
    });
    tokio::time::pause();
    let text = "[[nas]]\nname = \"n\"\naddress = \"10.0.0.1\"\nsecret = \"coa-secret\"\n\
                [profiles.active]\ncoa = [\"Filter-Id = full\"]\n\
                [profiles.blocked]\naction = \"accept\"\ncoa = [\"Filter-Id = walled\"]\n";
    let settings = Arc::new(arc_swap::ArcSwap::from_pointee(
        Settings::build(&Config::parse_with_env(text, "t", []).unwrap()).unwrap(),
    ));
    let clock = Arc::new(TokioClock::starting_at(start_wall()));
    let (transport, peer) = ChannelTransport::pair();
    let watched = Arc::new(Watched {
        inner: Arc::clone(&store),
        busy: 0.into(),
        failing_claims: 0.into(),
        failing_records: 0.into(),
        claims: Mutex::new(Vec::new()),
    });
    let (enforcer, enforcer_handle) = Enforcer::new(
        Arc::clone(&watched) as Arc<dyn Outbox>,
        settings,
        Arc::clone(&clock) as Arc<dyn Clock>,
        config.clone(),
        "test",
        transport,
    );
    let releases_changed = ReleasesChanged::new();
    let app = Arc::new(
        App::new(
            Arc::clone(&store),
            Arc::clone(&clock) as Arc<dyn Clock>,
            Sao_Paulo,
        )
        .with_wake(
            Wake {
                enforcer: Some(enforcer_handle.clone()),
                scheduler: Some(releases_changed.clone()),
            },
            Duration::from_secs(5),
        ),
    );
    let scheduler = Scheduler::new(
        Arc::clone(&app),
        Arc::clone(&clock) as Arc<dyn Clock>,
        releases_changed.clone(),
        config.expiry_batch,
    );
    tokio::spawn(enforcer.run(shutdown.clone(), Duration::ZERO));
    tokio::spawn(scheduler.run(shutdown.clone()));
    let received = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(nas(peer, behaviour, Arc::clone(&received)));
    World {
        _dir: dir,
        store,
        watched,
        app,
        clock,
        received,
        shutdown,
    }
}

/// The NAS at the other end of the channels.
async fn nas(mut peer: ChannelPeer, behaviour: Behaviour, received: Arc<Mutex<Vec<Received>>>) {
    while let Some((to, request)) = peer.sent.recv().await {
        received.lock().unwrap().push(Received {
            at: Instant::now(),
            bytes: request.clone(),
        });
        let reply_code = match (behaviour, request[0]) {
            (Behaviour::Silent, _) => continue,
            (Behaviour::Ack, code::COA_REQUEST) => code::COA_ACK,
            (Behaviour::Ack, _) => code::DISCONNECT_ACK,
        };
        let authenticator: [u8; 16] = request[4..20].try_into().unwrap();
        let mut reply = packet::encode(reply_code, request[1], &authenticator, &[]).unwrap();
        packet::sign_reply(&mut reply, &authenticator, SECRET);
        let from: SocketAddr = to;
        let _ = peer.replies.send((from, reply));
    }
}

/// Waits (bounded in real time) until `check` holds, yielding meanwhile.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// The enforcer's outbox: a real store, with a count of its calls in
/// progress (time is moved only while none is: a store call runs on a real
/// thread, which a busy machine may take a while to schedule), failing on
/// demand (the next `n` claims or recordings of outcomes fail as an
/// unreachable database would), and keeping every claim attempted.
struct Watched {
    inner: Arc<Store>,
    busy: std::sync::atomic::AtomicUsize,
    failing_claims: std::sync::atomic::AtomicUsize,
    failing_records: std::sync::atomic::AtomicUsize,
    /// Every claim attempted, in order: the ids of each batch.
    claims: Mutex<Vec<Vec<i64>>>,
}

/// One call in progress, until dropped.
struct Busy<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Watched {
    fn call(&self) -> Busy<'_> {
        self.busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Busy(&self.busy)
    }

    fn idle(&self) -> bool {
        self.busy.load(std::sync::atomic::Ordering::SeqCst) == 0
    }

    /// Whether this call fails (and one fewer will).
    fn fails(counter: &std::sync::atomic::AtomicUsize) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        counter
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn down() -> StoreError {
        StoreError::Unwritable {
            cause: "unreachable",
            detail: "the test's database is down".into(),
        }
    }
}

#[async_trait::async_trait]
impl Outbox for Watched {
    fn write_status(&self) -> WriteStatus {
        self.inner.write_status()
    }

    async fn pending_jobs(&self, after_id: i64, limit: u32) -> Result<Vec<OutboxJob>, StoreError> {
        let _busy = self.call();
        self.inner.pending_jobs(after_id, limit).await
    }

    async fn inflight_jobs(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxJob>, StoreError> {
        let _busy = self.call();
        self.inner.inflight_jobs(lease, now).await
    }

    async fn claim_jobs(
        &self,
        claims: &[JobClaim<'_>],
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let _busy = self.call();
        self.claims
            .lock()
            .unwrap()
            .push(claims.iter().map(|c| c.id).collect());
        if Self::fails(&self.failing_claims) {
            return Err(Self::down());
        }
        self.inner.claim_jobs(claims, lease, now).await
    }

    async fn job_resent(
        &self,
        id: i64,
        sends: u32,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _busy = self.call();
        self.inner.job_resent(id, sends, lease, now).await
    }

    async fn finish_jobs(
        &self,
        results: &[(i64, JobResult)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _busy = self.call();
        if Self::fails(&self.failing_records) {
            return Err(Self::down());
        }
        self.inner.finish_jobs(results, now).await
    }

    async fn fall_back(
        &self,
        id: i64,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _busy = self.call();
        self.inner.fall_back(id, outcome, now).await
    }
}

impl World {
    /// Gives the tasks many chances to run without moving time, until the
    /// enforcer is not waiting for the store (bounded in real time).
    async fn settle(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            for _ in 0..2000 {
                tokio::task::yield_now().await;
            }
            if self.watched.idle() || std::time::Instant::now() > deadline {
                return;
            }
            // A store call runs on another thread: let it.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    async fn blocked_contract(&self, id: &str) {
        self.app
            .add_contract(
                &Actor::default(),
                &ContractId::parse(id).unwrap(),
                "",
                ContractState::Blocked,
            )
            .await
            .unwrap();
    }

    async fn online(&self, contract: &str) {
        // The session belongs to the contract through its login.
        self.app
            .add_login(
                &Actor::default(),
                &Username::parse(format!("user-{contract}")).unwrap(),
                &ContractId::parse(contract).unwrap(),
                Password::Cleartext("pw".into()),
                Vec::new(),
            )
            .await
            .unwrap();
        let event = AccountingEvent {
            at: self.clock.now(),
            nas_name: "n".into(),
            nas_identity: "10.0.0.1".into(),
            nas_address: "10.0.0.1".into(),
            nas_ip_address: Some("10.0.0.1".into()),
            username: format!("user-{contract}"),
            acct_session_id: format!("session-{contract}"),
            ..AccountingEvent::default()
        };
        self.store.record_accounting(&[event]).await.unwrap();
    }

    async fn release(&self, contract: &str) -> crate::model::Release {
        // The application wakes the scheduler and the enforcer.
        let contract = ContractId::parse(contract).unwrap();
        let released = self.app.release(&Actor::default(), &contract, "").await;
        released.unwrap().value
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    async fn jobs_in(&self, state: JobState) -> usize {
        self.app
            .enforcement_jobs(None, false, 100_000)
            .await
            .unwrap()
            .iter()
            .filter(|j| j.state == state)
            .count()
    }
}

fn filter_id(request: &[u8]) -> Option<String> {
    Attributes::over(request)
        .find(|(t, _)| *t == 11)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test]
async fn a_release_ends_exactly_at_its_instant_and_is_enforced() {
    let w = world(EnforcementConfig::default()).await;
    w.blocked_contract("1").await;
    w.online("1").await;
    let release = w.release("1").await;
    assert_eq!(
        release.ends_at - release.started_at,
        chrono::Duration::hours(2)
    );
    // The start of the release moves the online session to the active profile.
    until("the release's CoA, acknowledged", async || {
        w.jobs_in(JobState::Acked).await == 1
    })
    .await;
    assert_eq!(w.received()[0].bytes[0], code::COA_REQUEST);
    assert_eq!(filter_id(&w.received()[0].bytes).as_deref(), Some("full"));

    // One second before the end: still released, nothing more sent.
    tokio::time::advance(Duration::from_secs(2 * 3600 - 1)).await;
    w.settle().await;
    let history = w
        .app
        .releases(Some(&ContractId::parse("1").unwrap()), 10)
        .await
        .unwrap();
    assert_eq!(history[0].ended_at, None, "ended early");
    assert_eq!(w.received().len(), 1);

    // At the end instant (tokio's timers have a granularity of one
    // millisecond, so one more is allowed): ended and enforced.
    tokio::time::advance(Duration::from_secs(1)).await;
    w.settle().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    until("the expiry", async || {
        w.app
            .releases(Some(&ContractId::parse("1").unwrap()), 10)
            .await
            .unwrap()[0]
            .ended_at
            .is_some()
    })
    .await;
    assert!(w.clock.now() - release.ends_at <= chrono::Duration::milliseconds(1));
    let ended = &w
        .app
        .releases(Some(&ContractId::parse("1").unwrap()), 10)
        .await
        .unwrap()[0];
    assert_eq!(ended.ended_at, Some(release.ends_at));
    assert_eq!(ended.end_reason, Some(crate::model::EndReason::Expired));
    until("the expiry's CoA", async || w.received().len() == 2).await;
    let back = &w.received()[1];
    let interval = back.at - w.received()[0].at;
    assert!(interval >= Duration::from_secs(2 * 3600), "{interval:?}");
    assert!(interval <= Duration::from_secs(2 * 3600) + Duration::from_millis(1));
    assert_eq!(filter_id(&back.bytes).as_deref(), Some("walled"));
    until("both acknowledged", async || {
        w.jobs_in(JobState::Acked).await == 2
    })
    .await;
    w.shutdown.cancel();
}

#[tokio::test]
async fn many_releases_ending_together_are_all_enforced_within_the_nas_rate() {
    const CONTRACTS: usize = 120;
    const PER_SECOND: usize = 20;
    let config = EnforcementConfig {
        max_per_second_per_nas: PER_SECOND as u32,
        max_in_flight_per_nas: 10,
        expiry_batch: 50,
        ..EnforcementConfig::default()
    };
    let w = world(config).await;
    let mut end = None;
    for i in 0..CONTRACTS {
        let id = format!("c{i}");
        w.blocked_contract(&id).await;
        end = Some(w.release(&id).await.ends_at);
    }
    // The customers come online during the release.
    for i in 0..CONTRACTS {
        w.online(&format!("c{i}")).await;
    }
    w.settle().await;
    assert!(w.received().is_empty());

    let end = end.unwrap();
    let wait = (end - w.clock.now()).to_std().unwrap();
    tokio::time::advance(wait).await;
    until("every release ended", async || {
        w.store.next_release_end().await.unwrap().is_none()
    })
    .await;
    // Time goes on in tenths of a second until every request is answered.
    let mut steps = 0;
    loop {
        w.settle().await;
        if w.jobs_in(JobState::Acked).await == CONTRACTS {
            break;
        }
        steps += 1;
        assert!(
            steps < 200,
            "{} of {CONTRACTS} sent in 20 s",
            w.received().len()
        );
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    let at: Vec<Instant> = w.received().iter().map(|r| r.at).collect();
    assert_eq!(
        at.len(),
        CONTRACTS,
        "one request per session, none sent twice"
    );
    // However the seconds are cut, none sees more than the limit ...
    for window in at.windows(PER_SECOND + 1) {
        assert!(
            window[PER_SECOND] - window[0] >= Duration::from_secs(1),
            "{} requests within {:?}",
            PER_SECOND + 1,
            window[PER_SECOND] - window[0]
        );
    }
    // ... and the NAS gets near its full share of each one. The test's
    // clock moves in steps while the store works on real threads, so a
    // second's requests may go out some steps late: the bound says "near".
    let took = at[CONTRACTS - 1] - at[0];
    let seconds = (CONTRACTS / PER_SECOND - 1) as u64;
    assert!(
        took <= Duration::from_secs(seconds) * 3 / 2,
        "{CONTRACTS} requests took {took:?} at {PER_SECOND}/s"
    );
    assert_eq!(w.jobs_in(JobState::Acked).await, CONTRACTS);
    w.shutdown.cancel();
}

#[tokio::test]
async fn a_silent_nas_gets_each_request_max_sends_times_at_the_rfc_5080_intervals() {
    const CONTRACTS: usize = 6;
    const IN_FLIGHT: usize = 2;
    let config = EnforcementConfig {
        max_in_flight_per_nas: IN_FLIGHT,
        ..EnforcementConfig::default()
    };
    let (initial, longest, sends) = (
        Duration::from_millis(config.retry_initial_ms),
        Duration::from_millis(config.retry_max_ms),
        config.max_sends as usize,
    );
    let w = world_with(config, Behaviour::Silent).await;
    for i in 0..CONTRACTS {
        let id = format!("c{i}");
        w.blocked_contract(&id).await;
        w.online(&id).await;
        w.release(&id).await;
    }
    // Time goes on in tenths of a second until every job has given up.
    let mut steps = 0;
    loop {
        w.settle().await;
        if w.jobs_in(JobState::Timeout).await == CONTRACTS {
            break;
        }
        steps += 1;
        assert!(steps < 20_000, "{} requests received", w.received().len());
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    let received = w.received();
    assert_eq!(
        received.len(),
        CONTRACTS * sends,
        "max_sends of each, no more"
    );
    // Per request (identifier and authenticator are kept: the same bytes).
    let mut by_request: Vec<Vec<Instant>> = Vec::new();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for r in &received {
        match seen.iter().position(|b| *b == r.bytes) {
            Some(i) => by_request[i].push(r.at),
            None => {
                seen.push(r.bytes.clone());
                by_request.push(vec![r.at]);
            }
        }
    }
    assert_eq!(
        seen.len(),
        CONTRACTS,
        "one request per job, resent identically"
    );
    for times in &by_request {
        assert_eq!(times.len(), sends);
        // 2 s, doubling up to 16 s, each within RFC 5080's jitter of a
        // tenth either way (and the test's tenth-of-a-second steps).
        let mut expected = initial;
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            let low = expected * 9 / 10;
            let high = expected * 11 / 10 + Duration::from_millis(200);
            assert!(
                (low..=high).contains(&gap),
                "a gap of {gap:?}, expected about {expected:?}"
            );
            expected = (expected * 2).min(longest);
        }
    }
    // Never more than the NAS's limit waiting for an answer: a job is in
    // flight from its first send to its last.
    for (i, times) in by_request.iter().enumerate() {
        let at = times[0];
        let outstanding = by_request
            .iter()
            .enumerate()
            .filter(|(j, other)| *j != i && other[0] <= at && at <= *other.last().unwrap())
            .count();
        assert!(
            outstanding < IN_FLIGHT,
            "{} in flight with another sent",
            outstanding
        );
    }
    w.shutdown.cancel();
}

#[tokio::test]
async fn a_request_to_a_session_that_stopped_is_not_sent_again() {
    let config = EnforcementConfig::default();
    let longest = Duration::from_millis(config.retry_max_ms);
    let w = world_with(config, Behaviour::Silent).await;
    w.blocked_contract("c1").await;
    w.online("c1").await;
    w.release("c1").await;
    until("the first send", async || w.received().len() == 1).await;
    // The customer hangs up before the NAS answers: its Stop arrives.
    let stop = AccountingEvent {
        kind: crate::model::AccountingKind::Stop,
        at: w.clock.now(),
        nas_name: "n".into(),
        nas_identity: "10.0.0.1".into(),
        nas_address: "10.0.0.1".into(),
        nas_ip_address: Some("10.0.0.1".into()),
        username: "user-c1".into(),
        acct_session_id: "session-c1".into(),
        ..AccountingEvent::default()
    };
    w.store.record_accounting(&[stop]).await.unwrap();
    let jobs = w.app.enforcement_jobs(None, false, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, JobState::Dropped);
    assert_eq!(jobs[0].outcome.as_deref(), Some("session ended"));
    // Past every retransmission the request would have had: still one.
    for _ in 0..(5 * longest.as_millis() / 100) {
        tokio::time::advance(Duration::from_millis(100)).await;
        w.settle().await;
    }
    assert_eq!(w.received().len(), 1, "no send after the session's Stop");
    let jobs = w.app.enforcement_jobs(None, false, 10).await.unwrap();
    assert_eq!(
        jobs[0].state,
        JobState::Dropped,
        "the Stop's outcome stands"
    );
    w.shutdown.cancel();
}

/// Blocked, online and released, before the enforcer sees the jobs: the
/// jobs of `contracts`, in the order they were queued.
async fn queue_releases(w: &World, contracts: &[&str]) -> Vec<i64> {
    for id in contracts {
        w.blocked_contract(id).await;
        w.online(id).await;
        w.release(id).await;
    }
    let mut ids: Vec<i64> = w
        .app
        .enforcement_jobs(None, false, 100)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// The enforcement job each request the NAS received belongs to, by the
/// request's Acct-Session-Id ("session-<contract>").
fn sessions_received(w: &World) -> Vec<String> {
    w.received()
        .iter()
        .map(|r| {
            Attributes::over(&r.bytes)
                .find(|(t, _)| *t == packet::attr::ACCT_SESSION_ID)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn a_claim_the_store_refuses_gives_the_places_back_and_keeps_the_order() {
    // As many places on the NAS as jobs: a place not given back would
    // leave a job waiting for ever.
    let config = EnforcementConfig {
        max_in_flight_per_nas: 3,
        ..EnforcementConfig::default()
    };
    let w = world_with(config, Behaviour::Ack).await;
    // Before any job exists, so before any claim.
    let flaky = Arc::clone(&w.watched);
    flaky
        .failing_claims
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let jobs = queue_releases(&w, &["c1", "c2", "c3"]).await;
    let mut steps = 0;
    while w.jobs_in(JobState::Acked).await < 3 {
        steps += 1;
        assert!(steps < 1000, "claims: {:?}", flaky.claims.lock().unwrap());
        tokio::time::advance(Duration::from_millis(100)).await;
        w.settle().await;
    }
    let claims = flaky.claims.lock().unwrap().clone();
    assert!(claims.len() >= 3, "two refused, then taken: {claims:?}");
    // Each attempt offers again, first, what the refused one offered, in
    // the order queued (jobs queued meanwhile after them): nothing lost,
    // nothing reordered by the failures.
    for pair in claims.windows(2) {
        assert!(pair[1].starts_with(&pair[0]), "{claims:?}");
    }
    assert_eq!(claims.last(), Some(&jobs), "{claims:?}");
    // Sent once each, in the order queued.
    assert_eq!(
        sessions_received(&w),
        ["session-c1", "session-c2", "session-c3"]
    );
    w.shutdown.cancel();
}

#[tokio::test]
async fn outcomes_the_store_refuses_are_kept_and_recorded_later() {
    let w = world_with(EnforcementConfig::default(), Behaviour::Ack).await;
    // Before any job exists, so before any outcome.
    let flaky = Arc::clone(&w.watched);
    flaky
        .failing_records
        .store(3, std::sync::atomic::Ordering::SeqCst);
    queue_releases(&w, &["c1", "c2"]).await;
    until("the first answer", async || !w.received().is_empty()).await;
    w.settle().await;
    // The NAS answered, the store refused the outcome: still sent there.
    assert_eq!(w.jobs_in(JobState::Sent).await, 1);
    assert_eq!(w.jobs_in(JobState::Acked).await, 0);
    let mut steps = 0;
    while w.jobs_in(JobState::Acked).await < 2 {
        steps += 1;
        assert!(steps < 1000, "outcomes never recorded");
        tokio::time::advance(Duration::from_millis(100)).await;
        w.settle().await;
    }
    assert_eq!(
        flaky
            .failing_records
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // Kept, not lost: neither request went out again for it.
    assert_eq!(w.received().len(), 2);
    w.shutdown.cancel();
}
