//! The HTTP API under `/v1`, for billing systems, bots and support desks on
//! other hosts. Each resource is an operation of the application
//! ([`crate::app`]), called with the token a request presents (`Authorization:
//! Bearer lbr_…`, made by `liberactl token add`); so far it serves
//! `GET /v1/health` (no token) and `GET /v1/contracts/{id}` (any role).
//!
//! Refusals are JSON `{"code", "message"}` with the application's stable
//! code, and an HTTP status chosen once, in [`status`].

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::app::{self, App};
use crate::model::{ContractId, TokenInfo, WriteStatus};

/// `GET /v1/health`: whether liberad is up (always, if it answers) and
/// ready (its database answers reads and takes writes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub live: bool,
    pub ready: bool,
    pub version: &'static str,
    pub database: DatabaseHealth,
}

/// The database, as the health answer tells it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatabaseHealth {
    /// Whether a read worked just now.
    pub readable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_error: Option<String>,
    /// Whether it takes writes, and if not, why and since when.
    pub writes: WriteStatus,
}

/// The API's routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/contracts/{id}", get(contract))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({
                    "code": "not_found",
                    "message": "no such resource; the API is under /v1",
                })),
            )
        })
        .with_state(app)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let read_error = app.check_reads().await.err().map(|e| e.to_string());
    let writes = app.write_status();
    let ready = read_error.is_none() && writes.writable;
    let health = Health {
        live: true,
        ready,
        version: env!("CARGO_PKG_VERSION"),
        database: DatabaseHealth {
            readable: read_error.is_none(),
            read_error,
            writes,
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

/// A refusal: the status, and the body every refusal has.
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "code": self.code, "message": self.message }));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"liberad\""),
            );
        }
        response
    }
}

/// The HTTP status of each of the application's refusals.
pub fn status(error: &app::Error) -> StatusCode {
    use app::Error as E;
    match error {
        E::ContractNotFound(_) | E::LoginNotFound(_) | E::TokenNotFound(_) => StatusCode::NOT_FOUND,
        // A rule refused it, or it is already so.
        E::Refused(_)
        | E::ContractExists(_)
        | E::LoginExists(_)
        | E::TokenExists(_)
        | E::NotReleased(_) => StatusCode::CONFLICT,
        E::Invalid(_) | E::InvalidParameter(_) | E::InvalidFile(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        E::Store(e) if e.outage_cause().is_some() => StatusCode::SERVICE_UNAVAILABLE,
        E::Store(_) | E::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The answer to an operation the application refused or could not do.
fn refused(app: &App, error: &app::Error, contract: Option<&ContractId>) -> Refusal {
    error.log();
    Refusal {
        status: status(error),
        code: error.code(),
        message: error.message(contract, app.timezone()),
    }
}

fn unauthorized(message: impl Into<String>) -> Refusal {
    Refusal {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: message.into(),
    }
}

/// The token a request presented, checked.
pub struct Caller(pub TokenInfo);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, Refusal> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                unauthorized(
                    "this needs a token: Authorization: Bearer lbr_… (liberactl token add)",
                )
            })?;
        match app.authenticate(presented.trim()).await {
            Ok(Ok(token)) => Ok(Caller(token)),
            Ok(Err(why)) => Err(unauthorized(why.to_string())),
            Err(e) => Err(refused(app, &e, None)),
        }
    }
}

/// `GET /v1/contracts/{id}`: the contract summary (any role).
async fn contract(
    State(app): State<Arc<App>>,
    Caller(_token): Caller,
    Path(id): Path<String>,
) -> Result<Json<app::ContractSummary>, Refusal> {
    let id = ContractId::parse(id).map_err(|e| refused(&app, &e.into(), None))?;
    match app.contract_summary(&id).await {
        Ok(summary) => Ok(Json(summary)),
        Err(e) => Err(refused(&app, &e, Some(&id))),
    }
}
