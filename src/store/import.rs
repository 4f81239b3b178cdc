//! What an import has taken from its file so far, kept in temporary tables
//! of its own transaction rather than in memory: a file of millions of rows
//! costs no more memory than one of a thousand, and a rollback leaves
//! nothing behind.

use std::collections::HashMap;

use super::StoreError;
use super::db::{Statement, Tx, signed};
use crate::import::Known;
use crate::policy::ContractState;

/// The import's own tables, temporary (this connection only, gone with the
/// transaction if it rolls back): each contract and login the file gave,
/// with the first line it was on, what the file said of the contract, and
/// what the import did to it.
const IMPORT_TABLES: [&str; 4] = [
    "CREATE TEMP TABLE IF NOT EXISTS import_contracts (id TEXT PRIMARY KEY, line BIGINT NOT NULL, \
       name TEXT, state TEXT, status TEXT NOT NULL)",
    "CREATE TEMP TABLE IF NOT EXISTS import_logins (username TEXT PRIMARY KEY, line BIGINT NOT NULL)",
    "DELETE FROM import_contracts",
    "DELETE FROM import_logins",
];

/// What an import did to a contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImportStatus {
    Created,
    Updated,
    Unchanged,
}

impl ImportStatus {
    fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Created => "created",
            ImportStatus::Updated => "updated",
            ImportStatus::Unchanged => "unchanged",
        }
    }

    fn parse(text: &str) -> ImportStatus {
        match text {
            "created" => ImportStatus::Created,
            "updated" => ImportStatus::Updated,
            _ => ImportStatus::Unchanged,
        }
    }
}

/// What the import holds of one contract: what the file gave, and what was
/// done to the contract.
#[derive(Clone, Debug)]
pub struct ImportedContract {
    pub known: Known,
    pub status: ImportStatus,
}

impl Tx {
    /// Makes the import's tables, empty.
    pub async fn begin_import(&mut self) -> Result<(), StoreError> {
        for sql in IMPORT_TABLES {
            self.execute(Statement::new(sql)).await?;
        }
        Ok(())
    }

    /// Drops the import's tables once it is applied.
    pub async fn end_import(&mut self) -> Result<(), StoreError> {
        for sql in ["DROP TABLE import_contracts", "DROP TABLE import_logins"] {
            self.execute(Statement::new(sql)).await?;
        }
        Ok(())
    }

    /// The contracts among `ids` that this import has seen, with what it
    /// did.
    pub async fn imported_contracts<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, ImportedContract>, StoreError> {
        let ids: Vec<&str> = ids.into_iter().collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut statement = Statement::new(
            "SELECT id, line, name, state, status FROM import_contracts WHERE id IN ",
        );
        statement.push_list(ids);
        let rows = self.fetch_all(statement).await?;
        rows.iter()
            .map(|row| {
                let state = row
                    .get::<Option<String>>("state")?
                    .map(|s| s.parse::<ContractState>())
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((
                    row.get("id")?,
                    ImportedContract {
                        known: Known {
                            line: row.count("line")?,
                            name: row.get("name")?,
                            state,
                        },
                        status: ImportStatus::parse(&row.get::<String>("status")?),
                    },
                ))
            })
            .collect()
    }

    /// The logins among `usernames` that this import has seen, by first
    /// line.
    pub async fn imported_logins<'a>(
        &mut self,
        usernames: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let usernames: Vec<&str> = usernames.into_iter().collect();
        if usernames.is_empty() {
            return Ok(HashMap::new());
        }
        let mut statement =
            Statement::new("SELECT username, line FROM import_logins WHERE username IN ");
        statement.push_list(usernames);
        let rows = self.fetch_all(statement).await?;
        rows.iter()
            .map(|row| Ok((row.get("username")?, row.count("line")?)))
            .collect()
    }

    /// Records what the import now holds of these contracts.
    pub async fn record_imported_contracts(
        &mut self,
        contracts: &[(&str, &ImportedContract)],
    ) -> Result<(), StoreError> {
        if contracts.is_empty() {
            return Ok(());
        }
        let mut statement =
            Statement::new("INSERT INTO import_contracts (id, line, name, state, status) ");
        statement.push_values(contracts, |(id, contract)| {
            vec![
                (*id).into(),
                signed(contract.known.line).into(),
                contract.known.name.as_deref().into(),
                contract.known.state.map(ContractState::as_str).into(),
                contract.status.as_str().into(),
            ]
        });
        statement.push(
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, state = excluded.state, \
             status = excluded.status",
        );
        self.execute(statement).await?;
        Ok(())
    }

    /// Records the logins the import took, with their lines.
    pub async fn record_imported_logins(
        &mut self,
        logins: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        if logins.is_empty() {
            return Ok(());
        }
        let mut statement = Statement::new("INSERT INTO import_logins (username, line) ");
        statement.push_values(logins, |(username, line)| {
            vec![(*username).into(), signed(*line).into()]
        });
        self.execute(statement).await?;
        Ok(())
    }

    /// How many contracts the import created, updated and left unchanged.
    pub async fn imported_statuses(&mut self) -> Result<HashMap<ImportStatus, u64>, StoreError> {
        let rows = self
            .fetch_all(Statement::new(
                "SELECT status, COUNT(*) AS n FROM import_contracts GROUP BY status",
            ))
            .await?;
        let mut counts = HashMap::new();
        for row in rows {
            *counts
                .entry(ImportStatus::parse(&row.get::<String>("status")?))
                .or_default() += row.count("n")?;
        }
        Ok(counts)
    }
}
