//! Interoperability with a NAS no one here wrote: pyrad (Debian's python3-pyrad) as the CoA / Disconnect server. liberad releases, revokes and cancels; pyrad checks the Request Authenticator, prints what it got and ACKs.
//!
//! On SQLite: the suite is in `suites/pyrad.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Sqlite;

include!("suites/pyrad.rs");
