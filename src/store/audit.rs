//! The audit trail: one entry per change and per refused attempt, written
//! in the transaction of what it reports. The application words them.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::db::{DbRow, Statement, Tx};
use crate::model::{Actor, AuditEntry};

const AUDIT_COLUMNS: &str =
    "id, at, actor_uid, operator, token, client_address, action, contract_id, detail, outcome";

/// An audit entry to write.
#[derive(Clone, Copy, Debug)]
pub struct NewAudit<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a Actor,
    /// What was asked (`release`, `contract_state`, `import`, …).
    pub action: &'a str,
    pub contract_id: Option<&'a str>,
    pub detail: &'a str,
    /// `ok`, or the code of the refusal.
    pub outcome: &'a str,
}

impl Tx {
    pub async fn write_audit(&mut self, entry: NewAudit<'_>) -> Result<(), StoreError> {
        let statement = Statement::new(
            "INSERT INTO audit (at, actor_uid, operator, token, client_address, action, \
             contract_id, detail, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(entry.at.timestamp())
        .bind(entry.actor.uid.map(i64::from))
        .bind(entry.actor.operator.as_deref())
        .bind(entry.actor.token.as_deref())
        .bind(entry.actor.address.as_deref())
        .bind(entry.action)
        .bind(entry.contract_id)
        .bind(entry.detail)
        .bind(entry.outcome);
        self.execute(statement).await?;
        Ok(())
    }

    /// Writes successful entries of one action in one statement, each a
    /// (contract, detail) pair.
    pub async fn write_audits(
        &mut self,
        at: DateTime<Utc>,
        actor: &Actor,
        action: &str,
        lines: &[(&str, String)],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut statement = Statement::new(
            "INSERT INTO audit (at, actor_uid, operator, token, client_address, action, \
             contract_id, detail, outcome) ",
        );
        statement.push_values(lines, |(contract_id, detail)| {
            vec![
                at.timestamp().into(),
                actor.uid.map(i64::from).into(),
                actor.operator.as_deref().into(),
                actor.token.as_deref().into(),
                actor.address.as_deref().into(),
                action.into(),
                (*contract_id).into(),
                detail.as_str().into(),
                "ok".into(),
            ]
        });
        self.execute(statement).await?;
        Ok(())
    }

    /// Audit entries, newest first: of one contract, or all.
    pub async fn audit(
        &mut self,
        contract_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // Two statements, so that a contract's entries are read through
        // its index rather than by walking the whole trail.
        let statement = match contract_id {
            Some(id) => Statement::new(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE contract_id = $1 \
                 ORDER BY id DESC LIMIT $2"
            ))
            .bind(id),
            None => Statement::new(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT $1"
            )),
        }
        .bind(i64::from(limit));
        let rows = self.fetch_all(statement).await?;
        rows.iter().map(audit_from).collect()
    }
}

pub(super) fn column_uid(row: &DbRow) -> Result<Option<u32>, StoreError> {
    row.get::<Option<i64>>("actor_uid")?
        .map(|uid| {
            u32::try_from(uid)
                .map_err(|_| StoreError::Corrupt(format!("uid {uid} is out of range")))
        })
        .transpose()
}

fn audit_from(row: &DbRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: row.get("id")?,
        at: row.instant("at")?,
        actor_uid: column_uid(row)?,
        operator: row.get("operator")?,
        token: row.get("token")?,
        client_address: row.get("client_address")?,
        action: row.get("action")?,
        contract_id: row.get("contract_id")?,
        detail: row.get("detail")?,
        outcome: row.get("outcome")?,
    })
}
