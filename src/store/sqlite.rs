//! The store on an embedded SQLite file (WAL mode), created and migrated on
//! first start.
//!
//! Writes go through a pool of one connection and take the database lock up
//! front (`BEGIN IMMEDIATE`), so that a decision read inside a transaction
//! still holds when the transaction writes, even with a second process on
//! the same file. Reads use their own small pool and never wait for writes.
//! The statements themselves are shared with PostgreSQL (the aggregate
//! modules beside this one); what SQLite says differently is in
//! [`super::db::SQLITE`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use sqlx::Connection as _;

use super::db::{Pool, SQLITE};
use super::health::WriteHealth;
use super::logins::{AUTH_LOOKUP, AuthColumns};
use super::{DatabaseFile, Store, StoreError};
use crate::model::AuthRecord;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a write waits for another process holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write waits for the writer connection (behind other writes,
/// or being opened again after a failed transaction).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes of WAL kept after a checkpoint: a large import or a midnight of
/// expiries grows it, and SQLite truncates it back to this.
const JOURNAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;
/// Connections for reads.
const READERS: u32 = 4;

/// What opening an SQLite store may do when its file is missing.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Refuse to create a missing database (`[database] create = false`).
    pub must_exist: bool,
    /// The state directory whose marker records that liberad created this
    /// database before: a missing database it names is an error, never a
    /// silent fresh start.
    pub marker_dir: Option<PathBuf>,
}

/// The marker file in the state directory: one database path per line,
/// each a database liberad created there.
const MARKER: &str = "liberad-databases";

/// Opens (creating if needed) and migrates the database at `path`.
pub async fn open(path: &Path) -> Result<Store, StoreError> {
    open_with(path, &OpenOptions::default()).await
}

/// Opens and migrates the database at `path`, creating it (mode 0600,
/// whatever the umask: it holds passwords) only where `options` allow.
pub async fn open_with(path: &Path, options: &OpenOptions) -> Result<Store, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Setup(format!("cannot create directory {}: {e}", parent.display()))
        })?;
    }
    let created = create_if_missing(path, options)?;
    if !created {
        warn_if_readable(path);
    }
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        // Every acknowledged write survives a power cut.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        // The WAL shrinks back after a large write is checkpointed.
        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string());
    let health = Arc::new(WriteHealth::default());
    let writes = Arc::clone(&health);
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection left inside a transaction by a failed write is
        // closed; so is one that may have opened the file read-only (or
        // seen it fail) while writes fail: a new one finds it as it is.
        .before_acquire(move |conn, _| {
            let stale = writes.connections_stale();
            Box::pin(async move { Ok(!conn.is_in_transaction() && !stale) })
        })
        .connect_with(connect.clone())
        .await
        .map_err(|e| StoreError::Setup(format!("cannot open {}: {e}", path.display())))?;
    MIGRATOR.run(&writer).await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(READERS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
        .connect_with(connect)
        .await?;
    let fast_reads = FastReads {
        path: path.to_owned(),
        idle: Mutex::new(Vec::new()),
    };
    // Fail now, not at the first login, if it cannot read.
    let first = fast_reads.connect()?;
    fast_reads.put_back(first);
    let file = DatabaseFile::of(path)
        .map_err(|e| StoreError::Setup(format!("cannot read {}: {e}", path.display())))?;
    if let Some(dir) = &options.marker_dir {
        record_in_marker(dir, path)?;
    }
    Ok(Store {
        writer: Pool::Sqlite(writer),
        reader: Pool::Sqlite(reader),
        dialect: &SQLITE,
        fast_reads: Some(fast_reads),
        health,
        file: Some(file),
    })
}

/// Creates the database file, empty and private, if it is missing and
/// that is allowed; true when it did.
fn create_if_missing(path: &Path, options: &OpenOptions) -> Result<bool, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(false);
    }
    if options.must_exist {
        return Err(StoreError::Setup(format!(
            "the database {} does not exist and [database] create = false: restore it from \
             a backup, or set create = true to start with an empty database",
            path.display()
        )));
    }
    if let Some(dir) = &options.marker_dir
        && marker_names(dir, path)
    {
        return Err(StoreError::Setup(format!(
            "the database {} is missing, but liberad created it before (recorded in {}): \
             it was deleted or moved. Restore it from a backup; to start with an empty \
             database instead, remove its line from that file",
            path.display(),
            dir.join(MARKER).display()
        )));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", path.display())))?;
    Ok(true)
}

/// The absolute form of a database path, as the marker records it.
fn marker_line(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

fn marker_names(dir: &Path, path: &Path) -> bool {
    let line = marker_line(path);
    std::fs::read_to_string(dir.join(MARKER)).is_ok_and(|text| text.lines().any(|l| l == line))
}

fn record_in_marker(dir: &Path, path: &Path) -> Result<(), StoreError> {
    use std::io::Write;
    if marker_names(dir, path) {
        return Ok(());
    }
    let marker = dir.join(MARKER);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&marker)
        .and_then(|mut file| writeln!(file, "{}", marker_line(path)))
        .map_err(|e| StoreError::Setup(format!("cannot write {}: {e}", marker.display())))
}

/// Warns when the database, its WAL or its shared-memory file is readable
/// by every local user: it holds the logins' passwords.
fn warn_if_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut files = vec![path.to_owned()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in files {
        if let Ok(meta) = std::fs::metadata(&file)
            && meta.permissions().mode() & 0o004 != 0
        {
            tracing::warn!(
                file = %file.display(),
                mode = format!("{:04o}", meta.permissions().mode() & 0o7777),
                "the database holds passwords and every local user can read this file; \
                 run `chmod o-rwx` on it"
            );
        }
    }
}

/// Connections kept for the reads of RADIUS authentication.
const FAST_READERS: usize = 8;

/// The read every Access-Request makes, through SQLite's own API
/// (rusqlite) rather than sqlx, which hands each query to a connection's
/// worker thread and back at a cost several times the query's. Read-only
/// connections (in WAL mode they never wait for the writer), used on the
/// calling thread: the lookup is an indexed read of a few microseconds,
/// and each one sees every transaction committed before it.
pub(super) struct FastReads {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl FastReads {
    fn connect(&self) -> Result<rusqlite::Connection, StoreError> {
        use rusqlite::OpenFlags;
        let connection = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(read_error)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(read_error)?;
        Ok(connection)
    }

    fn put_back(&self, connection: rusqlite::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < FAST_READERS {
            idle.push(connection);
        }
    }

    pub(super) fn auth_lookup(&self, username: &str) -> Result<Option<AuthRecord>, StoreError> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let connection = match taken {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let columns = lookup(&connection, username).map_err(read_error);
        self.put_back(connection);
        columns?.map(AuthColumns::record).transpose()
    }
}

fn lookup(
    connection: &rusqlite::Connection,
    username: &str,
) -> Result<Option<AuthColumns>, rusqlite::Error> {
    let mut statement = connection.prepare_cached(AUTH_LOOKUP)?;
    let mut rows = statement.query([username])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(AuthColumns {
        username: row.get(0)?,
        password: row.get(1)?,
        password_type: row.get(2)?,
        reply: row.get(3)?,
        contract_id: row.get(4)?,
        state: row.get(5)?,
        open_ends_at: row.get(6)?,
    }))
}

fn read_error(e: rusqlite::Error) -> StoreError {
    let cause = match &e {
        rusqlite::Error::SqliteFailure(failure, _) => {
            super::health::sqlite_cause(i64::from(failure.extended_code))
        }
        _ => None,
    };
    StoreError::Read {
        message: e.to_string(),
        cause,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use sqlx::Row as _;

    use super::*;
    use crate::model::{AccountingEvent, AccountingKind, Actor};
    use crate::policy::{ContractState, Grant};
    use crate::store::NewContract;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    /// 2026-11-27 12:00 in São Paulo.
    const NOON: i64 = 1_795_791_600;

    fn pool(store: &Store) -> &sqlx::SqlitePool {
        match &store.writer {
            Pool::Sqlite(pool) => pool,
            Pool::Postgres(_) => unreachable!("an SQLite store"),
        }
    }

    /// A store with contract 1, blocked, and a release of it running from
    /// noon for a day.
    async fn store_with_release(dir: &Path) -> (Store, crate::model::Release) {
        let store = open(&dir.join("t.db")).await.unwrap();
        let mut tx = store.write().await.unwrap();
        let contract = NewContract {
            id: "1".to_owned(),
            name: String::new(),
            state: ContractState::Blocked,
        };
        tx.insert_contract(&contract, at(NOON)).await.unwrap();
        let grant = Grant {
            starts_at: at(NOON),
            ends_at: at(NOON + 86_400),
        };
        let release = tx
            .insert_release("1", &grant, "", &Actor::default())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (store, release)
    }

    #[tokio::test]
    async fn the_database_refuses_a_second_open_release() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_release(dir.path()).await;
        let second = sqlx::query(
            "INSERT INTO releases (contract_id, started_at, ends_at, operator) \
             VALUES ('1', ?1, ?2, 'x')",
        )
        .bind(NOON + 10)
        .bind(NOON + 20)
        .execute(pool(&store))
        .await
        .unwrap_err();
        assert!(StoreError::from(second).is_unique_violation());
    }

    #[tokio::test]
    async fn releases_and_audit_are_history() {
        let dir = tempfile::tempdir().unwrap();
        let (store, release) = store_with_release(dir.path()).await;
        let mut tx = store.write().await.unwrap();
        tx.write_audit(crate::store::NewAudit {
            at: at(NOON),
            actor: &Actor::default(),
            action: "release",
            contract_id: Some("1"),
            detail: "release 1",
            outcome: "ok",
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        for sql in [
            "UPDATE releases SET ends_at = ends_at + 86400",
            "UPDATE releases SET started_at = 0",
            "DELETE FROM releases",
            "UPDATE audit SET outcome = 'ok'",
            "DELETE FROM audit",
        ] {
            let e = sqlx::query(sql).execute(pool(&store)).await.unwrap_err();
            assert!(
                ["history", "only ever", "append-only"]
                    .iter()
                    .any(|m| e.to_string().contains(m)),
                "{sql}: {e}"
            );
        }
        // Recording the end is allowed, once.
        let mut tx = store.write().await.unwrap();
        let revoked = tx
            .end_open_release(
                "1",
                crate::model::EndReason::Revoked,
                "test",
                "",
                at(NOON + 60),
            )
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(revoked.id, release.id);
        assert_eq!(revoked.ended_at, Some(at(NOON + 60)));
        let e = sqlx::query("UPDATE releases SET end_reason = 'expired'")
            .execute(pool(&store))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("once"), "{e}");
    }

    /// The statements that find contracts' open sessions (to queue their
    /// enforcement, to show a contract) must go through indexes: a scan of
    /// the open sessions per contract made 100 000 expiries take hours.
    #[tokio::test]
    async fn open_session_lookups_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_release(dir.path()).await;
        let two = [("1", "test".to_owned()), ("2", "test".to_owned())];
        let one = [("1", String::new())];
        let tails = [
            (
                &two[..],
                " SELECT o.id, t.cause FROM open_sessions o JOIN targets t USING (contract_id)",
            ),
            (
                &two[..],
                " UPDATE enforcement SET state = 'superseded' \
                 WHERE state = 'pending' AND session_id IN (SELECT id FROM open_sessions)",
            ),
            (
                &one[..],
                " SELECT * FROM sessions WHERE id IN (SELECT id FROM open_sessions) \
                 ORDER BY started_at",
            ),
        ];
        for (contracts, tail) in tails {
            let mut statement = crate::store::outbox::with_open_sessions(contracts);
            statement.push(tail);
            let sql = statement.sql().to_owned();
            let plan = explain(&store, &sql, contracts.len() * 2).await;
            assert!(!plan.is_empty(), "{sql}: no plan");
            assert!(
                // Scanning the contracts asked for (`targets t`, their
                // VALUES) or the few rows found for them (`open_sessions`,
                // a subquery) is fine; scanning a table is not.
                plan.iter().all(|step| {
                    let mut words = step.split_whitespace();
                    words.next() != Some("SCAN")
                        || step.contains("CONSTANT ROW")
                        || matches!(words.next(), Some("t" | "targets" | "open_sessions"))
                        || step.starts_with("SCAN (")
                }),
                "{sql}: {plan:?}"
            );
        }
    }

    async fn explain(store: &Store, sql: &str, binds: usize) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query(&explain);
        for _ in 0..binds {
            query = query.bind("1");
        }
        query
            .fetch_all(pool(store))
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect()
    }

    fn event(kind: AccountingKind, user: &str, at_second: i64) -> AccountingEvent {
        AccountingEvent {
            kind,
            at: at(at_second),
            nas_name: "bras".into(),
            nas_identity: "10.0.0.1".into(),
            nas_address: "10.0.0.1".into(),
            username: user.into(),
            acct_session_id: "5F2A9C01".into(),
            nas_port: Some(0),
            ..AccountingEvent::default()
        }
    }

    async fn open_sessions(store: &Store) -> Vec<crate::model::Session> {
        let mut tx = store.read().await.unwrap();
        tx.sessions(None, true, 100).await.unwrap()
    }

    #[tokio::test]
    async fn a_session_is_found_under_its_old_key_or_without_its_port_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("t.db")).await.unwrap();
        let start = event(AccountingKind::Start, "ana", NOON);
        store
            .record_accounting(std::slice::from_ref(&start))
            .await
            .unwrap();
        // As a database from before the key had user and port held it.
        sqlx::query("UPDATE sessions SET session_key = $1, nas_port = NULL")
            .bind(start.legacy_session_key())
            .execute(pool(&store))
            .await
            .unwrap();
        let interim = AccountingEvent {
            input_octets: 1000,
            ..event(AccountingKind::Interim, "ana", NOON + 60)
        };
        store.record_accounting(&[interim]).await.unwrap();
        let open = open_sessions(&store).await;
        assert_eq!(open.len(), 1, "the Interim found the old session: {open:?}");
        assert_eq!(open[0].input_octets, 1000);
        assert_eq!(open[0].nas_port, Some(0));
        let key: String = sqlx::query_scalar("SELECT session_key FROM sessions")
            .fetch_one(pool(&store))
            .await
            .unwrap();
        assert_eq!(key, start.session_key(), "re-keyed");
        // A packet of the session that leaves NAS-Port out is still its own.
        let portless = AccountingEvent {
            nas_port: None,
            input_octets: 2000,
            ..event(AccountingKind::Interim, "ana", NOON + 90)
        };
        store.record_accounting(&[portless]).await.unwrap();
        let open = open_sessions(&store).await;
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].input_octets, 2000);
        // Another user's packet with the same Acct-Session-Id is not it.
        let other = event(AccountingKind::Stop, "bia", NOON + 61);
        store.record_accounting(&[other]).await.unwrap();
        assert_eq!(open_sessions(&store).await.len(), 1);
        let stop = event(AccountingKind::Stop, "ana", NOON + 120);
        store.record_accounting(&[stop]).await.unwrap();
        assert!(open_sessions(&store).await.is_empty());
        assert!(store.write_status().writable);
    }

    #[test]
    fn session_keys_tell_apart_users_and_ports_and_fields_that_run_together() {
        let base = event(AccountingKind::Start, "ana", NOON);
        let key = base.session_key();
        let other_user = event(AccountingKind::Start, "bia", NOON);
        let other_port = AccountingEvent {
            nas_port: Some(1),
            ..base.clone()
        };
        let no_port = AccountingEvent {
            nas_port: None,
            ..base.clone()
        };
        let port_id = AccountingEvent {
            nas_port_id: Some("ether1".into()),
            ..base.clone()
        };
        // "ana" + "5F2A9C01" against "ana5" + "F2A9C01".
        let shifted = AccountingEvent {
            username: "ana5".into(),
            acct_session_id: "F2A9C01".into(),
            ..base.clone()
        };
        for different in [&other_user, &other_port, &no_port, &port_id, &shifted] {
            assert_ne!(different.session_key(), key, "{different:?}");
        }
        // What is not part of a session's identity does not change its key.
        let later = AccountingEvent {
            kind: AccountingKind::Stop,
            at: at(NOON + 600),
            input_octets: 5,
            ..base.clone()
        };
        assert_eq!(later.session_key(), key);
    }
}
