//! The application: every operation liberad offers, one function each,
//! behind every front door (the admin socket today; the HTTP API, the
//! warning page and the scheduler call the same functions).
//!
//! An operation takes validated values ([`ContractId`], [`Username`],
//! [`crate::policy::Parameter`]) and the [`Actor`] who asked, and returns
//! a typed outcome or an [`Error`] with its stable code. It owns what the
//! operation means: the release rules checked inside the transaction that
//! writes their outcome (so two requests for the same contract cannot both
//! succeed), the audit entry and its wording, the enforcement the change
//! queues, the metrics, and waking the scheduler and the enforcer. The
//! store below only reads and writes.
//!
//! - [`contracts`]: add, change the state of, show and list contracts;
//! - [`logins`]: add, remove and show logins;
//! - [`releases`]: release, preview, revoke, expire, list releases;
//! - [`parameters`]: show and set the release parameters;
//! - [`import`]: the CSV import of contracts and logins;
//! - [`records`]: what happened: audit, sessions, enforcement jobs;
//! - [`tokens`]: the HTTP API's tokens: made, listed, revoked, checked.

pub mod contracts;
pub mod import;
pub mod logins;
pub mod parameters;
pub mod records;
pub mod releases;
pub mod tokens;
mod views;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::clock::Clock;
use crate::enforcer::EnforcerHandle;
use crate::model::{ContractId, InvalidValue, Username};
use crate::policy::{self, Refusal};
use crate::radius::server::SharedSettings;
use crate::store::{Store, StoreError};

pub use crate::model::Actor;
pub use contracts::{ContractPage, ContractSummary, PutContract, StateChange};
pub use logins::PutLogin;
pub use releases::{Enforced, ExpiredRelease};
pub use views::{ReleaseOutcome, ReleasePreview, StateChangeView};

/// The stable codes of refusals, the same on every front door. Scripts
/// match on these.
pub mod code {
    // The release rules, in the order they are checked.
    pub const DISABLED: &str = "disabled";
    pub const NOT_FOUND: &str = "not_found";
    pub const CANCELLED: &str = "cancelled";
    pub const NOT_BLOCKED: &str = "not_blocked";
    pub const ALREADY_RELEASED: &str = "already_released";
    pub const COOLDOWN: &str = "cooldown";
    // Other refusals.
    pub const NOT_RELEASED: &str = "not_released";
    pub const EXISTS: &str = "exists";
    pub const REJECTED_ROWS: &str = "rejected_rows";
    // What was sent is wrong.
    pub const INVALID_VALUE: &str = "invalid_value";
    pub const INVALID_FILE: &str = "invalid_file";
    // It could not be done.
    pub const DATABASE_UNAVAILABLE: &str = "database_unavailable";
    pub const INTERNAL: &str = "internal";
}

/// Why an operation was not done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A release rule refused it (`disabled`, `cooldown`, …).
    #[error("release refused: {}", .0.code())]
    Refused(Refusal),
    #[error("contract {0} is not known")]
    ContractNotFound(ContractId),
    #[error("contract {0} already exists")]
    ContractExists(ContractId),
    #[error("login {0} is not known")]
    LoginNotFound(Username),
    #[error("login {0} already exists")]
    LoginExists(Username),
    #[error("contract {0} has no running release")]
    NotReleased(ContractId),
    #[error("token {0} already exists")]
    TokenExists(String),
    #[error("token {0} is not known")]
    TokenNotFound(String),
    /// Something liberad needs is not there (the system's random source).
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Invalid(#[from] InvalidValue),
    #[error("{0}")]
    InvalidParameter(#[from] policy::ParameterError),
    /// An import file that cannot be read.
    #[error("{0}")]
    InvalidFile(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Refused(refusal) => refusal.code(),
            Error::ContractNotFound(_) | Error::LoginNotFound(_) | Error::TokenNotFound(_) => {
                code::NOT_FOUND
            }
            Error::ContractExists(_) | Error::LoginExists(_) | Error::TokenExists(_) => {
                code::EXISTS
            }
            Error::Internal(_) => code::INTERNAL,
            Error::NotReleased(_) => code::NOT_RELEASED,
            Error::Invalid(_) | Error::InvalidParameter(_) => code::INVALID_VALUE,
            Error::InvalidFile(_) => code::INVALID_FILE,
            Error::Store(e) if e.outage_cause().is_some() => code::DATABASE_UNAVAILABLE,
            Error::Store(_) => code::INTERNAL,
        }
    }

    /// What an operator reads: what happened and what to do.
    pub fn message(&self, contract: Option<&ContractId>, tz: Tz) -> String {
        let contract = contract.map_or("", ContractId::as_str);
        match self {
            Error::Refused(refusal) => refusal.describe(contract, tz),
            Error::ContractNotFound(id) => Refusal::NotFound.describe(id.as_str(), tz),
            Error::LoginNotFound(username) => format!("login {username} is not known"),
            Error::ContractExists(id) => format!(
                "contract {id} already exists; change it with `contract state` or an import"
            ),
            Error::LoginExists(username) => {
                format!("login {username} already exists; remove it first or update it by import")
            }
            Error::NotReleased(id) => {
                format!("contract {id} has no running temporary release to revoke")
            }
            Error::TokenExists(name) => format!(
                "token {name} already exists (a revoked token keeps its name); choose another \
                 name"
            ),
            Error::TokenNotFound(name) => format!("token {name} is not known"),
            Error::Internal(e) => format!("the request was not done: {e}"),
            Error::Invalid(e) => e.to_string(),
            Error::InvalidParameter(e) => e.to_string(),
            Error::InvalidFile(e) => format!("{e}; nothing was imported"),
            Error::Store(e) => match e.outage_cause() {
                Some(cause) => format!(
                    "the database is not available ({cause}): {e}; nothing was changed, try \
                     again once it is"
                ),
                None => format!("the request was not done: {e}"),
            },
        }
    }

    /// `already_released`: when the running release ends.
    pub fn ends_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Error::Refused(Refusal::AlreadyReleased { until }) => Some(*until),
            _ => None,
        }
    }

    /// `cooldown`: the first local date a release is allowed.
    pub fn next_allowed(&self) -> Option<NaiveDate> {
        match self {
            Error::Refused(Refusal::Cooldown { next_allowed }) => Some(*next_allowed),
            _ => None,
        }
    }

    /// Logs an error the caller did not cause: the database unavailable
    /// (a warning: it is reported with its cause), or a failure (an error).
    pub fn log(&self) {
        if let Error::Internal(e) = self {
            tracing::error!(error = %e, "request failed");
        }
        if let Error::Store(e) = self {
            match e.outage_cause() {
                Some(cause) => tracing::warn!(
                    error = %e,
                    cause,
                    "request failed: the database is not available"
                ),
                None => tracing::error!(error = %e, "request failed"),
            }
        }
    }
}

/// What the operations wake when they change something.
#[derive(Clone, Default)]
pub struct Wake {
    pub enforcer: Option<EnforcerHandle>,
    /// Whoever ends releases at their instant (the scheduler).
    pub scheduler: Option<ReleasesChanged>,
}

/// Tells whoever waits on it (the scheduler) that releases were added or
/// ended, so that it looks for the next end again.
#[derive(Clone, Default)]
pub struct ReleasesChanged(Arc<tokio::sync::Notify>);

impl ReleasesChanged {
    pub fn new() -> ReleasesChanged {
        ReleasesChanged::default()
    }

    pub fn notify(&self) {
        self.0.notify_one();
    }

    /// Until the next [`ReleasesChanged::notify`] (or at once, if one came
    /// since the last wait).
    pub async fn notified(&self) {
        self.0.notified().await;
    }
}

/// The application: the store, the clock and calendar the rules are read
/// in, and what is woken after a change.
pub struct App {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    timezone: Tz,
    wake: Wake,
    /// The RADIUS settings in force, to check reply attributes against
    /// the dictionaries (none when RADIUS is not running).
    settings: Option<SharedSettings>,
    /// How long an operation asked to wait for the NAS's answers waits.
    wait: std::time::Duration,
}

impl App {
    pub fn new(store: Arc<Store>, clock: Arc<dyn Clock>, timezone: Tz) -> App {
        App {
            store,
            clock,
            timezone,
            wake: Wake::default(),
            settings: None,
            wait: std::time::Duration::from_secs(5),
        }
    }

    /// Lets changes wake the scheduler and the enforcer, and waits for
    /// enforcement follow it, for at most `wait`.
    pub fn with_wake(mut self, wake: Wake, wait: std::time::Duration) -> App {
        self.wake = wake;
        self.wait = wait;
        self
    }

    /// Lets reply attributes be checked against the dictionaries in force.
    pub fn with_settings(mut self, settings: SharedSettings) -> App {
        self.settings = Some(settings);
        self
    }

    /// The calendar release days are counted in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The store, for what only reads or watches it (health, metrics).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The RADIUS settings in force, if RADIUS is running.
    pub fn settings(&self) -> Option<Arc<crate::radius::Settings>> {
        self.settings.as_ref().map(|s| s.load_full())
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Tells the scheduler that releases changed and the enforcer that jobs
    /// were queued.
    fn changed(&self, jobs: usize) {
        if let Some(scheduler) = &self.wake.scheduler {
            scheduler.notify();
        }
        if jobs > 0
            && let Some(enforcer) = &self.wake.enforcer
        {
            enforcer.wake();
        }
    }
}

/// `what` or `what: reason`, as the audit writes a change and its reason.
fn with_reason(what: &str, reason: &str) -> String {
    if reason.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {reason}")
    }
}

/// "2026-11-28 00:00 America/Sao_Paulo".
fn local(instant: DateTime<Utc>, tz: Tz) -> String {
    policy::format_local(instant, tz)
}

#[cfg(test)]
mod tests;
