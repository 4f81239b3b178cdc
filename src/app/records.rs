//! What happened, for operators: the audit trail, the sessions accounting
//! reported, the enforcement jobs and how the NAS answered them.

use super::{App, Error};
use crate::model::{AuditEntry, ContractId, EnforcementJob, Session, WriteStatus};

impl App {
    /// Whether the database takes writes now, and if not, why.
    pub fn write_status(&self) -> WriteStatus {
        self.store.write_status()
    }

    /// Whether the database answers a read now.
    pub async fn check_reads(&self) -> Result<(), Error> {
        Ok(self.store.check_reads().await?)
    }

    /// Audit entries, newest first.
    pub async fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, Error> {
        let mut tx = self.store.read().await?;
        let entries = tx.audit(None, limit).await?;
        tx.commit().await?;
        Ok(entries)
    }

    /// Sessions, newest first: of one contract or all, open only or all.
    pub async fn sessions(
        &self,
        contract: Option<&ContractId>,
        online_only: bool,
        limit: u32,
    ) -> Result<Vec<Session>, Error> {
        let mut tx = self.store.read().await?;
        let sessions = tx
            .sessions(contract.map(ContractId::as_str), online_only, limit)
            .await?;
        tx.commit().await?;
        Ok(sessions)
    }

    /// Enforcement jobs, newest first: of one contract or all, failed only
    /// or all.
    pub async fn enforcement_jobs(
        &self,
        contract: Option<&ContractId>,
        failed_only: bool,
        limit: u32,
    ) -> Result<Vec<EnforcementJob>, Error> {
        let mut tx = self.store.read().await?;
        let jobs = tx
            .enforcement_jobs(contract.map(ContractId::as_str), failed_only, limit)
            .await?;
        tx.commit().await?;
        Ok(jobs)
    }

    /// These jobs as they stand now; with `wait`, once they are all final
    /// or the wait (bounded) is over, whichever comes first.
    pub async fn enforcement_of(&self, ids: &[i64], wait: bool) -> Vec<EnforcementJob> {
        if wait {
            return self.wait_for(ids).await;
        }
        self.jobs(ids).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read enforcement jobs");
            Vec::new()
        })
    }

    async fn jobs(&self, ids: &[i64]) -> Result<Vec<EnforcementJob>, Error> {
        let mut tx = self.store.read().await?;
        let jobs = tx.enforcement_jobs_by_id(ids).await?;
        tx.commit().await?;
        Ok(jobs)
    }

    /// Waits until the jobs are final or the wait timeout passes, and
    /// returns them as they stand then (a job sent meanwhile shows so).
    async fn wait_for(&self, ids: &[i64]) -> Vec<EnforcementJob> {
        let Some(enforcer) = &self.wake.enforcer else {
            return Vec::new();
        };
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut progress = enforcer.progress();
        loop {
            progress.mark_unchanged();
            let jobs = match self.jobs(ids).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read enforcement jobs");
                    return Vec::new();
                }
            };
            if jobs.iter().all(|j| j.state.is_final()) {
                return jobs;
            }
            let timed_out = tokio::select! {
                changed = progress.changed() => changed.is_err(),
                () = tokio::time::sleep_until(deadline) => true,
            };
            if timed_out {
                return self.jobs(ids).await.unwrap_or(jobs);
            }
        }
    }
}
