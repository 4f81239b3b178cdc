// Enforcement against the real daemon: a NAS in the test reports a
// session by accounting and takes CoA / Disconnect on a UDP socket,
// answering ACK, NAK, forged answers or nothing.


use std::time::Duration;

use chrono::Utc;
use chrono_tz::America::Sao_Paulo;
use common::coa_nas::{Answer, CoaNas, CoaRequest};
use common::nas::Nas;
use common::{Daemon, write_file};
use liberad::model::{AccountingEvent, Actor, ContractId, Password, Username};
use liberad::radius::packet::attr;
use rustix::process::Signal;
use serde_json::Value;

const PROFILES: &str = r#"
[profiles.active]
coa = ["Mikrotik-Rate-Limit = 50M/50M"]
[profiles.blocked]
action = "accept"
reply = ["Framed-Pool = bloqueados", "Mikrotik-Address-List = bloqueados"]
login_reply = false
coa = ["Mikrotik-Address-List = bloqueados"]
"#;

/// Retransmissions fast enough for a test.
const FAST: &str =
    "retry_initial_ms = 300\nretry_max_ms = 600\nmax_sends = 3\nwait_timeout_secs = 20\n";

fn extra(coa: &CoaNas, mode: &str, enforcement: &str) -> String {
    format!(
        "coa_port = {}\ncoa_mode = \"{mode}\"\n{PROFILES}\n[enforcement]\n{enforcement}",
        coa.port()
    )
}

/// A daemon whose test NAS takes CoA on `coa`, with contract 1 blocked
/// (login maria) and maria online.
fn start(coa: &CoaNas, mode: &str) -> (Daemon, Nas) {
    start_with(coa, mode, FAST)
}

/// [`start`] with these `[enforcement]` settings.
fn start_with(coa: &CoaNas, mode: &str, enforcement: &str) -> (Daemon, Nas) {
    let daemon = Daemon::start_configured("", &extra(coa, mode, enforcement));
    let file = write_file(
        &daemon.dir,
        "c.csv",
        "contract_id,state,username,password\n1,blocked,maria,pw\n2,active,jose,pw\n",
    );
    assert_eq!(daemon.ctl_json(&["import", file.to_str().unwrap()]).0, 0);
    let (_, acct) = daemon.radius_addresses();
    let mut acct = Nas::new(acct);
    online(&mut acct, "maria", "s-1");
    (daemon, acct)
}

fn online(acct: &mut Nas, user: &str, session: &str) {
    let framed = [100u8, 64, 0, 7];
    let nas_ip = [127u8, 0, 0, 1];
    acct.accounting(
        1,
        &[
            (attr::USER_NAME, user.as_bytes()),
            (attr::ACCT_SESSION_ID, session.as_bytes()),
            (attr::FRAMED_IP_ADDRESS, &framed),
            (attr::NAS_IP_ADDRESS, &nas_ip),
        ],
    )
    .expect("accounting answered");
}

const IDENTIFICATION: [&str; 4] = [
    "User-Name = maria",
    "Acct-Session-Id = s-1",
    "Framed-IP-Address = 100.64.0.7",
    "NAS-IP-Address = 127.0.0.1",
];

fn identification_and(extra: &[&str]) -> Vec<String> {
    IDENTIFICATION
        .iter()
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect()
}

/// Runs a liberactl command while the NAS answers the request it causes.
fn while_nas_answers(
    daemon: &Daemon,
    coa: &CoaNas,
    args: &[&str],
    answer: Answer,
) -> ((i32, Value), CoaRequest) {
    std::thread::scope(|scope| {
        let command = scope.spawn(|| daemon.ctl_json(args));
        let request = coa.serve(answer);
        (command.join().unwrap(), request)
    })
}

/// The jobs of the `coa` listing.
fn jobs(daemon: &Daemon) -> Vec<Value> {
    let (rc, v) = daemon.ctl_json(&["coa", "--limit", "100"]);
    assert_eq!(rc, 0, "{v}");
    v["data"].as_array().unwrap().clone()
}

/// Waits until the newest job is final, and returns it.
fn settled_job(daemon: &Daemon) -> Value {
    common::poll_until("the newest enforcement job to be final", || {
        let list = jobs(daemon);
        match list.first() {
            Some(job) if !["pending", "sent"].contains(&job["state"].as_str().unwrap()) => {
                Ok(job.clone())
            }
            _ => Err(format!("{list:?}")),
        }
    })
}

#[test]
fn release_revoke_and_payment_move_an_online_customer_at_once() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let (daemon, _acct) = start(&coa, "coa");

    let ((rc, v), request) =
        while_nas_answers(&daemon, &coa, &["release", "1", "--wait"], Answer::Ack);
    assert_eq!(rc, 0, "{v}");
    assert!(request.is_coa());
    assert!(request.has(attr::EVENT_TIMESTAMP));
    assert_eq!(
        request.text(),
        identification_and(&["Mikrotik-Rate-Limit = 50M/50M"])
    );
    assert_eq!(v["data"]["sessions_told"], 1);
    assert_eq!(v["data"]["enforcement"][0]["state"], "acked");
    assert!(
        v["message"].as_str().unwrap().contains("1 confirmed"),
        "{v}"
    );

    let (_, summary) = daemon.ctl_json(&["contract", "show", "1"]);
    let session = &summary["data"]["sessions"][0];
    assert_eq!(session["last_job"]["profile"], "released");
    assert_eq!(session["last_job"]["state"], "acked");
    let text = common::stdout(&daemon.ctl(&["contract", "show", "1"]));
    assert!(text.contains("released confirmed (CoA-ACK)"), "{text}");

    let ((rc, v), request) =
        while_nas_answers(&daemon, &coa, &["revoke", "1", "--wait"], Answer::Ack);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(
        request.text(),
        identification_and(&["Mikrotik-Address-List = bloqueados"])
    );

    // Payment: the contract becomes active, the session moves at once.
    let ((rc, _), request) = while_nas_answers(
        &daemon,
        &coa,
        &["contract", "state", "1", "active"],
        Answer::Ack,
    );
    assert_eq!(rc, 0);
    assert_eq!(
        request.text(),
        identification_and(&["Mikrotik-Rate-Limit = 50M/50M"])
    );
    assert_eq!(settled_job(&daemon)["state"], "acked");

    // A contract with nobody online: nothing to send.
    let (rc, v) = daemon.ctl_json(&["contract", "state", "2", "blocked"]);
    assert_eq!(rc, 0);
    assert!(!v["message"].as_str().unwrap().contains("told"), "{v}");
    assert_eq!(jobs(&daemon).len(), 3);
}

#[test]
fn a_nas_in_disconnect_mode_gets_a_disconnect_request() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let (daemon, _acct) = start(&coa, "disconnect");
    let ((rc, v), request) =
        while_nas_answers(&daemon, &coa, &["release", "1", "--wait"], Answer::Ack);
    assert_eq!(rc, 0, "{v}");
    assert!(request.is_disconnect());
    assert_eq!(request.text(), identification_and(&[]));
    assert_eq!(settled_job(&daemon)["outcome"], "Disconnect-ACK");
}

#[test]
fn coa_then_disconnect_falls_back_after_a_nak_and_after_silence() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let (daemon, _acct) = start(&coa, "coa_then_disconnect");

    let ((rc, _), first) =
        while_nas_answers(&daemon, &coa, &["release", "1"], Answer::Nak(Some(404)));
    assert_eq!(rc, 0);
    assert!(first.is_coa());
    let fallback = coa.serve(Answer::Ack);
    assert!(fallback.is_disconnect());
    assert_eq!(fallback.text(), identification_and(&[]));
    let job = settled_job(&daemon);
    assert_eq!(job["state"], "acked");
    assert_eq!(job["fallback"], true);
    assert_eq!(
        job["outcome"],
        "CoA-NAK (Error-Cause 404 Invalid-Request); Disconnect-ACK"
    );

    // Silence: the CoA is sent three times, identical, then Disconnect.
    let (rc, _) = daemon.ctl_json(&["revoke", "1"]);
    assert_eq!(rc, 0);
    let sends: Vec<CoaRequest> = (0..3).map(|_| coa.expect()).collect();
    assert!(sends.iter().all(CoaRequest::is_coa));
    assert!(
        sends.iter().all(|r| r.bytes == sends[0].bytes),
        "retransmissions keep the identifier and authenticator"
    );
    let fallback = coa.serve(Answer::Ack);
    assert!(fallback.is_disconnect());
    assert_ne!(fallback.bytes[1..20], sends[0].bytes[1..20]);
    let job = settled_job(&daemon);
    assert_eq!(
        job["outcome"],
        "CoA: no answer after 3 sends; Disconnect-ACK"
    );
    assert_eq!(job["sends"], 1);
}

#[test]
fn a_forged_answer_is_ignored() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let (daemon, _acct) = start(&coa, "coa");
    let (rc, _) = daemon.ctl_json(&["release", "1"]);
    assert_eq!(rc, 0);
    let request = coa.expect();
    coa.answer(&request, Answer::Forged);
    coa.answer(&request, Answer::Ack);
    let job = settled_job(&daemon);
    assert_eq!(job["state"], "acked", "{job}");
    assert!(daemon.log_text().contains("does not authenticate"));
}

#[test]
fn a_nak_saying_the_session_is_gone_closes_it() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let (daemon, _acct) = start(&coa, "coa_then_disconnect");
    let ((rc, v), request) = while_nas_answers(
        &daemon,
        &coa,
        &["release", "1", "--wait"],
        Answer::Nak(Some(503)),
    );
    assert_eq!(rc, 0);
    assert!(request.is_coa());
    // No fallback for a session the NAS does not have.
    assert!(coa.receive(Duration::from_millis(1500)).is_none());
    let job = &v["data"]["enforcement"][0];
    assert_eq!(job["state"], "nak");
    assert_eq!(job["error_cause"], 503);
    assert!(v["message"].as_str().unwrap().contains("1 failed"), "{v}");
    let (_, sessions) = daemon.ctl_json(&["sessions", "--online"]);
    assert_eq!(sessions["data"], serde_json::json!([]));
    let (_, sessions) = daemon.ctl_json(&["sessions"]);
    assert_eq!(
        sessions["data"][0]["terminate_cause"],
        "Session-Context-Not-Found"
    );
    let (_, failed) = daemon.ctl_json(&["coa", "--failed"]);
    assert_eq!(failed["data"].as_array().unwrap().len(), 1);
    assert!(daemon.log_text().contains("enforcement failed"));
}

#[test]
fn a_release_that_ended_while_liberad_was_down_is_ended_and_enforced_at_start() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let temp = tempfile::tempdir().unwrap();
    let db = common::database(temp.path());
    // Written with the store, as a previous run would have left it: a
    // release made two days ago, its customer online.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let release_end = runtime.block_on(async {
        let store = liberad::store::open(&liberad::config::DatabaseConfig::default(), &db)
            .await
            .unwrap();
        let two_days_ago = Utc::now() - chrono::Duration::days(2);
        let store = std::sync::Arc::new(store);
        let app = liberad::app::App::new(
            std::sync::Arc::clone(&store),
            std::sync::Arc::new(liberad::clock::FixedClock(two_days_ago)),
            Sao_Paulo,
        );
        let actor = Actor::default();
        let contract = ContractId::parse("9").unwrap();
        app.add_contract(&actor, &contract, "", liberad::policy::ContractState::Blocked)
            .await
            .unwrap();
        app.add_login(
            &actor,
            &Username::parse("maria").unwrap(),
            &contract,
            Password::Cleartext("pw".into()),
            Vec::new(),
        )
        .await
        .unwrap();
        let event = AccountingEvent {
            at: two_days_ago,
            nas_name: "test".into(),
            nas_identity: "127.0.0.1".into(),
            nas_address: "127.0.0.1".into(),
            nas_ip_address: Some("127.0.0.1".into()),
            username: "maria".into(),
            acct_session_id: "s-1".into(),
            framed_ip_address: Some("100.64.0.7".into()),
            ..AccountingEvent::default()
        };
        store.record_accounting(&[event]).await.unwrap();
        let released = app
            .release(&actor, &contract, "before the outage")
            .await
            .unwrap();
        store.close().await;
        released.value.ends_at
    });
    assert!(release_end < Utc::now());

    let daemon = Daemon::start_in(temp.path(), "a", &db, "", &extra(&coa, "coa", FAST));
    let request = coa.serve(Answer::Ack);
    assert_eq!(
        request.text(),
        identification_and(&["Mikrotik-Address-List = bloqueados"])
    );
    let (_, v) = daemon.ctl_json(&["releases", "--contract", "9"]);
    let release = &v["data"][0];
    assert_eq!(release["end_reason"], "expired");
    assert_eq!(
        release["ended_at"],
        serde_json::to_value(release_end).unwrap(),
        "ended at its end, not at start-up"
    );
    // The unsent "release started" job was superseded by the expiry's.
    let list = jobs(&daemon);
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["state"], "superseded");
    assert_eq!(settled_job(&daemon)["state"], "acked");
}

#[test]
fn a_request_in_flight_when_liberad_is_killed_is_sent_again_after_restart() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let slow = "retry_initial_ms = 10000\nretry_max_ms = 16000\nmax_sends = 5\n";
    let (mut daemon, _acct) = start_with(&coa, "coa", slow);

    assert_eq!(daemon.ctl_json(&["release", "1"]).0, 0);
    let first = coa.expect();
    daemon.signal(Signal::KILL);
    daemon.wait_exit();

    daemon.launch();
    let again = coa.serve(Answer::Ack);
    assert_eq!(again.bytes, first.bytes, "the same request, byte for byte");
    let job = settled_job(&daemon);
    assert_eq!(job["state"], "acked");
    assert_eq!(job["sends"], 2);
}

#[test]
fn an_import_that_changes_a_state_ends_the_release_and_moves_the_session() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let (daemon, _acct) = start(&coa, "coa");
    let ((rc, v), _) = while_nas_answers(&daemon, &coa, &["release", "1", "--wait"], Answer::Ack);
    assert_eq!(rc, 0, "{v}");
    // The billing system says the bill is paid: the contract is active.
    let file = write_file(&daemon.dir, "paid.csv", "contract_id,state\n1,active\n");
    let ((rc, v), request) = while_nas_answers(
        &daemon,
        &coa,
        &["import", file.to_str().unwrap()],
        Answer::Ack,
    );
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["counts"]["enforcement_jobs"], 1, "{v}");
    assert!(request.is_coa());
    assert_eq!(
        request.text(),
        identification_and(&["Mikrotik-Rate-Limit = 50M/50M"])
    );
    let (_, releases) = daemon.ctl_json(&["releases", "--contract", "1"]);
    assert_eq!(releases["data"][0]["end_reason"], "unblocked", "{releases}");
    let job = settled_job(&daemon);
    assert_eq!(job["state"], "acked");
    assert_eq!(job["profile"], "active");
    // Blocked again by the next export: the blocked profile's CoA.
    let file = write_file(&daemon.dir, "overdue.csv", "contract_id,state\n1,blocked\n");
    let ((rc, v), request) = while_nas_answers(
        &daemon,
        &coa,
        &["import", file.to_str().unwrap()],
        Answer::Ack,
    );
    assert_eq!(rc, 0, "{v}");
    assert_eq!(
        request.text(),
        identification_and(&["Mikrotik-Address-List = bloqueados"])
    );
}

#[test]
fn sigterm_gives_requests_in_flight_their_five_seconds() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    // No retransmission within the test: what is seen is the drain.
    let slow = "retry_initial_ms = 20000\nretry_max_ms = 20000\nmax_sends = 5\n";
    let (mut daemon, _acct) = start_with(&coa, "coa", slow);

    // A slow NAS that answers within the five seconds: acknowledged.
    assert_eq!(daemon.ctl_json(&["release", "1"]).0, 0);
    let first = coa.expect();
    daemon.signal(Signal::TERM);
    std::thread::sleep(Duration::from_secs(2));
    coa.answer(&first, Answer::Ack);
    assert!(daemon.wait_exit().success());
    daemon.launch();
    let job = settled_job(&daemon);
    assert_eq!((job["state"].as_str(), job["sends"].as_u64()), (Some("acked"), Some(1)));
    assert!(
        coa.receive(Duration::from_secs(1)).is_none(),
        "an acknowledged request sent again"
    );

    // A silent NAS: the daemon waits its five seconds, exits 0, and the
    // next start sends the same request again.
    assert_eq!(daemon.ctl_json(&["revoke", "1"]).0, 0);
    let second = coa.expect();
    let stopping = std::time::Instant::now();
    daemon.signal(Signal::TERM);
    assert!(daemon.wait_exit().success());
    let waited = stopping.elapsed();
    assert!(waited >= Duration::from_millis(4_500), "exited after {waited:?}");
    daemon.launch();
    let again = coa.serve(Answer::Ack);
    assert_eq!(again.bytes, second.bytes, "the same request, byte for byte");
    let job = settled_job(&daemon);
    assert_eq!((job["state"].as_str(), job["sends"].as_u64()), (Some("acked"), Some(2)));
}

#[test]
fn wait_gives_up_at_the_wait_timeout_and_says_what_is_pending() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let silent = "retry_initial_ms = 20000\nretry_max_ms = 20000\nmax_sends = 5\nwait_timeout_secs = 2\n";
    let (daemon, _acct) = start_with(&coa, "coa", silent);
    for command in ["release", "revoke"] {
        let asked = std::time::Instant::now();
        let (rc, v) = daemon.ctl_json(&[command, "1", "--wait"]);
        let took = asked.elapsed();
        assert_eq!(rc, 0, "{v}");
        assert!(took >= Duration::from_secs(2), "{command} --wait took {took:?}");
        assert!(took < Duration::from_secs(10), "{command} --wait took {took:?}");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains("0 confirmed, 1 pending, 0 failed"), "{message}");
        // Sent, and waiting for its answer.
        let job = &v["data"]["enforcement"][0];
        assert_eq!((job["state"].as_str(), job["sends"].as_u64()), (Some("sent"), Some(1)), "{v}");
        // The NAS answers late; the next change may go to the session.
        let request = coa.expect();
        coa.answer(&request, Answer::Ack);
        settled_job(&daemon);
    }
}

#[test]
fn a_nas_that_takes_no_coa_is_sent_nothing_and_a_change_waits_for_the_next_connection() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let (daemon, _acct) = start(&coa, "none");
    let (rc, v) = daemon.ctl_json(&["release", "1", "--wait"]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["sessions_told"], 0);
    assert_eq!(v["data"]["sessions_at_next_connection"], 1);
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("1 online session on a NAS that takes no CoA")
            && message.contains("applies at its next connection"),
        "{message}"
    );
    assert!(jobs(&daemon).is_empty(), "no job is queued");
    let text = common::stdout(&daemon.ctl(&["contract", "show", "1"]));
    assert!(
        text.contains("no CoA: a change applies at the next connection"),
        "{text}"
    );
    let (rc, v) = daemon.ctl_json(&["contract", "state", "1", "cancelled"]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["sessions_at_next_connection"], 1);
    assert!(jobs(&daemon).is_empty());

    // The NAS learns CoA: after a reload, its sessions are told again.
    daemon.edit_config(|text| text.replace("coa_mode = \"none\"", "coa_mode = \"coa\""));
    daemon.signal(Signal::HUP);
    daemon.wait_for_log("configuration reloaded");
    daemon.wait_for_log("sessions marked: NAS entries without CoA: []");
    let ((rc, v), request) = while_nas_answers(
        &daemon,
        &coa,
        &["contract", "state", "1", "active"],
        Answer::Ack,
    );
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["sessions_told"], 1);
    assert!(request.is_coa());
    assert_eq!(settled_job(&daemon)["state"], "acked");
}

#[test]
fn a_request_whose_session_stops_is_finished_as_session_ended() {
    if common::backend_missing() {
        return;
    }
    let coa = CoaNas::bind();
    let (daemon, mut acct) = start(&coa, "coa");
    let (rc, v) = daemon.ctl_json(&["release", "1"]);
    assert_eq!(rc, 0, "{v}");
    // The NAS takes the request but does not answer; the customer hangs up.
    let first = coa.expect();
    assert!(first.is_coa());
    acct.accounting(
        2,
        &[
            (attr::USER_NAME, b"maria"),
            (attr::ACCT_SESSION_ID, b"s-1"),
            (attr::NAS_IP_ADDRESS, &[127u8, 0, 0, 1]),
        ],
    )
    .expect("Stop answered");
    let job = settled_job(&daemon);
    assert_eq!(job["state"], "dropped", "{job}");
    assert_eq!(job["outcome"], "session ended");
    // That nothing is sent after it, the paused-time test in
    // src/enforcer/tests.rs shows, past every retransmission.
}
