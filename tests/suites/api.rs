// The HTTP API's stack, through curl (a client no one here wrote) and raw
// sockets: the listener, HTTP/1.1 and HTTP/2, health and readiness, what an
// unknown path gets, and a slow client cut. Compiled once per backend.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::Value;

const API: &str = "[api]\nlisten = \"127.0.0.1:0\"\n";

/// Where the daemon serves its API, as `ping` tells it.
fn api_address(daemon: &Daemon) -> SocketAddr {
    let (_, pong) = daemon.ctl_json(&["ping"]);
    pong["data"]["api"]
        .as_str()
        .unwrap_or_else(|| panic!("ping names no API address: {pong}"))
        .parse()
        .unwrap()
}

/// curl, or why the test cannot run.
fn curl() -> Option<Command> {
    if Command::new("curl").arg("--version").output().is_err() {
        common::skip("curl is not installed");
        return None;
    }
    let mut command = Command::new("curl");
    command.args(["--silent", "--show-error", "--max-time", "20"]);
    Some(command)
}

/// The status and the JSON body curl got for `path`.
fn get(mut curl: Command, address: SocketAddr, path: &str) -> (u16, Value) {
    let out = curl
        .args(["--write-out", "\n%{http_code} %{http_version}"])
        .arg(format!("http://{address}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = tail.split(' ').next().unwrap_or("").parse().unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn health_answers_over_http1_and_http2_and_says_the_database_is_ready() {
    if common::backend_missing() {
        return;
    }
    let Some(_) = curl() else { return };
    let daemon = Daemon::start_configured("", API);
    let address = api_address(&daemon);
    let (status, health) = get(curl().unwrap(), address, "/v1/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["live"], true, "{health}");
    assert_eq!(health["ready"], true, "{health}");
    assert_eq!(health["database"]["readable"], true, "{health}");
    assert_eq!(health["database"]["writes"]["writable"], true, "{health}");
    // HTTP/2 without TLS, as a client that knows the server speaks it.
    let mut h2 = curl().unwrap();
    h2.arg("--http2-prior-knowledge");
    let out = h2
        .args(["--write-out", "%{http_version}", "--output", "/dev/null"])
        .arg(format!("http://{address}/v1/health"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2", "{out:?}");
    // An unknown resource: a JSON refusal with its code, not a crash.
    let (status, body) = get(curl().unwrap(), address, "/v2/contracts");
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found", "{body}");
    let (status, _) = get(curl().unwrap(), address, "/v1/health");
    assert_eq!(status, 200);
}

#[test]
fn a_client_that_never_finishes_its_request_is_cut_and_others_are_served() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start_configured("", API);
    let address = api_address(&daemon);
    let mut slow = TcpStream::connect(address).unwrap();
    slow.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Others are answered meanwhile.
    let mut other = TcpStream::connect(address).unwrap();
    other
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The slow one is cut within the header time limit (10 s), with no
    // answer to a request it never finished.
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the slow client was not cut"
    );
    assert!(
        !String::from_utf8_lossy(&rest).contains(" 200 "),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    // Garbage gets a 400, and the daemon goes on answering.
    let mut garbage = TcpStream::connect(address).unwrap();
    garbage.write_all(b"\x00\x01\x02 nonsense\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = garbage.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(common::http(address, b"GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n")
        .starts_with("HTTP/1.1 200"));
}

#[test]
fn a_database_that_refuses_writes_makes_the_daemon_not_ready() {
    if common::backend_missing() || BACKEND != common::Backend::Sqlite {
        // On PostgreSQL the same readiness comes from the same write
        // status; the file's disappearance is SQLite's own fault.
        return;
    }
    let Some(_) = curl() else { return };
    let daemon = Daemon::start_configured("", API);
    let address = api_address(&daemon);
    let (status, _) = get(curl().unwrap(), address, "/v1/health");
    assert_eq!(status, 200);
    let db = daemon.dir.join("liberad.db");
    assert!(db.exists(), "{}", db.display());
    std::fs::remove_file(&db).unwrap();
    let (status, health) = get(curl().unwrap(), address, "/v1/health");
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["live"], true);
    assert_eq!(health["ready"], false);
    assert_eq!(
        health["database"]["writes"]["cause"], "database file deleted",
        "{health}"
    );
}

/// A token made with liberactl for `role`.
fn token(daemon: &Daemon, name: &str, role: &str) -> String {
    let (code, made) = daemon.ctl_json(&["token", "add", name, "--role", role]);
    assert_eq!(code, 0, "{made}");
    made["data"]["token"].as_str().unwrap().to_owned()
}

/// curl with a bearer token.
fn with_token(token: &str) -> Command {
    let mut curl = curl().unwrap();
    curl.args(["--header", &format!("Authorization: Bearer {token}")]);
    curl
}

#[test]
fn a_contract_is_read_with_a_token_and_refused_without_one() {
    if common::backend_missing() {
        return;
    }
    let Some(_) = curl() else { return };
    let daemon = Daemon::start_configured("", API);
    let address = api_address(&daemon);
    let out = daemon.ctl(&["contract", "add", "1234", "--state", "blocked"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let reader = token(&daemon, "desk", "read");
    // With its token: the summary, as the socket gives it.
    let (status, summary) = get(with_token(&reader), address, "/v1/contracts/1234");
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["contract"]["state"], "blocked", "{summary}");
    assert_eq!(summary["release_enabled"], true, "{summary}");
    let (_, tokens) = daemon.ctl_json(&["token", "list"]);
    assert!(tokens["data"][0]["last_used_at"].is_string(), "{tokens}");
    // The application's refusals, with their codes and statuses.
    let (status, body) = get(with_token(&reader), address, "/v1/contracts/9999");
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = get(with_token(&reader), address, "/v1/contracts/a%20b");
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_value")), "{body}");
    // No token, a wrong one, a revoked one: 401, and nothing about the contract.
    let mut forged = reader.clone();
    forged.pop();
    forged.push('x');
    for curl in [curl().unwrap(), with_token(&forged), with_token("lbr_0_0")] {
        let (status, body) = get(curl, address, "/v1/contracts/1234");
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")), "{body}");
        assert!(!body.to_string().contains("blocked"), "{body}");
    }
    let out = daemon.ctl(&["token", "revoke", "desk"]);
    assert_eq!(out.status.code(), Some(0));
    let (status, body) = get(with_token(&reader), address, "/v1/contracts/1234");
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("revoked"), "{body}");
    // The challenge names the scheme.
    let mut curl = curl().unwrap();
    let out = curl
        .args(["--include", "--output", "-"])
        .arg(format!("http://{address}/v1/contracts/1234"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("www-authenticate: bearer"), "{head}");
}

/// The status and JSON body curl got for `method path` with a JSON body.
fn send(mut curl: Command, address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    curl.args(["--request", method]);
    if !body.is_empty() {
        curl.args(["--header", "Content-Type: application/json", "--data", body]);
    }
    get(curl, address, path)
}

#[test]
fn a_billing_system_and_a_bot_do_their_writes_and_each_role_stops_at_its_boundary() {
    if common::backend_missing() {
        return;
    }
    let Some(_) = curl() else { return };
    let daemon = Daemon::start_configured("", API);
    let address = api_address(&daemon);
    let billing = token(&daemon, "erp", "billing");
    let bot = token(&daemon, "whatsapp", "release");
    let reader = token(&daemon, "desk", "read");
    let admin = token(&daemon, "noc", "admin");

    // The billing system creates a contract blocked, then a login on it.
    let body = r#"{"name": "Maria Souza", "state": "blocked", "operator": "erp-sync"}"#;
    let (status, put) = send(with_token(&billing), address, "PUT", "/v1/contracts/501", body);
    assert_eq!(status, 201, "{put}");
    assert_eq!(put["created"], true, "{put}");
    assert_eq!(put["contract"]["state"], "blocked", "{put}");
    let (status, put) = send(with_token(&billing), address, "PUT", "/v1/contracts/501", body);
    assert_eq!(status, 200, "the same again changes nothing: {put}");
    assert_eq!(put["created"], false, "{put}");
    let login = r#"{"contract": "501", "password": "s3cret", "attributes": ["Mikrotik-Rate-Limit=10M/10M"]}"#;
    let (status, put) = send(with_token(&billing), address, "PUT", "/v1/logins/maria", login);
    assert_eq!(status, 201, "{put}");
    let (status, shown) = get(with_token(&reader), address, "/v1/logins/maria");
    assert_eq!((status, shown["contract_id"].as_str()), (200, Some("501")), "{shown}");

    // What each role may not do: 403, and nothing changes.
    let forbidden = [
        (&reader, "POST", "/v1/contracts/501/release", ""),
        (&billing, "POST", "/v1/contracts/501/release", ""),
        (&bot, "PUT", "/v1/contracts/501", body),
        (&bot, "POST", "/v1/contracts/501/state", r#"{"state": "active"}"#),
        (&reader, "DELETE", "/v1/logins/maria", ""),
        (&billing, "PUT", "/v1/parameters/release_days", r#"{"value": 3}"#),
        (&bot, "PUT", "/v1/parameters/release_days", r#"{"value": 3}"#),
    ];
    for (token, method, path, body) in forbidden {
        let (status, refusal) = send(with_token(token), address, method, path, body);
        assert_eq!(status, 403, "{method} {path}: {refusal}");
        assert_eq!(refusal["code"], "forbidden", "{refusal}");
    }
    let (_, summary) = get(with_token(&reader), address, "/v1/contracts/501");
    assert!(summary["running_release"].is_null(), "{summary}");

    // The bot: a dry run, the release, then the refusal with its date.
    let (status, preview) = send(with_token(&bot), address, "POST", "/v1/contracts/501/release", r#"{"dry_run": true}"#);
    assert_eq!(status, 200, "{preview}");
    assert!(preview["ends_at"].is_string(), "{preview}");
    let (status, released) = send(with_token(&bot), address, "POST", "/v1/contracts/501/release", r#"{"reason": "asked on WhatsApp"}"#);
    assert_eq!(status, 201, "{released}");
    assert_eq!(released["ends_at"], preview["ends_at"], "{released}");
    let (status, again) = send(with_token(&bot), address, "POST", "/v1/contracts/501/release", "");
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["code"], "already_released", "{again}");
    assert_eq!(again["ends_at"], preview["ends_at"], "{again}");
    let (status, unknown) = send(with_token(&bot), address, "POST", "/v1/contracts/777/release", "");
    assert_eq!((status, unknown["code"].as_str()), (404, Some("not_found")), "{unknown}");
    let (status, revoked) = send(with_token(&bot), address, "POST", "/v1/contracts/501/revoke", r#"{"reason": "by mistake"}"#);
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["end_reason"], "revoked", "{revoked}");
    let (status, cooldown) = send(with_token(&bot), address, "POST", "/v1/contracts/501/release", "");
    assert_eq!(status, 409, "{cooldown}");
    assert_eq!(cooldown["code"], "cooldown", "{cooldown}");
    assert!(cooldown["next_allowed"].is_string(), "{cooldown}");
    let (status, none) = send(with_token(&bot), address, "POST", "/v1/contracts/501/revoke", "");
    assert_eq!((status, none["code"].as_str()), (409, Some("not_released")), "{none}");

    // Payment: the billing system makes it active.
    let (status, change) = send(with_token(&billing), address, "POST", "/v1/contracts/501/state", r#"{"state": "active", "reason": "paid"}"#);
    assert_eq!(status, 200, "{change}");
    assert_eq!((change["previous"].as_str(), change["contract"]["state"].as_str()), (Some("blocked"), Some("active")), "{change}");
    let (status, page) = get(with_token(&reader), address, "/v1/contracts?state=active&limit=10");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["contracts"][0]["id"], "501", "{page}");
    for path in ["/v1/releases?contract=501", "/v1/sessions", "/v1/enforcement", "/v1/parameters", "/v1/audit?limit=5"] {
        let (status, body) = get(with_token(&reader), address, path);
        assert_eq!(status, 200, "{path}: {body}");
    }

    // Bad input: 422 with what was wrong, and the daemon keeps serving.
    for (method, path, body) in [
        ("PUT", "/v1/contracts/502", r#"{"name": "x", "state": "sleeping"}"#),
        ("PUT", "/v1/contracts/502", "{not json"),
        ("PUT", "/v1/contracts/a%20b", r#"{"name": "x"}"#),
        ("PUT", "/v1/logins/ze", r#"{"contract": "501"}"#),
        ("PUT", "/v1/logins/ze", r#"{"contract": "501", "password": "p", "attributes": ["Nope"]}"#),
    ] {
        let (status, refusal) = send(with_token(&billing), address, method, path, body);
        assert_eq!(status, 422, "{method} {path} {body}: {refusal}");
        assert!(refusal["code"].is_string(), "{refusal}");
    }
    let (status, refusal) = get(with_token(&reader), address, "/v1/contracts?limit=lots");
    assert_eq!(status, 422, "{refusal}");
    let (status, p) = send(with_token(&admin), address, "PUT", "/v1/parameters/release_days", r#"{"value": 0}"#);
    assert_eq!((status, p["code"].as_str()), (422, Some("invalid_value")), "{p}");
    let (status, p) = send(with_token(&admin), address, "PUT", "/v1/parameters/release_days", r#"{"value": 3}"#);
    assert_eq!((status, p["release_days"].as_u64()), (200, Some(3)), "{p}");
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(100_000));
    let (status, refusal) = send(with_token(&billing), address, "PUT", "/v1/contracts/503", &big);
    assert_eq!((status, refusal["code"].as_str()), (413, Some("too_large")), "{refusal}");
    let (status, removed) = send(with_token(&billing), address, "DELETE", "/v1/logins/maria?operator=erp-sync", "");
    assert_eq!((status, removed["username"].as_str()), (200, Some("maria")), "{removed}");

    // The audit names the token and the client's address for each write.
    let (_, audit) = daemon.ctl_json(&["audit", "--limit", "100"]);
    let entries = audit["data"].as_array().unwrap();
    let of = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} entry: {audit}"))
    };
    for (action, token) in [("release", "whatsapp"), ("contract_add", "erp"), ("contract_state", "erp"), ("login_remove", "erp"), ("params_set", "noc")] {
        let entry = of(action);
        assert_eq!(entry["token"], token, "{entry}");
        assert_eq!(entry["client_address"], "127.0.0.1", "{entry}");
    }
    assert_eq!(of("contract_add")["operator"], "erp-sync");
}
