//! `GET /metrics`: the Prometheus text, with the gauges read from the store
//! at each scrape.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::store::Store;
use crate::telemetry;

#[derive(Clone)]
struct Metrics {
    handle: PrometheusHandle,
    store: Arc<Store>,
}

/// The metrics endpoint's routes.
pub fn router(handle: PrometheusHandle, store: Arc<Store>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /metrics\n") })
        .layer(axum::middleware::from_fn(super::close_after))
        .with_state(Metrics { handle, store })
}

async fn scrape(State(metrics): State<Metrics>) -> impl IntoResponse {
    telemetry::refresh_gauges(&metrics.store).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.handle.render(),
    )
}
