//! The records liberad keeps (contracts, logins, releases, audit entries) and
//! the checks every value from outside passes before it is stored.
//!
//! The same types travel over the admin socket, so the daemon and `liberactl`
//! agree on them by construction.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::{ContractState, Profile};

/// Longest contract id accepted (ids come from the billing system).
pub const MAX_CONTRACT_ID: usize = 64;
/// Longest contract name.
pub const MAX_NAME: usize = 200;
/// RADIUS User-Name fits in one attribute: at most 253 bytes.
pub const MAX_USERNAME: usize = 253;
/// PAP carries at most 128 bytes of password (RFC 2865 §5.2).
pub const MAX_PASSWORD: usize = 128;
/// Longest free text (reason, operator name, audit detail field).
pub const MAX_TEXT: usize = 500;
/// Most reply attributes one login may carry.
pub const MAX_REPLY_ATTRIBUTES: usize = 64;

/// A value that does not pass the checks of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidValue {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> InvalidValue {
    InvalidValue {
        field,
        problem: problem.into(),
    }
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), InvalidValue> {
    if value.len() > max {
        return Err(invalid(field, format!("longer than {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains a control character"));
    }
    Ok(())
}

/// A contract id as the billing system knows it: 1 to 64 printable
/// characters without spaces.
pub fn check_contract_id(id: &str) -> Result<(), InvalidValue> {
    if id.is_empty() {
        return Err(invalid("contract id", "is empty"));
    }
    check_text("contract id", id, MAX_CONTRACT_ID)?;
    if id.chars().any(char::is_whitespace) {
        return Err(invalid("contract id", format!("{id:?} contains a space")));
    }
    Ok(())
}

/// A customer's name: free text without control characters.
pub fn check_name(name: &str) -> Result<(), InvalidValue> {
    check_text("name", name, MAX_NAME)
}

/// A reason or operator name: free text without control characters.
pub fn check_free_text(field: &'static str, text: &str) -> Result<(), InvalidValue> {
    check_text(field, text, MAX_TEXT)
}

/// A login (RADIUS User-Name): 1 to 253 bytes, no control characters.
pub fn check_username(username: &str) -> Result<(), InvalidValue> {
    if username.is_empty() {
        return Err(invalid("username", "is empty"));
    }
    check_text("username", username, MAX_USERNAME)
}

/// A contract id that passed [`check_contract_id`]: made once, where a
/// request arrives, and trusted from there on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ContractId(String);

impl ContractId {
    pub fn parse(id: impl Into<String>) -> Result<ContractId, InvalidValue> {
        let id = id.into();
        check_contract_id(&id)?;
        Ok(ContractId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ContractId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A login's name (RADIUS User-Name) that passed [`check_username`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(username: impl Into<String>) -> Result<Username, InvalidValue> {
        let username = username.into();
        check_username(&username)?;
        Ok(Username(username))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API token's name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check_token_name(name: &str) -> Result<(), InvalidValue> {
    if name.is_empty() || name.len() > 64 {
        return Err(invalid("token name", "must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            "token name",
            format!("{name:?}: only letters, digits, '.', '_' and '-'"),
        ));
    }
    Ok(())
}

/// What an API token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every read.
    Read,
    /// Read, release and revoke: what a bot or a support desk needs.
    Release,
    /// Read, contracts, logins, states and import: what a billing system
    /// needs.
    Billing,
    /// Everything, parameters included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Read, Role::Release, Role::Billing, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Release => "release",
            Role::Billing => "billing",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Role, InvalidValue> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                invalid(
                    "role",
                    format!("{s:?} is not one (read, release, billing or admin)"),
                )
            })
    }
}

/// An API token as operators see it: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A login's password: 1 to 128 bytes, the most PAP can carry.
pub fn check_password(password: &str) -> Result<(), InvalidValue> {
    if password.is_empty() {
        return Err(invalid("password", "is empty"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(invalid(
            "password",
            format!("longer than {MAX_PASSWORD} bytes"),
        ));
    }
    if password.contains(['\0', '\n', '\r']) {
        return Err(invalid("password", "contains a NUL or line break"));
    }
    Ok(())
}

/// A login's secret as liberad keeps it: the password itself (PAP, CHAP,
/// MS-CHAPv2), or only its NT hash, MD4 of the password in UTF-16LE, as
/// Windows and many billing systems keep it (PAP and MS-CHAPv2; CHAP needs
/// the password itself).
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    Cleartext(String),
    NtHash([u8; 16]),
}

impl Password {
    /// A password as given, checked.
    pub fn cleartext(password: &str) -> Result<Password, InvalidValue> {
        check_password(password)?;
        Ok(Password::Cleartext(password.to_owned()))
    }

    /// An NT hash as 32 hexadecimal digits (either case).
    pub fn nt_hash(hex: &str) -> Result<Password, InvalidValue> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 || !bytes.iter().all(u8::is_ascii_hexdigit) {
            return Err(invalid("nt_hash", "must be 32 hexadecimal digits"));
        }
        let mut hash = [0u8; 16];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| invalid("nt_hash", "must be 32 hexadecimal digits"))?;
        }
        Ok(Password::NtHash(hash))
    }

    /// Exactly one of a password and an NT hash, as a request or an import
    /// row gives them.
    pub fn either(password: Option<&str>, nt_hash: Option<&str>) -> Result<Password, InvalidValue> {
        match (password, nt_hash) {
            (Some(p), None) => Password::cleartext(p),
            (None, Some(h)) => Password::nt_hash(h),
            (None, None) => Err(invalid(
                "password",
                "is empty (give a password or an NT hash)",
            )),
            (Some(_), Some(_)) => Err(invalid(
                "password",
                "give either a password or an NT hash, not both",
            )),
        }
    }

    /// The `password_type` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Password::Cleartext(_) => "cleartext",
            Password::NtHash(_) => "nt_hash",
        }
    }

    /// The `password` column: the password, or the hash in lower-case hex.
    pub fn stored(&self) -> String {
        match self {
            Password::Cleartext(p) => p.clone(),
            Password::NtHash(h) => h.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// Reads the two columns back.
    pub fn from_stored(kind: &str, text: &str) -> Result<Password, InvalidValue> {
        match kind {
            "cleartext" => Ok(Password::Cleartext(text.to_owned())),
            "nt_hash" => Password::nt_hash(text),
            other => Err(invalid(
                "password_type",
                format!("{other:?} is not cleartext or nt_hash"),
            )),
        }
    }
}

/// Never shows the secret.
impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password::{}(..)", self.kind())
    }
}

/// One RADIUS reply attribute written as text: `Name = value`.
///
/// Only the form is checked here; names and value types are checked against
/// the RADIUS dictionaries by the RADIUS side.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReplyAttribute {
    pub name: String,
    pub value: String,
}

impl FromStr for ReplyAttribute {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_text("attribute", s, MAX_TEXT)?;
        let Some((name, value)) = s.split_once('=') else {
            return Err(invalid(
                "attribute",
                format!("{s:?} is not of the form 'Name = value'"),
            ));
        };
        let name = name.trim();
        let value = unquote(value.trim());
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !name_ok {
            return Err(invalid(
                "attribute",
                format!("{name:?} is not an attribute name"),
            ));
        }
        if value.is_empty() {
            return Err(invalid("attribute", format!("{name} has no value")));
        }
        Ok(ReplyAttribute {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

impl fmt::Display for ReplyAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.name, self.value)
    }
}

impl TryFrom<String> for ReplyAttribute {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ReplyAttribute> for String {
    fn from(a: ReplyAttribute) -> String {
        a.to_string()
    }
}

/// Checks a list of reply attributes as a whole.
pub fn check_reply(reply: &[ReplyAttribute]) -> Result<(), InvalidValue> {
    if reply.len() > MAX_REPLY_ATTRIBUTES {
        return Err(invalid(
            "attributes",
            format!("more than {MAX_REPLY_ATTRIBUTES} reply attributes"),
        ));
    }
    Ok(())
}

/// A contract as liberad knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub id: String,
    pub name: String,
    pub state: ContractState,
    pub state_changed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A login (PPPoE / hotspot username) of a contract. The password never
/// leaves the store through this type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub username: String,
    pub contract_id: String,
    pub reply: Vec<ReplyAttribute>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a release ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// It ran to its end instant.
    Expired,
    /// The contract became active (payment) while it ran.
    Unblocked,
    /// An operator ended it early (or the contract was cancelled).
    Revoked,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Unblocked => "unblocked",
            EndReason::Revoked => "revoked",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "expired" => Ok(EndReason::Expired),
            "unblocked" => Ok(EndReason::Unblocked),
            "revoked" => Ok(EndReason::Revoked),
            other => Err(format!("unknown end reason {other:?}")),
        }
    }
}

/// One temporary release of a contract. Rows are history: once written,
/// only the end is ever recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: i64,
    pub contract_id: String,
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Operator name given with the request.
    pub operator: String,
    pub reason: String,
    /// Unix uid of the admin socket peer that asked for it.
    pub actor_uid: Option<u32>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<EndReason>,
    /// Who ended it early (operator name).
    pub ended_by: Option<String>,
    /// Why it ended early, in the operator's words.
    pub end_note: Option<String>,
}

impl Release {
    /// Whether the release still gives access at `now`.
    pub fn is_running(&self, now: DateTime<Utc>) -> bool {
        self.ended_at.is_none() && self.ends_at > now
    }

    /// How and when the release ended as of `now`, counting a release past
    /// its end as expired even before that end has been recorded.
    pub fn ending(&self, now: DateTime<Utc>) -> Option<(EndReason, DateTime<Utc>)> {
        match (self.end_reason, self.ended_at) {
            (Some(reason), Some(at)) => Some((reason, at)),
            _ if self.ends_at <= now => Some((EndReason::Expired, self.ends_at)),
            _ => None,
        }
    }
}

/// One line of the append-only audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Unix uid of the admin socket peer.
    pub actor_uid: Option<u32>,
    /// Operator name given with the request.
    pub operator: Option<String>,
    /// The API token the request presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The API client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
    /// What was asked: `release`, `contract_state`, `params_set`, ...
    pub action: String,
    pub contract_id: Option<String>,
    /// What exactly, in words.
    pub detail: String,
    /// `ok`, or the refusal code.
    pub outcome: String,
}

/// A subscriber session on a NAS, as accounting reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: i64,
    pub nas_name: String,
    /// The device: NAS-Identifier, NAS-IP-Address or source address.
    pub nas_identity: String,
    /// Where the NAS's packets come from.
    pub nas_address: String,
    pub nas_ip_address: Option<String>,
    pub nas_identifier: Option<String>,
    pub username: String,
    pub contract_id: Option<String>,
    pub acct_session_id: String,
    pub framed_ip_address: Option<String>,
    pub calling_station_id: Option<String>,
    /// NAS-Port: the port (pppd: the unit) on the NAS.
    pub nas_port: Option<u32>,
    pub nas_port_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub session_time: Option<u32>,
    pub input_octets: u64,
    pub output_octets: u64,
    pub terminate_cause: Option<String>,
    /// Whether its NAS takes CoA and Disconnect; if not, a change reaches
    /// the session when it connects again.
    pub takes_coa: bool,
}

/// Where an enforcement job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Queued, not sent yet.
    Pending,
    /// Sent, waiting for the NAS's answer.
    Sent,
    /// The NAS confirmed (CoA-ACK / Disconnect-ACK).
    Acked,
    /// The NAS refused (CoA-NAK / Disconnect-NAK), see the Error-Cause.
    Nak,
    /// No answer after every retransmission.
    Timeout,
    /// A newer change for the same session replaced it before it was sent.
    Superseded,
    /// Not sent: the session or its NAS is gone.
    Dropped,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Sent => "sent",
            JobState::Acked => "acked",
            JobState::Nak => "nak",
            JobState::Timeout => "timeout",
            JobState::Superseded => "superseded",
            JobState::Dropped => "dropped",
        }
    }

    /// Whether the job is done, one way or the other.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Sent)
    }

    /// Whether the job ended without the NAS doing what it was told.
    pub fn is_failure(self) -> bool {
        matches!(self, JobState::Nak | JobState::Timeout | JobState::Dropped)
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            JobState::Pending,
            JobState::Sent,
            JobState::Acked,
            JobState::Nak,
            JobState::Timeout,
            JobState::Superseded,
            JobState::Dropped,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

/// The kind of RFC 5176 request a job sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Coa,
    Disconnect,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Coa => "coa",
            RequestKind::Disconnect => "disconnect",
        }
    }
}

impl FromStr for RequestKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "coa" => Ok(RequestKind::Coa),
            "disconnect" => Ok(RequestKind::Disconnect),
            other => Err(format!("unknown request kind {other:?}")),
        }
    }
}

/// A CoA or Disconnect owed to an online session, as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcementJob {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub contract_id: String,
    pub session_id: i64,
    pub username: String,
    pub nas_name: String,
    pub acct_session_id: String,
    /// The profile the session is moved to (`reject`: cancelled contract).
    pub profile: String,
    /// What caused it.
    pub cause: String,
    pub state: JobState,
    pub kind: Option<RequestKind>,
    /// Whether a CoA fell back to Disconnect.
    pub fallback: bool,
    pub sends: u32,
    pub error_cause: Option<u32>,
    pub outcome: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Who asks for a change: on the admin socket, the uid the kernel reports
/// for the peer; on the HTTP API, the token's name and the client's
/// address; and the operator name the client gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    pub uid: Option<u32>,
    pub operator: Option<String>,
    /// The name of the API token the request presented.
    pub token: Option<String>,
    /// The address of the API client.
    pub address: Option<String>,
}

impl Actor {
    /// The name written on a release: the operator's, else `uid N`.
    pub fn display_name(&self) -> String {
        match (&self.operator, self.uid) {
            (Some(name), _) => name.clone(),
            (None, Some(uid)) => format!("uid {uid}"),
            (None, None) => match &self.token {
                Some(token) => format!("token {token}"),
                None => "unknown".to_owned(),
            },
        }
    }
}

// The records RADIUS, the enforcer and the store exchange.

/// What `ping` and the metrics show of the database's writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteStatus {
    pub writable: bool,
    /// Why writes fail, in a few words ("disk full", "read-only").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// The last error, as the database gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Since when writes fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Writes that failed since then.
    #[serde(default)]
    pub failures: u64,
    /// Writes refused since the daemon started, by cause.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refused_by_cause: BTreeMap<String, u64>,
}

/// An online session as the enforcer addresses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTarget {
    pub nas_name: String,
    /// Where the NAS's accounting came from.
    pub nas_address: String,
    pub username: String,
    pub acct_session_id: String,
    pub framed_ip_address: Option<String>,
    pub nas_ip_address: Option<String>,
    pub nas_identifier: Option<String>,
}

/// An enforcement job as the enforcer works on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxJob {
    pub id: i64,
    pub session_id: i64,
    pub contract_id: String,
    /// The profile to move to; `None` for a cancelled contract.
    pub profile: Option<Profile>,
    pub kind: Option<RequestKind>,
    pub fallback: bool,
    /// The request as sent, once sent.
    pub packet: Option<Vec<u8>>,
    pub sends: u32,
    /// What happened so far (a CoA that fell back says why).
    pub outcome: Option<String>,
    pub target: SessionTarget,
}

/// An instance's hold on the jobs it sends, until a moment: renewed with
/// each send, so that another instance takes over only the jobs of one that
/// stopped sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub instance: String,
    pub until: DateTime<Utc>,
}

/// A job about to be sent: the request built for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobClaim<'a> {
    pub id: i64,
    pub kind: RequestKind,
    pub packet: &'a [u8],
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobResult {
    pub state: JobState,
    pub outcome: String,
    pub error_cause: Option<u32>,
    /// The NAS said the session does not exist (Error-Cause 503): close
    /// our record of it.
    pub close_session: bool,
}

/// An open session of a contract and the last enforcement sent to it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionEnforcement {
    pub session: Session,
    pub last_job: Option<EnforcementJob>,
}

/// What the RADIUS server needs to decide an Access-Request for a login.
#[derive(Clone, Debug)]
pub struct AuthRecord {
    pub username: String,
    pub password: Password,
    pub contract_id: String,
    pub state: ContractState,
    /// End of the contract's release not yet recorded as ended, if any.
    pub open_release_ends_at: Option<DateTime<Utc>>,
    pub reply: Vec<ReplyAttribute>,
}

/// What an accounting packet says happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccountingKind {
    #[default]
    Start,
    Interim,
    Stop,
    /// Accounting-On: the NAS (re)started; none of its sessions survive.
    On,
    /// Accounting-Off: the NAS is stopping; all its sessions end.
    Off,
}

/// One accounting packet's worth of change to the sessions table. The
/// default is a Start with nothing but its key left to fill in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountingEvent {
    pub kind: AccountingKind,
    /// When it happened (arrival minus Acct-Delay-Time).
    pub at: DateTime<Utc>,
    pub nas_name: String,
    pub nas_identity: String,
    pub nas_address: String,
    pub nas_ip_address: Option<String>,
    pub nas_identifier: Option<String>,
    pub username: String,
    pub acct_session_id: String,
    pub framed_ip_address: Option<String>,
    pub calling_station_id: Option<String>,
    pub nas_port: Option<u32>,
    pub nas_port_id: Option<String>,
    /// The NAS entry says `coa_mode = "none"`: no CoA or Disconnect is
    /// queued for the session.
    pub nas_without_coa: bool,
    pub session_time: Option<u32>,
    pub input_octets: u64,
    pub output_octets: u64,
    pub terminate_cause: Option<String>,
}

impl AccountingEvent {
    /// The key of the session among the open ones: what identifies a
    /// session on its NAS, as FreeRADIUS's `acct_unique` takes it (the NAS,
    /// User-Name, Acct-Session-Id, NAS-Port and NAS-Port-Id), hashed. Two
    /// subscribers given the same Acct-Session-Id are two sessions.
    pub fn session_key(&self) -> String {
        use md5::Digest;
        use std::fmt::Write;
        let mut hash = md5::Md5::new();
        // Each field length-prefixed, an absent one marked apart, so that
        // no two lists of fields run together into the same bytes.
        let mut field = |value: Option<&[u8]>| match value {
            Some(bytes) => {
                hash.update((bytes.len() as u64).to_be_bytes());
                hash.update(bytes);
            }
            None => hash.update(u64::MAX.to_be_bytes()),
        };
        field(Some(self.nas_name.as_bytes()));
        field(Some(self.nas_identity.as_bytes()));
        field(Some(self.username.as_bytes()));
        field(Some(self.acct_session_id.as_bytes()));
        field(self.nas_port.map(u32::to_be_bytes).as_ref().map(|b| &b[..]));
        field(self.nas_port_id.as_deref().map(str::as_bytes));
        let mut key = String::with_capacity(32);
        for byte in hash.finalize() {
            let _ = write!(key, "{byte:02x}");
        }
        key
    }

    /// The key sessions had before they were told apart by user and port:
    /// a session recorded then is found under it once, and re-keyed.
    pub fn legacy_session_key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.nas_name, self.nas_identity, self.acct_session_id
        )
    }
}

/// A configured NAS and its counters, as `nas list` shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NasView {
    pub name: String,
    pub address: String,
    pub require_message_authenticator: crate::config::MessageAuthenticatorRule,
    /// With `"auto"`: the addresses it has been seen signing from, from
    /// which Message-Authenticator is now required.
    #[serde(default)]
    pub signing_sources: Vec<String>,
    pub limit_proxy_state: bool,
    pub coa_port: u16,
    pub coa_mode: crate::config::CoaMode,
    pub counters: CounterSnapshot,
}

/// All NAS clients, and what came from addresses that are none of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NasReport {
    pub nas: Vec<NasView>,
    pub unknown_clients: CounterSnapshot,
}

/// Counters at one moment, as the admin socket shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSnapshot {
    pub access_requests: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub accounting_requests: u64,
    pub accounting_responses: u64,
    pub status_server: u64,
    /// Retransmissions answered from the duplicate cache or ignored.
    pub duplicates: u64,
    /// Packets dropped, by reason (only reasons that happened).
    pub drops: BTreeMap<String, u64>,
}

impl CounterSnapshot {
    pub fn dropped(&self) -> u64 {
        self.drops.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_attributes_parse_and_print() {
        let a: ReplyAttribute = "Mikrotik-Rate-Limit = 10M/10M".parse().unwrap();
        assert_eq!(a.name, "Mikrotik-Rate-Limit");
        assert_eq!(a.value, "10M/10M");
        assert_eq!(a.to_string(), "Mikrotik-Rate-Limit = 10M/10M");
        let quoted: ReplyAttribute = "Reply-Message=\"a = b; c\"".parse().unwrap();
        assert_eq!(quoted.value, "a = b; c");
        for bad in [
            "no equals",
            " = value",
            "Name = ",
            "Na me = x",
            "A = b\nC = d",
        ] {
            assert!(bad.parse::<ReplyAttribute>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(check_contract_id("1234").is_ok());
        assert!(check_contract_id("").is_err());
        assert!(check_contract_id("12 34").is_err());
        assert!(check_contract_id(&"9".repeat(65)).is_err());
        assert!(check_username("maria@isp").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username(&"u".repeat(254)).is_err());
        assert!(check_password(&"p".repeat(128)).is_ok());
        assert!(check_password(&"p".repeat(129)).is_err());
        assert!(check_password("").is_err());
        let hash = Password::nt_hash("44EBBA8D5312B8D611474411f56989ae").unwrap();
        assert_eq!(hash.stored(), "44ebba8d5312b8d611474411f56989ae");
        assert_eq!(
            Password::from_stored("nt_hash", &hash.stored()),
            Ok(hash.clone())
        );
        assert!(Password::nt_hash("44EBBA8D5312B8D611474411F56989A").is_err());
        assert!(Password::nt_hash("44EBBA8D5312B8D611474411F56989AG").is_err());
        assert!(Password::nt_hash("+4EBBA8D5312B8D611474411F56989AE").is_err());
        assert!(Password::either(None, None).is_err());
        assert!(Password::either(Some("a"), Some(&hash.stored())).is_err());
        assert_eq!(format!("{hash:?}"), "Password::nt_hash(..)");
        assert!(Password::from_stored("md5", "x").is_err());
        assert!(check_name("Maria Conceição").is_ok());
        assert!(check_name("bad\u{7}bell").is_err());
    }

    #[test]
    fn a_release_past_its_end_counts_as_expired() {
        let start = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let end = DateTime::from_timestamp(1_086_400, 0).unwrap();
        let release = Release {
            id: 1,
            contract_id: "1".into(),
            started_at: start,
            ends_at: end,
            operator: "ana".into(),
            reason: String::new(),
            actor_uid: None,
            ended_at: None,
            end_reason: None,
            ended_by: None,
            end_note: None,
        };
        assert!(release.is_running(start));
        assert_eq!(release.ending(start), None);
        assert!(!release.is_running(end));
        assert_eq!(release.ending(end), Some((EndReason::Expired, end)));
    }
}
