//! The answers the front doors (the admin socket, the HTTP API) give for
//! an operation, where they are more than the operation's own value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Contract, EnforcementJob, Release};
use crate::policy::ContractState;

/// What a release or revoke did, as the front doors answer it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleaseOutcome {
    #[serde(flatten)]
    pub release: Release,
    /// Online sessions a CoA / Disconnect was queued for.
    pub sessions_told: usize,
    /// Online sessions on a NAS that takes no CoA (`coa_mode = "none"`):
    /// the change reaches them at their next connection.
    pub sessions_at_next_connection: usize,
    /// The jobs, as they stood when the answer was sent (after `wait`).
    pub enforcement: Vec<EnforcementJob>,
}

/// A release's dry run: what the release would be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleasePreview {
    pub contract: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// What a change of state did, as the front doors answer it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateChangeView {
    pub contract: Contract,
    pub previous: ContractState,
    pub ended_release: Option<Release>,
    /// Online sessions a CoA / Disconnect was queued for.
    pub sessions_told: usize,
    /// Online sessions on a NAS that takes no CoA: the change reaches them
    /// at their next connection.
    pub sessions_at_next_connection: usize,
}
