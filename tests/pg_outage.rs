//! PostgreSQL stopped and started again under accounting load: liberad
//! keeps answering what it can decide safely, recovers by itself, and
//! loses no accounting record it acknowledged. A test binary of its own,
//! since it stops its cluster.

mod common;

const BACKEND: common::Backend = common::Backend::Postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::nas::Nas;
use common::{Daemon, write_file};
use liberad::config::DatabaseConfig;
use liberad::radius::packet::{attr, code};

/// A NAS sending Accounting-Start after Accounting-Start for `user`,
/// retransmitting each (identically) until it is answered, as equipment
/// does; returns the session ids liberad acknowledged.
fn accounting_load(
    server: std::net::SocketAddr,
    user: &'static str,
    tag: usize,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut nas = Nas::new(server);
        let mut acknowledged = Vec::new();
        let status = 1u32.to_be_bytes();
        for i in 0.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let session = format!("load-{tag}-{i}");
            let request = nas.request(
                code::ACCOUNTING_REQUEST,
                [0; 16],
                &[
                    (attr::ACCT_STATUS_TYPE, &status),
                    (attr::USER_NAME, user.as_bytes()),
                    (attr::ACCT_SESSION_ID, session.as_bytes()),
                ],
            );
            let given_up = Instant::now() + Duration::from_secs(120);
            loop {
                nas.send(&request);
                if let Some(reply) = nas.receive(&request, Duration::from_millis(500)) {
                    assert_eq!(reply.code, code::ACCOUNTING_RESPONSE);
                    acknowledged.push(session);
                    answered.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                assert!(Instant::now() < given_up, "{session} never answered");
            }
        }
        acknowledged
    })
}

/// Waits, within the deadline, until `check` holds.
fn until(what: &str, mut check: impl FnMut() -> bool) {
    common::poll_until(what, || {
        check().then_some(()).ok_or_else(|| "no".to_owned())
    });
}

fn profile_of(nas: &mut Nas, user: &str) -> (u8, bool) {
    let reply = nas.pap(user, "pw");
    let blocked = reply
        .text()
        .contains(&"Framed-Pool = bloqueados".to_owned());
    (reply.code, blocked)
}

#[test]
fn postgresql_stopped_and_restarted_under_load_loses_nothing_acknowledged() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let url = common::database(temp.path());
    let cluster = common::postgres::cluster().expect("the cluster behind the database");
    let mut daemon = Daemon::prepare_in(temp.path(), "a", &url, "", "");
    daemon.database_settings(
        "on_outage = \"cache\"\ncache_ttl_secs = 600\nacquire_timeout_ms = 500\nmax_connections = 4",
    );
    daemon.launch();
    let mut strict = Daemon::prepare_in(temp.path(), "b", &url, "", "");
    strict.database_settings("on_outage = \"reject\"\nacquire_timeout_ms = 500");
    strict.launch();
    // Remembers for 5 s only.
    const SHORT_TTL: Duration = Duration::from_secs(5);
    let mut short = Daemon::prepare_in(temp.path(), "c", &url, "", "");
    short.database_settings("cache_ttl_secs = 5\nacquire_timeout_ms = 500");
    short.launch();
    // Ana is a paid-up customer nobody looks up before the outage.
    let file = write_file(
        temp.path(),
        "c.csv",
        "contract_id,state,username,password\n1,active,maria,pw\n2,blocked,jose,pw\n\
         3,active,ana,pw\n",
    );
    assert_eq!(daemon.ctl_json(&["import", file.to_str().unwrap()]).0, 0);
    let (auth, acct) = daemon.radius_addresses();
    let mut nas = Nas::new(auth);
    // Seen once: remembered for an outage.
    assert_eq!(profile_of(&mut nas, "maria"), (code::ACCESS_ACCEPT, false));
    assert_eq!(profile_of(&mut nas, "jose"), (code::ACCESS_ACCEPT, true));
    let mut strict_nas = Nas::new(strict.radius_addresses().0);
    assert_eq!(
        profile_of(&mut strict_nas, "maria"),
        (code::ACCESS_ACCEPT, false)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..4)
        .map(|tag| accounting_load(acct, "maria", tag, Arc::clone(&stop), Arc::clone(&answered)))
        .collect();
    let answers = || answered.load(Ordering::SeqCst);
    until("accounting under load", || answers() >= 100);

    let mut short_nas = Nas::new(short.radius_addresses().0);
    let seen = Instant::now();
    assert_eq!(short_nas.pap("maria", "pw").code, code::ACCESS_ACCEPT);
    cluster.stop();
    // Decided from what is known: the two logins seen, and nobody else.
    assert_eq!(profile_of(&mut nas, "maria"), (code::ACCESS_ACCEPT, false));
    assert_eq!(profile_of(&mut nas, "jose"), (code::ACCESS_ACCEPT, true));
    assert_eq!(nas.pap("ana", "pw").code, code::ACCESS_REJECT);
    // With `on_outage = "reject"`, nobody.
    assert_eq!(strict_nas.pap("maria", "pw").code, code::ACCESS_REJECT);
    // What is remembered is answered for `cache_ttl_secs`, then no more.
    let accepted_during_ttl = short_nas.pap("maria", "pw").code == code::ACCESS_ACCEPT;
    assert!(
        accepted_during_ttl || seen.elapsed() >= SHORT_TTL,
        "maria was rejected within the time to live"
    );
    common::poll_until(
        "maria rejected once the time to live ran out",
        || match short_nas.pap("maria", "pw").code {
            code::ACCESS_REJECT => Ok(()),
            other => {
                assert!(
                    seen.elapsed() <= SHORT_TTL + Duration::from_secs(2),
                    "still accepted {:?} after she was seen",
                    seen.elapsed()
                );
                Err(format!("answered {other}"))
            }
        },
    );
    assert!(
        seen.elapsed() >= SHORT_TTL,
        "rejected before the time to live ran out"
    );
    daemon.wait_for_log("login lookup: the database cannot be reached");
    daemon.wait_for_log("accounting not recorded");
    // The operator's tools say so rather than hang.
    let (rc, v) = daemon.ctl_json(&["release", "2"]);
    assert_eq!(rc, 4, "{v}");
    assert_eq!(v["code"], "database_unavailable", "{v}");

    cluster.restart();
    // Back by itself: accounting written again, logins looked up again.
    let before = answers();
    until("accounting recorded after the restart", || {
        answers() > before + 100
    });
    stop.store(true, Ordering::SeqCst);
    let acknowledged: Vec<String> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();
    // Ana, rejected while the database was out of reach, is back.
    assert_eq!(nas.pap("ana", "pw").code, code::ACCESS_ACCEPT);
    assert_eq!(short_nas.pap("maria", "pw").code, code::ACCESS_ACCEPT);
    let (rc, v) = daemon.ctl_json(&["release", "2"]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(profile_of(&mut nas, "jose"), (code::ACCESS_ACCEPT, false));
    assert_eq!(
        profile_of(&mut strict_nas, "jose"),
        (code::ACCESS_ACCEPT, false)
    );

    // Every acknowledged record is in the database.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored: std::collections::HashSet<String> = runtime.block_on(async {
        let store = liberad::store::open(&DatabaseConfig::default(), &url)
            .await
            .unwrap();
        let mut read = store.read().await.unwrap();
        let all = read.sessions(None, false, u32::MAX).await.unwrap();
        store.close().await;
        all.into_iter().map(|s| s.acct_session_id).collect()
    });
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|s| !stored.contains(*s))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(acknowledged.len() >= 100);
    eprintln!(
        "{} accounting records acknowledged, all stored",
        acknowledged.len()
    );
    let _ = daemon.stop();
    let _ = strict.stop();
    let _ = short.stop();
}
