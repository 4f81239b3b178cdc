// Bad input and late packets against the real daemon, on either backend:
// each test pins down a behaviour that an operator's worst day broke.


use std::time::Duration;

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
    if common::backend_missing() {
        return;
    }
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
    if common::backend_missing() {
        return;
    }
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
    if common::backend_missing() {
        return;
    }
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

#[test]
fn a_nul_byte_is_refused_without_costing_the_other_requests_their_answer() {
    if common::backend_missing() {
        return;
    }
    let (daemon, mut auth, mut acct) = start();
    let mut requests = Vec::new();
    for n in 0..30 {
        let id = format!("good-{n}");
        requests.push((true, start_packet(&mut acct, b"maria", id.as_bytes())));
        if n == 10 {
            requests.push((false, start_packet(&mut acct, b"ma\0ria", b"bad-user")));
            requests.push((false, start_packet(&mut acct, b"maria", b"bad\0id")));
        }
    }
    // All at once, so that the writer takes them in one batch.
    for (_, request) in &requests {
        acct.send(request);
    }
    let mut answered = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut buffer = [0u8; 4096];
    while answered.len() < 30 && std::time::Instant::now() < deadline {
        acct.socket
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
        if let Ok((n, _)) = acct.socket.recv_from(&mut buffer) {
            assert_eq!(buffer[0], code::ACCOUNTING_RESPONSE);
            answered.insert(buffer[1]);
            assert!(n >= 20);
        }
    }
    for (good, request) in &requests {
        assert_eq!(
            answered.contains(&request[1]),
            *good,
            "request {} answered: {}",
            request[1],
            !good
        );
    }
    let (_, sessions) = daemon.ctl_json(&["sessions", "--limit", "100"]);
    assert_eq!(sessions["data"].as_array().unwrap().len(), 30, "{sessions}");

    // A login with a NUL in its name is rejected without troubling the
    // database, and not reported as an outage.
    let reply = auth.pap("jo\0se", "pw-jose");
    assert_eq!(reply.code, code::ACCESS_REJECT);
    assert_eq!(auth.pap("jose", "pw-jose").code, code::ACCESS_ACCEPT);
    daemon.wait_for_log("accounting request refused");
    let log = daemon.log_text();
    assert!(!log.contains("cannot be reached"), "{log}");
    assert!(log.contains("User-Name is not a login name"), "{log}");
}

fn start_packet(acct: &mut Nas, user: &[u8], session: &[u8]) -> Vec<u8> {
    acct.accounting_packet(
        START,
        &[(attr::USER_NAME, user), (attr::ACCT_SESSION_ID, session)],
    )
}

/// The lines of the rejected rows in an import's answer.
fn rejected_lines(answer: &serde_json::Value) -> Vec<u64> {
    answer["data"]["rejected"]
        .as_array()
        .unwrap_or_else(|| panic!("no rejected rows in {answer}"))
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect()
}

#[test]
fn an_import_names_the_lines_an_editor_shows_whatever_the_line_ends() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    for (name, eol) in [("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")] {
        let text = [
            "contract_id,name,state,username,password",
            &format!("{name}-1,A,blocked,{name}-a,pw"),
            &format!("{name}-2,B,bloqueado,{name}-b,pw"),
            "",
            &format!("\"{name}-3\",\"Two"),
            &format!("lines\",active,{name}-c,pw"),
            &format!("{name}-4,D,wrong,{name}-d,pw"),
            &format!("{name}-5,E,active,{name}-e,pw"),
        ]
        .join(eol)
            + eol;
        let file = write_file(&daemon.dir, &format!("{name}.csv"), &text);
        let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
        assert_eq!(rc, 1, "{name}: {v}");
        assert_eq!(rejected_lines(&v), vec![3, 5, 7], "{name}: {v}");
        let (rc, v) = daemon.ctl_json(&["import", "--skip-invalid", file.to_str().unwrap()]);
        assert_eq!(rc, 0, "{name}: {v}");
        assert_eq!(v["data"]["counts"]["contracts_created"], 2, "{name}: {v}");
    }
}

#[test]
fn an_import_larger_than_a_batch_is_checked_across_batches() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    let mut text = String::from("contract_id,state,username,password\n");
    text.push_str("big-1,,first,pw\n");
    for n in 2..1_200 {
        text.push_str(&format!("big-{n},active,user-{n},pw\n"));
    }
    // Line 1201: fills in big-1's state; line 1202 repeats line 3's login;
    // line 1203 contradicts line 1201.
    text.push_str("big-1,blocked,second,pw\n");
    text.push_str("big-9,active,user-2,pw\n");
    text.push_str("big-1,active,third,pw\n");
    let file = write_file(&daemon.dir, "big.csv", &text);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 1, "{v}");
    assert_eq!(rejected_lines(&v), vec![1202, 1203], "{v}");
    let reasons: Vec<&str> = v["data"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("already on line 3"), "{reasons:?}");
    assert!(reasons[1].contains("line 2"), "{reasons:?}");
    // Nothing was written.
    let (rc, _) = daemon.ctl_json(&["contract", "show", "big-1"]);
    assert_eq!(rc, 1);
    let (rc, v) = daemon.ctl_json(&["import", "--skip-invalid", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["counts"]["contracts_created"], 1_199, "{v}");
    assert_eq!(v["data"]["counts"]["logins_created"], 1_200, "{v}");
    let (_, show) = daemon.ctl_json(&["contract", "show", "big-1"]);
    assert_eq!(show["data"]["contract"]["state"], "blocked", "{show}");
    // The copy of the file the daemon kept while it arrived is gone.
    let state = daemon.dir.join("a-state");
    let left: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".import"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn liberactl_tells_busy_from_down_every_time() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start_with("max_connections = 2");
    let _a = daemon.open_connection();
    let _b = daemon.open_connection();
    for attempt in 0..20 {
        let out = daemon.ctl(&["ping"]);
        assert_eq!(
            out.status.code(),
            Some(4),
            "attempt {attempt}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("too many admin connections"),
            "attempt {attempt}: {}",
            stderr(&out)
        );
    }
    // A daemon that is gone is "unreachable" (3), not busy.
    let mut daemon = daemon;
    daemon.stop();
    assert_eq!(daemon.ctl(&["ping"]).status.code(), Some(3));
}

#[test]
fn a_silent_or_slow_client_does_not_hold_a_connection_slot() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start_with("max_connections = 1\nrequest_timeout_secs = 1");
    // Connected, and silent: its slot comes back after the request
    // timeout, not the idle timeout (300 s).
    let silent = daemon.connect();
    common::poll_until("the silent connection to be closed", || {
        let out = daemon.ctl(&["ping"]);
        match out.status.code() {
            Some(0) => Ok(()),
            other => Err(format!("{other:?}: {}", stderr(&out))),
        }
    });
    drop(silent);
    // Half a request, never finished: told so, then closed.
    let mut slow = daemon.open_connection();
    slow.send_raw(br#"{"cmd":"pi"#);
    let answer = slow.read();
    assert_eq!(answer["code"], "invalid_request", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("did not arrive whole"),
        "{answer}"
    );
    let mut rest = String::new();
    let n = std::io::Read::read_to_string(&mut slow.stream, &mut rest).unwrap_or(0);
    assert_eq!(n, 0, "{rest}");
    // A connection between requests stays open (the idle timeout).
    let mut idle = daemon.open_connection();
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(idle.request(r#"{"cmd":"ping"}"#)["ok"], true);
}

#[test]
fn contract_list_is_bounded_and_pages() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    let mut text = String::from("contract_id,state\n");
    for n in 1..=120 {
        text.push_str(&format!("{n},active\n"));
    }
    let file = write_file(&daemon.dir, "many.csv", &text);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    let (rc, v) = daemon.ctl_json(&["contract", "list"]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 50, "the default page");
    assert_eq!(v["next_after"], "50", "{}", v["message"]);
    // Page after page, in order, each once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["contract", "list", "--limit", "40"];
        if let Some(after) = &after {
            args.extend(["--after", after.as_str()]);
        }
        let (rc, v) = daemon.ctl_json(&args);
        assert_eq!(rc, 0, "{v}");
        let page: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        seen.extend(page);
        match v["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 120, "{seen:?}");
    }
    let expected: Vec<String> = (1..=120).map(|n| n.to_string()).collect();
    assert_eq!(seen, expected);
    // The limit has a cap, as every listing.
    let out = daemon.ctl(&["contract", "list", "--limit", "4000000000"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = daemon.ctl(&["contract", "list", "--after", "has space"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn the_file_of_an_import_cut_short_is_removed_at_the_next_start() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let mut daemon = Daemon::prepare_in(dir, "a", &common::database(dir), "", "");
    let state = dir.join("a-state");
    std::fs::create_dir_all(&state).unwrap();
    // Left by a liberad killed in the middle of an import (no such pid).
    let left = write_file(&state, ".import-4194999-0.csv", "contract_id\n1\n");
    // That of a process still running stays.
    let running = write_file(
        &state,
        &format!(".import-{}-0.csv", std::process::id()),
        "contract_id\n",
    );
    daemon.launch();
    daemon.wait_for_log("removed the file of an unfinished import");
    assert!(!left.exists());
    assert!(running.exists());
}
