// Operating liberad: reloads under load, stops under load, metrics, and
// logs that show what happened without showing a secret.


use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::nas::{Nas, authenticator};
use common::{Daemon, PROFILES, SECRET, http, sample, write_file};
use liberad::radius::packet::{self, attr, code};
use rustix::process::Signal;

const CSV: &str = "contract_id,state,username,password,reply\n\
                   1,active,maria,senha-da-maria,Mikrotik-Rate-Limit = 10M/10M\n\
                   2,blocked,jose,senha-do-jose,\n";

fn import(daemon: &Daemon) {
    let file = write_file(&daemon.dir, "c.csv", CSV);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
}

/// A PAP request for maria signed with `secret`.
fn pap(nas: &mut Nas, secret: &[u8]) -> Vec<u8> {
    let auth = authenticator();
    let hidden = packet::hide_password(b"senha-da-maria", &auth, secret);
    let id = nas.next_id();
    let attributes: [(u8, &[u8]); 3] = [
        (attr::MESSAGE_AUTHENTICATOR, &[0; 16]),
        (attr::USER_NAME, b"maria"),
        (attr::USER_PASSWORD, &hidden),
    ];
    let mut p = packet::encode(code::ACCESS_REQUEST, id, &auth, &attributes).unwrap();
    packet::sign_request(&mut p, secret);
    p
}

/// Sends a request and returns the reply if one comes within `wait` and
/// authenticates with `secret`.
fn exchange(nas: &Nas, request: &[u8], secret: &[u8], wait: Duration) -> Option<Vec<u8>> {
    nas.send(request);
    nas.socket.set_read_timeout(Some(wait)).unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        let (n, _) = nas.socket.recv_from(&mut buffer).ok()?;
        let reply = buffer[..n].to_vec();
        if reply[1] != request[1] {
            continue; // a late reply to an earlier request
        }
        let request_auth: [u8; 16] = request[4..20].try_into().unwrap();
        assert!(
            packet::reply_valid(&reply, &request_auth, secret),
            "a reply signed with another secret"
        );
        return Some(reply);
    }
}

/// [`exchange`], sent again identically every 300 ms until a reply comes
/// or `within` has passed.
fn retrying(nas: &Nas, request: &[u8], secret: &[u8], within: Duration) -> Option<Vec<u8>> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(reply) = exchange(nas, request, secret, Duration::from_millis(300)) {
            return Some(reply);
        }
    }
    None
}

#[test]
fn sighup_swaps_the_nas_secret_without_losing_a_request() {
    if common::backend_missing() {
        return;
    }
    const REQUESTS: usize = 200;
    let daemon = Daemon::start();
    import(&daemon);
    let (auth, _) = daemon.radius_addresses();
    let answered_with_old = Arc::new(AtomicUsize::new(0));
    let history = Arc::new(Mutex::new(Vec::new()));
    let client = {
        let (answered_with_old, history) = (Arc::clone(&answered_with_old), Arc::clone(&history));
        std::thread::spawn(move || {
            let mut nas = Nas::new(auth);
            let mut switched = false;
            let mut with_new = 0;
            let deadline = std::time::Instant::now() + common::DEADLINE * 2;
            let wait = Duration::from_millis(300);
            // A steady stream until the reload took effect and the new
            // secret served a while.
            while with_new < REQUESTS / 4 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the reload never took effect"
                );
                // The NAS uses the old secret until liberad drops it. A
                // request without an answer is not taken for the reload:
                // it is sent again with the old secret and with the new
                // one, until one of them is answered.
                if !switched {
                    let request = pap(&mut nas, SECRET.as_bytes());
                    if let Some(reply) = exchange(&nas, &request, SECRET.as_bytes(), wait) {
                        answered_with_old.fetch_add(1, Ordering::SeqCst);
                        history.lock().unwrap().push(("old", reply[0]));
                        continue;
                    }
                    let request = pap(&mut nas, b"the-new-secret");
                    if let Some(reply) = exchange(&nas, &request, b"the-new-secret", wait) {
                        switched = true;
                        history.lock().unwrap().push(("new", reply[0]));
                        with_new += 1;
                    }
                    continue;
                }
                let request = pap(&mut nas, b"the-new-secret");
                let reply = retrying(&nas, &request, b"the-new-secret", common::DEADLINE)
                    .expect("a request answered with neither secret");
                history.lock().unwrap().push(("new", reply[0]));
                with_new += 1;
            }
            // The old secret stays refused, however often it is sent.
            let request = pap(&mut nas, SECRET.as_bytes());
            assert!(
                retrying(&nas, &request, SECRET.as_bytes(), Duration::from_secs(1)).is_none(),
                "the old secret answered after the reload"
            );
        })
    };
    common::poll_until("50 answers with the old secret", || {
        let answered = answered_with_old.load(Ordering::SeqCst);
        if answered >= 50 {
            Ok(())
        } else if client.is_finished() {
            panic!("the NAS stopped after {answered} answers");
        } else {
            Err(format!("{answered} answers"))
        }
    });
    let text = std::fs::read_to_string(&daemon.config).unwrap().replace(
        &format!("secret = \"{SECRET}\""),
        "secret = \"the-new-secret\"",
    );
    std::fs::write(&daemon.config, text).unwrap();
    daemon.signal(Signal::HUP);
    client.join().unwrap();

    let history = history.lock().unwrap().clone();
    assert!(history.iter().all(|(_, code)| *code == code::ACCESS_ACCEPT));
    let switch = history
        .iter()
        .position(|(secret, _)| *secret == "new")
        .expect("never switched");
    assert!(switch >= 50);
    assert!(
        history[switch..].iter().all(|(secret, _)| *secret == "new"),
        "the old secret answered after the new one"
    );
    daemon.wait_for_log("configuration reloaded");
}

#[test]
fn an_invalid_configuration_on_sighup_leaves_the_running_one() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    import(&daemon);
    let (auth, _) = daemon.radius_addresses();
    let mut nas = Nas::new(auth);
    let good = std::fs::read_to_string(&daemon.config).unwrap();

    for (broken, why) in [
        (format!("{good}\n[nonsense]\n"), "nonsense"),
        (
            good.replace(
                "login_reply = true",
                "login_reply = true\nreply = [\"Speed = 1\"]",
            ),
            "Speed",
        ),
    ] {
        std::fs::write(&daemon.config, broken).unwrap();
        daemon.signal(Signal::HUP);
        daemon.wait_for_log(why);
        assert_eq!(nas.pap("maria", "senha-da-maria").code, code::ACCESS_ACCEPT);
    }
    assert!(daemon.log_text().contains("reload refused"));

    // A change that needs a restart is named, and the rest applies.
    let moved = good.replace(
        "auth_listen = \"127.0.0.1:0\"",
        "auth_listen = \"127.0.0.1:1\"",
    );
    std::fs::write(&daemon.config, moved).unwrap();
    daemon.signal(Signal::HUP);
    daemon.wait_for_log("radius.auth_listen");
    assert!(daemon.log_text().contains("restart liberad to apply it"));
    assert_eq!(nas.pap("maria", "senha-da-maria").code, code::ACCESS_ACCEPT);
}

#[test]
fn sigterm_during_a_burst_keeps_every_answered_request() {
    if common::backend_missing() {
        return;
    }
    const THREADS: usize = 6;
    let mut daemon = Daemon::start();
    import(&daemon);
    let (_, acct) = daemon.radius_addresses();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            std::thread::spawn(move || {
                let mut nas = Nas::new(acct);
                let mut recorded = Vec::new();
                'requests: for i in 0.. {
                    let id = format!("burst-{t}-{i}");
                    let start = 1u32.to_be_bytes();
                    let attributes: [(u8, &[u8]); 3] = [
                        (attr::ACCT_STATUS_TYPE, &start),
                        (attr::USER_NAME, b"maria"),
                        (attr::ACCT_SESSION_ID, id.as_bytes()),
                    ];
                    let p = nas.request(code::ACCOUNTING_REQUEST, [0; 16], &attributes);
                    // Sent again, identically, until it is answered or the
                    // daemon is gone: a slow answer is no sign of either.
                    loop {
                        if stop.load(Ordering::SeqCst) {
                            break 'requests;
                        }
                        if nas
                            .exchange_retrying(&p, Duration::from_secs(1), Duration::from_secs(1))
                            .is_some()
                        {
                            recorded.push(id);
                            answered.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                }
                recorded
            })
        })
        .collect();
    common::poll_until("300 accounting requests answered", || {
        let n = answered.load(Ordering::SeqCst);
        (n >= 300).then_some(()).ok_or_else(|| format!("{n} answered"))
    });
    daemon.signal(Signal::TERM);
    let status = daemon.wait_exit();
    stop.store(true, Ordering::SeqCst);
    assert!(status.success(), "{status}");
    let recorded: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(recorded.len() >= 300);

    daemon.launch();
    let (_, v) = daemon.ctl_json(&["sessions", "--limit", "10000"]);
    let stored: std::collections::HashSet<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["acct_session_id"].as_str().unwrap())
        .collect();
    let lost: Vec<&String> = recorded
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "answered but not stored: {lost:?}");
}

#[test]
fn the_metrics_endpoint_counts_what_happens() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start_configured(
        "",
        &format!("{PROFILES}\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
    );
    import(&daemon);
    let pong = daemon.request(r#"{"cmd":"ping"}"#);
    let address: SocketAddr = pong["data"]["metrics"].as_str().unwrap().parse().unwrap();
    let (auth, acct) = daemon.radius_addresses();
    let scrape = || http(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");

    let before = scrape();
    assert!(before.starts_with("HTTP/1.1 200 OK"), "{before}");
    let mut nas = Nas::new(auth);
    for _ in 0..3 {
        assert_eq!(nas.pap("maria", "senha-da-maria").code, code::ACCESS_ACCEPT);
    }
    assert_eq!(nas.pap("maria", "wrong").code, code::ACCESS_REJECT);
    nas.send(&[1, 2, 3]);
    Nas::new(acct)
        .accounting(
            1,
            &[(attr::USER_NAME, b"maria"), (attr::ACCT_SESSION_ID, b"m-1")],
        )
        .unwrap();
    daemon.ctl_json(&["release", "2"]);

    let after = common::poll_until("the bad packet in the metrics", || {
        let after = scrape();
        let dropped = sample(
            &after,
            "liberad_radius_drops_total",
            &["reason=\"bad_length\""],
        );
        if dropped == Some(1.0) {
            Ok(after)
        } else {
            Err(after)
        }
    });
    let requests = "liberad_radius_requests_total";
    assert_eq!(
        sample(&after, requests, &["result=\"accept\"", "type=\"access\""]),
        Some(3.0),
        "{after}"
    );
    assert_eq!(sample(&after, requests, &["result=\"reject\""]), Some(1.0));
    assert_eq!(
        sample(&after, requests, &["type=\"accounting\""]),
        Some(1.0)
    );
    assert_eq!(sample(&after, "liberad_sessions_online", &[]), Some(1.0));
    assert_eq!(
        sample(&after, "liberad_releases_started_total", &[]),
        Some(1.0)
    );
    assert_eq!(sample(&after, "liberad_releases_running", &[]), Some(1.0));
    assert!(
        sample(
            &after,
            "liberad_radius_request_duration_seconds_count",
            &["type=\"access\""]
        ) >= Some(4.0)
    );

    // Reloads are counted, and garbage on the port gets an error.
    daemon.signal(Signal::HUP);
    daemon.wait_for_log("configuration reloaded");
    assert_eq!(
        sample(&scrape(), "liberad_reloads_total", &["result=\"applied\""]),
        Some(1.0)
    );
    assert!(http(address, b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 40"));
    assert!(http(address, b"GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(scrape().starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn logs_show_requests_in_json_and_never_a_secret() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::prepare_in(temp.path(), "a", &common::database(temp.path()), "", "");
    let text = std::fs::read_to_string(&daemon.config)
        .unwrap()
        .replace("level = \"debug\"", "level = \"debug\"\nformat = \"json\"");
    std::fs::write(&daemon.config, text).unwrap();
    daemon.launch();
    import(&daemon);
    daemon.ctl_json(&[
        "login",
        "add",
        "ana",
        "--contract",
        "1",
        "--password",
        "senha-da-ana",
    ]);
    let (auth, acct) = daemon.radius_addresses();
    let mut nas = Nas::new(auth);
    assert_eq!(nas.pap("maria", "senha-da-maria").code, code::ACCESS_ACCEPT);
    assert_eq!(nas.pap("jose", "senha-errada").code, code::ACCESS_REJECT);
    assert_eq!(nas.pap("ana", "senha-da-ana").code, code::ACCESS_ACCEPT);
    let mut wrong = Nas::bound("127.0.0.1:0", acct, "a-wrong-secret");
    let forged = wrong.request(
        code::ACCOUNTING_REQUEST,
        [0; 16],
        &[
            (attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()),
            (attr::USER_NAME, b"maria"),
        ],
    );
    wrong.send(&forged);
    daemon.ctl_json(&["release", "2", "--reason", "prometeu pagar"]);
    daemon.signal(Signal::HUP);
    daemon.wait_for_log("configuration reloaded");
    daemon.wait_for_log("request done");

    let log = daemon.log_text();
    for secret in [
        SECRET,
        "a-wrong-secret",
        "senha-da-maria",
        "senha-do-jose",
        "senha-errada",
        "senha-da-ana",
    ] {
        assert!(!log.contains(secret), "{secret} appears in the log");
    }
    // Every line is JSON; a request's events carry its span: NAS, user,
    // result.
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let done = lines
        .iter()
        .find(|l| l["message"] == "request done" && l["span"]["user"] == "maria")
        .expect("maria's request in the log");
    assert_eq!(done["span"]["nas"], "test");
    assert_eq!(done["span"]["result"], "accept");
    let reject = lines
        .iter()
        .find(|l| l["message"] == "Access-Reject")
        .expect("the reject in the log");
    assert_eq!(reject["span"]["user"], "jose");
    assert_eq!(reject["reason"], "wrong password");
}

#[test]
fn sighup_applies_replies_dictionaries_the_reject_message_and_the_log_level() {
    if common::backend_missing() {
        return;
    }
    let daemon = Daemon::start();
    import(&daemon);
    let (auth, _) = daemon.radius_addresses();
    let mut nas = Nas::new(auth);
    let before = nas.pap("maria", "senha-da-maria");
    assert_eq!(before.text(), vec!["Mikrotik-Rate-Limit = 10M/10M"]);
    let rejected = nas.pap("maria", "wrong");
    assert_eq!(rejected.code, code::ACCESS_REJECT);
    assert_eq!(rejected.attribute(attr::REPLY_MESSAGE), None);

    // A dictionary of a vendor of its own, an attribute of it in the
    // active profile, a reject message, and a quieter log.
    let dictionary = write_file(
        &daemon.dir,
        "dictionary.test",
        "VENDOR Test 99999\nBEGIN-VENDOR Test\nATTRIBUTE Test-Plan 1 string\nEND-VENDOR Test\n",
    );
    daemon.edit_config(|text| {
        text.replace(
            "dictionaries = [\"",
            &format!("dictionaries = [\"{}\", \"", dictionary.display()),
        )
        .replacen(
            "[profiles.active]\nlogin_reply = true",
            "[profiles.active]\nlogin_reply = true\nreply = [\"Test-Plan = ouro\"]",
            1,
        )
        .replacen(
            "\n[radius]\n",
            "\n[radius]\nreject_message = \"Acesso negado\"\n",
            1,
        )
        .replacen(
            "level = \"debug\"",
            "level = \"warn,liberad::daemon=info\"",
            1,
        )
    });
    daemon.signal(Signal::HUP);
    daemon.wait_for_log("configuration reloaded");
    let rejects_logged = daemon.log_text().matches("Access-Reject").count();

    let after = nas.pap("maria", "senha-da-maria");
    assert_eq!(after.code, code::ACCESS_ACCEPT);
    let plan = after
        .attributes
        .iter()
        .filter(|(t, _)| *t == attr::VENDOR_SPECIFIC)
        .find(|(_, v)| v.starts_with(&99_999u32.to_be_bytes()))
        .map(|(_, v)| v[6..].to_vec());
    assert_eq!(plan.as_deref(), Some(&b"ouro"[..]), "{:?}", after.attributes);
    assert!(after.text().contains(&"Mikrotik-Rate-Limit = 10M/10M".to_owned()));
    let rejected = nas.pap("maria", "wrong");
    assert_eq!(rejected.code, code::ACCESS_REJECT);
    assert_eq!(rejected.attribute(attr::REPLY_MESSAGE), Some(&b"Acesso negado"[..]));
    // The RADIUS side's info lines are gone at the new level.
    assert_eq!(
        daemon.log_text().matches("Access-Reject").count(),
        rejects_logged,
        "an info line logged at level warn"
    );
}
