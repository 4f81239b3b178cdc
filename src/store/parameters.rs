//! The temporary-release parameters: one row, shared by every instance.

use super::StoreError;
use super::db::{Statement, Tx};
use crate::policy::Parameters;

impl Tx {
    /// Locks the parameters row until the transaction ends (PostgreSQL;
    /// SQLite's write transaction holds the whole database).
    pub async fn lock_parameters(&mut self) -> Result<(), StoreError> {
        if let Some(sql) = self.dialect().lock_parameters {
            self.execute(Statement::new(sql)).await?;
        }
        Ok(())
    }

    pub async fn parameters(&mut self) -> Result<Parameters, StoreError> {
        let row = self
            .fetch_one(Statement::new(
                "SELECT enabled, release_days, renew_after_days FROM parameters",
            ))
            .await?;
        Ok(Parameters {
            enabled: row.get("enabled")?,
            release_days: row.u32("release_days")?,
            renew_after_days: row.u32("renew_after_days")?,
        })
    }

    pub async fn save_parameters(&mut self, parameters: &Parameters) -> Result<(), StoreError> {
        let statement = Statement::new(
            "UPDATE parameters SET enabled = $1, release_days = $2, renew_after_days = $3 \
             WHERE id = 1",
        )
        .bind(parameters.enabled)
        .bind(i64::from(parameters.release_days))
        .bind(i64::from(parameters.renew_after_days));
        self.execute(statement).await?;
        Ok(())
    }
}
