//! The daemon's life: open the store, bind the admin socket, serve until
//! told to stop, then drain what is in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{Admin, AdminSocket, server::BindError};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::store::{self, StoreError};

/// How long requests in flight may take to finish after a stop signal.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create state directory {path}: {source}")]
    StateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Admin(#[from] BindError),
}

/// Runs liberad until `shutdown` is cancelled, then waits (up to
/// [`DRAIN_DEADLINE`]) for requests in flight.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|source| StartError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let url = config.database_url();
    let store = store::open(&url).await?;
    tracing::info!(database = %url, timezone = config.timezone.name(), "store open");

    let admin = Arc::new(Admin::new(
        Arc::clone(&store),
        Arc::new(SystemClock),
        config.timezone,
    ));
    let socket = AdminSocket::bind(&config.admin)?;
    tracing::info!(
        socket = %socket.path().display(),
        mode = format!("{:04o}", config.admin.socket_mode),
        "admin socket listening"
    );

    let tasks = TaskTracker::new();
    socket
        .serve(admin, &config.admin, shutdown.clone(), tasks.clone())
        .await;

    tracing::info!("stopping: finishing requests in flight");
    tasks.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tasks.len(),
            "requests still running at the drain deadline; stopping anyway"
        );
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
