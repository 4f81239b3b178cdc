// The statements of the store, shared by the SQLite and the PostgreSQL
// backends: each backend module defines `Db`, `Conn`, `DbRow` and
// `DIALECT`, then includes this file. Parameters are written `$N`, which
// both databases read by number; what differs (locking, a function name)
// comes from the dialect.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use sqlx::{Pool, QueryBuilder, Row, Transaction};

use super::health::WriteHealth;
use super::{
    ContractRecord, DatabaseFile, Enforced, ExpiredRelease, ImportRows, NewContract, NewLogin,
    Outbox, ReleaseRequest, StateChange, Store, StoreCounts, StoreError,
};
use crate::import::{ContractRow, ImportCounts, ImportOutcome, LoginRow, ParsedRow, RejectedRow};
use crate::model::{
    AccountingEvent, AccountingKind, Actor, AuditEntry, AuthRecord, Contract, EndReason,
    EnforcementJob, JobClaim, JobResult, Lease, Login, OutboxJob, Password, Release,
    ReplyAttribute, RequestKind, Session, SessionEnforcement, SessionTarget, WriteStatus,
};
use crate::policy::{self, ContractFacts, ContractState, Grant, Parameter, Parameters, Profile};

const CONTRACT_COLUMNS: &str = "id, name, state, state_changed_at, created_at";
const LOGIN_COLUMNS: &str = "username, contract_id, reply, created_at, updated_at";
const RELEASE_COLUMNS: &str = "id, contract_id, started_at, ends_at, operator, reason, actor_uid, \
     ended_at, end_reason, ended_by, end_note";
const AUDIT_COLUMNS: &str = "id, at, actor_uid, operator, action, contract_id, detail, outcome";
const SESSION_COLUMNS: &str = "id, nas_name, nas_identity, nas_address, nas_ip_address, \
     nas_identifier, username, contract_id, acct_session_id, framed_ip_address, \
     calling_station_id, nas_port, nas_port_id, started_at, updated_at, stopped_at, session_time, \
     input_octets, output_octets, terminate_cause, takes_coa";

/// The store on one database, through a pool for writes and one for reads
/// (on PostgreSQL the same pool), and, where the backend has one, a faster
/// path for the read every Access-Request makes.
pub struct SqlStore {
    writer: Pool<Db>,
    reader: Pool<Db>,
    fast_reads: Option<FastReads>,
    /// Whether the database takes writes, from the outcome of each.
    health: std::sync::Arc<WriteHealth>,
    /// SQLite: the file the store has open, to notice it deleted or
    /// replaced under the running daemon.
    file: Option<DatabaseFile>,
}

/// What RADIUS authentication reads of a login, by `$1` = User-Name.
const AUTH_LOOKUP: &str = "SELECT l.username, l.password, l.password_type, l.reply, \
       l.contract_id, c.state, \
       (SELECT r.ends_at FROM releases r \
         WHERE r.contract_id = c.id AND r.ended_at IS NULL) AS open_ends_at \
     FROM logins l JOIN contracts c ON c.id = l.contract_id \
     WHERE l.username = $1";

/// The columns of [`AUTH_LOOKUP`], as read.
struct AuthColumns {
    username: String,
    password: String,
    password_type: String,
    reply: String,
    contract_id: String,
    state: String,
    open_ends_at: Option<i64>,
}

impl AuthColumns {
    fn record(self) -> Result<AuthRecord, StoreError> {
        let password = Password::from_stored(&self.password_type, &self.password)
            .map_err(|e| StoreError::Corrupt(format!("login {}: {e}", self.username)))?;
        Ok(AuthRecord {
            password,
            contract_id: self.contract_id,
            state: self
                .state
                .parse()
                .map_err(|e: policy::UnknownState| StoreError::Corrupt(e.to_string()))?,
            open_release_ends_at: self.open_ends_at.map(instant).transpose()?,
            reply: parse_reply(&self.reply)?,
            username: self.username,
        })
    }
}

impl SqlStore {
    /// The pool reads go through (the copy between databases reads and
    /// writes whole tables through it).
    pub(super) fn pool(&self) -> &Pool<Db> {
        &self.reader
    }

    /// A write transaction: on SQLite it takes the database lock up front
    /// (`BEGIN IMMEDIATE`); on PostgreSQL, rows are locked as they are read.
    /// Refused while the database file is no longer the one at its path,
    /// so that nothing is acknowledged into a file that will be lost.
    async fn write(&self) -> Result<Transaction<'static, Db>, StoreError> {
        if let Some(file) = &self.file {
            file.check()?;
        }
        Ok(self.writer.begin_with(DIALECT.begin_write).await?)
    }

    /// Writes the WAL back into the database file and truncates it (SQLite):
    /// after a large write, and from time to time, so that a WAL grown by an
    /// import or a midnight of expiries does not keep its size.
    async fn checkpoint(&self) {
        let Some(sql) = DIALECT.checkpoint else {
            return;
        };
        if let Err(e) = sqlx::query(sql).execute(&self.writer).await {
            tracing::debug!(error = %e, "WAL checkpoint not done");
        }
    }

    async fn try_release(&self, request: &ReleaseRequest) -> Result<Enforced<Release>, StoreError> {
        let id = request.contract_id.as_str();
        let mut tx = self.write().await?;
        lock_contract(&mut tx, id).await?;
        expire_lapsed(&mut tx, id, request.now).await?;
        let parameters = load_parameters(&mut tx).await?;
        let facts = load_facts(&mut tx, id).await?;
        let grant =
            policy::check_release(&parameters, facts.as_ref(), request.now, request.timezone);
        let grant = match grant {
            Ok(grant) => grant,
            Err(refusal) => {
                let detail =
                    reason_detail(&refusal.describe(id, request.timezone), &request.reason);
                write_audit(
                    &mut tx,
                    request.now,
                    &request.actor,
                    "release",
                    Some(id),
                    &detail,
                    refusal.code(),
                )
                .await?;
                tx.commit().await?;
                return Err(StoreError::Refused(refusal));
            }
        };
        let sql = format!(
            "INSERT INTO releases (contract_id, started_at, ends_at, operator, reason, actor_uid) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {RELEASE_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(grant.starts_at.timestamp())
            .bind(grant.ends_at.timestamp())
            .bind(request.actor.display_name())
            .bind(&request.reason)
            .bind(request.actor.uid.map(i64::from))
            .fetch_one(&mut *tx)
            .await?;
        let release = release_from(&row)?;
        let detail = reason_detail(
            &format!(
                "release {} until {}",
                release.id,
                policy::format_local(release.ends_at, request.timezone)
            ),
            &request.reason,
        );
        write_audit(
            &mut tx,
            request.now,
            &request.actor,
            "release",
            Some(id),
            &detail,
            "ok",
        )
        .await?;
        // Facts exist: the policy granted the release.
        let state = facts.map(|f| f.state).unwrap_or(ContractState::Blocked);
        let queued = queue_enforcement(
            &mut tx,
            id,
            policy::effective_profile(state, false),
            Some(Profile::Released),
            &format!("release {} started", release.id),
            request.now,
        )
        .await?;
        tx.commit().await?;
        Ok(Enforced {
            value: release,
            jobs: queued.jobs,
            at_next_connection: queued.at_next_connection,
        })
    }
}

#[async_trait]
impl Outbox for SqlStore {
    fn write_status(&self) -> WriteStatus {
        if let Some(file) = &self.file
            && let Err(e) = file.check()
        {
            // Noticed here before any write: logged and counted like one.
            let _ = self.health.observe::<()>(Err(e));
        }
        self.health.status()
    }

    async fn pending_jobs(&self, after_id: i64, limit: u32) -> Result<Vec<OutboxJob>, StoreError> {
        let sql = format!(
            "{OUTBOX_SELECT} WHERE e.state = 'pending' AND e.id > $1 ORDER BY e.id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(outbox_job_from).collect()
    }

    async fn inflight_jobs(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxJob>, StoreError> {
        self.health.observe(
            async {
                let skip = DIALECT.skip_locked;
                let mut tx = self.write().await?;
                let sql = format!(
                    "UPDATE enforcement SET claimed_by = $1, lease_until = $2 \
                 WHERE id IN (SELECT id FROM enforcement WHERE state = 'sent' \
                   AND (claimed_by = $1 OR claimed_by IS NULL OR lease_until IS NULL \
                        OR lease_until < $3) \
                   ORDER BY id{skip}) \
                 RETURNING id"
                );
                let ids: Vec<i64> = sqlx::query_scalar(&sql)
                    .bind(&lease.instance)
                    .bind(lease.until.timestamp())
                    .bind(now.timestamp())
                    .fetch_all(&mut *tx)
                    .await?;
                let sql = format!("{OUTBOX_SELECT} WHERE e.id = $1");
                let mut jobs = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await? {
                        jobs.push(outbox_job_from(&row)?);
                    }
                }
                tx.commit().await?;
                jobs.sort_by_key(|j| j.id);
                Ok(jobs)
            }
            .await,
        )
    }

    async fn claim_jobs(
        &self,
        claims: &[JobClaim<'_>],
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                let mut claimed = Vec::with_capacity(claims.len());
                for claim in claims {
                    let done = sqlx::query(
                        "UPDATE enforcement SET state = 'sent', kind = $2, packet = $3, sends = 1, \
                       updated_at = $4, claimed_by = $5, lease_until = $6 \
                     WHERE id = $1 AND state = 'pending'",
                    )
                    .bind(claim.id)
                    .bind(claim.kind.as_str())
                    .bind(claim.packet)
                    .bind(now.timestamp())
                    .bind(&lease.instance)
                    .bind(lease.until.timestamp())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1;
                    claimed.push(done);
                }
                tx.commit().await?;
                Ok(claimed)
            }
            .await,
        )
    }

    async fn job_resent(
        &self,
        id: i64,
        sends: u32,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                let held = sqlx::query(
                    "UPDATE enforcement SET sends = $2, updated_at = $3, lease_until = $5 \
                 WHERE id = $1 AND state = 'sent' AND claimed_by = $4",
                )
                .bind(id)
                .bind(i64::from(sends))
                .bind(now.timestamp())
                .bind(&lease.instance)
                .bind(lease.until.timestamp())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                tx.commit().await?;
                Ok(held)
            }
            .await,
        )
    }

    async fn finish_jobs(
        &self,
        results: &[(i64, JobResult)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                for (id, result) in results {
                    sqlx::query(
                        "UPDATE enforcement SET state = $2, outcome = $3, error_cause = $4, \
                       finished_at = $5, updated_at = $5 \
                     WHERE id = $1",
                    )
                    .bind(id)
                    .bind(result.state.as_str())
                    .bind(&result.outcome)
                    .bind(result.error_cause.map(i64::from))
                    .bind(now.timestamp())
                    .execute(&mut *tx)
                    .await?;
                    if result.close_session {
                        sqlx::query(
                            "UPDATE sessions SET stopped_at = $2, updated_at = $2, \
                           terminate_cause = 'Session-Context-Not-Found', closed_by = 'gone' \
                         WHERE id = (SELECT session_id FROM enforcement WHERE id = $1) \
                           AND stopped_at IS NULL",
                        )
                        .bind(id)
                        .bind(now.timestamp())
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }
            .await,
        )
    }

    async fn fall_back(
        &self,
        id: i64,
        outcome: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.health.observe(async {
            let mut tx = self.write().await?;
            let newer: Option<i64> = sqlx::query_scalar(
                "SELECT n.id FROM enforcement n JOIN enforcement e ON e.session_id = n.session_id \
                 WHERE e.id = $1 AND n.id > e.id AND n.state IN ('pending', 'sent') LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let fell_back = newer.is_none();
            if fell_back {
                sqlx::query(
                    "UPDATE enforcement SET state = 'pending', kind = 'disconnect', fallback = TRUE, \
                       packet = NULL, sends = 0, outcome = $2, updated_at = $3 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(outcome)
                .bind(now.timestamp())
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(
                    "UPDATE enforcement SET state = 'superseded', outcome = $2, finished_at = $3, \
                       updated_at = $3 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(format!("{outcome}; a newer change replaced it"))
                .bind(now.timestamp())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(fell_back)
        }.await)
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn maintain(&self) {
        // Looking notices a file deleted under the daemon; a checkpoint
        // waits for writes that work.
        if self.write_status().writable {
            self.checkpoint().await;
        }
    }

    async fn mark_nas_without_coa(&self, names: &[String]) -> Result<(), StoreError> {
        self.health.observe(
            async {
                let mut query = QueryBuilder::<Db>::new("UPDATE sessions SET takes_coa = ");
                if names.is_empty() {
                    query.push("TRUE WHERE stopped_at IS NULL AND NOT takes_coa");
                } else {
                    // SET takes_coa = (…) WHERE … AND takes_coa <> (…)
                    for prefix in ["", " WHERE stopped_at IS NULL AND takes_coa <> "] {
                        query.push(prefix).push("(nas_name NOT IN (");
                        let mut list = query.separated(", ");
                        for name in names {
                            list.push_bind(name.clone());
                        }
                        query.push("))");
                    }
                }
                let mut tx = self.write().await?;
                query.build().execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }
            .await,
        )
    }

    async fn message_authenticator_seen(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT nas_name, source FROM message_authenticator_seen ORDER BY nas_name, source",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("nas_name")?, row.try_get("source")?)))
            .collect()
    }

    async fn remember_message_authenticator(
        &self,
        nas: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                sqlx::query(
                    "INSERT INTO message_authenticator_seen (nas_name, source, first_seen) \
                     VALUES ($1, $2, $3) ON CONFLICT (nas_name, source) DO NOTHING",
                )
                .bind(nas)
                .bind(source)
                .bind(now.timestamp())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
            .await,
        )
    }

    async fn parameters(&self) -> Result<Parameters, StoreError> {
        let mut conn = self.reader.acquire().await?;
        load_parameters(&mut conn).await
    }

    async fn set_parameter(
        &self,
        parameter: Parameter,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Parameters, StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                lock_parameters(&mut tx).await?;
                let next = load_parameters(&mut tx).await?.with(parameter);
                sqlx::query(
                    "UPDATE parameters SET enabled = $1, release_days = $2, renew_after_days = $3 \
                 WHERE id = 1",
                )
                .bind(next.enabled)
                .bind(i64::from(next.release_days))
                .bind(i64::from(next.renew_after_days))
                .execute(&mut *tx)
                .await?;
                let detail = parameter.to_string();
                write_audit(&mut tx, now, actor, "params_set", None, &detail, "ok").await?;
                tx.commit().await?;
                Ok(next)
            }
            .await,
        )
    }

    async fn audit_refused(
        &self,
        action: &str,
        contract_id: Option<&str>,
        detail: &str,
        outcome: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                write_audit(&mut tx, now, actor, action, contract_id, detail, outcome).await?;
                tx.commit().await?;
                Ok(())
            }
            .await,
        )
    }

    async fn add_contract(
        &self,
        contract: NewContract,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Contract, StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                if load_contract(&mut tx, &contract.id).await?.is_some() {
                    return Err(StoreError::ContractExists(contract.id));
                }
                let created = insert_contract(&mut tx, &contract, now).await?;
                let detail = format!("contract created as {}", created.state);
                write_audit(
                    &mut tx,
                    now,
                    actor,
                    "contract_add",
                    Some(&created.id),
                    &detail,
                    "ok",
                )
                .await?;
                tx.commit().await?;
                Ok(created)
            }
            .await,
        )
    }

    async fn set_contract_state(
        &self,
        id: &str,
        state: ContractState,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<StateChange, StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                let change =
                    change_state(&mut tx, id, state, reason, actor, now, "contract_state").await?;
                tx.commit().await?;
                Ok(change)
            }
            .await,
        )
    }

    async fn contract(&self, id: &str) -> Result<Option<Contract>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        load_contract(&mut conn, id).await
    }

    async fn contracts(
        &self,
        state: Option<ContractState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Contract>, StoreError> {
        let sql = format!(
            "SELECT {CONTRACT_COLUMNS} FROM contracts WHERE ($1 IS NULL OR state = $1) \
               AND ($2 IS NULL OR length(id) > length($2) \
                    OR (length(id) = length($2) AND id > $2)) \
             ORDER BY length(id), id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(state.map(ContractState::as_str))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(contract_from).collect()
    }

    async fn contract_record(
        &self,
        id: &str,
        audit_limit: u32,
    ) -> Result<Option<ContractRecord>, StoreError> {
        // One read transaction: a consistent snapshot of the contract.
        let mut tx = self.reader.begin().await?;
        let Some(contract) = load_contract(&mut tx, id).await? else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE contract_id = $1 \
             ORDER BY started_at DESC, id DESC LIMIT 2"
        );
        let recent_releases = sqlx::query(&sql)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(release_from)
            .collect::<Result<_, _>>()?;
        let sql =
            format!("SELECT {LOGIN_COLUMNS} FROM logins WHERE contract_id = $1 ORDER BY username");
        let logins = sqlx::query(&sql)
            .bind(id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(login_from)
            .collect::<Result<_, _>>()?;
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE contract_id = $1 ORDER BY id DESC LIMIT $2"
        );
        let audit = sqlx::query(&sql)
            .bind(id)
            .bind(i64::from(audit_limit))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(audit_from)
            .collect::<Result<_, _>>()?;
        let parameters = load_parameters(&mut tx).await?;
        let target = [(id, String::new())];
        let mut query = with_open_sessions(&target);
        query.push(format!(
            " SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE id IN (SELECT id FROM open_sessions) ORDER BY started_at"
        ));
        let open_sessions = query
            .build()
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(session_from)
            .collect::<Result<Vec<_>, _>>()?;
        let last_job = format!("{JOB_SELECT} WHERE e.session_id = $1 ORDER BY e.id DESC LIMIT 1");
        let mut sessions = Vec::with_capacity(open_sessions.len());
        for session in open_sessions {
            let row = sqlx::query(&last_job)
                .bind(session.id)
                .fetch_optional(&mut *tx)
                .await?;
            sessions.push(SessionEnforcement {
                last_job: row.as_ref().map(job_from).transpose()?,
                session,
            });
        }
        tx.commit().await?;
        Ok(Some(ContractRecord {
            contract,
            recent_releases,
            logins,
            audit,
            parameters,
            sessions,
        }))
    }

    async fn add_login(
        &self,
        login: NewLogin,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Login, StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                if load_contract(&mut tx, &login.contract_id).await?.is_none() {
                    return Err(StoreError::ContractNotFound(login.contract_id));
                }
                if load_login(&mut tx, &login.username).await?.is_some() {
                    return Err(StoreError::LoginExists(login.username));
                }
                let sql = format!(
                    "INSERT INTO logins \
                 (username, contract_id, password, password_type, reply, created_at, updated_at) \
                 VALUES ($1, $2, $3, $6, $4, $5, $5) RETURNING {LOGIN_COLUMNS}"
                );
                let row = sqlx::query(&sql)
                    .bind(&login.username)
                    .bind(&login.contract_id)
                    .bind(login.password.stored())
                    .bind(reply_text(&login.reply))
                    .bind(now.timestamp())
                    .bind(login.password.kind())
                    .fetch_one(&mut *tx)
                    .await?;
                let created = login_from(&row)?;
                let detail = format!(
                    "login {} added ({} reply attributes)",
                    created.username,
                    created.reply.len()
                );
                write_audit(
                    &mut tx,
                    now,
                    actor,
                    "login_add",
                    Some(&created.contract_id),
                    &detail,
                    "ok",
                )
                .await?;
                tx.commit().await?;
                Ok(created)
            }
            .await,
        )
    }

    async fn remove_login(
        &self,
        username: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Login, StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                let sql =
                    format!("DELETE FROM logins WHERE username = $1 RETURNING {LOGIN_COLUMNS}");
                let Some(row) = sqlx::query(&sql)
                    .bind(username)
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Err(StoreError::LoginNotFound(username.to_owned()));
                };
                let removed = login_from(&row)?;
                let detail = format!("login {username} removed");
                write_audit(
                    &mut tx,
                    now,
                    actor,
                    "login_remove",
                    Some(&removed.contract_id),
                    &detail,
                    "ok",
                )
                .await?;
                tx.commit().await?;
                Ok(removed)
            }
            .await,
        )
    }

    async fn login(&self, username: &str) -> Result<Option<Login>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        load_login(&mut conn, username).await
    }

    async fn release(&self, request: &ReleaseRequest) -> Result<Enforced<Release>, StoreError> {
        self.health.observe(
            async {
                match self.try_release(request).await {
                    // Another writer slipped a release in despite the lock (a
                    // second process without it): the retry sees it and refuses.
                    Err(StoreError::Database(e)) if is_unique_violation(&e) => {
                        self.try_release(request).await
                    }
                    other => other,
                }
            }
            .await,
        )
    }

    async fn preview_release(&self, request: &ReleaseRequest) -> Result<Grant, StoreError> {
        let mut tx = self.reader.begin().await?;
        let parameters = load_parameters(&mut tx).await?;
        let facts = load_facts(&mut tx, &request.contract_id).await?;
        tx.commit().await?;
        policy::check_release(&parameters, facts.as_ref(), request.now, request.timezone)
            .map_err(StoreError::Refused)
    }

    async fn revoke(
        &self,
        contract_id: &str,
        reason: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Enforced<Release>, StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                lock_contract(&mut tx, contract_id).await?;
                expire_lapsed(&mut tx, contract_id, now).await?;
                let Some(contract) = load_contract(&mut tx, contract_id).await? else {
                    return Err(StoreError::ContractNotFound(contract_id.to_owned()));
                };
                let ended = end_open_release(
                    &mut tx,
                    contract_id,
                    EndReason::Revoked,
                    &actor.display_name(),
                    reason,
                    now,
                )
                .await?;
                let Some(release) = ended else {
                    let detail = reason_detail("revoke refused", reason);
                    write_audit(
                        &mut tx,
                        now,
                        actor,
                        "revoke",
                        Some(contract_id),
                        &detail,
                        "not_released",
                    )
                    .await?;
                    tx.commit().await?;
                    return Err(StoreError::NotReleased(contract_id.to_owned()));
                };
                let detail = reason_detail(&format!("release {} revoked", release.id), reason);
                write_audit(
                    &mut tx,
                    now,
                    actor,
                    "revoke",
                    Some(contract_id),
                    &detail,
                    "ok",
                )
                .await?;
                let queued = queue_enforcement(
                    &mut tx,
                    contract_id,
                    policy::effective_profile(contract.state, true),
                    policy::effective_profile(contract.state, false),
                    &format!("release {} revoked", release.id),
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(Enforced {
                    value: release,
                    jobs: queued.jobs,
                    at_next_connection: queued.at_next_connection,
                })
            }
            .await,
        )
    }

    async fn releases(
        &self,
        contract_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Release>, StoreError> {
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE ($1 IS NULL OR contract_id = $1) \
             ORDER BY started_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(contract_id)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(release_from).collect()
    }

    async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn auth_lookup(&self, username: &str) -> Result<Option<AuthRecord>, StoreError> {
        if let Some(fast) = &self.fast_reads {
            return fast.auth_lookup(username);
        }
        let row = sqlx::query(AUTH_LOOKUP)
            .bind(username)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            AuthColumns {
                username: row.try_get("username")?,
                password: row.try_get("password")?,
                password_type: row.try_get("password_type")?,
                reply: row.try_get("reply")?,
                contract_id: row.try_get("contract_id")?,
                state: row.try_get("state")?,
                open_ends_at: row.try_get("open_ends_at")?,
            }
            .record()
        })
        .transpose()
    }

    async fn record_accounting(&self, events: &[AccountingEvent]) -> Result<(), StoreError> {
        self.health.observe(
            async {
                if events.is_empty() {
                    return Ok(());
                }
                let mut tx = self.write().await?;
                for event in events {
                    apply_accounting(&mut tx, event).await?;
                }
                tx.commit().await?;
                Ok(())
            }
            .await,
        )
    }

    async fn sessions(
        &self,
        contract_id: Option<&str>,
        online_only: bool,
        limit: u32,
    ) -> Result<Vec<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE ($1 IS NULL OR contract_id = $1) AND (NOT $2 OR stopped_at IS NULL) \
             ORDER BY started_at DESC, id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(contract_id)
            .bind(online_only)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(session_from).collect()
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM sessions WHERE stopped_at IS NULL) AS sessions, \
               (SELECT COUNT(*) FROM enforcement WHERE state IN ('pending', 'sent')) AS outbox, \
               (SELECT COUNT(*) FROM releases WHERE ended_at IS NULL) AS releases",
        )
        .fetch_one(&self.reader)
        .await?;
        let count = |column: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
        };
        Ok(StoreCounts {
            sessions_online: count("sessions")?,
            outbox_depth: count("outbox")?,
            releases_running: count("releases")?,
        })
    }

    async fn next_release_end(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let end: Option<i64> =
            sqlx::query_scalar("SELECT MIN(ends_at) FROM releases WHERE ended_at IS NULL")
                .fetch_one(&self.reader)
                .await?;
        end.map(instant).transpose()
    }

    async fn expire_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ExpiredRelease>, StoreError> {
        self.health.observe(
            async {
                let mut tx = self.write().await?;
                let expired = expire_releases(&mut tx, None, now, limit).await?;
                tx.commit().await?;
                Ok(expired)
            }
            .await,
        )
    }

    async fn enforcement_jobs(
        &self,
        contract_id: Option<&str>,
        failed_only: bool,
        limit: u32,
    ) -> Result<Vec<EnforcementJob>, StoreError> {
        let sql = format!(
            "{JOB_SELECT} WHERE ($1 IS NULL OR e.contract_id = $1) \
               AND (NOT $2 OR e.state IN ('nak', 'timeout', 'dropped')) \
             ORDER BY e.id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(contract_id)
            .bind(failed_only)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(job_from).collect()
    }

    async fn enforcement_jobs_by_id(&self, ids: &[i64]) -> Result<Vec<EnforcementJob>, StoreError> {
        let mut jobs = Vec::with_capacity(ids.len());
        let sql = format!("{JOB_SELECT} WHERE e.id = $1");
        let mut conn = self.reader.acquire().await?;
        for id in ids {
            if let Some(row) = sqlx::query(&sql)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
            {
                jobs.push(job_from(&row)?);
            }
        }
        Ok(jobs)
    }

    async fn import(
        &self,
        rows: &mut ImportRows,
        skip_invalid: bool,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<ImportOutcome, StoreError> {
        let outcome = self.health.observe(
            async {
                let mut tx = self.write().await?;
                // What this import took from the file so far, kept in the
                // transaction rather than in memory: a file of millions of rows
                // costs no more memory than one of a thousand.
                for sql in IMPORT_TABLES {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                let mut outcome = ImportOutcome::default();
                while let Some(batch) = rows.recv().await {
                    let batch = batch.map_err(|e| StoreError::InvalidInput(e.to_string()))?;
                    import_batch(&mut tx, &batch, actor, now, &mut outcome).await?;
                }
                let statuses = sqlx::query(
                    "SELECT status, COUNT(*) AS n FROM import_contracts GROUP BY status",
                )
                .fetch_all(&mut *tx)
                .await?;
                for row in statuses {
                    let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
                    match row.try_get::<String, _>("status")?.as_str() {
                        "created" => outcome.counts.contracts_created = n,
                        "updated" => outcome.counts.contracts_updated = n,
                        _ => outcome.counts.contracts_unchanged = n,
                    }
                }
                outcome.applied = outcome.rejected_total == 0 || skip_invalid;
                if !outcome.applied {
                    tx.rollback().await?;
                    return Ok(outcome);
                }
                let counts = &outcome.counts;
                let detail = format!(
                    "{} rows: contracts {} created, {} updated; logins {} created, {} updated; \
                 {} rows rejected",
                    outcome.rows,
                    counts.contracts_created,
                    counts.contracts_updated,
                    counts.logins_created,
                    counts.logins_updated,
                    outcome.rejected_total
                );
                write_audit(&mut tx, now, actor, "import", None, &detail, "ok").await?;
                for sql in ["DROP TABLE import_contracts", "DROP TABLE import_logins"] {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(outcome)
            }
            .await,
        );
        if outcome.as_ref().is_ok_and(|o| o.applied) {
            self.checkpoint().await;
        }
        outcome
    }
}

/// The import's own tables, temporary (this connection only, gone with the
/// transaction if it rolls back): each contract and login the file gave,
/// with the first line it was on, what the file said of the contract, and
/// what the import did to it (`created`, `updated`, `unchanged`).
const IMPORT_TABLES: [&str; 4] = [
    "CREATE TEMP TABLE IF NOT EXISTS import_contracts (id TEXT PRIMARY KEY, line BIGINT NOT NULL, \
       name TEXT, state TEXT, status TEXT NOT NULL)",
    "CREATE TEMP TABLE IF NOT EXISTS import_logins (username TEXT PRIMARY KEY, line BIGINT NOT NULL)",
    "DELETE FROM import_contracts",
    "DELETE FROM import_logins",
];

/// What the import holds of one contract: what the file gave, and what was
/// done to the contract.
struct ImportedContract {
    known: crate::import::Known,
    status: &'static str,
}

/// Checks a batch of rows against what the import took before, writes the
/// good ones, and counts the rest among the rejected.
async fn import_batch(
    conn: &mut Conn,
    batch: &[ParsedRow],
    actor: &Actor,
    now: DateTime<Utc>,
    outcome: &mut ImportOutcome,
) -> Result<(), StoreError> {
    use crate::import::{Known, Merge};
    outcome.rows += batch.len() as u64;
    let good = || batch.iter().filter_map(|row| row.as_ref().ok());
    let mut known = imported_contracts(conn, good().map(|r| r.contract.id.as_str())).await?;
    let mut logins_seen = imported_logins(
        conn,
        good()
            .filter_map(|r| r.login.as_ref())
            .map(|l| l.username.as_str()),
    )
    .await?;
    let mut firsts: Vec<&ContractRow> = Vec::new();
    let mut fills: Vec<&ContractRow> = Vec::new();
    let mut logins: Vec<&LoginRow> = Vec::new();
    for parsed in batch {
        let row = match parsed {
            Ok(row) => row,
            Err(rejected) => {
                outcome.reject(rejected.clone());
                continue;
            }
        };
        let decided = row
            .login
            .as_ref()
            .map_or(Ok(()), |login| {
                crate::import::repeated_login(
                    &login.username,
                    logins_seen.get(&login.username).copied(),
                )
            })
            .and_then(|()| {
                let before = known.get(&row.contract.id).map(|c| &c.known);
                crate::import::merge(before, &row.contract)
            });
        let merged = match decided {
            Ok(merged) => merged,
            Err(reason) => {
                outcome.reject(RejectedRow {
                    line: row.line,
                    reason,
                });
                continue;
            }
        };
        let before = known.get(&row.contract.id);
        let after = Known::after(before.map(|c| &c.known), &row.contract);
        // A contract first seen here gets its status once it is written.
        let status = before.map_or("unchanged", |c| c.status);
        known.insert(
            row.contract.id.clone(),
            ImportedContract {
                known: after,
                status,
            },
        );
        match merged {
            Merge::First => firsts.push(&row.contract),
            Merge::FillIn { .. } => fills.push(&row.contract),
            Merge::Same => {}
        }
        if let Some(login) = &row.login {
            logins_seen.insert(login.username.clone(), login.line);
            logins.push(login);
        }
    }
    // The contracts first seen in this batch, then what later rows filled
    // in (a contract may be both), then the logins.
    let mut touched = std::collections::HashSet::new();
    for (id, status) in import_contracts(conn, &firsts, actor, now, outcome).await? {
        if let Some(contract) = known.get_mut(&id) {
            contract.status = status;
        }
        touched.insert(id);
    }
    for row in &fills {
        let status = known.get(&row.id).map_or("unchanged", |c| c.status);
        let status = fill_in_contract(conn, row, status, actor, now, outcome).await?;
        if let Some(contract) = known.get_mut(&row.id) {
            contract.status = status;
        }
        touched.insert(row.id.clone());
    }
    let mut recorded =
        QueryBuilder::<Db>::new("INSERT INTO import_contracts (id, line, name, state, status) ");
    let mut entries: Vec<(&String, &ImportedContract)> = known
        .iter()
        .filter(|(id, _)| touched.contains(*id))
        .collect();
    entries.sort_by_key(|(_, c)| c.known.line);
    if !entries.is_empty() {
        recorded.push_values(&entries, |mut values, (id, contract)| {
            values
                .push_bind(id.as_str())
                .push_bind(i64::try_from(contract.known.line).unwrap_or(i64::MAX))
                .push_bind(contract.known.name.as_deref())
                .push_bind(contract.known.state.map(ContractState::as_str))
                .push_bind(contract.status);
        });
        recorded.push(
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, state = excluded.state, \
             status = excluded.status",
        );
        recorded.build().execute(&mut *conn).await?;
    }
    import_logins(conn, &logins, actor, now, &mut outcome.counts).await?;
    if !logins.is_empty() {
        let mut recorded = QueryBuilder::<Db>::new("INSERT INTO import_logins (username, line) ");
        recorded.push_values(&logins, |mut values, login| {
            values
                .push_bind(login.username.as_str())
                .push_bind(i64::try_from(login.line).unwrap_or(i64::MAX));
        });
        recorded.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The contracts among `ids` that this import has seen, with what it did.
async fn imported_contracts<'a>(
    conn: &mut Conn,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, ImportedContract>, StoreError> {
    let ids: Vec<&str> = ids.collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut query = QueryBuilder::<Db>::new(
        "SELECT id, line, name, state, status FROM import_contracts WHERE id IN (",
    );
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(id);
    }
    query.push(")");
    let rows = query.build().fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            let state = row
                .try_get::<Option<String>, _>("state")?
                .map(|s| s.parse::<ContractState>())
                .transpose()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let status = match row.try_get::<String, _>("status")?.as_str() {
                "created" => "created",
                "updated" => "updated",
                _ => "unchanged",
            };
            Ok((
                row.try_get("id")?,
                ImportedContract {
                    known: crate::import::Known {
                        line: u64::try_from(row.try_get::<i64, _>("line")?).unwrap_or(0),
                        name: row.try_get("name")?,
                        state,
                    },
                    status,
                },
            ))
        })
        .collect()
}

/// The logins among `usernames` that this import has seen, by first line.
async fn imported_logins<'a>(
    conn: &mut Conn,
    usernames: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, u64>, StoreError> {
    let usernames: Vec<&str> = usernames.collect();
    if usernames.is_empty() {
        return Ok(HashMap::new());
    }
    let mut query =
        QueryBuilder::<Db>::new("SELECT username, line FROM import_logins WHERE username IN (");
    let mut list = query.separated(", ");
    for username in usernames {
        list.push_bind(username);
    }
    query.push(")");
    let rows = query.build().fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("username")?,
                u64::try_from(row.try_get::<i64, _>("line")?).unwrap_or(0),
            ))
        })
        .collect()
}

/// Creates or updates the contracts the file gives for the first time, in
/// a few statements; returns what was done to each.
async fn import_contracts(
    conn: &mut Conn,
    rows: &[&ContractRow],
    actor: &Actor,
    now: DateTime<Utc>,
    outcome: &mut ImportOutcome,
) -> Result<HashMap<String, &'static str>, StoreError> {
    let mut done = HashMap::with_capacity(rows.len());
    if rows.is_empty() {
        return Ok(done);
    }
    let existing = load_contracts(conn, rows.iter().map(|r| r.id.as_str())).await?;
    let mut created = Vec::new();
    let mut audit = Vec::new();
    for row in rows {
        let Some(existing) = existing.get(&row.id) else {
            let state = row.state.unwrap_or(ContractState::Active);
            let detail = format!("line {}: contract created as {state}", row.line);
            audit.push((row.id.as_str(), detail));
            created.push(NewContract {
                id: row.id.clone(),
                name: row.name.clone().unwrap_or_default(),
                state,
            });
            done.insert(row.id.clone(), "created");
            continue;
        };
        let changed = update_contract(conn, existing, row, actor, now, &mut audit, outcome).await?;
        done.insert(
            row.id.clone(),
            if changed { "updated" } else { "unchanged" },
        );
    }
    insert_contracts(conn, &created, now).await?;
    write_audits(conn, now, actor, "import", &audit).await?;
    Ok(done)
}

/// Gives an existing contract the name and state a row says, where they
/// differ; true when something changed.
async fn update_contract<'r>(
    conn: &mut Conn,
    existing: &Contract,
    row: &'r ContractRow,
    actor: &Actor,
    now: DateTime<Utc>,
    audit: &mut Vec<(&'r str, String)>,
    outcome: &mut ImportOutcome,
) -> Result<bool, StoreError> {
    let mut changed = false;
    if let Some(name) = row.name.as_ref().filter(|n| **n != existing.name) {
        sqlx::query("UPDATE contracts SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(&row.id)
            .execute(&mut *conn)
            .await?;
        let detail = format!("line {}: name changed to {name:?}", row.line);
        audit.push((row.id.as_str(), detail));
        changed = true;
    }
    if let Some(state) = row.state.filter(|s| *s != existing.state) {
        let reason = format!("import, line {}", row.line);
        let change = change_state(conn, &row.id, state, &reason, actor, now, "import").await?;
        outcome.counts.enforcement_jobs += change.jobs.len() as u64;
        changed = true;
    }
    Ok(changed)
}

/// Applies what a later row fills in of a contract the import already
/// wrote; returns what the import has now done to it.
async fn fill_in_contract(
    conn: &mut Conn,
    row: &ContractRow,
    status: &'static str,
    actor: &Actor,
    now: DateTime<Utc>,
    outcome: &mut ImportOutcome,
) -> Result<&'static str, StoreError> {
    let Some(existing) = load_contract(conn, &row.id).await? else {
        return Err(StoreError::ContractNotFound(row.id.clone()));
    };
    let mut audit = Vec::new();
    if status == "created" {
        // Made by this import: the row completes its creation.
        sqlx::query(
            "UPDATE contracts SET name = COALESCE($1, name), state = COALESCE($2, state) \
             WHERE id = $3",
        )
        .bind(row.name.as_deref())
        .bind(row.state.map(ContractState::as_str))
        .bind(&row.id)
        .execute(&mut *conn)
        .await?;
        let given: Vec<String> = [
            row.name.as_ref().map(|n| format!("name {n:?}")),
            row.state.map(|s| format!("state {s}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        audit.push((
            row.id.as_str(),
            format!("line {}: {}", row.line, given.join(", ")),
        ));
        write_audits(conn, now, actor, "import", &audit).await?;
        return Ok("created");
    }
    let changed = update_contract(conn, &existing, row, actor, now, &mut audit, outcome).await?;
    write_audits(conn, now, actor, "import", &audit).await?;
    Ok(if changed || status == "updated" {
        "updated"
    } else {
        "unchanged"
    })
}

/// Creates or updates logins, in a few statements per batch.
async fn import_logins(
    conn: &mut Conn,
    rows: &[&LoginRow],
    actor: &Actor,
    now: DateTime<Utc>,
    counts: &mut ImportCounts,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let existing = load_login_secrets(conn, rows).await?;
    let mut created = Vec::new();
    let mut audit = Vec::new();
    for row in rows {
        let reply = reply_text(&row.reply);
        let Some(old) = existing.get(&row.username) else {
            let detail = format!("line {}: login {} created", row.line, row.username);
            audit.push((row.contract_id.as_str(), detail));
            created.push((*row, reply));
            continue;
        };
        if old.contract_id == row.contract_id
            && old.password == row.password.stored()
            && old.password_type == row.password.kind()
            && old.reply == reply
        {
            counts.logins_unchanged += 1;
            continue;
        }
        sqlx::query(
            "UPDATE logins SET contract_id = $2, password = $3, password_type = $6, \
             reply = $4, updated_at = $5 WHERE username = $1",
        )
        .bind(&row.username)
        .bind(&row.contract_id)
        .bind(row.password.stored())
        .bind(&reply)
        .bind(now.timestamp())
        .bind(row.password.kind())
        .execute(&mut *conn)
        .await?;
        counts.logins_updated += 1;
        let detail = format!("line {}: login {} updated", row.line, row.username);
        audit.push((row.contract_id.as_str(), detail));
    }
    insert_logins(conn, &created, now).await?;
    counts.logins_created += created.len() as u64;
    write_audits(conn, now, actor, "import", &audit).await
}

/// Applies one accounting event inside a write transaction. Events are
/// ordered by when they happened (arrival minus Acct-Delay-Time), not by
/// when they arrived: an event older than what its session already has is
/// late, and a Start after its session's Stop reopens nothing.
async fn apply_accounting(conn: &mut Conn, event: &AccountingEvent) -> Result<(), StoreError> {
    let at = event.at.timestamp();
    if matches!(event.kind, AccountingKind::On | AccountingKind::Off) {
        let (cause, closed_by) = if event.kind == AccountingKind::On {
            ("NAS-Reboot", "nas_on")
        } else {
            ("NAS-Request", "nas_off")
        };
        // Its sessions end: a CoA or Disconnect still on its way to one
        // of them has nothing left to change.
        sqlx::query(
            "UPDATE enforcement SET state = 'dropped', outcome = $4, finished_at = $1, \
               updated_at = $1 \
             WHERE state IN ('pending', 'sent') AND session_id IN (SELECT id FROM sessions \
               WHERE nas_name = $2 AND nas_identity = $3 AND stopped_at IS NULL)",
        )
        .bind(at)
        .bind(&event.nas_name)
        .bind(&event.nas_identity)
        .bind(SESSION_ENDED)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE sessions SET stopped_at = $1, updated_at = $1, terminate_cause = $2, \
               closed_by = $5 \
             WHERE nas_name = $3 AND nas_identity = $4 AND stopped_at IS NULL",
        )
        .bind(at)
        .bind(cause)
        .bind(&event.nas_name)
        .bind(&event.nas_identity)
        .bind(closed_by)
        .execute(&mut *conn)
        .await?;
        let greatest = DIALECT.greatest;
        let sql = format!(
            "INSERT INTO nas_restarts (nas_name, nas_identity, at) VALUES ($1, $2, $3) \
             ON CONFLICT (nas_name, nas_identity) \
             DO UPDATE SET at = {greatest}(nas_restarts.at, excluded.at)"
        );
        sqlx::query(&sql)
            .bind(&event.nas_name)
            .bind(&event.nas_identity)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    let key = event.session_key();
    let stopped_at = (event.kind == AccountingKind::Stop).then_some(at);
    // Twice at most: if another instance opens the same session between
    // our look-up and our insert, the second pass updates its row.
    for _ in 0..2 {
        let open = match sqlx::query(
            "SELECT id, started_at, updated_at FROM sessions \
             WHERE session_key = $1 AND stopped_at IS NULL",
        )
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await?
        {
            Some(open) => Some(open),
            // A Start names its session as its NAS will: its key is the
            // session's, and a miss is a new session (the look-up by
            // parts is for the packets after it).
            None if event.kind == AccountingKind::Start => None,
            None => compatible_session(conn, &key, event, true).await?,
        };
        if let Some(open) = open {
            let (id, started, updated): (i64, i64, i64) = (
                open.try_get("id")?,
                open.try_get("started_at")?,
                open.try_get("updated_at")?,
            );
            let late = match event.kind {
                // A Stop is final: it closes the session unless it is older
                // than the session's start (an earlier session's, with the
                // same id), even when it is a second older than the last
                // Interim (Acct-Delay-Time counts whole seconds).
                AccountingKind::Stop => at < started,
                _ => at < updated,
            };
            if late {
                return Ok(());
            }
            return update_session(
                conn,
                id,
                event,
                at.max(updated),
                stopped_at.map(|s| s.max(updated)),
            )
            .await;
        }
        let closed = match sqlx::query(
            "SELECT stopped_at, closed_by FROM sessions WHERE session_key = $1 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await?
        {
            Some(closed) => Some(closed),
            None if event.kind == AccountingKind::Start => None,
            None => compatible_session(conn, &key, event, false).await?,
        };
        if let Some(closed) = closed {
            let stopped: i64 = closed
                .try_get::<Option<i64>, _>("stopped_at")?
                .unwrap_or(at);
            let closed_by: Option<String> = closed.try_get("closed_by")?;
            // An Interim or Stop for a closed session is late or a repeat:
            // the closed record stands. So does a Start from before the
            // close (its Acct-Delay-Time puts it there), and a Start soon
            // after its session's Stop with no restart of the NAS between
            // (the same Start sent again after the duplicate window). A
            // Start after the NAS restarted, or lost the session, or long
            // after the Stop, is a new session with a reused id.
            let late = match event.kind {
                AccountingKind::Start => {
                    at <= stopped
                        || (closed_by.as_deref() == Some("stop")
                            && at <= stopped.saturating_add(LATE_START_WINDOW_SECS)
                            && !restarted_since(conn, event, stopped).await?)
                }
                _ => true,
            };
            if late {
                return Ok(());
            }
        }
        if insert_session(conn, &key, event, at, stopped_at).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// The outcome of an enforcement job whose session stopped before the NAS
/// answered: it is not sent again, and the next connection gets the
/// profile in force.
const SESSION_ENDED: &str = "session ended";

/// The session a packet means when its key finds none, open or (with
/// `open` false) the newest of any: one with its NAS, User-Name and
/// Acct-Session-Id whose NAS-Port and NAS-Port-Id agree where both say one
/// (a NAS that leaves them out of some packets of a session), the newest
/// if several; or one recorded before sessions were keyed by user and
/// port, which takes the packet's key from now on.
async fn compatible_session(
    conn: &mut Conn,
    key: &str,
    event: &AccountingEvent,
    open: bool,
) -> Result<Option<DbRow>, StoreError> {
    let port = event.nas_port.map(i64::from);
    let sql = format!(
        "SELECT id, started_at, updated_at, stopped_at, closed_by, session_key FROM sessions \
         WHERE acct_session_id = $1 AND nas_name = $2 AND nas_identity = $3 \
           AND username = $4 {} \
           AND (nas_port IS NULL OR $5 IS NULL OR nas_port = $5) \
           AND (nas_port_id IS NULL OR $6 IS NULL OR nas_port_id = $6) \
         ORDER BY id DESC LIMIT 1",
        if open { "AND stopped_at IS NULL" } else { "" }
    );
    let found = sqlx::query(&sql)
        .bind(&event.acct_session_id)
        .bind(&event.nas_name)
        .bind(&event.nas_identity)
        .bind(&event.username)
        .bind(port)
        .bind(&event.nas_port_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = &found {
        let stored: String = row.try_get("session_key")?;
        let still_open = row.try_get::<Option<i64>, _>("stopped_at")?.is_none();
        if still_open && stored == event.legacy_session_key() {
            sqlx::query(
                "UPDATE sessions SET session_key = $1, nas_port = COALESCE(nas_port, $3) \
                 WHERE id = $2",
            )
            .bind(key)
            .bind(row.try_get::<i64, _>("id")?)
            .bind(port)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(found)
}

/// How long after a session's Stop a Start with its id is taken for a
/// late retransmission of its own Start rather than a new session: longer
/// than any NAS goes on retransmitting, shorter than a NAS takes to reboot
/// and hand the id out again.
const LATE_START_WINDOW_SECS: i64 = 300;

/// Whether the event's NAS said it restarted (Accounting-On/Off) after
/// `since`.
async fn restarted_since(
    conn: &mut Conn,
    event: &AccountingEvent,
    since: i64,
) -> Result<bool, StoreError> {
    let restarted: Option<i64> = sqlx::query_scalar(
        "SELECT at FROM nas_restarts WHERE nas_name = $1 AND nas_identity = $2 AND at > $3",
    )
    .bind(&event.nas_name)
    .bind(&event.nas_identity)
    .bind(since)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(restarted.is_some())
}

async fn update_session(
    conn: &mut Conn,
    id: i64,
    event: &AccountingEvent,
    at: i64,
    stopped_at: Option<i64>,
) -> Result<(), StoreError> {
    let greatest = DIALECT.greatest;
    let sql = format!(
        "UPDATE sessions SET updated_at = $2, stopped_at = $3, \
           closed_by = CASE WHEN $3 IS NULL THEN NULL ELSE 'stop' END, \
           framed_ip_address = COALESCE($4, framed_ip_address), \
           calling_station_id = COALESCE($5, calling_station_id), \
           nas_port_id = COALESCE($6, nas_port_id), \
           session_time = COALESCE($7, session_time), \
           input_octets = {greatest}(input_octets, $8), \
           output_octets = {greatest}(output_octets, $9), \
           terminate_cause = COALESCE($10, terminate_cause), \
           nas_port = COALESCE($11, nas_port), takes_coa = $12 \
         WHERE id = $1"
    );
    sqlx::query(&sql)
        .bind(id)
        .bind(at)
        .bind(stopped_at)
        .bind(&event.framed_ip_address)
        .bind(&event.calling_station_id)
        .bind(&event.nas_port_id)
        .bind(event.session_time.map(i64::from))
        .bind(octets(event.input_octets))
        .bind(octets(event.output_octets))
        .bind(&event.terminate_cause)
        .bind(event.nas_port.map(i64::from))
        .bind(!event.nas_without_coa)
        .execute(&mut *conn)
        .await?;
    if let Some(stopped) = stopped_at {
        // The session is over: a CoA or Disconnect still on its way to it
        // has nothing left to change.
        sqlx::query(
            "UPDATE enforcement SET state = 'dropped', outcome = $3, finished_at = $2, \
               updated_at = $2 \
             WHERE session_id = $1 AND state IN ('pending', 'sent')",
        )
        .bind(id)
        .bind(stopped)
        .bind(SESSION_ENDED)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Records a new session; false if an open one with the same key appeared
/// meanwhile (another instance).
async fn insert_session(
    conn: &mut Conn,
    key: &str,
    event: &AccountingEvent,
    at: i64,
    stopped_at: Option<i64>,
) -> Result<bool, StoreError> {
    // An Interim or Stop without a Start: the session began session_time ago.
    let started_at = match event.kind {
        AccountingKind::Start => at,
        _ => at - i64::from(event.session_time.unwrap_or(0)),
    };
    let inserted = sqlx::query(
        "INSERT INTO sessions (session_key, nas_name, nas_identity, nas_address, \
           nas_ip_address, nas_identifier, username, contract_id, acct_session_id, \
           framed_ip_address, calling_station_id, nas_port_id, started_at, updated_at, \
           stopped_at, session_time, input_octets, output_octets, terminate_cause, closed_by, \
           nas_port, takes_coa) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, \
           (SELECT contract_id FROM logins WHERE username = $7), \
           $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
           CASE WHEN $14 IS NULL THEN NULL ELSE 'stop' END, $19, $20) \
         ON CONFLICT (session_key) WHERE stopped_at IS NULL DO NOTHING",
    )
    .bind(key)
    .bind(&event.nas_name)
    .bind(&event.nas_identity)
    .bind(&event.nas_address)
    .bind(&event.nas_ip_address)
    .bind(&event.nas_identifier)
    .bind(&event.username)
    .bind(&event.acct_session_id)
    .bind(&event.framed_ip_address)
    .bind(&event.calling_station_id)
    .bind(&event.nas_port_id)
    .bind(started_at)
    .bind(at)
    .bind(stopped_at)
    .bind(event.session_time.map(i64::from))
    .bind(octets(event.input_octets))
    .bind(octets(event.output_octets))
    .bind(&event.terminate_cause)
    .bind(event.nas_port.map(i64::from))
    .bind(!event.nas_without_coa)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Octet counters as database integers (which are signed).
fn octets(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Sets a contract's state inside a write transaction, ending its running
/// release where the new state calls for it, and audits the change.
async fn change_state(
    conn: &mut Conn,
    id: &str,
    state: ContractState,
    reason: &str,
    actor: &Actor,
    now: DateTime<Utc>,
    action: &str,
) -> Result<StateChange, StoreError> {
    lock_contract(conn, id).await?;
    expire_lapsed(conn, id, now).await?;
    let Some(existing) = load_contract(conn, id).await? else {
        return Err(StoreError::ContractNotFound(id.to_owned()));
    };
    let previous = existing.state;
    let released_before = load_facts(conn, id)
        .await?
        .is_some_and(|f| policy::running_until(f.open_release_ends_at, now).is_some());
    if previous == state {
        let detail = reason_detail(&format!("state stays {state}"), reason);
        write_audit(conn, now, actor, action, Some(id), &detail, "unchanged").await?;
        return Ok(StateChange {
            contract: existing,
            previous,
            ended_release: None,
            jobs: Vec::new(),
            at_next_connection: 0,
        });
    }
    let sql = format!(
        "UPDATE contracts SET state = $1, state_changed_at = $2 WHERE id = $3 \
         RETURNING {CONTRACT_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(state.as_str())
        .bind(now.timestamp())
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let contract = contract_from(&row)?;
    let end = match state {
        ContractState::Active => Some((EndReason::Unblocked, "contract became active")),
        ContractState::Cancelled => Some((EndReason::Revoked, "contract cancelled")),
        ContractState::Reduced | ContractState::Blocked => None,
    };
    let ended_release = match end {
        Some((why, note)) => {
            end_open_release(conn, id, why, &actor.display_name(), note, now).await?
        }
        None => None,
    };
    let mut detail = reason_detail(&format!("state {previous} -> {state}"), reason);
    if let Some(release) = &ended_release {
        detail.push_str(&format!(
            "; release {} ended ({})",
            release.id,
            EndReason::as_str(end.map(|(why, _)| why).unwrap_or(EndReason::Revoked))
        ));
    }
    write_audit(conn, now, actor, action, Some(id), &detail, "ok").await?;
    let released_after = released_before && ended_release.is_none();
    let queued = queue_enforcement(
        conn,
        id,
        policy::effective_profile(previous, released_before),
        policy::effective_profile(state, released_after),
        &format!("state {previous} -> {state}"),
        now,
    )
    .await?;
    Ok(StateChange {
        contract,
        previous,
        ended_release,
        jobs: queued.jobs,
        at_next_connection: queued.at_next_connection,
    })
}

/// Records the end of a contract's open release, if it has one.
async fn end_open_release(
    conn: &mut Conn,
    contract_id: &str,
    reason: EndReason,
    ended_by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<Option<Release>, StoreError> {
    let sql = format!(
        "UPDATE releases SET ended_at = $1, end_reason = $2, ended_by = $3, end_note = $4 \
         WHERE contract_id = $5 AND ended_at IS NULL RETURNING {RELEASE_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(now.timestamp())
        .bind(reason.as_str())
        .bind(ended_by)
        .bind(note)
        .bind(contract_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(release_from).transpose()
}

/// Records as expired, at their end instant, the contract's open releases
/// whose end has passed, so that the facts read next are current.
async fn expire_lapsed(
    conn: &mut Conn,
    contract_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    expire_releases(conn, Some(contract_id), now, u32::MAX).await?;
    Ok(())
}

/// Records as expired, at their end instant, open releases whose end is at
/// or before `now` (of one contract, or of any, at most `limit`), audits
/// each, and queues the enforcement of the change of profile.
async fn expire_releases(
    conn: &mut Conn,
    contract_id: Option<&str>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ExpiredRelease>, StoreError> {
    let skip = DIALECT.skip_locked;
    let sql = format!(
        "UPDATE releases SET ended_at = ends_at, end_reason = 'expired' \
         WHERE id IN (SELECT id FROM releases \
           WHERE ended_at IS NULL AND ends_at <= $1 AND ($2 IS NULL OR contract_id = $2) \
           ORDER BY ends_at, id LIMIT $3{skip}) \
         RETURNING {RELEASE_COLUMNS}"
    );
    let rows = sqlx::query(&sql)
        .bind(now.timestamp())
        .bind(contract_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    let releases = rows
        .iter()
        .map(release_from)
        .collect::<Result<Vec<_>, _>>()?;
    if releases.is_empty() {
        return Ok(Vec::new());
    }
    // A few statements per batch, whatever its size.
    let system = Actor {
        uid: None,
        operator: Some("liberad".to_owned()),
    };
    let mut jobs: HashMap<String, Vec<i64>> = HashMap::new();
    for batch in releases.chunks(BATCH) {
        for (id, contract_id) in end_batch(conn, batch, &system, now).await? {
            jobs.entry(contract_id).or_default().push(id);
        }
    }
    Ok(releases
        .into_iter()
        .map(|release| ExpiredRelease {
            jobs: jobs.remove(&release.contract_id).unwrap_or_default(),
            release,
        })
        .collect())
}

/// Audits the end of some releases and queues the enforcement it brings;
/// returns (job, contract) pairs.
async fn end_batch(
    conn: &mut Conn,
    releases: &[Release],
    system: &Actor,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, String)>, StoreError> {
    let audit: Vec<(&str, String)> = releases
        .iter()
        .map(|r| {
            let detail = format!("release {} expired at {}", r.id, r.ends_at.to_rfc3339());
            (r.contract_id.as_str(), detail)
        })
        .collect();
    write_audits(conn, now, system, "release_end", &audit).await?;
    let contracts = load_contracts(conn, releases.iter().map(|r| r.contract_id.as_str())).await?;
    let mut by_state: HashMap<ContractState, Vec<(&str, String)>> = HashMap::new();
    for release in releases {
        let state = contracts
            .get(&release.contract_id)
            .map_or(ContractState::Blocked, |c| c.state);
        let cause = format!("release {} expired", release.id);
        by_state
            .entry(state)
            .or_default()
            .push((release.contract_id.as_str(), cause));
    }
    let mut jobs = Vec::new();
    for (state, ended) in by_state {
        let before = policy::effective_profile(state, true);
        let after = policy::effective_profile(state, false);
        jobs.extend(queue_enforcement_many(conn, &ended, before, after, now).await?);
    }
    Ok(jobs)
}

/// Queues a CoA / Disconnect for every open session of a contract whose
/// effective profile changes from `before` to `after`; older unsent jobs of
/// those sessions are superseded. Returns the new jobs' ids.
async fn queue_enforcement(
    conn: &mut Conn,
    contract_id: &str,
    before: Option<Profile>,
    after: Option<Profile>,
    cause: &str,
    now: DateTime<Utc>,
) -> Result<Queued, StoreError> {
    let targets = [(contract_id, cause.to_owned())];
    let jobs = queue_enforcement_many(conn, &targets, before, after, now).await?;
    let at_next_connection = if before == after {
        0
    } else {
        let mut count = with_open_sessions(&targets);
        count.push(" SELECT COUNT(*) FROM open_sessions WHERE NOT takes_coa");
        let n: i64 = count.build_query_scalar().fetch_one(&mut *conn).await?;
        usize::try_from(n).unwrap_or(0)
    };
    Ok(Queued {
        jobs: jobs.into_iter().map(|(id, _)| id).collect(),
        at_next_connection,
    })
}

/// The enforcement a change of one contract queued.
struct Queued {
    jobs: Vec<i64>,
    /// Its open sessions on a NAS that takes no CoA: the change reaches
    /// them when they connect again.
    at_next_connection: usize,
}

/// [`queue_enforcement`] for many contracts, each with its cause, that
/// change alike, in two statements; returns (job, contract) pairs.
async fn queue_enforcement_many(
    conn: &mut Conn,
    contracts: &[(&str, String)],
    before: Option<Profile>,
    after: Option<Profile>,
    now: DateTime<Utc>,
) -> Result<Vec<(i64, String)>, StoreError> {
    if before == after || contracts.is_empty() {
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
    supersede.build().execute(&mut *conn).await?;
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
        .push_bind(profile_name(after))
        .push(
            ", t.cause, 'pending' FROM open_sessions o \
             JOIN targets t ON t.contract_id = o.contract_id WHERE o.takes_coa \
             RETURNING id, contract_id",
        );
    let rows = insert.build().fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("contract_id")?)))
        .collect()
}

/// `WITH targets (contract_id, cause) AS (VALUES …), open_sessions (id,
/// contract_id) AS (…)`: some contracts and their open sessions, those
/// recorded for them and those of their logins. A UNION of two joins, each
/// through an index: as one query with an OR, SQLite scanned every open
/// session for each contract, and ending 100 000 releases at one instant
/// took hours instead of seconds.
fn with_open_sessions<'a>(contracts: &'a [(&'a str, String)]) -> QueryBuilder<'a, Db> {
    let mut query = QueryBuilder::<Db>::new("WITH targets (contract_id, cause) AS (VALUES ");
    let mut rows = query.separated(", ");
    for (contract_id, cause) in contracts {
        rows.push("(")
            .push_bind_unseparated(*contract_id)
            .push_unseparated(", ")
            .push_bind_unseparated(cause.as_str())
            .push_unseparated(")");
    }
    query.push(
        "), open_sessions (id, contract_id, takes_coa) AS ( \
           SELECT s.id, s.contract_id, s.takes_coa FROM targets t \
             JOIN sessions s ON s.contract_id = t.contract_id AND s.stopped_at IS NULL \
           UNION SELECT s.id, l.contract_id, s.takes_coa FROM targets t \
             JOIN logins l ON l.contract_id = t.contract_id \
             JOIN sessions s ON s.username = l.username AND s.stopped_at IS NULL)",
    );
    query
}

/// The name a target profile is stored under.
fn profile_name(profile: Option<Profile>) -> &'static str {
    profile.map(Profile::as_str).unwrap_or("reject")
}

/// Rows per statement when importing or ending releases: a few thousand
/// parameters, well under either database's limit.
const BATCH: usize = 500;

/// The contracts among `ids` that exist, by id.
async fn load_contracts<'a>(
    conn: &mut Conn,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, Contract>, StoreError> {
    let mut query = QueryBuilder::<Db>::new(format!(
        "SELECT {CONTRACT_COLUMNS} FROM contracts WHERE id IN ("
    ));
    let mut list = query.separated(", ");
    for id in ids {
        list.push_bind(id);
    }
    query.push(")");
    let rows = query.build().fetch_all(conn).await?;
    rows.iter()
        .map(|row| contract_from(row).map(|c| (c.id.clone(), c)))
        .collect()
}

async fn insert_contracts(
    conn: &mut Conn,
    contracts: &[NewContract],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if contracts.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Db>::new(
        "INSERT INTO contracts (id, name, state, state_changed_at, created_at) ",
    );
    query.push_values(contracts, |mut values, contract| {
        values
            .push_bind(&contract.id)
            .push_bind(&contract.name)
            .push_bind(contract.state.as_str())
            .push_bind(now.timestamp())
            .push_bind(now.timestamp());
    });
    query.build().execute(conn).await?;
    Ok(())
}

/// What an import compares of a login that exists.
struct LoginSecret {
    contract_id: String,
    password: String,
    password_type: String,
    reply: String,
}

/// The logins among `rows` that exist, by username.
async fn load_login_secrets(
    conn: &mut Conn,
    rows: &[&LoginRow],
) -> Result<HashMap<String, LoginSecret>, StoreError> {
    let mut query = QueryBuilder::<Db>::new(
        "SELECT username, contract_id, password, password_type, reply \
         FROM logins WHERE username IN (",
    );
    let mut list = query.separated(", ");
    for row in rows {
        list.push_bind(&row.username);
    }
    query.push(")");
    let found = query.build().fetch_all(conn).await?;
    found
        .iter()
        .map(|row| {
            Ok((
                row.try_get("username")?,
                LoginSecret {
                    contract_id: row.try_get("contract_id")?,
                    password: row.try_get("password")?,
                    password_type: row.try_get("password_type")?,
                    reply: row.try_get("reply")?,
                },
            ))
        })
        .collect()
}

/// Inserts new logins, each with its reply already written as text.
async fn insert_logins(
    conn: &mut Conn,
    logins: &[(&LoginRow, String)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if logins.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Db>::new(
        "INSERT INTO logins (username, contract_id, password, password_type, reply, \
         created_at, updated_at) ",
    );
    query.push_values(logins, |mut values, (row, reply)| {
        values
            .push_bind(&row.username)
            .push_bind(&row.contract_id)
            .push_bind(row.password.stored())
            .push_bind(row.password.kind())
            .push_bind(reply)
            .push_bind(now.timestamp())
            .push_bind(now.timestamp());
    });
    query.build().execute(conn).await?;
    Ok(())
}

/// Writes audit lines of one action in one statement: (contract, detail).
async fn write_audits(
    conn: &mut Conn,
    at: DateTime<Utc>,
    actor: &Actor,
    action: &str,
    lines: &[(&str, String)],
) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Db>::new(
        "INSERT INTO audit (at, actor_uid, operator, action, contract_id, detail, outcome) ",
    );
    query.push_values(lines, |mut values, (contract_id, detail)| {
        values
            .push_bind(at.timestamp())
            .push_bind(actor.uid.map(i64::from))
            .push_bind(actor.operator.as_deref())
            .push_bind(action)
            .push_bind(*contract_id)
            .push_bind(detail)
            .push_bind("ok");
    });
    query.build().execute(conn).await?;
    Ok(())
}

async fn write_audit(
    conn: &mut Conn,
    at: DateTime<Utc>,
    actor: &Actor,
    action: &str,
    contract_id: Option<&str>,
    detail: &str,
    outcome: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at, actor_uid, operator, action, contract_id, detail, outcome) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(at.timestamp())
    .bind(actor.uid.map(i64::from))
    .bind(actor.operator.as_deref())
    .bind(action)
    .bind(contract_id)
    .bind(detail)
    .bind(outcome)
    .execute(conn)
    .await?;
    Ok(())
}

fn reason_detail(what: &str, reason: &str) -> String {
    if reason.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {reason}")
    }
}

/// Locks a contract's row until the transaction ends (PostgreSQL; SQLite
/// holds the whole database already).
async fn lock_contract(conn: &mut Conn, id: &str) -> Result<(), StoreError> {
    if let Some(sql) = DIALECT.lock_contract {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Locks the parameters row until the transaction ends (PostgreSQL).
async fn lock_parameters(conn: &mut Conn) -> Result<(), StoreError> {
    if let Some(sql) = DIALECT.lock_parameters {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    Ok(())
}

async fn load_parameters(conn: &mut Conn) -> Result<Parameters, StoreError> {
    let row = sqlx::query("SELECT enabled, release_days, renew_after_days FROM parameters")
        .fetch_one(conn)
        .await?;
    Ok(Parameters {
        enabled: row.try_get("enabled")?,
        release_days: column_u32(&row, "release_days")?,
        renew_after_days: column_u32(&row, "renew_after_days")?,
    })
}

async fn load_facts(
    conn: &mut Conn,
    contract_id: &str,
) -> Result<Option<ContractFacts>, StoreError> {
    let row = sqlx::query(
        "SELECT c.state, \
           (SELECT ends_at FROM releases r WHERE r.contract_id = c.id AND r.ended_at IS NULL) \
             AS open_ends_at, \
           (SELECT MAX(started_at) FROM releases r WHERE r.contract_id = c.id) \
             AS last_started_at \
         FROM contracts c WHERE c.id = $1",
    )
    .bind(contract_id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(ContractFacts {
        state: column_state(&row)?,
        open_release_ends_at: row
            .try_get::<Option<i64>, _>("open_ends_at")?
            .map(instant)
            .transpose()?,
        last_release_started_at: row
            .try_get::<Option<i64>, _>("last_started_at")?
            .map(instant)
            .transpose()?,
    }))
}

async fn load_contract(conn: &mut Conn, id: &str) -> Result<Option<Contract>, StoreError> {
    let sql = format!("SELECT {CONTRACT_COLUMNS} FROM contracts WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(contract_from).transpose()
}

async fn load_login(conn: &mut Conn, username: &str) -> Result<Option<Login>, StoreError> {
    let sql = format!("SELECT {LOGIN_COLUMNS} FROM logins WHERE username = $1");
    let row = sqlx::query(&sql)
        .bind(username)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(login_from).transpose()
}

async fn insert_contract(
    conn: &mut Conn,
    contract: &NewContract,
    now: DateTime<Utc>,
) -> Result<Contract, StoreError> {
    let sql = format!(
        "INSERT INTO contracts (id, name, state, state_changed_at, created_at) \
         VALUES ($1, $2, $3, $4, $4) RETURNING {CONTRACT_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(&contract.id)
        .bind(&contract.name)
        .bind(contract.state.as_str())
        .bind(now.timestamp())
        .fetch_one(conn)
        .await?;
    contract_from(&row)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn reply_text(reply: &[ReplyAttribute]) -> String {
    reply
        .iter()
        .map(ReplyAttribute::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn instant(seconds: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| StoreError::Corrupt(format!("instant {seconds} is out of range")))
}

fn column_instant(row: &DbRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    instant(row.try_get(column)?)
}

fn column_optional_instant(row: &DbRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(instant)
        .transpose()
}

fn column_u32(row: &DbRow, column: &str) -> Result<u32, StoreError> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{column} = {value} is out of range")))
}

fn column_uid(row: &DbRow) -> Result<Option<u32>, StoreError> {
    row.try_get::<Option<i64>, _>("actor_uid")?
        .map(|uid| {
            u32::try_from(uid)
                .map_err(|_| StoreError::Corrupt(format!("uid {uid} is out of range")))
        })
        .transpose()
}

fn column_state(row: &DbRow) -> Result<ContractState, StoreError> {
    let state: String = row.try_get("state")?;
    state
        .parse()
        .map_err(|e: policy::UnknownState| StoreError::Corrupt(e.to_string()))
}

fn contract_from(row: &DbRow) -> Result<Contract, StoreError> {
    Ok(Contract {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        state: column_state(row)?,
        state_changed_at: column_instant(row, "state_changed_at")?,
        created_at: column_instant(row, "created_at")?,
    })
}

/// Reply attributes stored one `Name = value` per line.
fn parse_reply(text: &str) -> Result<Vec<ReplyAttribute>, StoreError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.parse::<ReplyAttribute>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
}

fn login_from(row: &DbRow) -> Result<Login, StoreError> {
    let reply = parse_reply(&row.try_get::<String, _>("reply")?)?;
    Ok(Login {
        username: row.try_get("username")?,
        contract_id: row.try_get("contract_id")?,
        reply,
        created_at: column_instant(row, "created_at")?,
        updated_at: column_instant(row, "updated_at")?,
    })
}

fn release_from(row: &DbRow) -> Result<Release, StoreError> {
    let end_reason = row
        .try_get::<Option<String>, _>("end_reason")?
        .map(|r| r.parse::<EndReason>().map_err(StoreError::Corrupt))
        .transpose()?;
    Ok(Release {
        id: row.try_get("id")?,
        contract_id: row.try_get("contract_id")?,
        started_at: column_instant(row, "started_at")?,
        ends_at: column_instant(row, "ends_at")?,
        operator: row.try_get("operator")?,
        reason: row.try_get("reason")?,
        actor_uid: column_uid(row)?,
        ended_at: column_optional_instant(row, "ended_at")?,
        end_reason,
        ended_by: row.try_get("ended_by")?,
        end_note: row.try_get("end_note")?,
    })
}

fn session_from(row: &DbRow) -> Result<Session, StoreError> {
    let counter = |column: &str| -> Result<u64, StoreError> {
        let n: i64 = row.try_get(column)?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok(Session {
        id: row.try_get("id")?,
        nas_name: row.try_get("nas_name")?,
        nas_identity: row.try_get("nas_identity")?,
        nas_address: row.try_get("nas_address")?,
        nas_ip_address: row.try_get("nas_ip_address")?,
        nas_identifier: row.try_get("nas_identifier")?,
        username: row.try_get("username")?,
        contract_id: row.try_get("contract_id")?,
        acct_session_id: row.try_get("acct_session_id")?,
        framed_ip_address: row.try_get("framed_ip_address")?,
        calling_station_id: row.try_get("calling_station_id")?,
        nas_port: row
            .try_get::<Option<i64>, _>("nas_port")?
            .and_then(|port| u32::try_from(port).ok()),
        nas_port_id: row.try_get("nas_port_id")?,
        started_at: column_instant(row, "started_at")?,
        updated_at: column_instant(row, "updated_at")?,
        stopped_at: column_optional_instant(row, "stopped_at")?,
        session_time: row
            .try_get::<Option<i64>, _>("session_time")?
            .and_then(|t| u32::try_from(t).ok()),
        input_octets: counter("input_octets")?,
        output_octets: counter("output_octets")?,
        terminate_cause: row.try_get("terminate_cause")?,
        takes_coa: row.try_get("takes_coa")?,
    })
}

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

fn column_kind(row: &DbRow) -> Result<Option<RequestKind>, StoreError> {
    row.try_get::<Option<String>, _>("kind")?
        .map(|k| k.parse::<RequestKind>().map_err(StoreError::Corrupt))
        .transpose()
}

fn outbox_job_from(row: &DbRow) -> Result<OutboxJob, StoreError> {
    let profile: String = row.try_get("profile")?;
    let profile = match profile.as_str() {
        "reject" => None,
        "active" => Some(Profile::Active),
        "released" => Some(Profile::Released),
        "reduced" => Some(Profile::Reduced),
        "blocked" => Some(Profile::Blocked),
        other => return Err(StoreError::Corrupt(format!("unknown profile {other:?}"))),
    };
    Ok(OutboxJob {
        id: row.try_get("id")?,
        session_id: row.try_get("session_id")?,
        contract_id: row.try_get("contract_id")?,
        profile,
        kind: column_kind(row)?,
        fallback: row.try_get("fallback")?,
        packet: row.try_get("packet")?,
        sends: column_u32(row, "sends")?,
        outcome: row.try_get("outcome")?,
        target: SessionTarget {
            nas_name: row.try_get("nas_name")?,
            nas_address: row.try_get("nas_address")?,
            username: row.try_get("username")?,
            acct_session_id: row.try_get("acct_session_id")?,
            framed_ip_address: row.try_get("framed_ip_address")?,
            nas_ip_address: row.try_get("nas_ip_address")?,
            nas_identifier: row.try_get("nas_identifier")?,
        },
    })
}

fn job_from(row: &DbRow) -> Result<EnforcementJob, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(EnforcementJob {
        id: row.try_get("id")?,
        created_at: column_instant(row, "created_at")?,
        updated_at: column_instant(row, "updated_at")?,
        contract_id: row.try_get("contract_id")?,
        session_id: row.try_get("session_id")?,
        username: row.try_get("username")?,
        nas_name: row.try_get("nas_name")?,
        acct_session_id: row.try_get("acct_session_id")?,
        profile: row.try_get("profile")?,
        cause: row.try_get("cause")?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        kind: column_kind(row)?,
        fallback: row.try_get("fallback")?,
        sends: column_u32(row, "sends")?,
        error_cause: row
            .try_get::<Option<i64>, _>("error_cause")?
            .and_then(|c| u32::try_from(c).ok()),
        outcome: row.try_get("outcome")?,
        finished_at: column_optional_instant(row, "finished_at")?,
    })
}

fn audit_from(row: &DbRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: column_instant(row, "at")?,
        actor_uid: column_uid(row)?,
        operator: row.try_get("operator")?,
        action: row.try_get("action")?,
        contract_id: row.try_get("contract_id")?,
        detail: row.try_get("detail")?,
        outcome: row.try_get("outcome")?,
    })
}
