//! The operations against a real SQLite store, with a clock the test sets.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use chrono_tz::America::Sao_Paulo;

use super::{App, Error};
use crate::clock::Clock;
use crate::model::{
    AccountingEvent, AccountingKind, Actor, ContractId, EndReason, EnforcementJob, Password,
    Username,
};
use crate::policy::{ContractState, Parameter, Refusal};
use crate::store::{self, Store};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

/// 2026-11-27 12:00 in São Paulo.
const NOON: i64 = 1_795_791_600;

/// A clock the test moves.
struct SetClock(Mutex<DateTime<Utc>>);

impl SetClock {
    fn set(&self, seconds: i64) {
        *self.0.lock().unwrap() = at(seconds);
    }
}

impl Clock for SetClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

struct World {
    app: App,
    store: Arc<Store>,
    clock: Arc<SetClock>,
}

fn id(s: &str) -> ContractId {
    ContractId::parse(s).unwrap()
}

/// An application on the SQLite file in `dir`, with contract `contract`
/// blocked (another handle on the file may have added it already).
async fn world_with_blocked(dir: &Path, contract: &str) -> World {
    let store = Arc::new(store::sqlite::open(&dir.join("t.db")).await.unwrap());
    let clock = Arc::new(SetClock(Mutex::new(at(NOON))));
    let app = App::new(Arc::clone(&store), clock.clone(), Sao_Paulo);
    let _ = app
        .add_contract(&Actor::default(), &id(contract), "", ContractState::Blocked)
        .await;
    World { app, store, clock }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_releases_through_two_handles_give_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(world_with_blocked(dir.path(), "1").await);
    let b = Arc::new(world_with_blocked(dir.path(), "1").await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let world = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            world.app.release(&Actor::default(), &id("1"), "").await
        }));
    }
    let mut granted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => granted += 1,
            Err(Error::Refused(Refusal::AlreadyReleased { .. })) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(granted, 1);
    assert_eq!(a.app.releases(Some(&id("1")), 100).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_release_past_its_end_is_recorded_as_expired_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let w = world_with_blocked(dir.path(), "1").await;
    w.app
        .set_parameter(&Actor::default(), Parameter::RenewAfterDays(0))
        .await
        .unwrap();
    let first = w
        .app
        .release(&Actor::default(), &id("1"), "")
        .await
        .unwrap()
        .value;
    // The next day, the first release has run out and a new one starts.
    w.clock.set(NOON + 86_400);
    let second = w
        .app
        .release(&Actor::default(), &id("1"), "")
        .await
        .unwrap()
        .value;
    assert_ne!(first.id, second.id);
    let history = w.app.releases(Some(&id("1")), 10).await.unwrap();
    let old = history.iter().find(|r| r.id == first.id).unwrap();
    assert_eq!(old.end_reason, Some(EndReason::Expired));
    assert_eq!(old.ended_at, Some(first.ends_at));
    assert!(
        w.app
            .audit(10)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "release_end")
    );
}

#[tokio::test]
async fn refusals_are_audited_with_their_code_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = world_with_blocked(dir.path(), "1").await;
    w.app
        .release(&Actor::default(), &id("1"), "")
        .await
        .unwrap();
    let again = w.app.release(&Actor::default(), &id("1"), "again").await;
    let Err(e) = again else {
        panic!("a second release was granted");
    };
    assert_eq!(e.code(), "already_released");
    assert!(e.ends_at().is_some());
    let audit = w.app.audit(10).await.unwrap();
    assert_eq!(audit[0].outcome, "already_released");
    assert!(audit[0].detail.ends_with(": again"), "{}", audit[0].detail);
    assert_eq!(w.app.releases(None, 10).await.unwrap().len(), 1);
    let unknown = w.app.release(&Actor::default(), &id("9"), "").await;
    assert!(matches!(unknown, Err(Error::Refused(Refusal::NotFound))));
    let revoke = w.app.revoke(&Actor::default(), &id("9"), "").await;
    assert!(matches!(revoke, Err(Error::ContractNotFound(_))));
}

fn event(kind: AccountingKind, user: &str, at_second: i64) -> AccountingEvent {
    AccountingEvent {
        kind,
        at: at(at_second),
        nas_name: "bras".into(),
        nas_identity: "10.0.0.1".into(),
        nas_address: "10.0.0.1".into(),
        username: user.into(),
        acct_session_id: "5F2A9C01".into(),
        nas_port: Some(0),
        ..AccountingEvent::default()
    }
}

#[tokio::test]
async fn a_stop_or_a_nas_restart_ends_the_enforcement_on_its_way() {
    let dir = tempfile::tempdir().unwrap();
    let w = world_with_blocked(dir.path(), "1").await;
    for user in ["ana", "bia"] {
        let username = Username::parse(user).unwrap();
        w.app
            .add_login(
                &Actor::default(),
                &username,
                &id("1"),
                Password::Cleartext("pw".into()),
                Vec::new(),
            )
            .await
            .unwrap();
        w.store
            .record_accounting(&[event(AccountingKind::Start, user, NOON)])
            .await
            .unwrap();
    }
    w.clock.set(NOON + 10);
    let released = w
        .app
        .release(&Actor::default(), &id("1"), "")
        .await
        .unwrap();
    assert_eq!(released.jobs.len(), 2);
    let states = |jobs: Vec<EnforcementJob>| {
        let mut states: Vec<(String, String, Option<String>)> = jobs
            .into_iter()
            .map(|j| (j.username, j.state.as_str().to_owned(), j.outcome))
            .collect();
        states.sort();
        states
    };
    // Ana hangs up: her job ends; Bia's stays pending.
    w.store
        .record_accounting(&[event(AccountingKind::Stop, "ana", NOON + 20)])
        .await
        .unwrap();
    let ended = Some("session ended".to_owned());
    assert_eq!(
        states(w.app.enforcement_of(&released.jobs, false).await),
        [
            ("ana".into(), "dropped".into(), ended.clone()),
            ("bia".into(), "pending".into(), None),
        ]
    );
    // The NAS restarts: Bia's session, and her job, end too.
    let on = event(AccountingKind::On, "", NOON + 30);
    w.store.record_accounting(&[on]).await.unwrap();
    assert_eq!(
        states(w.app.enforcement_of(&released.jobs, false).await),
        [
            ("ana".into(), "dropped".into(), ended.clone()),
            ("bia".into(), "dropped".into(), ended),
        ]
    );
}

#[tokio::test]
async fn a_token_is_taken_until_it_expires_or_is_revoked_and_never_when_forged() {
    use super::tokens::TokenRefused;
    let dir = tempfile::tempdir().unwrap();
    let w = world_with_blocked(dir.path(), "1").await;
    // Valid through 2026-11-28, São Paulo time.
    let expires = chrono::NaiveDate::from_ymd_opt(2026, 11, 28);
    let made = w
        .app
        .add_token(
            &Actor::default(),
            "bot",
            crate::model::Role::Release,
            expires,
        )
        .await
        .unwrap();
    let taken = w.app.authenticate(&made.token).await.unwrap().unwrap();
    assert_eq!(taken.name, "bot");
    assert!(w.app.tokens().await.unwrap()[0].last_used_at.is_some());
    // One character of the secret changed, or another prefix: not a token.
    let mut forged = made.token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    for presented in [forged.as_str(), "lbr_00000000_00", "Bearer x", ""] {
        assert_eq!(
            w.app.authenticate(presented).await.unwrap(),
            Err(TokenRefused::Unknown),
            "{presented}"
        );
    }
    // The last second of its last day, then the first of the next.
    w.clock.set(NOON + 86_400 + 12 * 3600 - 1);
    assert!(w.app.authenticate(&made.token).await.unwrap().is_ok());
    w.clock.set(NOON + 86_400 + 12 * 3600);
    assert_eq!(
        w.app.authenticate(&made.token).await.unwrap(),
        Err(TokenRefused::Expired)
    );
    let other = w
        .app
        .add_token(&Actor::default(), "erp", crate::model::Role::Billing, None)
        .await
        .unwrap();
    w.app.revoke_token(&Actor::default(), "erp").await.unwrap();
    assert_eq!(
        w.app.authenticate(&other.token).await.unwrap(),
        Err(TokenRefused::Revoked)
    );
}
