//! The state machine alone: no store, no socket, no runtime. Time is a
//! plain `Instant` the test moves; the store is a double that answers the
//! machine's calls from memory and fails on demand; the NAS is whatever
//! the test answers to the packets sent.

use std::collections::{HashSet, VecDeque};

use super::*;
use crate::config::Config;
use crate::model::SessionTarget;
use crate::policy::Profile;
use crate::radius::packet::{self, attr, code};

const SECRET: &[u8] = b"coa-secret";
/// The NAS's CoA address (the default port).
const NAS: &str = "10.0.0.1:3799";

fn nas() -> SocketAddr {
    NAS.parse().unwrap()
}

/// NAS "n" at 10.0.0.1 in `mode`; a profile whose change is a CoA.
fn settings(mode: &str) -> Arc<Settings> {
    let text = format!(
        "[[nas]]\nname = \"n\"\naddress = \"10.0.0.1\"\nsecret = \"coa-secret\"\ncoa_mode = \"{mode}\"\n\
         [profiles.active]\ncoa = [\"Filter-Id = full\"]\n"
    );
    Arc::new(Settings::build(&Config::parse_with_env(&text, "t", []).unwrap()).unwrap())
}

/// A pending job moving session `session`'s customer to the active
/// profile on NAS "n".
fn job(id: i64, session: i64) -> OutboxJob {
    OutboxJob {
        id,
        session_id: session,
        contract_id: format!("c{session}"),
        profile: Some(Profile::Active),
        kind: None,
        fallback: false,
        packet: None,
        sends: 0,
        outcome: None,
        target: SessionTarget {
            nas_name: "n".into(),
            nas_address: "10.0.0.1".into(),
            username: format!("user-{session}"),
            acct_session_id: format!("session-{session}"),
            framed_ip_address: None,
            nas_ip_address: Some("10.0.0.1".into()),
            nas_identifier: None,
        },
    }
}

/// Jobs 1..=n, one session each.
fn jobs(n: i64) -> Vec<OutboxJob> {
    (1..=n).map(|i| job(i, i)).collect()
}

/// The NAS's answer to `request`, signed with `secret`.
fn reply(request: &[u8], reply_code: u8, extra: &[(u8, &[u8])], secret: &[u8]) -> Vec<u8> {
    let authenticator: [u8; 16] = request[4..20].try_into().unwrap();
    let mut r = packet::encode(reply_code, request[1], &authenticator, extra).unwrap();
    packet::sign_reply(&mut r, &authenticator, secret);
    r
}

fn ack(request: &[u8]) -> Vec<u8> {
    let reply_code = match request[0] {
        code::COA_REQUEST => code::COA_ACK,
        _ => code::DISCONNECT_ACK,
    };
    reply(request, reply_code, &[], SECRET)
}

/// The job a request is for, by its Acct-Session-Id ("session-<n>").
fn session_of(request: &[u8]) -> String {
    packet::Attributes::over(request)
        .find(|(t, _)| *t == attr::ACCT_SESSION_ID)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The outbox as the tests keep it, failing on demand: the next `fail_*`
/// calls of each kind fail as an unreachable database would.
#[derive(Default)]
struct Double {
    pending: Vec<OutboxJob>,
    /// What a look for requests left in flight finds.
    left_in_flight: Vec<OutboxJob>,
    /// Jobs a claim or a retransmission finds no longer this instance's.
    not_ours: HashSet<i64>,
    /// What `fall_back` answers.
    falls_back: bool,
    fail_claims: usize,
    fail_records: usize,
    fail_resent: usize,
    fail_takeovers: usize,
    /// Every claim attempted: the ids of each batch, in order.
    claims: Vec<Vec<i64>>,
    recorded: Vec<(i64, JobResult)>,
    /// Every call of `job_resent`: id and sends.
    resent: Vec<(i64, u32)>,
    leases: Vec<Lease>,
}

/// Whether this call fails (and one fewer will).
fn fails(counter: &mut usize) -> bool {
    let fail = *counter > 0;
    *counter = counter.saturating_sub(1);
    fail
}

impl Double {
    fn fetch(&self, after: i64, limit: u32) -> Vec<OutboxJob> {
        let mut jobs: Vec<OutboxJob> = self
            .pending
            .iter()
            .filter(|j| j.id > after)
            .cloned()
            .collect();
        jobs.sort_by_key(|j| j.id);
        jobs.truncate(limit as usize);
        jobs
    }

    fn claim(&mut self, claims: &[Claim], lease: &Lease) -> Result<Vec<bool>, StoreFailed> {
        self.claims.push(claims.iter().map(|c| c.id).collect());
        self.leases.push(lease.clone());
        if fails(&mut self.fail_claims) {
            return Err(StoreFailed);
        }
        let taken: Vec<bool> = claims
            .iter()
            .map(|c| !self.not_ours.contains(&c.id))
            .collect();
        self.pending
            .retain(|j| !claims.iter().any(|c| c.id == j.id));
        Ok(taken)
    }

    fn resend(&mut self, id: i64, sends: u32, lease: &Lease) -> Result<bool, StoreFailed> {
        self.resent.push((id, sends));
        self.leases.push(lease.clone());
        if fails(&mut self.fail_resent) {
            return Err(StoreFailed);
        }
        Ok(!self.not_ours.contains(&id))
    }
}

/// The machine with its world: a clock the test moves, the store double,
/// and what went out.
struct Bench {
    machine: Machine,
    config: EnforcementConfig,
    t0: Instant,
    at: Instant,
    wall0: DateTime<Utc>,
    settings: Arc<Settings>,
    store: Double,
    /// What was sent, when and where, in order.
    sent: Vec<(Instant, SocketAddr, Vec<u8>)>,
    /// Every action carried out, in order.
    actions: Vec<Action>,
    progress: u64,
}

impl Bench {
    /// A machine just made, before its first look at the outbox.
    fn new(config: EnforcementConfig, mode: &str) -> Bench {
        let t0 = Instant::now();
        Bench {
            machine: Machine::new(config.clone(), "test", t0),
            config,
            t0,
            at: t0,
            wall0: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            settings: settings(mode),
            store: Double::default(),
            sent: Vec::new(),
            actions: Vec::new(),
            progress: 0,
        }
    }

    /// A machine past its first look for requests left in flight.
    fn running(config: EnforcementConfig, mode: &str) -> Bench {
        let mut bench = Bench::new(config, mode);
        bench.time_passed();
        assert_eq!(bench.machine.phase, Phase::Running);
        bench
    }

    fn cx(&self) -> Context {
        Context {
            at: self.at,
            wall: self.wall(),
            settings: Arc::clone(&self.settings),
        }
    }

    fn wall(&self) -> DateTime<Utc> {
        self.wall0 + chrono::Duration::from_std(self.at - self.t0).unwrap()
    }

    fn advance(&mut self, by: Duration) {
        self.at += by;
    }

    /// Moves the clock to the machine's next wake-up and passes the time.
    fn wake(&mut self) {
        self.at = self.at.max(self.machine.wake_at());
        self.time_passed();
    }

    fn time_passed(&mut self) {
        let actions = self.machine.time_passed(&self.cx());
        self.carry_out(actions);
    }

    fn pump(&mut self) {
        let actions = self.machine.pump(&self.cx());
        self.carry_out(actions);
    }

    fn deliver(&mut self, from: SocketAddr, bytes: &[u8]) {
        let actions = self.machine.received(from, bytes, &self.cx());
        self.carry_out(actions);
    }

    /// Answers every request sent from index `from` on with an ACK.
    fn ack_from(&mut self, from: usize) {
        let requests: Vec<(SocketAddr, Vec<u8>)> = self.sent[from..]
            .iter()
            .map(|(_, to, bytes)| (*to, bytes.clone()))
            .collect();
        for (to, request) in requests {
            self.deliver(to, &ack(&request));
        }
    }

    /// Does what the shell does: each action in order, a store call's
    /// answer fed back and what it brings carried out first.
    fn carry_out(&mut self, actions: Vec<Action>) {
        let mut todo = VecDeque::from(actions);
        while let Some(action) = todo.pop_front() {
            self.actions.push(action.clone());
            let cx = self.cx();
            let then = match action {
                Action::Send { to, packet } => {
                    self.sent.push((self.at, to, packet));
                    Vec::new()
                }
                Action::Progress(n) => {
                    self.progress += n;
                    Vec::new()
                }
                Action::Fetch { after, limit } => {
                    let jobs = self.store.fetch(after, limit);
                    self.machine.fetched(Ok(jobs), &cx)
                }
                Action::Claim { claims, lease, .. } => {
                    let result = self.store.claim(&claims, &lease);
                    self.machine.claimed(result, &cx)
                }
                Action::Record { results, .. } => {
                    let result = if fails(&mut self.store.fail_records) {
                        Err(StoreFailed)
                    } else {
                        self.store.recorded.extend(results);
                        Ok(())
                    };
                    self.machine.recorded(result, &cx)
                }
                Action::Resent {
                    key,
                    id,
                    sends,
                    lease,
                    ..
                } => {
                    let result = self.store.resend(id, sends, &lease);
                    self.machine.resent(key, id, result, &cx)
                }
                Action::FallBack { id, .. } => {
                    let falls_back = self.store.falls_back;
                    self.machine.fell_back(id, Ok(falls_back), &cx)
                }
                Action::TakeOver { lease, .. } => {
                    self.store.leases.push(lease);
                    let result = if fails(&mut self.store.fail_takeovers) {
                        Err(StoreFailed)
                    } else {
                        Ok(self.store.left_in_flight.clone())
                    };
                    self.machine.taken_over(result, &cx)
                }
                Action::Resumed {
                    id, sends, lease, ..
                } => {
                    let result = self.store.resend(id, sends, &lease);
                    self.machine.resumed(result, &cx)
                }
            };
            for action in then.into_iter().rev() {
                todo.push_front(action);
            }
        }
    }

    fn sent_bytes(&self) -> Vec<Vec<u8>> {
        self.sent.iter().map(|(_, _, b)| b.clone()).collect()
    }

    fn sessions_sent(&self) -> Vec<String> {
        self.sent.iter().map(|(_, _, b)| session_of(b)).collect()
    }

    fn recorded(&self, id: i64) -> Option<&JobResult> {
        self.store
            .recorded
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r)
    }

    fn claims(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Claim { .. }))
            .count()
    }
}

fn config(in_flight: usize, per_second: u32) -> EnforcementConfig {
    EnforcementConfig {
        max_in_flight_per_nas: in_flight,
        max_per_second_per_nas: per_second,
        // The periodic look for other instances' requests out of the way.
        lease_secs: 300,
        ..EnforcementConfig::default()
    }
}

#[test]
fn nothing_is_claimed_before_the_requests_left_in_flight_are_taken_over() {
    let mut b = Bench::new(EnforcementConfig::default(), "coa");
    b.store.pending = jobs(1);
    b.store.fail_takeovers = 1;
    // The look is due at once; before it, a pump does nothing.
    assert_eq!(b.machine.wake_at(), b.t0);
    b.pump();
    assert!(b.actions.is_empty(), "{:?}", b.actions);
    b.time_passed();
    let lease_until = b.wall() + chrono::Duration::seconds(b.config.lease_secs as i64);
    assert_eq!(
        b.actions,
        [Action::TakeOver {
            lease: Lease {
                instance: "test".into(),
                until: lease_until
            },
            now: b.wall(),
            starting: true
        }]
    );
    // The store failed: still nothing claimed, the look again in a second.
    b.pump();
    assert_eq!(b.actions.len(), 1);
    assert_eq!(b.machine.wake_at(), b.t0 + STORE_RETRY);
    b.wake();
    assert!(matches!(
        b.actions.last(),
        Some(Action::TakeOver { starting: true, .. })
    ));
    // Now it is done: new work is taken.
    b.pump();
    assert_eq!(b.store.claims, [vec![1]]);
    assert_eq!(b.sent.len(), 1);
}

#[test]
fn requests_left_in_flight_are_sent_again_identically_under_this_instances_lease() {
    // Retransmissions later than the looks for requests left in flight.
    let config = EnforcementConfig {
        lease_secs: 30,
        retry_initial_ms: 60_000,
        retry_max_ms: 60_000,
        ..EnforcementConfig::default()
    };
    // A request sent twice by an instance that stopped.
    let mut before = Bench::running(config.clone(), "coa");
    before.store.pending = jobs(1);
    before.pump();
    let packet = before.sent_bytes().remove(0);
    let mut left = job(1, 1);
    left.kind = Some(RequestKind::Coa);
    left.packet = Some(packet.clone());
    left.sends = 2;
    let mut b = Bench::new(config.clone(), "coa");
    b.store.left_in_flight = vec![left];
    b.time_passed();
    assert_eq!(
        b.sent_bytes(),
        std::slice::from_ref(&packet),
        "the same bytes"
    );
    assert_eq!(b.store.resent, [(1, 3)], "the third send, counted");
    let lease = Lease {
        instance: "test".into(),
        until: b.wall() + chrono::Duration::seconds(30),
    };
    assert_eq!(b.store.leases, [lease.clone(), lease]);
    // The next look comes a third of a lease later; it does not take
    // again what this instance holds ...
    assert_eq!(b.machine.wake_at(), b.t0 + Duration::from_secs(10));
    b.wake();
    assert!(matches!(
        b.actions.last(),
        Some(Action::TakeOver {
            starting: false,
            ..
        })
    ));
    assert_eq!(b.sent.len(), 1);
    // ... nor what it has an outcome for, not recorded yet.
    b.deliver(nas(), &ack(&packet));
    b.wake();
    assert_eq!(b.at, b.t0 + Duration::from_secs(20));
    assert_eq!(b.sent.len(), 1);
    b.pump();
    assert_eq!(b.recorded(1).unwrap().state, JobState::Acked);
}

#[test]
fn a_look_for_requests_left_in_flight_stops_at_a_store_failure_and_keeps_what_it_sent() {
    let mut b = Bench::new(EnforcementConfig::default(), "coa");
    let mut before = Bench::running(EnforcementConfig::default(), "coa");
    before.store.pending = jobs(2);
    before.pump();
    b.store.left_in_flight = before
        .sent_bytes()
        .into_iter()
        .enumerate()
        .map(|(i, packet)| {
            let mut j = job(i as i64 + 1, i as i64 + 1);
            j.kind = Some(RequestKind::Coa);
            j.packet = Some(packet);
            j.sends = 1;
            j
        })
        .collect();
    b.store.fail_resent = 1;
    b.time_passed();
    // The first went out; its count failed; the second waits.
    assert_eq!(b.sent.len(), 1);
    assert_eq!(b.machine.in_flight(), 1);
    assert_eq!(b.machine.wake_at(), b.t0 + STORE_RETRY);
    b.wake();
    assert_eq!(b.sessions_sent(), ["session-1", "session-2"]);
    assert_eq!(b.machine.phase, Phase::Running);
}

#[test]
fn no_second_sees_more_than_the_nas_rate_and_every_job_is_sent_once() {
    const PER_SECOND: usize = 5;
    let mut b = Bench::running(config(100, PER_SECOND as u32), "coa");
    b.store.pending = jobs(23);
    let mut steps = 0;
    while b.sent.len() < 23 {
        steps += 1;
        assert!(steps < 100, "{} sent", b.sent.len());
        let answered = b.sent.len();
        b.pump();
        b.ack_from(answered);
        // As the shell does after answers: record them, look for work.
        b.pump();
        // Waits for the window to slide, not more.
        b.wake();
    }
    let at: Vec<Instant> = b.sent.iter().map(|(at, _, _)| *at).collect();
    for window in at.windows(PER_SECOND + 1) {
        assert!(window[PER_SECOND] - window[0] >= Duration::from_secs(1));
    }
    assert_eq!(
        at[22] - at[0],
        Duration::from_secs(4),
        "a full share of each second"
    );
    let sessions: HashSet<String> = b.sessions_sent().into_iter().collect();
    assert_eq!(sessions.len(), 23, "one request per job");
    b.pump();
    assert_eq!(b.store.recorded.len(), 23);
    assert_eq!(b.progress, 23);
}

#[test]
fn no_more_requests_than_the_nas_limit_wait_for_an_answer() {
    let mut b = Bench::running(config(3, 1000), "coa");
    b.store.pending = jobs(5);
    b.pump();
    assert_eq!(b.sessions_sent(), ["session-1", "session-2", "session-3"]);
    b.advance(Duration::from_millis(100));
    b.pump();
    assert_eq!(b.sent.len(), 3, "no place");
    let second = b.sent[1].2.clone();
    b.deliver(nas(), &ack(&second));
    b.pump();
    assert_eq!(b.sent.len(), 4, "one place, one request");
    assert_eq!(b.sessions_sent()[3], "session-4");
    assert_eq!(b.machine.in_flight(), 3);
}

#[test]
fn identifiers_are_not_reused_while_their_requests_are_in_flight() {
    let mut b = Bench::running(config(1000, 1000), "coa");
    b.store.pending = jobs(300);
    b.pump();
    let identifiers: HashSet<u8> = b.sent.iter().map(|(_, _, p)| p[1]).collect();
    assert_eq!(b.sent.len(), 256, "one request per identifier");
    assert_eq!(identifiers.len(), 256);
    // An answer frees its identifier, and only that one is taken again.
    let seventh = b
        .sent
        .iter()
        .find(|(_, _, p)| p[1] == 7)
        .map(|(_, _, p)| p.clone())
        .unwrap();
    b.deliver(nas(), &ack(&seventh));
    b.pump();
    assert_eq!(b.sent.len(), 257);
    assert_eq!(b.sent[256].2[1], 7);
    assert_eq!(b.sessions_sent()[256], "session-257");
}

#[test]
fn a_silent_nas_gets_max_sends_at_the_rfc_5080_intervals_then_the_job_times_out() {
    let config = EnforcementConfig::default();
    let mut b = Bench::running(config.clone(), "coa");
    b.store.pending = jobs(1);
    b.pump();
    while b.sent.len() < config.max_sends as usize {
        b.wake();
    }
    let first = &b.sent[0].2;
    assert!(
        b.sent.iter().all(|(_, _, p)| p == first),
        "resent identically"
    );
    for (n, pair) in b.sent.windows(2).enumerate() {
        let sends = n as u32 + 1;
        assert_eq!(
            pair[1].0 - pair[0].0,
            request::retransmission_timeout(&config, sends, 1),
            "after send {sends}"
        );
    }
    assert_eq!(b.store.resent, [(1, 2), (1, 3), (1, 4), (1, 5)]);
    // Each count renews the lease from the moment of the send.
    let lease = chrono::Duration::seconds(config.lease_secs as i64);
    let resent_at: Vec<DateTime<Utc>> = b
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Resent { lease: l, now, .. } => {
                assert_eq!(l.until, *now + lease);
                Some(*now)
            }
            _ => None,
        })
        .collect();
    let sent_at: Vec<DateTime<Utc>> = b.sent[1..]
        .iter()
        .map(|(at, _, _)| b.wall0 + chrono::Duration::from_std(*at - b.t0).unwrap())
        .collect();
    assert_eq!(resent_at, sent_at);
    // After the last send's timeout, no sixth: the job ends.
    let last = b.sent[4].0;
    while b.machine.in_flight() > 0 {
        b.wake();
    }
    assert_eq!(b.sent.len(), 5);
    assert_eq!(b.at - last, request::retransmission_timeout(&config, 5, 1));
    b.pump();
    let result = b.recorded(1).unwrap();
    assert_eq!(result.state, JobState::Timeout);
    assert_eq!(result.outcome, "CoA: no answer after 5 sends");
}

#[test]
fn a_retransmission_the_store_cannot_count_goes_out_and_one_no_longer_ours_does_not() {
    let mut b = Bench::running(config(1, 1000), "coa");
    b.store.pending = jobs(2);
    b.pump();
    b.store.fail_resent = 1;
    b.wake();
    assert_eq!(b.sent.len(), 2, "sent again though not counted");
    // The session stopped meanwhile: the store says the job is not ours.
    b.store.not_ours.insert(1);
    b.wake();
    assert_eq!(b.sent.len(), 2, "not sent again");
    assert_eq!(b.machine.in_flight(), 0);
    // Its place is free: the next job goes out; no outcome is recorded
    // for the one let go.
    b.pump();
    assert_eq!(b.sessions_sent().last().unwrap(), "session-2");
    assert_eq!(b.recorded(1), None);
}

#[test]
fn an_ack_or_a_nak_ends_the_job_and_a_forged_answer_is_ignored() {
    let mut b = Bench::running(config(10, 1000), "coa");
    b.store.pending = jobs(2);
    b.pump();
    let (first, second) = (b.sent[0].2.clone(), b.sent[1].2.clone());
    // Signed with another secret, cut short, for no request: ignored.
    b.deliver(nas(), &reply(&first, code::COA_ACK, &[], b"forged"));
    b.deliver(nas(), &first[..1]);
    b.deliver("10.0.0.9:3799".parse().unwrap(), &ack(&first));
    assert_eq!(b.machine.in_flight(), 2);
    b.pump();
    assert!(b.store.recorded.is_empty());
    // The ACK, from the IPv4-mapped address a dual-stack socket reports.
    b.deliver("[::ffff:10.0.0.1]:3799".parse().unwrap(), &ack(&first));
    let nak = reply(
        &second,
        code::COA_NAK,
        &[(attr::ERROR_CAUSE, &503u32.to_be_bytes())],
        SECRET,
    );
    b.deliver(nas(), &nak);
    // An answer again: no request waits for it any more.
    b.deliver(nas(), &ack(&first));
    assert_eq!(b.machine.in_flight(), 0);
    b.pump();
    assert_eq!(b.store.recorded.len(), 2);
    assert_eq!(
        b.recorded(1),
        Some(&JobResult {
            state: JobState::Acked,
            outcome: "CoA-ACK".into(),
            error_cause: None,
            close_session: false,
        })
    );
    assert_eq!(
        b.recorded(2),
        Some(&JobResult {
            state: JobState::Nak,
            outcome: "CoA-NAK (Error-Cause 503 Session-Context-Not-Found)".into(),
            error_cause: Some(503),
            close_session: true,
        })
    );
    assert_eq!(b.progress, 2);
    // No retransmission follows.
    b.advance(Duration::from_secs(60));
    b.time_passed();
    assert_eq!(b.sent.len(), 2);
}

#[test]
fn a_coa_nak_falls_back_to_a_disconnect_unless_the_session_is_gone() {
    let mut b = Bench::running(config(10, 1000), "coa_then_disconnect");
    b.store.falls_back = true;
    b.store.pending = jobs(2);
    b.pump();
    let (first, second) = (b.sent[0].2.clone(), b.sent[1].2.clone());
    b.deliver(nas(), &reply(&first, code::COA_NAK, &[], SECRET));
    assert_eq!(
        b.actions.last(),
        Some(&Action::FallBack {
            id: 1,
            outcome: "CoA-NAK".into(),
            now: b.wall()
        })
    );
    // The NAS has no such session: a Disconnect would not find it either.
    let gone = reply(
        &second,
        code::COA_NAK,
        &[(attr::ERROR_CAUSE, &503u32.to_be_bytes())],
        SECRET,
    );
    b.deliver(nas(), &gone);
    assert!(!matches!(
        b.actions.last(),
        Some(Action::FallBack { id: 2, .. })
    ));
    b.pump();
    assert_eq!(b.recorded(2).unwrap().state, JobState::Nak);
    assert_eq!(b.recorded(1), None, "not ended: it goes on as a Disconnect");
    assert_eq!(b.sent.len(), 3);
    let disconnect = b.sent[2].2.clone();
    assert_eq!(disconnect[0], code::DISCONNECT_REQUEST);
    assert_eq!(session_of(&disconnect), "session-1");
    assert_eq!(b.store.claims.last(), Some(&vec![1]));
    b.deliver(nas(), &ack(&disconnect));
    b.pump();
    let result = b.recorded(1).unwrap();
    assert_eq!(result.state, JobState::Acked);
    assert_eq!(result.outcome, "CoA-NAK; Disconnect-ACK");
}

#[test]
fn a_fall_back_a_newer_job_makes_moot_ends_the_job() {
    let mut b = Bench::running(config(10, 1000), "coa_then_disconnect");
    b.store.falls_back = false;
    b.store.pending = jobs(1);
    b.pump();
    let request = b.sent[0].2.clone();
    b.deliver(nas(), &reply(&request, code::COA_NAK, &[], SECRET));
    assert_eq!(b.progress, 1, "the store ended it (superseded)");
    b.advance(Duration::from_secs(60));
    b.time_passed();
    b.pump();
    assert_eq!(b.sent.len(), 1, "nothing more sent");
    assert!(b.store.recorded.is_empty());
}

#[test]
fn one_job_per_session_is_in_flight_at_a_time() {
    let mut b = Bench::running(config(10, 1000), "coa");
    b.store.pending = vec![job(1, 7), job(2, 7), job(3, 8)];
    b.pump();
    assert_eq!(b.store.claims, [vec![1, 3]]);
    b.advance(Duration::from_secs(1));
    b.pump();
    assert_eq!(b.sent.len(), 2, "the session's second waits");
    let first = b.sent[0].2.clone();
    b.deliver(nas(), &ack(&first));
    b.pump();
    assert_eq!(b.store.claims, [vec![1, 3], vec![2]]);
    assert_eq!(b.sessions_sent(), ["session-7", "session-8", "session-7"]);
}

#[test]
fn a_claim_the_store_refuses_gives_the_places_back_and_requeues_the_jobs_in_order() {
    // As many places as jobs: a place not given back would leave a job
    // waiting for ever.
    let mut b = Bench::running(config(4, 1000), "coa");
    b.store.pending = jobs(3);
    b.store.fail_claims = 2;
    b.pump();
    assert!(b.sent.is_empty(), "nothing sent for a refused claim");
    assert_eq!(b.machine.wake_at(), b.at + STORE_RETRY, "tried again");
    // A job queued meanwhile comes after them.
    b.store.pending.push(job(4, 4));
    b.wake();
    b.pump();
    b.advance(STORE_RETRY);
    b.pump();
    assert_eq!(
        b.store.claims,
        [vec![1, 2, 3], vec![1, 2, 3, 4], vec![1, 2, 3, 4]]
    );
    assert_eq!(
        b.sessions_sent(),
        ["session-1", "session-2", "session-3", "session-4"],
        "sent once each, in order"
    );
    assert_eq!(b.machine.in_flight(), 4);
}

#[test]
fn a_job_another_instance_claimed_first_is_let_go() {
    let mut b = Bench::running(config(1, 1000), "coa");
    b.store.pending = jobs(2);
    b.store.not_ours.insert(1);
    b.pump();
    assert_eq!(b.store.claims, [vec![1]]);
    assert!(b.sent.is_empty());
    b.pump();
    assert_eq!(b.store.claims, [vec![1], vec![2]], "its place given back");
    assert_eq!(b.sessions_sent(), ["session-2"]);
}

#[test]
fn outcomes_the_store_refuses_are_kept_and_recorded_later_without_sending_again() {
    let mut b = Bench::running(config(10, 1000), "coa");
    b.store.pending = jobs(2);
    b.pump();
    b.ack_from(0);
    b.store.fail_records = 2;
    b.store.pending.push(job(3, 3));
    b.pump();
    assert!(b.store.recorded.is_empty());
    assert_eq!(b.machine.wake_at(), b.at + STORE_RETRY);
    assert_eq!(b.claims(), 1, "no new work before the outcomes are written");
    b.wake();
    b.pump();
    assert!(b.store.recorded.is_empty());
    b.advance(STORE_RETRY);
    b.pump();
    let records: Vec<&Action> = b
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Record { .. }))
        .collect();
    assert_eq!(records.len(), 3, "the same outcomes, tried three times");
    assert!(records.windows(2).all(|p| match (p[0], p[1]) {
        (Action::Record { results: a, .. }, Action::Record { results: b, .. }) => a == b,
        _ => false,
    }));
    assert_eq!(
        b.store
            .recorded
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(b.progress, 2);
    assert_eq!(
        b.sessions_sent(),
        ["session-1", "session-2", "session-3"],
        "neither request went out again; then the new work"
    );
}

#[test]
fn routes_that_lead_nowhere_drop_the_job() {
    let mut b = Bench::running(config(10, 1000), "none");
    let mut elsewhere = job(2, 2);
    elsewhere.target.nas_name = "gone".into();
    b.store.pending = vec![job(1, 1), elsewhere];
    b.pump();
    b.pump();
    assert!(b.sent.is_empty());
    let dropped = b.recorded(1).unwrap();
    assert_eq!(dropped.state, JobState::Dropped);
    assert!(
        dropped.outcome.contains("coa_mode = \"none\""),
        "{dropped:?}"
    );
    let dropped = b.recorded(2).unwrap();
    assert_eq!(dropped.state, JobState::Dropped);
    assert_eq!(dropped.outcome, "its NAS is not configured any more");
}

#[test]
fn on_shutdown_only_the_requests_in_flight_go_on_until_the_drain_ends() {
    let config = config(2, 1000);
    let mut b = Bench::running(config.clone(), "coa");
    b.store.pending = jobs(3);
    b.pump();
    assert_eq!(b.sent.len(), 2);
    let drain = Duration::from_secs(10);
    b.machine.stop(drain, &b.cx());
    let stopped = b.actions.len();
    let until = b.at + drain;
    let first = b.sent[0].2.clone();
    b.deliver(nas(), &ack(&first));
    b.pump();
    assert_eq!(b.sent.len(), 2, "the third is not started");
    assert!(b.store.recorded.is_empty(), "recorded at the end");
    assert!(!b.machine.drained(b.at));
    // The second is retransmitted while the drain lasts ...
    b.wake();
    assert_eq!(b.sent.len(), 3);
    assert_eq!(b.sent[2].2, b.sent[1].2);
    assert!(b.machine.wake_at() <= until);
    while b.machine.wake_at() < until {
        b.wake();
    }
    let sent = b.sent.len();
    // ... and not after it; no look for other instances' requests either.
    b.at = until;
    assert!(b.machine.drained(b.at));
    b.time_passed();
    assert_eq!(b.sent.len(), sent);
    assert!(
        !b.actions[stopped..].iter().any(|a| matches!(
            a,
            Action::Fetch { .. } | Action::Claim { .. } | Action::TakeOver { .. }
        )),
        "{:?}",
        &b.actions[stopped..]
    );
    let actions = b.machine.close(&b.cx());
    assert_eq!(
        actions,
        [Action::Record {
            results: vec![(
                1,
                JobResult {
                    state: JobState::Acked,
                    outcome: "CoA-ACK".into(),
                    error_cause: None,
                    close_session: false
                }
            )],
            now: b.wall(),
            stopping: true
        }]
    );
    // The second stays in flight: sent again at the next start.
    assert_eq!(b.machine.in_flight(), 1);
}

#[test]
fn a_drain_with_nothing_in_flight_ends_at_once() {
    let mut b = Bench::running(EnforcementConfig::default(), "coa");
    assert!(!b.machine.drained(b.at));
    b.machine.stop(Duration::from_secs(10), &b.cx());
    assert!(b.machine.drained(b.at));
    assert!(b.machine.close(&b.cx()).is_empty());
}

#[test]
fn a_store_failure_leaves_no_wake_up_in_the_past() {
    let mut b = Bench::running(config(100, 2), "coa");
    b.store.pending = jobs(3);
    b.pump();
    let (first, second) = (b.sent[0].2.clone(), b.sent[1].2.clone());
    b.deliver(nas(), &ack(&first));
    b.pump();
    // The third waits for the window.
    assert_eq!(b.machine.wake_at(), b.t0 + Duration::from_secs(1));
    b.deliver(nas(), &ack(&second));
    b.advance(Duration::from_millis(1500));
    b.store.fail_records = 1;
    b.pump();
    // The rate limit's wake-up is past; the pump waits for the retry (a
    // wake-up in the past would have the caller try again at once, and
    // again).
    assert_eq!(b.machine.wake_at(), b.at + STORE_RETRY);
    b.wake();
    b.pump();
    assert_eq!(b.sessions_sent(), ["session-1", "session-2", "session-3"]);
}
