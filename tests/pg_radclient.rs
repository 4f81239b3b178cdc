//! Interoperability with FreeRADIUS's `radclient` (Debian's freeradius-utils) playing the NAS: PAP and CHAP with Message-Authenticator, accounting, Status-Server. radclient checks our authenticators itself; the test reads the attributes it prints.
//!
//! On PostgreSQL: the suite is in `suites/radclient.rs`, compiled once per backend.

mod common;

const BACKEND: common::Backend = common::Backend::Postgres;

include!("suites/radclient.rs");
