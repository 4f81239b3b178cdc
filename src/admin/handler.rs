//! What each admin request does: checks its values, calls the store and the
//! release rules, and shapes the answer. The socket loop in
//! [`super::server`] only moves lines.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono_tz::Tz;
use tokio::sync::Semaphore;

use super::import::Spool;
use super::protocol::{
    self, ContractSummary, Pong, ReleaseOutcome, ReleasePreview, Request, Response,
    StateChangeView, code,
};
use crate::clock::Clock;
use crate::enforcer::EnforcerHandle;
use crate::model::{self, Actor, ReplyAttribute};
use crate::model::{EnforcementJob, JobState, Release};
use crate::policy::{self, ContractFacts, ContractState, Refusal};
use crate::radius::{RadiusServer, Settings};
use crate::scheduler::SchedulerHandle;
use crate::store::{Enforced, NewContract, NewLogin, ReleaseRequest, Store, StoreError};
use crate::telemetry;

/// Audit entries shown in the contract summary.
const SUMMARY_AUDIT_ENTRIES: u32 = 10;

/// The running RADIUS server, as the admin socket sees it.
pub struct RadiusView {
    pub server: Arc<RadiusServer>,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
}

/// The enforcer and scheduler, as the admin socket uses them.
pub struct EnforcementView {
    pub enforcer: EnforcerHandle,
    pub scheduler: SchedulerHandle,
    /// How long `--wait` waits at most.
    pub wait: std::time::Duration,
}

/// Serves admin requests against one store.
pub struct Admin {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    timezone: Tz,
    radius: Option<RadiusView>,
    enforcement: Option<EnforcementView>,
    metrics: Option<SocketAddr>,
    /// One import at a time, daemon-wide: an import writes in one
    /// transaction.
    import_slot: Arc<Semaphore>,
    /// Where an import's file is kept while it arrives.
    spool_dir: std::path::PathBuf,
}

/// What a connection carries from one request to the next.
#[derive(Default)]
pub struct Session {
    import: Option<Spool>,
}

/// A request that cannot be served as sent.
struct Invalid(Box<Response>);

impl From<model::InvalidValue> for Invalid {
    fn from(e: model::InvalidValue) -> Invalid {
        Invalid(Box::new(Response::refusal(
            code::INVALID_VALUE,
            e.to_string(),
        )))
    }
}

impl Admin {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, timezone: Tz) -> Admin {
        Admin {
            store,
            clock,
            timezone,
            radius: None,
            enforcement: None,
            metrics: None,
            import_slot: Arc::new(Semaphore::new(1)),
            spool_dir: std::env::temp_dir(),
        }
    }

    /// Keeps the files of imports in progress in `dir` (the state
    /// directory) rather than the system's temporary directory.
    pub fn with_spool_dir(mut self, dir: &std::path::Path) -> Admin {
        dir.clone_into(&mut self.spool_dir);
        self
    }

    /// Lets changes wake the scheduler and the enforcer, and `--wait`
    /// follow the enforcement.
    pub fn with_enforcement(mut self, enforcement: EnforcementView) -> Admin {
        self.enforcement = Some(enforcement);
        self
    }

    /// Lets `ping` say where the metrics are served.
    pub fn with_metrics(mut self, address: Option<SocketAddr>) -> Admin {
        self.metrics = address;
        self
    }

    /// Lets `ping` and `nas list` report on the RADIUS server.
    pub fn with_radius(mut self, radius: RadiusView) -> Admin {
        self.radius = Some(radius);
        self
    }

    /// Serves one request from a peer with the given uid.
    pub async fn handle(
        &self,
        request: Request,
        peer_uid: Option<u32>,
        session: &mut Session,
    ) -> Response {
        let command = request.command();
        let mutates = mutates(&request);
        let mut response = match self.dispatch(request, peer_uid, session).await {
            Ok(response) => response,
            Err(Invalid(response)) => *response,
        };
        response.timezone = Some(self.timezone.name().to_owned());
        if mutates {
            tracing::info!(
                command,
                uid = peer_uid,
                ok = response.ok,
                code = response.code.as_deref(),
                "admin request"
            );
        } else {
            tracing::debug!(command, uid = peer_uid, ok = response.ok, "admin request");
        }
        response
    }

    async fn dispatch(
        &self,
        request: Request,
        peer_uid: Option<u32>,
        session: &mut Session,
    ) -> Result<Response, Invalid> {
        let actor = |operator: Option<String>| -> Result<Actor, Invalid> {
            let operator = operator.filter(|o| !o.trim().is_empty());
            if let Some(o) = &operator {
                model::check_free_text("operator", o)?;
            }
            Ok(Actor {
                uid: peer_uid,
                operator,
            })
        };
        let now = self.clock.now();
        Ok(match request {
            Request::Ping => {
                let database = self.store.write_status();
                let message = match (&database.cause, database.since) {
                    (Some(cause), Some(since)) if !database.writable => format!(
                        "liberad is running, but its database refuses writes ({cause}) since {}: \
                         accounting is not acknowledged and changes are refused",
                        policy::format_local(since, self.timezone)
                    ),
                    _ => "liberad is running".to_owned(),
                };
                Response::success(message).with_data(&Pong {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    timezone: self.timezone.name().to_owned(),
                    radius_auth: self.radius.as_ref().map(|r| r.auth.to_string()),
                    radius_acct: self.radius.as_ref().map(|r| r.acct.to_string()),
                    metrics: self.metrics.map(|m| m.to_string()),
                    database: Some(database),
                })
            }
            Request::Sessions {
                contract,
                online,
                limit,
            } => {
                if let Some(id) = &contract {
                    model::check_contract_id(id)?;
                }
                let list = self
                    .store
                    .sessions(contract.as_deref(), online, clamp(limit))
                    .await;
                self.listing("sessions", list)
            }
            Request::NasList => match &self.radius {
                Some(radius) => {
                    let report = radius.server.report();
                    Response::success(format!("{} NAS clients", report.nas.len()))
                        .with_data(&report)
                }
                None => Response::refusal(code::INTERNAL, "the RADIUS server is not running"),
            },
            Request::ContractAdd {
                id,
                name,
                state,
                operator,
            } => {
                model::check_contract_id(&id)?;
                model::check_name(&name)?;
                let actor = actor(operator)?;
                let contract = NewContract {
                    id,
                    name,
                    state: state.unwrap_or(ContractState::Active),
                };
                match self.store.add_contract(contract, &actor, now).await {
                    Ok(c) => Response::success(format!("contract {} added as {}", c.id, c.state))
                        .with_data(&c),
                    Err(e) => self.store_error(e, ""),
                }
            }
            Request::ContractState {
                id,
                state,
                reason,
                operator,
            } => {
                model::check_contract_id(&id)?;
                model::check_free_text("reason", &reason)?;
                let actor = actor(operator)?;
                match self
                    .store
                    .set_contract_state(&id, state, &reason, &actor, now)
                    .await
                {
                    Ok(change) => {
                        self.changed(&change.jobs);
                        let mut message = if change.previous == state {
                            format!("contract {id} is already {state}")
                        } else {
                            format!("contract {id} is now {state} (was {})", change.previous)
                        };
                        if let Some(r) = &change.ended_release {
                            let reason = r.end_reason.map_or("revoked", |e| e.as_str());
                            metrics::counter!(telemetry::RELEASES_ENDED, "reason" => reason)
                                .increment(1);
                            message.push_str(&format!(
                                "; its temporary release {} ended ({})",
                                r.id,
                                r.end_reason.map(|e| e.as_str()).unwrap_or("ended")
                            ));
                        }
                        if !change.jobs.is_empty() {
                            message.push_str(&format!("; {} told", sessions(change.jobs.len())));
                        }
                        message.push_str(&at_next_connection(change.at_next_connection));
                        Response::success(message).with_data(&StateChangeView {
                            contract: change.contract,
                            previous: change.previous,
                            ended_release: change.ended_release,
                            sessions_told: change.jobs.len(),
                            sessions_at_next_connection: change.at_next_connection,
                        })
                    }
                    Err(e) => self.store_error(e, &id),
                }
            }
            Request::ContractShow { id } => {
                model::check_contract_id(&id)?;
                self.contract_summary(&id).await
            }
            Request::ContractList {
                state,
                after,
                limit,
            } => {
                if let Some(id) = &after {
                    model::check_contract_id(id)?;
                }
                let limit = clamp(limit);
                match self.store.contracts(state, after.as_deref(), limit).await {
                    Ok(list) => {
                        let next = (list.len() == limit as usize)
                            .then(|| list.last().map(|c| c.id.clone()))
                            .flatten();
                        let mut message = format!("{} contracts", list.len());
                        if let Some(next) = &next {
                            message.push_str(&format!("; more with --after {next}"));
                        }
                        let mut response = Response::success(message).with_data(&list);
                        response.next_after = next;
                        response
                    }
                    Err(e) => self.store_error(e, ""),
                }
            }
            Request::LoginAdd {
                username,
                contract,
                password,
                nt_hash,
                attributes,
                operator,
            } => {
                model::check_username(&username)?;
                model::check_contract_id(&contract)?;
                let password = model::Password::either(password.as_deref(), nt_hash.as_deref())?;
                let reply = attributes
                    .iter()
                    .map(|a| a.parse::<ReplyAttribute>())
                    .collect::<Result<Vec<_>, _>>()?;
                model::check_reply(&reply)?;
                if let Some(settings) = self.radius_settings() {
                    for attribute in &reply {
                        settings
                            .encode_login_attribute(attribute)
                            .map_err(|problem| model::InvalidValue {
                                field: "attribute",
                                problem,
                            })?;
                    }
                }
                let actor = actor(operator)?;
                let login = NewLogin {
                    username,
                    contract_id: contract,
                    password,
                    reply,
                };
                match self.store.add_login(login, &actor, now).await {
                    Ok(l) => Response::success(format!(
                        "login {} added to contract {}",
                        l.username, l.contract_id
                    ))
                    .with_data(&l),
                    Err(e) => self.store_error(e, ""),
                }
            }
            Request::LoginRemove { username, operator } => {
                model::check_username(&username)?;
                let actor = actor(operator)?;
                match self.store.remove_login(&username, &actor, now).await {
                    Ok(l) => Response::success(format!(
                        "login {} removed from contract {}",
                        l.username, l.contract_id
                    ))
                    .with_data(&l),
                    Err(e) => self.store_error(e, ""),
                }
            }
            Request::LoginShow { username } => {
                model::check_username(&username)?;
                match self.store.login(&username).await {
                    Ok(Some(l)) => Response::success(format!(
                        "login {} of contract {}",
                        l.username, l.contract_id
                    ))
                    .with_data(&l),
                    Ok(None) => self.store_error(StoreError::LoginNotFound(username), ""),
                    Err(e) => self.store_error(e, ""),
                }
            }
            Request::Release {
                contract,
                reason,
                operator,
                dry_run,
                wait,
            } => {
                model::check_contract_id(&contract)?;
                model::check_free_text("reason", &reason)?;
                let request = ReleaseRequest {
                    actor: actor(operator)?,
                    contract_id: contract,
                    reason,
                    now,
                    timezone: self.timezone,
                };
                self.release(&request, dry_run, wait).await
            }
            Request::Revoke {
                contract,
                reason,
                operator,
                wait,
            } => {
                model::check_contract_id(&contract)?;
                model::check_free_text("reason", &reason)?;
                let actor = actor(operator)?;
                match self.store.revoke(&contract, &reason, &actor, now).await {
                    Ok(revoked) => {
                        metrics::counter!(telemetry::RELEASES_ENDED, "reason" => "revoked")
                            .increment(1);
                        let message = format!(
                            "temporary release of contract {contract} revoked at {}",
                            policy::format_local(now, self.timezone)
                        );
                        self.enforced(message, revoked, wait).await
                    }
                    Err(e) => self.store_error(e, &contract),
                }
            }
            Request::Coa {
                contract,
                failed,
                limit,
            } => {
                if let Some(id) = &contract {
                    model::check_contract_id(id)?;
                }
                let jobs = self
                    .store
                    .enforcement_jobs(contract.as_deref(), failed, clamp(limit))
                    .await;
                self.listing("enforcement jobs", jobs)
            }
            Request::Releases { contract, limit } => {
                if let Some(id) = &contract {
                    model::check_contract_id(id)?;
                }
                let list = self.store.releases(contract.as_deref(), clamp(limit)).await;
                self.listing("releases", list)
            }
            Request::Audit { limit } => {
                self.listing("audit entries", self.store.audit(clamp(limit)).await)
            }
            Request::ParamsShow => match self.store.parameters().await {
                Ok(p) => Response::success(describe_parameters(&p)).with_data(&p),
                Err(e) => self.store_error(e, ""),
            },
            Request::ParamsSet {
                name,
                value,
                operator,
            } => {
                let actor = actor(operator)?;
                let value = value.to_text();
                model::check_free_text("value", &value)?;
                let name: policy::ParameterName =
                    name.parse().map_err(|e: policy::ParameterError| {
                        Invalid(Box::new(Response::refusal(
                            code::INVALID_VALUE,
                            e.to_string(),
                        )))
                    })?;
                let parameter = match policy::Parameter::parse(name.as_str(), &value) {
                    Ok(parameter) => parameter,
                    Err(e) => {
                        // The attempt is audited, as a refusal.
                        let detail = format!("{name} = {value}");
                        let audited = self
                            .store
                            .audit_refused("params_set", None, &detail, "invalid", &actor, now)
                            .await;
                        return Ok(match audited {
                            Ok(()) => Response::refusal(code::INVALID_VALUE, e.to_string()),
                            Err(store) => self.store_error(store, ""),
                        });
                    }
                };
                match self.store.set_parameter(parameter, &actor, now).await {
                    Ok(p) => Response::success(format!("{name} set; {}", describe_parameters(&p)))
                        .with_data(&p),
                    Err(e) => self.store_error(e, ""),
                }
            }
            Request::ImportBegin { operator } => {
                let operator = actor(operator)?.operator;
                self.import_begin(session, operator).await
            }
            Request::ImportChunk { data } => import_chunk(session, &data).await,
            Request::ImportCommit { skip_invalid } => {
                self.import_commit(session, peer_uid, skip_invalid).await
            }
            Request::ImportAbort => {
                let had = session.import.take().is_some();
                Response::success(if had {
                    "import dropped"
                } else {
                    "no import was in progress"
                })
            }
        })
    }

    async fn contract_summary(&self, id: &str) -> Response {
        let record = match self.store.contract_record(id, SUMMARY_AUDIT_ENTRIES).await {
            Ok(Some(record)) => record,
            Ok(None) => return self.store_error(StoreError::ContractNotFound(id.to_owned()), id),
            Err(e) => return self.store_error(e, id),
        };
        let now = self.clock.now();
        let tz = self.timezone;
        let releases = &record.recent_releases;
        let running_release = releases.iter().find(|r| r.is_running(now)).cloned();
        let last_release = releases.iter().find(|r| !r.is_running(now)).cloned();
        let facts = ContractFacts {
            state: record.contract.state,
            open_release_ends_at: releases
                .iter()
                .find(|r| r.ended_at.is_none())
                .map(|r| r.ends_at),
            last_release_started_at: releases.first().map(|r| r.started_at),
        };
        let next_allowed = policy::next_allowed_date(&record.parameters, &facts, now, tz);
        let profile = policy::effective_profile(record.contract.state, running_release.is_some());
        let mut message = format!("contract {id}: {}", record.contract.state);
        if let Some(r) = &running_release {
            message.push_str(&format!(
                ", released until {}",
                policy::format_local(r.ends_at, tz)
            ));
        }
        Response::success(message).with_data(&ContractSummary {
            contract: record.contract,
            profile,
            running_release,
            last_release,
            next_allowed,
            release_enabled: record.parameters.enabled,
            logins: record.logins,
            audit: record.audit,
            sessions: record.sessions,
        })
    }

    async fn release(&self, request: &ReleaseRequest, dry_run: bool, wait: bool) -> Response {
        let id = &request.contract_id;
        let tz = self.timezone;
        if dry_run {
            return match self.store.preview_release(request).await {
                Ok(grant) => Response::success(format!(
                    "contract {id} may be released now; the release would end {}",
                    policy::format_local(grant.ends_at, tz)
                ))
                .with_data(&ReleasePreview {
                    contract: id.clone(),
                    starts_at: grant.starts_at,
                    ends_at: grant.ends_at,
                }),
                Err(e) => self.store_error(e, id),
            };
        }
        match self.store.release(request).await {
            Ok(released) => {
                metrics::counter!(telemetry::RELEASES_STARTED).increment(1);
                let message = format!(
                    "contract {id} released until {}",
                    policy::format_local(released.value.ends_at, tz)
                );
                self.enforced(message, released, wait).await
            }
            Err(e) => self.store_error(e, id),
        }
    }

    /// The answer to a release or revoke: wakes the scheduler and the
    /// enforcer, says how many online sessions are being told, and with
    /// `wait` waits (bounded) for the NAS's answers.
    async fn enforced(&self, message: String, change: Enforced<Release>, wait: bool) -> Response {
        self.changed(&change.jobs);
        let jobs = if wait {
            self.wait_for(&change.jobs).await
        } else {
            self.store
                .enforcement_jobs_by_id(&change.jobs)
                .await
                .unwrap_or_default()
        };
        let mut message = message;
        // "no online session to tell" only when there is none at all.
        if !jobs.is_empty() || change.at_next_connection == 0 {
            message.push_str(&describe_enforcement(&jobs, wait));
        }
        message.push_str(&at_next_connection(change.at_next_connection));
        Response::success(message).with_data(&ReleaseOutcome {
            release: change.value,
            sessions_told: change.jobs.len(),
            sessions_at_next_connection: change.at_next_connection,
            enforcement: jobs,
        })
    }

    /// Tells the scheduler that releases changed and the enforcer that
    /// jobs were queued.
    fn changed(&self, jobs: &[i64]) {
        if let Some(enforcement) = &self.enforcement {
            enforcement.scheduler.wake();
            if !jobs.is_empty() {
                enforcement.enforcer.wake();
            }
        }
    }

    /// Waits until the jobs are final or the wait timeout passes, and
    /// returns them as they stand then (a job sent meanwhile shows so).
    async fn wait_for(&self, ids: &[i64]) -> Vec<EnforcementJob> {
        let Some(enforcement) = &self.enforcement else {
            return Vec::new();
        };
        let deadline = tokio::time::Instant::now() + enforcement.wait;
        let mut progress = enforcement.enforcer.progress();
        loop {
            progress.mark_unchanged();
            let jobs = match self.store.enforcement_jobs_by_id(ids).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read enforcement jobs");
                    return Vec::new();
                }
            };
            if jobs.iter().all(|j| j.state.is_final()) {
                return jobs;
            }
            let timed_out = tokio::select! {
                changed = progress.changed() => changed.is_err(),
                () = tokio::time::sleep_until(deadline) => true,
            };
            if timed_out {
                return self.store.enforcement_jobs_by_id(ids).await.unwrap_or(jobs);
            }
        }
    }

    async fn import_begin(&self, session: &mut Session, operator: Option<String>) -> Response {
        if session.import.is_some() {
            return Response::refusal(
                code::INVALID_REQUEST,
                "an import is already in progress on this connection",
            );
        }
        let Ok(slot) = Arc::clone(&self.import_slot).try_acquire_owned() else {
            return Response::refusal(
                code::BUSY,
                "another import is in progress; try again when it has finished",
            );
        };
        match Spool::create(&self.spool_dir, operator, slot).await {
            Ok(spool) => {
                session.import = Some(spool);
                Response::success("import started; send the file")
            }
            Err(e) => Response::refusal(
                code::INTERNAL,
                format!(
                    "cannot keep the import in {}: {e}; nothing was imported",
                    self.spool_dir.display()
                ),
            ),
        }
    }

    async fn import_commit(
        &self,
        session: &mut Session,
        peer_uid: Option<u32>,
        skip_invalid: bool,
    ) -> Response {
        let Some(mut spool) = session.import.take() else {
            return Response::refusal(
                code::NO_IMPORT,
                "no import is in progress on this connection",
            );
        };
        let mut rows = match spool.read(self.radius_settings()).await {
            Ok(rows) => rows,
            Err(e) => return Response::refusal(code::INVALID_FILE, e.to_string()),
        };
        let actor = Actor {
            uid: peer_uid,
            operator: spool.operator.clone(),
        };
        let outcome = match self
            .store
            .import(&mut rows, skip_invalid, &actor, self.clock.now())
            .await
        {
            Ok(outcome) => outcome,
            Err(StoreError::InvalidInput(e)) => {
                return Response::refusal(code::INVALID_FILE, format!("{e}; nothing was imported"));
            }
            Err(e) => return self.store_error(e, ""),
        };
        let counts = outcome.counts;
        if !outcome.applied {
            return Response::refusal(
                code::REJECTED_ROWS,
                format!(
                    "{} of {} rows rejected; nothing was imported (fix them, or import the \
                     good rows with --skip-invalid)",
                    outcome.rejected_total, outcome.rows
                ),
            )
            .with_data(&outcome);
        }
        if counts.enforcement_jobs > 0 {
            self.changed(&[0]);
        }
        Response::success(format!(
            "imported {} rows: contracts {} created, {} updated; logins {} created, \
             {} updated; {} rows rejected",
            outcome.rows.saturating_sub(outcome.rejected_total),
            counts.contracts_created,
            counts.contracts_updated,
            counts.logins_created,
            counts.logins_updated,
            outcome.rejected_total
        ))
        .with_data(&outcome)
    }

    /// The answer to a listing: how many, and the entries.
    fn listing<T: serde::Serialize>(
        &self,
        what: &str,
        list: Result<Vec<T>, StoreError>,
    ) -> Response {
        match list {
            Ok(list) => Response::success(format!("{} {what}", list.len())).with_data(&list),
            Err(e) => self.store_error(e, ""),
        }
    }

    /// The RADIUS settings, to check reply attributes against the
    /// dictionaries.
    fn radius_settings(&self) -> Option<Arc<Settings>> {
        self.radius.as_ref().map(|r| r.server.settings())
    }

    /// The answer to a store error: a refusal with its code, or an
    /// internal error that is also logged.
    fn store_error(&self, e: StoreError, contract: &str) -> Response {
        match e {
            StoreError::Refused(refusal) => {
                let mut response =
                    Response::refusal(refusal.code(), refusal.describe(contract, self.timezone));
                match refusal {
                    Refusal::AlreadyReleased { until } => response.ends_at = Some(until),
                    Refusal::Cooldown { next_allowed } => {
                        response.next_allowed = Some(next_allowed);
                    }
                    _ => {}
                }
                response
            }
            StoreError::ContractNotFound(id) => Response::refusal(
                code::NOT_FOUND,
                Refusal::NotFound.describe(&id, self.timezone),
            ),
            StoreError::LoginNotFound(username) => {
                Response::refusal(code::NOT_FOUND, format!("login {username} is not known"))
            }
            StoreError::ContractExists(id) => Response::refusal(
                code::EXISTS,
                format!(
                    "contract {id} already exists; change it with `contract state` or an import"
                ),
            ),
            StoreError::LoginExists(username) => Response::refusal(
                code::EXISTS,
                format!("login {username} already exists; remove it first or update it by import"),
            ),
            StoreError::NotReleased(id) => Response::refusal(
                code::NOT_RELEASED,
                format!("contract {id} has no running temporary release to revoke"),
            ),
            e => match e.outage_cause() {
                Some(cause) => {
                    tracing::warn!(error = %e, cause, "admin request failed: the database is not available");
                    Response::refusal(
                        code::DATABASE_UNAVAILABLE,
                        format!(
                            "the database is not available ({cause}): {e}; nothing was \
                             changed, try again once it is"
                        ),
                    )
                }
                None => {
                    tracing::error!(error = %e, "admin request failed");
                    Response::refusal(code::INTERNAL, format!("the request was not done: {e}"))
                }
            },
        }
    }
}

async fn import_chunk(session: &mut Session, data: &str) -> Response {
    let Some(spool) = session.import.as_mut() else {
        return Response::refusal(
            code::NO_IMPORT,
            "no import is in progress on this connection",
        );
    };
    if spool.bytes().saturating_add(data.len()) > protocol::MAX_IMPORT_BYTES {
        session.import = None;
        return Response::refusal(
            code::TOO_LARGE,
            format!(
                "the import is larger than {} MiB; split the file",
                protocol::MAX_IMPORT_BYTES / (1024 * 1024)
            ),
        );
    }
    if let Err(e) = spool.append(data).await {
        session.import = None;
        return Response::refusal(
            code::INTERNAL,
            format!("cannot keep the import: {e}; nothing was imported"),
        );
    }
    Response {
        ok: true,
        ..Response::default()
    }
}

/// " (2 online sessions told: 1 confirmed, 1 pending, 0 failed)".
fn describe_enforcement(jobs: &[EnforcementJob], waited: bool) -> String {
    if jobs.is_empty() {
        return " (no online session to tell)".to_owned();
    }
    let confirmed = jobs.iter().filter(|j| j.state == JobState::Acked).count();
    let failed: Vec<&EnforcementJob> = jobs.iter().filter(|j| j.state.is_failure()).collect();
    let pending = jobs.iter().filter(|j| !j.state.is_final()).count();
    let mut text = format!(" ({} told", sessions(jobs.len()));
    if waited || confirmed > 0 || !failed.is_empty() {
        text.push_str(&format!(
            ": {confirmed} confirmed, {pending} pending, {} failed",
            failed.len()
        ));
        if let Some(first) = failed.first() {
            text.push_str(&format!(
                "; {} on {}: {}",
                first.username,
                first.nas_name,
                first.outcome.as_deref().unwrap_or("failed")
            ));
        }
    }
    text.push(')');
    text
}

/// "; 1 online session on a NAS that takes no CoA: the change applies at
/// its next connection", or nothing.
fn at_next_connection(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => "; 1 online session on a NAS that takes no CoA (coa_mode = \"none\"): the change \
              applies at its next connection"
            .to_owned(),
        n => format!(
            "; {n} online sessions on a NAS that takes no CoA (coa_mode = \"none\"): the change \
             applies at their next connection"
        ),
    }
}

/// "1 online session", "2 online sessions".
fn sessions(n: usize) -> String {
    if n == 1 {
        "1 online session".to_owned()
    } else {
        format!("{n} online sessions")
    }
}

fn clamp(limit: Option<u32>) -> u32 {
    limit
        .unwrap_or(protocol::DEFAULT_LIMIT)
        .min(protocol::MAX_LIMIT)
}

fn describe_parameters(p: &policy::Parameters) -> String {
    format!(
        "temporary release {}, lasts {} day(s), renewable after {} day(s)",
        if p.enabled { "enabled" } else { "disabled" },
        p.release_days,
        p.renew_after_days
    )
}

fn mutates(request: &Request) -> bool {
    matches!(
        request,
        Request::ContractAdd { .. }
            | Request::ContractState { .. }
            | Request::LoginAdd { .. }
            | Request::LoginRemove { .. }
            | Request::Release { dry_run: false, .. }
            | Request::Revoke { .. }
            | Request::ParamsSet { .. }
            | Request::ImportCommit { .. }
    )
}
