// Interoperability with FreeRADIUS's `radclient` (Debian's
// freeradius-utils) playing the NAS: PAP and CHAP with
// Message-Authenticator, accounting, Status-Server. radclient checks our
// authenticators itself; the test reads the attributes it prints.


use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::{Daemon, SECRET, write_file};

/// radclient's path, or `None` (with a note) when it is not installed.
/// Under CI a missing radclient is a failure.
fn radclient() -> Option<&'static str> {
    let found = Command::new("radclient")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return Some("radclient");
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "radclient is missing: install Debian's freeradius-utils"
    );
    eprintln!("skipped: radclient (freeradius-utils) is not installed");
    None
}

/// What radclient printed about the reply.
struct Answer {
    code: String,
    attributes: Vec<String>,
}

/// Runs radclient once with `input` as the request's attributes.
fn run(program: &str, server: SocketAddr, command: &str, input: &str) -> Answer {
    let mut child = Command::new(program)
        .args(["-x", "-r", "3", "-t", "5"])
        .arg(server.to_string())
        .arg(command)
        .arg(SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start radclient");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let received = text.split("Received ").nth(1).unwrap_or_else(|| {
        panic!(
            "radclient got no reply:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut lines = received.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let attributes = lines
        .take_while(|l| l.starts_with('\t'))
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.starts_with("Message-Authenticator"))
        .collect();
    Answer { code, attributes }
}

fn start() -> (Daemon, SocketAddr, SocketAddr) {
    let daemon = Daemon::start();
    let csv = "contract_id,state,username,password,reply\n\
               1,active,ativo,pw-1,Mikrotik-Rate-Limit = 50M/50M\n\
               2,blocked,bloqueado,pw-2,\n\
               3,cancelled,cancelado,pw-3,\n";
    let file = write_file(&daemon.dir, "c.csv", csv);
    assert_eq!(daemon.ctl_json(&["import", file.to_str().unwrap()]).0, 0);
    let (auth, acct) = daemon.radius_addresses();
    (daemon, auth, acct)
}

const MA: &str = "Message-Authenticator = 0x00\n";

#[test]
fn radclient_pap_and_chap_get_the_answer_of_each_state() {
    if common::backend_missing() {
        return;
    }
    let Some(radclient) = radclient() else { return };
    let (daemon, auth, _) = start();
    let pap = |user: &str, password: &str| {
        run(
            radclient,
            auth,
            "auth",
            &format!("User-Name = \"{user}\"\nUser-Password = \"{password}\"\n{MA}"),
        )
    };
    let a = pap("ativo", "pw-1");
    assert_eq!(a.code, "Access-Accept");
    assert_eq!(a.attributes, vec!["Mikrotik-Rate-Limit = \"50M/50M\""]);
    let a = pap("bloqueado", "pw-2");
    assert_eq!(a.code, "Access-Accept");
    assert_eq!(
        a.attributes,
        vec![
            "Framed-Pool = \"bloqueados\"",
            "Mikrotik-Address-List = \"bloqueados\""
        ]
    );
    assert_eq!(pap("cancelado", "pw-3").code, "Access-Reject");
    assert_eq!(pap("ativo", "nope").code, "Access-Reject");
    assert_eq!(pap("ninguem", "pw").code, "Access-Reject");

    // A password of 17 bytes spans two PAP blocks.
    daemon.ctl_json(&[
        "login",
        "add",
        "longo",
        "--contract",
        "1",
        "--password",
        "0123456789abcdefg",
    ]);
    assert_eq!(pap("longo", "0123456789abcdefg").code, "Access-Accept");

    let chap = run(
        radclient,
        auth,
        "auth",
        &format!("User-Name = \"ativo\"\nCHAP-Password = \"pw-1\"\n{MA}"),
    );
    assert_eq!(chap.code, "Access-Accept");
    let chap = run(
        radclient,
        auth,
        "auth",
        &format!("User-Name = \"ativo\"\nCHAP-Password = \"pw-x\"\n{MA}"),
    );
    assert_eq!(chap.code, "Access-Reject");

    // A released contract: the Session-Timeout runs to the release's end.
    let (rc, v) = daemon.ctl_json(&["release", "2"]);
    assert_eq!(rc, 0, "{v}");
    let before = chrono::Utc::now();
    let a = pap("bloqueado", "pw-2");
    let after = chrono::Utc::now();
    assert_eq!(a.code, "Access-Accept");
    let timeout = a
        .attributes
        .iter()
        .find_map(|l| l.strip_prefix("Session-Timeout = "))
        .and_then(|t| t.trim().parse().ok());
    common::assert_timeout_ends_at(timeout, common::release_end(&v), before, after);
}

#[test]
fn radclient_accounting_and_status_server() {
    if common::backend_missing() {
        return;
    }
    let Some(radclient) = radclient() else { return };
    let (daemon, auth, acct) = start();
    let start = run(
        radclient,
        acct,
        "acct",
        "User-Name = \"ativo\"\nAcct-Status-Type = Start\nAcct-Session-Id = \"rc-1\"\n\
         Framed-IP-Address = 100.64.0.9\nNAS-IP-Address = 192.0.2.1\n",
    );
    assert_eq!(start.code, "Accounting-Response");
    let (_, v) = daemon.ctl_json(&["sessions", "--online"]);
    let session = &v["data"][0];
    assert_eq!(session["acct_session_id"], "rc-1");
    assert_eq!(session["framed_ip_address"], "100.64.0.9");
    assert_eq!(session["nas_ip_address"], "192.0.2.1");
    assert_eq!(session["contract_id"], "1");

    let stop = run(
        radclient,
        acct,
        "acct",
        "User-Name = \"ativo\"\nAcct-Status-Type = Stop\nAcct-Session-Id = \"rc-1\"\n\
         NAS-IP-Address = 192.0.2.1\nAcct-Input-Octets = 1234\nAcct-Terminate-Cause = Lost-Carrier\n",
    );
    assert_eq!(stop.code, "Accounting-Response");
    let (_, v) = daemon.ctl_json(&["sessions"]);
    assert_eq!(v["data"][0]["terminate_cause"], "Lost-Carrier");
    assert_eq!(v["data"][0]["input_octets"], 1234);

    for (server, expected) in [(auth, "Access-Accept"), (acct, "Accounting-Response")] {
        let status = run(radclient, server, "status", MA);
        assert_eq!(status.code, expected);
    }
}

#[test]
fn radclient_ms_chap_gets_its_keys_or_its_error() {
    if common::backend_missing() {
        return;
    }
    let Some(radclient) = radclient() else { return };
    let (_daemon, auth, _) = start();
    // radclient turns MS-CHAP-Password into MS-CHAP (v1) Challenge and
    // Response, and decrypts MS-CHAP-MPPE-Keys itself.
    let login = |user: &str, password: &str| {
        run(
            radclient,
            auth,
            "auth",
            &format!("User-Name = \"{user}\"\nMS-CHAP-Password = \"{password}\"\n{MA}"),
        )
    };
    let a = login("ativo", "pw-1");
    assert_eq!(a.code, "Access-Accept");
    let nt_key = liberad::radius::mschap::hash_nt_password_hash(
        &liberad::radius::mschap::nt_password_hash("pw-1"),
    );
    let hex: String = nt_key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        a.attributes
            .contains(&format!("MS-CHAP-MPPE-Keys = 0x0000000000000000{hex}")),
        "{:?}",
        a.attributes
    );
    assert!(
        a.attributes
            .contains(&"MS-MPPE-Encryption-Policy = Encryption-Allowed".to_owned()),
        "{:?}",
        a.attributes
    );
    assert!(a.attributes.contains(&"Mikrotik-Rate-Limit = \"50M/50M\"".to_owned()));

    let r = login("ativo", "pw-x");
    assert_eq!(r.code, "Access-Reject");
    assert!(
        r.attributes
            .iter()
            .any(|l| l.starts_with("MS-CHAP-Error = ") && l.contains("E=691 R=0")),
        "{:?}",
        r.attributes
    );
    let r = login("cancelado", "pw-3");
    assert_eq!(r.code, "Access-Reject");
    assert!(
        r.attributes.iter().any(|l| l.contains("E=647")),
        "{:?}",
        r.attributes
    );
}
