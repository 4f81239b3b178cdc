//! The RADIUS side of liberad: what a BRAS/NAS talks to.
//!
//! - [`packet`]: receive checks, signatures, packet encoding (pure);
//! - [`dictionary`]: FreeRADIUS-format dictionaries, `Name = value` on the wire;
//! - [`settings`]: the RADIUS configuration compiled (NAS clients, profiles);
//! - [`reply_rules`]: which attributes an operator may put in a reply;
//! - [`auth`]: Access-Request decisions and replies (pure);
//! - [`mschap`]: MS-CHAPv2 / MS-CHAP verification and MPPE keys (pure);
//! - [`accounting`]: Accounting-Request reports and the batching writer;
//! - [`cache`]: the duplicate / retransmission cache;
//! - [`stats`]: per-NAS counters;
//! - [`outage`]: answers while the database cannot be reached;
//! - [`server`]: the UDP loops that tie them together.

pub mod accounting;
pub mod auth;
pub mod cache;
pub mod dictionary;
pub mod mschap;
pub mod outage;
pub mod packet;
pub mod reply_rules;
pub mod server;
pub mod settings;
pub mod signers;
pub mod stats;

pub use server::{RadiusServer, Sockets};
pub use settings::Settings;
