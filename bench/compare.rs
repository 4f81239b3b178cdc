//! liberad and FreeRADIUS + rlm_sql side by side, fed by the same load
//! generator with the same subscriber base, on one machine: the server on
//! one core, the generator on the other (`taskset`); and liberad's growth
//! with subscribers and with releases ending at once.
//!
//! Every figure is the median of `--repeat` runs. A run during which the
//! kernel dropped UDP datagrams (`/proc/net/snmp`, InErrors) is marked: it
//! measured the socket, not the server.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::Report;
use crate::nas::NasReport;

#[derive(Clone, Debug, clap::Args)]
pub struct CompareArgs {
    /// A few seconds, a small base, liberad only: checks that the
    /// benchmark works (CI), measures nothing worth keeping.
    #[arg(long)]
    pub smoke: bool,
    /// Logins in the subscriber base.
    #[arg(long, default_value_t = 100_000)]
    pub logins: u64,
    /// Runs of each measurement (the median is shown).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Seconds of each run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// The fixed moderate rate at which latency is measured.
    #[arg(long, default_value_t = 10_000)]
    pub fixed_rate: u64,
    /// Requests in flight during the maximum-rate runs.
    #[arg(long, default_value_t = 512)]
    pub window: usize,
    /// Leave FreeRADIUS out.
    #[arg(long)]
    pub no_freeradius: bool,
    /// Also measure liberad's growth (10 000 to 1 000 000 logins; 10 000
    /// and 100 000 releases ending at once).
    #[arg(long)]
    pub growth: bool,
    /// Where the binaries are.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Working directory (default: a new temporary one, removed after).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Write every figure here as JSON too.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// The core the server runs on; the generator gets the next one.
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
}

pub(crate) const SECRET: &str = "testing123";
pub(crate) const AUTH_PORT: u16 = 31812;
const ACCT_PORT: u16 = 31813;
const COA_PORT: u16 = 31799;

/// One server's figures, medians of the runs.
#[derive(Clone, Debug, Default, Serialize)]
struct Figures {
    server: String,
    auth_max_rate: f64,
    auth_cpu_us: f64,
    fixed_rate: u64,
    fixed_p50_us: f64,
    fixed_p99_us: f64,
    fixed_p999_us: f64,
    fixed_timeouts: f64,
    acct_max_rate: f64,
    acct_unanswered: f64,
    acct_cpu_us: f64,
    rss_mb: f64,
    runs_with_drops: usize,
    /// Median share of CPU time taken by the hypervisor during the runs.
    steal_pct: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
struct Growth {
    logins: u64,
    seed_s: f64,
    startup_s: f64,
    rss_mb: f64,
    auth_cpu_us: f64,
    auth_max_rate: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
struct Expiry {
    releases: u64,
    rate_limit: u64,
    /// Seconds from the releases' end to none left running.
    ended_after_s: f64,
    /// Seconds from their end to the first and the last CoA at the NAS.
    first_coa_after_s: f64,
    last_coa_after_s: f64,
    sessions_told: u64,
    requests: u64,
    retransmissions: u64,
    /// New requests in the busiest second (sliding).
    max_per_second: u64,
}

#[derive(Debug, Default, Serialize)]
struct Results {
    machine: String,
    logins: u64,
    repeat: usize,
    duration_s: f64,
    servers: Vec<Figures>,
    growth: Vec<Growth>,
    expiry: Vec<Expiry>,
}

/// A server under test: its process, however it was started.
pub(crate) struct Running {
    pub(crate) pid: u32,
    child: Option<Child>,
    stop: Box<dyn Fn(&mut Running)>,
}

impl Running {
    pub(crate) fn stop(mut self) {
        let stop = std::mem::replace(&mut self.stop, Box::new(|_| {}));
        stop(&mut self);
    }
}

pub fn run(args: &CompareArgs) -> Result<(), String> {
    let mut args = args.clone();
    if args.smoke {
        args.logins = args.logins.min(2000);
        args.repeat = 1;
        args.duration = args.duration.min(1.0);
        args.fixed_rate = args.fixed_rate.min(1000);
        args.no_freeradius = true;
        args.growth = false;
    }
    let (work, remove_after) = match &args.work {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("liberad-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = run_in(&args, &work);
    if remove_after {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn run_in(args: &CompareArgs, work: &Path) -> Result<(), String> {
    let bins = Bins::find(&args.bin_dir)?;
    raise_socket_buffers();
    let mut results = Results {
        machine: machine(),
        logins: args.logins,
        repeat: args.repeat,
        duration_s: args.duration,
        ..Results::default()
    };
    eprintln!("== subscriber base: {} logins", args.logins);
    let base = work.join("subscribers.csv");
    bins.bench(&[
        "subscribers",
        "--count",
        &args.logins.to_string(),
        "--out",
        path(&base),
    ])?;

    eprintln!("== liberad (SQLite)");
    let dir = work.join("liberad");
    let database = prepare_liberad(&bins, &dir, &base, None)?;
    let server = start_liberad(&bins, &dir, &database, args.server_core, 50)?;
    let figures = measure("liberad", &bins, args, &server);
    server.stop();
    results.servers.push(figures?);

    if !args.no_freeradius {
        eprintln!("== FreeRADIUS + rlm_sql (SQLite)");
        let dir = work.join("freeradius");
        let server = start_freeradius(&dir, &base, args.server_core)?;
        let figures = measure("FreeRADIUS", &bins, args, &server);
        server.stop();
        results.servers.push(figures?);
    }

    if args.growth {
        for logins in [10_000, 100_000, 1_000_000] {
            eprintln!("== growth: {logins} logins");
            results.growth.push(growth(&bins, args, work, logins)?);
        }
        for releases in [10_000, 100_000] {
            eprintln!("== {releases} releases ending at once");
            results
                .expiry
                .push(expiry(&bins, args, work, releases, 2000)?);
        }
    }

    print_results(&results);
    if let Some(out) = &args.json_out {
        let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
        std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    if args.smoke {
        let f = &results.servers[0];
        if f.auth_max_rate <= 0.0 || f.acct_max_rate <= 0.0 || f.acct_unanswered > 0.0 {
            return Err(format!("smoke run failed: {f:?}"));
        }
        eprintln!("== smoke run passed");
    }
    Ok(())
}

/// The binaries, with liberad-bench itself.
pub(crate) struct Bins {
    liberad: PathBuf,
    pub(crate) liberactl: PathBuf,
    bench: PathBuf,
}

impl Bins {
    pub(crate) fn find(dir: &Path) -> Result<Bins, String> {
        let bins = Bins {
            liberad: dir.join("liberad"),
            liberactl: dir.join("liberactl"),
            bench: std::env::current_exe().map_err(|e| e.to_string())?,
        };
        for bin in [&bins.liberad, &bins.liberactl] {
            if !bin.exists() {
                return Err(format!(
                    "{} is missing: build with `cargo build --release --bins`",
                    bin.display()
                ));
            }
        }
        Ok(bins)
    }

    /// Runs liberad-bench with `args`, its output passed through.
    fn bench(&self, args: &[&str]) -> Result<String, String> {
        run_command(Command::new(&self.bench).args(args))
    }

    /// The load generator on the generator's core, its JSON report.
    pub(crate) fn load(&self, core: usize, args: &[String]) -> Result<Report, String> {
        let out = run_command(
            Command::new("taskset")
                .args(["-c", &core.to_string()])
                .arg(&self.bench)
                .arg("load")
                .args(args)
                .arg("--json"),
        )?;
        serde_json::from_str(out.trim()).map_err(|e| format!("load printed {out:?}: {e}"))
    }
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 paths")
}

fn run_command(command: &mut Command) -> Result<String, String> {
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{command:?} failed: {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lets sockets have 16 MiB buffers when allowed (root); liberad and the
/// generator ask for 8 MiB.
fn raise_socket_buffers() {
    for key in ["net.core.rmem_max", "net.core.wmem_max"] {
        let _ = Command::new("sysctl")
            .args(["-q", "-w", &format!("{key}=16777216")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// UDP datagrams the kernel dropped so far (all sockets).
fn udp_drops() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(name, _)| *name == "InErrors")
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

/// CPU time of a process (all its threads), in microseconds.
fn cpu_us(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces: utime and
    // stime are the 14th and 15th fields.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks * 1_000_000 / clock_ticks()
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// VmRSS: the resident memory of the process now.
pub(crate) fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// A memory figure of `/proc/PID/status` (kB there), in MB.
pub(crate) fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Pins every thread of `pid` to `core`.
fn pin(pid: u32, core: usize) {
    let _ = Command::new("taskset")
        .args(["-a", "-c", "-p", &core.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

/// The generator's core: the one after the server's, or the server's own
/// on a machine with a single core (then the figures mean little).
fn generator_core(args: &CompareArgs) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if args.server_core + 1 < cores {
        args.server_core + 1
    } else {
        args.server_core
    }
}

/// The median of some figures.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        f64::midpoint(values[mid - 1], values[mid])
    }
}

/// One load run, with the server's CPU time and the kernel's drops.
struct Run {
    report: Report,
    cpu_us_per_request: f64,
    drops: u64,
    /// Share of the machine's CPU time the hypervisor took (%).
    steal_pct: f64,
}

fn one_run(
    bins: &Bins,
    args: &CompareArgs,
    server: &Running,
    load: &[String],
) -> Result<Run, String> {
    let drops = udp_drops();
    let steal = steal_ticks();
    let began = Instant::now();
    let cpu = cpu_us(server.pid);
    let report = bins.load(generator_core(args), load)?;
    let cpu = cpu_us(server.pid).saturating_sub(cpu);
    let drops = udp_drops().saturating_sub(drops);
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let steal_pct = steal_ticks().saturating_sub(steal) as f64
        / clock_ticks() as f64
        / began.elapsed().as_secs_f64().max(1e-3)
        / cores
        * 100.0;
    if drops > 0 {
        eprintln!("   ({drops} UDP datagrams dropped by the kernel during this run)");
    }
    Ok(Run {
        cpu_us_per_request: cpu as f64 / (report.answered.max(1)) as f64,
        report,
        drops,
        steal_pct,
    })
}

/// CPU time the hypervisor has taken from this machine so far (`steal` in
/// `/proc/stat`), in clock ticks: on a virtual machine, the reason a run's
/// tail latencies can be worse than the server's.
fn steal_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .next()
        .and_then(|cpu| cpu.split_whitespace().nth(8))
        .and_then(|steal| steal.parse().ok())
        .unwrap_or(0)
}

fn load_args(args: &CompareArgs, kind: &str, rate: u64, port: u16) -> Vec<String> {
    [
        "--server",
        &format!("127.0.0.1:{port}"),
        "--secret",
        SECRET,
        "--kind",
        kind,
        "--users",
        &args.logins.to_string(),
        "--rate",
        &rate.to_string(),
        "--window",
        &args.window.to_string(),
        "--duration",
        &args.duration.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The measurements of one server.
fn measure(
    name: &str,
    bins: &Bins,
    args: &CompareArgs,
    server: &Running,
) -> Result<Figures, String> {
    // Warm-up: caches, pools, the page cache.
    one_run(bins, args, server, &load_args(args, "auth", 0, AUTH_PORT))?;
    let mut figures = Figures {
        server: name.to_owned(),
        fixed_rate: args.fixed_rate,
        ..Figures::default()
    };
    let runs = |kind: &str, rate: u64, port: u16| -> Result<Vec<Run>, String> {
        (0..args.repeat)
            .map(|i| {
                let run = one_run(bins, args, server, &load_args(args, kind, rate, port))?;
                eprintln!(
                    "   {name} {kind} rate {}: run {}: {:.0}/s, p99 {} us, {} timeouts, {:.1} us CPU/request, {:.1} % stolen",
                    if rate == 0 { "max".to_owned() } else { rate.to_string() },
                    i + 1,
                    run.report.rate,
                    run.report.p99_us,
                    run.report.timeouts,
                    run.cpu_us_per_request,
                    run.steal_pct
                );
                Ok(run)
            })
            .collect()
    };
    let auth = runs("auth", 0, AUTH_PORT)?;
    let fixed = runs("auth", args.fixed_rate, AUTH_PORT)?;
    let acct = runs("acct", 0, ACCT_PORT)?;
    figures.runs_with_drops = [&auth, &fixed, &acct]
        .iter()
        .flat_map(|r| r.iter())
        .filter(|r| r.drops > 0)
        .count();
    figures.steal_pct = median(
        [&auth, &fixed, &acct]
            .iter()
            .flat_map(|r| r.iter())
            .map(|r| r.steal_pct)
            .collect(),
    );
    let m = |runs: &[Run], f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    figures.auth_max_rate = m(&auth, &|r| r.report.rate);
    figures.auth_cpu_us = m(&auth, &|r| r.cpu_us_per_request);
    figures.fixed_p50_us = m(&fixed, &|r| r.report.p50_us as f64);
    figures.fixed_p99_us = m(&fixed, &|r| r.report.p99_us as f64);
    figures.fixed_p999_us = m(&fixed, &|r| r.report.p999_us as f64);
    figures.fixed_timeouts = m(&fixed, &|r| r.report.timeouts as f64);
    figures.acct_max_rate = m(&acct, &|r| r.report.rate);
    figures.acct_unanswered = m(&acct, &|r| r.report.timeouts as f64);
    figures.acct_cpu_us = m(&acct, &|r| r.cpu_us_per_request);
    figures.rss_mb = rss_mb(server.pid);
    Ok(figures)
}

/// liberad's configuration and database in `dir`, seeded from `base`;
/// returns the database URL.
fn prepare_liberad(
    bins: &Bins,
    dir: &Path,
    base: &Path,
    releases: Option<(i64, bool)>, // (end, Unix seconds; sessions online)
) -> Result<String, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let database = format!("sqlite://{}", dir.join("liberad.db").display());
    let mut seed = vec![
        "seed".to_owned(),
        "--database".to_owned(),
        database.clone(),
        "--subscribers".to_owned(),
        path(base).to_owned(),
    ];
    if let Some((ends_in, online)) = releases {
        seed.extend(["--release-ends-at".to_owned(), ends_in.to_string()]);
        if online {
            seed.push("--online-released".to_owned());
        }
    }
    let seed: Vec<&str> = seed.iter().map(String::as_str).collect();
    let summary = bins.bench(&seed)?;
    eprintln!("   seeded: {}", summary.trim());
    Ok(database)
}

fn liberad_config(dir: &Path, database: &str, rate_limit: u64) -> String {
    let dictionaries = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dictionaries");
    format!(
        r#"timezone = "America/Sao_Paulo"
state_dir = "{dir}"
[database]
url = "{database}"
[admin]
socket = "{dir}/liberad.sock"
[log]
level = "warn"
[radius]
auth_listen = "127.0.0.1:{AUTH_PORT}"
acct_listen = "127.0.0.1:{ACCT_PORT}"
recv_buffer_bytes = 8388608
dictionaries = ["{dictionaries}/dictionary.mikrotik"]
[[nas]]
name = "bench"
address = "127.0.0.1"
secret = "{SECRET}"
coa_port = {COA_PORT}
[enforcement]
max_per_second_per_nas = {rate_limit}
max_in_flight_per_nas = 255
[profiles.active]
login_reply = true
[profiles.reduced]
reply = ["Mikrotik-Rate-Limit = 2M/2M"]
login_reply = false
[profiles.released]
login_reply = true
[profiles.blocked]
action = "accept"
reply = ["Framed-Pool = bloqueados", "Mikrotik-Address-List = bloqueados"]
login_reply = false
"#,
        dir = dir.display(),
        dictionaries = dictionaries.display(),
    )
}

/// Starts liberad on `database`, pinned to `core`, and waits until its
/// admin socket answers.
pub(crate) fn start_liberad(
    bins: &Bins,
    dir: &Path,
    database: &str,
    core: usize,
    rate_limit: u64,
) -> Result<Running, String> {
    let config = dir.join("liberad.toml");
    std::fs::write(&config, liberad_config(dir, database, rate_limit))
        .map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("liberad.log")).map_err(|e| e.to_string())?;
    let child = Command::new("taskset")
        .args(["-c", &core.to_string()])
        .arg(&bins.liberad)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start liberad: {e}"))?;
    let pid = child.id();
    let mut running = Running {
        pid,
        child: Some(child),
        stop: Box::new(|r: &mut Running| {
            if let Some(mut child) = r.child.take() {
                let _ = Command::new("kill").arg(r.pid.to_string()).status();
                let _ = child.wait();
            }
        }),
    };
    let socket = dir.join("liberad.sock");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Some(Ok(Some(status))) = running.child.as_mut().map(Child::try_wait) {
            return Err(format!(
                "liberad exited ({status}); see {}",
                dir.join("liberad.log").display()
            ));
        }
        if Instant::now() > deadline {
            running.stop();
            return Err("liberad did not become ready in 120 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pin(pid, core);
    Ok(running)
}

fn freeradius_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/freeradius.sh")
}

fn start_freeradius(dir: &Path, base: &Path, core: usize) -> Result<Running, String> {
    let script = freeradius_script();
    run_command(Command::new(&script).arg("install"))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let started = Instant::now();
    run_command(Command::new(&script).args([
        "setup",
        path(dir),
        path(base),
        &AUTH_PORT.to_string(),
        &ACCT_PORT.to_string(),
        SECRET,
    ]))?;
    eprintln!(
        "   FreeRADIUS database loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let out = run_command(Command::new(&script).args(["start", path(dir)]))?;
    let pid: u32 = out
        .split_whitespace()
        .last()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("freeradius.sh start printed {out:?}, not a pid"))?;
    pin(pid, core);
    let dir = dir.to_owned();
    Ok(Running {
        pid,
        child: None,
        stop: Box::new(move |_| {
            let _ = Command::new(freeradius_script())
                .args(["stop", path(&dir)])
                .status();
        }),
    })
}

fn growth(bins: &Bins, args: &CompareArgs, work: &Path, logins: u64) -> Result<Growth, String> {
    let dir = work.join(format!("growth-{logins}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let base = dir.join("subscribers.csv");
    bins.bench(&[
        "subscribers",
        "--count",
        &logins.to_string(),
        "--out",
        path(&base),
    ])?;
    let seeded = Instant::now();
    let database = prepare_liberad(bins, &dir.join("liberad"), &base, None)?;
    let seed_s = seeded.elapsed().as_secs_f64();
    let begun = Instant::now();
    let server = start_liberad(bins, &dir.join("liberad"), &database, args.server_core, 50)?;
    let startup_s = begun.elapsed().as_secs_f64();
    let mut per_size = args.clone();
    per_size.logins = logins;
    let result = (|| {
        one_run(
            bins,
            &per_size,
            &server,
            &load_args(&per_size, "auth", 0, AUTH_PORT),
        )?;
        let runs: Vec<Run> = (0..args.repeat)
            .map(|_| {
                one_run(
                    bins,
                    &per_size,
                    &server,
                    &load_args(&per_size, "auth", 0, AUTH_PORT),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok::<_, String>(Growth {
            logins,
            seed_s,
            startup_s,
            rss_mb: rss_mb(server.pid),
            auth_cpu_us: median(runs.iter().map(|r| r.cpu_us_per_request).collect()),
            auth_max_rate: median(runs.iter().map(|r| r.report.rate).collect()),
        })
    })();
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn expiry(
    bins: &Bins,
    args: &CompareArgs,
    work: &Path,
    releases: u64,
    rate_limit: u64,
) -> Result<Expiry, String> {
    let dir = work.join(format!("expiry-{releases}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let base = dir.join("subscribers.csv");
    bins.bench(&[
        "subscribers",
        "--count",
        &releases.to_string(),
        "--mix",
        "released=100",
        "--out",
        path(&base),
    ])?;
    // The releases end some seconds after liberad is up (seeding takes
    // some too).
    let ends_at = (seconds_now() + 30.0 + (releases / 2_000) as f64).floor();
    let database = prepare_liberad(
        bins,
        &dir.join("liberad"),
        &base,
        Some((ends_at as i64, true)),
    )?;
    let nas = Command::new("taskset")
        .args(["-c", &generator_core(args).to_string()])
        .arg(&bins.bench)
        .args([
            "coa-nas",
            "--listen",
            &format!("127.0.0.1:{COA_PORT}"),
            "--secret",
            SECRET,
            "--expect",
            &releases.to_string(),
            "--idle",
            "30",
            "--limit",
            "3600",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the CoA NAS: {e}"))?;
    let server = start_liberad(
        bins,
        &dir.join("liberad"),
        &database,
        args.server_core,
        rate_limit,
    )?;
    if seconds_now() >= ends_at {
        eprintln!(
            "   warning: liberad was ready only after the releases' end; raise the lead time"
        );
    }
    let ended_after = wait_all_ended(&database, ends_at);
    let out = nas.wait_with_output().map_err(|e| e.to_string())?;
    server.stop();
    let report: NasReport = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "the CoA NAS printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Expiry {
        releases,
        rate_limit,
        ended_after_s: ended_after?,
        first_coa_after_s: report.first_at - ends_at,
        last_coa_after_s: report.last_at - ends_at,
        sessions_told: report.sessions,
        requests: report.requests,
        retransmissions: report.retransmissions,
        max_per_second: report.max_per_second,
    })
}

fn seconds_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Seconds after `ends_at` when the database holds no running release.
fn wait_all_ended(database: &str, ends_at: f64) -> Result<f64, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let path = database.trim_start_matches("sqlite://");
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let open: i64 =
                sqlx::query_scalar("SELECT count(*) FROM releases WHERE ended_at IS NULL")
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
            let now = seconds_now();
            if open == 0 && now >= ends_at {
                pool.close().await;
                return Ok(now - ends_at);
            }
            if Instant::now() > deadline {
                return Err("releases still running after an hour".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "-".to_owned()
    } else {
        format!("{:.2}", a / b)
    }
}

/// How one row of the table reads a server's figures.
type Measure = Box<dyn Fn(&Figures) -> f64>;

fn print_results(results: &Results) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nMachine: {}\nSubscriber base: {} logins; {} runs of {} s each, medians.\n",
        results.machine, results.logins, results.repeat, results.duration_s
    );
    let l = &results.servers[0];
    let f = results.servers.get(1);
    let rows: Vec<(&str, Measure)> = vec![
        (
            "Access-Request, max rate (/s)",
            Box::new(|x| x.auth_max_rate),
        ),
        (
            "server CPU per Access-Request (us)",
            Box::new(|x| x.auth_cpu_us),
        ),
        (
            "latency p50 at the fixed rate (us)",
            Box::new(|x| x.fixed_p50_us),
        ),
        (
            "latency p99 at the fixed rate (us)",
            Box::new(|x| x.fixed_p99_us),
        ),
        (
            "latency p99.9 at the fixed rate (us)",
            Box::new(|x| x.fixed_p999_us),
        ),
        ("timeouts at the fixed rate", Box::new(|x| x.fixed_timeouts)),
        ("Accounting, max rate (/s)", Box::new(|x| x.acct_max_rate)),
        ("Accounting unanswered", Box::new(|x| x.acct_unanswered)),
        (
            "server CPU per Accounting-Request (us)",
            Box::new(|x| x.acct_cpu_us),
        ),
        ("resident memory (MB)", Box::new(|x| x.rss_mb)),
        (
            "runs with kernel UDP drops",
            Box::new(|x| x.runs_with_drops as f64),
        ),
        (
            "CPU taken by the hypervisor during the runs (%)",
            Box::new(|x| x.steal_pct),
        ),
    ];
    let _ = writeln!(
        out,
        "| measure (fixed rate {}/s) | liberad | FreeRADIUS | liberad / FreeRADIUS |",
        l.fixed_rate
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (label, get) in &rows {
        let a = get(l);
        let (b, r) = f.map_or(("-".to_owned(), "-".to_owned()), |f| {
            (format!("{:.1}", get(f)), ratio(a, get(f)))
        });
        let _ = writeln!(out, "| {label} | {a:.1} | {b} | {r} |");
    }
    if !results.growth.is_empty() {
        let _ = writeln!(
            out,
            "\n| logins | seed (s) | start-up (s) | resident memory (MB) | CPU per Access-Request (us) | max rate (/s) |\n|---:|---:|---:|---:|---:|---:|"
        );
        for g in &results.growth {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.2} | {:.1} | {:.1} | {:.0} |",
                g.logins, g.seed_s, g.startup_s, g.rss_mb, g.auth_cpu_us, g.auth_max_rate
            );
        }
    }
    if !results.expiry.is_empty() {
        let _ = writeln!(
            out,
            "\n| releases ending at once | all ended after (s) | first CoA after (s) | last CoA after (s) | sessions told | CoA requests | retransmissions | most new in one second (limit) |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for e in &results.expiry {
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} ({}) |",
                e.releases,
                e.ended_after_s,
                e.first_coa_after_s,
                e.last_coa_after_s,
                e.sessions_told,
                e.requests,
                e.retransmissions,
                e.max_per_second,
                e.rate_limit
            );
        }
    }
}
