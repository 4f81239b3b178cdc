//! The HTTP API under `/v1`, for billing systems, bots and support desks on
//! other hosts. Each resource is an operation of the application
//! ([`crate::app`]), called with the token a request presents (`Authorization:
//! Bearer lbr_…`, made by `liberactl token add`). Every GET takes any
//! role; a write takes the roles [`Need`] names, else 403 `forbidden`.
//! Each write is audited with the token's name and the client's address.
//!
//! Refusals are JSON `{"code", "message"}` with the application's stable
//! code (and `ends_at` / `next_allowed` where the rule gives them), and an
//! HTTP status chosen once, in [`status`].

use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::app::{self, App, Enforced, ReleaseOutcome, ReleasePreview, StateChangeView};
use crate::model::{
    self, Actor, Contract, ContractId, InvalidValue, Login, Release, ReplyAttribute, Role,
    TokenInfo, Username, WriteStatus,
};
use crate::policy::{ContractState, Parameter, ParameterName, Parameters};

/// The API's own codes, beside the application's.
const INVALID_REQUEST: &str = "invalid_request";

/// The largest body a request other than an import may have.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Items in a list page when the request names no `limit`, and the most.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;

/// `GET /v1/health`: whether liberad is up (always, if it answers) and
/// ready (its database answers reads and takes writes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub live: bool,
    pub ready: bool,
    pub version: &'static str,
    pub database: DatabaseHealth,
}

/// The database, as the health answer tells it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatabaseHealth {
    /// Whether a read worked just now.
    pub readable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_error: Option<String>,
    /// Whether it takes writes, and if not, why and since when.
    pub writes: WriteStatus,
}

/// The API's routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/contracts", get(contracts))
        .route("/v1/contracts/{id}", get(contract).put(put_contract))
        .route("/v1/contracts/{id}/state", post(set_state))
        .route("/v1/contracts/{id}/release", post(release))
        .route("/v1/contracts/{id}/revoke", post(revoke))
        .route(
            "/v1/logins/{username}",
            get(login).put(put_login).delete(remove_login),
        )
        .route("/v1/releases", get(releases))
        .route("/v1/audit", get(audit))
        .route("/v1/parameters", get(parameters))
        .route("/v1/parameters/{name}", put(set_parameter))
        .route("/v1/sessions", get(sessions))
        .route("/v1/enforcement", get(enforcement))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({
                    "code": "not_found",
                    "message": "no such resource; the API is under /v1",
                })),
            )
        })
        .with_state(app)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let read_error = app.check_reads().await.err().map(|e| e.to_string());
    let writes = app.write_status();
    let ready = read_error.is_none() && writes.writable;
    let health = Health {
        live: true,
        ready,
        version: env!("CARGO_PKG_VERSION"),
        database: DatabaseHealth {
            readable: read_error.is_none(),
            read_error,
            writes,
        },
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health)).into_response()
}

/// A refusal: the status, and the body every refusal has.
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    ends_at: Option<DateTime<Utc>>,
    next_allowed: Option<NaiveDate>,
}

/// The body of every refusal.
#[derive(Serialize)]
struct RefusalBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_allowed: Option<NaiveDate>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            ends_at: None,
            next_allowed: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Json(RefusalBody {
            code: self.code,
            message: &self.message,
            ends_at: self.ends_at,
            next_allowed: self.next_allowed,
        });
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"liberad\""),
            );
        }
        response
    }
}

/// The HTTP status of each of the application's refusals.
pub fn status(error: &app::Error) -> StatusCode {
    use app::Error as E;
    match error {
        E::ContractNotFound(_) | E::LoginNotFound(_) | E::TokenNotFound(_) => StatusCode::NOT_FOUND,
        // The release rules' own "no such contract".
        E::Refused(r) if r.code() == app::code::NOT_FOUND => StatusCode::NOT_FOUND,
        // A rule refused it, or it is already so.
        E::Refused(_)
        | E::ContractExists(_)
        | E::LoginExists(_)
        | E::TokenExists(_)
        | E::NotReleased(_) => StatusCode::CONFLICT,
        E::Invalid(_) | E::InvalidParameter(_) | E::InvalidFile(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        E::Store(e) if e.outage_cause().is_some() => StatusCode::SERVICE_UNAVAILABLE,
        E::Store(_) | E::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The answer to an operation the application refused or could not do.
fn refused(app: &App, error: &app::Error, contract: Option<&ContractId>) -> Refusal {
    error.log();
    Refusal {
        status: status(error),
        code: error.code(),
        message: error.message(contract, app.timezone()),
        ends_at: error.ends_at(),
        next_allowed: error.next_allowed(),
    }
}

fn unauthorized(message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn invalid(app: &App, e: InvalidValue) -> Refusal {
    refused(app, &e.into(), None)
}

/// A body or query that is not what the endpoint takes: 422 (413 when it
/// is over the cap), with what was wrong.
fn bad_body(e: JsonRejection) -> Refusal {
    let status = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        INVALID_REQUEST
    };
    Refusal::new(status, code, e.body_text())
}

fn bad_query(e: QueryRejection) -> Refusal {
    Refusal::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        INVALID_REQUEST,
        e.body_text(),
    )
}

/// The token a request presented, checked, and the client's address.
pub struct Caller(pub TokenInfo, pub Option<SocketAddr>);

/// The roles a write is open to (admin is open to all).
#[derive(Clone, Copy)]
enum Need {
    /// Release and revoke: `release`.
    Release,
    /// Contracts, logins, states, import: `billing`.
    Billing,
    /// Parameters: `admin` only.
    Admin,
}

impl Caller {
    /// The actor of a write the token's role allows, else 403.
    fn may(&self, need: Need, operator: Option<String>) -> Result<Actor, Refusal> {
        let role = self.0.role;
        let allowed = role == Role::Admin
            || matches!(
                (need, role),
                (Need::Release, Role::Release) | (Need::Billing, Role::Billing)
            );
        if !allowed {
            let needs = match need {
                Need::Release => "release or admin",
                Need::Billing => "billing or admin",
                Need::Admin => "admin",
            };
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {} has role {role}; this needs the role {needs}",
                    self.0.name
                ),
            ));
        }
        let operator = operator.filter(|o| !o.trim().is_empty());
        if let Some(o) = &operator {
            model::check_free_text("operator", o).map_err(|e| {
                Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    app::code::INVALID_VALUE,
                    e.to_string(),
                )
            })?;
        }
        Ok(Actor {
            uid: None,
            operator,
            token: Some(self.0.name.clone()),
            address: self.1.map(|a| a.ip().to_string()),
        })
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Caller, Refusal> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                unauthorized(
                    "this needs a token: Authorization: Bearer lbr_… (liberactl token add)",
                )
            })?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        match app.authenticate(presented.trim()).await {
            Ok(Ok(token)) => Ok(Caller(token, peer)),
            Ok(Err(why)) => Err(unauthorized(why.to_string())),
            Err(e) => Err(refused(app, &e, None)),
        }
    }
}

/// `GET /v1/contracts/{id}`: the contract summary (any role).
async fn contract(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<app::ContractSummary>, Refusal> {
    let id = ContractId::parse(id).map_err(|e| refused(&app, &e.into(), None))?;
    match app.contract_summary(&id).await {
        Ok(summary) => Ok(Json(summary)),
        Err(e) => Err(refused(&app, &e, Some(&id))),
    }
}

type Answer<T> = Result<Json<T>, Refusal>;

fn contract_id(app: &App, id: String) -> Result<ContractId, Refusal> {
    ContractId::parse(id).map_err(|e| invalid(app, e))
}

fn limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// `?state=&after=&limit=` of the contract list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractQuery {
    state: Option<ContractState>,
    after: Option<String>,
    limit: Option<u32>,
}

/// A page of contracts; `next_after` is the `after` of the next page.
#[derive(Serialize)]
struct ContractPageView {
    contracts: Vec<Contract>,
    next_after: Option<String>,
}

/// `GET /v1/contracts`: contracts in id order, a page at a time.
async fn contracts(
    State(app): State<Arc<App>>,
    _caller: Caller,
    query: Result<Query<ContractQuery>, QueryRejection>,
) -> Answer<ContractPageView> {
    let Query(q) = query.map_err(bad_query)?;
    let after = q.after.map(|a| contract_id(&app, a)).transpose()?;
    let page = app
        .contracts(q.state, after.as_ref(), limit(q.limit))
        .await
        .map_err(|e| refused(&app, &e, None))?;
    Ok(Json(ContractPageView {
        contracts: page.contracts,
        next_after: page.next_after,
    }))
}

/// The body of `PUT /v1/contracts/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutContractBody {
    name: String,
    state: Option<ContractState>,
    #[serde(default)]
    reason: String,
    operator: Option<String>,
}

/// What `PUT /v1/contracts/{id}` did.
#[derive(Serialize)]
struct PutContractView {
    contract: Contract,
    created: bool,
    /// When a state was given for an existing contract.
    #[serde(skip_serializing_if = "Option::is_none")]
    state_change: Option<StateChangeView>,
}

fn state_change_view(change: app::StateChange) -> StateChangeView {
    StateChangeView {
        sessions_told: change.jobs.len(),
        sessions_at_next_connection: change.at_next_connection,
        contract: change.contract,
        previous: change.previous,
        ended_release: change.ended_release,
    }
}

/// `PUT /v1/contracts/{id}`: creates the contract or brings it to the
/// name and state given (billing).
async fn put_contract(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<PutContractBody>, JsonRejection>,
) -> Result<(StatusCode, Json<PutContractView>), Refusal> {
    let Json(body) = body.map_err(bad_body)?;
    let actor = caller.may(Need::Billing, body.operator)?;
    let id = contract_id(&app, id)?;
    model::check_name(&body.name).map_err(|e| invalid(&app, e))?;
    model::check_free_text("reason", &body.reason).map_err(|e| invalid(&app, e))?;
    let put = app
        .put_contract(&actor, &id, &body.name, body.state, &body.reason)
        .await
        .map_err(|e| refused(&app, &e, Some(&id)))?;
    let status = if put.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(PutContractView {
            contract: put.contract,
            created: put.created,
            state_change: put.change.map(state_change_view),
        }),
    ))
}

/// The body of `POST /v1/contracts/{id}/state`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: ContractState,
    #[serde(default)]
    reason: String,
    operator: Option<String>,
}

/// `POST /v1/contracts/{id}/state`: payment, block, reduction or
/// cancellation (billing).
async fn set_state(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<StateBody>, JsonRejection>,
) -> Answer<StateChangeView> {
    let Json(body) = body.map_err(bad_body)?;
    let actor = caller.may(Need::Billing, body.operator)?;
    let id = contract_id(&app, id)?;
    model::check_free_text("reason", &body.reason).map_err(|e| invalid(&app, e))?;
    let change = app
        .set_contract_state(&actor, &id, body.state, &body.reason)
        .await
        .map_err(|e| refused(&app, &e, Some(&id)))?;
    Ok(Json(state_change_view(change)))
}

/// The body of a release or revoke (all of it optional).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    #[serde(default)]
    reason: String,
    operator: Option<String>,
    /// Only say whether the rules allow it and when it would end.
    #[serde(default)]
    dry_run: bool,
    /// Answer once the NAS have answered (bounded).
    #[serde(default)]
    wait: bool,
}

/// A release's answer: the release, or with `dry_run` its preview.
#[derive(Serialize)]
#[serde(untagged)]
enum ReleaseAnswer {
    Done(ReleaseOutcome),
    Preview(ReleasePreview),
}

/// An empty body is a body with nothing set.
fn optional_body(body: Result<Json<ReleaseBody>, JsonRejection>) -> Result<ReleaseBody, Refusal> {
    match body {
        Ok(Json(body)) => Ok(body),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(ReleaseBody::default()),
        Err(e) => Err(bad_body(e)),
    }
}

async fn outcome(app: &App, change: Enforced<Release>, wait: bool) -> ReleaseOutcome {
    let enforcement = app.enforcement_of(&change.jobs, wait).await;
    ReleaseOutcome {
        release: change.value,
        sessions_told: change.jobs.len(),
        sessions_at_next_connection: change.at_next_connection,
        enforcement,
    }
}

/// `POST /v1/contracts/{id}/release`: the liberação temporária (release).
async fn release(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ReleaseBody>, JsonRejection>,
) -> Result<(StatusCode, Json<ReleaseAnswer>), Refusal> {
    let body = optional_body(body)?;
    let actor = caller.may(Need::Release, body.operator)?;
    let id = contract_id(&app, id)?;
    model::check_free_text("reason", &body.reason).map_err(|e| invalid(&app, e))?;
    if body.dry_run {
        let grant = app
            .preview_release(&id)
            .await
            .map_err(|e| refused(&app, &e, Some(&id)))?;
        return Ok((
            StatusCode::OK,
            Json(ReleaseAnswer::Preview(ReleasePreview {
                contract: id.to_string(),
                starts_at: grant.starts_at,
                ends_at: grant.ends_at,
            })),
        ));
    }
    let released = app
        .release(&actor, &id, &body.reason)
        .await
        .map_err(|e| refused(&app, &e, Some(&id)))?;
    let done = outcome(&app, released, body.wait).await;
    Ok((StatusCode::CREATED, Json(ReleaseAnswer::Done(done))))
}

/// `POST /v1/contracts/{id}/revoke`: ends the running release now.
async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ReleaseBody>, JsonRejection>,
) -> Answer<ReleaseOutcome> {
    let body = optional_body(body)?;
    let actor = caller.may(Need::Release, body.operator)?;
    let id = contract_id(&app, id)?;
    model::check_free_text("reason", &body.reason).map_err(|e| invalid(&app, e))?;
    let revoked = app
        .revoke(&actor, &id, &body.reason)
        .await
        .map_err(|e| refused(&app, &e, Some(&id)))?;
    Ok(Json(outcome(&app, revoked, body.wait).await))
}

fn username(app: &App, name: String) -> Result<Username, Refusal> {
    Username::parse(name).map_err(|e| invalid(app, e))
}

/// `GET /v1/logins/{username}`.
async fn login(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Answer<Login> {
    let name = username(&app, name)?;
    let login = app
        .login(&name)
        .await
        .map_err(|e| refused(&app, &e, None))?;
    Ok(Json(login))
}

/// The body of `PUT /v1/logins/{username}`: the password or its NT hash.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutLoginBody {
    contract: String,
    password: Option<String>,
    nt_hash: Option<String>,
    /// Reply attributes, `Name=value` as in the CSV.
    #[serde(default)]
    attributes: Vec<String>,
    operator: Option<String>,
}

/// What `PUT /v1/logins/{username}` did.
#[derive(Serialize)]
struct PutLoginView {
    login: Login,
    created: bool,
}

/// `PUT /v1/logins/{username}`: adds the login or gives it these values
/// (billing).
async fn put_login(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<PutLoginBody>, JsonRejection>,
) -> Result<(StatusCode, Json<PutLoginView>), Refusal> {
    let Json(body) = body.map_err(bad_body)?;
    let actor = caller.may(Need::Billing, body.operator)?;
    let name = username(&app, name)?;
    let contract = contract_id(&app, body.contract)?;
    let password = model::Password::either(body.password.as_deref(), body.nt_hash.as_deref())
        .map_err(|e| invalid(&app, e))?;
    let reply = body
        .attributes
        .iter()
        .map(|a| a.parse::<ReplyAttribute>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&app, e))?;
    let put = app
        .put_login(&actor, &name, &contract, password, reply)
        .await
        .map_err(|e| refused(&app, &e, Some(&contract)))?;
    let status = if put.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(PutLoginView {
            login: put.login,
            created: put.created,
        }),
    ))
}

/// `?operator=` of a delete.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorQuery {
    operator: Option<String>,
}

/// `DELETE /v1/logins/{username}` (billing): the login it was.
async fn remove_login(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<OperatorQuery>, QueryRejection>,
) -> Answer<Login> {
    let Query(q) = query.map_err(bad_query)?;
    let actor = caller.may(Need::Billing, q.operator)?;
    let name = username(&app, name)?;
    let login = app
        .remove_login(&actor, &name)
        .await
        .map_err(|e| refused(&app, &e, None))?;
    Ok(Json(login))
}

/// `?contract=&limit=` of the release list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    contract: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/releases`: newest first.
async fn releases(
    State(app): State<Arc<App>>,
    _caller: Caller,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Answer<Vec<Release>> {
    let Query(q) = query.map_err(bad_query)?;
    let contract = q.contract.map(|c| contract_id(&app, c)).transpose()?;
    let list = app
        .releases(contract.as_ref(), limit(q.limit))
        .await
        .map_err(|e| refused(&app, &e, None))?;
    Ok(Json(list))
}

/// `?limit=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitQuery {
    limit: Option<u32>,
}

/// `GET /v1/audit`: newest first.
async fn audit(
    State(app): State<Arc<App>>,
    _caller: Caller,
    query: Result<Query<LimitQuery>, QueryRejection>,
) -> Answer<Vec<model::AuditEntry>> {
    let Query(q) = query.map_err(bad_query)?;
    let list = app
        .audit(limit(q.limit))
        .await
        .map_err(|e| refused(&app, &e, None))?;
    Ok(Json(list))
}

/// `GET /v1/parameters`.
async fn parameters(State(app): State<Arc<App>>, _caller: Caller) -> Answer<Parameters> {
    let p = app
        .parameters()
        .await
        .map_err(|e| refused(&app, &e, None))?;
    Ok(Json(p))
}

/// The body of `PUT /v1/parameters/{name}`: a JSON value, or its text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParameterBody {
    value: serde_json::Value,
    operator: Option<String>,
}

/// `PUT /v1/parameters/{name}` (admin): all the parameters after.
async fn set_parameter(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<ParameterBody>, JsonRejection>,
) -> Answer<Parameters> {
    let Json(body) = body.map_err(bad_body)?;
    let actor = caller.may(Need::Admin, body.operator)?;
    let value = match body.value {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    model::check_free_text("value", &value).map_err(|e| invalid(&app, e))?;
    let name: ParameterName = name
        .parse()
        .map_err(|e| refused(&app, &app::Error::InvalidParameter(e), None))?;
    let parameter = match Parameter::parse(name.as_str(), &value) {
        Ok(parameter) => parameter,
        Err(e) => {
            let e = app.refuse_parameter(&actor, name, &value, e).await;
            return Err(refused(&app, &e, None));
        }
    };
    let p = app
        .set_parameter(&actor, parameter)
        .await
        .map_err(|e| refused(&app, &e, None))?;
    Ok(Json(p))
}

/// `?contract=&online=&limit=` of the session list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionQuery {
    contract: Option<String>,
    #[serde(default)]
    online: bool,
    limit: Option<u32>,
}

/// `GET /v1/sessions`: newest first.
async fn sessions(
    State(app): State<Arc<App>>,
    _caller: Caller,
    query: Result<Query<SessionQuery>, QueryRejection>,
) -> Answer<Vec<model::Session>> {
    let Query(q) = query.map_err(bad_query)?;
    let contract = q.contract.map(|c| contract_id(&app, c)).transpose()?;
    let list = app
        .sessions(contract.as_ref(), q.online, limit(q.limit))
        .await
        .map_err(|e| refused(&app, &e, None))?;
    Ok(Json(list))
}

/// `?contract=&failed=&limit=` of the enforcement jobs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobQuery {
    contract: Option<String>,
    #[serde(default)]
    failed: bool,
    limit: Option<u32>,
}

/// `GET /v1/enforcement`: the CoA / Disconnect jobs, newest first.
async fn enforcement(
    State(app): State<Arc<App>>,
    _caller: Caller,
    query: Result<Query<JobQuery>, QueryRejection>,
) -> Answer<Vec<model::EnforcementJob>> {
    let Query(q) = query.map_err(bad_query)?;
    let contract = q.contract.map(|c| contract_id(&app, c)).transpose()?;
    let list = app
        .enforcement_jobs(contract.as_ref(), q.failed, limit(q.limit))
        .await
        .map_err(|e| refused(&app, &e, None))?;
    Ok(Json(list))
}
