//! The store on an embedded SQLite file (WAL mode), created and migrated on
//! first start.
//!
//! Writes go through a pool of one connection and take the database lock up
//! front (`BEGIN IMMEDIATE`), so that a decision read inside a transaction
//! still holds when the transaction writes, even with a second process on
//! the same file. Reads use their own small pool and never wait for writes.
//! The statements themselves are in `sql.rs`, shared with PostgreSQL.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use sqlx::Connection as _;

use super::Dialect;

type Db = sqlx::Sqlite;
type Conn = sqlx::sqlite::SqliteConnection;
type DbRow = sqlx::sqlite::SqliteRow;

const DIALECT: Dialect = Dialect {
    begin_write: "BEGIN IMMEDIATE",
    lock_contract: None,
    lock_parameters: None,
    skip_locked: "",
    greatest: "MAX",
    checkpoint: Some("PRAGMA wal_checkpoint(TRUNCATE)"),
};

include!("sql.rs");

/// liberad's state in one SQLite file.
pub type SqliteStore = SqlStore;

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

impl SqlStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<SqlStore, StoreError> {
        SqlStore::open_with(path, &OpenOptions::default()).await
    }

    /// Opens and migrates the database at `path`, creating it (mode 0600,
    /// whatever the umask: it holds passwords) only where `options` allow.
    pub async fn open_with(path: &Path, options: &OpenOptions) -> Result<SqlStore, StoreError> {
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
        let health = std::sync::Arc::new(WriteHealth::default());
        let writes = std::sync::Arc::clone(&health);
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
        Ok(SqlStore {
            writer,
            reader,
            fast_reads: Some(fast_reads),
            health,
            file: Some(file),
        })
    }
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
struct FastReads {
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

    fn auth_lookup(&self, username: &str) -> Result<Option<AuthRecord>, StoreError> {
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
    use std::sync::Arc;

    use super::*;
    use chrono_tz::America::Sao_Paulo;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    /// 2026-11-27 12:00 in São Paulo.
    const NOON: i64 = 1_795_791_600;

    async fn store_with_blocked(dir: &Path, id: &str) -> SqliteStore {
        let store = SqliteStore::open(&dir.join("t.db")).await.unwrap();
        let contract = NewContract {
            id: id.to_owned(),
            name: String::new(),
            state: ContractState::Blocked,
        };
        // Another handle may have created it already.
        let _ = store
            .add_contract(contract, &Actor::default(), at(NOON))
            .await;
        store
    }

    fn request(id: &str, now: i64) -> ReleaseRequest {
        ReleaseRequest {
            contract_id: id.to_owned(),
            reason: String::new(),
            actor: Actor::default(),
            now: at(now),
            timezone: Sao_Paulo,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_releases_through_two_handles_give_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(store_with_blocked(dir.path(), "1").await);
        let b = Arc::new(store_with_blocked(dir.path(), "1").await);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tasks.push(tokio::spawn(async move {
                store.release(&request("1", NOON)).await
            }));
        }
        let mut granted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => granted += 1,
                Err(StoreError::Refused(policy::Refusal::AlreadyReleased { .. })) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(granted, 1);
        assert_eq!(a.releases(Some("1"), 100).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_database_refuses_a_second_open_release() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_blocked(dir.path(), "1").await;
        store.release(&request("1", NOON)).await.unwrap();
        let second = sqlx::query(
            "INSERT INTO releases (contract_id, started_at, ends_at, operator) \
             VALUES ('1', ?1, ?2, 'x')",
        )
        .bind(NOON + 10)
        .bind(NOON + 20)
        .execute(&store.writer)
        .await
        .unwrap_err();
        assert!(is_unique_violation(&second), "{second}");
    }

    #[tokio::test]
    async fn releases_and_audit_are_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_blocked(dir.path(), "1").await;
        let release = store.release(&request("1", NOON)).await.unwrap().value;
        for sql in [
            "UPDATE releases SET ends_at = ends_at + 86400",
            "UPDATE releases SET started_at = 0",
            "DELETE FROM releases",
            "UPDATE audit SET outcome = 'ok'",
            "DELETE FROM audit",
        ] {
            let e = sqlx::query(sql).execute(&store.writer).await.unwrap_err();
            assert!(
                ["history", "only ever", "append-only"]
                    .iter()
                    .any(|m| e.to_string().contains(m)),
                "{sql}: {e}"
            );
        }
        // Recording the end is allowed, once.
        let revoked = store
            .revoke("1", "test", &Actor::default(), at(NOON + 60))
            .await
            .unwrap()
            .value;
        assert_eq!(revoked.id, release.id);
        assert_eq!(revoked.ended_at, Some(at(NOON + 60)));
        let e = sqlx::query("UPDATE releases SET end_reason = 'expired'")
            .execute(&store.writer)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("once"), "{e}");
    }

    #[tokio::test]
    async fn a_release_past_its_end_is_recorded_as_expired_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_blocked(dir.path(), "1").await;
        store
            .set_parameter(
                policy::Parameter::RenewAfterDays(0),
                &Actor::default(),
                at(NOON),
            )
            .await
            .unwrap();
        let first = store.release(&request("1", NOON)).await.unwrap().value;
        // The next day, the first release has run out and a new one starts.
        let next_day = NOON + 86_400;
        let second = store.release(&request("1", next_day)).await.unwrap().value;
        assert_ne!(first.id, second.id);
        let history = store.releases(Some("1"), 10).await.unwrap();
        let old = history.iter().find(|r| r.id == first.id).unwrap();
        assert_eq!(old.end_reason, Some(EndReason::Expired));
        assert_eq!(old.ended_at, Some(first.ends_at));
        assert!(
            store
                .audit(10)
                .await
                .unwrap()
                .iter()
                .any(|e| e.action == "release_end")
        );
    }

    /// The statements that find contracts' open sessions (to queue their
    /// enforcement, to show a contract) must go through indexes: a scan of
    /// the open sessions per contract made 100 000 expiries take hours.
    #[tokio::test]
    async fn open_session_lookups_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_blocked(dir.path(), "1").await;
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
            let mut query = with_open_sessions(contracts);
            query.push(tail);
            let sql = query.sql();
            let plan = explain(&store, sql, contracts.len() * 2).await;
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

    async fn explain(store: &SqliteStore, sql: &str, binds: usize) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query(&explain);
        for _ in 0..binds {
            query = query.bind("1");
        }
        query
            .fetch_all(&store.writer)
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

    async fn open_sessions(store: &SqliteStore) -> Vec<crate::model::Session> {
        store.sessions(None, true, 100).await.unwrap()
    }

    #[tokio::test]
    async fn a_session_is_found_under_its_old_key_or_without_its_port_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let start = event(AccountingKind::Start, "ana", NOON);
        store
            .record_accounting(std::slice::from_ref(&start))
            .await
            .unwrap();
        // As a database from before the key had user and port held it.
        sqlx::query("UPDATE sessions SET session_key = $1, nas_port = NULL")
            .bind(start.legacy_session_key())
            .execute(&store.writer)
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
            .fetch_one(&store.writer)
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

    #[tokio::test]
    async fn a_stop_or_a_nas_restart_ends_the_enforcement_on_its_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_blocked(dir.path(), "1").await;
        for user in ["ana", "bia"] {
            let login = NewLogin {
                username: user.into(),
                contract_id: "1".into(),
                password: Password::Cleartext("pw".into()),
                reply: Vec::new(),
            };
            store
                .add_login(login, &Actor::default(), at(NOON))
                .await
                .unwrap();
            store
                .record_accounting(&[event(AccountingKind::Start, user, NOON)])
                .await
                .unwrap();
        }
        let released = store.release(&request("1", NOON + 10)).await.unwrap();
        assert_eq!(released.jobs.len(), 2);
        let states = |jobs: Vec<crate::model::EnforcementJob>| {
            let mut states: Vec<(String, String, Option<String>)> = jobs
                .into_iter()
                .map(|j| (j.username, j.state.as_str().to_owned(), j.outcome))
                .collect();
            states.sort();
            states
        };
        // Ana hangs up: her job ends; Bia's stays pending.
        store
            .record_accounting(&[event(AccountingKind::Stop, "ana", NOON + 20)])
            .await
            .unwrap();
        let ended = Some("session ended".to_owned());
        assert_eq!(
            states(store.enforcement_jobs_by_id(&released.jobs).await.unwrap()),
            [
                ("ana".into(), "dropped".into(), ended.clone()),
                ("bia".into(), "pending".into(), None),
            ]
        );
        // The NAS restarts: Bia's session, and her job, end too.
        let on = event(AccountingKind::On, "", NOON + 30);
        store.record_accounting(&[on]).await.unwrap();
        assert_eq!(
            states(store.enforcement_jobs_by_id(&released.jobs).await.unwrap()),
            [
                ("ana".into(), "dropped".into(), ended.clone()),
                ("bia".into(), "dropped".into(), ended),
            ]
        );
    }
}
