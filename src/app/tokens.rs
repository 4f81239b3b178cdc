//! API tokens: made (the token shown once), listed (never the token),
//! revoked, and checked when a request presents one.
//!
//! A token reads `lbr_<prefix>_<secret>`: the prefix (8 random bytes, hex)
//! finds its row, and the SHA-256 of the secret (16 random bytes, hex: 128
//! bits) is compared with the stored one in constant time.

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use super::{App, Error};
use crate::model::{self, Actor, Role, TokenInfo};
use crate::policy;
use crate::store::{NewAudit, NewToken};

/// Random bytes in a token's prefix and in its secret.
const PREFIX_BYTES: usize = 8;
const SECRET_BYTES: usize = 16;

/// Why a presented token is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    #[error("the token is not one liberad made")]
    Unknown,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token expired")]
    Expired,
}

/// A token just made: what is kept of it, and the token, shown once.
#[derive(Clone, Debug)]
pub struct MadeToken {
    pub info: TokenInfo,
    pub token: String,
}

impl App {
    /// Makes a token for `role`, valid through the local date `expires`
    /// (none: until revoked).
    pub async fn add_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        expires: Option<NaiveDate>,
    ) -> Result<MadeToken, Error> {
        model::check_token_name(name)?;
        let now = self.now();
        // Valid through the whole of that day, in the ISP's calendar.
        let expires_at = expires
            .and_then(|d| d.succ_opt())
            .map(|next| policy::start_of_day(next, self.timezone));
        if expires_at.is_some_and(|end| end <= now) {
            return Err(Error::Invalid(model::InvalidValue {
                field: "expires",
                problem: "the date is past".to_owned(),
            }));
        }
        let prefix = hex::encode(random::<PREFIX_BYTES>()?);
        let secret = hex::encode(random::<SECRET_BYTES>()?);
        let hash = hex::encode(Sha256::digest(secret.as_bytes()));
        let mut tx = self.store.write().await?;
        let new = NewToken {
            name,
            role,
            prefix: &prefix,
            secret_hash: &hash,
            expires_at,
        };
        let Some(info) = tx.insert_token(&new, now).await? else {
            return Err(Error::TokenExists(name.to_owned()));
        };
        let detail = match expires_at {
            Some(at) => format!(
                "token {name} made, role {role}, expires {}",
                super::local(at, self.timezone)
            ),
            None => format!("token {name} made, role {role}"),
        };
        tx.write_audit(NewAudit {
            at: now,
            actor,
            action: "token_add",
            contract_id: None,
            detail: &detail,
            outcome: "ok",
        })
        .await?;
        tx.commit().await?;
        Ok(MadeToken {
            info,
            token: format!("lbr_{prefix}_{secret}"),
        })
    }

    /// Every token, by name: never the token itself.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let mut tx = self.store.read().await?;
        let tokens = tx.tokens().await?;
        tx.commit().await?;
        Ok(tokens)
    }

    /// Revokes a token: from now on it is refused.
    pub async fn revoke_token(&self, actor: &Actor, name: &str) -> Result<TokenInfo, Error> {
        model::check_token_name(name)?;
        let now = self.now();
        let mut tx = self.store.write().await?;
        let Some(token) = tx.revoke_token(name, now).await? else {
            return Err(Error::TokenNotFound(name.to_owned()));
        };
        let detail = format!("token {name} revoked");
        tx.write_audit(NewAudit {
            at: now,
            actor,
            action: "token_revoke",
            contract_id: None,
            detail: &detail,
            outcome: "ok",
        })
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// The token a request presents, if it is one liberad made and may
    /// still be used; its use is noted.
    pub async fn authenticate(
        &self,
        presented: &str,
    ) -> Result<Result<TokenInfo, TokenRefused>, Error> {
        let Some((prefix, secret)) = presented
            .strip_prefix("lbr_")
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(Err(TokenRefused::Unknown));
        };
        let now = self.now();
        // A read: a flood of bad tokens never takes the write lock that
        // accounting needs.
        let mut tx = self.store.read().await?;
        let found = tx.token_by_prefix(prefix).await?;
        tx.commit().await?;
        let Some((token, stored)) = found else {
            return Ok(Err(TokenRefused::Unknown));
        };
        let hash = hex::encode(Sha256::digest(secret.as_bytes()));
        if !same(hash.as_bytes(), stored.as_bytes()) {
            return Ok(Err(TokenRefused::Unknown));
        }
        if token.revoked_at.is_some() {
            return Ok(Err(TokenRefused::Revoked));
        }
        if token.expires_at.is_some_and(|end| end <= now) {
            return Ok(Err(TokenRefused::Expired));
        }
        // Its use is noted at most once a minute: a busy client does not
        // write on every request.
        let stale = token
            .last_used_at
            .is_none_or(|used| now - used >= chrono::Duration::seconds(LAST_USED_EVERY_SECS));
        if stale {
            let mut tx = self.store.write().await?;
            tx.token_used(&token.name, now).await?;
            tx.commit().await?;
        }
        Ok(Ok(token))
    }
}

/// How often a token's use is written down, at most.
const LAST_USED_EVERY_SECS: i64 = 60;

/// Whether two byte strings are equal, in a time that depends only on
/// their length.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `N` bytes from the operating system's random source.
fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Internal(format!("no random bytes from the system: {e}")))?;
    Ok(bytes)
}
