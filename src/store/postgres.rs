//! The store on PostgreSQL, for several liberad instances sharing one
//! database. The statements are those of SQLite (`sql.rs`); rows are locked
//! where SQLite locks the whole file, and due releases are taken with
//! `FOR UPDATE SKIP LOCKED`, so that each is ended by one instance only.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use sqlx::Connection as _;

use super::Dialect;

type Db = sqlx::Postgres;
type Conn = sqlx::postgres::PgConnection;
type DbRow = sqlx::postgres::PgRow;

const DIALECT: Dialect = Dialect {
    begin_write: "BEGIN",
    lock_contract: Some("SELECT id FROM contracts WHERE id = $1 FOR UPDATE"),
    lock_parameters: Some("SELECT id FROM parameters WHERE id = 1 FOR UPDATE"),
    skip_locked: " FOR UPDATE SKIP LOCKED",
    greatest: "GREATEST",
    checkpoint: None,
};

include!("sql.rs");

/// liberad's state in a PostgreSQL database.
pub type PgStore = SqlStore;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How the pool is sized and how long a request may wait for it.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl SqlStore {
    /// Connects to the database at `url` and migrates it.
    pub async fn connect(url: &str, pool: PoolSettings) -> Result<SqlStore, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Setup(format!("database.url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            // A connection left inside a transaction by a failed write is
            // closed, never handed to the next one.
            .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Setup(format!("cannot connect to PostgreSQL: {e}")))?;
        MIGRATOR.run(&pool).await?;
        Ok(SqlStore {
            writer: pool.clone(),
            reader: pool,
            fast_reads: None,
            health: Default::default(),
            file: None,
        })
    }
}

/// PostgreSQL has no faster path than its pool: never built.
enum FastReads {}

impl FastReads {
    fn auth_lookup(&self, _: &str) -> Result<Option<AuthRecord>, StoreError> {
        match *self {}
    }
}
