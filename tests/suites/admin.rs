// The admin socket and liberactl against the real daemon: the README's
// walkthrough, every refusal, parameters, imports, bad input, concurrency
// and restarts.


use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::{Arc, Barrier};

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::America::Sao_Paulo;
use common::{Daemon, LIBERACTL, LIBERAD, stderr, stdout, write_file};
use rustix::process::Signal;
use serde_json::{Value, json};

const CSV: &str = "\
contract_id,name,state,username,password,reply
1001,Maria Silva,blocked,maria,s3cret,Mikrotik-Rate-Limit = 10M/10M
1002,José Souza,active,jose,pw2,
1003,Ana Lima,reduced,ana,pw3,
1004,Old Customer,cancelled,old,pw4,
";

fn import_sample(daemon: &Daemon) {
    let file = write_file(&daemon.dir, "contracts.csv", CSV);
    let out = daemon.ctl(&["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn instant(v: &Value) -> DateTime<Utc> {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v} is not an instant: {e}"))
}

fn local_date(v: &Value) -> NaiveDate {
    instant(v).with_timezone(&Sao_Paulo).date_naive()
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

#[test]
fn readme_walkthrough() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    let file = write_file(&daemon.dir, "contracts.csv", CSV);

    let out = daemon.ctl(&["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("contracts 4 created"),
        "{}",
        stdout(&out)
    );

    let out = daemon.ctl(&["contract", "show", "1001"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("blocked since"), "{text}");
    assert!(text.contains("none running"), "{text}");
    assert!(text.contains("maria"), "{text}");

    let out = daemon.ctl(&[
        "release",
        "1001",
        "--reason",
        "promised payment",
        "--operator",
        "ana",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("contract 1001 released until ")
            && text.contains(" 00:00 America/Sao_Paulo (no online session to tell)"),
        "{text}"
    );

    let out = daemon.ctl(&["contract", "show", "1001"]);
    let text = stdout(&out);
    assert!(text.contains("profile       released"), "{text}");
    assert!(text.contains("running until"), "{text}");
    assert!(text.contains("by ana: promised payment"), "{text}");

    // The second release is refused with the date it becomes allowed.
    let (_, release) = daemon.ctl_json(&["releases", "--contract", "1001"]);
    let started = local_date(&release["data"][0]["started_at"]);
    let allowed = started.checked_add_days(Days::new(30)).unwrap();
    daemon.ctl(&["revoke", "1001", "--reason", "test"]);
    let out = daemon.ctl(&["release", "1001"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(&format!("may be released again on {allowed}")),
        "{text}"
    );
}

#[test]
fn every_refusal_has_its_code_and_data() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    import_sample(&daemon);

    let (rc, v) = daemon.ctl_json(&["release", "9999"]);
    assert_eq!((rc, code(&v)), (1, "not_found"));
    let (rc, v) = daemon.ctl_json(&["release", "1004"]);
    assert_eq!((rc, code(&v)), (1, "cancelled"));
    let (rc, v) = daemon.ctl_json(&["release", "1002"]);
    assert_eq!((rc, code(&v)), (1, "not_blocked"));

    // Reduced contracts are released like blocked ones.
    let (rc, v) = daemon.ctl_json(&["release", "1003"]);
    assert_eq!(rc, 0, "{v}");
    let ends_at = instant(&v["data"]["ends_at"]);
    let (rc, v) = daemon.ctl_json(&["release", "1003"]);
    assert_eq!((rc, code(&v)), (1, "already_released"));
    assert_eq!(instant(&v["ends_at"]), ends_at);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("already released until")
    );

    let (rc, v) = daemon.ctl_json(&["revoke", "1003"]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["end_reason"], "revoked");
    let (rc, v) = daemon.ctl_json(&["release", "1003"]);
    assert_eq!((rc, code(&v)), (1, "cooldown"));
    let next: NaiveDate = serde_json::from_value(v["next_allowed"].clone()).unwrap();
    assert!(next > Utc::now().with_timezone(&Sao_Paulo).date_naive());

    let (rc, v) = daemon.ctl_json(&["revoke", "1003"]);
    assert_eq!((rc, code(&v)), (1, "not_released"));

    let (rc, v) = daemon.ctl_json(&["params", "set", "enabled", "false"]);
    assert_eq!(rc, 0, "{v}");
    // Disabled comes first, even for an unknown contract.
    for id in ["1001", "9999"] {
        let (rc, v) = daemon.ctl_json(&["release", id]);
        assert_eq!((rc, code(&v)), (1, "disabled"), "{v}");
    }

    let (rc, v) = daemon.ctl_json(&["contract", "add", "1001"]);
    assert_eq!((rc, code(&v)), (1, "exists"));
    let (rc, v) = daemon.ctl_json(&[
        "login",
        "add",
        "maria",
        "--contract",
        "1001",
        "--password",
        "x",
    ]);
    assert_eq!((rc, code(&v)), (1, "exists"));
    let (rc, v) = daemon.ctl_json(&[
        "login",
        "add",
        "new",
        "--contract",
        "7777",
        "--password",
        "x",
    ]);
    assert_eq!((rc, code(&v)), (1, "not_found"));
    let (rc, v) = daemon.ctl_json(&[
        "login",
        "add",
        "new",
        "--contract",
        "1001",
        "--password",
        "x",
        "--attr",
        "garbage",
    ]);
    assert_eq!((rc, code(&v)), (2, "invalid_value"));
    let (rc, v) = daemon.ctl_json(&["contract", "show", "nope"]);
    assert_eq!((rc, code(&v)), (1, "not_found"));

    // Refused releases are in the audit log with their code.
    let (_, v) = daemon.ctl_json(&["audit", "--limit", "100"]);
    let outcomes: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "release")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    for expected in [
        "not_found",
        "cancelled",
        "not_blocked",
        "already_released",
        "cooldown",
        "disabled",
    ] {
        assert!(
            outcomes.contains(&expected),
            "{expected} missing from {outcomes:?}"
        );
    }
}

#[test]
fn parameter_changes_apply_at_once() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    import_sample(&daemon);

    let (rc, v) = daemon.ctl_json(&["params", "show"]);
    assert_eq!(rc, 0);
    assert_eq!(
        v["data"],
        json!({"enabled": true, "release_days": 1, "renew_after_days": 30})
    );

    let (rc, _) = daemon.ctl_json(&["params", "set", "release_days", "3"]);
    assert_eq!(rc, 0);
    let (rc, v) = daemon.ctl_json(&["release", "1001"]);
    assert_eq!(rc, 0, "{v}");
    let days = local_date(&v["data"]["ends_at"]) - local_date(&v["data"]["started_at"]);
    assert_eq!(days.num_days(), 3);
    let ends = instant(&v["data"]["ends_at"]).with_timezone(&Sao_Paulo);
    assert_eq!(ends.format("%H:%M:%S").to_string(), "00:00:00");

    daemon.ctl_json(&["revoke", "1001"]);
    let (_, v) = daemon.ctl_json(&["release", "1001"]);
    assert_eq!(code(&v), "cooldown");
    let (rc, _) = daemon.ctl_json(&["params", "set", "renew_after_days", "0"]);
    assert_eq!(rc, 0);
    let (rc, v) = daemon.ctl_json(&["release", "1001", "--dry-run"]);
    assert_eq!(rc, 0, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("may be released now")
    );
    // A dry run changes nothing.
    let (_, v) = daemon.ctl_json(&["releases", "--contract", "1001"]);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let (rc, _) = daemon.ctl_json(&["release", "1001"]);
    assert_eq!(rc, 0);

    for (name, value) in [
        ("release_days", "0"),
        ("release_days", "91"),
        ("renew_after_days", "366"),
        ("renew_after_days", "-1"),
        ("enabled", "perhaps"),
        ("speed", "1"),
    ] {
        let (rc, v) = daemon.ctl_json(&["params", "set", name, value]);
        assert_eq!((rc, code(&v)), (2, "invalid_value"), "{name}={value}: {v}");
    }
    // Each refused value of a known parameter is on record.
    let (_, v) = daemon.ctl_json(&["audit", "--limit", "100"]);
    let refused: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "params_set" && e["outcome"] == "invalid")
        .map(|e| e["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(refused.len(), 5, "{refused:?}");
    assert!(refused.contains(&"enabled = perhaps".to_owned()), "{refused:?}");
    let (_, v) = daemon.ctl_json(&["params", "show"]);
    assert_eq!(
        v["data"],
        json!({"enabled": true, "release_days": 3, "renew_after_days": 0})
    );
}

#[test]
fn state_changes_end_releases_as_the_rules_say() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    import_sample(&daemon);
    daemon.ctl_json(&["params", "set", "renew_after_days", "0"]);

    daemon.ctl_json(&["release", "1001"]);
    let (rc, v) = daemon.ctl_json(&["contract", "state", "1001", "reduced"]);
    assert_eq!(rc, 0);
    assert!(
        v["data"]["ended_release"].is_null(),
        "a reduced contract stays released"
    );
    let (_, v) = daemon.ctl_json(&["contract", "show", "1001"]);
    assert_eq!(v["data"]["profile"], "released");

    let (_, v) = daemon.ctl_json(&["contract", "state", "1001", "active", "--reason", "paid"]);
    assert_eq!(v["data"]["ended_release"]["end_reason"], "unblocked");
    let (_, v) = daemon.ctl_json(&["contract", "show", "1001"]);
    assert_eq!(v["data"]["profile"], "active");
    assert!(v["data"]["running_release"].is_null());
    assert_eq!(v["data"]["last_release"]["end_reason"], "unblocked");

    // Blocked again: a new release is possible (no cooldown here).
    daemon.ctl_json(&["contract", "state", "1001", "blocked"]);
    let (rc, _) = daemon.ctl_json(&["release", "1001"]);
    assert_eq!(rc, 0);
    let (_, v) = daemon.ctl_json(&["contract", "state", "1001", "cancelled"]);
    assert_eq!(v["data"]["ended_release"]["end_reason"], "revoked");
    let (_, v) = daemon.ctl_json(&["contract", "show", "1001"]);
    assert!(
        v["data"]["profile"].is_null(),
        "a cancelled contract is rejected"
    );
}

#[test]
fn import_with_good_duplicate_and_malformed_rows() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    let bad = write_file(
        &daemon.dir,
        "bad.csv",
        "contract_id,name,state,username,password,reply\n\
         2001,Good,blocked,good,pw,\n\
         2002,Dup,blocked,good,pw,\n\
         2003,Bad state,bloqueado,b3,pw,\n\
         2004,Short row\n\
         2005,Bad attr,active,b5,pw,not an attribute\n\
         2007,Unknown attr,active,b7,pw,Speed-Limit = 10\n\
         2006,Fine,active,,,\n",
    );
    let out = daemon.ctl(&["import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    for line in ["line 3", "line 4", "line 5", "line 6", "line 7"] {
        assert!(text.contains(line), "{line} missing from {text}");
    }
    assert!(text.contains("already on line 2"), "{text}");
    let (_, v) = daemon.ctl_json(&["contract", "list"]);
    assert_eq!(v["data"], json!([]), "nothing may be written");

    let (rc, v) = daemon.ctl_json(&["import", bad.to_str().unwrap(), "--skip-invalid"]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["applied"], true);
    assert_eq!(v["data"]["counts"]["contracts_created"], 2);
    assert_eq!(v["data"]["counts"]["logins_created"], 1);
    assert_eq!(v["data"]["rejected"].as_array().unwrap().len(), 5);

    // Re-importing updates what changed and leaves the rest.
    let again = write_file(
        &daemon.dir,
        "again.csv",
        "contract_id,name,state,username,password\n\
         2001,Good,active,good,newpw\n\
         2006,Fine,active,,\n",
    );
    let (rc, v) = daemon.ctl_json(&["import", again.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    let counts = &v["data"]["counts"];
    assert_eq!(counts["contracts_updated"], 1);
    assert_eq!(counts["contracts_unchanged"], 1);
    assert_eq!(counts["logins_updated"], 1);

    // Files refused as a whole.
    let header = write_file(&daemon.dir, "header.csv", "id,colour\n1,red\n");
    let (rc, v) = daemon.ctl_json(&["import", header.to_str().unwrap()]);
    assert_eq!((rc, code(&v)), (2, "invalid_file"));
    let latin1 = daemon.dir.join("latin1.csv");
    std::fs::write(&latin1, b"contract_id,name\n1,Jos\xe9\n").unwrap();
    let out = daemon.ctl(&["import", latin1.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    let out = daemon.ctl(&["import", "/nonexistent.csv"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_large_import_arrives_whole() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    let mut csv = String::from("contract_id,name,state,username,password,reply\n");
    for i in 0..5000 {
        csv.push_str(&format!(
            "{i},\"Customer \"\"{i}\"\"\",blocked,user{i},pw{i},Mikrotik-Rate-Limit = 10M/10M\n"
        ));
    }
    let file = write_file(&daemon.dir, "big.csv", &csv);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["counts"]["contracts_created"], 5000);
    assert_eq!(v["data"]["counts"]["logins_created"], 5000);
    let (_, v) = daemon.ctl_json(&["login", "show", "user4999"]);
    assert_eq!(v["data"]["contract_id"], "4999");
    let (_, v) = daemon.ctl_json(&["contract", "show", "4999"]);
    assert_eq!(v["data"]["contract"]["name"], "Customer \"4999\"");

    // Again, over several batches that mix new, changed and unchanged rows.
    let mut csv = String::from("contract_id,name,state,username,password,reply\n");
    for i in 0..6000 {
        let state = if i % 7 == 0 { "active" } else { "blocked" };
        let password = if i % 11 == 0 { "changed" } else { "pw" };
        csv.push_str(&format!(
            "{i},\"Customer \"\"{i}\"\"\",{state},user{i},{password}{i},\
             Mikrotik-Rate-Limit = 10M/10M\n"
        ));
    }
    let file = write_file(&daemon.dir, "again.csv", &csv);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    let counts = &v["data"]["counts"];
    let changed_state = (0..5000).filter(|i| i % 7 == 0).count();
    let changed_password = (0..5000).filter(|i| i % 11 == 0).count();
    assert_eq!(counts["contracts_created"], 1000);
    assert_eq!(counts["contracts_updated"], changed_state);
    assert_eq!(counts["contracts_unchanged"], 5000 - changed_state);
    assert_eq!(counts["logins_created"], 1000);
    assert_eq!(counts["logins_updated"], changed_password);
    assert_eq!(counts["logins_unchanged"], 5000 - changed_password);
    let (_, v) = daemon.ctl_json(&["contract", "show", "4998"]);
    assert_eq!(v["data"]["contract"]["state"], "active");
    let (_, v) = daemon.ctl_json(&["login", "show", "user5999"]);
    assert_eq!(v["data"]["contract_id"], "5999");
}

#[test]
fn garbage_on_the_socket_gets_errors_and_the_daemon_goes_on() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    import_sample(&daemon);
    let mut conn = daemon.connect();

    let v = conn.request("this is not json");
    assert_eq!(code(&v), "invalid_request");
    let v = conn.request(r#"{"cmd":"launch_rockets"}"#);
    assert_eq!(code(&v), "unknown_command");
    let v = conn.request(r#"{"cmd":"release","contract":1001}"#);
    assert_eq!(code(&v), "invalid_request");
    let v = conn.request(r#"{"cmd":"release","contract":"1001","extra":true}"#);
    assert_eq!(code(&v), "invalid_request");
    let v = conn.request(r#"{"cmd":"contract_show","id":"a b"}"#);
    assert_eq!(code(&v), "invalid_value");
    let v = conn.request("[1,2,3]");
    assert_eq!(code(&v), "invalid_request");
    conn.send_raw(&[0xff, 0xfe, 0x00, 0x01, b'\n']);
    assert_eq!(code(&conn.read()), "invalid_request");

    // A line over 64 KiB is refused, and the connection goes on.
    let long = format!(r#"{{"cmd":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    let v = conn.request(&long);
    assert_eq!(code(&v), "line_too_long");
    let v = conn.request(r#"{"cmd":"ping"}"#);
    assert_eq!(v["ok"], true);

    // Import commands out of order.
    let v = conn.request(r#"{"cmd":"import_chunk","data":"x"}"#);
    assert_eq!(code(&v), "no_import");
    let v = conn.request(r#"{"cmd":"import_commit"}"#);
    assert_eq!(code(&v), "no_import");

    // Random bytes, then a half-written request and a hang-up.
    let mut noise = daemon.connect();
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    noise.send_raw(&bytes);
    drop(noise);
    let mut half = daemon.connect();
    half.send_raw(br#"{"cmd":"release","contract":"10"#);
    drop(half);
    // A half-written request left open does not hold up others.
    let mut open_half = daemon.connect();
    open_half.send_raw(br#"{"cmd":"release","#);

    let v = daemon.request(r#"{"cmd":"release","contract":"1001","operator":"ana"}"#);
    assert_eq!(v["ok"], true, "{v}");
    let v = conn.request(r#"{"cmd":"contract_show","id":"1001"}"#);
    assert_eq!(v["data"]["profile"], "released");
    // The half-written release of contract 1001's neighbour never ran.
    let (_, v) = daemon.ctl_json(&["releases"]);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}

#[test]
fn connections_over_the_limit_are_told_busy() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start_with("max_connections = 2");
    let a = daemon.open_connection();
    let mut b = daemon.open_connection();
    let mut c = daemon.connect();
    assert_eq!(code(&c.read()), "busy");
    drop(a);
    // The slot comes back once the first connection is gone.
    let _c = daemon.open_connection();
    assert_eq!(b.request(r#"{"cmd":"ping"}"#)["ok"], true);
}

/// Sends a release of each contract through every connection at the same
/// moment and returns how many succeeded per contract.
fn race(sockets: &[std::path::PathBuf], contracts: &[String]) -> Vec<(usize, Vec<String>)> {
    let mut results = Vec::new();
    for id in contracts {
        let barrier = Arc::new(Barrier::new(sockets.len()));
        let handles: Vec<_> = sockets
            .iter()
            .map(|socket| {
                let mut conn = common::Conn::open(socket);
                let barrier = Arc::clone(&barrier);
                let line = json!({"cmd": "release", "contract": id}).to_string();
                std::thread::spawn(move || {
                    barrier.wait();
                    conn.request(&line)
                })
            })
            .collect();
        let answers: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = answers.iter().filter(|v| v["ok"] == true).count();
        let codes = answers
            .iter()
            .filter(|v| v["ok"] != true)
            .map(|v| code(v).to_owned())
            .collect();
        results.push((ok, codes));
    }
    results
}

fn blocked_contracts(daemon: &Daemon, n: usize) -> Vec<String> {
    let mut csv = String::from("contract_id,state\n");
    let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    for id in &ids {
        csv.push_str(&format!("{id},blocked\n"));
    }
    let file = write_file(&daemon.dir, "blocked.csv", &csv);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    ids
}

#[test]
fn simultaneous_releases_give_exactly_one() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    let ids = blocked_contracts(&daemon, 20);
    let sockets = vec![daemon.socket.clone(); 4];
    for (ok, codes) in race(&sockets, &ids) {
        assert_eq!(ok, 1);
        assert_eq!(codes, vec!["already_released"; 3]);
    }
    let (_, v) = daemon.ctl_json(&["releases", "--limit", "1000"]);
    assert_eq!(v["data"].as_array().unwrap().len(), ids.len());
}

#[test]
fn two_daemons_on_one_database_give_exactly_one_release() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let db = common::database(temp.path());
    let a = Daemon::start_in(temp.path(), "a", &db, "", "");
    let b = Daemon::start_in(temp.path(), "b", &db, "", "");
    let ids = blocked_contracts(&a, 20);
    let sockets = vec![a.socket.clone(), b.socket.clone()];
    for (ok, codes) in race(&sockets, &ids) {
        assert_eq!(ok, 1, "{codes:?}");
        assert_eq!(codes, vec!["already_released"]);
    }
    // Each sees the other's releases.
    let (_, v) = b.ctl_json(&["releases", "--limit", "1000"]);
    assert_eq!(v["data"].as_array().unwrap().len(), ids.len());
}

#[test]
fn state_survives_a_restart() {
    if common::backend_missing() {
        return;
    }
    let mut daemon = Daemon::start();
    import_sample(&daemon);
    daemon.ctl_json(&["params", "set", "release_days", "2"]);
    let (rc, v) = daemon.ctl_json(&["release", "1001", "--reason", "before restart"]);
    assert_eq!(rc, 0);
    let mut release = v["data"].clone();
    let outcome = release.as_object_mut().unwrap();
    assert_eq!(outcome.remove("sessions_told"), Some(json!(0)));
    assert_eq!(outcome.remove("sessions_at_next_connection"), Some(json!(0)));
    outcome.remove("enforcement");

    let status = daemon.stop();
    assert!(status.success(), "{status}:\n{}", daemon.log_text());
    assert!(!daemon.socket.exists(), "the socket is removed on stop");
    daemon.launch();

    let (_, v) = daemon.ctl_json(&["contract", "show", "1001"]);
    assert_eq!(v["data"]["running_release"], release);
    assert_eq!(v["data"]["profile"], "released");
    let (_, v) = daemon.ctl_json(&["params", "show"]);
    assert_eq!(v["data"]["release_days"], 2);
    let (_, v) = daemon.ctl_json(&["release", "1001"]);
    assert_eq!(code(&v), "already_released");
    let (_, v) = daemon.ctl_json(&["audit"]);
    let details: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("before restart")),
        "{details:?}"
    );
}

#[test]
fn sigint_stops_cleanly_too() {
    if common::backend_missing() {
        return;
    }
    let mut daemon = Daemon::start();
    daemon.signal(Signal::INT);
    let status = daemon.wait_exit();
    assert!(status.success(), "{status}");
    assert!(daemon.log_text().contains("stopped"));
}

#[test]
fn the_audit_records_the_peer_uid_and_operator() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    daemon.ctl_json(&[
        "contract",
        "add",
        "42",
        "--state",
        "blocked",
        "--operator",
        "bia",
    ]);
    let uid = rustix::process::getuid().as_raw();
    let (_, v) = daemon.ctl_json(&["audit", "--limit", "1"]);
    let entry = &v["data"][0];
    assert_eq!(entry["actor_uid"], uid);
    assert_eq!(entry["operator"], "bia");
    assert_eq!(entry["action"], "contract_add");
    // Without --operator, the login name is used.
    daemon.ctl_json(&["release", "42"]);
    let (_, v) = daemon.ctl_json(&["releases", "--contract", "42"]);
    assert_eq!(v["data"][0]["operator"], "tester");
}

#[test]
fn logins_are_added_shown_and_removed_without_their_password() {
    use liberad::radius::packet::code::{ACCESS_ACCEPT, ACCESS_REJECT};
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    daemon.ctl_json(&["contract", "add", "7", "--name", "Sete"]);
    let (rc, v) = daemon.ctl_json(&[
        "login",
        "add",
        "sete",
        "--contract",
        "7",
        "--password",
        "segredo",
        "--attr",
        "Framed-Pool = clientes",
        "--attr",
        "Mikrotik-Rate-Limit = 5M/5M",
    ]);
    assert_eq!(rc, 0, "{v}");
    let out = daemon.ctl(&["login", "show", "sete"]);
    let text = stdout(&out);
    assert!(text.contains("Framed-Pool = clientes"), "{text}");
    assert!(!text.contains("segredo"));
    let (_, v) = daemon.ctl_json(&["login", "show", "sete"]);
    assert!(!v.to_string().contains("segredo"));
    let (_, v) = daemon.ctl_json(&["audit"]);
    assert!(!v.to_string().contains("segredo"));

    // The password can come from standard input.
    let mut child = Command::new(LIBERACTL)
        .args([
            "--socket",
            daemon.socket.to_str().unwrap(),
            "login",
            "add",
            "oito",
        ])
        .args(["--contract", "7", "--password", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-stdin\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    // The password is the one read, without its line break: oito logs in
    // with it, and with nothing else.
    let (auth, _) = daemon.radius_addresses();
    let mut nas = common::nas::Nas::new(auth);
    let code_of = |reply: common::nas::Reply| reply.code;
    assert_eq!(code_of(nas.pap("oito", "from-stdin")), ACCESS_ACCEPT);
    assert_eq!(code_of(nas.pap("oito", "from-stdin\n")), ACCESS_REJECT);
    assert_eq!(code_of(nas.pap("oito", "-")), ACCESS_REJECT);

    let (rc, _) = daemon.ctl_json(&["login", "remove", "sete"]);
    assert_eq!(rc, 0);
    let (rc, v) = daemon.ctl_json(&["login", "show", "sete"]);
    assert_eq!((rc, code(&v)), (1, "not_found"));
    assert!(!daemon.log_text().contains("segredo"));
    assert!(!daemon.log_text().contains("from-stdin"));
}

#[test]
fn liberactl_exit_codes_and_socket_discovery() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    // Unreachable: exit 3, naming the socket.
    let out = Command::new(LIBERACTL)
        .args(["--socket", "/nonexistent/liberad.sock", "params", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("/nonexistent/liberad.sock"));
    // Usage error: exit 2.
    let out = daemon.ctl(&["release"]);
    assert_eq!(out.status.code(), Some(2));
    // The socket path read from the daemon's configuration, and from the
    // environment.
    let out = Command::new(LIBERACTL)
        .args(["--config", daemon.config.to_str().unwrap(), "ping"])
        .env_remove("LIBERAD_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = Command::new(LIBERACTL)
        .arg("ping")
        .env("LIBERAD_SOCKET", &daemon.socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // liberactl reads only the socket path of the configuration: a
    // dictionary it cannot read, a NAS without secret and an unknown key
    // are the daemon's business, not the operator's tool's.
    let partial = write_file(
        &daemon.dir,
        "operator.toml",
        &format!(
            "[admin]\nsocket = \"{}\"\n[radius]\ndictionaries = [\"/nonexistent/dictionary\"]\n\
             [[nas]]\nname = \"x\"\naddress = \"10.0.0.1\"\nsome_future_key = 1\n",
            daemon.socket.display()
        ),
    );
    let out = Command::new(LIBERACTL)
        .args(["--config", partial.to_str().unwrap(), "ping"])
        .env_remove("LIBERAD_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // LIBERAD_ADMIN__SOCKET overrides the file's socket, as for the daemon.
    let elsewhere = write_file(
        &daemon.dir,
        "elsewhere.toml",
        "[admin]\nsocket = \"/nonexistent/liberad.sock\"\n",
    );
    let out = Command::new(LIBERACTL)
        .args(["--config", elsewhere.to_str().unwrap(), "ping"])
        .env_remove("LIBERAD_SOCKET")
        .env("LIBERAD_ADMIN__SOCKET", &daemon.socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // While the daemon refuses it, naming the dictionary.
    let out = Command::new(LIBERAD)
        .args(["--check-config", "--config", partial.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn check_config_exits_0_or_78() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let good = write_file(
        temp.path(),
        "good.toml",
        "timezone = \"America/Sao_Paulo\"\n",
    );
    let bad = write_file(temp.path(), "bad.toml", "[admin]\nsocket_mod = \"0660\"\n");
    let run = |path: &std::path::Path| {
        Command::new(LIBERAD)
            .args(["--check-config", "--config", path.to_str().unwrap()])
            .env_clear()
            .output()
            .unwrap()
    };
    assert_eq!(run(&good).status.code(), Some(0));
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(78));
    let text = stderr(&out);
    assert!(
        text.contains("socket_mod") && text.contains("bad.toml"),
        "{text}"
    );
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/liberad.toml");
    assert_eq!(run(&example).status.code(), Some(0));
    // So is the RADIUS part, compiled by --check-config as by a start.
    let bad_profile = write_file(
        temp.path(),
        "profile.toml",
        "[profiles.blocked]\naction = \"accept\"\nreply = [\"No-Such-Attribute = 1\"]\n",
    );
    let out = run(&bad_profile);
    assert_eq!(out.status.code(), Some(78));
    let text = stderr(&out);
    assert!(
        text.contains("No-Such-Attribute") && text.contains("profile.toml"),
        "{text}"
    );
    let out = Command::new(LIBERAD)
        .args(["--config", bad_profile.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    // A bad config also stops a normal start with 78.
    let out = Command::new(LIBERAD)
        .args(["--config", bad.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn the_socket_is_created_with_its_mode_and_stale_sockets_are_replaced() {
    if common::backend_missing() {
        return;
    }
    let mut daemon = Daemon::start_with("socket_mode = \"0600\"");
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Killed without cleanup: the stale socket is replaced on the next start.
    daemon.signal(Signal::KILL);
    daemon.wait_exit();
    assert!(daemon.socket.exists());
    daemon.launch();
    assert_eq!(daemon.ctl_json(&["ping"]).0, 0);

    // A second daemon on the same socket refuses to start.
    let out = Command::new(LIBERAD)
        .args(["--config", daemon.config.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another process is listening"),
        "{}",
        stderr(&out)
    );
    assert_eq!(daemon.ctl_json(&["ping"]).0, 0);
    daemon.stop();

    // A file that is not a socket is never removed.
    std::fs::write(&daemon.socket, "precious").unwrap();
    let out = Command::new(LIBERAD)
        .args(["--config", daemon.config.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a socket"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&daemon.socket).unwrap(), "precious");
}

#[test]
fn an_empty_state_in_an_import_keeps_the_state_and_a_new_contract_is_active() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    let first = write_file(
        &daemon.dir,
        "first.csv",
        "contract_id,name,state\n1,Maria,blocked\n2,José,reduced\n",
    );
    assert_eq!(daemon.ctl_json(&["import", first.to_str().unwrap()]).0, 0);
    let second = write_file(
        &daemon.dir,
        "second.csv",
        "contract_id,name,state\n1,Maria Silva,\n2,,\n3,Ana,\n",
    );
    let (rc, v) = daemon.ctl_json(&["import", second.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    assert_eq!(v["data"]["counts"]["contracts_created"], 1, "{v}");
    assert_eq!(v["data"]["counts"]["contracts_updated"], 1, "{v}");
    assert_eq!(v["data"]["counts"]["contracts_unchanged"], 1, "{v}");
    let show = |id: &str| daemon.ctl_json(&["contract", "show", id]).1["data"]["contract"].clone();
    assert_eq!(show("1")["state"], "blocked");
    assert_eq!(show("1")["name"], "Maria Silva");
    assert_eq!(show("2")["state"], "reduced");
    assert_eq!(show("2")["name"], "José");
    assert_eq!(show("3")["state"], "active");
}

#[test]
fn an_idle_connection_is_closed_at_the_idle_timeout() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start_with("idle_timeout_secs = 2");
    let mut conn = daemon.open_connection();
    let quiet_since = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut conn.stream, &mut rest);
    let closed_after = quiet_since.elapsed();
    assert!(matches!(read, Ok(0)), "{read:?} {rest:?}");
    assert!(
        closed_after >= std::time::Duration::from_millis(1_900),
        "closed after {closed_after:?}"
    );
    assert!(
        closed_after < std::time::Duration::from_secs(10),
        "closed after {closed_after:?}"
    );
}

#[test]
fn api_tokens_are_shown_once_kept_as_hashes_listed_and_revoked() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    let out = daemon.ctl(&["token", "add", "erp", "--role", "billing"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let token = text.lines().last().unwrap_or("").to_owned();
    assert!(token.starts_with("lbr_"), "{text}");
    // 16 random bytes of secret, hex: 128 bits.
    let secret = token.rsplit('_').next().unwrap();
    assert_eq!(secret.len(), 32, "{token}");
    // Another token has another secret.
    let (code, other) = daemon.ctl_json(&[
        "token", "add", "bot", "--role", "release", "--expires", "2099-12-31",
    ]);
    assert_eq!(code, 0, "{other}");
    assert_ne!(other["data"]["token"], token);
    assert_eq!(other["data"]["role"], "release");
    assert!(other["data"]["expires_at"].is_string(), "{other}");
    // The list never shows a token, nor anything of its secret.
    let list = daemon.ctl(&["token", "list"]);
    let listed = stdout(&list);
    assert!(listed.contains("erp") && listed.contains("billing"), "{listed}");
    assert!(!listed.contains(secret), "{listed}");
    let (_, json) = daemon.ctl_json(&["token", "list"]);
    assert!(!json.to_string().contains(secret), "{json}");
    assert!(!json.to_string().contains("lbr_"), "{json}");
    assert_eq!(json["data"].as_array().unwrap().len(), 2);
    // Names are taken once, revoked or not; the role must be a role.
    let (code, again) = daemon.ctl_json(&["token", "add", "erp", "--role", "read"]);
    assert_eq!(code, 1, "{again}");
    assert_eq!(again["code"], "exists");
    let bad = daemon.ctl(&["token", "add", "x", "--role", "root"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    // A value that is not one is a usage error (exit 2), as elsewhere.
    let (code, bad) = daemon.ctl_json(&["token", "add", "no spaces", "--role", "read"]);
    assert_eq!(code, 2, "{bad}");
    assert_eq!(bad["code"], "invalid_value");
    let (code, past) = daemon.ctl_json(&[
        "token", "add", "old", "--role", "read", "--expires", "2001-01-01",
    ]);
    assert_eq!(code, 2, "{past}");
    assert_eq!(past["code"], "invalid_value");
    // Revoked: kept, with when.
    let (code, revoked) = daemon.ctl_json(&["token", "revoke", "erp"]);
    assert_eq!(code, 0, "{revoked}");
    assert!(revoked["data"]["revoked_at"].is_string(), "{revoked}");
    let (code, missing) = daemon.ctl_json(&["token", "revoke", "nobody"]);
    assert_eq!(code, 1, "{missing}");
    assert_eq!(missing["code"], "not_found");
    // Every change is in the audit trail, without the token.
    let (_, audit) = daemon.ctl_json(&["audit"]);
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"token_add") && actions.contains(&"token_revoke"), "{audit}");
    assert!(!audit.to_string().contains(secret), "{audit}");
}
