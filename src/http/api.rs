//! The HTTP API under `/v1`, for billing systems, bots and support desks on
//! other hosts. Each resource is an operation of the application
//! ([`crate::app`]); this step serves `GET /v1/health`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::app::App;
use crate::model::WriteStatus;

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
