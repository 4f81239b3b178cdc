//! Persistence: where contracts, logins, releases, sessions, the outbox,
//! the audit trail and the parameters live, on SQLite (the embedded
//! default) or PostgreSQL (several instances sharing one database).
//!
//! The store decides nothing: what an operation means (the release rules,
//! the audit's wording, what a change enforces) is the application's
//! ([`crate::app`]). It gives the application a unit of work, [`Tx`]: a
//! transaction whose typed reads and writes are grouped by aggregate, one
//! file each ([`contracts`], [`logins`], [`releases`], [`sessions`],
//! [`outbox`], [`audit`], [`parameters`], [`tokens`], and the
//! [`import`]'s own tables). Decisions read inside a write transaction still hold when it
//! writes: SQLite takes its lock up front, PostgreSQL locks rows as they
//! are read ([`Tx::lock_contract`]). [`db`] is the one place where the two
//! backends differ in how a statement runs; [`sqlite`] and [`postgres`]
//! open them. All SQL of liberad, and every use of `sqlx`, is under this
//! module.

pub mod audit;
pub mod contracts;
pub mod copy;
pub mod db;
pub mod health;
pub mod import;
pub mod logins;
pub mod outbox;
pub mod parameters;
pub mod postgres;
pub mod releases;
pub mod sessions;
pub mod sqlite;
pub mod tokens;

pub use audit::NewAudit;
pub use contracts::NewContract;
pub use db::Tx;
pub use import::{ImportStatus, ImportedContract};
pub use logins::{NewLogin, StoredLogin, reply_text};
pub use tokens::NewToken;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::model::{JobClaim, JobResult, Lease, OutboxJob, WriteStatus};
use db::{Dialect, Pool, Statement};
use health::WriteHealth;

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

    /// Whether the database refused a row because another has its unique
    /// key (a second open release of a contract, written by a process
    /// that did not take the lock).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(e) => e
                .as_database_error()
                .is_some_and(|d| d.is_unique_violation()),
            _ => false,
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

/// Sizes the metrics report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub sessions_online: u64,
    /// Enforcement jobs pending or in flight.
    pub outbox_depth: u64,
    /// Releases not recorded as ended.
    pub releases_running: u64,
}

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

/// liberad's database, on either backend: a pool for writes and one for
/// reads (on PostgreSQL the same pool), and, where the backend has one, a
/// faster path for the read every Access-Request makes.
pub struct Store {
    writer: Pool,
    reader: Pool,
    dialect: &'static Dialect,
    fast_reads: Option<sqlite::FastReads>,
    /// Whether the database takes writes, from the outcome of each.
    health: Arc<WriteHealth>,
    /// SQLite: the file the store has open, to notice it deleted or
    /// replaced under the running daemon.
    file: Option<DatabaseFile>,
}

impl Store {
    /// A write transaction: on SQLite it takes the database lock up front
    /// (`BEGIN IMMEDIATE`); on PostgreSQL, rows are locked as they are
    /// read. Refused while the database file is no longer the one at its
    /// path, so that nothing is acknowledged into a file that will be lost.
    pub async fn write(&self) -> Result<Tx, StoreError> {
        if let Some(file) = &self.file
            && let Err(e) = file.check()
        {
            return self.health.observe(Err(e));
        }
        Tx::write(&self.writer, self.dialect, Arc::clone(&self.health)).await
    }

    /// A read transaction: one consistent snapshot for several reads,
    /// which never waits for writes.
    pub async fn read(&self) -> Result<Tx, StoreError> {
        Tx::read(&self.reader, self.dialect).await
    }

    /// Finishes what is in flight and closes the database.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Periodic care: notices a database file deleted or replaced, and
    /// gives the space of a grown WAL back.
    pub async fn maintain(&self) {
        // Looking notices a file deleted under the daemon; a checkpoint
        // waits for writes that work.
        if self.write_status().writable {
            self.checkpoint().await;
        }
    }

    /// Writes the WAL back into the database file and truncates it
    /// (SQLite): after a large write, and from time to time, so that a WAL
    /// grown by an import or a midnight of expiries does not keep its size.
    pub async fn checkpoint(&self) {
        let Some(sql) = self.dialect.checkpoint else {
            return;
        };
        if let Err(e) = self.writer.execute(Statement::new(sql)).await {
            tracing::debug!(error = %e, "WAL checkpoint not done");
        }
    }

    /// Whether the database takes writes now, and if not, why.
    pub fn write_status(&self) -> WriteStatus {
        if let Some(file) = &self.file
            && let Err(e) = file.check()
        {
            // Noticed here before any write: logged and counted like one.
            let _ = self.health.observe::<()>(Err(e));
        }
        self.health.status()
    }

    /// Whether the database answers a read now (the API's readiness).
    pub async fn check_reads(&self) -> Result<(), StoreError> {
        self.reader
            .fetch_one(Statement::new("SELECT 1 AS one"))
            .await?;
        Ok(())
    }

    /// Counts for the metrics endpoint.
    pub async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let row = self
            .reader
            .fetch_one(Statement::new(
                "SELECT (SELECT COUNT(*) FROM sessions WHERE stopped_at IS NULL) AS sessions, \
                   (SELECT COUNT(*) FROM enforcement WHERE state IN ('pending', 'sent')) \
                     AS outbox, \
                   (SELECT COUNT(*) FROM releases WHERE ended_at IS NULL) AS releases",
            ))
            .await?;
        Ok(StoreCounts {
            sessions_online: row.count("sessions")?,
            outbox_depth: row.count("outbox")?,
            releases_running: row.count("releases")?,
        })
    }
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
pub async fn open(config: &DatabaseConfig, url: &str) -> Result<Arc<Store>, StoreError> {
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
) -> Result<Arc<Store>, StoreError> {
    match DatabaseUrl::parse(url).map_err(StoreError::Setup)? {
        DatabaseUrl::Sqlite(path) => {
            let options = sqlite::OpenOptions {
                must_exist: !config.create,
                marker_dir: state_dir.map(std::path::Path::to_owned),
            };
            Ok(Arc::new(sqlite::open_with(&path, &options).await?))
        }
        DatabaseUrl::Postgres(url) => {
            let pool = postgres::PoolSettings {
                max_connections: config.max_connections,
                acquire_timeout: std::time::Duration::from_millis(config.acquire_timeout_ms),
            };
            Ok(Arc::new(postgres::connect(&url, pool).await?))
        }
    }
}
