//! The RADIUS server against the real daemon, spoken to over UDP on 127.0.0.1 by a NAS written for the tests: each contract state, CHAP, retransmissions, accounting, Status-Server, and bad packets.
//!
//! On PostgreSQL: the suite is in `suites/radius.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Postgres;

include!("suites/radius.rs");
