//! liberad: the RADIUS enforcement point between an ISP's billing system and
//! its access equipment, with the temporary release ("liberação
//! temporária") of contracts blocked for non-payment.
//!
//! How the code is laid out:
//!
//! - [`policy`]: the release rules, pure functions of their inputs and an
//!   explicit `now` — eligibility, end instant, next allowed date, profile;
//! - [`model`]: contracts, logins, releases, audit entries, the checks
//!   values pass before they are stored, and the records the RADIUS
//!   server, the enforcer, the admin socket and the store exchange
//!   (accounting events, logins as RADIUS reads them, outbox jobs, NAS
//!   counters, the database's write status);
//! - [`app`]: the application — every operation (release, revoke,
//!   contract state, logins, parameters, import, what happened), one file
//!   per group, each taking validated values and the actor who asked; it
//!   checks the rules inside the transaction that writes their outcome,
//!   words the audit, counts the metrics and wakes the scheduler and the
//!   enforcer. Every front door (the admin socket today) is a thin adapter
//!   onto it;
//! - [`store`]: persistence only, on SQLite or PostgreSQL: typed reads and
//!   writes grouped by aggregate on a transaction the application drives
//!   ([`store::Tx`]); the only module that names `sqlx`;
//! - [`radius`]: the RADIUS listeners and their pure core (packets,
//!   dictionaries, decisions, accounting), with the settings compiled from
//!   the configuration once by the daemon;
//! - [`enforcer`] and [`scheduler`]: CoA / Disconnect to online sessions,
//!   and the end of each release at its instant (through the
//!   application);
//! - [`import`]: reading a CSV of contracts and logins into an import plan;
//! - [`admin`]: the Unix socket operators reach with `liberactl`, its
//!   protocol, and its adapter onto the application;
//! - [`http`]: the HTTP stack: the API under `/v1` (another adapter onto
//!   the application) and `GET /metrics`, each on its own listener;
//! - [`ctl`]: `liberactl` itself;
//! - [`config`], [`logging`], [`clock`], [`telemetry`], [`daemon`]: the
//!   process around it. `config` reads and checks the file and knows
//!   nothing of RADIUS.
//!
//! `src/main.rs` (the daemon) and `src/bin/liberactl.rs` (the CLI) only call
//! into this library.

pub mod admin;
pub mod app;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod enforcer;
pub mod http;
pub mod import;
pub mod logging;
pub mod model;
pub mod policy;
pub mod radius;
pub mod scheduler;
pub mod store;
pub mod telemetry;
