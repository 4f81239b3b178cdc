//! Contracts: their rows, the lock a change of one takes, and the facts the
//! release rules read of one.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::StoreError;
use super::db::{DbRow, Statement, Tx, instant};
use crate::model::Contract;
use crate::policy::{ContractFacts, ContractState, UnknownState};

pub(super) const CONTRACT_COLUMNS: &str = "id, name, state, state_changed_at, created_at";

/// A contract to create.
#[derive(Clone, Debug)]
pub struct NewContract {
    pub id: String,
    pub name: String,
    pub state: ContractState,
}

impl Tx {
    /// Locks a contract's row until the transaction ends (PostgreSQL;
    /// SQLite's write transaction holds the whole database already), so
    /// that a decision read about it still holds when it is written.
    pub async fn lock_contract(&mut self, id: &str) -> Result<(), StoreError> {
        if let Some(sql) = self.dialect().lock_contract {
            self.execute(Statement::new(sql).bind(id)).await?;
        }
        Ok(())
    }

    pub async fn contract(&mut self, id: &str) -> Result<Option<Contract>, StoreError> {
        let sql = format!("SELECT {CONTRACT_COLUMNS} FROM contracts WHERE id = $1");
        let row = self.fetch_optional(Statement::new(sql).bind(id)).await?;
        row.as_ref().map(contract_from).transpose()
    }

    /// Contracts in the order of their ids as numbers (shorter first), at
    /// most `limit`, from the one after `after`.
    pub async fn contracts(
        &mut self,
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
        let statement = Statement::new(sql)
            .bind(state.map(ContractState::as_str))
            .bind(after)
            .bind(i64::from(limit));
        let rows = self.fetch_all(statement).await?;
        rows.iter().map(contract_from).collect()
    }

    /// The contracts among `ids` that exist, by id.
    pub async fn contracts_by_id<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, Contract>, StoreError> {
        let ids: Vec<&str> = ids.into_iter().collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut statement = Statement::new(format!(
            "SELECT {CONTRACT_COLUMNS} FROM contracts WHERE id IN "
        ));
        statement.push_list(ids);
        let rows = self.fetch_all(statement).await?;
        rows.iter()
            .map(|row| contract_from(row).map(|c| (c.id.clone(), c)))
            .collect()
    }

    /// What the release rules read of a contract: its state, its release
    /// not recorded as ended, and when its last release started.
    pub async fn contract_facts(
        &mut self,
        contract_id: &str,
    ) -> Result<Option<ContractFacts>, StoreError> {
        let statement = Statement::new(
            "SELECT c.state, \
               (SELECT ends_at FROM releases r WHERE r.contract_id = c.id AND r.ended_at IS NULL) \
                 AS open_ends_at, \
               (SELECT MAX(started_at) FROM releases r WHERE r.contract_id = c.id) \
                 AS last_started_at \
             FROM contracts c WHERE c.id = $1",
        )
        .bind(contract_id);
        let Some(row) = self.fetch_optional(statement).await? else {
            return Ok(None);
        };
        Ok(Some(ContractFacts {
            state: column_state(&row)?,
            open_release_ends_at: row.optional_instant("open_ends_at")?,
            last_release_started_at: row.optional_instant("last_started_at")?,
        }))
    }

    pub async fn insert_contract(
        &mut self,
        contract: &NewContract,
        now: DateTime<Utc>,
    ) -> Result<Contract, StoreError> {
        let sql = format!(
            "INSERT INTO contracts (id, name, state, state_changed_at, created_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING {CONTRACT_COLUMNS}"
        );
        let statement = Statement::new(sql)
            .bind(&contract.id)
            .bind(&contract.name)
            .bind(contract.state.as_str())
            .bind(now.timestamp());
        contract_from(&self.fetch_one(statement).await?)
    }

    /// Creates contracts in one statement.
    pub async fn insert_contracts(
        &mut self,
        contracts: &[NewContract],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if contracts.is_empty() {
            return Ok(());
        }
        let mut statement = Statement::new(
            "INSERT INTO contracts (id, name, state, state_changed_at, created_at) ",
        );
        statement.push_values(contracts, |c| {
            vec![
                (&c.id).into(),
                (&c.name).into(),
                c.state.as_str().into(),
                now.timestamp().into(),
                now.timestamp().into(),
            ]
        });
        self.execute(statement).await?;
        Ok(())
    }

    /// Records a contract's new state.
    pub async fn set_contract_state(
        &mut self,
        id: &str,
        state: ContractState,
        now: DateTime<Utc>,
    ) -> Result<Contract, StoreError> {
        let sql = format!(
            "UPDATE contracts SET state = $1, state_changed_at = $2 WHERE id = $3 \
             RETURNING {CONTRACT_COLUMNS}"
        );
        let statement = Statement::new(sql)
            .bind(state.as_str())
            .bind(now.timestamp())
            .bind(id);
        contract_from(&self.fetch_one(statement).await?)
    }

    pub async fn rename_contract(&mut self, id: &str, name: &str) -> Result<(), StoreError> {
        let statement = Statement::new("UPDATE contracts SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id);
        self.execute(statement).await?;
        Ok(())
    }

    /// Gives a contract the name and state given, where given, without
    /// counting it as a change of state (it is being created).
    pub async fn complete_contract(
        &mut self,
        id: &str,
        name: Option<&str>,
        state: Option<ContractState>,
    ) -> Result<(), StoreError> {
        let statement = Statement::new(
            "UPDATE contracts SET name = COALESCE($1, name), state = COALESCE($2, state) \
             WHERE id = $3",
        )
        .bind(name)
        .bind(state.map(ContractState::as_str))
        .bind(id);
        self.execute(statement).await?;
        Ok(())
    }
}

pub(super) fn column_state(row: &DbRow) -> Result<ContractState, StoreError> {
    let state: String = row.get("state")?;
    state
        .parse()
        .map_err(|e: UnknownState| StoreError::Corrupt(e.to_string()))
}

pub(super) fn contract_from(row: &DbRow) -> Result<Contract, StoreError> {
    Ok(Contract {
        id: row.get("id")?,
        name: row.get("name")?,
        state: column_state(row)?,
        state_changed_at: instant(row.get("state_changed_at")?)?,
        created_at: instant(row.get("created_at")?)?,
    })
}
