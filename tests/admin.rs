//! The admin socket and liberactl against the real daemon: the README's walkthrough, every refusal, parameters, imports, bad input, concurrency and restarts.
//!
//! On SQLite: the suite is in `suites/admin.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Sqlite;

include!("suites/admin.rs");
