//! Test harness: starts the real `liberad` binary in a temporary directory,
//! talks to it with the real `liberactl` binary and with raw JSON lines on
//! its admin socket, and stops it with real signals.

#![allow(dead_code, reason = "each test file uses its own part of the harness")]

pub mod coa_nas;
pub mod nas;
pub mod postgres;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;

/// How long a daemon may take to start or stop before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub const LIBERAD: &str = env!("CARGO_BIN_EXE_liberad");
pub const LIBERACTL: &str = env!("CARGO_BIN_EXE_liberactl");

/// Polls `check` until it gives a value, for at most [`DEADLINE`]; fails
/// the test naming `what` it waited for (and the last thing `check` saw).
pub fn poll_until<T>(what: &str, check: impl FnMut() -> Result<T, String>) -> T {
    poll_within(what, DEADLINE, check)
}

/// [`poll_until`] with a deadline of the caller's (what runs in software
/// emulation takes longer).
pub fn poll_within<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let until = Instant::now() + deadline;
    loop {
        let seen = match check() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}; last seen: {seen}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Says why a test cannot run here and lets it return; under CI
/// (`CI=true`), where every peer and permission must be there, it fails.
pub fn skip(why: &str) {
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "cannot run under CI: {why}"
    );
    eprintln!("skipped: {why}");
}

/// A running liberad with its own state directory.
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    /// Keeps the directory alive for as long as the daemon.
    _temp: Option<tempfile::TempDir>,
}

/// The secret of the test NAS (127.0.0.1).
pub const SECRET: &str = "testing123";

/// Profiles as in the example configuration: blocked customers accepted
/// into a pool and address list.
pub const PROFILES: &str = r#"
[profiles.active]
login_reply = true
[profiles.reduced]
reply = ["Mikrotik-Rate-Limit = 2M/2M"]
login_reply = false
[profiles.blocked]
action = "accept"
reply = ["Framed-Pool = bloqueados", "Mikrotik-Address-List = bloqueados"]
login_reply = false
"#;

/// The configuration the tests run with: everything under `dir`, RADIUS on
/// loopback ports the system picks, one NAS (127.0.0.1, [`SECRET`]).
/// `admin_extra` goes into `[admin]`; `extra` is appended (more `[[nas]]`,
/// profiles; [`PROFILES`] when empty).
pub fn config_text(
    dir: &Path,
    name: &str,
    database: &str,
    admin_extra: &str,
    extra: &str,
) -> String {
    let dictionaries = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dictionaries");
    let extra = if extra.is_empty() { PROFILES } else { extra };
    format!(
        r#"timezone = "America/Sao_Paulo"
state_dir = "{state}"
[database]
url = "{database}"
[admin]
socket = "{socket}"
{admin_extra}
[log]
level = "debug"
[radius]
auth_listen = "127.0.0.1:0"
acct_listen = "127.0.0.1:0"
dictionaries = ["{dictionaries}/dictionary.mikrotik"]
[[nas]]
name = "test"
address = "127.0.0.1"
secret = "{SECRET}"
{extra}
"#,
        state = dir.join(format!("{name}-state")).display(),
        socket = dir.join(format!("{name}.sock")).display(),
        dictionaries = dictionaries.display(),
    )
}

/// The database a test binary runs on: each integration suite is compiled
/// twice, once per backend (tests/NAME.rs on SQLite, tests/pg_NAME.rs on
/// PostgreSQL), and the entry file says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether this binary's backend is missing, so that the calling test must
/// return at once: true only for the PostgreSQL binaries on a machine
/// without PostgreSQL's server (and then it says so; under CI that is a
/// failure). Every test of a suite begins with it, so that a missing
/// backend skips each test and ends none but its own.
pub fn backend_missing() -> bool {
    match crate::BACKEND {
        Backend::Sqlite => false,
        Backend::Postgres => {
            let missing = postgres::cluster().is_none();
            if missing {
                eprintln!(
                    "skipped: the PostgreSQL server binaries (initdb, pg_ctl) are not \
                     installed; install Debian's postgresql to run these tests"
                );
            }
            missing
        }
    }
}

/// A new, empty database for a test, as a URL: an SQLite file in `dir`, or
/// a database on this binary's PostgreSQL cluster (the test checked
/// [`backend_missing`] first).
pub fn database(dir: &Path) -> String {
    match crate::BACKEND {
        Backend::Sqlite => format!("sqlite://{}", dir.join("liberad.db").display()),
        Backend::Postgres => match postgres::cluster() {
            Some(cluster) => cluster.database(),
            None => panic!("no PostgreSQL: the test must begin with `if backend_missing()`"),
        },
    }
}

/// A command that dies with the test that started it (SIGKILL when the
/// test's thread or process ends, through `setpriv --pdeathsig`), so that
/// an interrupted or timed-out `cargo test` leaves nothing running.
pub fn dies_with_test(program: impl AsRef<std::ffi::OsStr>) -> Command {
    static SETPRIV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let available = *SETPRIV.get_or_init(|| {
        Command::new("setpriv")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if available {
        let mut command = Command::new("setpriv");
        command.args(["--pdeathsig", "KILL", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Daemon {
    /// Starts a daemon in a fresh temporary directory.
    pub fn start() -> Daemon {
        Daemon::start_with("")
    }

    /// Starts a daemon with extra lines in its `[admin]` section.
    pub fn start_with(admin_extra: &str) -> Daemon {
        Daemon::start_configured(admin_extra, "")
    }

    /// Starts a daemon with extra `[admin]` lines and extra sections.
    pub fn start_configured(admin_extra: &str, extra: &str) -> Daemon {
        let temp = tempfile::tempdir().expect("temporary directory");
        let dir = temp.path().to_owned();
        let mut daemon = Daemon::start_in(&dir, "a", &database(&dir), admin_extra, extra);
        daemon._temp = Some(temp);
        daemon
    }

    /// Starts a daemon named `name` in `dir` on the database at URL
    /// `database` (several daemons may share one).
    pub fn start_in(
        dir: &Path,
        name: &str,
        database: &str,
        admin_extra: &str,
        extra: &str,
    ) -> Daemon {
        let mut daemon = Daemon::prepare_in(dir, name, database, admin_extra, extra);
        daemon.launch();
        daemon
    }

    /// Writes the configuration of a daemon without starting it; `launch`
    /// starts it.
    pub fn prepare_in(
        dir: &Path,
        name: &str,
        database: &str,
        admin_extra: &str,
        extra: &str,
    ) -> Daemon {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            config_text(dir, name, database, admin_extra, extra),
        )
        .unwrap();
        Daemon {
            child: None,
            dir: dir.to_owned(),
            socket: dir.join(format!("{name}.sock")),
            config,
            log: dir.join(format!("{name}.log")),
            _temp: None,
        }
    }

    /// Rewrites the configuration file.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(text)).unwrap();
    }

    /// Adds `lines` to the `[radius]` section of the configuration.
    pub fn radius_settings(&self, lines: &str) {
        self.edit_config(|text| {
            text.replacen("\n[radius]\n", &format!("\n[radius]\n{lines}\n"), 1)
        });
    }

    /// Adds `lines` to the `[database]` section of the configuration.
    pub fn database_settings(&self, lines: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replacen("\n[admin]\n", &format!("\n{lines}\n[admin]\n"), 1);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Starts the binary and waits until its socket answers.
    pub fn launch(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts the binary without waiting for it.
    pub fn spawn(&mut self) {
        self.spawn_with_env(&[]);
    }

    /// Starts the binary with these environment variables (and `PATH`),
    /// without waiting for it.
    pub fn spawn_with_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = dies_with_test(LIBERAD)
            .arg("--config")
            .arg(&self.config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start liberad");
        self.child = Some(child);
    }

    /// Waits until the admin socket answers (failing, with the log, if the
    /// daemon exits or takes too long).
    pub fn wait_ready(&mut self) {
        let socket = self.socket.clone();
        let child = self.child.as_mut().expect("daemon running");
        poll_until("liberad to open its admin socket", || {
            if UnixStream::connect(&socket).is_ok() {
                return Ok(());
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("liberad exited during start-up ({status})");
            }
            Err("no answer on the socket yet".to_owned())
        });
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid())
            .ok()
            .and_then(Pid::from_raw)
            .expect("a valid pid");
        kill_process(pid, signal).expect("send a signal to liberad");
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::TERM);
        self.wait_exit()
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("daemon running");
        let status = poll_until("liberad to exit", || {
            child
                .try_wait()
                .unwrap()
                .ok_or_else(|| "still running".to_owned())
        });
        self.child = None;
        status
    }

    /// Runs `liberactl --socket SOCKET ARGS...`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(LIBERACTL)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_remove("LIBERAD_SOCKET")
            .env_remove("LIBERAD_OPERATOR")
            .env("USER", "tester")
            .output()
            .expect("run liberactl")
    }

    /// Runs liberactl with `--json` and returns its exit code and response.
    pub fn ctl_json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        let code = out.status.code().expect("liberactl exit code");
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "liberactl {args:?} printed no JSON ({e}): {text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, value)
    }

    /// Where the daemon serves RADIUS authentication and accounting.
    pub fn radius_addresses(&self) -> (std::net::SocketAddr, std::net::SocketAddr) {
        let pong = self.request(r#"{"cmd":"ping"}"#);
        let address = |key: &str| {
            pong["data"][key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {pong}"))
        };
        (address("radius_auth"), address("radius_acct"))
    }

    /// Waits (bounded) until the daemon's log contains `text`.
    pub fn wait_for_log(&self, text: &str) {
        poll_until(&format!("{text:?} in the log"), || {
            if self.log_text().contains(text) {
                Ok(())
            } else {
                Err("not there yet".to_owned())
            }
        });
    }

    /// Opens a raw connection to the admin socket.
    pub fn connect(&self) -> Conn {
        Conn::open(&self.socket)
    }

    /// A connection the daemon counts as open, on which a ping was
    /// answered: retried while the daemon still counts earlier connections
    /// (such as the start-up probe) and answers `busy`.
    pub fn open_connection(&self) -> Conn {
        poll_until("a free admin connection", || {
            let mut conn = self.connect();
            let answer = conn.request(r#"{"cmd":"ping"}"#);
            if answer["ok"] == true {
                return Ok(conn);
            }
            assert_eq!(answer["code"], "busy", "{answer}");
            Err(answer.to_string())
        })
    }

    /// Sends one raw request line on a new connection.
    pub fn request(&self, line: &str) -> Value {
        self.connect().request(line)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The log goes with the temporary directory: a failed test shows
        // it first.
        if std::thread::panicking() {
            eprintln!(
                "---- log of liberad in {} ----\n{}---- end of the log ----",
                self.dir.display(),
                self.log_text()
            );
        }
    }
}

/// A raw admin socket connection.
pub struct Conn {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    pub fn open(socket: &Path) -> Conn {
        let stream = UnixStream::connect(socket).expect("connect to the admin socket");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn { stream, reader }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the socket");
    }

    /// Reads one response line.
    pub fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a response");
        assert!(n > 0, "the daemon closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad response {line:?}: {e}"))
    }

    /// Sends one request line and reads its response.
    pub fn request(&mut self, line: &str) -> Value {
        self.send_raw(line.as_bytes());
        self.send_raw(b"\n");
        self.read()
    }
}

/// Asserts that a Session-Timeout given between `before` and `after` ends
/// the session at `ends_at` (to the second the clock may have turned).
pub fn assert_timeout_ends_at(
    timeout: Option<u32>,
    ends_at: chrono::DateTime<chrono::Utc>,
    before: chrono::DateTime<chrono::Utc>,
    after: chrono::DateTime<chrono::Utc>,
) {
    let timeout = i64::from(timeout.expect("a Session-Timeout"));
    let longest = (ends_at - before).num_seconds() + 1;
    let shortest = (ends_at - after).num_seconds() - 1;
    assert!(
        (shortest..=longest).contains(&timeout),
        "Session-Timeout {timeout} s, expected {shortest} to {longest} s (the release ends at {ends_at})"
    );
}

/// When a release in a `release` answer ends.
pub fn release_end(answer: &Value) -> chrono::DateTime<chrono::Utc> {
    serde_json::from_value(answer["data"]["ends_at"].clone())
        .unwrap_or_else(|e| panic!("no release end in {answer}: {e}"))
}

/// One HTTP exchange with the metrics endpoint.
pub fn http(address: std::net::SocketAddr, request: &[u8]) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of the first sample of `name` whose labels contain all of
/// `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The text of a command's standard output.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of a command's standard error.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes a file in the daemon's directory and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
