//! Temporary releases ("liberação temporária"): granting one, asking
//! whether one would be granted, revoking one, and ending them at their
//! instant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{App, Error, local, with_reason};
use crate::model::{Actor, ContractId, EndReason, Release};
use crate::policy::{self, ContractState, Grant};
use crate::store::{NewAudit, StoreError, Tx};
use crate::telemetry;

/// The result of a change, with the enforcement jobs it queued for the
/// contract's online sessions.
#[derive(Clone, Debug)]
pub struct Enforced<T> {
    pub value: T,
    pub jobs: Vec<i64>,
    /// Online sessions on a NAS that takes no CoA: no job, the change
    /// reaches them at their next connection.
    pub at_next_connection: usize,
}

/// A release the scheduler ended, and the enforcement it queued.
#[derive(Clone, Debug)]
pub struct ExpiredRelease {
    pub release: Release,
    pub jobs: Vec<i64>,
}

/// Who ends releases at their instant, in the audit trail.
fn system() -> Actor {
    Actor {
        uid: None,
        operator: Some("liberad".to_owned()),
        ..Actor::default()
    }
}

impl App {
    /// Releases a contract now, if the rules allow it; the attempt is
    /// audited either way.
    pub async fn release(
        &self,
        actor: &Actor,
        contract: &ContractId,
        reason: &str,
    ) -> Result<Enforced<Release>, Error> {
        let now = self.now();
        let released = match self.try_release(actor, contract, reason, now).await {
            // Another writer slipped a release in despite the lock (a second
            // process without it): the retry sees it and refuses.
            Err(Error::Store(e)) if e.is_unique_violation() => {
                self.try_release(actor, contract, reason, now).await
            }
            other => other,
        }?;
        metrics::counter!(telemetry::RELEASES_STARTED).increment(1);
        self.changed(released.jobs.len());
        Ok(released)
    }

    async fn try_release(
        &self,
        actor: &Actor,
        contract: &ContractId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Enforced<Release>, Error> {
        let id = contract.as_str();
        let tz = self.timezone;
        let mut tx = self.store.write().await?;
        tx.lock_contract(id).await?;
        expire_lapsed(&mut tx, id, now).await?;
        let parameters = tx.parameters().await?;
        let facts = tx.contract_facts(id).await?;
        let grant = match policy::check_release(&parameters, facts.as_ref(), now, tz) {
            Ok(grant) => grant,
            Err(refusal) => {
                let detail = with_reason(&refusal.describe(id, tz), reason);
                tx.write_audit(NewAudit {
                    at: now,
                    actor,
                    action: "release",
                    contract_id: Some(id),
                    detail: &detail,
                    outcome: refusal.code(),
                })
                .await?;
                tx.commit().await?;
                return Err(Error::Refused(refusal));
            }
        };
        let release = tx.insert_release(id, &grant, reason, actor).await?;
        let detail = with_reason(
            &format!(
                "release {} until {}",
                release.id,
                local(release.ends_at, tz)
            ),
            reason,
        );
        tx.write_audit(NewAudit {
            at: now,
            actor,
            action: "release",
            contract_id: Some(id),
            detail: &detail,
            outcome: "ok",
        })
        .await?;
        // The facts exist: the rules granted the release.
        let state = facts.map_or(ContractState::Blocked, |f| f.state);
        let queued = enforce_change(
            &mut tx,
            id,
            policy::effective_profile(state, false),
            policy::effective_profile(state, true),
            &format!("release {} started", release.id),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Enforced {
            value: release,
            jobs: queued.jobs,
            at_next_connection: queued.at_next_connection,
        })
    }

    /// Whether [`App::release`] would grant a release now, and until when;
    /// changes nothing.
    pub async fn preview_release(&self, contract: &ContractId) -> Result<Grant, Error> {
        let mut tx = self.store.read().await?;
        let parameters = tx.parameters().await?;
        let facts = tx.contract_facts(contract.as_str()).await?;
        tx.commit().await?;
        policy::check_release(&parameters, facts.as_ref(), self.now(), self.timezone)
            .map_err(Error::Refused)
    }

    /// Ends a contract's running release early.
    pub async fn revoke(
        &self,
        actor: &Actor,
        contract: &ContractId,
        reason: &str,
    ) -> Result<Enforced<Release>, Error> {
        let now = self.now();
        let id = contract.as_str();
        let mut tx = self.store.write().await?;
        tx.lock_contract(id).await?;
        expire_lapsed(&mut tx, id, now).await?;
        let Some(existing) = tx.contract(id).await? else {
            return Err(Error::ContractNotFound(contract.clone()));
        };
        let ended = tx
            .end_open_release(id, EndReason::Revoked, &actor.display_name(), reason, now)
            .await?;
        let Some(release) = ended else {
            let detail = with_reason("revoke refused", reason);
            tx.write_audit(NewAudit {
                at: now,
                actor,
                action: "revoke",
                contract_id: Some(id),
                detail: &detail,
                outcome: super::code::NOT_RELEASED,
            })
            .await?;
            tx.commit().await?;
            return Err(Error::NotReleased(contract.clone()));
        };
        let detail = with_reason(&format!("release {} revoked", release.id), reason);
        tx.write_audit(NewAudit {
            at: now,
            actor,
            action: "revoke",
            contract_id: Some(id),
            detail: &detail,
            outcome: "ok",
        })
        .await?;
        let queued = enforce_change(
            &mut tx,
            id,
            policy::effective_profile(existing.state, true),
            policy::effective_profile(existing.state, false),
            &format!("release {} revoked", release.id),
            now,
        )
        .await?;
        tx.commit().await?;
        metrics::counter!(telemetry::RELEASES_ENDED, "reason" => "revoked").increment(1);
        self.changed(queued.jobs.len());
        Ok(Enforced {
            value: release,
            jobs: queued.jobs,
            at_next_connection: queued.at_next_connection,
        })
    }

    /// Ends, as expired at their end instant, up to `limit` open releases
    /// whose end has passed, queueing their enforcement, in one
    /// transaction; with several instances, each release is ended by one.
    pub async fn expire_due(&self, limit: u32) -> Result<Vec<ExpiredRelease>, StoreError> {
        let now = self.now();
        let mut tx = self.store.write().await?;
        let expired = expire(&mut tx, None, now, limit).await?;
        tx.commit().await?;
        if !expired.is_empty() {
            metrics::counter!(telemetry::RELEASES_ENDED, "reason" => "expired")
                .increment(expired.len() as u64);
            let jobs: usize = expired.iter().map(|e| e.jobs.len()).sum();
            tracing::info!(
                releases = expired.len(),
                enforcement_jobs = jobs,
                "releases expired"
            );
            if jobs > 0
                && let Some(enforcer) = &self.wake.enforcer
            {
                enforcer.wake();
            }
        }
        Ok(expired)
    }

    /// When the next open release ends, if one is open.
    pub async fn next_release_end(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store.next_release_end().await
    }

    /// Releases, newest first: of one contract, or all.
    pub async fn releases(
        &self,
        contract: Option<&ContractId>,
        limit: u32,
    ) -> Result<Vec<Release>, Error> {
        let mut tx = self.store.read().await?;
        let releases = tx.releases(contract.map(ContractId::as_str), limit).await?;
        tx.commit().await?;
        Ok(releases)
    }
}

/// Ends, as expired at their end, the contract's open releases whose end
/// has passed, so that the facts read next are current.
pub(super) async fn expire_lapsed(
    tx: &mut Tx,
    contract_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    expire(tx, Some(contract_id), now, u32::MAX).await?;
    Ok(())
}

/// Rows per statement when ending many releases at once.
const BATCH: usize = 500;

/// Ends, as expired at their end instant, open releases whose end is at or
/// before `now` (of one contract, or of any, at most `limit`), audits each,
/// and queues the enforcement of their change of profile.
async fn expire(
    tx: &mut Tx,
    contract_id: Option<&str>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ExpiredRelease>, StoreError> {
    let releases = tx.end_releases_due(contract_id, now, limit).await?;
    if releases.is_empty() {
        return Ok(Vec::new());
    }
    let system = system();
    let mut jobs: HashMap<String, Vec<i64>> = HashMap::new();
    // A few statements per batch, whatever its size.
    for batch in releases.chunks(BATCH) {
        let audit: Vec<(&str, String)> = batch
            .iter()
            .map(|r| {
                let detail = format!("release {} expired at {}", r.id, r.ends_at.to_rfc3339());
                (r.contract_id.as_str(), detail)
            })
            .collect();
        tx.write_audits(now, &system, "release_end", &audit).await?;
        let contracts = tx
            .contracts_by_id(batch.iter().map(|r| r.contract_id.as_str()))
            .await?;
        // Contracts that change alike are enforced together.
        let mut by_state: HashMap<ContractState, Vec<(&str, String)>> = HashMap::new();
        for release in batch {
            let state = contracts
                .get(&release.contract_id)
                .map_or(ContractState::Blocked, |c| c.state);
            by_state.entry(state).or_default().push((
                release.contract_id.as_str(),
                format!("release {} expired", release.id),
            ));
        }
        for (state, ended) in by_state {
            let before = policy::effective_profile(state, true);
            let after = policy::effective_profile(state, false);
            if before == after {
                continue;
            }
            for (job, contract) in tx.queue_enforcement(&ended, after, now).await? {
                jobs.entry(contract).or_default().push(job);
            }
        }
    }
    Ok(releases
        .into_iter()
        .map(|release| ExpiredRelease {
            jobs: jobs.remove(&release.contract_id).unwrap_or_default(),
            release,
        })
        .collect())
}

/// Queues the enforcement of one contract's change of profile, from
/// `before` to `after`, for its online sessions; nothing when the profile
/// stays. Counts the sessions on a NAS that takes no CoA.
pub(super) async fn enforce_change(
    tx: &mut Tx,
    contract_id: &str,
    before: Option<policy::Profile>,
    after: Option<policy::Profile>,
    cause: &str,
    now: DateTime<Utc>,
) -> Result<Queued, StoreError> {
    if before == after {
        return Ok(Queued::default());
    }
    let jobs = tx
        .queue_enforcement(&[(contract_id, cause.to_owned())], after, now)
        .await?;
    let at_next_connection = tx.sessions_without_coa(contract_id).await?;
    Ok(Queued {
        jobs: jobs.into_iter().map(|(id, _)| id).collect(),
        at_next_connection,
    })
}

/// The enforcement one contract's change queued.
#[derive(Clone, Debug, Default)]
pub(super) struct Queued {
    pub jobs: Vec<i64>,
    /// Its online sessions on a NAS that takes no CoA.
    pub at_next_connection: usize,
}
