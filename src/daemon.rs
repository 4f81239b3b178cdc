//! The daemon's life: open the store, bind the admin socket, serve until
//! told to stop, then drain what is in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{Admin, AdminSocket, EnforcementView, RadiusView, server::BindError};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::enforcer::{Enforcer, UdpTransport};
use crate::radius::packet::Port;
use crate::radius::{RadiusServer, Settings, Sockets};
use crate::scheduler::Scheduler;
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
    #[error("RADIUS: {0}")]
    Radius(String),
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

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let settings = Arc::new(Settings::build(&config).map_err(StartError::Radius)?);
    let sockets = Sockets::bind(&config.radius).map_err(|e| StartError::Radius(e.to_string()))?;
    let auth_address = sockets
        .auth
        .local_addr()
        .map_err(|e| StartError::Radius(e.to_string()))?;
    let acct_address = sockets
        .acct
        .local_addr()
        .map_err(|e| StartError::Radius(e.to_string()))?;
    let tasks = TaskTracker::new();
    let radius = Arc::new(RadiusServer::new(
        Arc::clone(&settings),
        Arc::clone(&store),
        Arc::clone(&clock),
        &tasks,
    ));
    let transport = UdpTransport::bind(config.enforcement.source)
        .await
        .map_err(|e| StartError::Radius(format!("cannot open the CoA socket: {e}")))?;
    let coa_source = transport.local_addr().ok();
    let (enforcer, enforcer_handle) = Enforcer::new(
        Arc::clone(&store),
        settings,
        Arc::clone(&clock),
        config.enforcement.clone(),
        transport,
    );
    let (scheduler, scheduler_handle) = Scheduler::new(
        Arc::clone(&store),
        Arc::clone(&clock),
        enforcer_handle.clone(),
        config.enforcement.expiry_batch,
    );
    let background = TaskTracker::new();
    background.spawn(enforcer.run(shutdown.clone()));
    background.spawn(scheduler.run(shutdown.clone()));
    let listeners = TaskTracker::new();
    for (socket, port) in [(sockets.auth, Port::Auth), (sockets.acct, Port::Acct)] {
        listeners.spawn(Arc::clone(&radius).serve(socket, port, shutdown.clone(), tasks.clone()));
    }
    tracing::info!(
        auth = %auth_address,
        acct = %acct_address,
        coa_from = ?coa_source,
        nas = config.nas.len(),
        "RADIUS listening"
    );

    let admin = Arc::new(
        Admin::new(Arc::clone(&store), clock, config.timezone)
            .with_radius(RadiusView {
                server: Arc::clone(&radius),
                auth: auth_address,
                acct: acct_address,
            })
            .with_enforcement(EnforcementView {
                enforcer: enforcer_handle,
                scheduler: scheduler_handle,
                wait: Duration::from_secs(config.enforcement.wait_timeout_secs),
            }),
    );
    drop(radius);
    let socket = AdminSocket::bind(&config.admin)?;
    tracing::info!(
        socket = %socket.path().display(),
        mode = format!("{:04o}", config.admin.socket_mode),
        "admin socket listening"
    );
    socket
        .serve(admin, &config.admin, shutdown.clone(), tasks.clone())
        .await;

    tracing::info!("stopping: finishing requests in flight");
    listeners.close();
    listeners.wait().await;
    background.close();
    background.wait().await;
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
