//! Sessions, as accounting tells them: opened by Start, brought up to date
//! by Interim, closed by Stop or by the NAS's Accounting-On/Off; and what a
//! NAS is known to do (restart, sign its requests).
//!
//! Events are ordered by when they happened (arrival minus
//! Acct-Delay-Time), not by when they arrived: an event older than what its
//! session already has is late and changes nothing, and a Start after its
//! session's Stop reopens nothing.

use chrono::{DateTime, Utc};

use super::db::{DbRow, Statement, Tx, signed};
use super::{Store, StoreError};
use crate::model::{AccountingEvent, AccountingKind, Session};

pub(super) const SESSION_COLUMNS: &str = "id, nas_name, nas_identity, nas_address, \
     nas_ip_address, nas_identifier, username, contract_id, acct_session_id, framed_ip_address, \
     calling_station_id, nas_port, nas_port_id, started_at, updated_at, stopped_at, session_time, \
     input_octets, output_octets, terminate_cause, takes_coa";

/// The outcome of an enforcement job whose session stopped before the NAS
/// answered: it is not sent again, and the next connection gets the
/// profile in force.
pub(super) const SESSION_ENDED: &str = "session ended";

/// How long after a session's Stop a Start with its id is taken for a
/// late retransmission of its own Start rather than a new session: longer
/// than any NAS goes on retransmitting, shorter than a NAS takes to reboot
/// and hand the id out again.
const LATE_START_WINDOW_SECS: i64 = 300;

impl Store {
    /// Applies accounting events to the sessions table, all in one
    /// transaction: when it returns, they are durable.
    pub async fn record_accounting(&self, events: &[AccountingEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for event in events {
            tx.apply_accounting(event).await?;
        }
        tx.commit().await
    }

    /// Marks the open sessions of these NAS entries (`coa_mode = "none"`)
    /// as taking no CoA, and every other open session as taking it, after
    /// the configuration changed.
    pub async fn mark_nas_without_coa(&self, names: &[String]) -> Result<(), StoreError> {
        let mut statement = Statement::new("UPDATE sessions SET takes_coa = ");
        if names.is_empty() {
            statement.push("TRUE WHERE stopped_at IS NULL AND NOT takes_coa");
        } else {
            // SET takes_coa = (…) WHERE … AND takes_coa <> (…)
            for prefix in ["", " WHERE stopped_at IS NULL AND takes_coa <> "] {
                statement.push(prefix).push("(nas_name NOT IN ");
                statement.push_list(names).push(")");
            }
        }
        let mut tx = self.write().await?;
        tx.execute(statement).await?;
        tx.commit().await
    }

    /// Every (NAS entry, source address) seen signing its Access-Requests.
    pub async fn message_authenticator_seen(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .reader
            .fetch_all(Statement::new(
                "SELECT nas_name, source FROM message_authenticator_seen \
                 ORDER BY nas_name, source",
            ))
            .await?;
        rows.iter()
            .map(|row| Ok((row.get("nas_name")?, row.get("source")?)))
            .collect()
    }

    /// Records that a NAS entry's source signs its Access-Requests.
    pub async fn remember_message_authenticator(
        &self,
        nas: &str,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        tx.execute(
            Statement::new(
                "INSERT INTO message_authenticator_seen (nas_name, source, first_seen) \
                 VALUES ($1, $2, $3) ON CONFLICT (nas_name, source) DO NOTHING",
            )
            .bind(nas)
            .bind(source)
            .bind(now.timestamp()),
        )
        .await?;
        tx.commit().await
    }
}

impl Tx {
    /// Sessions, newest first: of one contract or all, open only or all.
    pub async fn sessions(
        &mut self,
        contract_id: Option<&str>,
        online_only: bool,
        limit: u32,
    ) -> Result<Vec<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE ($1 IS NULL OR contract_id = $1) AND (NOT $2 OR stopped_at IS NULL) \
             ORDER BY started_at DESC, id DESC LIMIT $3"
        );
        let statement = Statement::new(sql)
            .bind(contract_id)
            .bind(online_only)
            .bind(i64::from(limit));
        let rows = self.fetch_all(statement).await?;
        rows.iter().map(session_from).collect()
    }

    /// Applies one accounting event.
    async fn apply_accounting(&mut self, event: &AccountingEvent) -> Result<(), StoreError> {
        let at = event.at.timestamp();
        if matches!(event.kind, AccountingKind::On | AccountingKind::Off) {
            return self.nas_restarted(event, at).await;
        }
        let key = event.session_key();
        let stopped_at = (event.kind == AccountingKind::Stop).then_some(at);
        // Twice at most: if another instance opens the same session between
        // our look-up and our insert, the second pass updates its row.
        for _ in 0..2 {
            let open = self
                .session_of(
                    "SELECT id, started_at, updated_at FROM sessions \
                     WHERE session_key = $1 AND stopped_at IS NULL",
                    &key,
                    event,
                    true,
                )
                .await?;
            if let Some(open) = open {
                let (id, started, updated): (i64, i64, i64) = (
                    open.get("id")?,
                    open.get("started_at")?,
                    open.get("updated_at")?,
                );
                let late = match event.kind {
                    // A Stop is final: it closes the session unless it is
                    // older than the session's start (an earlier session's,
                    // with the same id), even when it is a second older
                    // than the last Interim (Acct-Delay-Time counts whole
                    // seconds).
                    AccountingKind::Stop => at < started,
                    _ => at < updated,
                };
                if late {
                    return Ok(());
                }
                return self
                    .update_session(
                        id,
                        event,
                        at.max(updated),
                        stopped_at.map(|s| s.max(updated)),
                    )
                    .await;
            }
            let closed = self
                .session_of(
                    "SELECT stopped_at, closed_by FROM sessions WHERE session_key = $1 \
                     ORDER BY id DESC LIMIT 1",
                    &key,
                    event,
                    false,
                )
                .await?;
            if let Some(closed) = closed {
                let stopped: i64 = closed.get::<Option<i64>>("stopped_at")?.unwrap_or(at);
                let closed_by: Option<String> = closed.get("closed_by")?;
                // An Interim or Stop for a closed session is late or a
                // repeat: the closed record stands. So does a Start from
                // before the close (its Acct-Delay-Time puts it there), and
                // a Start soon after its session's Stop with no restart of
                // the NAS between (the same Start sent again after the
                // duplicate window). A Start after the NAS restarted, or
                // lost the session, or long after the Stop, is a new
                // session with a reused id.
                let late = match event.kind {
                    AccountingKind::Start => {
                        at <= stopped
                            || (closed_by.as_deref() == Some("stop")
                                && at <= stopped.saturating_add(LATE_START_WINDOW_SECS)
                                && !self.restarted_since(event, stopped).await?)
                    }
                    _ => true,
                };
                if late {
                    return Ok(());
                }
            }
            if self.insert_session(&key, event, at, stopped_at).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The session an event is about, by its key (`by_key`, `$1` = the
    /// key), open only or (with `open` false) the newest of any. A Start
    /// names its session as its NAS will: its key is the session's, and a
    /// miss is a new session. The packets after it may also find it by its
    /// parts ([`Tx::compatible_session`]).
    async fn session_of(
        &mut self,
        by_key: &str,
        key: &str,
        event: &AccountingEvent,
        open: bool,
    ) -> Result<Option<DbRow>, StoreError> {
        match self
            .fetch_optional(Statement::new(by_key).bind(key))
            .await?
        {
            Some(row) => Ok(Some(row)),
            None if event.kind == AccountingKind::Start => Ok(None),
            None => self.compatible_session(key, event, open).await,
        }
    }

    /// Accounting-On/Off: the NAS's sessions end, and its restart is
    /// remembered (a Start with an old id after it is a new session).
    async fn nas_restarted(&mut self, event: &AccountingEvent, at: i64) -> Result<(), StoreError> {
        let (cause, closed_by) = if event.kind == AccountingKind::On {
            ("NAS-Reboot", "nas_on")
        } else {
            ("NAS-Request", "nas_off")
        };
        // Its sessions end: a CoA or Disconnect still on its way to one of
        // them has nothing left to change.
        self.execute(
            Statement::new(
                "UPDATE enforcement SET state = 'dropped', outcome = $4, finished_at = $1, \
                   updated_at = $1 \
                 WHERE state IN ('pending', 'sent') AND session_id IN (SELECT id FROM sessions \
                   WHERE nas_name = $2 AND nas_identity = $3 AND stopped_at IS NULL)",
            )
            .bind(at)
            .bind(&event.nas_name)
            .bind(&event.nas_identity)
            .bind(SESSION_ENDED),
        )
        .await?;
        self.execute(
            Statement::new(
                "UPDATE sessions SET stopped_at = $1, updated_at = $1, terminate_cause = $2, \
                   closed_by = $5 \
                 WHERE nas_name = $3 AND nas_identity = $4 AND stopped_at IS NULL",
            )
            .bind(at)
            .bind(cause)
            .bind(&event.nas_name)
            .bind(&event.nas_identity)
            .bind(closed_by),
        )
        .await?;
        let greatest = self.dialect().greatest;
        let sql = format!(
            "INSERT INTO nas_restarts (nas_name, nas_identity, at) VALUES ($1, $2, $3) \
             ON CONFLICT (nas_name, nas_identity) \
             DO UPDATE SET at = {greatest}(nas_restarts.at, excluded.at)"
        );
        self.execute(
            Statement::new(sql)
                .bind(&event.nas_name)
                .bind(&event.nas_identity)
                .bind(at),
        )
        .await?;
        Ok(())
    }

    /// The session a packet means when its key finds none, open or (with
    /// `open` false) the newest of any: one with its NAS, User-Name and
    /// Acct-Session-Id whose NAS-Port and NAS-Port-Id agree where both say
    /// one (a NAS that leaves them out of some packets of a session), the
    /// newest if several; or one recorded before sessions were keyed by
    /// user and port, which takes the packet's key from now on.
    async fn compatible_session(
        &mut self,
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
        let found = self
            .fetch_optional(
                Statement::new(sql)
                    .bind(&event.acct_session_id)
                    .bind(&event.nas_name)
                    .bind(&event.nas_identity)
                    .bind(&event.username)
                    .bind(port)
                    .bind(&event.nas_port_id),
            )
            .await?;
        if let Some(row) = &found {
            let stored: String = row.get("session_key")?;
            let still_open = row.get::<Option<i64>>("stopped_at")?.is_none();
            if still_open && stored == event.legacy_session_key() {
                self.execute(
                    Statement::new(
                        "UPDATE sessions SET session_key = $1, nas_port = COALESCE(nas_port, $3) \
                         WHERE id = $2",
                    )
                    .bind(key)
                    .bind(row.get::<i64>("id")?)
                    .bind(port),
                )
                .await?;
            }
        }
        Ok(found)
    }

    /// Whether the event's NAS said it restarted (Accounting-On/Off) after
    /// `since`.
    async fn restarted_since(
        &mut self,
        event: &AccountingEvent,
        since: i64,
    ) -> Result<bool, StoreError> {
        let restarted = self
            .fetch_optional(
                Statement::new(
                    "SELECT at FROM nas_restarts \
                     WHERE nas_name = $1 AND nas_identity = $2 AND at > $3",
                )
                .bind(&event.nas_name)
                .bind(&event.nas_identity)
                .bind(since),
            )
            .await?;
        Ok(restarted.is_some())
    }

    async fn update_session(
        &mut self,
        id: i64,
        event: &AccountingEvent,
        at: i64,
        stopped_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let greatest = self.dialect().greatest;
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
        self.execute(
            Statement::new(sql)
                .bind(id)
                .bind(at)
                .bind(stopped_at)
                .bind(&event.framed_ip_address)
                .bind(&event.calling_station_id)
                .bind(&event.nas_port_id)
                .bind(event.session_time.map(i64::from))
                .bind(signed(event.input_octets))
                .bind(signed(event.output_octets))
                .bind(&event.terminate_cause)
                .bind(event.nas_port.map(i64::from))
                .bind(!event.nas_without_coa),
        )
        .await?;
        if let Some(stopped) = stopped_at {
            // The session is over: a CoA or Disconnect still on its way to
            // it has nothing left to change.
            self.execute(
                Statement::new(
                    "UPDATE enforcement SET state = 'dropped', outcome = $3, finished_at = $2, \
                       updated_at = $2 \
                     WHERE session_id = $1 AND state IN ('pending', 'sent')",
                )
                .bind(id)
                .bind(stopped)
                .bind(SESSION_ENDED),
            )
            .await?;
        }
        Ok(())
    }

    /// Records a new session; false if an open one with the same key
    /// appeared meanwhile (another instance).
    async fn insert_session(
        &mut self,
        key: &str,
        event: &AccountingEvent,
        at: i64,
        stopped_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        // An Interim or Stop without a Start: the session began
        // session_time ago.
        let started_at = match event.kind {
            AccountingKind::Start => at,
            _ => at - i64::from(event.session_time.unwrap_or(0)),
        };
        let inserted = self
            .execute(
                Statement::new(
                    "INSERT INTO sessions (session_key, nas_name, nas_identity, nas_address, \
                       nas_ip_address, nas_identifier, username, contract_id, acct_session_id, \
                       framed_ip_address, calling_station_id, nas_port_id, started_at, \
                       updated_at, stopped_at, session_time, input_octets, output_octets, \
                       terminate_cause, closed_by, nas_port, takes_coa) \
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
                .bind(signed(event.input_octets))
                .bind(signed(event.output_octets))
                .bind(&event.terminate_cause)
                .bind(event.nas_port.map(i64::from))
                .bind(!event.nas_without_coa),
            )
            .await?;
        Ok(inserted == 1)
    }
}

pub(super) fn session_from(row: &DbRow) -> Result<Session, StoreError> {
    Ok(Session {
        id: row.get("id")?,
        nas_name: row.get("nas_name")?,
        nas_identity: row.get("nas_identity")?,
        nas_address: row.get("nas_address")?,
        nas_ip_address: row.get("nas_ip_address")?,
        nas_identifier: row.get("nas_identifier")?,
        username: row.get("username")?,
        contract_id: row.get("contract_id")?,
        acct_session_id: row.get("acct_session_id")?,
        framed_ip_address: row.get("framed_ip_address")?,
        calling_station_id: row.get("calling_station_id")?,
        nas_port: row
            .get::<Option<i64>>("nas_port")?
            .and_then(|port| u32::try_from(port).ok()),
        nas_port_id: row.get("nas_port_id")?,
        started_at: row.instant("started_at")?,
        updated_at: row.instant("updated_at")?,
        stopped_at: row.optional_instant("stopped_at")?,
        session_time: row
            .get::<Option<i64>>("session_time")?
            .and_then(|t| u32::try_from(t).ok()),
        input_octets: row.count("input_octets")?,
        output_octets: row.count("output_octets")?,
        terminate_cause: row.get("terminate_cause")?,
        takes_coa: row.get("takes_coa")?,
    })
}
