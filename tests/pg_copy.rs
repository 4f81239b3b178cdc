//! Moving from SQLite to PostgreSQL with `liberad --copy-to`: everything
//! is carried over (history, sessions, outbox, parameters, ids), the copy
//! refuses a database already in use and a running liberad, and a daemon
//! started on the copy goes on where the SQLite one stopped.

mod common;

const BACKEND: common::Backend = common::Backend::Postgres;

use std::process::Command;

use common::nas::Nas;
use common::{Daemon, LIBERAD, stderr, stdout, write_file};
use liberad::config::DatabaseConfig;
use liberad::radius::packet::attr;

/// Everything a store holds, as text, read through the store interface.
fn everything(url: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = liberad::store::open(&DatabaseConfig::default(), url)
            .await
            .unwrap();
        let mut tx = store.read().await.unwrap();
        let mut all = vec![
            format!("{:?}", tx.parameters().await.unwrap()),
            format!("{:?}", tx.releases(None, 1000).await.unwrap()),
            format!("{:?}", tx.audit(None, 1000).await.unwrap()),
            format!("{:?}", tx.sessions(None, false, 1000).await.unwrap()),
            format!(
                "{:?}",
                tx.enforcement_jobs(None, false, 1000).await.unwrap()
            ),
        ];
        for contract in tx.contracts(None, None, 10_000).await.unwrap() {
            let id = contract.id.as_str();
            all.push(format!(
                "{contract:?} {:?} {:?} {:?} {:?}",
                tx.releases(Some(id), 1000).await.unwrap(),
                tx.logins_of(id).await.unwrap(),
                tx.audit(Some(id), 1000).await.unwrap(),
                tx.open_sessions_of(id).await.unwrap(),
            ));
        }
        tx.commit().await.unwrap();
        for login in ["maria", "jose", "ana"] {
            all.push(format!("{:?}", store.auth_lookup(login).await.unwrap()));
        }
        store.close().await;
        all
    })
}

fn copy(config: &std::path::Path, target: &str) -> std::process::Output {
    Command::new(LIBERAD)
        .arg("--config")
        .arg(config)
        .args(["--copy-to", target])
        .output()
        .unwrap()
}

#[test]
fn a_sqlite_database_copied_to_postgresql_goes_on_there() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", temp.path().join("liberad.db").display());
    let postgres = common::database(temp.path());
    let mut a = Daemon::start_in(temp.path(), "a", &sqlite, "", "");
    let file = write_file(
        temp.path(),
        "c.csv",
        "contract_id,state,username,password\n\
         1,blocked,maria,pw\n2,blocked,jose,pw\n3,active,ana,pw\n",
    );
    assert_eq!(a.ctl_json(&["import", file.to_str().unwrap()]).0, 0);
    let (_, acct) = a.radius_addresses();
    let mut nas = Nas::new(acct);
    for (status, user, session) in [(1, "maria", "m-1"), (1, "ana", "a-1"), (2, "ana", "a-1")] {
        nas.accounting(
            status,
            &[
                (attr::USER_NAME, user.as_bytes()),
                (attr::ACCT_SESSION_ID, session.as_bytes()),
            ],
        )
        .expect("accounting answered");
    }
    // A release with a customer online (an outbox job), and one revoked.
    assert_eq!(a.ctl_json(&["release", "1", "--reason", "paid"]).0, 0);
    assert_eq!(a.ctl_json(&["release", "2"]).0, 0);
    assert_eq!(a.ctl_json(&["revoke", "2"]).0, 0);
    assert_eq!(a.ctl_json(&["params", "set", "release_days", "3"]).0, 0);

    let config = temp.path().join("a.toml");
    let out = copy(&config, &postgres);
    assert!(!out.status.success(), "copied while liberad runs");
    assert!(stderr(&out).contains("stop it first"), "{}", stderr(&out));

    a.stop();
    let before = everything(&sqlite);
    assert!(before[3].contains("\"m-1\""), "sessions: {}", before[3]);
    assert_ne!(before[4], "[]", "an outbox job");
    let out = copy(&config, &postgres);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("contracts    3 rows"),
        "{}",
        stdout(&out)
    );
    assert_eq!(everything(&postgres), before);

    // Never over data already there.
    let out = copy(&config, &postgres);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds liberad data"),
        "{}",
        stderr(&out)
    );
    assert_eq!(everything(&postgres), before);

    // On PostgreSQL, liberad goes on: contract 2's revoked release still
    // counts for the waiting period, and new rows get new ids.
    let b = Daemon::start_in(temp.path(), "b", &postgres, "", "");
    let (rc, v) = b.ctl_json(&["release", "2"]);
    assert_eq!((rc, v["code"].as_str()), (1, Some("cooldown")), "{v}");
    let more = write_file(
        temp.path(),
        "more.csv",
        "contract_id,state,username,password\n4,blocked,rui,pw\n",
    );
    assert_eq!(b.ctl_json(&["import", more.to_str().unwrap()]).0, 0);
    let (rc, v) = b.ctl_json(&["release", "4"]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["id"], 3, "the release ids continue");
}

#[test]
fn a_copy_without_a_source_or_to_a_wrong_target_says_so() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", temp.path().join("none.db").display());
    let postgres = common::database(temp.path());
    let daemon = Daemon::prepare_in(temp.path(), "a", &sqlite, "", "");
    let config = temp.path().join("a.toml");
    let out = copy(&config, &postgres);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no SQLite database at"),
        "{}",
        stderr(&out)
    );
    assert!(!temp.path().join("none.db").exists(), "nothing created");
    let out = copy(&config, "sqlite:///tmp/x.db");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("postgres://"), "{}", stderr(&out));
    drop(daemon);
}
