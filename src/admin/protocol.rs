//! The admin socket protocol, shared by the daemon and `liberactl`: one JSON
//! request per line, one JSON response per line.
//!
//! ```text
//! → {"cmd":"release","contract":"1234","reason":"promised payment","operator":"ana"}
//! ← {"ok":true,"message":"contract 1234 released until 2026-11-28 00:00 America/Sao_Paulo",...}
//! ← {"ok":false,"code":"cooldown","message":"...","next_allowed":"2026-12-27"}
//! ```

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Role, TokenInfo, WriteStatus};
use crate::policy::{ContractState, Parameters};

/// Longest request line the daemon reads; longer ones are refused.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;
/// Largest import file the daemon accepts, over all its chunks.
pub const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;
/// Size of the import chunks `liberactl` sends (well under a line).
pub const IMPORT_CHUNK_BYTES: usize = 32 * 1024;
/// Entries listed when a request gives no limit.
pub const DEFAULT_LIMIT: u32 = 50;
/// Most entries one listing returns.
pub const MAX_LIMIT: u32 = 10_000;

/// A request to the daemon. `operator` is the name the client gives; the
/// daemon records it beside the uid the kernel reports for the connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Answers with the daemon's version and time zone.
    Ping,
    ContractAdd {
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        state: Option<ContractState>,
        #[serde(default)]
        operator: Option<String>,
    },
    ContractState {
        id: String,
        state: ContractState,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        operator: Option<String>,
    },
    ContractShow {
        id: String,
    },
    /// Contracts, a page at a time (ids ordered as numbers).
    ContractList {
        #[serde(default)]
        state: Option<ContractState>,
        /// The last id of the previous page.
        #[serde(default)]
        after: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    LoginAdd {
        username: String,
        contract: String,
        /// The password, or instead `nt_hash`: its NT hash, 32 hex digits.
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        nt_hash: Option<String>,
        /// Reply attributes, `Name = value`.
        #[serde(default)]
        attributes: Vec<String>,
        #[serde(default)]
        operator: Option<String>,
    },
    LoginRemove {
        username: String,
        #[serde(default)]
        operator: Option<String>,
    },
    LoginShow {
        username: String,
    },
    Release {
        contract: String,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        operator: Option<String>,
        /// Only answer whether the release would be allowed.
        #[serde(default)]
        dry_run: bool,
        /// Wait (bounded) for the NAS's answers to the enforcement.
        #[serde(default)]
        wait: bool,
    },
    Revoke {
        contract: String,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        operator: Option<String>,
        #[serde(default)]
        wait: bool,
    },
    Releases {
        #[serde(default)]
        contract: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    Audit {
        #[serde(default)]
        limit: Option<u32>,
    },
    ParamsShow,
    ParamsSet {
        name: String,
        value: Scalar,
        #[serde(default)]
        operator: Option<String>,
    },
    /// Sessions from accounting, newest first.
    Sessions {
        #[serde(default)]
        contract: Option<String>,
        /// Only sessions still open.
        #[serde(default)]
        online: bool,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// The configured NAS clients and their counters.
    NasList,
    /// Enforcement jobs (CoA / Disconnect), newest first.
    Coa {
        #[serde(default)]
        contract: Option<String>,
        /// Only those that failed.
        #[serde(default)]
        failed: bool,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Starts an import on this connection; the file follows in chunks.
    ImportBegin {
        #[serde(default)]
        operator: Option<String>,
    },
    /// The next piece of the CSV text.
    ImportChunk {
        data: String,
    },
    /// Checks the whole file and applies it in one transaction: all of it,
    /// or with `skip_invalid` the good rows only.
    ImportCommit {
        #[serde(default)]
        skip_invalid: bool,
    },
    /// Drops the import in progress on this connection.
    ImportAbort,
    /// Makes an HTTP API token; the answer carries it, once.
    TokenAdd {
        name: String,
        role: Role,
        /// The last local date it may be used; none: until revoked.
        #[serde(default)]
        expires: Option<NaiveDate>,
        #[serde(default)]
        operator: Option<String>,
    },
    /// The HTTP API tokens, never the tokens themselves.
    TokenList,
    /// Revokes an HTTP API token.
    TokenRevoke {
        name: String,
        #[serde(default)]
        operator: Option<String>,
    },
}

impl Request {
    /// The request's `cmd` name.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::ContractAdd { .. } => "contract_add",
            Request::ContractState { .. } => "contract_state",
            Request::ContractShow { .. } => "contract_show",
            Request::ContractList { .. } => "contract_list",
            Request::LoginAdd { .. } => "login_add",
            Request::LoginRemove { .. } => "login_remove",
            Request::LoginShow { .. } => "login_show",
            Request::Release { .. } => "release",
            Request::Revoke { .. } => "revoke",
            Request::Releases { .. } => "releases",
            Request::Audit { .. } => "audit",
            Request::ParamsShow => "params_show",
            Request::ParamsSet { .. } => "params_set",
            Request::Sessions { .. } => "sessions",
            Request::NasList => "nas_list",
            Request::Coa { .. } => "coa",
            Request::ImportBegin { .. } => "import_begin",
            Request::ImportChunk { .. } => "import_chunk",
            Request::ImportCommit { .. } => "import_commit",
            Request::ImportAbort => "import_abort",
            Request::TokenAdd { .. } => "token_add",
            Request::TokenList => "token_list",
            Request::TokenRevoke { .. } => "token_revoke",
        }
    }

    /// The `cmd` names the daemon knows.
    pub const COMMANDS: [&'static str; 24] = [
        "ping",
        "contract_add",
        "contract_state",
        "contract_show",
        "contract_list",
        "login_add",
        "login_remove",
        "login_show",
        "release",
        "revoke",
        "releases",
        "audit",
        "params_show",
        "params_set",
        "sessions",
        "nas_list",
        "coa",
        "import_begin",
        "import_chunk",
        "import_commit",
        "import_abort",
        "token_add",
        "token_list",
        "token_revoke",
    ];
}

/// A parameter value as a script may send it: `"3"`, `3` or `true`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Number(i64),
    Flag(bool),
}

impl Scalar {
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Flag(b) => b.to_string(),
        }
    }
}

/// The stable error codes of refusals. Scripts match on these.
pub mod code {
    // The application's refusals, the same on every front door.
    pub use crate::app::code::*;
    // The request itself is wrong.
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const UNKNOWN_COMMAND: &str = "unknown_command";
    pub const LINE_TOO_LONG: &str = "line_too_long";
    pub const TOO_LARGE: &str = "too_large";
    pub const NO_IMPORT: &str = "no_import";
    // The daemon could not do it now.
    pub const BUSY: &str = "busy";
}

/// One response line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    /// On refusal: the stable error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What happened, for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `already_released`: when the running release ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    /// `cooldown`: the first local date a release is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_allowed: Option<NaiveDate>,
    /// The daemon's time zone, in which dates are counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A listing that may go on: what to pass as `after` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
    /// The command's result; its shape depends on the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl Response {
    pub fn success(message: impl Into<String>) -> Response {
        Response {
            ok: true,
            message: Some(message.into()),
            ..Response::default()
        }
    }

    pub fn refusal(code: &str, message: impl Into<String>) -> Response {
        Response {
            ok: false,
            code: Some(code.to_owned()),
            message: Some(message.into()),
            ..Response::default()
        }
    }

    /// Attaches the command's result.
    pub fn with_data(mut self, data: &impl Serialize) -> Response {
        match serde_json::to_value(data) {
            Ok(value) => self.data = Some(value),
            Err(e) => {
                return Response::refusal(code::INTERNAL, format!("cannot encode the answer: {e}"));
            }
        }
        self
    }
}

/// `ping`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    pub version: String,
    pub timezone: String,
    /// Where RADIUS authentication is served (the bound address).
    #[serde(default)]
    pub radius_auth: Option<String>,
    /// Where RADIUS accounting is served.
    #[serde(default)]
    pub radius_acct: Option<String>,
    /// Where `/metrics` is served, if anywhere.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Where the HTTP API is served, if anywhere.
    #[serde(default)]
    pub api: Option<String>,
    /// Whether the database takes writes, and if not, why and since when.
    #[serde(default)]
    pub database: Option<WriteStatus>,
}

/// `contract show`: the contract summary ("resumo do contrato").
pub use crate::app::ContractSummary;

/// `release` / `revoke`, `release --dry-run` and `contract state`.
pub use crate::app::{ReleaseOutcome, ReleasePreview, StateChangeView};

/// `import`: whether anything was written, the rows read, what was done,
/// and the rejected rows (the first thousand listed, all counted).
pub type ImportReport = crate::import::ImportOutcome;

/// A token just made: the token, shown this once, and what is kept of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MadeToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// `params show` / `params set`.
pub type ParamsView = Parameters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_from_json() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"release","contract":"1234","dry_run":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Release {
                contract: "1234".into(),
                reason: String::new(),
                operator: None,
                dry_run: true,
                wait: false,
            }
        );
        let r: Request =
            serde_json::from_str(r#"{"cmd":"params_set","name":"release_days","value":3}"#)
                .unwrap();
        assert!(matches!(
            r,
            Request::ParamsSet {
                value: Scalar::Number(3),
                ..
            }
        ));
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_errors() {
        for bad in [
            r#"{"cmd":"release","contract":"1","colour":"red"}"#,
            r#"{"cmd":"release","contract":1234}"#,
            r#"{"cmd":"contract_state","id":"1","state":"bloqueado"}"#,
            r#"{"cmd":"release"}"#,
            r#"{"cmd":"fly"}"#,
            r#"{"contract":"1"}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_command_name_is_listed() {
        for name in Request::COMMANDS {
            let line = format!(r#"{{"cmd":"{name}"}}"#);
            let err = serde_json::from_str::<Request>(&line)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(!err.contains("unknown variant"), "{name}: {err}");
        }
    }

    #[test]
    fn responses_leave_out_what_they_do_not_carry() {
        let r = Response::refusal(code::COOLDOWN, "later");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"ok":false,"code":"cooldown","message":"later"}"#
        );
    }
}
