//! The scheduler: ends each release at its end instant. It sleeps until the
//! next end the store knows (no periodic scan of the table), is woken when
//! releases are added or removed, and at start-up ends at once every
//! release whose end passed while liberad was down. Each batch of endings
//! is one application operation ([`App::expire_due`]): one transaction
//! that also queues the enforcement, after which the enforcer is woken.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::{App, ReleasesChanged};
use crate::clock::Clock;
use crate::store::StoreError;

/// Longest single sleep: the wall clock can be stepped (NTP), so the next
/// end is looked up again at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// After a store error, wait this long before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Ends releases through the application, which enforces each end.
pub struct Scheduler {
    app: Arc<App>,
    clock: Arc<dyn Clock>,
    wake: ReleasesChanged,
    batch: u32,
}

impl Scheduler {
    /// A scheduler woken through `wake` (the one the application notifies
    /// after a change), ending at most `batch` releases per transaction.
    pub fn new(
        app: Arc<App>,
        clock: Arc<dyn Clock>,
        wake: ReleasesChanged,
        batch: u32,
    ) -> Scheduler {
        Scheduler {
            app,
            clock,
            wake,
            batch: batch.max(1),
        }
    }

    /// Ends, now, the releases whose end passed while liberad was down.
    /// Run before the enforcer starts, so that the expiry supersedes any
    /// older unsent enforcement of the same sessions.
    pub async fn catch_up(&self) {
        if let Err(e) = self.end_due().await {
            crate::store::log_failure(
                self.app.store().as_ref(),
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
                        self.app.store().as_ref(),
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
            let expired = self.app.expire_due(self.batch).await?;
            if expired.len() < self.batch as usize {
                break;
            }
            // Let the RADIUS listeners at the database between batches.
            tokio::task::yield_now().await;
        }
        self.app.next_release_end().await
    }
}
