//! A real BRAS in front of liberad: Debian's `pppoe-server` (rp-pppoe)
//! starting pppd 2.4.9 with its RADIUS plugin (`radius.so`, and `radattr.so`
//! to record the reply), and PPPoE subscribers (pppd with `rp-pppoe.so`) on
//! the other side of veth pairs, in network namespaces this test makes.
//! What pppd, the subscribers and liberad show must agree: PAP, CHAP-MD5,
//! MS-CHAPv2 and MS-CHAPv2 with MPPE-128 bring the link up with the login's
//! Framed-IP-Address and the profile's attributes; a wrong password and a
//! cancelled contract fail the link; a blocked contract gets the blocked
//! profile, and after a release the released one with a Session-Timeout
//! that ends by the release's end; Start, Interim and Stop reach the
//! sessions table; two subscribers whose sessions start in the same second
//! (pppd 2.4.9 makes Acct-Session-Id from the time alone) stay two sessions.
//! The scenario is in `bras/scenario.rs`.
//!
//! Where the kernel has PPP (/dev/ppp, or `modprobe ppp_generic` works) the
//! scenario runs here, as root, in a network namespace of its own. Where it
//! has not (CONFIG_PPP unset), it runs in a throw-away QEMU guest booting
//! Debian's kernel over the host's file system (`bras/guest.rs`), in
//! software emulation. Either way it takes a minute and a half, most of it
//! waiting for pppd's first Interim-Update (60 s at the least); the guest's
//! boot adds a few seconds. Missing programs skip the test with a message,
//! except under `CI=true`. `LIBERAD_BRAS_LOGS=1` prints pppd's,
//! pppoe-server's and liberad's logs even when the scenario passes.

mod common;

#[path = "bras/guest.rs"]
mod guest;
#[path = "bras/scenario.rs"]
mod scenario;
#[path = "bras/tap.rs"]
mod tap;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BACKEND: common::Backend = common::Backend::Sqlite;

/// Set (to `here`) where the scenario itself is to run: in the guest, or in
/// the network namespace made for it on the host.
const SCENARIO_HERE: &str = "LIBERAD_BRAS_SCENARIO";

/// This test's name, with which the guest or the namespace runs it again.
const TEST_NAME: &str = "pppoe_subscribers_through_pppd_against_liberad";

/// How long the scenario may take on the host.
const HOST_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// What a run of the scenario elsewhere (guest or namespace) left.
pub struct Outcome {
    /// The test binary's exit status there, if it got that far.
    status: Option<i32>,
    output: String,
    diagnostics: String,
    took: Duration,
}

#[test]
fn pppoe_subscribers_through_pppd_against_liberad() {
    if std::env::var(SCENARIO_HERE).as_deref() == Ok("here") {
        scenario::run();
        return;
    }
    if let Some(why) = missing_programs() {
        common::skip(&why);
        return;
    }
    let (place, outcome) = if kernel_has_ppp() {
        if !rustix::process::geteuid().is_root() {
            common::skip("the scenario needs root to make network namespaces");
            return;
        }
        ("in a network namespace of the host", in_namespace())
    } else {
        let Some(qemu) = find_program("qemu-system-x86_64") else {
            common::skip(
                "this kernel has no PPP and qemu-system-x86_64 is missing (Debian's qemu-system-x86)",
            );
            return;
        };
        let kernel = match guest::Kernel::find() {
            Ok(kernel) => kernel,
            Err(why) => {
                common::skip(&format!("this kernel has no PPP, and for a guest: {why}"));
                return;
            }
        };
        let busybox = find_program("busybox").unwrap_or_default();
        if !guest::is_static_elf(&busybox) {
            common::skip("the guest's initramfs needs a static busybox (Debian's busybox-static)");
            return;
        }
        (
            "in a QEMU guest (this kernel has no PPP)",
            guest::run(&kernel, &qemu, &busybox, TEST_NAME),
        )
    };
    eprintln!(
        "---- the scenario {place}, {:.0} s ----\n{}---- end of the scenario ----",
        outcome.took.as_secs_f64(),
        outcome.output
    );
    assert_eq!(
        outcome.status,
        Some(0),
        "the scenario failed {place} (output above)\n{}",
        outcome.diagnostics
    );
}

/// A program on the PATH or in the system's sbin directories.
pub fn find_program(name: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

/// What the scenario needs wherever it runs, if something is missing.
fn missing_programs() -> Option<String> {
    let programs = [
        ("pppd", "ppp"),
        ("pppoe-server", "pppoe"),
        ("pppoe", "pppoe"),
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("modprobe", "kmod"),
        ("busybox", "busybox-static"),
    ];
    let mut missing: Vec<String> = programs
        .iter()
        .filter(|(program, _)| find_program(program).is_none())
        .map(|(program, package)| format!("{program} (Debian's {package})"))
        .collect();
    let plugins = std::fs::read_dir("/usr/lib/pppd")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|dir| dir.join("radius.so").exists());
    match plugins {
        Some(dir) => {
            for plugin in ["radattr.so", "rp-pppoe.so"] {
                if !dir.join(plugin).exists() {
                    missing.push(format!("pppd's {plugin} (Debian's ppp)"));
                }
            }
        }
        None => missing.push("pppd's radius.so (Debian's ppp)".to_owned()),
    }
    (!missing.is_empty()).then(|| format!("missing: {}", missing.join(", ")))
}

/// Whether this kernel has PPP: /dev/ppp, or a ppp_generic module that
/// loads (only root can tell; root is what the host run needs anyway).
fn kernel_has_ppp() -> bool {
    if Path::new("/dev/ppp").exists() {
        return true;
    }
    let loaded = Command::new("modprobe")
        .args(["-q", "ppp_generic"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    loaded && Path::new("/dev/ppp").exists()
}

/// Runs the scenario on the host in a fresh network namespace (the BRAS's),
/// by starting this test again there.
fn in_namespace() -> Outcome {
    let temp = tempfile::tempdir().expect("temporary directory");
    let ns = format!("liberad-bras-{}", std::process::id());
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(ip(&["netns", "add", &ns]), "ip netns add {ns}");
    struct Namespace(String);
    impl Drop for Namespace {
        fn drop(&mut self) {
            // What the scenario left running there (the BRAS's pppd) goes
            // with it.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _namespace = Namespace(ns.clone());
    assert!(ip(&["-n", &ns, "link", "set", "lo", "up"]));
    let output = temp.path().join("output.txt");
    let file = std::fs::File::create(&output).unwrap();
    let began = Instant::now();
    let mut child = common::dies_with_test("ip")
        .args(["netns", "exec", &ns])
        .arg(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(SCENARIO_HERE, "here")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start the scenario");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if began.elapsed() > HOST_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Outcome {
        status,
        output: std::fs::read_to_string(&output).unwrap_or_default(),
        diagnostics: String::new(),
        took: began.elapsed(),
    }
}
