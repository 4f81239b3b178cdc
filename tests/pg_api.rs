//! The HTTP API: its listener, health and readiness, limits.
//!
//! On PostgreSQL: the suite is in `suites/api.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Postgres;

include!("suites/api.rs");
