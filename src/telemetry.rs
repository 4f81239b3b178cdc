//! Prometheus metrics: their names, the recorder, and the gauges read from
//! the store at each scrape. `GET /metrics` (`[metrics] listen`, off by
//! default) is served on the HTTP stack ([`crate::http::metrics`]).
//!
//! Counters and histograms are recorded where things happen, through the
//! `metrics` macros (no-ops when the endpoint is off); what describes the
//! store (online sessions, outbox depth, refused writes) is read from it
//! when scraped, so that the store knows nothing of metrics.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::Store;

/// RADIUS requests answered, by NAS, type and result.
pub const RADIUS_REQUESTS: &str = "liberad_radius_requests_total";
/// Datagrams dropped without an answer, by NAS and reason.
pub const RADIUS_DROPS: &str = "liberad_radius_drops_total";
/// Time from receiving a request to sending its answer, by type.
pub const RADIUS_LATENCY: &str = "liberad_radius_request_duration_seconds";
/// Releases started.
pub const RELEASES_STARTED: &str = "liberad_releases_started_total";
/// Releases ended, by reason (expired, unblocked, revoked).
pub const RELEASES_ENDED: &str = "liberad_releases_ended_total";
/// CoA / Disconnect jobs finished, by NAS and outcome.
pub const ENFORCEMENT: &str = "liberad_enforcement_total";
/// Configuration reloads, by result.
pub const RELOADS: &str = "liberad_reloads_total";
/// 1 when the last reload applied, 0 when it was refused.
pub const LAST_RELOAD_SUCCESS: &str = "liberad_last_reload_success";
/// Sessions open in the store.
pub const SESSIONS_ONLINE: &str = "liberad_sessions_online";
/// Enforcement jobs not finished (pending or in flight).
pub const OUTBOX_DEPTH: &str = "liberad_enforcement_outbox_depth";
/// Releases running.
pub const RELEASES_RUNNING: &str = "liberad_releases_running";
/// 1 while the database takes writes, 0 while it refuses them.
pub const DATABASE_WRITABLE: &str = "liberad_database_writable";
/// Writes the database refused, by cause (disk full, read-only, ...).
pub const DATABASE_WRITE_FAILURES: &str = "liberad_database_write_failures_total";

/// Installs the process-wide recorder.
pub fn install() -> Result<PrometheusHandle, String> {
    let latency_buckets = [
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(RADIUS_LATENCY.to_owned()), &latency_buckets)
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// Sets the gauges read from the store, before a scrape renders them.
pub async fn refresh_gauges(store: &Store) {
    let writes = store.write_status();
    metrics::gauge!(DATABASE_WRITABLE).set(if writes.writable { 1.0 } else { 0.0 });
    for (cause, refused) in writes.refused_by_cause {
        metrics::counter!(DATABASE_WRITE_FAILURES, "cause" => cause).absolute(refused);
    }
    match store.counts().await {
        Ok(counts) => {
            metrics::gauge!(SESSIONS_ONLINE).set(counts.sessions_online as f64);
            metrics::gauge!(OUTBOX_DEPTH).set(counts.outbox_depth as f64);
            metrics::gauge!(RELEASES_RUNNING).set(counts.releases_running as f64);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the store's counts"),
    }
}
