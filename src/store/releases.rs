//! Releases: each one kept as history, with how it ended; the open one of
//! a contract is the one not recorded as ended.

use chrono::{DateTime, Utc};

use super::db::{DbRow, Statement, Tx, instant};
use super::{Store, StoreError};
use crate::model::{Actor, EndReason, Release};
use crate::policy::Grant;

const RELEASE_COLUMNS: &str = "id, contract_id, started_at, ends_at, operator, reason, actor_uid, \
     ended_at, end_reason, ended_by, end_note";

impl Store {
    /// The end of the next release to expire, if any is open.
    pub async fn next_release_end(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .reader
            .fetch_one(Statement::new(
                "SELECT MIN(ends_at) AS next_end FROM releases WHERE ended_at IS NULL",
            ))
            .await?;
        row.optional_instant("next_end")
    }
}

impl Tx {
    /// Records a release the rules granted. The database refuses a second
    /// open release of a contract (a unique index), whatever the caller.
    pub async fn insert_release(
        &mut self,
        contract_id: &str,
        grant: &Grant,
        reason: &str,
        actor: &Actor,
    ) -> Result<Release, StoreError> {
        let sql = format!(
            "INSERT INTO releases (contract_id, started_at, ends_at, operator, reason, actor_uid) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {RELEASE_COLUMNS}"
        );
        let statement = Statement::new(sql)
            .bind(contract_id)
            .bind(grant.starts_at.timestamp())
            .bind(grant.ends_at.timestamp())
            .bind(actor.display_name())
            .bind(reason)
            .bind(actor.uid.map(i64::from));
        release_from(&self.fetch_one(statement).await?)
    }

    /// Records the end of a contract's open release, if it has one.
    pub async fn end_open_release(
        &mut self,
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
        let statement = Statement::new(sql)
            .bind(now.timestamp())
            .bind(reason.as_str())
            .bind(ended_by)
            .bind(note)
            .bind(contract_id);
        let row = self.fetch_optional(statement).await?;
        row.as_ref().map(release_from).transpose()
    }

    /// Records as expired, at their end instant, open releases whose end is
    /// at or before `now` (of one contract, or of any: at most `limit`,
    /// those due first). With several instances, each takes different ones.
    pub async fn end_releases_due(
        &mut self,
        contract_id: Option<&str>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Release>, StoreError> {
        let skip = self.dialect().skip_locked;
        let sql = format!(
            "UPDATE releases SET ended_at = ends_at, end_reason = 'expired' \
             WHERE id IN (SELECT id FROM releases \
               WHERE ended_at IS NULL AND ends_at <= $1 AND ($2 IS NULL OR contract_id = $2) \
               ORDER BY ends_at, id LIMIT $3{skip}) \
             RETURNING {RELEASE_COLUMNS}"
        );
        let statement = Statement::new(sql)
            .bind(now.timestamp())
            .bind(contract_id)
            .bind(i64::from(limit));
        let rows = self.fetch_all(statement).await?;
        let mut releases = rows
            .iter()
            .map(release_from)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives no order: the oldest end first, as picked.
        releases.sort_by_key(|r| (r.ends_at, r.id));
        Ok(releases)
    }

    /// Releases, newest first, of one contract or of all.
    pub async fn releases(
        &mut self,
        contract_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Release>, StoreError> {
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE ($1 IS NULL OR contract_id = $1) \
             ORDER BY started_at DESC, id DESC LIMIT $2"
        );
        let statement = Statement::new(sql).bind(contract_id).bind(i64::from(limit));
        let rows = self.fetch_all(statement).await?;
        rows.iter().map(release_from).collect()
    }
}

fn release_from(row: &DbRow) -> Result<Release, StoreError> {
    let end_reason = row
        .get::<Option<String>>("end_reason")?
        .map(|r| r.parse::<EndReason>().map_err(StoreError::Corrupt))
        .transpose()?;
    Ok(Release {
        id: row.get("id")?,
        contract_id: row.get("contract_id")?,
        started_at: instant(row.get("started_at")?)?,
        ends_at: instant(row.get("ends_at")?)?,
        operator: row.get("operator")?,
        reason: row.get("reason")?,
        actor_uid: super::audit::column_uid(row)?,
        ended_at: row.optional_instant("ended_at")?,
        end_reason,
        ended_by: row.get("ended_by")?,
        end_note: row.get("end_note")?,
    })
}
