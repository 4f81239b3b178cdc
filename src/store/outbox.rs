//! The enforcement outbox: CoA / Disconnect jobs, queued in the
//! transaction of the change that causes them, claimed and finished by the
//! enforcer under a lease, so that with several instances each job has one
//! sender and a dead instance's jobs are taken over.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::db::{DbRow, Statement, Tx};
use super::sessions::{SESSION_COLUMNS, session_from};
use super::{Outbox, Store, StoreError};
use crate::model::{
    EnforcementJob, JobClaim, JobResult, Lease, OutboxJob, RequestKind, SessionEnforcement,
    SessionTarget, WriteStatus,
};
use crate::policy::Profile;

/// An outbox job joined with its session.
const OUTBOX_SELECT: &str = "SELECT e.id, e.session_id, e.contract_id, e.profile, e.kind, \
       e.fallback, e.packet, e.sends, e.outcome, s.nas_name, s.nas_address, s.username, \
       s.acct_session_id, s.framed_ip_address, s.nas_ip_address, s.nas_identifier \
     FROM enforcement e JOIN sessions s ON s.id = e.session_id";

/// A job as operators see it.
const JOB_SELECT: &str = "SELECT e.id, e.created_at, e.updated_at, e.contract_id, \
       e.session_id, s.username, s.nas_name, s.acct_session_id, e.profile, e.cause, e.state, \
       e.kind, e.fallback, e.sends, e.error_cause, e.outcome, e.finished_at \
     FROM enforcement e JOIN sessions s ON s.id = e.session_id";

#[async_trait]
impl Outbox for Store {
    fn write_status(&self) -> WriteStatus {
        Store::write_status(self)
    }

    async fn pending_jobs(&self, after_id: i64, limit: u32) -> Result<Vec<OutboxJob>, StoreError> {
        let sql = format!(
            "{OUTBOX_SELECT} WHERE e.state = 'pending' AND e.id > $1 ORDER BY e.id LIMIT $2"
        );
        let statement = Statement::new(sql).bind(after_id).bind(i64::from(limit));
        let rows = self.reader.fetch_all(statement).await?;
        rows.iter().map(outbox_job_from).collect()
    }

    async fn inflight_jobs(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxJob>, StoreError> {
        let mut tx = self.write().await?;
        let skip = tx.dialect().skip_locked;
        let sql = format!(
            "UPDATE enforcement SET claimed_by = $1, lease_until = $2 \
             WHERE id IN (SELECT id FROM enforcement WHERE state = 'sent' \
               AND (claimed_by = $1 OR claimed_by IS NULL OR lease_until IS NULL \
                    OR lease_until < $3) \
               ORDER BY id{skip}) \
             RETURNING id"
        );
        let rows = tx
            .fetch_all(
                Statement::new(sql)
                    .bind(&lease.instance)
                    .bind(lease.until.timestamp())
                    .bind(now.timestamp()),
            )
            .await?;
        let ids = rows
            .iter()
            .map(|row| row.get::<i64>("id"))
            .collect::<Result<Vec<_>, _>>()?;
        let sql = format!("{OUTBOX_SELECT} WHERE e.id = $1");
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = tx.fetch_optional(Statement::new(&sql).bind(id)).await? {
                jobs.push(outbox_job_from(&row)?);
            }
        }
        tx.commit().await?;
        jobs.sort_by_key(|j| j.id);
        Ok(jobs)
    }

    async fn claim_jobs(
        &self,
        claims: &[JobClaim<'_>],
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.write().await?;
        let mut claimed = Vec::with_capacity(claims.len());
        for claim in claims {
            let statement = Statement::new(
                "UPDATE enforcement SET state = 'sent', kind = $2, packet = $3, sends = 1, \
                   updated_at = $4, claimed_by = $5, lease_until = $6 \
                 WHERE id = $1 AND state = 'pending'",
            )
            .bind(claim.id)
            .bind(claim.kind.as_str())
            .bind(claim.packet)
            .bind(now.timestamp())
            .bind(&lease.instance)
            .bind(lease.until.timestamp());
            claimed.push(tx.execute(statement).await? == 1);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn job_resent(
        &self,
        id: i64,
        sends: u32,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let statement = Statement::new(
            "UPDATE enforcement SET sends = $2, updated_at = $3, lease_until = $5 \
             WHERE id = $1 AND state = 'sent' AND claimed_by = $4",
        )
        .bind(id)
        .bind(i64::from(sends))
        .bind(now.timestamp())
        .bind(&lease.instance)
        .bind(lease.until.timestamp());
        let held = tx.execute(statement).await? == 1;
        tx.commit().await?;
        Ok(held)
    }

    async fn finish_jobs(
        &self,
        results: &[(i64, JobResult)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        for (id, result) in results {
            let statement = Statement::new(
                "UPDATE enforcement SET state = $2, outcome = $3, error_cause = $4, \
                   finished_at = $5, updated_at = $5 \
                 WHERE id = $1",
            )
            .bind(*id)
            .bind(result.state.as_str())
            .bind(&result.outcome)
            .bind(result.error_cause.map(i64::from))
            .bind(now.timestamp());
            tx.execute(statement).await?;
            if result.close_session {
                let statement = Statement::new(
                    "UPDATE sessions SET stopped_at = $2, updated_at = $2, \
                       terminate_cause = 'Session-Context-Not-Found', closed_by = 'gone' \
                     WHERE id = (SELECT session_id FROM enforcement WHERE id = $1) \
                       AND stopped_at IS NULL",
                )
                .bind(*id)
                .bind(now.timestamp());
                tx.execute(statement).await?;
            }
        }
        tx.commit().await
    }

    async fn fall_back(
        &self,
        id: i64,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let newer = tx
            .fetch_optional(
                Statement::new(
                    "SELECT n.id FROM enforcement n \
                     JOIN enforcement e ON e.session_id = n.session_id \
                     WHERE e.id = $1 AND n.id > e.id AND n.state IN ('pending', 'sent') LIMIT 1",
                )
                .bind(id),
            )
            .await?;
        let fell_back = newer.is_none();
        let statement = if fell_back {
            Statement::new(
                "UPDATE enforcement SET state = 'pending', kind = 'disconnect', fallback = TRUE, \
                   packet = NULL, sends = 0, outcome = $2, updated_at = $3 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(outcome)
        } else {
            Statement::new(
                "UPDATE enforcement SET state = 'superseded', outcome = $2, finished_at = $3, \
                   updated_at = $3 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(format!("{outcome}; a newer change replaced it"))
        };
        tx.execute(statement.bind(now.timestamp())).await?;
        tx.commit().await?;
        Ok(fell_back)
    }
}

impl Tx {
    /// Queues a CoA / Disconnect, towards `profile` (`None`: reject), for
    /// every open session of these contracts on a NAS that takes CoA, each
    /// contract with its cause, in a few statements; older unsent jobs of
    /// those sessions are superseded. The caller has decided that the
    /// contracts' profile changes. Returns (job, contract) pairs.
    pub async fn queue_enforcement(
        &mut self,
        contracts: &[(&str, String)],
        profile: Option<Profile>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        if contracts.is_empty() {
            return Ok(Vec::new());
        }
        let mut supersede = with_open_sessions(contracts);
        supersede
            .push(" UPDATE enforcement SET state = 'superseded', updated_at = ")
            .push_bind(now.timestamp())
            .push(", finished_at = ")
            .push_bind(now.timestamp())
            .push(
                ", outcome = 'replaced by a newer change before it was sent' \
                 WHERE state = 'pending' AND session_id IN (SELECT id FROM open_sessions)",
            );
        self.execute(supersede).await?;
        let mut insert = with_open_sessions(contracts);
        insert
            .push(
                " INSERT INTO enforcement (created_at, updated_at, contract_id, session_id, \
                   profile, cause, state) SELECT ",
            )
            .push_bind(now.timestamp())
            .push(", ")
            .push_bind(now.timestamp())
            .push(", o.contract_id, o.id, ")
            .push_bind(profile_name(profile))
            .push(
                ", t.cause, 'pending' FROM open_sessions o \
                 JOIN targets t ON t.contract_id = o.contract_id WHERE o.takes_coa \
                 RETURNING id, contract_id",
            );
        let rows = self.fetch_all(insert).await?;
        let mut jobs = rows
            .iter()
            .map(|row| Ok((row.get("id")?, row.get("contract_id")?)))
            .collect::<Result<Vec<(i64, String)>, StoreError>>()?;
        jobs.sort_by_key(|(id, _)| *id);
        Ok(jobs)
    }

    /// How many open sessions of a contract are on a NAS that takes no CoA
    /// (`coa_mode = "none"`): a change reaches them at their next
    /// connection.
    pub async fn sessions_without_coa(&mut self, contract_id: &str) -> Result<usize, StoreError> {
        let target = [(contract_id, String::new())];
        let mut count = with_open_sessions(&target);
        count.push(" SELECT COUNT(*) AS n FROM open_sessions WHERE NOT takes_coa");
        let n = self.fetch_one(count).await?.count("n")?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// A contract's open sessions, oldest first, each with its last job.
    pub async fn open_sessions_of(
        &mut self,
        contract_id: &str,
    ) -> Result<Vec<SessionEnforcement>, StoreError> {
        let target = [(contract_id, String::new())];
        let mut statement = with_open_sessions(&target);
        statement.push(&format!(
            " SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE id IN (SELECT id FROM open_sessions) ORDER BY started_at"
        ));
        let open = self
            .fetch_all(statement)
            .await?
            .iter()
            .map(session_from)
            .collect::<Result<Vec<_>, _>>()?;
        let last_job = format!("{JOB_SELECT} WHERE e.session_id = $1 ORDER BY e.id DESC LIMIT 1");
        let mut sessions = Vec::with_capacity(open.len());
        for session in open {
            let row = self
                .fetch_optional(Statement::new(&last_job).bind(session.id))
                .await?;
            sessions.push(SessionEnforcement {
                last_job: row.as_ref().map(job_from).transpose()?,
                session,
            });
        }
        Ok(sessions)
    }

    /// Jobs, newest first: of one contract or all, failed only or all.
    pub async fn enforcement_jobs(
        &mut self,
        contract_id: Option<&str>,
        failed_only: bool,
        limit: u32,
    ) -> Result<Vec<EnforcementJob>, StoreError> {
        let sql = format!(
            "{JOB_SELECT} WHERE ($1 IS NULL OR e.contract_id = $1) \
               AND (NOT $2 OR e.state IN ('nak', 'timeout', 'dropped')) \
             ORDER BY e.id DESC LIMIT $3"
        );
        let statement = Statement::new(sql)
            .bind(contract_id)
            .bind(failed_only)
            .bind(i64::from(limit));
        let rows = self.fetch_all(statement).await?;
        rows.iter().map(job_from).collect()
    }

    /// These jobs, as they stand.
    pub async fn enforcement_jobs_by_id(
        &mut self,
        ids: &[i64],
    ) -> Result<Vec<EnforcementJob>, StoreError> {
        let sql = format!("{JOB_SELECT} WHERE e.id = $1");
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.fetch_optional(Statement::new(&sql).bind(*id)).await? {
                jobs.push(job_from(&row)?);
            }
        }
        Ok(jobs)
    }
}

/// `WITH targets (contract_id, cause) AS (VALUES …), open_sessions (id,
/// contract_id) AS (…)`: some contracts and their open sessions, those
/// recorded for them and those of their logins. A UNION of two joins, each
/// through an index: as one query with an OR, SQLite scanned every open
/// session for each contract, and ending 100 000 releases at one instant
/// took hours instead of seconds.
pub(super) fn with_open_sessions<'a>(contracts: &'a [(&'a str, String)]) -> Statement<'a> {
    let mut statement = Statement::new("WITH targets (contract_id, cause) AS (");
    statement.push_values(contracts, |(contract_id, cause)| {
        vec![(*contract_id).into(), cause.as_str().into()]
    });
    statement.push(
        "), open_sessions (id, contract_id, takes_coa) AS ( \
           SELECT s.id, s.contract_id, s.takes_coa FROM targets t \
             JOIN sessions s ON s.contract_id = t.contract_id AND s.stopped_at IS NULL \
           UNION SELECT s.id, l.contract_id, s.takes_coa FROM targets t \
             JOIN logins l ON l.contract_id = t.contract_id \
             JOIN sessions s ON s.username = l.username AND s.stopped_at IS NULL)",
    );
    statement
}

/// The name a target profile is stored under.
fn profile_name(profile: Option<Profile>) -> &'static str {
    profile.map(Profile::as_str).unwrap_or("reject")
}

fn column_kind(row: &DbRow) -> Result<Option<RequestKind>, StoreError> {
    row.get::<Option<String>>("kind")?
        .map(|k| k.parse::<RequestKind>().map_err(StoreError::Corrupt))
        .transpose()
}

fn outbox_job_from(row: &DbRow) -> Result<OutboxJob, StoreError> {
    let profile: String = row.get("profile")?;
    let profile = match profile.as_str() {
        "reject" => None,
        "active" => Some(Profile::Active),
        "released" => Some(Profile::Released),
        "reduced" => Some(Profile::Reduced),
        "blocked" => Some(Profile::Blocked),
        other => return Err(StoreError::Corrupt(format!("unknown profile {other:?}"))),
    };
    Ok(OutboxJob {
        id: row.get("id")?,
        session_id: row.get("session_id")?,
        contract_id: row.get("contract_id")?,
        profile,
        kind: column_kind(row)?,
        fallback: row.get("fallback")?,
        packet: row.get("packet")?,
        sends: row.u32("sends")?,
        outcome: row.get("outcome")?,
        target: SessionTarget {
            nas_name: row.get("nas_name")?,
            nas_address: row.get("nas_address")?,
            username: row.get("username")?,
            acct_session_id: row.get("acct_session_id")?,
            framed_ip_address: row.get("framed_ip_address")?,
            nas_ip_address: row.get("nas_ip_address")?,
            nas_identifier: row.get("nas_identifier")?,
        },
    })
}

fn job_from(row: &DbRow) -> Result<EnforcementJob, StoreError> {
    let state: String = row.get("state")?;
    Ok(EnforcementJob {
        id: row.get("id")?,
        created_at: row.instant("created_at")?,
        updated_at: row.instant("updated_at")?,
        contract_id: row.get("contract_id")?,
        session_id: row.get("session_id")?,
        username: row.get("username")?,
        nas_name: row.get("nas_name")?,
        acct_session_id: row.get("acct_session_id")?,
        profile: row.get("profile")?,
        cause: row.get("cause")?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        kind: column_kind(row)?,
        fallback: row.get("fallback")?,
        sends: row.u32("sends")?,
        error_cause: row
            .get::<Option<i64>>("error_cause")?
            .and_then(|c| u32::try_from(c).ok()),
        outcome: row.get("outcome")?,
        finished_at: row.optional_instant("finished_at")?,
    })
}
