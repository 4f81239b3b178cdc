//! The admin socket operators reach through `liberactl`.
//!
//! - [`protocol`]: the request and response types, shared with `liberactl`;
//! - [`handler`]: the adapter from a request to an operation of the
//!   application and back;
//! - [`import`]: an import's file, spooled as it arrives and read as it is
//!   written;
//! - [`server`]: the Unix socket loop.

pub mod handler;
pub mod import;
pub mod protocol;
pub mod server;

pub use handler::{Admin, RadiusView};
pub use server::AdminSocket;
