//! Prometheus metrics: their names, the recorder, and the `GET /metrics`
//! endpoint (`[metrics] listen`, off by default).
//!
//! Counters and histograms are recorded where things happen, through the
//! `metrics` macros (no-ops when the endpoint is off); what describes the
//! store (online sessions, outbox depth, refused writes) is read from it
//! when scraped, so that the store knows nothing of metrics.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// Longest request head read from a scraper.
const MAX_REQUEST: usize = 8 * 1024;
/// A scraper gets this long to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    store: Arc<Store>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let handle = handle.clone();
                let store = Arc::clone(&store);
                tasks.spawn(async move {
                    if let Err(e) = answer(stream, &handle, store.as_ref()).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, handle: &PrometheusHandle, store: &Store) -> io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => {
            refresh_gauges(store).await;
            ("200 OK", handle.render())
        }
        ("GET", _) => ("404 Not Found", "try /metrics\n".to_owned()),
        ("", _) => ("400 Bad Request", String::new()),
        _ => ("405 Method Not Allowed", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line that ends an HTTP request head.
async fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_REQUEST {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

async fn refresh_gauges(store: &Store) {
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
