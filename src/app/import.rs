//! The import of contracts and logins from the billing system's CSV: every
//! row checked against the rows before it, then written, all in one
//! transaction — all of it, or with `skip_invalid` the good rows only.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::contracts::change_state;
use super::{App, Error};
use crate::import::{
    ContractRow, ImportOutcome, ImportRows, Known, LoginRow, Merge, ParsedRow, RejectedRow,
};
use crate::model::{Actor, Contract, ContractId};
use crate::policy::ContractState;
use crate::store::{
    ImportStatus, ImportedContract, NewAudit, NewContract, NewLogin, StoreError, Tx, reply_text,
};

impl App {
    /// Imports rows batch by batch as `rows` hands them over (the file is
    /// read while it is written, never held whole). A row that cannot be
    /// imported is rejected with its line; with `skip_invalid` the others
    /// are imported, without it nothing is.
    pub async fn import(
        &self,
        actor: &Actor,
        rows: &mut ImportRows,
        skip_invalid: bool,
    ) -> Result<ImportOutcome, Error> {
        let now = self.now();
        let mut tx = self.store.write().await?;
        tx.begin_import().await?;
        let mut outcome = ImportOutcome::default();
        while let Some(batch) = rows.recv().await {
            let batch = batch.map_err(|e| Error::InvalidFile(e.to_string()))?;
            import_batch(&mut tx, &batch, actor, now, &mut outcome).await?;
        }
        let statuses = tx.imported_statuses().await?;
        let count = |status| statuses.get(&status).copied().unwrap_or(0);
        outcome.counts.contracts_created = count(ImportStatus::Created);
        outcome.counts.contracts_updated = count(ImportStatus::Updated);
        outcome.counts.contracts_unchanged = count(ImportStatus::Unchanged);
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
        tx.write_audit(NewAudit {
            at: now,
            actor,
            action: "import",
            contract_id: None,
            detail: &detail,
            outcome: "ok",
        })
        .await?;
        tx.end_import().await?;
        tx.commit().await?;
        self.store.checkpoint().await;
        if outcome.counts.enforcement_jobs > 0 {
            self.changed(1);
        }
        Ok(outcome)
    }
}

/// Checks a batch of rows against what the import took before, writes the
/// good ones, and counts the rest among the rejected.
async fn import_batch(
    tx: &mut Tx,
    batch: &[ParsedRow],
    actor: &Actor,
    now: DateTime<Utc>,
    outcome: &mut ImportOutcome,
) -> Result<(), Error> {
    outcome.rows += batch.len() as u64;
    let good = || batch.iter().filter_map(|row| row.as_ref().ok());
    let mut known = tx
        .imported_contracts(good().map(|r| r.contract.id.as_str()))
        .await?;
    let mut logins_seen = tx
        .imported_logins(
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
        let status = before.map_or(ImportStatus::Unchanged, |c| c.status);
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
    let mut touched = HashSet::new();
    for (id, status) in import_contracts(tx, &firsts, actor, now, outcome).await? {
        if let Some(contract) = known.get_mut(&id) {
            contract.status = status;
        }
        touched.insert(id);
    }
    for row in &fills {
        let status = known
            .get(&row.id)
            .map_or(ImportStatus::Unchanged, |c| c.status);
        let status = fill_in_contract(tx, row, status, actor, now, outcome).await?;
        if let Some(contract) = known.get_mut(&row.id) {
            contract.status = status;
        }
        touched.insert(row.id.clone());
    }
    let mut entries: Vec<(&str, &ImportedContract)> = known
        .iter()
        .filter(|(id, _)| touched.contains(*id))
        .map(|(id, contract)| (id.as_str(), contract))
        .collect();
    entries.sort_by_key(|(_, c)| c.known.line);
    tx.record_imported_contracts(&entries).await?;
    import_logins(tx, &logins, actor, now, outcome).await?;
    let lines: Vec<(&str, u64)> = logins
        .iter()
        .map(|l| (l.username.as_str(), l.line))
        .collect();
    tx.record_imported_logins(&lines).await?;
    Ok(())
}

/// Creates or updates the contracts the file gives for the first time, in
/// a few statements; returns what was done to each.
async fn import_contracts(
    tx: &mut Tx,
    rows: &[&ContractRow],
    actor: &Actor,
    now: DateTime<Utc>,
    outcome: &mut ImportOutcome,
) -> Result<HashMap<String, ImportStatus>, Error> {
    let mut done = HashMap::with_capacity(rows.len());
    if rows.is_empty() {
        return Ok(done);
    }
    let existing = tx
        .contracts_by_id(rows.iter().map(|r| r.id.as_str()))
        .await?;
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
            done.insert(row.id.clone(), ImportStatus::Created);
            continue;
        };
        let changed = update_contract(tx, existing, row, actor, now, &mut audit, outcome).await?;
        done.insert(
            row.id.clone(),
            if changed {
                ImportStatus::Updated
            } else {
                ImportStatus::Unchanged
            },
        );
    }
    tx.insert_contracts(&created, now).await?;
    tx.write_audits(now, actor, "import", &audit).await?;
    Ok(done)
}

/// Gives an existing contract the name and state a row says, where they
/// differ; true when something changed.
async fn update_contract<'r>(
    tx: &mut Tx,
    existing: &Contract,
    row: &'r ContractRow,
    actor: &Actor,
    now: DateTime<Utc>,
    audit: &mut Vec<(&'r str, String)>,
    outcome: &mut ImportOutcome,
) -> Result<bool, Error> {
    let mut changed = false;
    if let Some(name) = row.name.as_ref().filter(|n| **n != existing.name) {
        tx.rename_contract(&row.id, name).await?;
        let detail = format!("line {}: name changed to {name:?}", row.line);
        audit.push((row.id.as_str(), detail));
        changed = true;
    }
    if let Some(state) = row.state.filter(|s| *s != existing.state) {
        let reason = format!("import, line {}", row.line);
        // The row's id passed the import's checks.
        let id = ContractId::parse(row.id.as_str())?;
        let change = change_state(tx, &id, state, &reason, actor, now, "import").await?;
        outcome.counts.enforcement_jobs += change.jobs.len() as u64;
        changed = true;
    }
    Ok(changed)
}

/// Applies what a later row fills in of a contract the import already
/// wrote; returns what the import has now done to it.
async fn fill_in_contract(
    tx: &mut Tx,
    row: &ContractRow,
    status: ImportStatus,
    actor: &Actor,
    now: DateTime<Utc>,
    outcome: &mut ImportOutcome,
) -> Result<ImportStatus, Error> {
    let Some(existing) = tx.contract(&row.id).await? else {
        return Err(Error::ContractNotFound(ContractId::parse(row.id.as_str())?));
    };
    let mut audit = Vec::new();
    if status == ImportStatus::Created {
        // Made by this import: the row completes its creation.
        tx.complete_contract(&row.id, row.name.as_deref(), row.state)
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
        tx.write_audits(now, actor, "import", &audit).await?;
        return Ok(ImportStatus::Created);
    }
    let changed = update_contract(tx, &existing, row, actor, now, &mut audit, outcome).await?;
    tx.write_audits(now, actor, "import", &audit).await?;
    Ok(if changed || status == ImportStatus::Updated {
        ImportStatus::Updated
    } else {
        ImportStatus::Unchanged
    })
}

/// Creates or updates logins, in a few statements per batch.
async fn import_logins(
    tx: &mut Tx,
    rows: &[&LoginRow],
    actor: &Actor,
    now: DateTime<Utc>,
    outcome: &mut ImportOutcome,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let counts = &mut outcome.counts;
    let existing = tx
        .stored_logins(rows.iter().map(|r| r.username.as_str()))
        .await?;
    let mut created = Vec::new();
    let mut audit = Vec::new();
    for row in rows {
        let login = NewLogin {
            username: &row.username,
            contract_id: &row.contract_id,
            password: &row.password,
            reply: &row.reply,
        };
        let Some(old) = existing.get(&row.username) else {
            let detail = format!("line {}: login {} created", row.line, row.username);
            audit.push((row.contract_id.as_str(), detail));
            created.push(login);
            continue;
        };
        if old.contract_id == row.contract_id
            && old.password == row.password.stored()
            && old.password_type == row.password.kind()
            && old.reply == reply_text(&row.reply)
        {
            counts.logins_unchanged += 1;
            continue;
        }
        tx.update_login(&login, now).await?;
        counts.logins_updated += 1;
        let detail = format!("line {}: login {} updated", row.line, row.username);
        audit.push((row.contract_id.as_str(), detail));
    }
    tx.insert_logins(&created, now).await?;
    counts.logins_created += created.len() as u64;
    tx.write_audits(now, actor, "import", &audit).await
}
