//! Reading a CSV of contracts and logins into an import plan: which rows are
//! good and which are rejected, with their line numbers and reasons.
//!
//! One row per login; a contract without logins has an empty `username`.
//! Columns (header row, any order, only `contract_id` required):
//! `contract_id, name, state, username, password, nt_hash, reply`. A login
//! has a `password` or, instead, the `nt_hash` of it (32 hex digits), as
//! billing systems that keep only that export it. `reply` holds the
//! login's reply attributes, `Name = value`, separated by `;`. A file whose
//! header has `;` and no `,` is read with `;` as the delimiter (spreadsheets
//! set to Portuguese write it so).
//!
//! Nothing here touches the store; [`crate::store::Store::import`] applies
//! the plan in one transaction.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::model::{self, Password, ReplyAttribute};
use crate::policy::ContractState;

/// The columns an import file may have.
pub const COLUMNS: [&str; 7] = [
    "contract_id",
    "name",
    "state",
    "username",
    "password",
    "nt_hash",
    "reply",
];

/// A contract as the import file gives it. `None` leaves an existing
/// contract's value as it is (a new contract gets an empty name and the
/// `active` state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContractRow {
    pub line: u64,
    pub id: String,
    pub name: Option<String>,
    pub state: Option<ContractState>,
}

/// A login as the import file gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRow {
    pub line: u64,
    pub username: String,
    pub contract_id: String,
    pub password: Password,
    pub reply: Vec<ReplyAttribute>,
}

/// A row that will not be imported, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    pub line: u64,
    pub reason: String,
}

/// The good rows of a file, merged per contract, and the rejected ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportPlan {
    pub contracts: Vec<ContractRow>,
    pub logins: Vec<LoginRow>,
    pub rejected: Vec<RejectedRow>,
    /// Data rows read (header excluded).
    pub rows: u64,
}

/// A file that cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the file is empty: it needs a header row naming its columns ({})", COLUMNS.join(", "))]
    Empty,
    #[error("header: unknown column {0:?} (columns are {cols})", cols = COLUMNS.join(", "))]
    UnknownColumn(String),
    #[error("header: column {0:?} appears twice")]
    DuplicateColumn(String),
    #[error("header: the contract_id column is required")]
    MissingContractId,
    #[error("line {line}: {message}")]
    Unreadable { line: u64, message: String },
}

/// Column positions found in the header.
struct Header {
    index: HashMap<&'static str, usize>,
    len: usize,
}

impl Header {
    fn parse(record: &csv::StringRecord) -> Result<Header, ImportError> {
        let mut index = HashMap::new();
        for (position, raw) in record.iter().enumerate() {
            let name = raw.trim().to_ascii_lowercase();
            let Some(column) = COLUMNS.iter().find(|c| **c == name) else {
                return Err(ImportError::UnknownColumn(raw.to_owned()));
            };
            if index.insert(*column, position).is_some() {
                return Err(ImportError::DuplicateColumn(raw.to_owned()));
            }
        }
        if !index.contains_key("contract_id") {
            return Err(ImportError::MissingContractId);
        }
        Ok(Header {
            index,
            len: record.len(),
        })
    }

    /// The trimmed value of a column, `""` when the file lacks the column.
    fn get<'r>(&self, record: &'r csv::StringRecord, column: &str) -> &'r str {
        self.index
            .get(column)
            .and_then(|i| record.get(*i))
            .map(str::trim)
            .unwrap_or("")
    }
}

/// Where each contract and login was first seen, to merge and to catch
/// duplicates.
#[derive(Default)]
struct Seen {
    contracts: HashMap<String, usize>,
    logins: HashMap<String, u64>,
}

/// Reads an import file, checking only the form of reply attributes.
pub fn parse(text: &str) -> Result<ImportPlan, ImportError> {
    parse_with(text, &|_: &ReplyAttribute| Ok(()))
}

/// Reads an import file; `check_attribute` vets each reply attribute
/// (against the RADIUS dictionaries in the daemon) and a failure rejects
/// the row.
pub fn parse_with(
    text: &str,
    check_attribute: &dyn Fn(&ReplyAttribute) -> Result<(), String>,
) -> Result<ImportPlan, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first_line = text.lines().next().unwrap_or("");
    let delimiter = if first_line.contains(';') && !first_line.contains(',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        None => return Err(ImportError::Empty),
        Some(Ok(record)) => Header::parse(&record)?,
        Some(Err(e)) => {
            return Err(ImportError::Unreadable {
                line: 1,
                message: e.to_string(),
            });
        }
    };

    let mut plan = ImportPlan::default();
    let mut seen = Seen::default();
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                // The csv reader reads from memory: its errors are about
                // the text itself and carry the position.
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                plan.rows += 1;
                plan.rejected.push(RejectedRow {
                    line,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        plan.rows += 1;
        if let Err(reason) = plan.add_row(&header, &record, line, &mut seen, check_attribute) {
            plan.rejected.push(RejectedRow { line, reason });
        }
    }
    Ok(plan)
}

impl ImportPlan {
    /// Checks one data row and merges it into the plan.
    fn add_row(
        &mut self,
        header: &Header,
        record: &csv::StringRecord,
        line: u64,
        seen: &mut Seen,
        check_attribute: &dyn Fn(&ReplyAttribute) -> Result<(), String>,
    ) -> Result<(), String> {
        if record.len() != header.len {
            return Err(format!(
                "expected {} columns as in the header, found {}",
                header.len,
                record.len()
            ));
        }
        let id = header.get(record, "contract_id");
        model::check_contract_id(id).map_err(|e| e.to_string())?;
        let name = non_empty(header.get(record, "name"));
        if let Some(name) = name {
            model::check_name(name).map_err(|e| e.to_string())?;
        }
        let state = non_empty(header.get(record, "state"))
            .map(str::parse::<ContractState>)
            .transpose()
            .map_err(|e| e.to_string())?;
        let login = self.login_of_row(header, record, line, id, seen)?;
        if let Some(login) = &login {
            login.reply.iter().try_for_each(check_attribute)?;
        }

        match seen.contracts.get(id) {
            Some(&at) => {
                let known = &mut self.contracts[at];
                merge(&mut known.name, name.map(str::to_owned), "name", known.line)?;
                merge(&mut known.state, state, "state", known.line)?;
            }
            None => {
                seen.contracts.insert(id.to_owned(), self.contracts.len());
                self.contracts.push(ContractRow {
                    line,
                    id: id.to_owned(),
                    name: name.map(str::to_owned),
                    state,
                });
            }
        }
        if let Some(login) = login {
            seen.logins.insert(login.username.clone(), line);
            self.logins.push(login);
        }
        Ok(())
    }

    fn login_of_row(
        &self,
        header: &Header,
        record: &csv::StringRecord,
        line: u64,
        contract_id: &str,
        seen: &Seen,
    ) -> Result<Option<LoginRow>, String> {
        let username = header.get(record, "username");
        let password = header.get(record, "password");
        let nt_hash = header.get(record, "nt_hash");
        let reply = header.get(record, "reply");
        if username.is_empty() {
            if !password.is_empty() || !nt_hash.is_empty() || !reply.is_empty() {
                return Err("password, nt_hash or reply given without a username".to_owned());
            }
            return Ok(None);
        }
        model::check_username(username).map_err(|e| e.to_string())?;
        if let Some(first) = seen.logins.get(username) {
            return Err(format!("login {username} is already on line {first}"));
        }
        let password =
            Password::either(non_empty(password), non_empty(nt_hash)).map_err(|e| e.to_string())?;
        let reply = split_reply(reply)
            .into_iter()
            .map(str::parse::<ReplyAttribute>)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        model::check_reply(&reply).map_err(|e| e.to_string())?;
        Ok(Some(LoginRow {
            line,
            username: username.to_owned(),
            contract_id: contract_id.to_owned(),
            password,
            reply,
        }))
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Keeps the first value given for a contract's field; a later row may
/// repeat it or leave it empty, but not contradict it.
fn merge<T: PartialEq + std::fmt::Debug>(
    known: &mut Option<T>,
    given: Option<T>,
    field: &str,
    first_line: u64,
) -> Result<(), String> {
    match (known.as_ref(), given) {
        (_, None) => Ok(()),
        (None, given) => {
            *known = given;
            Ok(())
        }
        (Some(k), Some(g)) if *k == g => Ok(()),
        (Some(k), Some(g)) => Err(format!(
            "{field} {g:?} contradicts {k:?} given for this contract on line {first_line}"
        )),
    }
}

/// Splits a reply cell on `;`, except inside double quotes.
fn split_reply(cell: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in cell.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(&cell[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&cell[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts_and_logins_are_read() {
        let plan = parse(
            "contract_id,name,state,username,password,reply\n\
             1001,Maria,blocked,maria,s3cret,Mikrotik-Rate-Limit = 10M/10M; Framed-Pool = clientes\n\
             1001,Maria,blocked,maria2,other,\n\
             1002,José,active,,,\n",
        )
        .unwrap();
        assert!(plan.rejected.is_empty(), "{:?}", plan.rejected);
        assert_eq!(plan.rows, 3);
        assert_eq!(plan.contracts.len(), 2);
        assert_eq!(plan.contracts[0].state, Some(ContractState::Blocked));
        assert_eq!(plan.contracts[1].name.as_deref(), Some("José"));
        assert_eq!(plan.logins.len(), 2);
        assert_eq!(plan.logins[0].reply.len(), 2);
        assert_eq!(
            plan.logins[0].reply[1].to_string(),
            "Framed-Pool = clientes"
        );
        assert_eq!(plan.logins[1].line, 3);
    }

    #[test]
    fn bad_rows_are_rejected_with_their_line() {
        let plan = parse(
            "contract_id,state,username,password\n\
             2001,blocked,ana,pw\n\
             2002,bloqueado,bia,pw\n\
             ,active,cid,pw\n\
             2003,active,ana,pw\n\
             2001,active,dora,pw\n\
             2004,active,eva\n\
             2005,active,fia,\n\
             2006,active,,pw\n",
        )
        .unwrap();
        let lines: Vec<u64> = plan.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9]);
        let reasons: Vec<&str> = plan.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].contains("bloqueado"), "{reasons:?}");
        assert!(reasons[1].contains("contract id"), "{reasons:?}");
        assert!(reasons[2].contains("already on line 2"), "{reasons:?}");
        assert!(reasons[3].contains("contradicts"), "{reasons:?}");
        assert!(reasons[4].contains("columns"), "{reasons:?}");
        assert!(reasons[5].contains("password"), "{reasons:?}");
        assert!(reasons[6].contains("without a username"), "{reasons:?}");
        assert_eq!(plan.contracts.len(), 1);
        assert_eq!(plan.logins.len(), 1);
    }

    #[test]
    fn a_login_may_come_with_its_nt_hash_instead_of_its_password() {
        let plan = parse(
            "contract_id,username,password,nt_hash\n\
             1,ana,,44EBBA8D5312B8D611474411F56989AE\n\
             2,rui,pw,\n\
             3,eva,pw,44EBBA8D5312B8D611474411F56989AE\n\
             4,ivo,,44EBBA8D\n\
             5,,,44EBBA8D5312B8D611474411F56989AE\n",
        )
        .unwrap();
        assert_eq!(plan.logins.len(), 2);
        assert_eq!(
            plan.logins[0].password,
            Password::nt_hash("44ebba8d5312b8d611474411f56989ae").unwrap()
        );
        assert_eq!(plan.logins[1].password, Password::Cleartext("pw".into()));
        let reasons: Vec<&str> = plan.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].contains("not both"), "{reasons:?}");
        assert!(reasons[1].contains("32 hexadecimal"), "{reasons:?}");
        assert!(reasons[2].contains("without a username"), "{reasons:?}");
    }

    #[test]
    fn a_rejected_row_contributes_nothing() {
        let plan = parse("contract_id,state,username,password\n3001,blocked,ana,\n").unwrap();
        assert_eq!(plan.rejected.len(), 1);
        assert!(plan.contracts.is_empty());
    }

    #[test]
    fn semicolon_files_with_bom_and_quotes_are_read() {
        let plan = parse(
            "\u{feff}contract_id;name;username;password;reply\r\n\
             4001;\"Silva; Maria\";maria;pw;\"Reply-Message = \"\"a;b\"\"; Framed-Pool = x\"\r\n",
        )
        .unwrap();
        assert!(plan.rejected.is_empty(), "{:?}", plan.rejected);
        assert_eq!(plan.contracts[0].name.as_deref(), Some("Silva; Maria"));
        let reply: Vec<String> = plan.logins[0].reply.iter().map(|a| a.to_string()).collect();
        assert_eq!(reply, vec!["Reply-Message = a;b", "Framed-Pool = x"]);
    }

    #[test]
    fn header_problems_refuse_the_file() {
        assert_eq!(parse(""), Err(ImportError::Empty));
        assert_eq!(
            parse("contract_id,colour\n"),
            Err(ImportError::UnknownColumn("colour".into()))
        );
        assert_eq!(parse("name,state\n"), Err(ImportError::MissingContractId));
        assert_eq!(
            parse("contract_id,name,Name\n"),
            Err(ImportError::DuplicateColumn("Name".into()))
        );
    }

    #[test]
    fn the_attribute_check_rejects_the_whole_row() {
        let check = |a: &ReplyAttribute| {
            if a.name == "Unknown-Thing" {
                Err(format!("unknown attribute {:?}", a.name))
            } else {
                Ok(())
            }
        };
        let plan = parse_with(
            "contract_id,username,password,reply\n6001,a,pw,Unknown-Thing = 1\n6002,b,pw,Framed-Pool = x\n",
            &check,
        )
        .unwrap();
        assert_eq!(plan.rejected.len(), 1);
        assert_eq!(plan.rejected[0].line, 2);
        assert!(plan.rejected[0].reason.contains("Unknown-Thing"));
        assert_eq!(plan.contracts.len(), 1);
        assert_eq!(plan.contracts[0].id, "6002");
    }

    #[test]
    fn a_later_row_may_fill_in_what_the_first_left_empty() {
        let plan =
            parse("contract_id,state,username,password\n5001,,a,pw\n5001,reduced,b,pw\n").unwrap();
        assert!(plan.rejected.is_empty());
        assert_eq!(plan.contracts[0].state, Some(ContractState::Reduced));
    }
}
