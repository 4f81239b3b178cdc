//! Faults of the SQLite file under a running daemon: a full disk, a write
//! lock held by another process, the file deleted, and the modes it is
//! created with. The daemon comes back by itself once the cause is gone,
//! never acknowledges what it did not store, and never stops answering
//! logins.

mod common;

const BACKEND: common::Backend = common::Backend::Sqlite;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::nas::Nas;
use common::{Daemon, poll_until, stderr, stdout, write_file};
use liberad::radius::packet::{attr, code};

const CSV: &str = "\
contract_id,name,state,username,password
1001,Maria,blocked,maria,pw-maria
1002,Jose,active,jose,pw-jose
";

/// How long a test waits for an answer it expects not to come.
const SILENCE: Duration = Duration::from_secs(3);
/// A NAS's retransmission interval in these tests.
const RETRY: Duration = Duration::from_millis(500);

fn import(daemon: &Daemon) {
    let file = write_file(&daemon.dir, "contracts.csv", CSV);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
}

/// An Accounting-Request Start for a session of maria.
fn start_packet(nas: &mut Nas, session: &str) -> Vec<u8> {
    nas.accounting_packet(
        1,
        &[
            (attr::USER_NAME, b"maria"),
            (attr::ACCT_SESSION_ID, session.as_bytes()),
        ],
    )
}

/// Whether an accounting Start is acknowledged within `within`, sent and
/// retransmitted as a NAS does, from a NAS of its own.
fn acknowledged(acct: std::net::SocketAddr, session: &str, within: Duration) -> bool {
    let mut nas = Nas::new(acct);
    let request = start_packet(&mut nas, session);
    nas.exchange_retrying(&request, RETRY, within)
        .is_some_and(|reply| reply.code == code::ACCOUNTING_RESPONSE)
}

/// Waits (bounded) until accounting is acknowledged again, as a NAS
/// retrying would see it.
fn acknowledged_again(acct: std::net::SocketAddr, session: &str) {
    poll_until("accounting acknowledged again", || {
        acknowledged(acct, session, RETRY * 4)
            .then_some(())
            .ok_or_else(|| "not acknowledged".to_owned())
    });
}

/// A PAP login answered (within a few retransmissions), from a NAS of its
/// own.
fn login_answer(auth: std::net::SocketAddr, user: &str, password: &str) -> Option<u8> {
    let mut nas = Nas::new(auth);
    let request = nas.pap_request(user, password);
    nas.exchange_retrying(&request, Duration::from_millis(300), Duration::from_secs(2))
        .map(|reply| reply.code)
}

/// A small file system mounted for the test, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs a command as root: directly, or through sudo where the tests run
/// as a user.
fn as_root(program: &str) -> Command {
    if rustix::process::getuid().is_root() {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", program]);
        sudo
    }
}

/// Runs `command`; on failure, says why the test cannot run here.
fn run_or_skip(mut command: Command, what: &str) -> Option<()> {
    match command.output() {
        Ok(out) if out.status.success() => Some(()),
        Ok(out) => {
            common::skip(&format!(
                "cannot {what} (run as root): {}",
                stderr(&out).trim()
            ));
            None
        }
        Err(e) => {
            common::skip(&format!("cannot {what}: {e}"));
            None
        }
    }
}

impl SmallDisk {
    /// A tmpfs of `megabytes`, the test's user's.
    fn tmpfs(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let mut mount = as_root("mount");
        mount
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={megabytes}m,mode=0700,uid={uid},gid={gid}"))
            .arg("tmpfs")
            .arg(&path);
        run_or_skip(mount, "mount a tmpfs")?;
        Some(SmallDisk { path, _dir: dir })
    }

    /// An ext4 file system in a file, loop-mounted: unlike tmpfs, it has
    /// file attributes (`chattr +i`).
    fn ext4(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(u64::from(megabytes) << 20)
            .unwrap();
        let mut mkfs = Command::new("mkfs.ext4");
        mkfs.args(["-q", "-F"]).arg(&image);
        run_or_skip(mkfs, "make an ext4 file system (e2fsprogs)")?;
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let mut mount = as_root("mount");
        mount.args(["-o", "loop"]).arg(&image).arg(&path);
        run_or_skip(mount, "loop-mount a file system")?;
        let disk = SmallDisk { path, _dir: dir };
        let uid = rustix::process::getuid().as_raw();
        let mut chown = as_root("chown");
        chown.arg(uid.to_string()).arg(&disk.path);
        run_or_skip(chown, "give the file system to the test's user")?;
        Some(disk)
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0xa5u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                    break;
                }
            }
        }
        // The last partial block too.
        while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = as_root("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_is_survived_and_writes_come_back_without_a_restart() {
    let Some(disk) = SmallDisk::tmpfs(16) else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", disk.path.join("liberad.db").display());
    let metrics = format!(
        "{}\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
        common::PROFILES
    );
    let daemon = Daemon::start_in(temp.path(), "a", &url, "", &metrics);
    import(&daemon);
    let (auth, acct) = daemon.radius_addresses();
    assert!(acknowledged(acct, "before-1", common::DEADLINE));
    let pong = daemon.request(r#"{"cmd":"ping"}"#);
    let address: std::net::SocketAddr = pong["data"]["metrics"].as_str().unwrap().parse().unwrap();
    let writable = || {
        let text = common::http(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        common::sample(&text, "liberad_database_writable", &[])
    };
    assert_eq!(writable(), Some(1.0));

    let filler = disk.fill();
    // Nothing is acknowledged that could not be stored.
    for n in 0..3 {
        assert!(
            !acknowledged(acct, &format!("full-{n}"), SILENCE),
            "accounting acknowledged on a full disk"
        );
    }
    // Logins are still answered.
    assert_eq!(
        login_answer(auth, "jose", "pw-jose"),
        Some(code::ACCESS_ACCEPT)
    );
    assert_eq!(
        login_answer(auth, "jose", "wrong"),
        Some(code::ACCESS_REJECT)
    );
    // Writes are refused with the cause; ping tells it and fails.
    let out = daemon.ctl(&["contract", "add", "2001"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("disk full"), "{}", stderr(&out));
    let out = daemon.ctl(&["ping"]);
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    assert!(stdout(&out).contains("disk full"), "{}", stdout(&out));
    let (_, pong) = daemon.ctl_json(&["ping"]);
    assert_eq!(pong["data"]["database"]["writable"], false, "{pong}");
    assert!(
        pong["data"]["database"]["failures"].as_u64().unwrap() >= 3,
        "{pong}"
    );
    daemon.wait_for_log("the database refuses writes (disk full)");
    assert_eq!(writable(), Some(0.0));
    let text = common::http(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let failures = common::sample(
        &text,
        "liberad_database_write_failures_total",
        &["cause=\"disk full\""],
    );
    assert!(failures.is_some_and(|n| n >= 3.0), "{text}");

    // The space comes back: so do the writes, with no restart.
    std::fs::remove_file(&filler).unwrap();
    acknowledged_again(acct, "after-1");
    let out = daemon.ctl(&["contract", "add", "2001"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (rc, v) = daemon.ctl_json(&["release", "1001"]);
    assert_eq!(rc, 0, "{v}");
    let out = daemon.ctl(&["ping"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    daemon.wait_for_log("the database takes writes again");
    assert_eq!(writable(), Some(1.0));
    // What was acknowledged is there; what was not, is not.
    let (_, sessions) = daemon.ctl_json(&["sessions", "--limit", "100"]);
    let ids: Vec<&str> = sessions["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["acct_session_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"before-1") && ids.contains(&"after-1"),
        "{ids:?}"
    );
}

/// Sets or clears the immutable attribute of the database's files: writes
/// then fail as on a file that became read-only, even through the
/// descriptors liberad holds.
fn immutable(db: &Path, on: bool) {
    let mut chattr = as_root("chattr");
    chattr.arg(if on { "+i" } else { "-i" });
    for suffix in ["", "-wal"] {
        chattr.arg(format!("{}{suffix}", db.display()));
    }
    let out = chattr.output().unwrap();
    assert!(out.status.success(), "chattr: {}", stderr(&out));
}

#[test]
fn a_file_that_refuses_writes_is_survived_and_writes_come_back_without_a_restart() {
    let Some(disk) = SmallDisk::ext4(32) else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let db = disk.path.join("liberad.db");
    let daemon = Daemon::start_in(
        temp.path(),
        "a",
        &format!("sqlite://{}", db.display()),
        "",
        "",
    );
    import(&daemon);
    let (auth, acct) = daemon.radius_addresses();
    assert!(acknowledged(acct, "before", common::DEADLINE));

    immutable(&db, true);
    let refused = (0..3).all(|n| !acknowledged(acct, &format!("refused-{n}"), SILENCE));
    let login = login_answer(auth, "jose", "pw-jose");
    let write = daemon.ctl(&["contract", "add", "2001"]);
    let ping = daemon.ctl(&["ping"]);
    immutable(&db, false);
    assert!(
        refused,
        "accounting acknowledged into a file that refuses writes"
    );
    assert_eq!(login, Some(code::ACCESS_ACCEPT));
    assert_eq!(write.status.code(), Some(4), "{}", stderr(&write));
    // SQLite tells "read-only" when it finds the file so, "disk I/O
    // error" when a write through an open descriptor fails.
    let cause = |text: &str| text.contains("read-only") || text.contains("disk I/O error");
    assert!(cause(&stderr(&write)), "{}", stderr(&write));
    assert_eq!(ping.status.code(), Some(4), "{}", stdout(&ping));
    assert!(cause(&stdout(&ping)), "{}", stdout(&ping));
    daemon.wait_for_log("the database refuses writes (");

    acknowledged_again(acct, "after");
    let out = daemon.ctl(&["contract", "add", "2001"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(daemon.ctl(&["ping"]).status.code(), Some(0));
}

#[test]
fn logins_are_answered_while_another_process_holds_the_write_lock() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let db = dir.join("liberad.db");
    let mut daemon = Daemon::prepare_in(dir, "a", &format!("sqlite://{}", db.display()), "", "");
    // Small bounds, so that a few seconds of accounting would fill them.
    daemon.radius_settings("max_in_flight = 32\nmax_accounting_in_flight = 32");
    daemon.launch();
    import(&daemon);
    let (auth, acct) = daemon.radius_addresses();
    assert!(acknowledged(acct, "before", common::DEADLINE));

    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // 300 accounting requests a second, none of which can be written.
    let sender = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut nas = Nas::new(acct);
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let request = start_packet(&mut nas, &format!("locked-{sent}"));
                nas.send(&request);
                sent += 1;
                std::thread::sleep(Duration::from_micros(3_300));
            }
            sent
        })
    };
    let locked_until = std::time::Instant::now() + Duration::from_secs(4);
    let mut logins = 0;
    while std::time::Instant::now() < locked_until {
        assert_eq!(
            login_answer(auth, "jose", "pw-jose"),
            Some(code::ACCESS_ACCEPT),
            "a login went unanswered while accounting waited on the lock (after {logins})"
        );
        logins += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert!(sent > 32, "only {sent} accounting requests sent");
    lock.execute_batch("ROLLBACK").unwrap();

    acknowledged_again(acct, "after");
    assert!(logins >= 10, "{logins} logins");
}

#[test]
fn a_deleted_database_stops_the_acknowledgements_and_the_next_silent_fresh_start() {
    let mut daemon = Daemon::start();
    import(&daemon);
    let (auth, acct) = daemon.radius_addresses();
    assert!(acknowledged(acct, "before", common::DEADLINE));
    // Seen before: the outage cache answers for jose when the file is gone.
    assert_eq!(
        login_answer(auth, "jose", "pw-jose"),
        Some(code::ACCESS_ACCEPT)
    );

    let db = daemon.dir.join("liberad.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    assert!(
        !acknowledged(acct, "after-delete", SILENCE),
        "accounting acknowledged into a deleted file"
    );
    assert_eq!(
        login_answer(auth, "jose", "pw-jose"),
        Some(code::ACCESS_ACCEPT),
        "{}",
        daemon.log_text()
    );
    let out = daemon.ctl(&["ping"]);
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("database file deleted"),
        "{}",
        stdout(&out)
    );
    let out = daemon.ctl(&["contract", "add", "3001"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("was deleted"), "{}", stderr(&out));
    daemon.wait_for_log("the database refuses writes (database file deleted)");
    daemon.stop();

    // The next start refuses to begin again on an empty database.
    daemon.spawn();
    let status = daemon.wait_exit();
    assert!(!status.success());
    let log = daemon.log_text();
    assert!(log.contains("liberad created it before"), "{log}");
    assert!(!db.exists(), "a new database was created");
}

#[test]
fn with_create_false_a_missing_database_is_an_error() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let db = dir.join("liberad.db");
    let mut daemon = Daemon::prepare_in(dir, "a", &format!("sqlite://{}", db.display()), "", "");
    daemon.database_settings("create = false");
    daemon.spawn();
    let status = daemon.wait_exit();
    assert!(!status.success());
    assert!(
        daemon.log_text().contains("create = false"),
        "{}",
        daemon.log_text()
    );
    assert!(!db.exists());
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_database_is_created_private_whatever_the_umask() {
    use rustix::fs::Mode;
    let previous = rustix::process::umask(Mode::from_raw_mode(0o022));
    let mut daemon = Daemon::start();
    rustix::process::umask(previous);
    import(&daemon);
    let (_, acct) = daemon.radius_addresses();
    assert!(acknowledged(acct, "s1", common::DEADLINE));
    let db = daemon.dir.join("liberad.db");
    for file in [
        db.clone(),
        PathBuf::from(format!("{}-wal", db.display())),
        PathBuf::from(format!("{}-shm", db.display())),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    // A database others can read is warned about at start.
    daemon.stop();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    daemon.launch();
    daemon.wait_for_log("every local user can read this file");
}

#[test]
fn a_large_import_leaves_no_large_wal_behind() {
    let daemon = Daemon::start();
    let mut text = String::from("contract_id,name,state,username,password,reply\n");
    for n in 0..20_000 {
        text.push_str(&format!(
            "{n},Cliente {n},active,user{n},pw{n},Mikrotik-Rate-Limit = 10M/10M\n"
        ));
    }
    let file = write_file(&daemon.dir, "large.csv", &text);
    let (rc, v) = daemon.ctl_json(&["import", file.to_str().unwrap()]);
    assert_eq!(rc, 0, "{v}");
    let wal = daemon.dir.join("liberad.db-wal");
    let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(size < 1 << 20, "the WAL is {size} bytes after the import");
}

#[test]
fn a_request_in_flight_during_a_reload_finishes_with_the_configuration_it_started_with() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let db = dir.join("liberad.db");
    let daemon = Daemon::start_in(dir, "a", &format!("sqlite://{}", db.display()), "", "");
    import(&daemon);
    let (_, acct) = daemon.radius_addresses();
    // An accounting request held in flight: its write waits for the lock
    // another process holds.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut nas = Nas::new(acct);
    let request = start_packet(&mut nas, "in-flight");
    nas.send(&request);
    // Meanwhile the NAS gets a new secret.
    daemon.edit_config(|text| {
        text.replace(
            &format!("secret = \"{}\"", common::SECRET),
            "secret = \"the-new-secret\"",
        )
    });
    daemon.signal(rustix::process::Signal::HUP);
    daemon.wait_for_log("configuration reloaded");
    lock.execute_batch("ROLLBACK").unwrap();
    // The answer is signed with the secret the request came with.
    let reply = nas
        .receive(&request, common::DEADLINE)
        .expect("the request in flight answered");
    assert_eq!(reply.code, code::ACCOUNTING_RESPONSE);
    // New requests take the new secret.
    let mut renewed = Nas::bound("127.0.0.1:0", acct, "the-new-secret");
    let request = start_packet(&mut renewed, "after-the-reload");
    assert!(
        renewed
            .exchange_retrying(&request, RETRY, common::DEADLINE)
            .is_some()
    );
    assert!(
        !acknowledged(acct, "old-secret", SILENCE),
        "the old secret still answered"
    );
}
