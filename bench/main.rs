//! `liberad-bench`: the benchmark tools of liberad, apart from the daemon.
//!
//! - `load`: an open-loop RADIUS load generator (Access-Request with PAP,
//!   or Accounting Start / Interim / Stop) reporting rate, latency
//!   percentiles, retransmissions and timeouts;
//! - `coa-nas`: a NAS CoA port that ACKs everything and counts;
//! - `subscribers`: a subscriber base as CSV, for liberad and FreeRADIUS;
//! - `seed`: liberad's database filled from it;
//! - `compare`: liberad and FreeRADIUS side by side, and liberad's growth
//!   (what `bench/compare.sh` runs);
//! - `memory`: liberad's resident memory during a large import and after
//!   many distinct logins, against bounds.

mod compare;
mod load;
mod memory;
mod nas;
mod seed;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "liberad's benchmark tools")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send RADIUS load to a server and report.
    Load(load::LoadArgs),
    /// Answer CoA / Disconnect requests with ACKs and count them.
    CoaNas(nas::NasArgs),
    /// Write a subscriber base as CSV.
    Subscribers(seed::SubscribersArgs),
    /// Fill liberad's database from a subscriber base.
    Seed(seed::SeedArgs),
    /// Run the side-by-side comparison and the growth measurements.
    Compare(compare::CompareArgs),
    /// Measure resident memory during a large import and after many logins.
    Memory(memory::MemoryArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Load(args) => load::run(&args)
            .map_err(|e| format!("load: {e}"))
            .map(|report| {
                if args.json {
                    println!("{}", serde_json::to_string(&report).expect("JSON"));
                } else {
                    report.print();
                }
            }),
        Command::CoaNas(args) => {
            nas::run(&args)
                .map_err(|e| format!("coa-nas: {e}"))
                .map(|report| {
                    if args.json {
                        println!("{}", serde_json::to_string(&report).expect("JSON"));
                    } else {
                        report.print();
                    }
                })
        }
        Command::Subscribers(args) => seed::subscribers(&args),
        Command::Seed(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|runtime| runtime.block_on(seed::seed(&args)))
            .map(|summary| println!("{summary}")),
        Command::Compare(args) => compare::run(&args),
        Command::Memory(args) => memory::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("liberad-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
