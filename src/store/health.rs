//! Whether the database takes writes. Every write of the store reports its
//! outcome here: a failure that means the database refuses writes (disk
//! full, read-only, locked by another process, unreachable, its file
//! deleted) is logged once per interval with its cause, counted, and shown
//! by `liberactl ping` and the metrics; the first write that works again
//! ends it. A refusal about the data itself (a constraint, a rule) says
//! nothing about the database and changes nothing here.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::error::DatabaseError as _;
use tokio::time::Instant;

use super::StoreError;
use crate::logging::Throttle;
use crate::model::WriteStatus;

/// At most one "still refusing writes" line this often.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A stretch of failing writes.
struct Failing {
    cause: &'static str,
    error: String,
    since: DateTime<Utc>,
    started: Instant,
    failures: u64,
    log: Throttle,
}

#[derive(Default)]
struct State {
    failing: Option<Failing>,
    refused_by_cause: BTreeMap<&'static str, u64>,
}

/// The state of the database's writes, shared by every writer.
#[derive(Default)]
pub struct WriteHealth {
    state: Mutex<State>,
}

impl WriteHealth {
    /// Notes the outcome of a write and hands it back.
    pub fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.succeeded(),
            Err(e) => {
                if let Some(cause) = e.outage_cause() {
                    self.failed(cause, e);
                }
            }
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn succeeded(&self) {
        if let Some(ended) = self.lock().failing.take() {
            tracing::warn!(
                cause = ended.cause,
                failed_writes = ended.failures,
                after_secs = ended.started.elapsed().as_secs(),
                "the database takes writes again"
            );
        }
    }

    fn failed(&self, cause: &'static str, error: &StoreError) {
        let now = Instant::now();
        let mut state = self.lock();
        *state.refused_by_cause.entry(cause).or_default() += 1;
        match state.failing.as_mut() {
            None => {
                tracing::error!(
                    cause,
                    %error,
                    "the database refuses writes ({cause}): accounting is not acknowledged and \
                     changes are refused until it takes writes again; logins are still answered"
                );
                let log = Throttle::new(LOG_INTERVAL);
                log.allow(now);
                state.failing = Some(Failing {
                    cause,
                    error: error.to_string(),
                    since: Utc::now(),
                    started: now,
                    failures: 1,
                    log,
                });
            }
            Some(f) => {
                f.failures += 1;
                f.cause = cause;
                f.error = error.to_string();
                if let Some(held) = f.log.allow(now) {
                    tracing::error!(
                        cause,
                        %error,
                        failed_writes = f.failures,
                        for_secs = f.started.elapsed().as_secs(),
                        also_failed_since_last_line = held,
                        "the database still refuses writes ({cause})"
                    );
                }
            }
        }
    }

    /// Whether the connections that failed may be stuck in what they saw:
    /// SQLite opens a file it cannot write read-only and keeps it so, and a
    /// failed I/O may leave the connection's view behind. While writes fail
    /// so, each write takes a new connection.
    pub fn connections_stale(&self) -> bool {
        self.lock().failing.as_ref().is_some_and(|f| {
            matches!(
                f.cause,
                "read-only" | "disk I/O error" | "cannot open the database file" | "corrupt"
            )
        })
    }

    /// How writes stand now.
    pub fn status(&self) -> WriteStatus {
        let state = self.lock();
        let refused_by_cause = state
            .refused_by_cause
            .iter()
            .map(|(cause, n)| ((*cause).to_owned(), *n))
            .collect();
        match state.failing.as_ref() {
            None => WriteStatus {
                writable: true,
                refused_by_cause,
                ..WriteStatus::default()
            },
            Some(f) => WriteStatus {
                writable: false,
                cause: Some(f.cause.to_owned()),
                error: Some(f.error.clone()),
                since: Some(f.since),
                failures: f.failures,
                refused_by_cause,
            },
        }
    }
}

/// Why an error means the database does not take writes, in a few words,
/// or `None` when it is about the request's data (a constraint, a rule, a
/// value the database cannot hold), which says nothing of the database.
pub fn outage_cause(error: &sqlx::Error) -> Option<&'static str> {
    match error {
        sqlx::Error::PoolTimedOut => Some("unreachable: no connection within the timeout"),
        sqlx::Error::PoolClosed => Some("closed"),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => Some("unreachable"),
        sqlx::Error::WorkerCrashed => Some("connection lost"),
        sqlx::Error::Database(db) => {
            if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                let code: i64 = sqlite.code().and_then(|c| c.parse().ok()).unwrap_or(0);
                sqlite_cause(code)
            } else if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                postgres_cause(pg.code())
            } else {
                None
            }
        }
        _ => None,
    }
}

/// SQLite's primary result codes that mean the file refuses writes.
pub(crate) fn sqlite_cause(extended: i64) -> Option<&'static str> {
    match extended & 0xff {
        5 | 6 => Some("locked by another process"),
        8 => Some("read-only"),
        10 => Some("disk I/O error"),
        11 | 26 => Some("corrupt"),
        13 => Some("disk full"),
        14 => Some("cannot open the database file"),
        _ => None,
    }
}

/// PostgreSQL's SQLSTATEs that mean the server refuses writes.
fn postgres_cause(sqlstate: &str) -> Option<&'static str> {
    match sqlstate {
        "53100" => Some("disk full"),
        "25006" => Some("read-only"),
        "57P01" | "57P02" | "57P03" => Some("shutting down"),
        state if state.starts_with("53") => Some("out of resources"),
        state if state.starts_with("08") => Some("unreachable"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_told_apart_from_data_errors() {
        assert_eq!(sqlite_cause(13), Some("disk full"));
        // SQLITE_READONLY_DBMOVED: the extended code keeps the primary.
        assert_eq!(sqlite_cause(8 | (4 << 8)), Some("read-only"));
        assert_eq!(sqlite_cause(10 | (3 << 8)), Some("disk I/O error"));
        assert_eq!(sqlite_cause(5), Some("locked by another process"));
        // SQLITE_CONSTRAINT_UNIQUE is about the data.
        assert_eq!(sqlite_cause(19 | (8 << 8)), None);
        assert_eq!(postgres_cause("53100"), Some("disk full"));
        assert_eq!(postgres_cause("08006"), Some("unreachable"));
        assert_eq!(postgres_cause("22021"), None);
        assert_eq!(postgres_cause("23505"), None);
        assert_eq!(
            outage_cause(&sqlx::Error::PoolTimedOut),
            Some("unreachable: no connection within the timeout")
        );
        assert_eq!(outage_cause(&sqlx::Error::RowNotFound), None);
    }

    #[test]
    fn a_failure_lasts_until_a_write_works() {
        let health = WriteHealth::default();
        assert!(health.status().writable);
        let full = || -> Result<(), StoreError> {
            Err(StoreError::Unwritable {
                cause: "disk full",
                detail: "no space left".to_owned(),
            })
        };
        assert!(health.observe(full()).is_err());
        assert!(health.observe(full()).is_err());
        let status = health.status();
        assert!(!status.writable);
        assert_eq!(status.cause.as_deref(), Some("disk full"));
        assert_eq!(status.failures, 2);
        // A refusal about the data says nothing about the database.
        let refused: Result<(), StoreError> = Err(StoreError::Corrupt("a value".into()));
        assert!(health.observe(refused).is_err());
        assert!(!health.status().writable);
        assert!(health.observe(Ok(())).is_ok());
        let status = health.status();
        assert!(status.writable && status.cause.is_none() && status.failures == 0);
        // What was refused, by cause, stays counted.
        assert_eq!(status.refused_by_cause.get("disk full"), Some(&2));
    }
}
