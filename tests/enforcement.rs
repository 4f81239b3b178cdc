//! Enforcement against the real daemon: a NAS in the test reports a session by accounting and takes CoA / Disconnect on a UDP socket, answering ACK, NAK, forged answers or nothing.
//!
//! On SQLite: the suite is in `suites/enforcement.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Sqlite;

include!("suites/enforcement.rs");
