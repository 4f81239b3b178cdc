// Interoperability with a NAS no one here wrote: pyrad (Debian's
// python3-pyrad) as the CoA / Disconnect server. liberad releases, revokes
// and cancels; pyrad checks the Request Authenticator, prints what it got
// and ACKs. And pyrad with pycryptodome (python3-pycryptodome) as a BRAS
// sending MS-CHAPv2: MD4, DES and the key derivations computed apart from
// liberad's.


use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::nas::Nas;
use common::{Daemon, SECRET, write_file};
use liberad::radius::packet::attr;
use serde_json::Value;

/// Debian's Python, where python3-pyrad installs.
const PYTHON: &str = "/usr/bin/python3";

const DICTIONARY: &str = "\
ATTRIBUTE User-Name 1 string
ATTRIBUTE NAS-IP-Address 4 ipaddr
ATTRIBUTE Framed-IP-Address 8 ipaddr
ATTRIBUTE Acct-Session-Id 44 string
ATTRIBUTE Event-Timestamp 55 date
ATTRIBUTE Message-Authenticator 80 octets
ATTRIBUTE Error-Cause 101 integer
VENDOR Mikrotik 14988
BEGIN-VENDOR Mikrotik
ATTRIBUTE Mikrotik-Rate-Limit 8 string
ATTRIBUTE Mikrotik-Address-List 19 string
END-VENDOR Mikrotik
";

/// The pyrad NAS, its port, and the lines it prints.
struct PyradNas {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<Value>,
}

impl Drop for PyradNas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether Debian's Python has `module`; when not, says so (under CI that
/// is a failure).
fn python_has(module: &str, package: &str) -> bool {
    let found = Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{module} is missing: install Debian's {package}"
        );
        eprintln!("skipped: {PYTHON} with {module} ({package}) is not installed");
    }
    found
}

impl PyradNas {
    /// Starts it, or says why it cannot (under CI that is a failure).
    fn start(dir: &Path) -> Option<PyradNas> {
        if !python_has("pyrad", "python3-pyrad") {
            return None;
        }
        let dictionary = write_file(dir, "pyrad.dictionary", DICTIONARY);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pyrad_nas.py");
        let mut child = common::dies_with_test(PYTHON)
            .arg(script)
            .arg(dictionary)
            .arg(SECRET)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the pyrad NAS");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel::<Value>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line)
                    && tx.send(value).is_err()
                {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(common::DEADLINE)
            .expect("pyrad reports its port");
        let port = u16::try_from(first["port"].as_u64().unwrap()).unwrap();
        Some(PyradNas { child, port, lines })
    }

    fn next(&self) -> Value {
        self.lines
            .recv_timeout(common::DEADLINE)
            .expect("pyrad received no request")
    }
}

/// Sends an Accounting-Request with radclient; false when radclient is not
/// installed (a failure under CI).
fn radclient_accounting(server: std::net::SocketAddr, attributes: &str) -> bool {
    use std::io::Write;
    let Ok(mut child) = Command::new("radclient")
        .args(["-r", "3", "-t", "5"])
        .arg(server.to_string())
        .args(["acct", SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
    else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "radclient is missing: install Debian's freeradius-utils"
        );
        return false;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(attributes.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "radclient accounting failed"
    );
    true
}

#[test]
fn pyrad_receives_and_acks_what_liberad_sends() {
    if common::backend_missing() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let Some(pyrad) = PyradNas::start(temp.path()) else {
        return;
    };
    let extra = format!(
        "coa_port = {}\ncoa_mode = \"coa\"\n\
         [profiles.active]\ncoa = [\"Mikrotik-Rate-Limit = 50M/50M\"]\n\
         [profiles.blocked]\naction = \"accept\"\nreply = [\"Mikrotik-Address-List = bloqueados\"]\n\
         coa = [\"Mikrotik-Address-List = bloqueados\"]\n",
        pyrad.port
    );
    let daemon = Daemon::start_in(temp.path(), "a", &common::database(temp.path()), "", &extra);
    let file = write_file(
        &daemon.dir,
        "c.csv",
        "contract_id,state,username,password\n1,blocked,maria,pw\n",
    );
    assert_eq!(daemon.ctl_json(&["import", file.to_str().unwrap()]).0, 0);
    // The NAS's accounting comes from radclient when it is installed.
    let (_, acct) = daemon.radius_addresses();
    let start = "User-Name = \"maria\"\nAcct-Status-Type = Start\nAcct-Session-Id = \"py-1\"\n\
                 Framed-IP-Address = 100.64.0.8\n";
    if !radclient_accounting(acct, start) {
        Nas::new(acct)
            .accounting(
                1,
                &[
                    (attr::USER_NAME, b"maria"),
                    (attr::ACCT_SESSION_ID, b"py-1"),
                    (attr::FRAMED_IP_ADDRESS, &[100, 64, 0, 8]),
                ],
            )
            .unwrap();
    }

    let started = std::time::Instant::now();
    let (rc, v) = daemon.ctl_json(&["release", "1", "--wait"]);
    eprintln!(
        "release to confirmed CoA-ACK from pyrad: {:?}",
        started.elapsed()
    );
    assert_eq!(rc, 0, "{v}");
    let got = pyrad.next();
    assert_eq!(got["kind"], "coa");
    assert_eq!(got["authentic"], true, "{got}");
    let attributes = &got["attributes"];
    assert_eq!(attributes["User-Name"][0], "maria");
    assert_eq!(attributes["Acct-Session-Id"][0], "py-1");
    assert_eq!(attributes["Framed-IP-Address"][0], "100.64.0.8");
    assert_eq!(attributes["Mikrotik-Rate-Limit"][0], "50M/50M");
    assert!(attributes.get("Event-Timestamp").is_some(), "{got}");
    assert_eq!(v["data"]["enforcement"][0]["state"], "acked", "{v}");

    let (rc, v) = daemon.ctl_json(&["revoke", "1", "--wait"]);
    assert_eq!(rc, 0, "{v}");
    let got = pyrad.next();
    assert_eq!(got["kind"], "coa");
    assert_eq!(got["attributes"]["Mikrotik-Address-List"][0], "bloqueados");
    assert_eq!(v["data"]["enforcement"][0]["state"], "acked", "{v}");

    // A cancelled contract is disconnected.
    let (rc, _) = daemon.ctl_json(&["contract", "state", "1", "cancelled"]);
    assert_eq!(rc, 0);
    let got = pyrad.next();
    assert_eq!(got["kind"], "disconnect");
    assert_eq!(got["authentic"], true);
    assert_eq!(got["attributes"]["User-Name"][0], "maria");
}

/// One MS-CHAPv2 login by the pyrad BRAS; what it found in the reply.
fn pyrad_ms_chap_v2(auth: std::net::SocketAddr, user: &str, password: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pyrad_mschap.py");
    let out = Command::new(PYTHON)
        .arg(script)
        .arg(auth.port().to_string())
        .args([SECRET, user, password])
        .output()
        .expect("run the pyrad MS-CHAPv2 client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

#[test]
fn pyrad_ms_chap_v2_logins_get_keys_it_derives_itself() {
    if common::backend_missing() {
        return;
    }
    if !python_has("pyrad", "python3-pyrad")
        || !python_has("Cryptodome", "python3-pycryptodome")
    {
        return;
    }
    let daemon = Daemon::start();
    let file = write_file(
        &daemon.dir,
        "c.csv",
        "contract_id,state,username,password\n1,active,maria,pw-m\n\
         2,blocked,jose,pw-j\n3,cancelled,ana,pw-a\n",
    );
    assert_eq!(daemon.ctl_json(&["import", file.to_str().unwrap()]).0, 0);
    let (auth, _) = daemon.radius_addresses();
    let accepted = |v: &Value| {
        assert_eq!(v["code"], 2, "{v}");
        assert_eq!(v["authentic"], true, "{v}");
        assert_eq!(v["success_ok"], true, "{v}");
        assert_eq!(v["send_key_ok"], true, "{v}");
        assert_eq!(v["recv_key_ok"], true, "{v}");
        assert_eq!((&v["policy"], &v["types"]), (&Value::from(1), &Value::from(6)));
    };
    accepted(&pyrad_ms_chap_v2(auth, "maria", "pw-m"));
    // Blocked: accepted into the blocked profile; released: the same.
    accepted(&pyrad_ms_chap_v2(auth, "jose", "pw-j"));
    assert_eq!(daemon.ctl_json(&["release", "2"]).0, 0);
    accepted(&pyrad_ms_chap_v2(auth, "jose", "pw-j"));

    let wrong = pyrad_ms_chap_v2(auth, "maria", "pw-M");
    assert_eq!(wrong["code"], 3, "{wrong}");
    assert_eq!(wrong["authentic"], true, "{wrong}");
    assert_eq!(wrong["send_key_ok"], Value::Null, "no keys on a reject");
    assert_eq!(wrong["error"]["ident"], 0x17);
    let text = wrong["error"]["text"].as_str().unwrap();
    assert!(text.starts_with("E=691 R=0 C="), "{text}");
    let cancelled = pyrad_ms_chap_v2(auth, "ana", "pw-a");
    assert!(
        cancelled["error"]["text"]
            .as_str()
            .unwrap()
            .starts_with("E=647"),
        "{cancelled}"
    );
}
