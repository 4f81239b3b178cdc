//! Two liberad instances on one PostgreSQL: what one does, the other sees
//! at once; each release ends, and is enforced, exactly once; and an
//! instance that dies while sending is relieved by the other.

mod common;

const BACKEND: common::Backend = common::Backend::Postgres;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use chrono_tz::America::Sao_Paulo;
use common::coa_nas::{Answer, CoaNas};
use common::nas::Nas;
use common::{Daemon, PROFILES, write_file};
use liberad::config::DatabaseConfig;
use liberad::model::{AccountingEvent, Actor, ContractId, Password, Username};
use liberad::policy::ContractState;
use liberad::radius::packet::{Attributes, attr, code};
use rustix::process::Signal;
use serde_json::Value;

/// Two daemons, `a` and `b`, on one new database, configured alike.
fn pair(dir: &std::path::Path, extra: &str) -> (String, Daemon, Daemon) {
    let url = common::database(dir);
    let mut a = Daemon::prepare_in(dir, "a", &url, "", extra);
    let mut b = Daemon::prepare_in(dir, "b", &url, "", extra);
    // Started together, so that they race for the same work.
    a.spawn();
    b.spawn();
    a.wait_ready();
    b.wait_ready();
    (url, a, b)
}

#[test]
fn what_one_instance_does_the_other_sees_at_once() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let (_, a, b) = pair(temp.path(), "");
    let file = write_file(
        temp.path(),
        "c.csv",
        "contract_id,state,username,password\n1,blocked,maria,pw\n2,blocked,jose,pw\n",
    );
    assert_eq!(a.ctl_json(&["import", file.to_str().unwrap()]).0, 0);

    let (auth_b, _) = b.radius_addresses();
    let mut nas = Nas::new(auth_b);
    assert!(
        nas.pap("maria", "pw")
            .text()
            .contains(&"Framed-Pool = bloqueados".to_owned())
    );
    let (rc, v) = a.ctl_json(&["release", "1"]);
    assert_eq!(rc, 0, "{v}");
    // Released through A, seen by B: up to the release's end.
    let before = chrono::Utc::now();
    let reply = nas.pap("maria", "pw");
    let after = chrono::Utc::now();
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
    common::assert_timeout_ends_at(
        reply.session_timeout(),
        common::release_end(&v),
        before,
        after,
    );

    // A release refused on B because of A's.
    let (rc, v) = b.ctl_json(&["release", "1"]);
    assert_eq!((rc, v["code"].as_str()), (1, Some("already_released")));

    // Parameters changed through B apply to a release through A.
    assert_eq!(b.ctl_json(&["params", "set", "release_days", "3"]).0, 0);
    let (_, v) = a.ctl_json(&["release", "2"]);
    let started: chrono::DateTime<Utc> =
        serde_json::from_value(v["data"]["started_at"].clone()).unwrap();
    let ends: chrono::DateTime<Utc> = serde_json::from_value(v["data"]["ends_at"].clone()).unwrap();
    let days = ends.with_timezone(&Sao_Paulo).date_naive()
        - started.with_timezone(&Sao_Paulo).date_naive();
    assert_eq!(days.num_days(), 3);

    // A session started through B is enforced through A.
    let (_, acct_b) = b.radius_addresses();
    Nas::new(acct_b)
        .accounting(
            1,
            &[(attr::USER_NAME, b"jose"), (attr::ACCT_SESSION_ID, b"j-1")],
        )
        .unwrap();
    let (_, sessions) = a.ctl_json(&["sessions", "--online"]);
    assert_eq!(sessions["data"][0]["acct_session_id"], "j-1");
}

/// Writes, as a previous run would have, `n` blocked contracts released
/// two days ago (so their releases all ended at the same midnight), each
/// with a customer online now.
fn releases_that_ended_together(url: &str, n: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = liberad::store::open(&DatabaseConfig::default(), url)
            .await
            .unwrap();
        let store = Arc::new(store);
        let actor = Actor::default();
        let then = Utc::now() - chrono::Duration::days(2);
        let app = liberad::app::App::new(
            Arc::clone(&store),
            Arc::new(liberad::clock::FixedClock(then)),
            Sao_Paulo,
        );
        for i in 0..n {
            let id = ContractId::parse(format!("c{i}")).unwrap();
            app.add_contract(&actor, &id, "", ContractState::Blocked)
                .await
                .unwrap();
            let username = Username::parse(format!("u{i}")).unwrap();
            let password = Password::Cleartext("pw".into());
            app.add_login(&actor, &username, &id, password, Vec::new())
                .await
                .unwrap();
            app.release(&actor, &id, "").await.unwrap();
        }
        let events: Vec<AccountingEvent> = (0..n)
            .map(|i| AccountingEvent {
                at: Utc::now(),
                nas_name: "test".into(),
                nas_identity: "127.0.0.1".into(),
                nas_address: "127.0.0.1".into(),
                username: format!("u{i}"),
                acct_session_id: format!("s{i}"),
                ..AccountingEvent::default()
            })
            .collect();
        store.record_accounting(&events).await.unwrap();
        store.close().await;
    });
}

/// Requests a NAS received, with the address each came from.
type Received = Arc<Mutex<Vec<(std::net::SocketAddr, Vec<u8>)>>>;

/// A NAS on its own thread that ACKs everything and keeps every request,
/// with the address it came from.
fn acking_nas(coa: CoaNas) -> Received {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::clone(&seen);
    std::thread::spawn(move || {
        while let Some(request) = coa.receive(Duration::from_secs(60)) {
            coa.answer(&request, Answer::Ack);
            requests.lock().unwrap().push((request.from, request.bytes));
        }
    });
    seen
}

/// The bytes of the requests `acking_nas` kept.
fn bytes_of(seen: &[(std::net::SocketAddr, Vec<u8>)]) -> Vec<Vec<u8>> {
    seen.iter().map(|(_, bytes)| bytes.clone()).collect()
}

/// The releases an instance's log says it ended.
fn releases_ended_by(log: &str) -> usize {
    // Text logs colour their fields: leave the escape sequences out.
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().take_while(|c| *c != 'm').for_each(drop);
        } else {
            plain.push(c);
        }
    }
    plain
        .lines()
        .filter(|l| l.contains("releases expired"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|word| word.strip_prefix("releases="))
                .and_then(|n| {
                    n.trim_matches(|c: char| !c.is_ascii_digit())
                        .parse::<usize>()
                        .ok()
                })
        })
        .sum()
}

/// How many requests each session got.
fn per_session(requests: &[Vec<u8>]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for request in requests {
        let session = Attributes::over(request)
            .find(|(t, _)| *t == attr::ACCT_SESSION_ID)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        *counts.entry(session).or_insert(0) += 1;
    }
    counts
}

fn jobs(daemon: &Daemon) -> Vec<Value> {
    let (_, v) = daemon.ctl_json(&["coa", "--limit", "10000"]);
    v["data"].as_array().unwrap().clone()
}

#[test]
fn two_hundred_releases_ending_together_are_ended_and_enforced_once() {
    if common::backend_missing() {
        return;
    }
    const N: usize = 200;
    let temp = tempfile::tempdir().unwrap();
    let coa = CoaNas::bind();
    // Each instance sends 20 requests a second at most and ends releases
    // ten at a time: alone, one would take ten seconds, so both share.
    let extra = format!(
        "coa_port = {}\ncoa_mode = \"disconnect\"\n{PROFILES}\n[enforcement]\n\
         max_per_second_per_nas = 20\nexpiry_batch = 10\n",
        coa.port()
    );
    // The database is prepared before the daemons start.
    let url = common::database(temp.path());
    releases_that_ended_together(&url, N);
    let mut a = Daemon::prepare_in(temp.path(), "a", &url, "", &extra);
    let mut b = Daemon::prepare_in(temp.path(), "b", &url, "", &extra);
    let seen = acking_nas(coa);
    a.spawn();
    b.spawn();
    a.wait_ready();
    b.wait_ready();

    common::poll_until(&format!("all {N} jobs acknowledged"), || {
        let acked = jobs(&a).iter().filter(|j| j["state"] == "acked").count();
        (acked == N)
            .then_some(())
            .ok_or_else(|| format!("{acked} acknowledged"))
    });
    let all = jobs(&b);
    assert_eq!(
        all.len(),
        N,
        "one job per release, whichever instance ended it"
    );
    let seen = seen.lock().unwrap().clone();
    let counts = per_session(&bytes_of(&seen));
    assert_eq!(counts.len(), N);
    assert!(
        counts.values().all(|n| *n == 1),
        "a session told twice: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    // Each release ended once, at its end.
    let (_, v) = a.ctl_json(&["audit", "--limit", "10000"]);
    let endings = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "release_end")
        .count();
    assert_eq!(endings, N);
    // Both did part of the work: each sent some of the requests (from its
    // own socket), and what their logs say they ended adds up to N.
    let mut senders: HashMap<std::net::SocketAddr, usize> = HashMap::new();
    for (from, _) in &seen {
        *senders.entry(*from).or_default() += 1;
    }
    assert_eq!(senders.len(), 2, "requests by sender: {senders:?}");
    assert!(
        senders.values().all(|n| *n >= 20),
        "requests by sender: {senders:?}"
    );
    let (by_a, by_b) = (
        releases_ended_by(&a.log_text()),
        releases_ended_by(&b.log_text()),
    );
    assert_eq!(by_a + by_b, N, "ended by A: {by_a}, by B: {by_b}");
}

#[test]
fn an_instance_killed_while_sending_is_relieved_by_the_other() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let coa = CoaNas::bind();
    let extra = format!(
        "coa_port = {}\ncoa_mode = \"disconnect\"\n{PROFILES}\n[enforcement]\n\
         retry_initial_ms = 800\nretry_max_ms = 1000\nmax_sends = 5\nlease_secs = 2\n",
        coa.port()
    );
    let url = common::database(temp.path());
    let mut a = Daemon::start_in(temp.path(), "a", &url, "", &extra);
    let file = write_file(
        temp.path(),
        "c.csv",
        "contract_id,state,username,password\n1,blocked,maria,pw\n",
    );
    assert_eq!(a.ctl_json(&["import", file.to_str().unwrap()]).0, 0);
    let (_, acct) = a.radius_addresses();
    Nas::new(acct)
        .accounting(
            1,
            &[(attr::USER_NAME, b"maria"), (attr::ACCT_SESSION_ID, b"m-1")],
        )
        .unwrap();

    assert_eq!(a.ctl_json(&["release", "1"]).0, 0);
    let first = coa.expect();
    a.signal(Signal::KILL);
    a.wait_exit();

    // From now on the NAS answers. B takes the job over once A's lease has
    // run out, and sends the same request again.
    let seen = acking_nas(coa);
    let b = Daemon::start_in(temp.path(), "b", &url, "", &extra);
    common::poll_until("B to send A's job and have it acknowledged", || {
        let list = jobs(&b);
        (list[0]["state"] == "acked")
            .then_some(())
            .ok_or_else(|| format!("{list:?}"))
    });
    let requests = bytes_of(&seen.lock().unwrap());
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| *r == first.bytes),
        "the same request, byte for byte"
    );
    assert!(b.log_text().contains("resending requests left in flight"));
}

#[test]
fn a_nas_seen_signing_by_one_instance_must_sign_to_the_other_after_a_reload() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let (_, a, b) = pair(temp.path(), "");
    let file = write_file(
        temp.path(),
        "c.csv",
        "contract_id,state,username,password\n1,active,maria,pw\n",
    );
    assert_eq!(a.ctl_json(&["import", file.to_str().unwrap()]).0, 0);
    let unsigned = |nas: &mut Nas| nas.pap_request_as("maria", "pw", false, false);
    let (auth_a, _) = a.radius_addresses();
    let (auth_b, _) = b.radius_addresses();
    let mut to_b = Nas::new(auth_b);
    let request = unsigned(&mut to_b);
    assert_eq!(to_b.exchange(&request).unwrap().code, code::ACCESS_ACCEPT);
    // A sees the NAS sign, and remembers it in the shared database.
    let mut to_a = Nas::new(auth_a);
    assert_eq!(to_a.pap("maria", "pw").code, code::ACCESS_ACCEPT);
    a.wait_for_log("this NAS signs its Access-Requests");
    // B does not know yet; a reload makes it read the database (again,
    // until A's record, written in the background, is there).
    common::poll_until("B to take in what A remembered", || {
        if b.log_text().contains("now required from them here too") {
            return Ok(());
        }
        b.signal(Signal::HUP);
        b.wait_for_log("configuration reloaded");
        Err("not yet".to_owned())
    });
    let request = unsigned(&mut to_b);
    to_b.send(&request);
    common::poll_until("B to drop the unsigned request", || {
        let (_, v) = b.ctl_json(&["nas", "list"]);
        let drops = v["data"]["nas"][0]["counters"]["drops"]["missing_message_authenticator"]
            .as_u64()
            .unwrap_or(0);
        (drops == 1).then_some(()).ok_or_else(|| v.to_string())
    });
    assert!(to_b.receive(&request, Duration::from_millis(100)).is_none());
}
