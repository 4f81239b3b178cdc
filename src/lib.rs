//! liberad: the RADIUS enforcement point between an ISP's billing system and
//! its access equipment, with the temporary release ("liberação
//! temporária") of contracts blocked for non-payment.
//!
//! How the code is laid out:
//!
//! - [`policy`]: the release rules, pure functions of their inputs and an
//!   explicit `now` — eligibility, end instant, next allowed date, profile;
//! - [`model`]: contracts, logins, releases, audit entries, and the checks
//!   values pass before they are stored;
//! - [`store`]: the database behind one interface (SQLite now);
//! - [`import`]: reading a CSV of contracts and logins into an import plan;
//! - [`admin`]: the Unix socket operators reach with `liberactl`, its
//!   protocol, and what each request does;
//! - [`ctl`]: `liberactl` itself;
//! - [`config`], [`logging`], [`clock`], [`daemon`]: the process around it.
//!
//! `src/main.rs` (the daemon) and `src/bin/liberactl.rs` (the CLI) only call
//! into this library.

pub mod admin;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod enforcer;
pub mod import;
pub mod logging;
pub mod model;
pub mod policy;
pub mod radius;
pub mod scheduler;
pub mod store;
pub mod telemetry;
