//! The store on PostgreSQL, for several liberad instances sharing one
//! database. The statements are those of SQLite (the aggregate modules
//! beside this one); rows are locked where SQLite locks the whole file, and
//! due releases are taken with `FOR UPDATE SKIP LOCKED`, so that each is
//! ended by one instance only ([`super::db::POSTGRES`]).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use sqlx::Connection as _;

use super::db::{POSTGRES, Pool};
use super::{Store, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How the pool is sized and how long a request may wait for it.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// Connects to the database at `url` and migrates it.
pub async fn connect(url: &str, pool: PoolSettings) -> Result<Store, StoreError> {
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
    Ok(Store {
        writer: Pool::Postgres(pool.clone()),
        reader: Pool::Postgres(pool),
        dialect: &POSTGRES,
        fast_reads: None,
        health: Default::default(),
        file: None,
    })
}
