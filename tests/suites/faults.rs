// Bad input and late packets against the real daemon, on either backend:
// each test pins down a behaviour that an operator's worst day broke.


use common::nas::Nas;
use common::{Daemon, stderr, write_file};
use liberad::radius::packet::{attr, code};

const CSV: &str = "\
contract_id,name,state,username,password
1001,Maria,blocked,maria,pw-maria
1002,Jose,active,jose,pw-jose
";

fn start() -> (Daemon, Nas, Nas) {
    let daemon = Daemon::start();
    let file = write_file(&daemon.dir, "contracts.csv", CSV);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    let (auth, acct) = daemon.radius_addresses();
    (daemon, Nas::new(auth), Nas::new(acct))
}

/// The Acct-Session-Ids of the sessions online.
fn online(daemon: &Daemon) -> Vec<String> {
    let (rc, v) = daemon.ctl_json(&["sessions", "--online"]);
    assert_eq!(rc, 0, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["acct_session_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends an Accounting-Request for maria's session `id` and requires its
/// acknowledgement.
fn account(acct: &mut Nas, status: u32, id: &str, delay: u32) {
    let delay = delay.to_be_bytes();
    let reply = acct
        .accounting(
            status,
            &[
                (attr::USER_NAME, b"maria"),
                (attr::ACCT_SESSION_ID, id.as_bytes()),
                (attr::ACCT_DELAY_TIME, &delay),
            ],
        )
        .expect("an Accounting-Response");
    assert_eq!(reply.code, code::ACCOUNTING_RESPONSE);
}

const START: u32 = 1;
const STOP: u32 = 2;
const INTERIM: u32 = 3;
const ACCOUNTING_ON: u32 = 7;

#[test]
fn a_late_start_does_not_reopen_a_stopped_session() {
    let (daemon, _, mut acct) = start();
    account(&mut acct, START, "s1", 0);
    assert_eq!(online(&daemon), vec!["s1"]);
    account(&mut acct, STOP, "s1", 0);
    assert!(online(&daemon).is_empty());
    // The same Start again, after the duplicate cache forgot it (a new
    // identifier makes it new to the cache): the session stays stopped.
    account(&mut acct, START, "s1", 0);
    assert!(online(&daemon).is_empty(), "a repeated Start reopened s1");
    // A Start that happened before its session's Stop, by its
    // Acct-Delay-Time, arriving after it.
    account(&mut acct, STOP, "s2", 0);
    account(&mut acct, START, "s2", 120);
    assert!(online(&daemon).is_empty(), "a delayed Start reopened s2");
    // An Interim older than what the session has is not applied either.
    account(&mut acct, START, "s3", 0);
    account(&mut acct, INTERIM, "s3", 0);
    account(&mut acct, INTERIM, "s3", 600);
    assert_eq!(online(&daemon), vec!["s3"]);
    // A Stop whose delay puts it before its session's Start is an earlier
    // session's: s3 stays online.
    account(&mut acct, STOP, "s3", 3_600);
    assert_eq!(online(&daemon), vec!["s3"]);
    account(&mut acct, STOP, "s3", 0);
    assert!(online(&daemon).is_empty());

    // After the NAS restarts, it may hand out an old id again: that Start
    // opens a new session. (Acct-Delay-Time orders the three events
    // within the second they are sent in.)
    let identity: (u8, &[u8]) = (attr::NAS_IDENTIFIER, b"bras");
    let event = |acct: &mut Nas, status: u32, session: Option<&[u8]>, delay: u32| {
        let delay = delay.to_be_bytes();
        let mut attributes: Vec<(u8, &[u8])> = vec![identity, (attr::ACCT_DELAY_TIME, &delay)];
        if let Some(id) = session {
            attributes.push((attr::USER_NAME, b"maria"));
            attributes.push((attr::ACCT_SESSION_ID, id));
        }
        let reply = acct.accounting(status, &attributes).expect("an Accounting-Response");
        assert_eq!(reply.code, code::ACCOUNTING_RESPONSE);
    };
    event(&mut acct, START, Some(b"r1"), 20);
    event(&mut acct, STOP, Some(b"r1"), 10);
    event(&mut acct, START, Some(b"r1"), 0);
    assert!(online(&daemon).is_empty(), "a repeated Start reopened r1");
    event(&mut acct, ACCOUNTING_ON, None, 5);
    event(&mut acct, START, Some(b"r1"), 0);
    assert_eq!(online(&daemon), vec!["r1"], "a reused id after a restart");
}

#[test]
fn reply_attributes_a_reply_may_not_carry_are_refused() {
    let (daemon, mut auth, _) = start();
    for attribute in [
        "Message-Authenticator = 0x00",
        "User-Password = secret",
        "Proxy-State = 0x01",
        "State = 0x01",
        "EAP-Message = 0x01",
    ] {
        let out = daemon.ctl(&[
            "login",
            "add",
            "ana",
            "--contract",
            "1001",
            "--password",
            "pw",
            "--attr",
            attribute,
        ]);
        assert_eq!(out.status.code(), Some(2), "{attribute}: {}", stderr(&out));
        let name = attribute.split(' ').next().unwrap();
        assert!(
            stderr(&out).contains(name) && stderr(&out).contains("may not be set here"),
            "{attribute}: {}",
            stderr(&out)
        );
    }
    // In an import, the row is rejected with its line.
    let file = write_file(
        &daemon.dir,
        "bad.csv",
        "contract_id,username,password,reply\n\
         2001,bia,pw,Framed-Pool = clientes\n\
         2002,cid,pw,Mikrotik-Rate-Limit = 1M/1M; Message-Authenticator = 0x00\n",
    );
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 1, "{v}");
    assert_eq!(v["code"], "rejected_rows");
    let rejected = v["data"]["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{v}");
    assert_eq!(rejected[0]["line"], 3);
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Message-Authenticator"),
        "{v}"
    );
    // A good login's Access-Accept carries exactly one Message-Authenticator.
    let reply = auth.pap("jose", "pw-jose");
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
    let count = reply
        .attributes
        .iter()
        .filter(|(t, _)| *t == attr::MESSAGE_AUTHENTICATOR)
        .count();
    assert_eq!(count, 1);
}

#[test]
fn the_configuration_refuses_reply_attributes_a_reply_may_not_carry() {
    let temp = tempfile::tempdir().unwrap();
    for profile in [
        "[profiles.active]\nreply = [\"Message-Authenticator = 0x00\"]\n",
        "[profiles.blocked]\naction = \"accept\"\nreply = [\"Proxy-State = 0x00\"]\n",
        "[profiles.blocked]\ncoa = [\"User-Name = x\"]\n",
    ] {
        let daemon = Daemon::prepare_in(temp.path(), "a", &common::database(temp.path()), "", profile);
        let out = std::process::Command::new(common::LIBERAD)
            .args(["--check-config", "--config", daemon.config.to_str().unwrap()])
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{profile}");
        let name = profile
            .split('"')
            .nth(if profile.contains("action") { 3 } else { 1 })
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        assert!(stderr(&out).contains(&name), "{profile}: {}", stderr(&out));
    }
}
