//! API tokens: name, role, the hash of the secret, and their life (made,
//! expiring, revoked, last used). The token itself is never stored.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::db::{DbRow, Statement, Tx};
use crate::model::{Role, TokenInfo};

const TOKEN_COLUMNS: &str = "name, role, created_at, expires_at, revoked_at, last_used_at";

/// A token to record.
#[derive(Clone, Debug)]
pub struct NewToken<'a> {
    pub name: &'a str,
    pub role: Role,
    /// Found in the token, it finds the row.
    pub prefix: &'a str,
    /// SHA-256 of the token's secret, hex.
    pub secret_hash: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Tx {
    /// Records a token; the token as kept, or `None` if a token with its
    /// name exists (revoked ones too: a name is never given twice).
    pub async fn insert_token(
        &mut self,
        token: &NewToken<'_>,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenInfo>, StoreError> {
        let sql = format!(
            "INSERT INTO tokens (name, role, prefix, secret_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING \
             RETURNING {TOKEN_COLUMNS}"
        );
        let statement = Statement::new(sql)
            .bind(token.name)
            .bind(token.role.as_str())
            .bind(token.prefix)
            .bind(token.secret_hash)
            .bind(now.timestamp())
            .bind(token.expires_at.map(|t| t.timestamp()));
        let row = self.fetch_optional(statement).await?;
        row.as_ref().map(token_from).transpose()
    }

    /// Every token, by name.
    pub async fn tokens(&mut self) -> Result<Vec<TokenInfo>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name");
        let rows = self.fetch_all(Statement::new(sql)).await?;
        rows.iter().map(token_from).collect()
    }

    /// Revokes a token now; the token as it is after, or `None` if there is
    /// none by that name. Revoking a revoked token changes nothing.
    pub async fn revoke_token(
        &mut self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenInfo>, StoreError> {
        let sql = format!(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1 \
             RETURNING {TOKEN_COLUMNS}"
        );
        let row = self
            .fetch_optional(Statement::new(sql).bind(name).bind(now.timestamp()))
            .await?;
        row.as_ref().map(token_from).transpose()
    }

    /// The token whose prefix this is, with the hash of its secret.
    pub async fn token_by_prefix(
        &mut self,
        prefix: &str,
    ) -> Result<Option<(TokenInfo, String)>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS}, secret_hash FROM tokens WHERE prefix = $1");
        let row = self
            .fetch_optional(Statement::new(sql).bind(prefix))
            .await?;
        row.map(|row| Ok((token_from(&row)?, row.get("secret_hash")?)))
            .transpose()
    }

    /// Notes that a token was just used.
    pub async fn token_used(&mut self, name: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let statement = Statement::new("UPDATE tokens SET last_used_at = $2 WHERE name = $1")
            .bind(name)
            .bind(now.timestamp());
        self.execute(statement).await?;
        Ok(())
    }
}

fn token_from(row: &DbRow) -> Result<TokenInfo, StoreError> {
    let role: String = row.get("role")?;
    Ok(TokenInfo {
        name: row.get("name")?,
        role: role
            .parse()
            .map_err(|e: crate::model::InvalidValue| StoreError::Corrupt(e.to_string()))?,
        created_at: row.instant("created_at")?,
        expires_at: row.optional_instant("expires_at")?,
        revoked_at: row.optional_instant("revoked_at")?,
        last_used_at: row.optional_instant("last_used_at")?,
    })
}
