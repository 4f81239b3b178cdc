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
