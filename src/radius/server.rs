//! The RADIUS listeners: one tokio UDP loop per port around the pure parts
//! ([`super::packet`], [`super::auth`], [`super::accounting`]).
//!
//! A datagram goes through, in order: the NAS lookup by source address, the
//! receive checks, the duplicate cache, and a free processing slot; only
//! then is a task spawned for it. Every failure is a silent drop, counted by
//! reason. Nothing queues without bound: with no free slot, the packet is
//! dropped (the NAS retransmits). Authentication, accounting and
//! Status-Server have slots of their own, so that accounting waiting on a
//! stalled database writer never leaves a login unanswered.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::accounting::{self, AccountingWriter, Report};
use super::auth::{self, Decision};
use super::cache::{Key, ReplyCache, Seen};
use super::outage::AuthCache;
use super::packet::{self, Checked, Demands, DropReason, Port, code};
use super::settings::{NasClient, Settings};
use super::signers::{Learned, Signers};
use super::stats::{Counters, Event};
use crate::clock::Clock;
use crate::config::{MessageAuthenticatorRule, RadiusConfig};
use crate::logging::Throttle;
use crate::model::{NasReport, NasView};
use crate::store::{Store, StoreError};
use crate::telemetry;

/// The settings in force, swapped whole by a reload; each request keeps
/// the snapshot it started with.
pub type SharedSettings = Arc<ArcSwap<Settings>>;

/// Receive buffer per datagram: the largest RADIUS packet.
const RECEIVE_BUFFER: usize = packet::MAX_PACKET;
/// At most one "unknown client" log line this often.
const UNKNOWN_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Requests tracked by each duplicate cache.
const CACHE_CAPACITY: usize = 1 << 20;
/// Status-Server requests processed at once: they need nothing but a reply.
const STATUS_SLOTS: usize = 16;

/// The bound RADIUS sockets.
pub struct Sockets {
    pub auth: Arc<UdpSocket>,
    pub acct: Arc<UdpSocket>,
}

impl Sockets {
    /// Binds both listeners with the configured receive buffer.
    pub fn bind(config: &RadiusConfig) -> io::Result<Sockets> {
        let bind = |address: SocketAddr| {
            bind_udp(address, config.recv_buffer_bytes)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {address}: {e}")))
        };
        Ok(Sockets {
            auth: Arc::new(bind(config.auth_listen)?),
            acct: Arc::new(bind(config.acct_listen)?),
        })
    }
}

/// Counters for every NAS of `settings`, reusing those of `existing`.
fn counters_for(
    settings: &Settings,
    existing: &HashMap<String, Arc<Counters>>,
) -> HashMap<String, Arc<Counters>> {
    settings
        .nas
        .iter()
        .map(|nas| {
            let counters = existing.get(&nas.name).cloned().unwrap_or_default();
            (nas.name.clone(), counters)
        })
        .collect()
}

fn count_drop(nas: &str, reason: DropReason) {
    metrics::counter!(
        telemetry::RADIUS_DROPS,
        "nas" => nas.to_owned(),
        "reason" => reason.as_str()
    )
    .increment(1);
}

/// The request type label of a code.
fn request_type(request_code: u8) -> &'static str {
    match request_code {
        code::ACCESS_REQUEST => "access",
        code::ACCOUNTING_REQUEST => "accounting",
        _ => "status",
    }
}

/// The result label of an answer's code.
fn answer_name(reply_code: u8) -> &'static str {
    match reply_code {
        code::ACCESS_ACCEPT => "accept",
        code::ACCESS_REJECT => "reject",
        code::ACCOUNTING_RESPONSE => "response",
        _ => "other",
    }
}

fn bind_udp(address: SocketAddr, recv_buffer: Option<usize>) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if address.is_ipv6() {
        // [::] takes IPv4 too.
        socket.set_only_v6(false)?;
    }
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}

/// Processing slots, by kind of request.
struct Slots {
    auth: Arc<Semaphore>,
    acct: Arc<Semaphore>,
    status: Arc<Semaphore>,
}

impl Slots {
    /// The slots a request of this code takes.
    fn of(&self, request_code: u8) -> Arc<Semaphore> {
        Arc::clone(match request_code {
            code::ACCESS_REQUEST => &self.auth,
            code::ACCOUNTING_REQUEST => &self.acct,
            _ => &self.status,
        })
    }
}

/// The RADIUS server: settings, store, and the state its loops share.
pub struct RadiusServer {
    settings: SharedSettings,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    accounting: AccountingWriter,
    /// Per NAS name; kept across reloads for the NAS that remain.
    counters: ArcSwap<HashMap<String, Arc<Counters>>>,
    unknown: Counters,
    unknown_log: Throttle,
    /// Store failures are logged once per interval, not per packet.
    store_log: Throttle,
    /// So are accounting requests refused for their content.
    refused_log: Throttle,
    /// And Access-Requests dropped for what the NAS entry demands, per NAS
    /// and reason.
    demands_log: Mutex<HashMap<(String, DropReason), Throttle>>,
    /// Who has been seen signing Access-Requests (`"auto"`).
    signers: Arc<Signers>,
    /// What is known of logins, for a database outage.
    outage: AuthCache,
    /// Processing slots of Access-Requests, Accounting-Requests and
    /// Status-Server, each its own.
    slots: Slots,
    auth_cache: Mutex<ReplyCache>,
    acct_cache: Mutex<ReplyCache>,
    /// The next salt of MPPE keys.
    salts: std::sync::atomic::AtomicU16,
}

impl RadiusServer {
    pub fn new(
        settings: SharedSettings,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        outage: AuthCache,
        signers: Signers,
        tasks: &TaskTracker,
    ) -> RadiusServer {
        let current = settings.load_full();
        let counters = counters_for(&current, &HashMap::new());
        let cache = || Mutex::new(ReplyCache::new(current.duplicate_window, CACHE_CAPACITY));
        RadiusServer {
            accounting: AccountingWriter::start(
                Arc::clone(&store),
                current.max_accounting_in_flight,
                tasks,
            ),
            counters: ArcSwap::from_pointee(counters),
            unknown: Counters::default(),
            unknown_log: Throttle::new(UNKNOWN_LOG_INTERVAL),
            store_log: Throttle::new(UNKNOWN_LOG_INTERVAL),
            refused_log: Throttle::new(UNKNOWN_LOG_INTERVAL),
            demands_log: Mutex::new(HashMap::new()),
            signers: Arc::new(signers),
            outage,
            slots: Slots {
                auth: Arc::new(Semaphore::new(current.max_in_flight)),
                acct: Arc::new(Semaphore::new(current.max_accounting_in_flight)),
                status: Arc::new(Semaphore::new(STATUS_SLOTS)),
            },
            auth_cache: cache(),
            acct_cache: cache(),
            salts: std::sync::atomic::AtomicU16::new(0),
            settings,
            store,
            clock,
        }
    }

    /// Serves one socket until `shutdown`; request tasks go on `tasks`.
    pub async fn serve(
        self: Arc<Self>,
        socket: Arc<UdpSocket>,
        port: Port,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) {
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                received = socket.recv_from(&mut buffer) => received,
            };
            match received {
                Ok((length, source)) => {
                    let datagram = buffer.get(..length).unwrap_or_default();
                    self.receive(datagram, source, port, &socket, &tasks);
                }
                // ICMP errors surface here on some systems; the socket
                // itself is fine.
                Err(e) => tracing::debug!(port = port.as_str(), error = %e, "receive failed"),
            }
        }
    }

    /// Everything that happens to a datagram before it gets a task.
    fn receive(
        self: &Arc<Self>,
        datagram: &[u8],
        source: SocketAddr,
        port: Port,
        socket: &Arc<UdpSocket>,
        tasks: &TaskTracker,
    ) {
        let received = Instant::now();
        let settings = self.settings.load_full();
        let Some(nas) = settings.nas.lookup(source.ip()) else {
            self.unknown.count(Event::Drop(DropReason::UnknownClient));
            count_drop("unknown", DropReason::UnknownClient);
            self.log_unknown(source);
            return;
        };
        let nas = Arc::clone(nas);
        let counters = self.counters_of(&nas);
        let demands = Demands {
            message_authenticator: match nas.require_message_authenticator {
                MessageAuthenticatorRule::Required => true,
                MessageAuthenticatorRule::NotRequired => false,
                MessageAuthenticatorRule::Auto => self.signers.required(&nas.name, source.ip()),
            },
            limit_proxy_state: nas.limit_proxy_state,
        };
        let request = match packet::check(datagram, port, &nas.secret, demands) {
            Ok(request) => request,
            Err(reason) => {
                counters.count(Event::Drop(reason));
                count_drop(&nas.name, reason);
                tracing::debug!(nas = %nas.name, %source, reason = reason.as_str(), "packet dropped");
                if datagram.first() == Some(&code::ACCESS_REQUEST) {
                    self.log_demand_drop(&nas, source, reason);
                }
                return;
            }
        };
        if request.code == code::ACCESS_REQUEST
            && nas.require_message_authenticator == MessageAuthenticatorRule::Auto
            && !demands.message_authenticator
            && request.signed()
        {
            self.learn_signer(&nas, source, tasks);
        }
        counters.count(match request.code {
            code::ACCESS_REQUEST => Event::AccessRequest,
            code::ACCOUNTING_REQUEST => Event::AccountingRequest,
            _ => Event::StatusServer,
        });
        let key = Key {
            source,
            identifier: request.identifier,
            authenticator: request.authenticator,
        };
        match self.cache(port).begin(key, received) {
            Seen::New => {}
            Seen::InProgress => {
                counters.count(Event::Duplicate);
                return;
            }
            Seen::Answered(reply) => {
                counters.count(Event::Duplicate);
                // Best effort: if the socket is full, the NAS asks again.
                let _ = socket.try_send_to(&reply, source);
                return;
            }
        }
        let Ok(slot) = self.slots.of(request.code).try_acquire_owned() else {
            self.cache(port).abandon(key);
            counters.count(Event::Drop(DropReason::Overloaded));
            count_drop(&nas.name, DropReason::Overloaded);
            return;
        };
        let owned = request.to_owned_request();
        let kind = request_type(request.code);
        let server = Arc::clone(self);
        let socket = Arc::clone(socket);
        let span = tracing::info_span!(
            "radius",
            nas = %nas.name,
            user = tracing::field::Empty,
            result = tracing::field::Empty
        );
        let work = async move {
            let reply = server
                .answer(&settings, port, &nas, owned.view(), source, &counters)
                .await;
            let result = reply.as_ref().map_or("not_answered", |r| answer_name(r[0]));
            tracing::Span::current().record("result", result);
            match reply {
                Some(bytes) => {
                    server
                        .cache(port)
                        .finish(key, bytes.clone(), Instant::now());
                    if let Err(e) = socket.send_to(&bytes, source).await {
                        tracing::warn!(%source, error = %e, "reply not sent");
                    }
                }
                None => {
                    server.cache(port).abandon(key);
                    counters.count(Event::Drop(DropReason::NotAnswered));
                    count_drop(&nas.name, DropReason::NotAnswered);
                }
            }
            metrics::counter!(
                telemetry::RADIUS_REQUESTS,
                "nas" => nas.name.clone(),
                "type" => kind,
                "result" => result
            )
            .increment(1);
            metrics::histogram!(telemetry::RADIUS_LATENCY, "type" => kind)
                .record(received.elapsed().as_secs_f64());
            tracing::debug!("request done");
            drop(slot);
        };
        tasks.spawn(work.instrument(span));
    }

    /// Processes one checked request; `None` leaves it unanswered.
    async fn answer(
        &self,
        settings: &Settings,
        port: Port,
        nas: &NasClient,
        request: Checked<'_>,
        source: SocketAddr,
        counters: &Counters,
    ) -> Option<Vec<u8>> {
        match request.code {
            code::STATUS_SERVER => {
                let reply_code = match port {
                    Port::Auth => code::ACCESS_ACCEPT,
                    Port::Acct => code::ACCOUNTING_RESPONSE,
                };
                packet::reply_packet(&request, reply_code, &nas.secret, true, &[])
            }
            code::ACCESS_REQUEST => self.authenticate(settings, nas, &request, counters).await,
            code::ACCOUNTING_REQUEST => {
                match accounting::report(&request, nas, source.ip(), self.clock.now()) {
                    Report::Event(event) => {
                        if !self.accounting.record(*event).await {
                            return None;
                        }
                    }
                    Report::Ignored(why) => {
                        tracing::info!(%source, why, "accounting request not recorded");
                    }
                    Report::Refused(why) => {
                        if let Some(held) = self.refused_log.allow(Instant::now()) {
                            tracing::warn!(
                                %source,
                                why,
                                also_refused_since_last_line = held,
                                "accounting request refused: not recorded, not answered"
                            );
                        }
                        return None;
                    }
                }
                counters.count(Event::AccountingResponse);
                packet::reply_packet(&request, code::ACCOUNTING_RESPONSE, &nas.secret, false, &[])
            }
            _ => None,
        }
    }

    async fn authenticate(
        &self,
        settings: &Settings,
        nas: &NasClient,
        request: &Checked<'_>,
        counters: &Counters,
    ) -> Option<Vec<u8>> {
        let username = auth::username(request);
        if let Some(name) = username {
            tracing::Span::current().record("user", name);
        }
        let reject = |reason: auth::RejectReason| {
            counters.count(Event::Reject);
            tracing::info!(reason = reason.as_str(), "Access-Reject");
            auth::reply(settings, request, &nas.secret, &Decision::Reject(reason))
        };
        let record = match username {
            // No login has such a name (and PostgreSQL could not even hold
            // a NUL): rejected without asking the database.
            Some(name) if crate::model::check_username(name).is_err() => {
                return reject(auth::RejectReason::Malformed(
                    "User-Name is not a login name (a control character, or too long)",
                ));
            }
            Some(name) => match self.store.auth_lookup(name).await {
                Ok(record) => {
                    self.outage.remember(name, record.as_ref(), Instant::now());
                    record
                }
                Err(e) if e.outage_cause().is_some() => {
                    self.log_store_failure("login lookup", &e);
                    match self.outage.recall(name, Instant::now()) {
                        Some(record) => Some(record),
                        None => return reject(auth::RejectReason::StoreUnavailable),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "login lookup: the database answered with an error");
                    return reject(auth::RejectReason::Unreadable);
                }
            },
            None => None,
        };
        // Distinct salts for the MPPE keys of each reply (two a reply).
        let salt = self
            .salts
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let decision = auth::decide(
            settings,
            request,
            &nas.secret,
            record.as_ref(),
            self.clock.now(),
            salt,
        );
        match &decision {
            Decision::Accept { profile, .. } => {
                counters.count(Event::Accept);
                tracing::debug!(profile = profile.as_str(), "Access-Accept");
            }
            Decision::Reject(reason) => {
                counters.count(Event::Reject);
                tracing::info!(reason = reason.as_str(), "Access-Reject");
            }
        }
        auth::reply(settings, request, &nas.secret, &decision)
    }

    fn cache(&self, port: Port) -> std::sync::MutexGuard<'_, ReplyCache> {
        let cache = match port {
            Port::Auth => &self.auth_cache,
            Port::Acct => &self.acct_cache,
        };
        cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn counters_of(&self, nas: &NasClient) -> Arc<Counters> {
        // Every configured NAS has counters from the start (or the reload
        // that added it).
        self.counters
            .load()
            .get(&nas.name)
            .cloned()
            .unwrap_or_else(|| Arc::new(Counters::default()))
    }

    /// Takes in the NAS sources the database remembers as signing (seen by
    /// another instance on the same database), at reload and from time to
    /// time.
    pub async fn refresh_signers(&self) {
        match self.store.message_authenticator_seen().await {
            Ok(seen) => {
                let added = self
                    .signers
                    .merge(seen.iter().map(|(n, s)| (n.as_str(), s.as_str())));
                if added > 0 {
                    tracing::info!(
                        sources = added,
                        "NAS sources seen signing by another instance: Message-Authenticator \
                         now required from them here too"
                    );
                }
            }
            Err(e) => tracing::debug!(error = %e, "NAS sources seen signing not read"),
        }
    }

    /// Puts reloaded settings in force: requests already being processed
    /// finish with the settings they started with, new ones take these.
    pub fn apply(&self, settings: Arc<Settings>) {
        let counters = counters_for(&settings, &self.counters.load());
        self.counters.store(Arc::new(counters));
        self.settings.store(settings);
    }

    /// A signed Access-Request from a source not yet required to sign:
    /// required from now on, and remembered.
    fn learn_signer(&self, nas: &NasClient, source: SocketAddr, tasks: &TaskTracker) {
        let ip = source.ip().to_canonical();
        match self.signers.saw_signed(&nas.name, ip) {
            Learned::Known => return,
            Learned::New => tracing::info!(
                nas = %nas.name,
                source = %ip,
                "this NAS signs its Access-Requests (Message-Authenticator): from now on one \
                 without is dropped (require_message_authenticator = \"auto\")"
            ),
            Learned::Unstored => {}
        }
        let store = Arc::clone(&self.store);
        let signers = Arc::clone(&self.signers);
        let name = nas.name.clone();
        let now = self.clock.now();
        tasks.spawn(async move {
            let stored = store
                .remember_message_authenticator(&name, &ip.to_string(), now)
                .await;
            if let Err(e) = &stored {
                tracing::warn!(
                    nas = %name,
                    source = %ip,
                    error = %e,
                    "that this NAS signs its Access-Requests is not saved yet: it is required \
                     until liberad restarts, and saved at its next request"
                );
            }
            signers.stored(&name, ip, stored.is_ok());
        });
    }

    /// At most one line per NAS per interval about Access-Requests dropped
    /// for what its entry demands, naming the setting that would take them.
    fn log_demand_drop(&self, nas: &NasClient, source: SocketAddr, reason: DropReason) {
        let advice = match (reason, nas.require_message_authenticator) {
            (DropReason::MissingMessageAuthenticator, MessageAuthenticatorRule::Auto) => {
                "this NAS was seen signing its Access-Requests from this address \
                 (require_message_authenticator = \"auto\"); if it no longer does, set \
                 require_message_authenticator = false on its [[nas]] entry"
            }
            (DropReason::MissingMessageAuthenticator, _) => {
                "the NAS does not sign its Access-Requests; set \
                 require_message_authenticator = \"auto\" (or false) on its [[nas]] entry \
                 to take them"
            }
            (DropReason::ProxyStateWithoutMessageAuthenticator, _) => {
                "Proxy-State without Message-Authenticator (BlastRADIUS); if this NAS is a \
                 proxy that cannot sign, set limit_proxy_state = false on its [[nas]] entry"
            }
            _ => return,
        };
        let mut logs = self
            .demands_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let throttle = logs
            .entry((nas.name.clone(), reason))
            .or_insert_with(|| Throttle::new(UNKNOWN_LOG_INTERVAL));
        if let Some(held) = throttle.allow(Instant::now()) {
            tracing::warn!(
                nas = %nas.name,
                %source,
                reason = reason.as_str(),
                also_dropped_since_last_line = held,
                "Access-Request dropped: {advice}"
            );
        }
    }

    fn log_unknown(&self, source: SocketAddr) {
        if let Some(held) = self.unknown_log.allow(Instant::now()) {
            tracing::warn!(
                %source,
                also_dropped_since_last_line = held,
                "packet from an address that matches no [[nas]] entry dropped"
            );
        }
    }

    fn log_store_failure(&self, what: &str, error: &StoreError) {
        if let Some(held) = self.store_log.allow(Instant::now()) {
            tracing::error!(
                %error,
                also_failed_since_last_line = held,
                "{what}: the database cannot be reached"
            );
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The NAS clients and their counters.
    pub fn report(&self) -> NasReport {
        let settings = self.settings.load_full();
        let counters = self.counters.load();
        let nas = settings
            .nas
            .iter()
            .map(|nas| NasView {
                name: nas.name.clone(),
                address: nas.network.to_string(),
                require_message_authenticator: nas.require_message_authenticator,
                signing_sources: self
                    .signers
                    .sources_of(&nas.name)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                limit_proxy_state: nas.limit_proxy_state,
                coa_port: nas.coa_port,
                coa_mode: nas.coa_mode,
                counters: counters
                    .get(&nas.name)
                    .map(|c| c.snapshot())
                    .unwrap_or_default(),
            })
            .collect();
        NasReport {
            nas,
            unknown_clients: self.unknown.snapshot(),
        }
    }
}
