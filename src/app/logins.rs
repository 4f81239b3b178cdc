//! Logins (PPPoE / hotspot users): adding one to a contract, removing one,
//! showing one.

use super::{App, Error};
use crate::model::{
    self, Actor, ContractId, InvalidValue, Login, Password, ReplyAttribute, Username,
};
use crate::store::{NewAudit, NewLogin, Tx};

/// What [`App::put_login`] did.
#[derive(Clone, Debug)]
pub struct PutLogin {
    pub login: Login,
    /// Whether it did not exist before.
    pub created: bool,
}

impl App {
    /// Checks reply attributes against the built-in rules and, when RADIUS
    /// runs, against the dictionaries in force: a login never stores an
    /// attribute its Access-Accept could not carry.
    pub fn check_reply(&self, reply: &[ReplyAttribute]) -> Result<(), InvalidValue> {
        model::check_reply(reply)?;
        if let Some(settings) = self.settings() {
            for attribute in reply {
                settings
                    .encode_login_attribute(attribute)
                    .map_err(|problem| InvalidValue {
                        field: "attribute",
                        problem,
                    })?;
            }
        }
        Ok(())
    }

    /// Adds a login to a contract.
    pub async fn add_login(
        &self,
        actor: &Actor,
        username: &Username,
        contract: &ContractId,
        password: Password,
        reply: Vec<ReplyAttribute>,
    ) -> Result<Login, Error> {
        self.check_reply(&reply)?;
        let now = self.now();
        let mut tx = self.store.write().await?;
        if tx.contract(contract.as_str()).await?.is_none() {
            return Err(Error::ContractNotFound(contract.clone()));
        }
        if tx.login(username.as_str()).await?.is_some() {
            return Err(Error::LoginExists(username.clone()));
        }
        let login = NewLogin {
            username: username.as_str(),
            contract_id: contract.as_str(),
            password: &password,
            reply: &reply,
        };
        let created = tx.insert_login(&login, now).await?;
        audit_login(&mut tx, actor, "login_add", &created, "").await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Makes the login exist with these values: adds it, or gives the
    /// existing one (of this contract or another) the new contract,
    /// password and reply attributes. What a billing system pushes.
    pub async fn put_login(
        &self,
        actor: &Actor,
        username: &Username,
        contract: &ContractId,
        password: Password,
        reply: Vec<ReplyAttribute>,
    ) -> Result<PutLogin, Error> {
        self.check_reply(&reply)?;
        let now = self.now();
        let mut tx = self.store.write().await?;
        if tx.contract(contract.as_str()).await?.is_none() {
            return Err(Error::ContractNotFound(contract.clone()));
        }
        let login = NewLogin {
            username: username.as_str(),
            contract_id: contract.as_str(),
            password: &password,
            reply: &reply,
        };
        let put = match tx.login(username.as_str()).await? {
            None => {
                let login = tx.insert_login(&login, now).await?;
                audit_login(&mut tx, actor, "login_add", &login, "").await?;
                PutLogin {
                    login,
                    created: true,
                }
            }
            Some(before) => {
                tx.update_login(&login, now).await?;
                let moved = if before.contract_id == contract.as_str() {
                    String::new()
                } else {
                    format!(", moved from contract {}", before.contract_id)
                };
                let login = Login {
                    contract_id: contract.as_str().to_owned(),
                    reply,
                    updated_at: now,
                    ..before
                };
                audit_login(&mut tx, actor, "login_update", &login, &moved).await?;
                PutLogin {
                    login,
                    created: false,
                }
            }
        };
        tx.commit().await?;
        Ok(put)
    }

    /// Removes a login; the login it was.
    pub async fn remove_login(&self, actor: &Actor, username: &Username) -> Result<Login, Error> {
        let now = self.now();
        let mut tx = self.store.write().await?;
        let Some(removed) = tx.delete_login(username.as_str()).await? else {
            return Err(Error::LoginNotFound(username.clone()));
        };
        let detail = format!("login {username} removed");
        tx.write_audit(NewAudit {
            at: now,
            actor,
            action: "login_remove",
            contract_id: Some(&removed.contract_id),
            detail: &detail,
            outcome: "ok",
        })
        .await?;
        tx.commit().await?;
        Ok(removed)
    }

    pub async fn login(&self, username: &Username) -> Result<Login, Error> {
        let mut tx = self.store.read().await?;
        let login = tx.login(username.as_str()).await?;
        tx.commit().await?;
        login.ok_or_else(|| Error::LoginNotFound(username.clone()))
    }
}

/// The audit entry of a login added or updated: "login maria added (1
/// reply attributes)", with `more` inside the brackets.
async fn audit_login(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    login: &Login,
    more: &str,
) -> Result<(), Error> {
    let verb = if action == "login_add" {
        "added"
    } else {
        "updated"
    };
    let detail = format!(
        "login {} {verb} ({} reply attributes{more})",
        login.username,
        login.reply.len()
    );
    tx.write_audit(NewAudit {
        // The login's last change is the instant of its entry.
        at: login.updated_at,
        actor,
        action,
        contract_id: Some(&login.contract_id),
        detail: &detail,
        outcome: "ok",
    })
    .await?;
    Ok(())
}
