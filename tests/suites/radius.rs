// The RADIUS server against the real daemon, spoken to over UDP on
// 127.0.0.1 by a NAS written for the tests: each contract state, CHAP,
// retransmissions, accounting, Status-Server, and bad packets.


use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::nas::{Nas, authenticator};
use common::{Daemon, write_file};
use liberad::radius::packet::{self, attr, code};
use serde_json::Value;

const CSV: &str = "\
contract_id,name,state,username,password,reply
1001,Ativo,active,ativo,pw-ativo,Mikrotik-Rate-Limit = 50M/50M
1002,Bloqueado,blocked,bloqueado,pw-bloq,Mikrotik-Rate-Limit = 50M/50M
1003,Reduzido,reduced,reduzido,pw-red,Mikrotik-Rate-Limit = 50M/50M
1004,Cancelado,cancelled,cancelado,pw-canc,
1005,Liberado,blocked,liberado,pw-lib,Mikrotik-Rate-Limit = 30M/30M
";

fn start(extra: &str) -> (Daemon, Nas, Nas) {
    let daemon = Daemon::start_configured("", extra);
    let file = write_file(&daemon.dir, "contracts.csv", CSV);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    let (auth, acct) = daemon.radius_addresses();
    (daemon, Nas::new(auth), Nas::new(acct))
}

fn nas_counters(daemon: &Daemon, name: &str) -> Value {
    let (_, v) = daemon.ctl_json(&["nas", "list"]);
    v["data"]["nas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no NAS {name} in {v}"))["counters"]
        .clone()
}

fn drops(daemon: &Daemon, reason: &str) -> u64 {
    drops_of(daemon, "test", reason)
}

fn drops_of(daemon: &Daemon, nas: &str, reason: &str) -> u64 {
    nas_counters(daemon, nas)["drops"][reason]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn each_contract_state_gets_its_answer() {
    if common::backend_missing() {
        return;
    }
    let (daemon, mut nas, _) = start("");

    let reply = nas.pap("ativo", "pw-ativo");
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
    assert_eq!(reply.text(), vec!["Mikrotik-Rate-Limit = 50M/50M"]);
    assert_eq!(
        reply.attributes[0].0,
        attr::MESSAGE_AUTHENTICATOR,
        "Message-Authenticator first"
    );

    let reply = nas.pap("bloqueado", "pw-bloq");
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
    assert_eq!(
        reply.text(),
        vec![
            "Framed-Pool = bloqueados",
            "Mikrotik-Address-List = bloqueados"
        ]
    );

    let reply = nas.pap("reduzido", "pw-red");
    assert_eq!(reply.text(), vec!["Mikrotik-Rate-Limit = 2M/2M"]);

    for (user, password) in [
        ("cancelado", "pw-canc"),
        ("ninguem", "x"),
        ("ativo", "wrong"),
        ("ativo", ""),
    ] {
        let reply = nas.pap(user, password);
        assert_eq!(reply.code, code::ACCESS_REJECT, "{user}/{password}");
        assert_eq!(reply.attributes[0].0, attr::MESSAGE_AUTHENTICATOR);
    }

    // Released: the active profile with the login's attributes, and a
    // Session-Timeout that ends the session at the end of the release.
    let (rc, v) = daemon.ctl_json(&["release", "1005"]);
    assert_eq!(rc, 0, "{v}");
    let ends_at = common::release_end(&v);
    let before = Utc::now();
    let reply = nas.pap("liberado", "pw-lib");
    let after = Utc::now();
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
    assert!(
        reply
            .text()
            .contains(&"Mikrotik-Rate-Limit = 30M/30M".to_owned()),
        "{:?}",
        reply.text()
    );
    common::assert_timeout_ends_at(reply.session_timeout(), ends_at, before, after);

    // Revoked: blocked again at the next login.
    daemon.ctl_json(&["revoke", "1005"]);
    let reply = nas.pap("liberado", "pw-lib");
    assert!(
        reply
            .text()
            .contains(&"Framed-Pool = bloqueados".to_owned())
    );

    let counters = nas_counters(&daemon, "test");
    assert_eq!(counters["accepts"], 5);
    assert_eq!(counters["rejects"], 4);
}

#[test]
fn blocked_customers_can_be_rejected_instead() {
    if common::backend_missing() {
        return;
    }
    let (_daemon, mut nas, _) = start("[profiles.blocked]\naction = \"reject\"\n");
    let reply = nas.pap("bloqueado", "pw-bloq");
    assert_eq!(reply.code, code::ACCESS_REJECT);
    let reply = nas.pap("ativo", "pw-ativo");
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
}

#[test]
fn chap_with_and_without_challenge() {
    if common::backend_missing() {
        return;
    }
    let (_daemon, mut nas, _) = start("");
    let chap = |ident: u8, password: &[u8], challenge: &[u8]| {
        use md5::Digest;
        let mut md5 = md5::Md5::new();
        md5.update([ident]);
        md5.update(password);
        md5.update(challenge);
        let mut value = vec![ident];
        value.extend_from_slice(&md5.finalize());
        value
    };
    let challenge = [0x42u8; 16];
    let response = chap(9, b"pw-ativo", &challenge);
    let p = nas.access_request(&[
        (attr::USER_NAME, b"ativo"),
        (attr::CHAP_PASSWORD, &response),
        (attr::CHAP_CHALLENGE, &challenge),
    ]);
    assert_eq!(nas.exchange(&p).unwrap().code, code::ACCESS_ACCEPT);

    // No CHAP-Challenge: the Request Authenticator is the challenge.
    let auth = authenticator();
    let response = chap(10, b"pw-ativo", &auth);
    let p = nas.request(
        code::ACCESS_REQUEST,
        auth,
        &[
            (attr::MESSAGE_AUTHENTICATOR, &[0; 16]),
            (attr::USER_NAME, b"ativo"),
            (attr::CHAP_PASSWORD, &response),
        ],
    );
    assert_eq!(nas.exchange(&p).unwrap().code, code::ACCESS_ACCEPT);

    let wrong = chap(11, b"guess", &challenge);
    let p = nas.access_request(&[
        (attr::USER_NAME, b"ativo"),
        (attr::CHAP_PASSWORD, &wrong),
        (attr::CHAP_CHALLENGE, &challenge),
    ]);
    assert_eq!(nas.exchange(&p).unwrap().code, code::ACCESS_REJECT);

    // MS-CHAP is refused (its own issue), not silently accepted.
    let mut ms = 311u32.to_be_bytes().to_vec();
    ms.extend([11, 18]);
    ms.extend([0u8; 16]);
    let p = nas.access_request(&[(attr::USER_NAME, b"ativo"), (attr::VENDOR_SPECIFIC, &ms)]);
    assert_eq!(nas.exchange(&p).unwrap().code, code::ACCESS_REJECT);
}

#[test]
fn a_retransmission_gets_the_identical_reply_without_a_second_run() {
    if common::backend_missing() {
        return;
    }
    let (daemon, mut nas, mut acct) = start("");
    let auth = authenticator();
    let hidden = packet::hide_password(b"pw-ativo", &auth, &nas.secret);
    let p = nas.request(
        code::ACCESS_REQUEST,
        auth,
        &[
            (attr::MESSAGE_AUTHENTICATOR, &[0; 16]),
            (attr::USER_NAME, b"ativo"),
            (attr::USER_PASSWORD, &hidden),
            (attr::PROXY_STATE, b"first"),
            (attr::PROXY_STATE, b"second"),
        ],
    );
    let first = nas.exchange(&p).unwrap();
    let second = nas.exchange(&p).unwrap();
    assert_eq!(first.bytes, second.bytes);
    let states: Vec<&[u8]> = first
        .attributes
        .iter()
        .filter(|(t, _)| *t == attr::PROXY_STATE)
        .map(|(_, v)| v.as_slice())
        .collect();
    assert_eq!(states, vec![&b"first"[..], &b"second"[..]]);
    let counters = nas_counters(&daemon, "test");
    assert_eq!(counters["accepts"], 1, "{counters}");
    assert_eq!(counters["duplicates"], 1, "{counters}");

    // The same for accounting: the Start is recorded once.
    let start = acct.request(
        code::ACCOUNTING_REQUEST,
        [0; 16],
        &[
            (attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()),
            (attr::USER_NAME, b"ativo"),
            (attr::ACCT_SESSION_ID, b"dup-1"),
        ],
    );
    let a = acct.exchange(&start).unwrap();
    let b = acct.exchange(&start).unwrap();
    assert_eq!(a.bytes, b.bytes);
    let (_, v) = daemon.ctl_json(&["sessions"]);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}

#[test]
fn status_server_on_both_ports() {
    if common::backend_missing() {
        return;
    }
    let (_daemon, mut auth, mut acct) = start("");
    let p = auth.request(
        code::STATUS_SERVER,
        authenticator(),
        &[(attr::MESSAGE_AUTHENTICATOR, &[0; 16])],
    );
    let reply = auth.exchange(&p).unwrap();
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
    assert_eq!(reply.attributes[0].0, attr::MESSAGE_AUTHENTICATOR);
    let p = acct.request(
        code::STATUS_SERVER,
        authenticator(),
        &[(attr::MESSAGE_AUTHENTICATOR, &[0; 16])],
    );
    let reply = acct.exchange(&p).unwrap();
    assert_eq!(reply.code, code::ACCOUNTING_RESPONSE);
    assert_eq!(reply.attributes[0].0, attr::MESSAGE_AUTHENTICATOR);
}

fn sessions(daemon: &Daemon, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["sessions", "--limit", "10000"];
    all.extend_from_slice(args);
    let (rc, v) = daemon.ctl_json(&all);
    assert_eq!(rc, 0, "{v}");
    v["data"].as_array().unwrap().clone()
}

fn session_of<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|s| s["acct_session_id"] == id)
        .unwrap_or_else(|| panic!("no session {id} in {list:?}"))
}

#[test]
fn accounting_keeps_the_sessions_table() {
    if common::backend_missing() {
        return;
    }
    let (daemon, _, mut acct) = start("");
    let ip = [10u8, 0, 0, 7];
    let user = |name: &'static str| (attr::USER_NAME, name.as_bytes());
    assert!(
        acct.accounting(
            1,
            &[
                user("ativo"),
                (attr::ACCT_SESSION_ID, b"s1"),
                (attr::FRAMED_IP_ADDRESS, &ip),
                (attr::NAS_PORT_ID, b"ether1")
            ]
        )
        .is_some()
    );
    let online = sessions(&daemon, &["--online"]);
    let s1 = session_of(&online, "s1");
    assert_eq!(s1["contract_id"], "1001");
    assert_eq!(s1["framed_ip_address"], "10.0.0.7");
    assert_eq!(s1["nas_port_id"], "ether1");

    // Interim with counters beyond 32 bits (gigawords).
    acct.accounting(
        3,
        &[
            user("ativo"),
            (attr::ACCT_SESSION_ID, b"s1"),
            (attr::ACCT_INPUT_OCTETS, &5u32.to_be_bytes()),
            (attr::ACCT_INPUT_GIGAWORDS, &2u32.to_be_bytes()),
            (attr::ACCT_OUTPUT_OCTETS, &700u32.to_be_bytes()),
            (attr::ACCT_SESSION_TIME, &60u32.to_be_bytes()),
        ],
    )
    .unwrap();
    let s1 = session_of(&sessions(&daemon, &[]), "s1").clone();
    assert_eq!(s1["input_octets"], (2u64 << 32) + 5);
    assert_eq!(s1["output_octets"], 700);

    // Stop closes it, with its cause.
    acct.accounting(
        2,
        &[
            user("ativo"),
            (attr::ACCT_SESSION_ID, b"s1"),
            (attr::ACCT_TERMINATE_CAUSE, &1u32.to_be_bytes()),
        ],
    )
    .unwrap();
    assert!(sessions(&daemon, &["--online"]).is_empty());
    let s1 = session_of(&sessions(&daemon, &[]), "s1").clone();
    assert_eq!(s1["terminate_cause"], "User-Request");
    assert!(!s1["stopped_at"].is_null());
    // A late Interim does not reopen it.
    acct.accounting(3, &[user("ativo"), (attr::ACCT_SESSION_ID, b"s1")])
        .unwrap();
    assert!(sessions(&daemon, &["--online"]).is_empty());

    // An Interim without a Start opens a session; a Stop without one
    // records a closed session.
    acct.accounting(
        3,
        &[
            user("bloqueado"),
            (attr::ACCT_SESSION_ID, b"s2"),
            (attr::ACCT_SESSION_TIME, &300u32.to_be_bytes()),
        ],
    )
    .unwrap();
    acct.accounting(2, &[user("reduzido"), (attr::ACCT_SESSION_ID, b"s3")])
        .unwrap();
    let all = sessions(&daemon, &[]);
    assert!(session_of(&all, "s2")["stopped_at"].is_null());
    assert!(!session_of(&all, "s3")["stopped_at"].is_null());
    let s2 = session_of(&all, "s2");
    let started: DateTime<Utc> = serde_json::from_value(s2["started_at"].clone()).unwrap();
    let updated: DateTime<Utc> = serde_json::from_value(s2["updated_at"].clone()).unwrap();
    assert_eq!((updated - started).num_seconds(), 300);
    let (_, v) = daemon.ctl_json(&["sessions", "--contract", "1002"]);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);

    // Accounting-On from this NAS closes all its open sessions.
    acct.accounting(1, &[user("ativo"), (attr::ACCT_SESSION_ID, b"s4")])
        .unwrap();
    assert_eq!(sessions(&daemon, &["--online"]).len(), 2);
    acct.accounting(7, &[]).unwrap();
    assert!(sessions(&daemon, &["--online"]).is_empty());
    let all = sessions(&daemon, &[]);
    assert_eq!(session_of(&all, "s4")["terminate_cause"], "NAS-Reboot");
    assert_eq!(all.len(), 4);
}

#[test]
fn an_accounting_burst_is_answered_in_full_and_recorded_exactly() {
    if common::backend_missing() {
        return;
    }
    const SESSIONS: usize = 300;
    const INTERIMS: usize = 15;
    const THREADS: usize = 12;
    let (daemon, _, acct) = start("");
    let server = acct.server;
    // Each thread plays a NAS port range: Start, Interims with growing
    // counters, and Stop for every other session. Retransmission on
    // timeout, as a NAS does; every request must be answered.
    let retransmissions = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let retransmissions = Arc::clone(&retransmissions);
            std::thread::spawn(move || {
                let mut nas = Nas::new(server);
                let mut answered = 0usize;
                for s in (t..SESSIONS).step_by(THREADS) {
                    let id = format!("burst-{s}");
                    let mut send = |status: u32, octets: u32| {
                        let status_bytes = status.to_be_bytes();
                        let octet_bytes = octets.to_be_bytes();
                        let attributes: [(u8, &[u8]); 5] = [
                            (attr::ACCT_STATUS_TYPE, &status_bytes),
                            (attr::USER_NAME, b"ativo"),
                            (attr::ACCT_SESSION_ID, id.as_bytes()),
                            (attr::ACCT_INPUT_OCTETS, &octet_bytes),
                            (attr::ACCT_OUTPUT_OCTETS, &octet_bytes),
                        ];
                        let p = nas.request(code::ACCOUNTING_REQUEST, [0; 16], &attributes);
                        for attempt in 0..20 {
                            nas.send(&p);
                            if nas.receive(&p, Duration::from_secs(2)).is_some() {
                                answered += 1;
                                return;
                            }
                            retransmissions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            assert!(attempt < 19, "request never answered");
                        }
                    };
                    send(1, 0);
                    for i in 1..=INTERIMS {
                        send(3, u32::try_from(i * 1000).unwrap());
                    }
                    if s % 2 == 0 {
                        send(2, u32::try_from((INTERIMS + 1) * 1000).unwrap());
                    }
                }
                answered
            })
        })
        .collect();
    let answered: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let expected = SESSIONS * (1 + INTERIMS) + SESSIONS / 2;
    assert_eq!(answered, expected);

    let all = sessions(&daemon, &[]);
    assert_eq!(all.len(), SESSIONS);
    let online = sessions(&daemon, &["--online"]);
    assert_eq!(online.len(), SESSIONS / 2);
    for s in 0..SESSIONS {
        let session = session_of(&all, &format!("burst-{s}"));
        let last = if s % 2 == 0 {
            (INTERIMS + 1) * 1000
        } else {
            INTERIMS * 1000
        };
        assert_eq!(session["input_octets"], last, "{session}");
        assert_eq!(session["stopped_at"].is_null(), s % 2 == 1, "{session}");
    }
    eprintln!(
        "{expected} accounting requests answered, {} retransmissions",
        retransmissions.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// Sends a bad datagram, then a good Access-Request; the first datagram
/// back must be the good one's reply, and the drop must be counted.
fn assert_dropped(daemon: &Daemon, nas: &mut Nas, bad: &[u8], reason: &str) {
    let before = drops(daemon, reason);
    nas.send(bad);
    let reply = nas.pap("ativo", "pw-ativo");
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
    common::poll_until(&format!("{reason} counted for {bad:?}"), || {
        let now = drops(daemon, reason);
        (now == before + 1)
            .then_some(())
            .ok_or_else(|| format!("{now} drops, {before} before"))
    });
}

#[test]
fn bad_packets_are_dropped_and_the_server_goes_on() {
    if common::backend_missing() {
        return;
    }
    let (daemon, mut nas, mut acct) = start("");
    let good = {
        let mut n = Nas::new(nas.server);
        // Identifiers far from the ones `nas` uses for its good requests.
        for _ in 0..128 {
            n.next_id();
        }
        n.access_request(&[(attr::USER_NAME, b"ativo"), (attr::NAS_PORT_ID, b"x")])
    };
    let with_length = |mut p: Vec<u8>, length: usize| {
        p[2..4].copy_from_slice(&u16::try_from(length).unwrap().to_be_bytes());
        p
    };

    assert_dropped(&daemon, &mut nas, &good[..19], "bad_length");
    assert_dropped(
        &daemon,
        &mut nas,
        &with_length(good.clone(), good.len() + 1),
        "bad_length",
    );
    assert_dropped(
        &daemon,
        &mut nas,
        &with_length(good.clone(), 19),
        "bad_length",
    );
    for attribute_length in [0u8, 1, 250] {
        let mut p = good.clone();
        // The last attribute is NAS-Port-Id "x": 3 bytes.
        let at = p.len() - 3;
        p[at + 1] = attribute_length;
        assert_dropped(&daemon, &mut nas, &p, "bad_attributes");
    }
    // Length smaller than the datagram: the tail is padding, but then the
    // attributes no longer fill the packet.
    assert_dropped(
        &daemon,
        &mut nas,
        &with_length(good.clone(), good.len() - 1),
        "bad_attributes",
    );
    let many: Vec<(u8, &[u8])> = (0..201).map(|_| (attr::NAS_PORT_ID, &b""[..])).collect();
    let p = nas.access_request(&many);
    assert_dropped(&daemon, &mut nas, &p, "too_many_attributes");
    let p = nas.request(
        code::ACCESS_REQUEST,
        authenticator(),
        &[(attr::MESSAGE_AUTHENTICATOR, &[0; 15])],
    );
    assert_dropped(&daemon, &mut nas, &p, "bad_message_authenticator_length");
    let mut p = good.clone();
    p[25] ^= 0x40;
    assert_dropped(&daemon, &mut nas, &p, "bad_message_authenticator");
    let p = nas.request(
        code::ACCESS_REQUEST,
        authenticator(),
        &[(attr::USER_NAME, b"ativo")],
    );
    assert_dropped(&daemon, &mut nas, &p, "missing_message_authenticator");
    let mut wrong_secret = Nas::bound("127.0.0.1:0", nas.server, "not-the-secret");
    let p = wrong_secret.access_request(&[(attr::USER_NAME, b"ativo")]);
    assert_dropped(&daemon, &mut nas, &p, "bad_message_authenticator");
    let mut p = good.clone();
    p[0] = code::COA_REQUEST;
    assert_dropped(&daemon, &mut nas, &p, "unknown_code");
    let mut big = with_length(good.clone(), 4096);
    big.resize(4096, 0);
    assert_dropped(&daemon, &mut nas, &big, "bad_attributes");
    let mut noise = vec![0u8; 1000];
    let mut x = 0x2545_f491_u32;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    noise[0] = code::ACCESS_REQUEST;
    noise[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_dropped(&daemon, &mut nas, &noise, "bad_length");

    // Accounting with a wrong Request Authenticator.
    let mut p = acct.request(
        code::ACCOUNTING_REQUEST,
        [0; 16],
        &[
            (attr::ACCT_STATUS_TYPE, &1u32.to_be_bytes()),
            (attr::USER_NAME, b"x"),
            (attr::ACCT_SESSION_ID, b"forged"),
        ],
    );
    p[6] ^= 1;
    let before = drops(&daemon, "bad_request_authenticator");
    acct.send(&p);
    acct.accounting(7, &[]).unwrap();
    common::poll_until("bad_request_authenticator counted", || {
        (drops(&daemon, "bad_request_authenticator") > before)
            .then_some(())
            .ok_or_else(|| format!("{before} drops"))
    });
    assert!(
        sessions(&daemon, &[]).is_empty(),
        "no bad packet may change a session"
    );

    // From an address that is no NAS.
    let mut stranger = Nas::bound("127.0.0.3:0", nas.server, common::SECRET);
    let p = stranger.access_request(&[(attr::USER_NAME, b"ativo")]);
    stranger.send(&p);
    assert_eq!(nas.pap("ativo", "pw-ativo").code, code::ACCESS_ACCEPT);
    common::poll_until("the stranger's packet counted as an unknown client", || {
        let (_, v) = daemon.ctl_json(&["nas", "list"]);
        (v["data"]["unknown_clients"]["drops"]["unknown_client"] == 1)
            .then_some(())
            .ok_or_else(|| v.to_string())
    });
    assert!(stranger.receive(&p, Duration::from_millis(200)).is_none());
    assert!(daemon.log_text().contains("matches no [[nas]] entry"));
}

#[test]
fn message_authenticator_can_be_optional_for_an_old_nas() {
    if common::backend_missing() {
        return;
    }
    let (daemon, _, _) = start(&format!(
        "[[nas]]\nname = \"old-bras\"\naddress = \"127.0.0.2\"\nsecret = \"old\"\nrequire_message_authenticator = false\n{}",
        common::PROFILES
    ));
    let (auth, _) = daemon.radius_addresses();
    let mut old = Nas::bound("127.0.0.2:0", auth, "old");
    let p = old.pap_request_as("ativo", "pw-ativo", false, false);
    let reply = old.exchange(&p).unwrap();
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
    // The reply still carries Message-Authenticator, first.
    assert_eq!(reply.attributes[0].0, attr::MESSAGE_AUTHENTICATOR);
    assert_eq!(nas_counters(&daemon, "old-bras")["accepts"], 1);
}

#[test]
fn ms_chap_v2_logins_follow_the_contract_and_carry_the_mppe_keys() {
    if common::backend_missing() {
        return;
    }
    use liberad::radius::mschap::{self, vendor_attr};
    let (daemon, mut nas, _) = start("");
    let secret = common::SECRET.as_bytes();

    // An active contract: its own attributes, liberad's proof that it
    // knows the password, and the keys the NAS decrypts.
    let login = nas.ms_chap_v2("ativo", "pw-ativo");
    assert_eq!(login.reply.code, code::ACCESS_ACCEPT);
    assert!(
        login
            .reply
            .text()
            .contains(&"Mikrotik-Rate-Limit = 50M/50M".to_owned())
    );
    assert_eq!(
        login.microsoft(vendor_attr::MS_CHAP2_SUCCESS),
        Some(login.success.as_bytes())
    );
    assert_eq!(
        login.key(vendor_attr::MS_MPPE_SEND_KEY, secret).as_deref(),
        Some(&login.send_key[..])
    );
    assert_eq!(
        login.key(vendor_attr::MS_MPPE_RECV_KEY, secret).as_deref(),
        Some(&login.recv_key[..])
    );
    assert_eq!(
        login.microsoft(vendor_attr::MS_MPPE_ENCRYPTION_POLICY),
        Some(&1u32.to_be_bytes()[..])
    );
    assert_eq!(
        login.microsoft(vendor_attr::MS_MPPE_ENCRYPTION_TYPES),
        Some(&6u32.to_be_bytes()[..])
    );

    // A wrong password: MS-CHAP-Error, and no keys.
    let wrong = nas.ms_chap_v2("ativo", "pw-Ativo");
    assert_eq!(wrong.reply.code, code::ACCESS_REJECT);
    let error = wrong.microsoft(vendor_attr::MS_CHAP_ERROR).unwrap();
    assert_eq!(error[0], 0x42, "the PPP identifier");
    assert!(error[1..].starts_with(b"E=691 R=0 C="), "{error:?}");
    assert!(wrong.microsoft(vendor_attr::MS_MPPE_SEND_KEY).is_none());

    // A blocked contract gets the blocked profile, a cancelled one is
    // refused as a disabled account, a released one gets its release.
    let blocked = nas.ms_chap_v2("bloqueado", "pw-bloq");
    assert_eq!(blocked.reply.code, code::ACCESS_ACCEPT);
    assert!(
        blocked
            .reply
            .text()
            .contains(&"Framed-Pool = bloqueados".to_owned())
    );
    let cancelled = nas.ms_chap_v2("cancelado", "pw-canc");
    assert_eq!(cancelled.reply.code, code::ACCESS_REJECT);
    assert!(
        cancelled
            .microsoft(vendor_attr::MS_CHAP_ERROR)
            .unwrap()
            .starts_with(b"\x42E=647")
    );
    let (rc, v) = daemon.ctl_json(&["release", "1005"]);
    assert_eq!(rc, 0, "{v}");
    let before = Utc::now();
    let released = nas.ms_chap_v2("liberado", "pw-lib");
    let after = Utc::now();
    assert_eq!(released.reply.code, code::ACCESS_ACCEPT);
    common::assert_timeout_ends_at(
        released.reply.session_timeout(),
        common::release_end(&v),
        before,
        after,
    );
    assert!(
        released
            .reply
            .text()
            .contains(&"Mikrotik-Rate-Limit = 30M/30M".to_owned())
    );

    // A login kept as an NT hash: MS-CHAPv2 and PAP work.
    let hash: String = mschap::nt_password_hash("segredo")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (rc, v) = daemon.ctl_json(&[
        "login", "add", "hash", "--contract", "1001", "--nt-hash", &hash,
    ]);
    assert_eq!(rc, 0, "{v}");
    let login = nas.ms_chap_v2("hash", "segredo");
    assert_eq!(login.reply.code, code::ACCESS_ACCEPT);
    assert_eq!(
        login.key(vendor_attr::MS_MPPE_SEND_KEY, secret).as_deref(),
        Some(&login.send_key[..])
    );
    assert_eq!(nas.pap("hash", "segredo").code, code::ACCESS_ACCEPT);
    assert_eq!(nas.pap("hash", "Segredo").code, code::ACCESS_REJECT);
    // Bad hashes are refused with the reason.
    let (rc, v) = daemon.ctl_json(&[
        "login", "add", "hash2", "--contract", "1001", "--nt-hash", "abc",
    ]);
    assert_eq!((rc, v["code"].as_str()), (2, Some("invalid_value")), "{v}");
}

#[test]
fn subscribers_given_the_same_acct_session_id_are_separate_sessions() {
    if common::backend_missing() {
        return;
    }
    // pppd makes Acct-Session-Id from the second alone: after a BRAS
    // reboot, every subscriber connecting in one second shares it.
    let (daemon, _, mut acct) = start("");
    let sid: &[u8] = b"5F2A9C01";
    let login = |name: &'static str, port: u32| {
        [
            (attr::USER_NAME, name.as_bytes().to_vec()),
            (attr::ACCT_SESSION_ID, sid.to_vec()),
            (attr::NAS_PORT, port.to_be_bytes().to_vec()),
        ]
    };
    let send = |acct: &mut Nas, status: u32, fields: &[(u8, Vec<u8>)]| {
        let attributes: Vec<(u8, &[u8])> = fields.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        acct.accounting(status, &attributes).expect("accounting answered");
    };
    let ana = login("ativo", 0);
    let bia = login("liberado", 1);
    send(&mut acct, 1, &ana);
    send(&mut acct, 1, &bia);
    // The same user on two ports (two PPPoE links) is two sessions too.
    let ana_again = login("ativo", 2);
    send(&mut acct, 1, &ana_again);
    let online = sessions(&daemon, &["--online"]);
    assert_eq!(online.len(), 3, "{online:?}");
    let ports = |list: &[Value]| {
        let mut ports: Vec<(String, u64)> = list
            .iter()
            .map(|s| {
                (
                    s["username"].as_str().unwrap().to_owned(),
                    s["nas_port"].as_u64().unwrap(),
                )
            })
            .collect();
        ports.sort();
        ports
    };
    assert_eq!(
        ports(&online),
        [("ativo".into(), 0), ("ativo".into(), 2), ("liberado".into(), 1)]
    );
    // Each Stop closes its own session.
    send(&mut acct, 2, &bia);
    assert_eq!(
        ports(&sessions(&daemon, &["--online"])),
        [("ativo".into(), 0), ("ativo".into(), 2)]
    );
    send(&mut acct, 2, &ana);
    assert_eq!(
        ports(&sessions(&daemon, &["--online"])),
        [("ativo".into(), 2)]
    );
    send(&mut acct, 2, &ana_again);
    assert!(sessions(&daemon, &["--online"]).is_empty());
    assert_eq!(sessions(&daemon, &[]).len(), 3);
}

/// Sends `request` and waits until the daemon counts it dropped for
/// `reason`; it must go unanswered.
fn assert_auto_dropped(daemon: &Daemon, nas: &mut Nas, request: &[u8], reason: &str) {
    let before = drops_of(daemon, "auto-bras", reason);
    nas.send(request);
    common::poll_until(&format!("a drop for {reason}"), || {
        let now = drops_of(daemon, "auto-bras", reason);
        (now > before).then_some(()).ok_or_else(|| format!("{now} drops"))
    });
    assert!(nas.receive(request, Duration::from_millis(100)).is_none());
}

#[test]
fn message_authenticator_is_required_once_a_nas_is_seen_sending_it_and_after_a_restart() {
    if common::backend_missing() {
        return;
    }
    // No require_message_authenticator: "auto", with limit_proxy_state.
    let (mut daemon, _, _) = start(&format!(
        "[[nas]]\nname = \"auto-bras\"\naddress = \"127.0.0.4/30\"\nsecret = \"auto\"\n{}",
        common::PROFILES
    ));
    let (auth, _) = daemon.radius_addresses();
    let mut bras = Nas::bound("127.0.0.4:0", auth, "auto");
    let mut neighbour = Nas::bound("127.0.0.5:0", auth, "auto");
    // A NAS that never signed (pppd) is served.
    let unsigned = bras.pap_request_as("ativo", "pw-ativo", false, false);
    assert_eq!(bras.exchange(&unsigned).unwrap().code, code::ACCESS_ACCEPT);
    let (_, v) = daemon.ctl_json(&["nas", "list"]);
    let entry = v["data"]["nas"].as_array().unwrap().iter().find(|n| n["name"] == "auto-bras").unwrap().clone();
    assert_eq!(entry["require_message_authenticator"], "auto");
    assert_eq!(entry["signing_sources"], serde_json::json!([]));
    // Proxy-State without Message-Authenticator: dropped (BlastRADIUS).
    let proxied = bras.pap_request_as("ativo", "pw-ativo", false, true);
    assert_auto_dropped(&daemon, &mut bras, &proxied, "proxy_state_without_message_authenticator");
    daemon.wait_for_log("limit_proxy_state = false");
    // Signed, Proxy-State is taken and echoed.
    let signed_proxied = bras.pap_request_as("ativo", "pw-ativo", true, true);
    let reply = bras.exchange(&signed_proxied).unwrap();
    assert_eq!(reply.code, code::ACCESS_ACCEPT);
    assert_eq!(reply.attribute(attr::PROXY_STATE), Some(&b"proxy-1"[..]));
    daemon.wait_for_log("this NAS signs its Access-Requests");
    // From now on this address must sign; the other address of the entry
    // has not signed yet and need not.
    let unsigned = bras.pap_request_as("ativo", "pw-ativo", false, false);
    assert_auto_dropped(&daemon, &mut bras, &unsigned, "missing_message_authenticator");
    daemon.wait_for_log("if it no longer does, set require_message_authenticator = false");
    let from_neighbour = neighbour.pap_request_as("ativo", "pw-ativo", false, false);
    assert_eq!(
        neighbour.exchange(&from_neighbour).unwrap().code,
        code::ACCESS_ACCEPT
    );
    let (_, v) = daemon.ctl_json(&["nas", "list"]);
    let entry = v["data"]["nas"].as_array().unwrap().iter().find(|n| n["name"] == "auto-bras").unwrap().clone();
    assert_eq!(entry["signing_sources"], serde_json::json!(["127.0.0.4"]));
    let table = common::stdout(&daemon.ctl(&["nas", "list"]));
    assert!(table.contains("auto: required from 127.0.0.4"), "{table}");

    // Remembered across a restart.
    assert!(daemon.stop().success());
    daemon.launch();
    let (auth, _) = daemon.radius_addresses();
    let mut bras = Nas::bound("127.0.0.4:0", auth, "auto");
    let unsigned = bras.pap_request_as("ativo", "pw-ativo", false, false);
    assert_auto_dropped(&daemon, &mut bras, &unsigned, "missing_message_authenticator");
    let signed = bras.pap_request_as("ativo", "pw-ativo", true, false);
    assert_eq!(bras.exchange(&signed).unwrap().code, code::ACCESS_ACCEPT);
}

#[test]
fn a_nas_that_must_sign_is_told_which_setting_lets_it_in() {
    if common::backend_missing() {
        return;
    }
    let (daemon, _, _) = start(&format!(
        "[[nas]]\nname = \"auto-bras\"\naddress = \"127.0.0.4/30\"\nsecret = \"auto\"\n\
         require_message_authenticator = true\n{}",
        common::PROFILES
    ));
    let (auth, _) = daemon.radius_addresses();
    let mut bras = Nas::bound("127.0.0.4:0", auth, "auto");
    let unsigned = bras.pap_request_as("ativo", "pw-ativo", false, false);
    assert_auto_dropped(&daemon, &mut bras, &unsigned, "missing_message_authenticator");
    daemon.wait_for_log("set require_message_authenticator = \"auto\" (or false)");
    // Once per interval per NAS, however many are dropped.
    for _ in 0..3 {
        let unsigned = bras.pap_request_as("ativo", "pw-ativo", false, false);
        assert_auto_dropped(&daemon, &mut bras, &unsigned, "missing_message_authenticator");
    }
    let lines = daemon
        .log_text()
        .lines()
        .filter(|l| l.contains("Access-Request dropped"))
        .count();
    assert_eq!(lines, 1, "{}", daemon.log_text());
}
