//! Operating liberad: reloads under load, stops under load, metrics, and logs that show what happened without showing a secret.
//!
//! On SQLite: the suite is in `suites/operations.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Sqlite;

include!("suites/operations.rs");
