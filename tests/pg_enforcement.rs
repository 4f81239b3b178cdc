//! Enforcement against the real daemon: a NAS in the test reports a session by accounting and takes CoA / Disconnect on a UDP socket, answering ACK, NAK, forged answers or nothing.
//!
//! On PostgreSQL: the suite is in `suites/enforcement.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Postgres;

include!("suites/enforcement.rs");
