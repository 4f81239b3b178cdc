//! `liberad`, the daemon. Everything it does lives in the library; this file
//! reads the command line, loads the configuration and runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use liberad::config::Config;
use liberad::radius::Settings;

/// mimalloc rather than glibc's malloc: each RADIUS request allocates and
/// frees many small blocks and one task of a few kilobytes, and glibc's
/// consolidation of its fast bins on every such task took a fifth of the
/// daemon's CPU at full load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a configuration error (EX_CONFIG from sysexits.h).
const EXIT_CONFIG: u8 = 78;

/// RADIUS enforcement point with temporary release (liberação temporária).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, short, default_value = "/etc/liberad/liberad.toml")]
    config: PathBuf,
    /// Validate the configuration and exit: 0 when valid, 78 when not.
    #[arg(long)]
    check_config: bool,
    /// Copy the SQLite database of this configuration into a new
    /// PostgreSQL database and exit (liberad must be stopped); then point
    /// `database.url` at it. See deploy/postgresql.md.
    #[arg(long, value_name = "POSTGRES_URL", conflicts_with = "check_config")]
    copy_to: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("liberad: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // The RADIUS part compiled once: dictionaries, secrets, profiles; and
    // the database URL read as the store reads it.
    let settings = match liberad::store::check_url(&config.database_url())
        .and_then(|()| Settings::build(&config))
    {
        Ok(settings) => settings,
        Err(message) => {
            let e = liberad::config::ConfigError {
                origin: args.config.display().to_string(),
                message,
            };
            eprintln!("liberad: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check_config {
        for warning in config.warnings() {
            eprintln!("liberad: warning: {warning}");
        }
        println!("{}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    if let Some(target) = &args.copy_to {
        return copy_to(&config, target);
    }
    let log = liberad::logging::init(&config.log);
    let controls = match liberad::daemon::signals() {
        Ok(controls) => controls,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("liberad: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(liberad::daemon::run(
        config,
        settings,
        args.config,
        log,
        controls,
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--copy-to`: the SQLite database of `config` into PostgreSQL at `target`.
fn copy_to(config: &Config, target: &str) -> ExitCode {
    use liberad::config::DatabaseUrl;
    let source = match DatabaseUrl::parse(&config.database_url()) {
        Ok(DatabaseUrl::Sqlite(path)) => path,
        Ok(DatabaseUrl::Postgres(_)) => {
            eprintln!("liberad: --copy-to copies from SQLite; this configuration uses PostgreSQL");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("liberad: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match DatabaseUrl::parse(target) {
        Ok(DatabaseUrl::Postgres(_)) => {}
        Ok(DatabaseUrl::Sqlite(_)) => {
            eprintln!("liberad: --copy-to takes a postgres:// URL");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("liberad: --copy-to: {e}");
            return ExitCode::FAILURE;
        }
    }
    if std::os::unix::net::UnixStream::connect(&config.admin.socket).is_ok() {
        eprintln!(
            "liberad: liberad is running on this configuration (its socket {} answers); \
             stop it first, so that nothing it writes after the copy is left behind",
            config.admin.socket.display()
        );
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("liberad: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(liberad::store::copy::sqlite_to_postgres(&source, target)) {
        Ok(copied) => {
            for table in copied {
                println!("{:<12} {} rows", table.table, table.rows);
            }
            println!(
                "copied {} into PostgreSQL; set database.url to the new database and start liberad",
                source.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("liberad: copy failed, no data was written: {e}");
            ExitCode::FAILURE
        }
    }
}
