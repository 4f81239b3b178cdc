//! The HTTP API: its listener, health and readiness, limits.
//!
//! On SQLite: the suite is in `suites/api.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Sqlite;

include!("suites/api.rs");
