//! The daemon's life: start every part, tell systemd it is ready, reload on
//! SIGHUP, and on SIGTERM / SIGINT stop accepting work, drain what is in
//! flight within a deadline, and close the store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sd_notify::NotifyState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{Admin, AdminSocket, RadiusView, server::BindError};
use crate::app::{App, ReleasesChanged, Wake};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::enforcer::{Enforcer, UdpTransport};
use crate::logging::LogControl;
use crate::radius::outage::AuthCache;
use crate::radius::packet::Port;
use crate::radius::signers::Signers;
use crate::radius::{RadiusServer, Settings, Sockets};
use crate::scheduler::Scheduler;
use crate::store::{self, StoreError};
use crate::telemetry;

/// How long requests in flight may take to finish after a stop signal.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long CoA / Disconnect requests in flight may wait for their answer
/// after a stop signal.
pub const ENFORCEMENT_DRAIN: Duration = Duration::from_secs(5);

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
    #[error("api: {0}")]
    Api(String),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("signals: {0}")]
    Signals(std::io::Error),
}

/// What the process is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: read the configuration again.
    Reload,
    /// SIGTERM or SIGINT (named).
    Stop(&'static str),
}

/// Turns SIGHUP, SIGTERM and SIGINT into [`Control`] messages, from a
/// thread of their own (signal-hook).
pub fn signals() -> Result<mpsc::UnboundedReceiver<Control>, StartError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
        .map_err(StartError::Signals)?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                let control = match signal {
                    SIGHUP => Control::Reload,
                    SIGTERM => Control::Stop("SIGTERM"),
                    _ => Control::Stop("SIGINT"),
                };
                if tx.send(control).is_err() {
                    break;
                }
            }
        })
        .map_err(StartError::Signals)?;
    Ok(rx)
}

/// Runs liberad, with the RADIUS settings compiled from `config`, until a
/// stop comes on `controls`.
pub async fn run(
    config: Config,
    settings: Settings,
    config_path: PathBuf,
    log: Option<LogControl>,
    mut controls: mpsc::UnboundedReceiver<Control>,
) -> Result<(), StartError> {
    for warning in config.warnings() {
        tracing::warn!("configuration: {warning}");
    }
    std::fs::create_dir_all(&config.state_dir).map_err(|source| StartError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let url = config.database_url();
    let store = store::open_in(&config.database, &url, Some(&config.state_dir)).await?;
    tracing::info!(
        database = %crate::config::redact_url(&url),
        timezone = config.timezone.name(),
        "store open"
    );

    let shutdown = CancellationToken::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let settings = Arc::new(ArcSwap::from_pointee(settings));
    let sockets = Sockets::bind(&config.radius).map_err(|e| StartError::Radius(e.to_string()))?;
    let local = |socket: &tokio::net::UdpSocket| {
        socket
            .local_addr()
            .map_err(|e| StartError::Radius(e.to_string()))
    };
    let (auth_address, acct_address) = (local(&sockets.auth)?, local(&sockets.acct)?);

    // Request tasks, drained at the stop; listeners and background tasks.
    let tasks = TaskTracker::new();
    let listeners = TaskTracker::new();
    let background = TaskTracker::new();

    let outage = AuthCache::new(
        config.database.on_outage,
        Duration::from_secs(config.database.cache_ttl_secs),
        config.database.cache_logins,
    );
    let seen = store.message_authenticator_seen().await?;
    let signers = Signers::remembered(seen.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    mark_nas_without_coa(store.as_ref(), &settings.load()).await;
    let radius = Arc::new(RadiusServer::new(
        Arc::clone(&settings),
        Arc::clone(&store),
        Arc::clone(&clock),
        outage,
        signers,
        &tasks,
    ));
    let transport = UdpTransport::bind(config.enforcement.source)
        .await
        .map_err(|e| StartError::Radius(format!("cannot open the CoA socket: {e}")))?;
    let coa_source = transport.local_addr().ok();
    let (enforcer, enforcer_handle) = Enforcer::new(
        Arc::clone(&store) as Arc<dyn store::Outbox>,
        Arc::clone(&settings),
        Arc::clone(&clock),
        config.enforcement.clone(),
        &config.instance(),
        transport,
    );
    let releases_changed = ReleasesChanged::new();
    let app = Arc::new(
        App::new(Arc::clone(&store), Arc::clone(&clock), config.timezone)
            .with_wake(
                Wake {
                    enforcer: Some(enforcer_handle),
                    scheduler: Some(releases_changed.clone()),
                },
                Duration::from_secs(config.enforcement.wait_timeout_secs),
            )
            .with_settings(Arc::clone(&settings)),
    );
    let scheduler = Scheduler::new(
        Arc::clone(&app),
        Arc::clone(&clock),
        releases_changed.clone(),
        config.enforcement.expiry_batch,
    );
    scheduler.catch_up().await;
    background.spawn(enforcer.run(shutdown.clone(), ENFORCEMENT_DRAIN));
    background.spawn(scheduler.run(shutdown.clone()));

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

    let mut metrics_address = None;
    if let Some(address) = config.metrics.listen {
        let handle = telemetry::install().map_err(StartError::Metrics)?;
        let router = crate::http::metrics::router(handle, Arc::clone(&store));
        metrics_address = serve_http(&listeners, address, router, &shutdown, "metrics")
            .await
            .map_err(StartError::Metrics)?;
    }
    let mut api_address = None;
    if let Some(address) = config.api.listen {
        let router = crate::http::api::router(Arc::clone(&app));
        api_address = serve_http(&listeners, address, router, &shutdown, "api")
            .await
            .map_err(StartError::Api)?;
    }

    let admin = Arc::new(
        Admin::new(Arc::clone(&app))
            .with_radius(RadiusView {
                server: Arc::clone(&radius),
                auth: auth_address,
                acct: acct_address,
            })
            .with_metrics(metrics_address)
            .with_api(api_address)
            .with_spool_dir(&config.state_dir),
    );
    crate::admin::import::remove_leftovers(&config.state_dir);
    let socket = AdminSocket::bind(&config.admin)?;
    tracing::info!(
        socket = %socket.path().display(),
        mode = format!("{:04o}", config.admin.socket_mode),
        "admin socket listening"
    );
    let admin_config = config.admin.clone();
    let (admin_shutdown, admin_tasks) = (shutdown.clone(), tasks.clone());
    listeners.spawn(async move {
        socket
            .serve(admin, &admin_config, admin_shutdown, admin_tasks)
            .await;
    });

    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
    start_watchdog(&background, shutdown.clone());
    start_maintenance(
        &background,
        Arc::clone(&store),
        Arc::clone(&radius),
        shutdown.clone(),
    );

    let reloader = Reloader {
        path: config_path,
        started: config,
        radius: Arc::clone(&radius),
        store: Arc::clone(&store),
        log,
    };
    drop(radius);
    let stop = loop {
        match controls.recv().await {
            Some(Control::Reload) => reloader.reload(),
            Some(Control::Stop(signal)) => break signal,
            None => break "the signal thread ended",
        }
    };

    // The RADIUS server's last handle goes with the reloader, so that the
    // accounting writer can finish once the listeners stop.
    drop(reloader);
    tracing::info!(signal = stop, "stopping: finishing requests in flight");
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    shutdown.cancel();
    listeners.close();
    listeners.wait().await;
    background.close();
    tasks.close();
    let drained = async {
        background.wait().await;
        tasks.wait().await;
    };
    if tokio::time::timeout(DRAIN_DEADLINE, drained).await.is_err() {
        tracing::warn!(
            remaining = tasks.len() + background.len(),
            "work still running at the drain deadline; stopping anyway"
        );
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// What a reload needs: where the configuration is, what was started
/// with, and the parts that take a new one.
struct Reloader {
    path: PathBuf,
    started: Config,
    radius: Arc<RadiusServer>,
    store: Arc<store::Store>,
    log: Option<LogControl>,
}

impl Reloader {
    /// Reads and validates the configuration again; applies it whole, or
    /// keeps the running one and says why.
    fn reload(&self) {
        notify(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
        let outcome = Config::load(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|config| Settings::build(&config).map(|s| (config, s)));
        match outcome {
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the running configuration stays in force");
                metrics::counter!(telemetry::RELOADS, "result" => "refused").increment(1);
                metrics::gauge!(telemetry::LAST_RELOAD_SUCCESS).set(0.0);
            }
            Ok((config, settings)) => {
                for warning in config.warnings() {
                    tracing::warn!("configuration: {warning}");
                }
                let settings = Arc::new(settings);
                self.radius.apply(Arc::clone(&settings));
                let store = Arc::clone(&self.store);
                let radius = Arc::clone(&self.radius);
                tokio::spawn(async move {
                    mark_nas_without_coa(store.as_ref(), &settings).await;
                    radius.refresh_signers().await;
                });
                if let Some(log) = &self.log
                    && let Err(e) = log.set_level(&config.log.level)
                {
                    tracing::warn!(error = %e, "log level not changed");
                }
                for key in config.restart_needed(&self.started) {
                    tracing::warn!(
                        key,
                        "changed in the configuration: restart liberad to apply it"
                    );
                }
                tracing::info!(
                    nas = config.nas.len(),
                    "configuration reloaded: NAS clients, secrets, profiles, dictionaries, log level"
                );
                metrics::counter!(telemetry::RELOADS, "result" => "applied").increment(1);
                metrics::gauge!(telemetry::LAST_RELOAD_SUCCESS).set(1.0);
            }
        }
        notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
    }
}

/// Binds `address` and serves `router` there (the API, the metrics) until
/// `shutdown`; the address bound, for `ping`.
async fn serve_http(
    listeners: &TaskTracker,
    address: SocketAddr,
    router: axum::Router,
    shutdown: &CancellationToken,
    what: &'static str,
) -> Result<Option<SocketAddr>, String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let bound = listener.local_addr().ok();
    listeners.spawn(crate::http::serve(listener, router, shutdown.clone(), what));
    tracing::info!(address = ?bound, "{what} listening over HTTP");
    Ok(bound)
}

/// Tells the store which NAS entries take no CoA, so that no job is queued
/// for their sessions; a failure is logged, and the sessions' next
/// accounting packet says it again.
async fn mark_nas_without_coa(store: &store::Store, settings: &Settings) {
    let names: Vec<String> = settings
        .nas
        .iter()
        .filter(|nas| nas.coa_mode == crate::config::CoaMode::None)
        .map(|nas| nas.name.clone())
        .collect();
    match store.mark_nas_without_coa(&names).await {
        Ok(()) => tracing::debug!("sessions marked: NAS entries without CoA: {names:?}"),
        Err(e) => tracing::warn!(
            error = %e,
            "the sessions of NAS entries with coa_mode = \"none\" are not marked yet; \
             their next accounting packet marks them"
        ),
    }
}

/// Tells systemd (when it started us with Type=notify).
fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "systemd notification not sent");
    }
}

/// How often the store looks after itself (its file still there, its WAL
/// truncated) and the RADIUS server takes in the NAS sources another
/// instance saw signing.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// Runs the store's periodic care until `shutdown`.
fn start_maintenance(
    tasks: &TaskTracker,
    store: Arc<store::Store>,
    radius: Arc<RadiusServer>,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(MAINTENANCE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    store.maintain().await;
                    radius.refresh_signers().await;
                }
            }
        }
    });
}

/// Pings systemd's watchdog at half its interval, when one is set.
fn start_watchdog(tasks: &TaskTracker, shutdown: CancellationToken) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec / 2);
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => notify(&[NotifyState::Watchdog]),
            }
        }
    });
}
