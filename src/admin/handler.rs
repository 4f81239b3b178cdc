//! The admin socket's adapter onto the application: a request line becomes
//! validated values and an actor, the application does the operation, and
//! its outcome or refusal becomes a response line. What an operation means
//! is in [`crate::app`]; the socket loop in [`super::server`] only moves
//! lines.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::import::Spool;
use super::protocol::{
    self, MadeToken, Pong, ReleaseOutcome, ReleasePreview, Request, Response, StateChangeView, code,
};
use crate::app::{self, App, Enforced};
use crate::model::{self, Actor, ContractId, EnforcementJob, JobState, Release, ReplyAttribute};
use crate::model::{InvalidValue, Username};
use crate::policy::{self, ContractState, Parameter, ParameterName};
use crate::radius::RadiusServer;

/// The running RADIUS server, as the admin socket sees it.
pub struct RadiusView {
    pub server: Arc<RadiusServer>,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
}

/// Serves admin requests through the application.
pub struct Admin {
    app: Arc<App>,
    radius: Option<RadiusView>,
    metrics: Option<SocketAddr>,
    api: Option<SocketAddr>,
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

impl Admin {
    pub fn new(app: Arc<App>) -> Admin {
        Admin {
            app,
            radius: None,
            metrics: None,
            api: None,
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

    /// Lets `ping` say where the metrics are served.
    pub fn with_metrics(mut self, address: Option<SocketAddr>) -> Admin {
        self.metrics = address;
        self
    }

    /// Lets `ping` say where the HTTP API is served.
    pub fn with_api(mut self, address: Option<SocketAddr>) -> Admin {
        self.api = address;
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
        let mut response = self.dispatch(request, peer_uid, session).await;
        response.timezone = Some(self.app.timezone().name().to_owned());
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
    ) -> Response {
        // The contract a refusal is about, for its message.
        let mut about: Option<ContractId> = None;
        match self.serve(request, peer_uid, session, &mut about).await {
            Ok(response) => response,
            Err(e) => self.refusal(&e, about.as_ref()),
        }
    }

    /// One request: its values parsed once, then one operation.
    async fn serve(
        &self,
        request: Request,
        peer_uid: Option<u32>,
        session: &mut Session,
        about: &mut Option<ContractId>,
    ) -> Result<Response, app::Error> {
        let actor = |operator: Option<String>| actor(peer_uid, operator);
        let tz = self.app.timezone();
        let app = &self.app;
        Ok(match request {
            Request::Ping => self.ping(),
            Request::Sessions {
                contract,
                online,
                limit,
            } => {
                let contract = contract.map(ContractId::parse).transpose()?;
                let list = app
                    .sessions(contract.as_ref(), online, clamp(limit))
                    .await?;
                listing("sessions", &list)
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
                let id = ContractId::parse(id)?;
                model::check_name(&name)?;
                let actor = actor(operator)?;
                let state = state.unwrap_or(ContractState::Active);
                let c = app.add_contract(&actor, &id, &name, state).await?;
                Response::success(format!("contract {} added as {}", c.id, c.state)).with_data(&c)
            }
            Request::ContractState {
                id,
                state,
                reason,
                operator,
            } => {
                let id = about.insert(ContractId::parse(id)?).clone();
                model::check_free_text("reason", &reason)?;
                let actor = actor(operator)?;
                let change = app.set_contract_state(&actor, &id, state, &reason).await?;
                let mut message = if change.previous == state {
                    format!("contract {id} is already {state}")
                } else {
                    format!("contract {id} is now {state} (was {})", change.previous)
                };
                if let Some(r) = &change.ended_release {
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
            Request::ContractShow { id } => {
                let id = about.insert(ContractId::parse(id)?).clone();
                let summary = app.contract_summary(&id).await?;
                let mut message = format!("contract {id}: {}", summary.contract.state);
                if let Some(r) = &summary.running_release {
                    message.push_str(&format!(
                        ", released until {}",
                        policy::format_local(r.ends_at, tz)
                    ));
                }
                Response::success(message).with_data(&summary)
            }
            Request::ContractList {
                state,
                after,
                limit,
            } => {
                let after = after.map(ContractId::parse).transpose()?;
                let page = app.contracts(state, after.as_ref(), clamp(limit)).await?;
                let mut message = format!("{} contracts", page.contracts.len());
                if let Some(next) = &page.next_after {
                    message.push_str(&format!("; more with --after {next}"));
                }
                let mut response = Response::success(message).with_data(&page.contracts);
                response.next_after = page.next_after;
                response
            }
            Request::LoginAdd {
                username,
                contract,
                password,
                nt_hash,
                attributes,
                operator,
            } => {
                let username = Username::parse(username)?;
                let contract = about.insert(ContractId::parse(contract)?).clone();
                let password = model::Password::either(password.as_deref(), nt_hash.as_deref())?;
                let reply = attributes
                    .iter()
                    .map(|a| a.parse::<ReplyAttribute>())
                    .collect::<Result<Vec<_>, _>>()?;
                app.check_reply(&reply)?;
                let actor = actor(operator)?;
                let l = app
                    .add_login(&actor, &username, &contract, password, reply)
                    .await?;
                Response::success(format!(
                    "login {} added to contract {}",
                    l.username, l.contract_id
                ))
                .with_data(&l)
            }
            Request::LoginRemove { username, operator } => {
                let username = Username::parse(username)?;
                let actor = actor(operator)?;
                let l = app.remove_login(&actor, &username).await?;
                Response::success(format!(
                    "login {} removed from contract {}",
                    l.username, l.contract_id
                ))
                .with_data(&l)
            }
            Request::LoginShow { username } => {
                let l = app.login(&Username::parse(username)?).await?;
                Response::success(format!(
                    "login {} of contract {}",
                    l.username, l.contract_id
                ))
                .with_data(&l)
            }
            Request::Release {
                contract,
                reason,
                operator,
                dry_run,
                wait,
            } => {
                let contract = about.insert(ContractId::parse(contract)?).clone();
                model::check_free_text("reason", &reason)?;
                let actor = actor(operator)?;
                if dry_run {
                    let grant = app.preview_release(&contract).await?;
                    return Ok(Response::success(format!(
                        "contract {contract} may be released now; the release would end {}",
                        policy::format_local(grant.ends_at, tz)
                    ))
                    .with_data(&ReleasePreview {
                        contract: contract.to_string(),
                        starts_at: grant.starts_at,
                        ends_at: grant.ends_at,
                    }));
                }
                let released = app.release(&actor, &contract, &reason).await?;
                let message = format!(
                    "contract {contract} released until {}",
                    policy::format_local(released.value.ends_at, tz)
                );
                self.enforced(message, released, wait).await
            }
            Request::Revoke {
                contract,
                reason,
                operator,
                wait,
            } => {
                let contract = about.insert(ContractId::parse(contract)?).clone();
                model::check_free_text("reason", &reason)?;
                let actor = actor(operator)?;
                let revoked = app.revoke(&actor, &contract, &reason).await?;
                let message = format!(
                    "temporary release of contract {contract} revoked at {}",
                    policy::format_local(revoked.value.ended_at.unwrap_or_default(), tz)
                );
                self.enforced(message, revoked, wait).await
            }
            Request::Coa {
                contract,
                failed,
                limit,
            } => {
                let contract = contract.map(ContractId::parse).transpose()?;
                let jobs = app
                    .enforcement_jobs(contract.as_ref(), failed, clamp(limit))
                    .await?;
                listing("enforcement jobs", &jobs)
            }
            Request::Releases { contract, limit } => {
                let contract = contract.map(ContractId::parse).transpose()?;
                let list = app.releases(contract.as_ref(), clamp(limit)).await?;
                listing("releases", &list)
            }
            Request::Audit { limit } => listing("audit entries", &app.audit(clamp(limit)).await?),
            Request::ParamsShow => {
                let p = app.parameters().await?;
                Response::success(describe_parameters(&p)).with_data(&p)
            }
            Request::ParamsSet {
                name,
                value,
                operator,
            } => {
                let actor = actor(operator)?;
                let value = value.to_text();
                model::check_free_text("value", &value)?;
                let name: ParameterName = name.parse()?;
                let parameter = match Parameter::parse(name.as_str(), &value) {
                    Ok(parameter) => parameter,
                    Err(e) => return Err(app.refuse_parameter(&actor, name, &value, e).await),
                };
                let p = app.set_parameter(&actor, parameter).await?;
                Response::success(format!("{name} set; {}", describe_parameters(&p))).with_data(&p)
            }
            Request::ImportBegin { operator } => {
                let operator = actor(operator)?.operator;
                self.import_begin(session, operator).await
            }
            Request::ImportChunk { data } => import_chunk(session, &data).await,
            Request::ImportCommit { skip_invalid } => {
                self.import_commit(session, peer_uid, skip_invalid).await?
            }
            Request::TokenAdd {
                name,
                role,
                expires,
                operator,
            } => {
                let actor = actor(operator)?;
                let made = app.add_token(&actor, &name, role, expires).await?;
                let until = made.info.expires_at.map_or_else(
                    || "until revoked".to_owned(),
                    |at| format!("until {}", policy::format_local(at, tz)),
                );
                Response::success(format!(
                    "token {name} made, role {role}, valid {until}; it is shown this once: \
                     keep it where the client reads it"
                ))
                .with_data(&MadeToken {
                    token: made.token,
                    info: made.info,
                })
            }
            Request::TokenList => listing("tokens", &app.tokens().await?),
            Request::TokenRevoke { name, operator } => {
                let actor = actor(operator)?;
                let token = app.revoke_token(&actor, &name).await?;
                Response::success(format!("token {name} revoked")).with_data(&token)
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

    fn ping(&self) -> Response {
        let tz = self.app.timezone();
        let database = self.app.write_status();
        let message = match (&database.cause, database.since) {
            (Some(cause), Some(since)) if !database.writable => format!(
                "liberad is running, but its database refuses writes ({cause}) since {}: \
                 accounting is not acknowledged and changes are refused",
                policy::format_local(since, tz)
            ),
            _ => "liberad is running".to_owned(),
        };
        Response::success(message).with_data(&Pong {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            timezone: tz.name().to_owned(),
            radius_auth: self.radius.as_ref().map(|r| r.auth.to_string()),
            radius_acct: self.radius.as_ref().map(|r| r.acct.to_string()),
            metrics: self.metrics.map(|m| m.to_string()),
            api: self.api.map(|a| a.to_string()),
            database: Some(database),
        })
    }

    /// The answer to a release or revoke: says how many online sessions
    /// are being told, and with `wait` waits (bounded) for the NAS's
    /// answers.
    async fn enforced(&self, message: String, change: Enforced<Release>, wait: bool) -> Response {
        let jobs = self.app.enforcement_of(&change.jobs, wait).await;
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
    ) -> Result<Response, app::Error> {
        let Some(mut spool) = session.import.take() else {
            return Ok(Response::refusal(
                code::NO_IMPORT,
                "no import is in progress on this connection",
            ));
        };
        let mut rows = match spool.read(self.app.settings()).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Response::refusal(code::INVALID_FILE, e.to_string())),
        };
        let actor = Actor {
            uid: peer_uid,
            operator: spool.operator.clone(),
            ..Actor::default()
        };
        let outcome = self.app.import(&actor, &mut rows, skip_invalid).await?;
        let counts = outcome.counts;
        if !outcome.applied {
            return Ok(Response::refusal(
                code::REJECTED_ROWS,
                format!(
                    "{} of {} rows rejected; nothing was imported (fix them, or import the \
                     good rows with --skip-invalid)",
                    outcome.rejected_total, outcome.rows
                ),
            )
            .with_data(&outcome));
        }
        Ok(Response::success(format!(
            "imported {} rows: contracts {} created, {} updated; logins {} created, \
             {} updated; {} rows rejected",
            outcome.rows.saturating_sub(outcome.rejected_total),
            counts.contracts_created,
            counts.contracts_updated,
            counts.logins_created,
            counts.logins_updated,
            outcome.rejected_total
        ))
        .with_data(&outcome))
    }

    /// The answer to an operation the application refused or could not do.
    fn refusal(&self, e: &app::Error, contract: Option<&ContractId>) -> Response {
        e.log();
        let mut response = Response::refusal(e.code(), e.message(contract, self.app.timezone()));
        response.ends_at = e.ends_at();
        response.next_allowed = e.next_allowed();
        response
    }
}

/// Who asked: the uid the kernel reports for the connection, and the name
/// the client gives.
fn actor(uid: Option<u32>, operator: Option<String>) -> Result<Actor, InvalidValue> {
    let operator = operator.filter(|o| !o.trim().is_empty());
    if let Some(o) = &operator {
        model::check_free_text("operator", o)?;
    }
    Ok(Actor {
        uid,
        operator,
        ..Actor::default()
    })
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

/// The answer to a listing: how many, and the entries.
fn listing<T: serde::Serialize>(what: &str, list: &[T]) -> Response {
    Response::success(format!("{} {what}", list.len())).with_data(&list)
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
            | Request::TokenAdd { .. }
            | Request::TokenRevoke { .. }
    )
}
