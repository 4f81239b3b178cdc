//! How a statement reaches either database: the one place where the store
//! tells SQLite from PostgreSQL.
//!
//! The statements are written once, with `$N` parameters that both
//! databases read by number. A [`Statement`] carries the text and its
//! values; a [`Tx`] (a transaction, the store's unit of work) or a
//! [`Pool`] runs it on whichever backend it holds, and a [`DbRow`] reads
//! its columns back. What the SQL itself must say differently (locking
//! clauses, `SKIP LOCKED`, a function name, how a write begins) is in the
//! [`Dialect`] of each backend, named where it is used.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Sqlite};

use super::StoreError;
use super::health::WriteHealth;

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

/// SQLite: one writer at a time holds the whole file (`BEGIN IMMEDIATE`
/// takes its lock up front), so there are no row locks to take.
pub(crate) const SQLITE: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    lock_contract: None,
    lock_parameters: None,
    skip_locked: "",
    greatest: "MAX",
    checkpoint: Some("PRAGMA wal_checkpoint(TRUNCATE)"),
};

/// PostgreSQL: rows are locked as they are read, and rows picked for work
/// skip those another instance holds.
pub(crate) const POSTGRES: Dialect = Dialect {
    begin_write: "BEGIN",
    lock_contract: Some("SELECT id FROM contracts WHERE id = $1 FOR UPDATE"),
    lock_parameters: Some("SELECT id FROM parameters WHERE id = 1 FOR UPDATE"),
    skip_locked: " FOR UPDATE SKIP LOCKED",
    greatest: "GREATEST",
    checkpoint: None,
};

/// A value bound to a statement parameter.
#[derive(Clone, Debug)]
pub(crate) enum Value<'a> {
    Int(Option<i64>),
    Bool(bool),
    Text(Option<Cow<'a, str>>),
    Bytes(Option<&'a [u8]>),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Some(Cow::Owned(v)))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::Text(v.map(Cow::Borrowed))
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Value::Text(v.as_deref().map(Cow::Borrowed))
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Bytes(Some(v))
    }
}

/// Values a statement has room for before it grows.
const VALUES: usize = 24;

/// A statement and the values of its parameters, built once and run on
/// either backend.
#[derive(Clone, Debug)]
pub(crate) struct Statement<'a> {
    sql: Cow<'a, str>,
    values: Vec<Value<'a>>,
    /// Where [`Statement::push_bind`] wrote a `$N`. SQLite keeps `$N` and
    /// `?N` as names and looks each one up in a list when it is bound, so a
    /// statement of a few thousand values spent seconds binding; it gets a
    /// plain `?` there instead.
    pushed: Vec<usize>,
}

impl<'a> Statement<'a> {
    /// A statement whose parameters are written `$1`, `$2`, … in its text.
    pub fn new(sql: impl Into<Cow<'a, str>>) -> Statement<'a> {
        Statement {
            sql: sql.into(),
            // Room for most statements' values at once: no reallocation
            // while an accounting event's twenty are bound.
            values: Vec::with_capacity(VALUES),
            pushed: Vec::new(),
        }
    }

    /// The statement's text, as it will run.
    #[cfg(test)]
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The value of the next numbered parameter.
    pub fn bind(mut self, value: impl Into<Value<'a>>) -> Statement<'a> {
        self.values.push(value.into());
        self
    }

    /// Appends text to a statement being built.
    pub fn push(&mut self, sql: &str) -> &mut Statement<'a> {
        self.sql.to_mut().push_str(sql);
        self
    }

    /// Appends a parameter for `value`, numbered after the others.
    pub fn push_bind(&mut self, value: impl Into<Value<'a>>) -> &mut Statement<'a> {
        self.values.push(value.into());
        let n = self.values.len();
        self.pushed.push(self.sql.len());
        self.sql.to_mut().push_str(&format!("${n}"));
        self
    }

    /// The text as SQLite should read it: each parameter pushed one by
    /// one as a plain `?`, taken in order (those written in the text stay
    /// `$N`: few, and a statement is either one or the other).
    fn sqlite_text(&self) -> Cow<'_, str> {
        if self.pushed.is_empty() {
            return Cow::Borrowed(&self.sql);
        }
        let mut text = String::with_capacity(self.sql.len());
        let mut from = 0;
        for &at in &self.pushed {
            text.push_str(&self.sql[from..at]);
            text.push('?');
            // Past the `$` and its digits.
            from = at + 1;
            from += self.sql[from..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
        }
        text.push_str(&self.sql[from..]);
        Cow::Owned(text)
    }

    /// Appends `(v1, v2, …)`, one parameter per value.
    pub fn push_list<V: Into<Value<'a>>>(
        &mut self,
        values: impl IntoIterator<Item = V>,
    ) -> &mut Statement<'a> {
        self.push("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(value);
        }
        self.push(")")
    }

    /// Appends `VALUES (…), (…)`, one tuple per item, each of the values
    /// `tuple` gives for it.
    pub fn push_values<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut tuple: impl FnMut(T) -> Vec<Value<'a>>,
    ) -> &mut Statement<'a> {
        self.push("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_list(tuple(item));
        }
        self
    }
}

/// Binds a statement's values on one backend. The bounds list what every
/// value kind needs of the backend, once.
fn bound<'q, DB>(
    sql: &'q str,
    statement: &'q Statement<'q>,
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: sqlx::Database,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q [u8]>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::query::<DB>(sql);
    for value in &statement.values {
        query = match value {
            Value::Int(v) => query.bind(*v),
            Value::Bool(v) => query.bind(*v),
            Value::Text(v) => query.bind(v.as_deref()),
            Value::Bytes(v) => query.bind(*v),
        };
    }
    query
}

/// A row of either backend.
pub(crate) enum DbRow {
    Sqlite(sqlx::sqlite::SqliteRow),
    Postgres(sqlx::postgres::PgRow),
}

impl DbRow {
    /// The value of a column, as `T`.
    pub fn get<'r, T>(&'r self, column: &str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, Sqlite>
            + sqlx::Type<Sqlite>
            + sqlx::Decode<'r, Postgres>
            + sqlx::Type<Postgres>,
    {
        use sqlx::Row as _;
        Ok(match self {
            DbRow::Sqlite(row) => row.try_get(column)?,
            DbRow::Postgres(row) => row.try_get(column)?,
        })
    }

    /// A column of seconds since the epoch, as an instant.
    pub fn instant(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        instant(self.get(column)?)
    }

    pub fn optional_instant(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.get::<Option<i64>>(column)?.map(instant).transpose()
    }

    /// A column that must hold a `u32`.
    pub fn u32(&self, column: &str) -> Result<u32, StoreError> {
        let value: i64 = self.get(column)?;
        u32::try_from(value)
            .map_err(|_| StoreError::Corrupt(format!("{column} = {value} is out of range")))
    }

    /// A count, or a counter that cannot be negative.
    pub fn count(&self, column: &str) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.get::<i64>(column)?).unwrap_or(0))
    }
}

/// Seconds since the epoch as an instant.
pub(crate) fn instant(seconds: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| StoreError::Corrupt(format!("instant {seconds} is out of range")))
}

/// Counters as database integers (which are signed).
pub(crate) fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A pool of connections to either backend.
#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

macro_rules! on_backend {
    ($self:expr, $variant:ident => $conn:ident, $body:expr) => {
        match $self {
            $variant::Sqlite($conn) => $body,
            $variant::Postgres($conn) => $body,
        }
    };
}

impl Pool {
    pub async fn fetch_all(&self, statement: Statement<'_>) -> Result<Vec<DbRow>, StoreError> {
        Ok(match self {
            Pool::Sqlite(pool) => bound(&statement.sqlite_text(), &statement)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(DbRow::Sqlite)
                .collect(),
            Pool::Postgres(pool) => bound(&statement.sql, &statement)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(DbRow::Postgres)
                .collect(),
        })
    }

    pub async fn fetch_optional(
        &self,
        statement: Statement<'_>,
    ) -> Result<Option<DbRow>, StoreError> {
        Ok(match self {
            Pool::Sqlite(pool) => bound(&statement.sqlite_text(), &statement)
                .fetch_optional(pool)
                .await?
                .map(DbRow::Sqlite),
            Pool::Postgres(pool) => bound(&statement.sql, &statement)
                .fetch_optional(pool)
                .await?
                .map(DbRow::Postgres),
        })
    }

    pub async fn fetch_one(&self, statement: Statement<'_>) -> Result<DbRow, StoreError> {
        Ok(match self {
            Pool::Sqlite(pool) => DbRow::Sqlite(
                bound(&statement.sqlite_text(), &statement)
                    .fetch_one(pool)
                    .await?,
            ),
            Pool::Postgres(pool) => {
                DbRow::Postgres(bound(&statement.sql, &statement).fetch_one(pool).await?)
            }
        })
    }

    pub async fn execute(&self, statement: Statement<'_>) -> Result<u64, StoreError> {
        Ok(match self {
            Pool::Sqlite(pool) => bound(&statement.sqlite_text(), &statement)
                .execute(pool)
                .await?
                .rows_affected(),
            Pool::Postgres(pool) => bound(&statement.sql, &statement)
                .execute(pool)
                .await?
                .rows_affected(),
        })
    }

    /// A transaction, begun with `begin` (a backend's own statement) or
    /// the default.
    async fn begin(&self, begin: Option<&'static str>) -> Result<Inner, sqlx::Error> {
        Ok(match (self, begin) {
            (Pool::Sqlite(pool), Some(sql)) => Inner::Sqlite(pool.begin_with(sql).await?),
            (Pool::Sqlite(pool), None) => Inner::Sqlite(pool.begin().await?),
            (Pool::Postgres(pool), Some(sql)) => Inner::Postgres(pool.begin_with(sql).await?),
            (Pool::Postgres(pool), None) => Inner::Postgres(pool.begin().await?),
        })
    }

    pub async fn close(&self) {
        on_backend!(self, Pool => pool, pool.close().await);
    }
}

enum Inner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// A transaction: the unit of work the application drives. Its reads and
/// writes are the typed methods of the store's aggregate modules; nothing
/// is written until [`Tx::commit`], and a transaction dropped without it
/// is rolled back.
///
/// A write transaction reports each failure that means the database
/// refuses writes to the store's [`WriteHealth`], and its commit that
/// writes work.
pub struct Tx {
    inner: Inner,
    dialect: &'static Dialect,
    health: Option<Arc<WriteHealth>>,
}

impl Tx {
    /// Begins a write transaction (`dialect.begin_write`).
    pub(crate) async fn write(
        pool: &Pool,
        dialect: &'static Dialect,
        health: Arc<WriteHealth>,
    ) -> Result<Tx, StoreError> {
        // Only a failure is news here: writes work again when a commit does.
        let inner = match pool.begin(Some(dialect.begin_write)).await {
            Ok(inner) => inner,
            Err(e) => return health.observe(Err(e.into())),
        };
        Ok(Tx {
            inner,
            dialect,
            health: Some(health),
        })
    }

    /// Begins a read transaction: a consistent snapshot for several reads.
    pub(crate) async fn read(pool: &Pool, dialect: &'static Dialect) -> Result<Tx, StoreError> {
        Ok(Tx {
            inner: pool.begin(None).await?,
            dialect,
            health: None,
        })
    }

    /// What the SQL of this backend says differently.
    pub(crate) fn dialect(&self) -> &'static Dialect {
        self.dialect
    }

    /// Writes everything this transaction did, at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        let result =
            on_backend!(self.inner, Inner => tx, tx.commit().await).map_err(StoreError::from);
        match &self.health {
            Some(health) => health.observe(result),
            None => result,
        }
    }

    /// Drops everything this transaction did.
    pub async fn rollback(self) -> Result<(), StoreError> {
        Ok(on_backend!(self.inner, Inner => tx, tx.rollback().await)?)
    }

    /// Notes a failed statement of a write.
    fn noted<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        let result = result.map_err(StoreError::from);
        match (&self.health, &result) {
            (Some(health), Err(_)) => health.observe(result),
            _ => result,
        }
    }

    pub(crate) async fn fetch_all(
        &mut self,
        statement: Statement<'_>,
    ) -> Result<Vec<DbRow>, StoreError> {
        let rows = match &mut self.inner {
            Inner::Sqlite(tx) => bound(&statement.sqlite_text(), &statement)
                .fetch_all(&mut **tx)
                .await
                .map(|rows| rows.into_iter().map(DbRow::Sqlite).collect()),
            Inner::Postgres(tx) => bound(&statement.sql, &statement)
                .fetch_all(&mut **tx)
                .await
                .map(|rows| rows.into_iter().map(DbRow::Postgres).collect()),
        };
        self.noted(rows)
    }

    pub(crate) async fn fetch_optional(
        &mut self,
        statement: Statement<'_>,
    ) -> Result<Option<DbRow>, StoreError> {
        let row = match &mut self.inner {
            Inner::Sqlite(tx) => bound(&statement.sqlite_text(), &statement)
                .fetch_optional(&mut **tx)
                .await
                .map(|row| row.map(DbRow::Sqlite)),
            Inner::Postgres(tx) => bound(&statement.sql, &statement)
                .fetch_optional(&mut **tx)
                .await
                .map(|row| row.map(DbRow::Postgres)),
        };
        self.noted(row)
    }

    pub(crate) async fn fetch_one(
        &mut self,
        statement: Statement<'_>,
    ) -> Result<DbRow, StoreError> {
        let row = match &mut self.inner {
            Inner::Sqlite(tx) => bound(&statement.sqlite_text(), &statement)
                .fetch_one(&mut **tx)
                .await
                .map(DbRow::Sqlite),
            Inner::Postgres(tx) => bound(&statement.sql, &statement)
                .fetch_one(&mut **tx)
                .await
                .map(DbRow::Postgres),
        };
        self.noted(row)
    }

    /// Runs a statement; the number of rows it changed.
    pub(crate) async fn execute(&mut self, statement: Statement<'_>) -> Result<u64, StoreError> {
        let done = match &mut self.inner {
            Inner::Sqlite(tx) => bound(&statement.sqlite_text(), &statement)
                .execute(&mut **tx)
                .await
                .map(|r| r.rows_affected()),
            Inner::Postgres(tx) => bound(&statement.sql, &statement)
                .execute(&mut **tx)
                .await
                .map(|r| r.rows_affected()),
        };
        self.noted(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_parameters_reach_sqlite_as_plain_question_marks() {
        let mut statement = Statement::new("SELECT id FROM contracts WHERE id IN ");
        statement.push_list(["1", "2", "3"]);
        statement.push(" AND state = ").push_bind("blocked");
        assert_eq!(
            statement.sql(),
            "SELECT id FROM contracts WHERE id IN ($1, $2, $3) AND state = $4"
        );
        assert_eq!(
            statement.sqlite_text(),
            "SELECT id FROM contracts WHERE id IN (?, ?, ?) AND state = ?"
        );
        // Past nine, the digits go too.
        let mut many = Statement::new("VALUES ");
        many.push_list(0..12_i64);
        assert_eq!(many.sqlite_text().matches('?').count(), 12);
        assert!(!many.sqlite_text().contains('$'), "{}", many.sqlite_text());
        // A statement written by hand keeps its numbered parameters.
        let written = Statement::new("SELECT $1, $2").bind(1_i64).bind(2_i64);
        assert_eq!(written.sqlite_text(), "SELECT $1, $2");
    }
}
