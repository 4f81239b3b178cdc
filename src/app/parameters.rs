//! The temporary-release parameters ("parâmetros da liberação
//! temporária"): shown, and set one at a time, every change audited.

use super::{App, Error};
use crate::model::Actor;
use crate::policy::{Parameter, ParameterError, ParameterName, Parameters};
use crate::store::NewAudit;

impl App {
    pub async fn parameters(&self) -> Result<Parameters, Error> {
        let mut tx = self.store.read().await?;
        let parameters = tx.parameters().await?;
        tx.commit().await?;
        Ok(parameters)
    }

    /// Sets one parameter; the parameters as they are now.
    pub async fn set_parameter(
        &self,
        actor: &Actor,
        parameter: Parameter,
    ) -> Result<Parameters, Error> {
        let now = self.now();
        let mut tx = self.store.write().await?;
        tx.lock_parameters().await?;
        let next = tx.parameters().await?.with(parameter);
        tx.save_parameters(&next).await?;
        let detail = parameter.to_string();
        tx.write_audit(NewAudit {
            at: now,
            actor,
            action: "params_set",
            contract_id: None,
            detail: &detail,
            outcome: "ok",
        })
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Refuses a value that is not one for its parameter, with the attempt
    /// on record in the audit trail.
    pub async fn refuse_parameter(
        &self,
        actor: &Actor,
        name: ParameterName,
        value: &str,
        error: ParameterError,
    ) -> Error {
        let now = self.now();
        let detail = format!("{name} = {value}");
        let audited = async {
            let mut tx = self.store.write().await?;
            tx.write_audit(NewAudit {
                at: now,
                actor,
                action: "params_set",
                contract_id: None,
                detail: &detail,
                outcome: "invalid",
            })
            .await?;
            tx.commit().await
        };
        match audited.await {
            Ok(()) => Error::InvalidParameter(error),
            Err(e) => Error::Store(e),
        }
    }
}
