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
pub use health::WriteStatus;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::import::{MAX_LISTED_REJECTIONS, RejectedRow};

use crate::model::{
    Actor, AuditEntry, Contract, EnforcementJob, JobState, Login, Password, Release,
    ReplyAttribute, RequestKind, Session,
};
use crate::policy::{ContractState, Grant, ParameterError, Parameters, Profile, Refusal};

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
    #[error("{0}")]
    InvalidParameter(#[from] ParameterError),
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
pub fn log_failure(store: &dyn Store, what: &str, error: &StoreError) {
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

/// An online session as the enforcer addresses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTarget {
    pub nas_name: String,
    /// Where the NAS's accounting came from.
    pub nas_address: String,
    pub username: String,
    pub acct_session_id: String,
    pub framed_ip_address: Option<String>,
    pub nas_ip_address: Option<String>,
    pub nas_identifier: Option<String>,
}

/// An enforcement job as the enforcer works on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxJob {
    pub id: i64,
    pub session_id: i64,
    pub contract_id: String,
    /// The profile to move to; `None` for a cancelled contract.
    pub profile: Option<Profile>,
    pub kind: Option<RequestKind>,
    pub fallback: bool,
    /// The request as sent, once sent.
    pub packet: Option<Vec<u8>>,
    pub sends: u32,
    /// What happened so far (a CoA that fell back says why).
    pub outcome: Option<String>,
    pub target: SessionTarget,
}

/// An instance's hold on the jobs it sends, until a moment: renewed with
/// each send, so that another instance takes over only the jobs of one that
/// stopped sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub instance: String,
    pub until: DateTime<Utc>,
}

/// A job about to be sent: the request built for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobClaim<'a> {
    pub id: i64,
    pub kind: RequestKind,
    pub packet: &'a [u8],
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobResult {
    pub state: JobState,
    pub outcome: String,
    pub error_cause: Option<u32>,
    /// The NAS said the session does not exist (Error-Cause 503): close
    /// our record of it.
    pub close_session: bool,
}

/// An open session of a contract and the last enforcement sent to it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionEnforcement {
    pub session: Session,
    pub last_job: Option<EnforcementJob>,
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

/// What an import wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportCounts {
    pub contracts_created: u64,
    pub contracts_updated: u64,
    pub contracts_unchanged: u64,
    pub logins_created: u64,
    pub logins_updated: u64,
    pub logins_unchanged: u64,
    /// CoA / Disconnect jobs queued by state changes.
    pub enforcement_jobs: u64,
}

/// What an import did (the admin socket's answer too).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportOutcome {
    /// Whether anything was written (not when rows were rejected without
    /// `skip_invalid`).
    pub applied: bool,
    /// Data rows read.
    pub rows: u64,
    pub counts: ImportCounts,
    /// The rejected rows, the first [`MAX_LISTED_REJECTIONS`] of them.
    pub rejected: Vec<RejectedRow>,
    /// How many rows were rejected in all.
    #[serde(default)]
    pub rejected_total: u64,
}

impl ImportOutcome {
    fn reject(&mut self, row: RejectedRow) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_LISTED_REJECTIONS {
            self.rejected.push(row);
        }
    }
}

/// What the RADIUS server needs to decide an Access-Request for a login.
#[derive(Clone, Debug)]
pub struct AuthRecord {
    pub username: String,
    pub password: Password,
    pub contract_id: String,
    pub state: ContractState,
    /// End of the contract's release not yet recorded as ended, if any.
    pub open_release_ends_at: Option<DateTime<Utc>>,
    pub reply: Vec<ReplyAttribute>,
}

/// What an accounting packet says happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccountingKind {
    #[default]
    Start,
    Interim,
    Stop,
    /// Accounting-On: the NAS (re)started; none of its sessions survive.
    On,
    /// Accounting-Off: the NAS is stopping; all its sessions end.
    Off,
}

/// One accounting packet's worth of change to the sessions table. The
/// default is a Start with nothing but its key left to fill in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountingEvent {
    pub kind: AccountingKind,
    /// When it happened (arrival minus Acct-Delay-Time).
    pub at: DateTime<Utc>,
    pub nas_name: String,
    pub nas_identity: String,
    pub nas_address: String,
    pub nas_ip_address: Option<String>,
    pub nas_identifier: Option<String>,
    pub username: String,
    pub acct_session_id: String,
    pub framed_ip_address: Option<String>,
    pub calling_station_id: Option<String>,
    pub nas_port: Option<u32>,
    pub nas_port_id: Option<String>,
    /// The NAS entry says `coa_mode = "none"`: no CoA or Disconnect is
    /// queued for the session.
    pub nas_without_coa: bool,
    pub session_time: Option<u32>,
    pub input_octets: u64,
    pub output_octets: u64,
    pub terminate_cause: Option<String>,
}

impl AccountingEvent {
    /// The key of the session among the open ones: what identifies a
    /// session on its NAS, as FreeRADIUS's `acct_unique` takes it (the NAS,
    /// User-Name, Acct-Session-Id, NAS-Port and NAS-Port-Id), hashed. Two
    /// subscribers given the same Acct-Session-Id are two sessions.
    pub fn session_key(&self) -> String {
        use md5::Digest;
        let mut hash = md5::Md5::new();
        let mut field = |value: Option<&str>| match value {
            // Length-prefixed, so that no two lists of fields run together
            // into the same bytes.
            Some(text) => {
                hash.update((text.len() as u64).to_be_bytes());
                hash.update(text.as_bytes());
            }
            None => hash.update(u64::MAX.to_be_bytes()),
        };
        field(Some(&self.nas_name));
        field(Some(&self.nas_identity));
        field(Some(&self.username));
        field(Some(&self.acct_session_id));
        field(self.nas_port.map(|port| port.to_string()).as_deref());
        field(self.nas_port_id.as_deref());
        hash.finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The key sessions had before they were told apart by user and port:
    /// a session recorded then is found under it once, and re-keyed.
    pub fn legacy_session_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.nas_name, self.nas_identity, self.acct_session_id
        )
    }
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

/// The store interface. SQLite implements it now; a PostgreSQL
/// implementation must give the same answers to the same calls.
#[async_trait]
pub trait Store: Send + Sync {
    /// Finishes what is in flight and closes the database.
    async fn close(&self);

    /// Whether the database takes writes now, and if not, why.
    fn write_status(&self) -> WriteStatus;

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
        name: &str,
        value: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Parameters, StoreError>;

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
