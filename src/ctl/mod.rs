//! `liberactl`, the operators' command-line client of the admin socket.
//!
//! Exit codes, for scripts: 0 done; 1 refused by a rule (cooldown, already
//! released, unknown contract, ...); 2 usage error (bad arguments, a value
//! or file the daemon refused as invalid); 3 daemon unreachable; 4 the
//! daemon failed to do it (busy, internal error, its database down; for
//! `ping`: running, but its database refuses writes).

mod client;
mod output;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin::protocol::{Request, Response, Scalar, code};
use crate::config::{Config, ENV_OPERATOR, ENV_SOCKET};
use crate::model::Role;
use crate::policy::ContractState;
use client::Client;

/// Default admin socket, as in the shipped systemd unit.
const DEFAULT_SOCKET: &str = "/run/liberad/liberad.sock";

/// Exit statuses.
pub mod exit {
    pub const DONE: u8 = 0;
    pub const REFUSED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    pub const FAILED: u8 = 4;
}

/// Command-line client of liberad's admin socket.
#[derive(Parser, Debug)]
#[command(name = "liberactl", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Admin socket of the daemon.
    #[arg(long, global = true, env = ENV_SOCKET, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Read the socket path from the daemon's configuration file.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the daemon's JSON response instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Operator name recorded in the audit log (default: your login name).
    #[arg(long, global = true, env = ENV_OPERATOR, value_name = "NAME")]
    operator: Option<String>,
    #[command(subcommand)]
    command: Command,
}

const AFTER_HELP: &str = "Exit codes: 0 done, 1 refused by a rule, 2 usage error, \
                          3 daemon unreachable, 4 daemon error.";

#[derive(Subcommand, Debug)]
enum Command {
    /// Contracts: add, change state, show the summary, list.
    #[command(subcommand)]
    Contract(ContractCommand),
    /// Logins (PPPoE / hotspot usernames) of contracts.
    #[command(subcommand)]
    Login(LoginCommand),
    /// Release a blocked contract temporarily (liberação temporária).
    Release {
        /// Contract id.
        id: String,
        /// Why (recorded with the release).
        #[arg(long)]
        reason: Option<String>,
        /// Only tell whether the release would be allowed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Wait (bounded) for the NAS to confirm the online sessions moved.
        #[arg(long, conflicts_with = "dry_run")]
        wait: bool,
    },
    /// End a contract's running temporary release now.
    Revoke {
        /// Contract id.
        id: String,
        #[arg(long)]
        reason: Option<String>,
        /// Wait (bounded) for the NAS to confirm the online sessions moved.
        #[arg(long)]
        wait: bool,
    },
    /// CoA / Disconnect requests sent to the NAS and their outcome, newest
    /// first.
    Coa {
        #[arg(long, value_name = "ID")]
        contract: Option<String>,
        /// Only those the NAS refused or never answered.
        #[arg(long)]
        failed: bool,
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// List releases, newest first.
    Releases {
        #[arg(long, value_name = "ID")]
        contract: Option<String>,
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Show the audit log, newest first.
    Audit {
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// The temporary-release parameters.
    #[command(subcommand)]
    Params(ParamsCommand),
    /// Import contracts and logins from a CSV file (see the README for
    /// its columns), all in one transaction.
    Import {
        file: PathBuf,
        /// Import the good rows even if some are rejected.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Sessions reported by RADIUS accounting, newest first.
    Sessions {
        #[arg(long, value_name = "ID")]
        contract: Option<String>,
        /// Only sessions still online.
        #[arg(long)]
        online: bool,
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// The NAS clients (BRAS) liberad serves.
    #[command(subcommand)]
    Nas(NasCommand),
    /// Check that the daemon answers; shows where RADIUS listens.
    Ping,
    /// Tokens of the HTTP API: make, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Make a token; it is printed once, and liberad keeps only its hash.
    Add {
        name: String,
        /// read, release (read, release, revoke), billing (read,
        /// contracts, logins, states, import) or admin (everything).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The last day (YYYY-MM-DD, local) it may be used; default: until
        /// revoked.
        #[arg(long, value_name = "DATE")]
        expires: Option<chrono::NaiveDate>,
    },
    /// The tokens: names, roles, when made, last used, expiry (never the
    /// token).
    List,
    /// Revoke a token: it is refused from now on.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
enum NasCommand {
    /// The configured NAS clients (no secrets) and their request counters.
    List,
}

#[derive(Subcommand, Debug)]
enum ContractCommand {
    /// Add a contract.
    Add {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// active, reduced, blocked or cancelled (default active).
        #[arg(long, value_parser = parse_state)]
        state: Option<ContractState>,
    },
    /// Set a contract's state (as the billing system decided).
    State {
        id: String,
        #[arg(value_parser = parse_state)]
        state: ContractState,
        #[arg(long)]
        reason: Option<String>,
    },
    /// The contract summary: state, releases, next allowed date, logins,
    /// recent audit.
    Show { id: String },
    /// List contracts, a page at a time (ids ordered as numbers).
    List {
        #[arg(long, value_parser = parse_state)]
        state: Option<ContractState>,
        /// Start after this contract id (the last of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
        /// At most this many (default 50, at most 10000).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
enum LoginCommand {
    /// Add a login to a contract.
    Add {
        username: String,
        #[arg(long, value_name = "ID")]
        contract: String,
        /// The password; `-` reads it from standard input.
        #[arg(long, required_unless_present = "nt_hash")]
        password: Option<String>,
        /// Instead of the password, its NT hash (32 hex digits): MS-CHAPv2
        /// and PAP work with it, CHAP does not. `-` reads it from standard
        /// input.
        #[arg(long, value_name = "HEX", conflicts_with = "password")]
        nt_hash: Option<String>,
        /// A reply attribute, 'Name = value' (repeatable).
        #[arg(long = "attr", value_name = "ATTRIBUTE")]
        attributes: Vec<String>,
    },
    /// Remove a login.
    Remove { username: String },
    /// Show a login (never its password).
    Show { username: String },
}

#[derive(Subcommand, Debug)]
enum ParamsCommand {
    /// Show the parameters.
    Show,
    /// Set one: enabled (true/false), release_days (1-90),
    /// renew_after_days (0-365).
    Set {
        name: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: crate::model::InvalidValue| e.to_string())
}

fn parse_state(s: &str) -> Result<ContractState, String> {
    s.parse()
        .map_err(|e: crate::policy::UnknownState| e.to_string())
}

/// Runs `liberactl` with the process's arguments.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::DONE
            });
        }
    };
    ExitCode::from(run(cli))
}

fn run(cli: Cli) -> u8 {
    let socket = match socket_path(&cli) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("liberactl: {message}");
            return exit::USAGE;
        }
    };
    let operator = cli.operator.clone().or_else(login_name);
    let mut client = match Client::connect(&socket) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("liberactl: {message}");
            return exit::UNREACHABLE;
        }
    };
    let view = output::View {
        json: cli.json,
        command: &cli.command,
    };
    let outcome = match &cli.command {
        Command::Import { file, skip_invalid } => {
            import(&mut client, file, *skip_invalid, operator)
        }
        command => match request_for(command, operator) {
            Ok(request) => client.call(&request),
            Err(message) => {
                eprintln!("liberactl: {message}");
                return exit::USAGE;
            }
        },
    };
    match outcome {
        Ok(response) => {
            view.print(&response);
            if matches!(cli.command, Command::Ping) && !database_writable(&response) {
                return exit::FAILED;
            }
            exit_code(&response)
        }
        Err(client::Failure::Usage(message)) => {
            eprintln!("liberactl: {message}");
            exit::USAGE
        }
        Err(client::Failure::Unreachable(message)) => {
            eprintln!("liberactl: {message}");
            exit::UNREACHABLE
        }
    }
}

/// `--socket` (or `LIBERAD_SOCKET`), else the socket named in `--config`,
/// else the default.
fn socket_path(cli: &Cli) -> Result<PathBuf, String> {
    if let Some(socket) = &cli.socket {
        return Ok(socket.clone());
    }
    if let Some(path) = &cli.config {
        return Config::admin_socket(path).map_err(|e| e.to_string());
    }
    Ok(PathBuf::from(DEFAULT_SOCKET))
}

fn login_name() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
}

/// The socket request for every command but `import`.
fn request_for(command: &Command, operator: Option<String>) -> Result<Request, String> {
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    Ok(match command {
        Command::Contract(ContractCommand::Add { id, name, state }) => Request::ContractAdd {
            id: id.clone(),
            name: text(name),
            state: *state,
            operator,
        },
        Command::Contract(ContractCommand::State { id, state, reason }) => Request::ContractState {
            id: id.clone(),
            state: *state,
            reason: text(reason),
            operator,
        },
        Command::Contract(ContractCommand::Show { id }) => Request::ContractShow { id: id.clone() },
        Command::Contract(ContractCommand::List {
            state,
            after,
            limit,
        }) => Request::ContractList {
            state: *state,
            after: after.clone(),
            limit: *limit,
        },
        Command::Login(LoginCommand::Add {
            username,
            contract,
            password,
            nt_hash,
            attributes,
        }) => Request::LoginAdd {
            username: username.clone(),
            contract: contract.clone(),
            password: secret_argument(password.as_deref())?,
            nt_hash: secret_argument(nt_hash.as_deref())?,
            attributes: attributes.clone(),
            operator,
        },
        Command::Login(LoginCommand::Remove { username }) => Request::LoginRemove {
            username: username.clone(),
            operator,
        },
        Command::Login(LoginCommand::Show { username }) => Request::LoginShow {
            username: username.clone(),
        },
        Command::Release {
            id,
            reason,
            dry_run,
            wait,
        } => Request::Release {
            contract: id.clone(),
            reason: text(reason),
            operator,
            dry_run: *dry_run,
            wait: *wait,
        },
        Command::Revoke { id, reason, wait } => Request::Revoke {
            contract: id.clone(),
            reason: text(reason),
            operator,
            wait: *wait,
        },
        Command::Coa {
            contract,
            failed,
            limit,
        } => Request::Coa {
            contract: contract.clone(),
            failed: *failed,
            limit: *limit,
        },
        Command::Releases { contract, limit } => Request::Releases {
            contract: contract.clone(),
            limit: *limit,
        },
        Command::Audit { limit } => Request::Audit { limit: *limit },
        Command::Params(ParamsCommand::Show) => Request::ParamsShow,
        Command::Params(ParamsCommand::Set { name, value }) => Request::ParamsSet {
            name: name.clone(),
            value: Scalar::Text(value.clone()),
            operator,
        },
        Command::Ping => Request::Ping,
        Command::Token(TokenCommand::Add {
            name,
            role,
            expires,
        }) => Request::TokenAdd {
            name: name.clone(),
            role: *role,
            expires: *expires,
            operator,
        },
        Command::Token(TokenCommand::List) => Request::TokenList,
        Command::Token(TokenCommand::Revoke { name }) => Request::TokenRevoke {
            name: name.clone(),
            operator,
        },
        Command::Sessions {
            contract,
            online,
            limit,
        } => Request::Sessions {
            contract: contract.clone(),
            online: *online,
            limit: *limit,
        },
        Command::Nas(NasCommand::List) => Request::NasList,
        Command::Import { .. } => return Err("import is sent in pieces".to_owned()),
    })
}

/// A secret given on the command line, or read from standard input for `-`.
fn secret_argument(given: Option<&str>) -> Result<Option<String>, String> {
    match given {
        Some("-") => read_password().map(Some),
        other => Ok(other.map(str::to_owned)),
    }
}

fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Sends a CSV file in pieces and commits it.
fn import(
    client: &mut Client,
    file: &std::path::Path,
    skip_invalid: bool,
    operator: Option<String>,
) -> Result<Response, client::Failure> {
    let bytes = std::fs::read(file)
        .map_err(|e| client::Failure::Usage(format!("cannot read {}: {e}", file.display())))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        client::Failure::Usage(format!(
            "{}: line {line} is not UTF-8 text; convert the file (for example \
             `iconv -f latin1 -t utf-8`)",
            file.display()
        ))
    })?;
    let started = client.call(&Request::ImportBegin { operator })?;
    if !started.ok {
        return Ok(started);
    }
    for piece in client::chunks(&text) {
        let response = client.call(&Request::ImportChunk {
            data: piece.to_owned(),
        })?;
        if !response.ok {
            return Ok(response);
        }
    }
    client.call(&Request::ImportCommit { skip_invalid })
}

/// Whether a `ping` answer says the database takes writes (an answer
/// without the field comes from a daemon that does not tell).
fn database_writable(response: &Response) -> bool {
    response
        .data
        .as_ref()
        .and_then(|d| d.get("database"))
        .and_then(|d| d.get("writable"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true)
}

/// The exit status for a response.
fn exit_code(response: &Response) -> u8 {
    if response.ok {
        return exit::DONE;
    }
    match response.code.as_deref() {
        Some(
            code::INVALID_REQUEST
            | code::INVALID_VALUE
            | code::UNKNOWN_COMMAND
            | code::LINE_TOO_LONG
            | code::INVALID_FILE
            | code::TOO_LARGE
            | code::NO_IMPORT,
        ) => exit::USAGE,
        Some(code::BUSY | code::DATABASE_UNAVAILABLE | code::INTERNAL) | None => exit::FAILED,
        Some(_) => exit::REFUSED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "liberactl",
            "release",
            "1234",
            "--reason",
            "promised payment",
            "--operator",
            "ana",
            "--dry-run",
        ])
        .unwrap();
        let request = request_for(&cli.command, cli.operator.clone()).unwrap();
        assert_eq!(
            request,
            Request::Release {
                contract: "1234".into(),
                reason: "promised payment".into(),
                operator: Some("ana".into()),
                dry_run: true,
                wait: false,
            }
        );
        assert!(Cli::try_parse_from(["liberactl", "contract", "state", "1", "bloqueado"]).is_err());
    }

    #[test]
    fn refusals_map_to_exit_codes() {
        let refused = |c: &str| exit_code(&Response::refusal(c, "x"));
        assert_eq!(exit_code(&Response::success("x")), exit::DONE);
        assert_eq!(refused(code::COOLDOWN), exit::REFUSED);
        assert_eq!(refused(code::ALREADY_RELEASED), exit::REFUSED);
        assert_eq!(refused(code::NOT_FOUND), exit::REFUSED);
        assert_eq!(refused(code::INVALID_VALUE), exit::USAGE);
        assert_eq!(refused(code::INTERNAL), exit::FAILED);
    }
}
