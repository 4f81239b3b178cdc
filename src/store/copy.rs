//! Moving from SQLite to PostgreSQL: `liberad --copy-to URL` copies every
//! table of the SQLite file the configuration names into a new PostgreSQL
//! database, ids included, in one PostgreSQL transaction read from one
//! SQLite snapshot: the copy is whole or nothing is written.
//!
//! The PostgreSQL schema is the list of what to copy: every table and
//! column it has must exist on the SQLite side, so a schema change that
//! forgets one side fails here instead of losing a column silently.

use std::path::Path;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::{Acquire, Row};

use super::db::Pool;
use super::postgres::PoolSettings;
use super::{Store, StoreError, postgres, sqlite};

/// The tables, parents before children.
const TABLES: [&str; 10] = [
    "contracts",
    "logins",
    "parameters",
    "releases",
    "audit",
    "sessions",
    "enforcement",
    "nas_restarts",
    "message_authenticator_seen",
    "tokens",
];

/// Rows per INSERT (PostgreSQL takes at most 65535 bound values).
const BATCH: usize = 1000;

/// How many rows of one table were copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    pub rows: u64,
}

/// One column of a PostgreSQL table and the type its values travel as.
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Integer,
    Text,
    Boolean,
    Bytes,
}

enum Value {
    Integer(Option<i64>),
    Text(Option<String>),
    Boolean(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

/// Copies the SQLite database at `source` into the PostgreSQL database at
/// `target`, which must hold no liberad data yet (it is created and
/// migrated if needed).
pub async fn sqlite_to_postgres(source: &Path, target: &str) -> Result<Vec<Copied>, StoreError> {
    if !source.is_file() {
        return Err(StoreError::Setup(format!(
            "no SQLite database at {}",
            source.display()
        )));
    }
    let sqlite = sqlite::open(source).await?;
    let pool = PoolSettings {
        max_connections: 2,
        acquire_timeout: Duration::from_secs(30),
    };
    let postgres = postgres::connect(target, pool).await?;
    let result = copy(&sqlite, &postgres).await;
    sqlite.close().await;
    postgres.close().await;
    result
}

async fn copy(sqlite: &Store, postgres: &Store) -> Result<Vec<Copied>, StoreError> {
    let (Pool::Sqlite(source_pool), Pool::Postgres(target_pool)) =
        (&sqlite.reader, &postgres.writer)
    else {
        return Err(StoreError::Setup(
            "a copy goes from SQLite to PostgreSQL".to_owned(),
        ));
    };
    let mut target = target_pool.begin().await?;
    check_tables(&mut target).await?;
    let holding: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM contracts) + (SELECT count(*) FROM logins) \
              + (SELECT count(*) FROM releases) + (SELECT count(*) FROM audit) \
              + (SELECT count(*) FROM sessions) + (SELECT count(*) FROM enforcement)",
    )
    .fetch_one(&mut *target)
    .await?;
    if holding > 0 {
        return Err(StoreError::Setup(
            "the PostgreSQL database already holds liberad data; copy only into a new database"
                .to_owned(),
        ));
    }
    // One read transaction: every table from the same snapshot.
    let mut reader = source_pool.acquire().await?;
    let mut source = reader.begin().await?;
    let mut copied = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let columns = columns(&mut target, table).await?;
        if table == "parameters" {
            // The migration wrote the defaults; the source's row replaces them.
            sqlx::query("DELETE FROM parameters")
                .execute(&mut *target)
                .await?;
        }
        let names = columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let select = format!("SELECT {names} FROM {table} ORDER BY rowid");
        let mut rows = sqlx::query(&select).fetch(&mut *source);
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH);
        let mut count = 0u64;
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|e| StoreError::Setup(format!("cannot read table {table} from SQLite: {e}")))?
        {
            batch.push(read_row(&row, &columns)?);
            if batch.len() == BATCH {
                count += insert(&mut target, table, &names, &mut batch).await?;
            }
        }
        drop(rows);
        count += insert(&mut target, table, &names, &mut batch).await?;
        copied.push(Copied { table, rows: count });
    }
    restart_identities(&mut target).await?;
    target.commit().await?;
    source.rollback().await?;
    Ok(copied)
}

/// The PostgreSQL schema holds exactly the tables this copy knows.
async fn check_tables(target: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    let mut present: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
           AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut *target)
    .await?;
    present.sort();
    let mut known: Vec<&str> = TABLES.to_vec();
    known.sort_unstable();
    if present != known {
        return Err(StoreError::Setup(format!(
            "the PostgreSQL schema has tables {present:?}, the copy knows {known:?}"
        )));
    }
    Ok(())
}

async fn columns(target: &mut sqlx::PgConnection, table: &str) -> Result<Vec<Column>, StoreError> {
    let rows = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *target)
    .await?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let data_type: String = row.try_get(1)?;
            let kind = match data_type.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Integer,
                "text" => Kind::Text,
                "boolean" => Kind::Boolean,
                "bytea" => Kind::Bytes,
                other => {
                    return Err(StoreError::Setup(format!(
                        "{table}.{name}: the copy does not know the type {other}"
                    )));
                }
            };
            Ok(Column { name, kind })
        })
        .collect()
}

fn read_row(row: &sqlx::sqlite::SqliteRow, columns: &[Column]) -> Result<Vec<Value>, StoreError> {
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = match column.kind {
                Kind::Integer => row.try_get(i).map(Value::Integer),
                Kind::Text => row.try_get(i).map(Value::Text),
                Kind::Boolean => row.try_get(i).map(Value::Boolean),
                Kind::Bytes => row.try_get(i).map(Value::Bytes),
            };
            value.map_err(|e| StoreError::Corrupt(format!("{}: {e}", column.name)))
        })
        .collect()
}

/// Writes the batch (and empties it); returns how many rows it held.
async fn insert(
    target: &mut sqlx::PgConnection,
    table: &str,
    names: &str,
    batch: &mut Vec<Vec<Value>>,
) -> Result<u64, StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let rows = batch.len() as u64;
    let mut query = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE "
    ));
    query.push_values(batch.drain(..), |mut row, values| {
        for value in values {
            match value {
                Value::Integer(v) => row.push_bind(v),
                Value::Text(v) => row.push_bind(v),
                Value::Boolean(v) => row.push_bind(v),
                Value::Bytes(v) => row.push_bind(v),
            };
        }
    });
    query
        .build()
        .execute(&mut *target)
        .await
        .map_err(|e| StoreError::Setup(format!("cannot write table {table}: {e}")))?;
    Ok(rows)
}

/// Ids generated after the copy continue after the copied ones.
async fn restart_identities(target: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(&mut *target)
    .await?;
    for (table, column) in identities {
        let statement = format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                    COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        );
        sqlx::query(&statement).execute(&mut *target).await?;
    }
    Ok(())
}
