//! Where contracts, logins, releases, parameters and the audit log live.
//!
//! [`Store`] is the interface the rest of liberad uses; [`sqlite`] implements
//! it on an embedded SQLite file. All SQL stays under this module. Every
//! change is one transaction that also writes its audit entry, and every
//! release decision is taken by [`crate::policy`] inside the transaction that
//! records it, so two requests for the same contract cannot both succeed.

pub mod copy;
pub mod health;
pub mod postgres;
pub mod sqlite;

pub use crate::import::ImportRows;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::import::ImportOutcome;
use crate::model::{
    AccountingEvent, Actor, AuditEntry, AuthRecord, Contract, EnforcementJob, JobClaim, JobResult,
    Lease, Login, OutboxJob, Password, Release, ReplyAttribute, Session, SessionEnforcement,
    WriteStatus,
};
use crate::policy::{ContractState, Grant, Parameter, Parameters, Refusal};

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A read through SQLite's own API failed; with the cause when the
    /// file itself failed (as for writes: "disk I/O error", ...).
    #[error("database error: {message}")]
    Read {
        message: String,
        cause: Option<&'static str>,
    },
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare the database: {0}")]
    Setup(String),
    #[error("contract {0} is not known")]
    ContractNotFound(String),
    #[error("contract {0} already exists")]
    ContractExists(String),
    #[error("login {0} is not known")]
    LoginNotFound(String),
    #[error("login {0} already exists")]
    LoginExists(String),
    #[error("contract {0} has no running release")]
    NotReleased(String),
    #[error("release refused: {}", .0.code())]
    Refused(Refusal),
    #[error("the database holds a value liberad cannot read: {0}")]
    Corrupt(String),
    /// What was given to the store cannot be read (an import file).
    #[error("{0}")]
    InvalidInput(String),
    /// The store refuses writes before trying them (its file is gone).
    #[error("the database refuses writes ({cause}): {detail}")]
    Unwritable { cause: &'static str, detail: String },
}

impl StoreError {
    /// Why this error means the database does not take writes now, or
    /// `None` when it is about the request (a rule, a constraint, a value).
    pub fn outage_cause(&self) -> Option<&'static str> {
        match self {
            StoreError::Database(e) => health::outage_cause(e),
            StoreError::Unwritable { cause, .. } => Some(cause),
            StoreError::Read { cause, .. } => *cause,
            _ => None,
        }
    }
}

/// Logs a failed store operation: at debug level when the store already
/// reports that the database refuses writes (its health logs that once per
/// interval, with the cause), as an error otherwise.
pub fn log_failure(store: &dyn Outbox, what: &str, error: &StoreError) {
    if error.outage_cause().is_some() && !store.write_status().writable {
        tracing::debug!(%error, "{what}");
    } else {
        tracing::error!(%error, "{what}");
    }
}

/// The file an SQLite store has open, as the file system named it when it
/// was opened: deleting or replacing the file under a running daemon is
/// noticed by comparing device and inode again.
#[derive(Clone, Debug)]
pub(crate) struct DatabaseFile {
    path: std::path::PathBuf,
    device: u64,
    inode: u64,
}

impl DatabaseFile {
    /// The identity of the file at `path` now.
    pub(crate) fn of(path: &std::path::Path) -> std::io::Result<DatabaseFile> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(DatabaseFile {
            path: path.to_owned(),
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    /// Whether the path still names the file that was opened.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let now = DatabaseFile::of(&self.path);
        let detail = |what: &str| {
            format!(
                "{} {what} while liberad had it open; what liberad would write now would be \
                 lost at the next start. Put the file back (from a backup), then restart liberad",
                self.path.display()
            )
        };
        match now {
            Ok(now) if now.device == self.device && now.inode == self.inode => Ok(()),
            Ok(_) => Err(StoreError::Unwritable {
                cause: "database file replaced",
                detail: detail("was replaced by another file"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::Unwritable {
                cause: "database file deleted",
                detail: detail("was deleted"),
            }),
            // Cannot tell (a permission problem on the directory): the
            // writes themselves will say whether they work.
            Err(_) => Ok(()),
        }
    }
}

/// A contract to create.
#[derive(Clone, Debug)]
pub struct NewContract {
    pub id: String,
    pub name: String,
    pub state: ContractState,
}

/// A login to create.
#[derive(Clone, Debug)]
pub struct NewLogin {
    pub username: String,
    pub contract_id: String,
    pub password: Password,
    pub reply: Vec<ReplyAttribute>,
}

/// A request to release a contract now.
#[derive(Clone, Debug)]
pub struct ReleaseRequest {
    pub contract_id: String,
    pub reason: String,
    pub actor: Actor,
    pub now: DateTime<Utc>,
    /// The calendar the release days are counted in.
    pub timezone: Tz,
}

/// What a state change did.
#[derive(Clone, Debug)]
pub struct StateChange {
    pub contract: Contract,
    pub previous: ContractState,
    /// The release this change ended (payment ends a release as
    /// `unblocked`, cancellation as `revoked`).
    pub ended_release: Option<Release>,
    /// Enforcement jobs queued for the contract's online sessions.
    pub jobs: Vec<i64>,
    /// Its online sessions on a NAS that takes no CoA (`coa_mode =
    /// "none"`), which get the change when they connect again.
    pub at_next_connection: usize,
}

/// The result of a change, with the enforcement jobs it queued for the
/// contract's online sessions.
#[derive(Clone, Debug)]
pub struct Enforced<T> {
    pub value: T,
    pub jobs: Vec<i64>,
    /// Online sessions on a NAS that takes no CoA: no job, the change
    /// reaches them at their next connection.
    pub at_next_connection: usize,
}

/// A release the scheduler ended, and the enforcement it queued.
#[derive(Clone, Debug)]
pub struct ExpiredRelease {
    pub release: Release,
    pub jobs: Vec<i64>,
}

/// Everything the contract summary shows, read in one transaction.
#[derive(Clone, Debug)]
pub struct ContractRecord {
    pub contract: Contract,
    /// The most recent releases, newest first (at most two).
    pub recent_releases: Vec<Release>,
    pub logins: Vec<Login>,
    /// The most recent audit entries about the contract, newest first.
    pub audit: Vec<AuditEntry>,
    pub parameters: Parameters,
    /// Its open sessions, each with its last enforcement job.
    pub sessions: Vec<SessionEnforcement>,
}

/// Sizes the metrics report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub sessions_online: u64,
    /// Enforcement jobs pending or in flight.
    pub outbox_depth: u64,
    /// Releases not recorded as ended.
    pub releases_running: u64,
}

/// The store interface, implemented once in `sql.rs` for SQLite and
/// PostgreSQL alike (the suites run on both and expect the same answers).
/// The enforcement outbox, as the enforcer works it: the part of the store
/// it needs, and all it may call.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Whether the database takes writes now, and if not, why.
    fn write_status(&self) -> WriteStatus;

    /// Pending jobs with an id above `after_id`, oldest first.
    async fn pending_jobs(&self, after_id: i64, limit: u32) -> Result<Vec<OutboxJob>, StoreError>;
    /// Takes the jobs sent and not finished that are this instance's (after
    /// a restart) or whose instance let its lease run out (it died): they
    /// are to be sent again, identically.
    async fn inflight_jobs(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxJob>, StoreError>;
    /// Takes pending jobs for sending, recording each one's request, in
    /// one transaction; for each, false if it is no longer pending
    /// (superseded, or another instance took it).
    async fn claim_jobs(
        &self,
        claims: &[JobClaim<'_>],
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;
    /// Counts a retransmission and renews the lease; false if the job is
    /// no longer this instance's.
    async fn job_resent(
        &self,
        id: i64,
        sends: u32,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records how jobs ended, in one transaction.
    async fn finish_jobs(
        &self,
        results: &[(i64, JobResult)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Turns a failed CoA into a pending Disconnect; false when a newer job
    /// for the session makes it moot (the job is then superseded).
    async fn fall_back(
        &self,
        id: i64,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait Store: Outbox {
    /// Finishes what is in flight and closes the database.
    async fn close(&self);

    /// Periodic care: notices a database file deleted or replaced, and
    /// gives the space of a grown WAL back.
    async fn maintain(&self);

    /// Marks the open sessions of these NAS entries (`coa_mode = "none"`)
    /// as taking no CoA, and every other open session as taking it, after
    /// the configuration changed.
    async fn mark_nas_without_coa(&self, names: &[String]) -> Result<(), StoreError>;

    /// Every (NAS entry, source address) seen signing its Access-Requests.
    async fn message_authenticator_seen(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Records that a NAS entry's source signs its Access-Requests.
    async fn remember_message_authenticator(
        &self,
        nas: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The temporary-release parameters.
    async fn parameters(&self) -> Result<Parameters, StoreError>;
    /// Changes one parameter, validated, and audits it.
    async fn set_parameter(
        &self,
        parameter: Parameter,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Parameters, StoreError>;
    /// Audits a request refused before it reached the store (a parameter
    /// value that is not one), so that the attempt is on record.
    async fn audit_refused(
        &self,
        action: &str,
        contract_id: Option<&str>,
        detail: &str,
        outcome: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    async fn add_contract(
        &self,
        contract: NewContract,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Contract, StoreError>;
    /// Sets a contract's state; ends its running release when the contract
    /// becomes active (`unblocked`) or cancelled (`revoked`).
    async fn set_contract_state(
        &self,
        id: &str,
        state: ContractState,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<StateChange, StoreError>;
    async fn contract(&self, id: &str) -> Result<Option<Contract>, StoreError>;
    /// Contracts in the order of their ids as numbers (shorter first), at
    /// most `limit`, from the one after `after`.
    async fn contracts(
        &self,
        state: Option<ContractState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Contract>, StoreError>;
    /// The contract with its releases, logins, audit and the parameters.
    async fn contract_record(
        &self,
        id: &str,
        audit_limit: u32,
    ) -> Result<Option<ContractRecord>, StoreError>;

    async fn add_login(
        &self,
        login: NewLogin,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Login, StoreError>;
    async fn remove_login(
        &self,
        username: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Login, StoreError>;
    async fn login(&self, username: &str) -> Result<Option<Login>, StoreError>;

    /// Releases a contract if the rules allow it, or returns
    /// [`StoreError::Refused`]; the attempt is audited either way.
    async fn release(&self, request: &ReleaseRequest) -> Result<Enforced<Release>, StoreError>;
    /// Answers whether [`Store::release`] would succeed now, changing nothing.
    async fn preview_release(&self, request: &ReleaseRequest) -> Result<Grant, StoreError>;
    /// Ends a contract's running release early.
    async fn revoke(
        &self,
        contract_id: &str,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Enforced<Release>, StoreError>;
    /// Releases, newest first.
    async fn releases(
        &self,
        contract_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Release>, StoreError>;

    /// Audit entries, newest first.
    async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// The login, its password and its contract's state, for RADIUS.
    async fn auth_lookup(&self, username: &str) -> Result<Option<AuthRecord>, StoreError>;
    /// Applies accounting events to the sessions table, all in one
    /// transaction: when it returns, they are durable.
    async fn record_accounting(&self, events: &[AccountingEvent]) -> Result<(), StoreError>;
    /// Sessions, newest first.
    async fn sessions(
        &self,
        contract_id: Option<&str>,
        online_only: bool,
        limit: u32,
    ) -> Result<Vec<Session>, StoreError>;

    /// Counts for the metrics endpoint.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// The end of the next release to expire, if any is open.
    async fn next_release_end(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Ends, as expired at their end instant, up to `limit` open releases
    /// whose end is at or before `now`, queueing their enforcement, in one
    /// transaction.
    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ExpiredRelease>, StoreError>;

    /// Jobs, newest first.
    async fn enforcement_jobs(
        &self,
        contract_id: Option<&str>,
        failed_only: bool,
        limit: u32,
    ) -> Result<Vec<EnforcementJob>, StoreError>;
    /// These jobs, as they stand.
    async fn enforcement_jobs_by_id(&self, ids: &[i64]) -> Result<Vec<EnforcementJob>, StoreError>;

    /// Imports rows in one transaction, batch by batch as `rows` hands
    /// them over (the file is read while it is written, never held whole).
    /// A row that cannot be imported is rejected with its line; with
    /// `skip_invalid` the others are imported, without it nothing is.
    async fn import(
        &self,
        rows: &mut ImportRows,
        skip_invalid: bool,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<ImportOutcome, StoreError>;
}

/// What differs between the SQL of the two backends.
pub(crate) struct Dialect {
    /// How a write transaction begins.
    pub begin_write: &'static str,
    /// A statement locking a contract's row (`$1` = id), where rows lock.
    pub lock_contract: Option<&'static str>,
    /// A statement locking the parameters row.
    pub lock_parameters: Option<&'static str>,
    /// Appended to a row-picking subquery so that concurrent instances
    /// take different rows.
    pub skip_locked: &'static str,
    /// The two-argument maximum function.
    pub greatest: &'static str,
    /// A statement that writes the WAL back into the database and
    /// truncates it, where there is one to keep small.
    pub checkpoint: Option<&'static str>,
}

/// Whether the database URL can be opened as written (a PostgreSQL URL's
/// host, port, options), or the configuration error that says why not.
pub fn check_url(url: &str) -> Result<(), String> {
    match DatabaseUrl::parse(url)? {
        DatabaseUrl::Sqlite(_) => Ok(()),
        DatabaseUrl::Postgres(url) => url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "database.url: {} is not a PostgreSQL URL: {e}",
                    crate::config::redact_url(&url)
                )
            }),
    }
}

/// Opens the store a database URL names, creating and migrating it if
/// needed.
pub async fn open(config: &DatabaseConfig, url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_in(config, url, None).await
}

/// Opens the store of a daemon whose state directory is `state_dir`: an
/// SQLite database that liberad created there before and that is missing
/// now is an error, not a new empty database (nor is any missing one with
/// `[database] create = false`).
pub async fn open_in(
    config: &DatabaseConfig,
    url: &str,
    state_dir: Option<&std::path::Path>,
) -> Result<Arc<dyn Store>, StoreError> {
    match DatabaseUrl::parse(url).map_err(StoreError::Setup)? {
        DatabaseUrl::Sqlite(path) => {
            let options = sqlite::OpenOptions {
                must_exist: !config.create,
                marker_dir: state_dir.map(std::path::Path::to_owned),
            };
            Ok(Arc::new(
                sqlite::SqliteStore::open_with(&path, &options).await?,
            ))
        }
        DatabaseUrl::Postgres(url) => {
            let pool = postgres::PoolSettings {
                max_connections: config.max_connections,
                acquire_timeout: std::time::Duration::from_millis(config.acquire_timeout_ms),
            };
            Ok(Arc::new(postgres::PgStore::connect(&url, pool).await?))
        }
    }
}
