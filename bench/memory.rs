//! Resident memory where it used to grow with the data: during an import
//! of a large file through `liberactl`, and after the RADIUS side has
//! looked up many distinct logins (the outage cache, which holds 100 000
//! by default): after `--logins` of them, and after twice as many, which
//! must cost no more. The figures are printed, and the run fails when one
//! is over its bound, so that CI keeps them flat.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use crate::compare::{self, AUTH_PORT, Bins, SECRET};

#[derive(Clone, Debug, clap::Args)]
pub struct MemoryArgs {
    /// Rows of the import file (one contract and one login each).
    #[arg(long, default_value_t = 1_000_000)]
    pub import_rows: u64,
    /// Distinct logins asked for over RADIUS after the import.
    #[arg(long, default_value_t = 100_000)]
    pub logins: u64,
    /// Fail when liberad's peak resident memory during the import is over
    /// this many MB.
    #[arg(long, default_value_t = 200.0)]
    pub max_import_mb: f64,
    /// Fail when its resident memory after the logins is over this many MB.
    #[arg(long, default_value_t = 200.0)]
    pub max_after_logins_mb: f64,
    /// Fail when twice the logins cost more than this many MB more (the
    /// outage cache is bounded; SQLite's page caches take up to 16 MB).
    #[arg(long, default_value_t = 30.0)]
    pub max_growth_mb: f64,
    /// Where the binaries are.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: std::path::PathBuf,
    /// Write the figures here as JSON too.
    #[arg(long)]
    pub json_out: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Serialize)]
struct Figures {
    import_rows: u64,
    file_mb: f64,
    import_s: f64,
    rss_before_import_mb: f64,
    rss_peak_import_mb: f64,
    rss_after_import_mb: f64,
    logins: u64,
    logins_answered: u64,
    rss_after_logins_mb: f64,
    rss_after_twice_the_logins_mb: f64,
}

pub fn run(args: &MemoryArgs) -> Result<(), String> {
    let bins = Bins::find(&args.bin_dir)?;
    let dir = std::env::temp_dir().join(format!("liberad-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = run_in(&bins, args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result?;
    println!(
        "import of {} rows ({:.0} MB): {:.1} s; liberad resident {:.1} MB before, \
         {:.1} MB at the peak, {:.1} MB after",
        figures.import_rows,
        figures.file_mb,
        figures.import_s,
        figures.rss_before_import_mb,
        figures.rss_peak_import_mb,
        figures.rss_after_import_mb
    );
    println!(
        "{} distinct logins asked ({} answered): liberad resident {:.1} MB; after {}: {:.1} MB",
        figures.logins,
        figures.logins_answered,
        figures.rss_after_logins_mb,
        figures.logins * 2,
        figures.rss_after_twice_the_logins_mb
    );
    if let Some(out) = &args.json_out {
        let json = serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())?;
        std::fs::write(out, json).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    }
    let mut over = Vec::new();
    if figures.rss_peak_import_mb > args.max_import_mb {
        over.push(format!(
            "the import peaked at {:.1} MB (bound {} MB)",
            figures.rss_peak_import_mb, args.max_import_mb
        ));
    }
    if figures.rss_after_logins_mb > args.max_after_logins_mb {
        over.push(format!(
            "{:.1} MB after the logins (bound {} MB)",
            figures.rss_after_logins_mb, args.max_after_logins_mb
        ));
    }
    let growth = figures.rss_after_twice_the_logins_mb - figures.rss_after_logins_mb;
    if growth > args.max_growth_mb {
        over.push(format!(
            "twice the logins cost {growth:.1} MB more (bound {} MB)",
            args.max_growth_mb
        ));
    }
    if figures.logins_answered < figures.logins {
        over.push(format!(
            "only {} of {} logins answered",
            figures.logins_answered, figures.logins
        ));
    }
    if over.is_empty() {
        Ok(())
    } else {
        Err(over.join("; "))
    }
}

fn run_in(bins: &Bins, args: &MemoryArgs, dir: &Path) -> Result<Figures, String> {
    let file = dir.join("import.csv");
    let file_mb = write_import(&file, args.import_rows)?;
    let database = format!("sqlite://{}", dir.join("liberad.db").display());
    let server = compare::start_liberad(bins, dir, &database, 0, 50)?;
    let result = measure(bins, args, dir, &file, file_mb, server.pid);
    server.stop();
    result
}

fn measure(
    bins: &Bins,
    args: &MemoryArgs,
    dir: &Path,
    file: &Path,
    file_mb: f64,
    pid: u32,
) -> Result<Figures, String> {
    let rss_before_import_mb = compare::rss_mb(pid);
    let began = Instant::now();
    let out = Command::new(&bins.liberactl)
        .arg("--socket")
        .arg(dir.join("liberad.sock"))
        .arg("import")
        .arg(file)
        .output()
        .map_err(|e| format!("liberactl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the import failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let import_s = began.elapsed().as_secs_f64();
    // The kernel's high-water mark: the peak, however short.
    let rss_peak_import_mb = peak_mb(pid);
    let rss_after_import_mb = compare::rss_mb(pid);
    let logins_answered = ask(bins, args.logins)?;
    let rss_after_logins_mb = compare::rss_mb(pid);
    ask(bins, args.logins * 2)?;
    Ok(Figures {
        import_rows: args.import_rows,
        file_mb,
        import_s,
        rss_before_import_mb,
        rss_peak_import_mb,
        rss_after_import_mb,
        logins: args.logins,
        logins_answered: logins_answered.min(args.logins),
        rss_after_logins_mb,
        rss_after_twice_the_logins_mb: compare::rss_mb(pid),
    })
}

/// Access-Requests for `logins` distinct logins (a fifth more requests,
/// so that each is asked at least once); returns the answers.
fn ask(bins: &Bins, logins: u64) -> Result<u64, String> {
    const RATE: u64 = 20_000;
    let requests = logins + logins / 5;
    let load = bins.load(
        1,
        &[
            "--server".to_owned(),
            format!("127.0.0.1:{AUTH_PORT}"),
            "--secret".to_owned(),
            SECRET.to_owned(),
            "--kind".to_owned(),
            "auth".to_owned(),
            "--users".to_owned(),
            logins.to_string(),
            "--rate".to_owned(),
            RATE.to_string(),
            "--duration".to_owned(),
            (requests as f64 / RATE as f64).to_string(),
        ],
    )?;
    Ok(load.answered)
}

/// An import file of `rows` contracts with a login each (the benchmark's
/// subscriber base, without running releases, which an import cannot
/// make); returns its size in MB.
fn write_import(path: &Path, rows: u64) -> Result<f64, String> {
    crate::seed::subscribers(&crate::seed::SubscribersArgs {
        count: rows,
        mix: "active=86,reduced=3,blocked=10,cancelled=1".to_owned(),
        out: path.to_owned(),
    })?;
    let bytes = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    Ok(bytes as f64 / 1_048_576.0)
}

/// VmHWM: the most resident memory the process has had.
fn peak_mb(pid: u32) -> f64 {
    compare::status_mb(pid, "VmHWM:")
}
