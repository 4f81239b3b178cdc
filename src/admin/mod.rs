//! The admin socket operators reach through `liberactl`.
//!
//! - [`protocol`]: the request and response types, shared with `liberactl`;
//! - [`handler`]: what each request does;
//! - [`server`]: the Unix socket loop.

pub mod handler;
pub mod protocol;
pub mod server;

pub use handler::{Admin, EnforcementView, RadiusView};
pub use server::AdminSocket;
