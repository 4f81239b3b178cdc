//! The scheduler: ends each release at its end instant. It sleeps until the
//! next end the store knows (no periodic scan of the table), is woken when
//! releases are added or removed, and at start-up ends at once every
//! release whose end passed while liberad was down. Each batch of endings
//! is one store transaction that also queues the enforcement, after which
//! the enforcer is woken.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::enforcer::EnforcerHandle;
use crate::store::{Store, StoreError};

/// Longest single sleep: the wall clock can be stepped (NTP), so the next
/// end is looked up again at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// After a store error, wait this long before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// What others hold to tell the scheduler the releases changed.
#[derive(Clone)]
pub struct SchedulerHandle {
    wake: Arc<Notify>,
}

impl SchedulerHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    enforcer: EnforcerHandle,
    wake: Arc<Notify>,
    batch: u32,
}

impl Scheduler {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        enforcer: EnforcerHandle,
        batch: u32,
    ) -> (Scheduler, SchedulerHandle) {
        let wake = Arc::new(Notify::new());
        let handle = SchedulerHandle {
            wake: Arc::clone(&wake),
        };
        let scheduler = Scheduler {
            store,
            clock,
            enforcer,
            wake,
            batch: batch.max(1),
        };
        (scheduler, handle)
    }

    /// Ends, now, the releases whose end passed while liberad was down.
    /// Run before the enforcer starts, so that the expiry supersedes any
    /// older unsent enforcement of the same sessions.
    pub async fn catch_up(&self) {
        if let Err(e) = self.end_due().await {
            crate::store::log_failure(
                self.store.as_ref(),
                "scheduler: releases not ended at start-up; retrying",
                &e,
            );
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let pause = match self.end_due().await {
                Ok(Some(next)) => (next - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_SLEEP),
                Ok(None) => MAX_SLEEP,
                Err(e) => {
                    crate::store::log_failure(
                        self.store.as_ref(),
                        "scheduler: releases not ended; retrying",
                        &e,
                    );
                    STORE_RETRY
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Ends every release due now, in batches; returns the next end.
    async fn end_due(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        loop {
            let now = self.clock.now();
            let expired = self.store.expire_due(now, self.batch).await?;
            if !expired.is_empty() {
                metrics::counter!(crate::telemetry::RELEASES_ENDED, "reason" => "expired")
                    .increment(expired.len() as u64);
                let jobs: usize = expired.iter().map(|e| e.jobs.len()).sum();
                tracing::info!(
                    releases = expired.len(),
                    enforcement_jobs = jobs,
                    "releases expired"
                );
                if jobs > 0 {
                    self.enforcer.wake();
                }
            }
            if expired.len() < self.batch as usize {
                break;
            }
            // Let the RADIUS listeners at the database between batches.
            tokio::task::yield_now().await;
        }
        self.store.next_release_end().await
    }
}
