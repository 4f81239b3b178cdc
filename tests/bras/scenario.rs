//! The BRAS scenario, run where the kernel has PPP (the host, or the
//! throw-away guest), in a network namespace of its own that plays the
//! BRAS: liberad on loopback, two `pppoe-server`s whose sessions are pppd
//! with radius.so and radattr.so, and PPPoE clients (pppd with rp-pppoe.so)
//! in network namespaces of their own, each behind a veth pair.
//!
//! ```text
//!  subscriber namespaces           the BRAS (this process's namespace)
//!  s1 (PAP, kept up) ──── veth ──┐
//!  s2 (one after another) ─ veth ┼─ pppoe-server ─ pppd, radius.so ─┬─ auth ─────── liberad
//!  s4, s5 (the twins) ─── veth ──┘                                   │
//!  s3 (MPPE) ──────────── veth ──── pppoe-server ─ pppd, MPPE-128 ───┴─ acct ─ tap ─ liberad
//! ```
//!
//! Each scenario is a step; a failed step is reported and the next ones
//! still run, so that one run says which scenarios pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

use super::tap::{self, Tap};
use crate::common::{self, Daemon};

/// How long a PPP link may take to come up or go down, an accounting
/// packet to arrive, liberad to show it: generous, since in the guest
/// everything runs in software emulation.
const DEADLINE: Duration = Duration::from_secs(120);

/// pppd's radius.so sends Interim-Updates no more often than every 60 s
/// (it raises a smaller Acct-Interim-Interval to 60).
const INTERIM_SECS: u64 = 60;

/// The profiles, after the test NAS's keys: each with an attribute of its
/// own (Filter-Id) that pppd passes to its scripts and radattr.so records.
/// pppd has no CoA listener: `coa_mode = "none"`.
const LIBERAD_CONFIG: &str = r#"coa_mode = "none"

[profiles.active]
reply = ["Filter-Id = active", "Acct-Interim-Interval = 60"]
login_reply = true
[profiles.released]
reply = ["Filter-Id = released", "Acct-Interim-Interval = 60"]
login_reply = true
[profiles.reduced]
reply = ["Filter-Id = reduced"]
login_reply = false
[profiles.blocked]
action = "accept"
reply = ["Filter-Id = blocked"]
login_reply = false
"#;

/// The address of the BRAS's side of the PPP links, and the first address
/// pppoe-server hands out when RADIUS gives none.
const BRAS_ADDRESS: &str = "10.67.0.1";
const BRAS_POOL: &str = "10.67.0.100";
const MPPE_BRAS_ADDRESS: &str = "10.68.0.1";
const MPPE_BRAS_POOL: &str = "10.68.0.100";

struct Subscriber {
    user: &'static str,
    password: &'static str,
    contract: &'static str,
    state: &'static str,
    framed_ip: &'static str,
}

const fn subscriber(
    user: &'static str,
    password: &'static str,
    contract: &'static str,
    state: &'static str,
    framed_ip: &'static str,
) -> Subscriber {
    Subscriber {
        user,
        password,
        contract,
        state,
        framed_ip,
    }
}

const PAP: Subscriber = subscriber("ana.pap", "pw-Ana 1", "2001", "active", "10.64.0.11");
const CHAP: Subscriber = subscriber("bia.chap", "pw-Bia:2", "2002", "active", "10.64.0.12");
const MSCHAP: Subscriber = subscriber("caio.ms", "pw-Caio#3", "2003", "active", "10.64.0.13");
const MPPE: Subscriber = subscriber("davi.mppe", "pw-Davi$4", "2004", "active", "10.64.0.14");
const BLOCKED: Subscriber = subscriber("eva.blk", "pw-Eva%5", "2005", "blocked", "10.64.0.15");
const CANCELLED: Subscriber =
    subscriber("fabio.cnl", "pw-Fabio6", "2006", "cancelled", "10.64.0.16");
const TWIN1: Subscriber = subscriber("gil.twin", "pw-Gil7", "2007", "active", "10.64.0.17");
const TWIN2: Subscriber = subscriber("hugo.twin", "pw-Hugo8", "2008", "active", "10.64.0.18");
const ALL: [&Subscriber; 8] = [
    &PAP, &CHAP, &MSCHAP, &MPPE, &BLOCKED, &CANCELLED, &TWIN1, &TWIN2,
];

/// How the client authenticates: the others are refused, so that the
/// BRAS (which offers MS-CHAPv2, MS-CHAP, CHAP-MD5 and PAP) ends up with
/// this one.
#[derive(Clone, Copy, Debug)]
enum Method {
    Pap,
    Chap,
    MsChapV2,
    MsChapV2Mppe,
}

impl Method {
    fn pppd_options(self) -> &'static [&'static str] {
        match self {
            Method::Pap => &[
                "refuse-chap",
                "refuse-mschap",
                "refuse-mschap-v2",
                "refuse-eap",
                "noccp",
            ],
            Method::Chap => &[
                "refuse-pap",
                "refuse-mschap",
                "refuse-mschap-v2",
                "refuse-eap",
                "noccp",
            ],
            Method::MsChapV2 => &[
                "refuse-pap",
                "refuse-chap",
                "refuse-mschap",
                "refuse-eap",
                "noccp",
            ],
            Method::MsChapV2Mppe => &[
                "refuse-pap",
                "refuse-chap",
                "refuse-mschap",
                "refuse-eap",
                "require-mppe-128",
                "nobsdcomp",
                "nodeflate",
            ],
        }
    }
}

/// pppd's exit status when the peer refused to authenticate us, and when
/// the line hung up.
const EXIT_AUTH_TOPEER_FAILED: i32 = 19;
const EXIT_HANGUP: i32 = 16;

/// Runs every scenario; panics at the end naming those that failed.
pub fn run() {
    let began = Instant::now();
    let log = |what: &str| eprintln!("[{:>6.1} s] {what}", began.elapsed().as_secs_f64());
    prepare_kernel();
    let temp = tempfile::tempdir().expect("temporary directory");
    let dir = temp.path();
    // Each pppd gets a directory of the test's mounted over /run.
    assert!(
        !dir.starts_with("/run"),
        "the temporary directory {} is under /run: set TMPDIR elsewhere",
        dir.display()
    );

    let mut daemon = Daemon::prepare_in(dir, "liberad", &common::database(dir), "", LIBERAD_CONFIG);
    // liberad's own debug lines, without every SQL statement.
    daemon.edit_config(|text| {
        text.replace("level = \"debug\"", "level = \"liberad=debug,sqlx=warn\"")
    });
    daemon.launch();
    let (auth, acct) = daemon.radius_addresses();
    let tap = Tap::start(acct);
    provision(&daemon);
    let mut bras = Bras::new(dir, auth, tap.address);
    bras.start_servers();
    log("liberad, the accounting tap and both pppoe-servers are up");

    let mut failed = Vec::new();
    let mut step = |name: &str, body: &mut dyn FnMut()| {
        log(&format!("scenario: {name}"));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        match outcome {
            Ok(()) => log(&format!("passed: {name}")),
            Err(_) => {
                log(&format!("FAILED: {name}"));
                failed.push(name.to_owned());
            }
        }
    };

    // Started first and kept up, for its Interim-Update after 60 s.
    let mut long: Option<(Client, String)> = None;
    step(
        "PAP brings the link up with the login's address and the profile's attributes, and its Start reaches the sessions table",
        &mut || {
            let mut client = bras.connect("s1", &PAP, PAP.password, Method::Pap);
            bras.assert_up_with_profile(&mut client, &PAP, "active");
            let start = wait_for_record(&tap, 0, tap::START, PAP.user);
            let row = wait_for_session(&daemon, PAP.user, &start.session_id, |row| {
                row["stopped_at"].is_null()
            });
            assert_eq!(row["framed_ip_address"], PAP.framed_ip, "{row}");
            assert_eq!(row["contract_id"], PAP.contract, "{row}");
            long = Some((client, start.session_id));
        },
    );

    step("CHAP-MD5 brings the link up", &mut || {
        let mut client = bras.connect("s2", &CHAP, CHAP.password, Method::Chap);
        bras.assert_up_with_profile(&mut client, &CHAP, "active");
        client.terminate();
    });

    step(
        "MS-CHAPv2 brings the link up (the client checks liberad's authenticator response)",
        &mut || {
            let mut client = bras.connect("s2", &MSCHAP, MSCHAP.password, Method::MsChapV2);
            let reply = bras.assert_up_with_profile(&mut client, &MSCHAP, "active");
            assert!(reply.contains_key("MS-CHAP2-Success"), "{reply:?}");
            assert!(
                client.log().contains("CHAP authentication succeeded"),
                "{}",
                client.log()
            );
            client.terminate();
        },
    );

    step(
        "MS-CHAPv2 with require-mppe-128 on both sides brings an encrypted link up that carries traffic",
        &mut || {
            let mut client = bras.connect("s3", &MPPE, MPPE.password, Method::MsChapV2Mppe);
            let reply = bras.assert_up_with_profile(&mut client, &MPPE, "active");
            for key in [
                "MS-MPPE-Send-Key",
                "MS-MPPE-Recv-Key",
                "MS-MPPE-Encryption-Policy",
            ] {
                assert!(reply.contains_key(key), "no {key} in {reply:?}");
            }
            let log = client.log();
            assert!(
                log.contains("MPPE 128-bit"),
                "no MPPE-128 in the client's log:\n{log}"
            );
            // Keys that differ between the ends would bring the link up too,
            // and then garble every packet.
            let ping = bras.run_in(
                "s3",
                &[
                    &bras.busybox,
                    "ping",
                    "-c",
                    "3",
                    "-w",
                    "60",
                    MPPE_BRAS_ADDRESS,
                ],
            );
            assert!(
                ping.contains("3 packets transmitted, 3 packets received"),
                "no ping through the MPPE link:\n{ping}"
            );
            client.terminate();
        },
    );

    step("a wrong password fails the link", &mut || {
        let client = bras.connect("s2", &PAP, "not-the-password", Method::Pap);
        bras.assert_auth_fails(client);
    });

    step("a cancelled contract fails the link", &mut || {
        let client = bras.connect("s2", &CANCELLED, CANCELLED.password, Method::Pap);
        bras.assert_auth_fails(client);
    });

    step(
        "a blocked contract gets the blocked profile; after `liberactl release` a reconnect gets the released profile with a Session-Timeout that ends by the release's end",
        &mut || {
            let mut client = bras.connect("s2", &BLOCKED, BLOCKED.password, Method::Chap);
            let (local, _) = client.wait_up();
            let reply = bras.reply_of(&BLOCKED);
            assert_eq!(
                reply.get("Filter-Id").map(String::as_str),
                Some("blocked"),
                "{reply:?}"
            );
            for absent in [
                "Framed-IP-Address",
                "Acct-Interim-Interval",
                "Session-Timeout",
            ] {
                assert!(
                    !reply.contains_key(absent),
                    "{absent} in the blocked profile's reply: {reply:?}"
                );
            }
            // No login attributes: the BRAS's own pool gives the address.
            assert_ne!(local, BLOCKED.framed_ip);
            assert!(
                local.starts_with("10.67.0."),
                "address {local} is not from the BRAS's pool"
            );

            let (code, released) =
                daemon.ctl_json(&["release", BLOCKED.contract, "--reason", "promised payment"]);
            assert_eq!(code, 0, "{released}");
            let ends_at = common::release_end(&released);
            client.terminate();

            let before = Utc::now();
            let mut client = bras.connect("s2", &BLOCKED, BLOCKED.password, Method::Chap);
            let reply = bras.assert_up_with_profile(&mut client, &BLOCKED, "released");
            let after = Utc::now();
            let timeout = reply.get("Session-Timeout").map(|t| {
                t.parse::<u32>()
                    .unwrap_or_else(|e| panic!("Session-Timeout {t:?}: {e}"))
            });
            common::assert_timeout_ends_at(timeout, ends_at, before, after);
            client.terminate();
        },
    );

    step(
        "two subscribers whose sessions start in the same second (the same Acct-Session-Id) are two sessions, each Stop closing its own",
        &mut || {
            bras.twins(&daemon, &tap);
        },
    );

    step(
        "Interim-Update (Acct-Interim-Interval = 60) and Stop reach the sessions table",
        &mut || {
            let (client, session_id) = long.take().expect("the PAP session did not come up");
            let deadline = Duration::from_secs(INTERIM_SECS) + DEADLINE;
            let interim = common::poll_within("the PAP session's Interim-Update", deadline, || {
                tap.records()
                    .into_iter()
                    .find(|r| r.status == tap::INTERIM && r.user == PAP.user)
                    .ok_or_else(|| format!("{:?}", tap.records()))
            });
            assert_eq!(interim.session_id, session_id);
            let interim_time = interim
                .session_time
                .expect("an Acct-Session-Time in the Interim");
            assert!(interim_time >= 59, "Interim after {interim_time} s");
            wait_for_session(&daemon, PAP.user, &session_id, |row| {
                row["stopped_at"].is_null()
                    && row["session_time"].as_u64() >= Some(u64::from(interim_time))
            });
            client.terminate();
            let stop = wait_for_record(&tap, 0, tap::STOP, PAP.user);
            assert_eq!(stop.session_id, session_id);
            let row = wait_for_session(&daemon, PAP.user, &session_id, |row| {
                !row["stopped_at"].is_null()
            });
            assert!(
                row["session_time"].as_u64() >= Some(u64::from(interim_time)),
                "{row}"
            );
            assert!(!row["terminate_cause"].is_null(), "{row}");
        },
    );

    log(&format!("{} scenarios failed", failed.len()));
    // On a failure, liberad's log comes with the panic (Daemon's drop).
    let all_logs = std::env::var_os("LIBERAD_BRAS_LOGS").is_some();
    if !failed.is_empty() || all_logs {
        bras.print_logs();
    }
    if failed.is_empty() && all_logs {
        eprintln!("---- liberad's log ----\n{}", daemon.log_text());
    }
    drop(bras);
    drop(tap);
    if !failed.is_empty() {
        panic!("failed scenarios:\n  {}", failed.join("\n  "));
    }
    assert!(daemon.stop().success(), "liberad's exit");
}

/// Loads what PPPoE needs (nothing happens where it is built in) and checks
/// that /dev/ppp is there.
fn prepare_kernel() {
    let _ = Command::new("modprobe")
        .args([
            "-a",
            "ppp_generic",
            "ppp_async",
            "pppoe",
            "ppp_mppe",
            "veth",
        ])
        .status();
    assert!(
        Path::new("/dev/ppp").exists(),
        "no /dev/ppp after loading ppp_generic: the kernel has no PPP"
    );
}

/// Contracts and logins, through liberactl.
fn provision(daemon: &Daemon) {
    for s in ALL {
        let out = daemon.ctl(&[
            "contract", "add", s.contract, "--name", s.user, "--state", s.state,
        ]);
        assert!(
            out.status.success(),
            "contract add: {}",
            common::stderr(&out)
        );
        let attr = format!("Framed-IP-Address = {}", s.framed_ip);
        let out = daemon.ctl(&[
            "login",
            "add",
            s.user,
            "--contract",
            s.contract,
            "--password",
            s.password,
            "--attr",
            &attr,
        ]);
        assert!(out.status.success(), "login add: {}", common::stderr(&out));
    }
}

/// The first accounting record from the `from`th on with this status and
/// user, once the tap saw it.
fn wait_for_record(tap: &Tap, from: usize, status: u32, user: &str) -> tap::Record {
    common::poll_within(
        &format!("Accounting-Request status {status} of {user}"),
        DEADLINE,
        || {
            let records = tap.records();
            records
                .iter()
                .skip(from)
                .find(|r| r.status == status && r.user == user)
                .cloned()
                .ok_or_else(|| format!("{records:?}"))
        },
    )
}

/// liberad's session of `user` with this Acct-Session-Id, once `ready`
/// holds for it.
fn wait_for_session(
    daemon: &Daemon,
    user: &str,
    session_id: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    common::poll_within(
        &format!("liberad's session {session_id} of {user}"),
        DEADLINE,
        || {
            let rows = sessions(daemon);
            rows.iter()
                .find(|row| {
                    row["username"] == user && row["acct_session_id"] == session_id && ready(row)
                })
                .cloned()
                .ok_or_else(|| format!("{rows:?}"))
        },
    )
}

fn sessions(daemon: &Daemon) -> Vec<Value> {
    let (code, v) = daemon.ctl_json(&["sessions", "--limit", "1000"]);
    assert_eq!(code, 0, "{v}");
    v["data"].as_array().cloned().unwrap_or_default()
}

/// A subscriber's pppd.
struct Client {
    child: Option<Child>,
    ns: String,
    user: String,
    log: PathBuf,
}

impl Client {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for ppp0 in the client's namespace; returns its local and peer
    /// addresses. Fails, with pppd's log, if pppd exits first.
    fn wait_up(&mut self) -> (String, String) {
        common::poll_within(
            &format!("{}'s ppp0 to come up", self.user),
            DEADLINE,
            || {
                if let Some(addresses) = ppp0_addresses(&self.ns) {
                    return Ok(addresses);
                }
                if let Some(status) = self.exited() {
                    panic!(
                        "{}'s pppd exited ({status}) before ppp0 came up:\n{}",
                        self.user,
                        self.log()
                    );
                }
                Err("no address on ppp0 yet".to_owned())
            },
        )
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits for pppd to exit by itself.
    fn wait_exit(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let status =
            common::poll_within(&format!("{}'s pppd to exit", self.user), DEADLINE, || {
                child
                    .try_wait()
                    .unwrap()
                    .ok_or_else(|| "still running".to_owned())
            });
        common::poll_within(&format!("{}'s ppp0 to go", self.user), DEADLINE, || {
            if ppp0_addresses(&self.ns).is_none() {
                Ok(())
            } else {
                Err("ppp0 still there".to_owned())
            }
        });
        status
    }

    /// Hangs up as a subscriber does (SIGTERM: LCP Terminate-Request, so
    /// that the BRAS sends its Accounting-Stop) and waits for the end.
    fn terminate(self) -> ExitStatus {
        if let Some(child) = &self.child {
            signal(child.id(), Signal::TERM);
        }
        self.wait_exit()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("---- {}'s pppd log ----\n{}", self.user, self.log());
            }
        }
    }
}

fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, signal);
    }
}

/// ppp0's local and peer address in a namespace, if it has one.
fn ppp0_addresses(ns: &str) -> Option<(String, String)> {
    let out = Command::new("ip")
        .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "ppp0"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    words.find(|w| *w == "inet")?;
    let local = words.next()?.to_owned();
    words.next().filter(|w| *w == "peer")?;
    let peer = words.next()?.split('/').next()?.to_owned();
    Some((local, peer))
}

/// The BRAS: its files, the subscribers' namespaces and veth pairs, the
/// pppoe-servers.
struct Bras {
    dir: PathBuf,
    etc_server: PathBuf,
    state: PathBuf,
    etc_client: PathBuf,
    clients: PathBuf,
    /// Link name (s1…s5) → (the subscriber's namespace, its veth end, the
    /// BRAS's end).
    links: BTreeMap<&'static str, (String, String, String)>,
    servers: Vec<Child>,
    busybox: String,
    started: usize,
}

const TESTS_BRAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bras");

/// `sh -c` script that mounts `$1` over /etc/ppp and `$2` over /run in the
/// caller's own mount namespace, then runs the rest: the host's /etc/ppp
/// and /run stay as they are, and each pppd gets its own options file.
const PRIVATE_DIRS: &str =
    "mount --bind \"$1\" /etc/ppp && mount --bind \"$2\" /run && shift 2 && exec \"$@\"";

impl Bras {
    /// Writes the BRAS's /etc/ppp and the radiusclient configuration
    /// (liberad at `auth`, accounting through the tap at `acct`), makes the
    /// namespaces and veth pairs.
    fn new(dir: &Path, auth: std::net::SocketAddr, acct: std::net::SocketAddr) -> Bras {
        let etc_server = dir.join("bras-etc-ppp");
        let state = etc_server.join("bras-state");
        let etc_client = dir.join("client-etc-ppp");
        let clients = dir.join("clients");
        for d in [&state, &etc_client, &clients] {
            std::fs::create_dir_all(d).unwrap();
        }
        let copy = |name: &str, to: &Path| {
            std::fs::copy(Path::new(TESTS_BRAS).join(name), to)
                .unwrap_or_else(|e| panic!("copy tests/bras/{name}: {e}"));
        };
        copy("server-options", &etc_server.join("pppoe-server-options"));
        copy(
            "server-options-mppe",
            &etc_server.join("pppoe-server-options-mppe"),
        );
        copy("dictionary", &etc_server.join("radius-dictionary"));
        copy("ip-pre-up", &etc_server.join("ip-pre-up"));
        std::fs::set_permissions(
            etc_server.join("ip-pre-up"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let no_options = "# No system-wide pppd options: each pppd gets its own.\n";
        common::write_file(&etc_server, "options", no_options);
        common::write_file(&etc_client, "options", no_options);
        common::write_file(&etc_server, "radius-port-map", "");
        common::write_file(
            &etc_server,
            "radius-servers",
            &format!("127.0.0.1\t{}\n", common::SECRET),
        );
        common::write_file(
            &etc_server,
            "radiusclient.conf",
            &format!(
                "# radiusclient configuration of pppd's radius.so: liberad, and its\n\
                 # accounting through the test's tap.\n\
                 auth_order radius\n\
                 login_tries 4\n\
                 login_timeout 60\n\
                 nologin /etc/nologin\n\
                 authserver 127.0.0.1:{auth}\n\
                 acctserver 127.0.0.1:{acct}\n\
                 servers /etc/ppp/radius-servers\n\
                 dictionary /etc/ppp/radius-dictionary\n\
                 seqfile /etc/ppp/bras-state/radius-seq\n\
                 mapfile /etc/ppp/radius-port-map\n\
                 radius_timeout 5\n\
                 radius_retries 3\n\
                 nas_identifier bras-test\n\
                 bindaddr 127.0.0.1\n",
                auth = auth.port(),
                acct = acct.port(),
            ),
        );

        let tag = std::process::id();
        let mut links = BTreeMap::new();
        for (i, name) in ["s1", "s2", "s3", "s4", "s5"].into_iter().enumerate() {
            let ns = format!("lbr{tag}-{name}");
            let (client_if, bras_if) = (format!("sub{}", i + 1), format!("bras{}", i + 1));
            must(&["ip", "netns", "add", &ns]);
            links.insert(name, (ns.clone(), client_if.clone(), bras_if.clone()));
            must(&[
                "ip", "link", "add", &bras_if, "type", "veth", "peer", "name", &client_if, "netns",
                &ns,
            ]);
            must(&["ip", "link", "set", &bras_if, "up"]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            must(&["ip", "-n", &ns, "link", "set", &client_if, "up"]);
        }
        Bras {
            dir: dir.to_owned(),
            etc_server,
            state,
            etc_client,
            clients,
            links,
            servers: Vec::new(),
            busybox: super::find_program("busybox").expect("busybox"),
            started: 0,
        }
    }

    /// The two pppoe-servers: s1, s2, s4, s5 without compression; s3
    /// requiring MPPE-128.
    fn start_servers(&mut self) {
        let plain: Vec<String> = ["s1", "s2", "s4", "s5"]
            .iter()
            .map(|s| self.links[s].2.clone())
            .collect();
        let mppe = vec![self.links["s3"].2.clone()];
        self.start_server(
            &plain,
            "pppoe-server-options",
            BRAS_ADDRESS,
            BRAS_POOL,
            "pppoe-server",
        );
        self.start_server(
            &mppe,
            "pppoe-server-options-mppe",
            MPPE_BRAS_ADDRESS,
            MPPE_BRAS_POOL,
            "pppoe-server-mppe",
        );
    }

    fn start_server(
        &mut self,
        interfaces: &[String],
        options: &str,
        local: &str,
        pool: &str,
        name: &str,
    ) {
        let out = std::fs::File::create(self.dir.join(format!("{name}.out"))).unwrap();
        let server = super::find_program("pppoe-server").expect("pppoe-server");
        let run = self.dir.join("bras-run");
        std::fs::create_dir_all(&run).unwrap();
        // In a mount namespace of its own, with the test's /etc/ppp and /run
        // (pppd's pid files and radattr.so's records) over the real ones.
        let mut command = common::dies_with_test("unshare");
        command
            .args([
                "-m",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                PRIVATE_DIRS,
            ])
            .arg("bras-server")
            .arg(&self.etc_server)
            .arg(&run)
            .arg(server)
            .arg("-F");
        for interface in interfaces {
            command.args(["-I", interface]);
        }
        command
            .args(["-L", local, "-R", pool, "-N", "32", "-O"])
            .arg(format!("/etc/ppp/{options}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = command.spawn().expect("start pppoe-server");
        self.servers.push(child);
        // Ready once it holds a packet socket on each of its interfaces.
        let indexes: Vec<String> = interfaces
            .iter()
            .map(|i| {
                std::fs::read_to_string(format!("/sys/class/net/{i}/ifindex"))
                    .unwrap()
                    .trim()
                    .to_owned()
            })
            .collect();
        let log = self.dir.join(format!("{name}.out"));
        common::poll_within(&format!("{name} to listen"), DEADLINE, || {
            let sockets = std::fs::read_to_string("/proc/self/net/packet").unwrap_or_default();
            let listening: Vec<&str> = sockets
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(4))
                .collect();
            if indexes.iter().all(|i| listening.contains(&i.as_str())) {
                return Ok(());
            }
            Err(format!(
                "packet sockets on {listening:?}, want {indexes:?}; output: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        });
    }

    /// Starts a subscriber's pppd in namespace `link`.
    fn connect(&mut self, link: &str, who: &Subscriber, password: &str, method: Method) -> Client {
        let (ns, nic, _) = self.links[link].clone();
        self.started += 1;
        let name = format!("{}-{}", who.user, self.started);
        let log = self.clients.join(format!("{name}.log"));
        let out = std::fs::File::create(self.clients.join(format!("{name}.out"))).unwrap();
        let _ = std::fs::remove_file(self.state.join(format!("radattr.{}", who.user)));
        let pppd = super::find_program("pppd").expect("pppd");
        let run = self.dir.join(format!("run-{link}"));
        std::fs::create_dir_all(&run).unwrap();
        // `ip netns exec` gives it a mount namespace of its own: there, the
        // test's /etc/ppp and /run over the real ones.
        let mut command = common::dies_with_test("ip");
        command
            .args(["netns", "exec", &ns, "sh", "-c", PRIVATE_DIRS])
            .arg("bras-client")
            .arg(&self.etc_client)
            .arg(&run)
            .arg(pppd)
            .args(["plugin", "rp-pppoe.so", &format!("nic-{nic}")])
            .args(["user", who.user, "password", password])
            .args(["noauth", "nodetach", "noipdefault", "nodefaultroute"])
            .args(["lcp-echo-interval", "0", "debug", "logfile"])
            .arg(&log)
            .args(method.pppd_options())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = command.spawn().expect("start the subscriber's pppd");
        Client {
            child: Some(child),
            ns,
            user: who.user.to_owned(),
            log,
        }
    }

    /// What liberad's Access-Accept for `who`'s last session carried, as
    /// radattr.so recorded it on the BRAS (name → value).
    fn reply_of(&self, who: &Subscriber) -> BTreeMap<String, String> {
        let path = self.state.join(format!("radattr.{}", who.user));
        let text = common::poll_within(
            &format!("the BRAS's record of {}'s reply", who.user),
            DEADLINE,
            || std::fs::read_to_string(&path).map_err(|e| e.to_string()),
        );
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Waits for the link; checks that the client's address is the login's
    /// Framed-IP-Address and that the reply carried `profile`'s attributes.
    fn assert_up_with_profile(
        &self,
        client: &mut Client,
        who: &Subscriber,
        profile: &str,
    ) -> BTreeMap<String, String> {
        let (local, _peer) = client.wait_up();
        assert_eq!(local, who.framed_ip, "{}'s address", who.user);
        let reply = self.reply_of(who);
        assert_eq!(
            reply.get("Framed-IP-Address").map(String::as_str),
            Some(who.framed_ip),
            "{reply:?}"
        );
        assert_eq!(
            reply.get("Filter-Id").map(String::as_str),
            Some(profile),
            "{reply:?}"
        );
        assert_eq!(
            reply.get("Acct-Interim-Interval").map(String::as_str),
            Some("60"),
            "{reply:?}"
        );
        reply
    }

    /// The client's pppd gives up with "authentication to the peer
    /// failed", and no ppp0 appeared.
    fn assert_auth_fails(&self, client: Client) {
        let ns = client.ns.clone();
        let log_path = client.log.clone();
        let status = client.wait_exit();
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        let failed_at = log
            .find("PAP authentication failed")
            .unwrap_or_else(|| panic!("no PAP failure in the client's log:\n{log}"));
        // The BRAS's pppd exits on the failure too; when its PADT arrives
        // before the client's own Terminate-Request is answered, the
        // client's pppd reports the hang-up instead of the failure.
        let hung_up = log[failed_at..].contains("Modem hangup");
        assert!(
            status.code() == Some(EXIT_AUTH_TOPEER_FAILED)
                || (hung_up && status.code() == Some(EXIT_HANGUP)),
            "pppd's exit ({status}):\n{log}"
        );
        assert!(
            !log.contains("local  IP address"),
            "the link came up:\n{log}"
        );
        assert!(ppp0_addresses(&ns).is_none());
    }

    /// Output of a command run in a subscriber's namespace.
    fn run_in(&self, link: &str, command: &[&str]) -> String {
        let ns = &self.links[link].0;
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(command)
            .output()
            .expect("ip netns exec");
        format!("{}{}", common::stdout(&out), common::stderr(&out))
    }

    /// Two subscribers held in ip-pre-up and let go together, until their
    /// Accounting-Starts carry the same Acct-Session-Id (pppd 2.4.9 makes
    /// it from the time alone): liberad must list two sessions, and each
    /// Stop close its own.
    fn twins(&mut self, daemon: &Daemon, tap: &Tap) {
        const ATTEMPTS: usize = 5;
        let hold = self.state.join("hold");
        let go = self.state.join("go");
        for attempt in 1..=ATTEMPTS {
            let _ = std::fs::remove_file(&go);
            for who in [&TWIN1, &TWIN2] {
                let _ = std::fs::remove_file(self.state.join(format!("held.{}", who.user)));
            }
            std::fs::write(&hold, format!("{}\n{}\n", TWIN1.user, TWIN2.user)).unwrap();
            let from = tap.records().len();
            let mut first = self.connect("s4", &TWIN1, TWIN1.password, Method::Pap);
            let mut second = self.connect("s5", &TWIN2, TWIN2.password, Method::Pap);
            common::poll_within("both sessions to be held in ip-pre-up", DEADLINE, || {
                let held =
                    [&TWIN1, &TWIN2].map(|w| self.state.join(format!("held.{}", w.user)).exists());
                for client in [&mut first, &mut second] {
                    if let Some(status) = client.exited() {
                        panic!(
                            "{}'s pppd exited ({status}):\n{}",
                            client.user,
                            client.log()
                        );
                    }
                }
                if held == [true, true] {
                    Ok(())
                } else {
                    Err(format!("held: {held:?}"))
                }
            });
            std::fs::write(&go, "").unwrap();
            let _ = std::fs::remove_file(&hold);
            assert_eq!(first.wait_up().0, TWIN1.framed_ip);
            assert_eq!(second.wait_up().0, TWIN2.framed_ip);
            let start1 = wait_for_record(tap, from, tap::START, TWIN1.user);
            let start2 = wait_for_record(tap, from, tap::START, TWIN2.user);
            eprintln!(
                "attempt {attempt}: Acct-Session-Id {} (NAS-Port {:?}) and {} (NAS-Port {:?})",
                start1.session_id, start1.nas_port, start2.session_id, start2.nas_port
            );
            if start1.session_id != start2.session_id {
                // The two started on either side of a second: again.
                let from = tap.records().len();
                first.terminate();
                second.terminate();
                wait_for_record(tap, from, tap::STOP, TWIN1.user);
                wait_for_record(tap, from, tap::STOP, TWIN2.user);
                continue;
            }
            let id = start1.session_id;
            common::poll_within(
                "liberad to list the two sessions with the same Acct-Session-Id",
                DEADLINE,
                || {
                    let rows = sessions(daemon);
                    let open: Vec<&Value> = rows
                        .iter()
                        .filter(|r| {
                            r["acct_session_id"] == id.as_str() && r["stopped_at"].is_null()
                        })
                        .collect();
                    let users: Vec<&Value> = open.iter().map(|r| &r["username"]).collect();
                    if open.len() == 2
                        && users.contains(&&Value::from(TWIN1.user))
                        && users.contains(&&Value::from(TWIN2.user))
                    {
                        Ok(())
                    } else {
                        Err(format!("open sessions with id {id}: {open:?}"))
                    }
                },
            );
            let from = tap.records().len();
            first.terminate();
            wait_for_record(tap, from, tap::STOP, TWIN1.user);
            wait_for_session(daemon, TWIN1.user, &id, |r| !r["stopped_at"].is_null());
            let still = sessions(daemon);
            assert!(
                still.iter().any(|r| r["username"] == TWIN2.user
                    && r["acct_session_id"] == id.as_str()
                    && r["stopped_at"].is_null()),
                "{}'s Stop closed {}'s session too: {still:?}",
                TWIN1.user,
                TWIN2.user
            );
            second.terminate();
            wait_for_record(tap, from, tap::STOP, TWIN2.user);
            wait_for_session(daemon, TWIN2.user, &id, |r| !r["stopped_at"].is_null());
            return;
        }
        panic!("in {ATTEMPTS} attempts the two sessions never started in the same second");
    }

    fn print_logs(&self) {
        let mut files = vec![
            self.state.join("pppd.log"),
            self.state.join("pppd-mppe.log"),
            self.dir.join("pppoe-server.out"),
            self.dir.join("pppoe-server-mppe.out"),
        ];
        for dir in [&self.state, &self.clients] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut more: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| !p.ends_with("pppd.log") && !p.ends_with("pppd-mppe.log"))
                .collect();
            more.sort();
            files.extend(more);
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            eprintln!("---- {} ----\n{text}", file.display());
        }
    }
}

impl Drop for Bras {
    fn drop(&mut self) {
        // pppoe-server ends its sessions' pppd when it is told to stop.
        for server in &self.servers {
            signal(server.id(), Signal::TERM);
        }
        let until = Instant::now() + Duration::from_secs(10);
        for server in &mut self.servers {
            while server.try_wait().ok().flatten().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = server.kill();
            let _ = server.wait();
        }
        for (ns, _, bras_if) in self.links.values() {
            let pids = Command::new("ip").args(["netns", "pids", ns]).output();
            if let Ok(pids) = pids {
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse() {
                        signal(pid, Signal::KILL);
                    }
                }
            }
            let _ = Command::new("ip").args(["link", "del", bras_if]).status();
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs a command that must succeed.
fn must(command: &[&str]) {
    let out = Command::new(command[0])
        .args(&command[1..])
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
}
