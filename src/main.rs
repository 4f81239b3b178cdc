//! `liberad`, the daemon. Everything it does lives in the library; this file
//! reads the command line, loads the configuration and runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use liberad::config::Config;

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
    if args.check_config {
        println!("{}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
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
    let result = runtime.block_on(liberad::daemon::run(config, args.config, log, controls));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
