//! Configuration mistakes against the real binary: `--check-config` refuses
//! what would silence the logs or abort the daemon, says what is probably
//! not meant, and the variables `liberactl` reads never stop the daemon.
//!
//! Backend-independent: runs on SQLite only.

mod common;

const BACKEND: common::Backend = common::Backend::Sqlite;

use std::process::{Command, Output};

use common::{Daemon, LIBERAD, stderr, write_file};

fn check_config(text: &str) -> Output {
    let temp = tempfile::tempdir().unwrap();
    let path = write_file(temp.path(), "liberad.toml", text);
    Command::new(LIBERAD)
        .args(["--check-config", "--config", path.to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap()
}

const NAS: &str = "[[nas]]\nname = \"t\"\naddress = \"127.0.0.1\"\nsecret = \"s\"\n";

#[test]
fn check_config_refuses_what_would_silence_or_abort_the_daemon() {
    for (text, key) in [
        ("[log]\nlevel = \"warning\"\n", "log.level"),
        ("[log]\nlevel = \"verbose\"\n", "log.level"),
        ("[log]\nlevel = \"liberad=chatty\"\n", "log.level"),
        (
            "[radius]\nmax_in_flight = 4611686018427387904\n",
            "radius.max_in_flight",
        ),
        (
            "[radius]\nmax_accounting_in_flight = 4611686018427387904\n",
            "radius.max_accounting_in_flight",
        ),
        (
            "[admin]\nmax_connections = 4611686018427387904\n",
            "admin.max_connections",
        ),
        (
            "[database]\ncache_logins = 4611686018427387904\n",
            "database.cache_logins",
        ),
        // A token must not cross a network in plain HTTP by accident.
        ("[api]\nlisten = \"0.0.0.0:8080\"\n", "api.listen"),
        ("[api]\nlisten = \"[::]:8080\"\n", "api.listen"),
        (
            "[enforcement]\nwait_timeout_secs = 4611686018427387904\n",
            "enforcement.wait_timeout_secs",
        ),
        (
            "[admin]\nrequest_timeout_secs = 0\n",
            "admin.request_timeout_secs",
        ),
        (
            "[database]\nurl = \"postgres://u:secret@db.example:99999/liberad\"\n",
            "database.url",
        ),
    ] {
        let out = check_config(&format!("{text}{NAS}"));
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{text}: {message}");
        assert!(message.contains(key), "{text}: {message}");
        assert!(
            !message.contains("secret"),
            "a password in the message: {message}"
        );
    }
}

#[test]
fn check_config_warns_about_what_is_probably_not_meant() {
    let out = check_config("[admin]\nsocket_mode = \"0666\"\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("warning") && text.contains("[[nas]]"),
        "{text}"
    );
    assert!(text.contains("0666"), "{text}");
    let out = check_config(&format!("[admin]\nsocket_mode = \"0660\"\n{NAS}"));
    assert_eq!(out.status.code(), Some(0));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    // Plain HTTP off loopback, asked for: accepted, and said.
    let out = check_config(&format!(
        "[api]\nlisten = \"0.0.0.0:8080\"\nallow_plaintext = true\n{NAS}"
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("api.allow_plaintext"),
        "{}",
        stderr(&out)
    );
    let out = check_config(&format!("[api]\nlisten = \"127.0.0.1:8080\"\n{NAS}"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn a_daemon_without_nas_says_every_packet_will_be_dropped() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let mut daemon = Daemon::prepare_in(dir, "a", &common::database(dir), "", "");
    let text = std::fs::read_to_string(&daemon.config).unwrap();
    let nas = "[[nas]]\nname = \"test\"\naddress = \"127.0.0.1\"\nsecret = \"testing123\"\n";
    assert!(text.contains(nas));
    std::fs::write(&daemon.config, text.replace(nas, "")).unwrap();
    daemon.launch();
    daemon.wait_for_log("no [[nas]] entry: every RADIUS packet will be dropped");
    assert_eq!(daemon.ctl_json(&["ping"]).0, 0);
}

#[test]
fn the_variables_of_liberactl_never_stop_the_daemon() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let mut daemon = Daemon::prepare_in(dir, "a", &common::database(dir), "", "");
    daemon.spawn_with_env(&[
        ("LIBERAD_OPERATOR", "ana"),
        ("LIBERAD_SOCKET", "/nonexistent/liberad.sock"),
    ]);
    daemon.wait_ready();
    assert_eq!(daemon.ctl_json(&["ping"]).0, 0);
    daemon.stop();

    // Any other LIBERAD_ variable is still refused, by name.
    daemon.spawn_with_env(&[("LIBERAD_OPERATR", "ana")]);
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(78));
    let log = daemon.log_text();
    assert!(log.contains("LIBERAD_OPERATR"), "{log}");
}

#[test]
fn secrets_every_local_user_can_read_are_refused_end_to_end() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let daemon = Daemon::prepare_in(dir, "a", &common::database(dir), "", "");
    // A real BRAS, not a loopback test entry.
    daemon.edit_config(|text| {
        format!(
            "{text}\n[[nas]]\nname = \"bras-01\"\naddress = \"10.0.0.1\"\nsecret = \"s3cr3t\"\n"
        )
    });
    let mode = |m: u32| {
        std::fs::set_permissions(&daemon.config, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let run = |args: &[&str]| {
        Command::new(LIBERAD)
            .args(args)
            .arg("--config")
            .arg(&daemon.config)
            .env_clear()
            .output()
            .unwrap()
    };
    mode(0o644);
    for args in [&["--check-config"][..], &[][..]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains("bras-01") && message.contains("chmod o-r"),
            "{args:?}: {message}"
        );
    }
    mode(0o640);
    let out = run(&["--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A secret file readable by everyone is refused the same way.
    let secret = write_file(dir, "bras-02.secret", "s3cr3t\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
    daemon.edit_config(|text| {
        format!(
            "{text}\n[[nas]]\nname = \"bras-02\"\naddress = \"10.0.0.2\"\nsecret_file = \"{}\"\n",
            secret.display()
        )
    });
    let out = run(&["--check-config"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("bras-02"), "{}", stderr(&out));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(run(&["--check-config"]).status.code(), Some(0));
}
