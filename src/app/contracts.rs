//! Contracts: adding one, changing its state (the billing system's
//! payment, block or cancellation), its summary, and the list.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::releases::{Queued, enforce_change, expire_lapsed};
use super::{App, Error, with_reason};
use crate::model::{
    Actor, AuditEntry, Contract, ContractId, EndReason, Login, Release, SessionEnforcement,
};
use crate::policy::{self, ContractFacts, ContractState, Profile};
use crate::store::{NewAudit, NewContract, Tx};
use crate::telemetry;

/// Audit entries shown in the contract summary.
const SUMMARY_AUDIT_ENTRIES: u32 = 10;

/// What a state change did.
#[derive(Clone, Debug)]
pub struct StateChange {
    pub contract: Contract,
    pub previous: ContractState,
    /// The release this change ended (payment ends a release as
    /// `unblocked`, cancellation as `revoked`).
    pub ended_release: Option<Release>,
    /// Enforcement jobs queued for the contract's online sessions.
    pub jobs: Vec<i64>,
    /// Its online sessions on a NAS that takes no CoA (`coa_mode =
    /// "none"`), which get the change when they connect again.
    pub at_next_connection: usize,
}

/// What [`App::put_contract`] did.
#[derive(Clone, Debug)]
pub struct PutContract {
    pub contract: Contract,
    /// Whether it did not exist before.
    pub created: bool,
    /// The change of state, when a state was given for an existing one.
    pub change: Option<StateChange>,
}

/// Everything an operator sees of one contract, read in one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContractSummary {
    pub contract: Contract,
    /// The profile its logins get now (`None`: rejected).
    pub profile: Option<Profile>,
    pub running_release: Option<Release>,
    /// The last release that is not running.
    pub last_release: Option<Release>,
    /// The first local date a release is allowed.
    pub next_allowed: NaiveDate,
    pub release_enabled: bool,
    pub logins: Vec<Login>,
    /// The most recent audit entries about it, newest first.
    pub audit: Vec<AuditEntry>,
    /// Its open sessions, each with its last enforcement job.
    #[serde(default)]
    pub sessions: Vec<SessionEnforcement>,
}

/// A page of contracts, and the id to ask the next one after.
#[derive(Clone, Debug)]
pub struct ContractPage {
    pub contracts: Vec<Contract>,
    pub next_after: Option<String>,
}

impl App {
    /// Adds a contract (active unless another state is given).
    pub async fn add_contract(
        &self,
        actor: &Actor,
        id: &ContractId,
        name: &str,
        state: ContractState,
    ) -> Result<Contract, Error> {
        let now = self.now();
        let mut tx = self.store.write().await?;
        if tx.contract(id.as_str()).await?.is_some() {
            return Err(Error::ContractExists(id.clone()));
        }
        let created = create(&mut tx, actor, id, name, state, "", now).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Sets a contract's state; ends its running release when the contract
    /// becomes active (`unblocked`) or cancelled (`revoked`), and enforces
    /// the change on its online sessions.
    pub async fn set_contract_state(
        &self,
        actor: &Actor,
        id: &ContractId,
        state: ContractState,
        reason: &str,
    ) -> Result<StateChange, Error> {
        let now = self.now();
        let mut tx = self.store.write().await?;
        let change = change_state(&mut tx, id, state, reason, actor, now, "contract_state").await?;
        tx.commit().await?;
        self.state_changed(&change);
        Ok(change)
    }

    /// What follows a committed change of state: the metrics, and waking
    /// the enforcer and the scheduler.
    fn state_changed(&self, change: &StateChange) {
        if let Some(release) = &change.ended_release {
            let reason = release.end_reason.map_or("revoked", EndReason::as_str);
            metrics::counter!(telemetry::RELEASES_ENDED, "reason" => reason).increment(1);
        }
        if change.previous != change.contract.state {
            self.changed(change.jobs.len());
        }
    }

    /// Makes the contract exist with this name, and with this state when
    /// one is given (active when it is created without one): creates it,
    /// or renames it and changes its state as
    /// [`set_contract_state`](App::set_contract_state) does, in one
    /// transaction. What a billing system pushes.
    pub async fn put_contract(
        &self,
        actor: &Actor,
        id: &ContractId,
        name: &str,
        state: Option<ContractState>,
        reason: &str,
    ) -> Result<PutContract, Error> {
        let now = self.now();
        let mut tx = self.store.write().await?;
        tx.lock_contract(id.as_str()).await?;
        let Some(existing) = tx.contract(id.as_str()).await? else {
            let state = state.unwrap_or(ContractState::Active);
            let created = create(&mut tx, actor, id, name, state, reason, now).await?;
            tx.commit().await?;
            return Ok(PutContract {
                contract: created,
                created: true,
                change: None,
            });
        };
        if existing.name != name {
            tx.rename_contract(id.as_str(), name).await?;
            let detail = format!("name {:?} -> {name:?}", existing.name);
            tx.write_audit(NewAudit {
                at: now,
                actor,
                action: "contract_rename",
                contract_id: Some(id.as_str()),
                detail: &detail,
                outcome: "ok",
            })
            .await?;
        }
        let change = match state {
            Some(state) => {
                Some(change_state(&mut tx, id, state, reason, actor, now, "contract_state").await?)
            }
            None => None,
        };
        let contract = match &change {
            Some(change) => Contract {
                name: name.to_owned(),
                ..change.contract.clone()
            },
            None => Contract {
                name: name.to_owned(),
                ..existing
            },
        };
        tx.commit().await?;
        if let Some(change) = &change {
            self.state_changed(change);
        }
        Ok(PutContract {
            contract,
            created: false,
            change,
        })
    }

    /// The contract with its releases, logins, sessions and audit, and what
    /// the rules say of it now.
    pub async fn contract_summary(&self, id: &ContractId) -> Result<ContractSummary, Error> {
        let mut tx = self.store.read().await?;
        let Some(contract) = tx.contract(id.as_str()).await? else {
            return Err(Error::ContractNotFound(id.clone()));
        };
        let releases = tx.releases(Some(id.as_str()), 2).await?;
        let logins = tx.logins_of(id.as_str()).await?;
        let audit = tx.audit(Some(id.as_str()), SUMMARY_AUDIT_ENTRIES).await?;
        let parameters = tx.parameters().await?;
        let sessions = tx.open_sessions_of(id.as_str()).await?;
        tx.commit().await?;
        let now = self.now();
        let running_release = releases.iter().find(|r| r.is_running(now)).cloned();
        let last_release = releases.iter().find(|r| !r.is_running(now)).cloned();
        let facts = ContractFacts {
            state: contract.state,
            open_release_ends_at: releases
                .iter()
                .find(|r| r.ended_at.is_none())
                .map(|r| r.ends_at),
            last_release_started_at: releases.first().map(|r| r.started_at),
        };
        Ok(ContractSummary {
            next_allowed: policy::next_allowed_date(&parameters, &facts, now, self.timezone),
            profile: policy::effective_profile(contract.state, running_release.is_some()),
            contract,
            running_release,
            last_release,
            release_enabled: parameters.enabled,
            logins,
            audit,
            sessions,
        })
    }

    /// Contracts in the order of their ids as numbers (shorter first), at
    /// most `limit`, from the one after `after`.
    pub async fn contracts(
        &self,
        state: Option<ContractState>,
        after: Option<&ContractId>,
        limit: u32,
    ) -> Result<ContractPage, Error> {
        let mut tx = self.store.read().await?;
        let contracts = tx
            .contracts(state, after.map(ContractId::as_str), limit)
            .await?;
        tx.commit().await?;
        let next_after = (contracts.len() == limit as usize)
            .then(|| contracts.last().map(|c| c.id.clone()))
            .flatten();
        Ok(ContractPage {
            contracts,
            next_after,
        })
    }
}

/// Creates a contract inside a write transaction, audited.
async fn create(
    tx: &mut Tx,
    actor: &Actor,
    id: &ContractId,
    name: &str,
    state: ContractState,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Contract, Error> {
    let new = NewContract {
        id: id.as_str().to_owned(),
        name: name.to_owned(),
        state,
    };
    let created = tx.insert_contract(&new, now).await?;
    let detail = with_reason(&format!("contract created as {}", created.state), reason);
    tx.write_audit(NewAudit {
        at: now,
        actor,
        action: "contract_add",
        contract_id: Some(&created.id),
        detail: &detail,
        outcome: "ok",
    })
    .await?;
    Ok(created)
}

/// Sets a contract's state inside a write transaction, ending its running
/// release where the new state calls for it, auditing the change as
/// `action`, and queueing its enforcement.
pub(super) async fn change_state(
    tx: &mut Tx,
    id: &ContractId,
    state: ContractState,
    reason: &str,
    actor: &Actor,
    now: DateTime<Utc>,
    action: &str,
) -> Result<StateChange, Error> {
    let key = id.as_str();
    tx.lock_contract(key).await?;
    expire_lapsed(tx, key, now).await?;
    let Some(existing) = tx.contract(key).await? else {
        return Err(Error::ContractNotFound(id.clone()));
    };
    let previous = existing.state;
    let released_before = tx
        .contract_facts(key)
        .await?
        .is_some_and(|f| policy::running_until(f.open_release_ends_at, now).is_some());
    if previous == state {
        let detail = with_reason(&format!("state stays {state}"), reason);
        tx.write_audit(NewAudit {
            at: now,
            actor,
            action,
            contract_id: Some(key),
            detail: &detail,
            outcome: "unchanged",
        })
        .await?;
        return Ok(StateChange {
            contract: existing,
            previous,
            ended_release: None,
            jobs: Vec::new(),
            at_next_connection: 0,
        });
    }
    let contract = tx.set_contract_state(key, state, now).await?;
    let end = match state {
        ContractState::Active => Some((EndReason::Unblocked, "contract became active")),
        ContractState::Cancelled => Some((EndReason::Revoked, "contract cancelled")),
        ContractState::Reduced | ContractState::Blocked => None,
    };
    let ended_release = match end {
        Some((why, note)) => {
            tx.end_open_release(key, why, &actor.display_name(), note, now)
                .await?
        }
        None => None,
    };
    let mut detail = with_reason(&format!("state {previous} -> {state}"), reason);
    if let Some(release) = &ended_release {
        detail.push_str(&format!(
            "; release {} ended ({})",
            release.id,
            end.map_or(EndReason::Revoked, |(why, _)| why).as_str()
        ));
    }
    tx.write_audit(NewAudit {
        at: now,
        actor,
        action,
        contract_id: Some(key),
        detail: &detail,
        outcome: "ok",
    })
    .await?;
    let released_after = released_before && ended_release.is_none();
    let Queued {
        jobs,
        at_next_connection,
    } = enforce_change(
        tx,
        key,
        policy::effective_profile(previous, released_before),
        policy::effective_profile(state, released_after),
        &format!("state {previous} -> {state}"),
        now,
    )
    .await?;
    Ok(StateChange {
        contract,
        previous,
        ended_release,
        jobs,
        at_next_connection,
    })
}
