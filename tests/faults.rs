//! Bad input and late packets against the real daemon: late accounting, NUL bytes, reply attributes a reply may not carry, CSV line endings, a full admin socket, and listings that stay bounded.
//!
//! On SQLite: the suite is in `suites/faults.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Sqlite;

include!("suites/faults.rs");
