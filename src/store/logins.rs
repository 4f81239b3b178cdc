//! Logins: their rows, and the read every Access-Request makes of one.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::db::{DbRow, Statement, Tx, instant};
use super::{Store, StoreError};
use crate::model::{AuthRecord, Login, Password, ReplyAttribute};
use crate::policy::UnknownState;

const LOGIN_COLUMNS: &str = "username, contract_id, reply, created_at, updated_at";

/// A login to create or to give new values (borrowed: an import writes
/// its rows without copying them).
#[derive(Clone, Copy, Debug)]
pub struct NewLogin<'a> {
    pub username: &'a str,
    pub contract_id: &'a str,
    pub password: &'a Password,
    pub reply: &'a [ReplyAttribute],
}

/// What is compared of a login that exists before it is written again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLogin {
    pub contract_id: String,
    pub password: String,
    pub password_type: String,
    /// The reply attributes as stored, one `Name = value` per line.
    pub reply: String,
}

/// What RADIUS authentication reads of a login, by `$1` = User-Name.
pub(super) const AUTH_LOOKUP: &str = "SELECT l.username, l.password, l.password_type, l.reply, \
       l.contract_id, c.state, \
       (SELECT r.ends_at FROM releases r \
         WHERE r.contract_id = c.id AND r.ended_at IS NULL) AS open_ends_at \
     FROM logins l JOIN contracts c ON c.id = l.contract_id \
     WHERE l.username = $1";

/// The columns of [`AUTH_LOOKUP`], as read.
pub(super) struct AuthColumns {
    pub username: String,
    pub password: String,
    pub password_type: String,
    pub reply: String,
    pub contract_id: String,
    pub state: String,
    pub open_ends_at: Option<i64>,
}

impl AuthColumns {
    pub fn record(self) -> Result<AuthRecord, StoreError> {
        let password = Password::from_stored(&self.password_type, &self.password)
            .map_err(|e| StoreError::Corrupt(format!("login {}: {e}", self.username)))?;
        Ok(AuthRecord {
            password,
            contract_id: self.contract_id,
            state: self
                .state
                .parse()
                .map_err(|e: UnknownState| StoreError::Corrupt(e.to_string()))?,
            open_release_ends_at: self.open_ends_at.map(instant).transpose()?,
            reply: parse_reply(&self.reply)?,
            username: self.username,
        })
    }
}

impl Store {
    /// The login, its password and its contract's state, for RADIUS.
    pub async fn auth_lookup(&self, username: &str) -> Result<Option<AuthRecord>, StoreError> {
        if let Some(fast) = &self.fast_reads {
            return fast.auth_lookup(username);
        }
        let row = self
            .reader
            .fetch_optional(Statement::new(AUTH_LOOKUP).bind(username))
            .await?;
        row.map(|row| {
            AuthColumns {
                username: row.get("username")?,
                password: row.get("password")?,
                password_type: row.get("password_type")?,
                reply: row.get("reply")?,
                contract_id: row.get("contract_id")?,
                state: row.get("state")?,
                open_ends_at: row.get("open_ends_at")?,
            }
            .record()
        })
        .transpose()
    }
}

impl Tx {
    pub async fn login(&mut self, username: &str) -> Result<Option<Login>, StoreError> {
        let sql = format!("SELECT {LOGIN_COLUMNS} FROM logins WHERE username = $1");
        let row = self
            .fetch_optional(Statement::new(sql).bind(username))
            .await?;
        row.as_ref().map(login_from).transpose()
    }

    /// The logins of a contract, by username.
    pub async fn logins_of(&mut self, contract_id: &str) -> Result<Vec<Login>, StoreError> {
        let sql =
            format!("SELECT {LOGIN_COLUMNS} FROM logins WHERE contract_id = $1 ORDER BY username");
        let rows = self
            .fetch_all(Statement::new(sql).bind(contract_id))
            .await?;
        rows.iter().map(login_from).collect()
    }

    pub async fn insert_login(
        &mut self,
        login: &NewLogin<'_>,
        now: DateTime<Utc>,
    ) -> Result<Login, StoreError> {
        let sql = format!(
            "INSERT INTO logins \
             (username, contract_id, password, password_type, reply, created_at, updated_at) \
             VALUES ($1, $2, $3, $6, $4, $5, $5) RETURNING {LOGIN_COLUMNS}"
        );
        let statement = Statement::new(sql)
            .bind(login.username)
            .bind(login.contract_id)
            .bind(login.password.stored())
            .bind(reply_text(login.reply))
            .bind(now.timestamp())
            .bind(login.password.kind());
        login_from(&self.fetch_one(statement).await?)
    }

    /// Removes a login; the login it was, if there was one.
    pub async fn delete_login(&mut self, username: &str) -> Result<Option<Login>, StoreError> {
        let sql = format!("DELETE FROM logins WHERE username = $1 RETURNING {LOGIN_COLUMNS}");
        let row = self
            .fetch_optional(Statement::new(sql).bind(username))
            .await?;
        row.as_ref().map(login_from).transpose()
    }

    /// The logins among `usernames` that exist, by username, as stored.
    pub async fn stored_logins<'a>(
        &mut self,
        usernames: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, StoredLogin>, StoreError> {
        let usernames: Vec<&str> = usernames.into_iter().collect();
        if usernames.is_empty() {
            return Ok(HashMap::new());
        }
        let mut statement = Statement::new(
            "SELECT username, contract_id, password, password_type, reply \
             FROM logins WHERE username IN ",
        );
        statement.push_list(usernames);
        let rows = self.fetch_all(statement).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.get("username")?,
                    StoredLogin {
                        contract_id: row.get("contract_id")?,
                        password: row.get("password")?,
                        password_type: row.get("password_type")?,
                        reply: row.get("reply")?,
                    },
                ))
            })
            .collect()
    }

    /// Gives an existing login new values.
    pub async fn update_login(
        &mut self,
        login: &NewLogin<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let statement = Statement::new(
            "UPDATE logins SET contract_id = $2, password = $3, password_type = $6, \
             reply = $4, updated_at = $5 WHERE username = $1",
        )
        .bind(login.username)
        .bind(login.contract_id)
        .bind(login.password.stored())
        .bind(reply_text(login.reply))
        .bind(now.timestamp())
        .bind(login.password.kind());
        self.execute(statement).await?;
        Ok(())
    }

    /// Creates logins in one statement.
    pub async fn insert_logins(
        &mut self,
        logins: &[NewLogin<'_>],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if logins.is_empty() {
            return Ok(());
        }
        let mut statement = Statement::new(
            "INSERT INTO logins (username, contract_id, password, password_type, reply, \
             created_at, updated_at) ",
        );
        statement.push_values(logins, |login| {
            vec![
                login.username.into(),
                login.contract_id.into(),
                login.password.stored().into(),
                login.password.kind().into(),
                reply_text(login.reply).into(),
                now.timestamp().into(),
                now.timestamp().into(),
            ]
        });
        self.execute(statement).await?;
        Ok(())
    }
}

/// Reply attributes as stored: one `Name = value` per line.
pub fn reply_text(reply: &[ReplyAttribute]) -> String {
    reply
        .iter()
        .map(ReplyAttribute::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reply attributes stored one `Name = value` per line.
pub(super) fn parse_reply(text: &str) -> Result<Vec<ReplyAttribute>, StoreError> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.parse::<ReplyAttribute>()
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
}

fn login_from(row: &DbRow) -> Result<Login, StoreError> {
    let reply = parse_reply(&row.get::<String>("reply")?)?;
    Ok(Login {
        username: row.get("username")?,
        contract_id: row.get("contract_id")?,
        reply,
        created_at: row.instant("created_at")?,
        updated_at: row.instant("updated_at")?,
    })
}
