//! The HTTP stack liberad serves on: the API ([`api`]) and the metrics
//! ([`metrics`]), each on its own listener, both through the same loop.
//!
//! Each connection is HTTP/1.1 or HTTP/2 (hyper, with axum's router),
//! counted against a bound on connections (a client over it waits to be
//! accepted), and must send a request's head within a time limit, so a
//! slow or silent client loses its connection. At shutdown the listener
//! stops accepting and the connections finish what they were answering,
//! for at most a drain deadline.

pub mod api;
pub mod metrics;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long a client has to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once on one listener.
pub const MAX_CONNECTIONS: usize = 256;
/// How long the connections open at shutdown have to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown`; `what` names the
/// listener in the log.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    what: &'static str,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: the next accept may work.
                tracing::warn!(error = %e, "{what}: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Each request carries the client's address, for the audit.
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "{what}: connection ended with an error");
            }
            drop(permit);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::info!("{what}: stopping with connections still open");
        }
    }
}

/// Answers with `Connection: close`, for endpoints a client asks once
/// (a scrape) rather than over a kept connection.
pub async fn close_after(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}
