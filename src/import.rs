//! Reading a CSV of contracts and logins: which rows are good and which are
//! rejected, with the line a text editor shows for each and the reason.
//!
//! One row per login; a contract without logins has an empty `username`.
//! Columns (header row, any order, only `contract_id` required):
//! `contract_id, name, state, username, password, nt_hash, reply`. A login
//! has a `password` or, instead, the `nt_hash` of it (32 hex digits), as
//! billing systems that keep only that export it. `reply` holds the
//! login's reply attributes, `Name = value`, separated by `;`. A file whose
//! header has `;` and no `,` is read with `;` as the delimiter (spreadsheets
//! set to Portuguese write it so). Lines may end in LF, CRLF or CR.
//!
//! The file is read as a stream: [`Reader`] hands out batches of rows,
//! each checked on its own; what depends on earlier rows (a login given
//! twice, a row contradicting an earlier row of the same contract) is
//! decided by [`merge`] against what the import took before, which the
//! store keeps in the import's transaction, so that memory does not grow
//! with the file. [`parse`] reads a whole text into an [`ImportPlan`] in
//! memory, for tests and tools.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::rc::Rc;

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

/// Rejected rows listed in an answer at most; beyond, they are counted.
pub const MAX_LISTED_REJECTIONS: usize = 1_000;

/// A contract as a row gives it. `None` leaves an existing contract's
/// value as it is (a new contract gets an empty name and the `active`
/// state).
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

/// A row that passed the checks it can pass alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub contract: ContractRow,
    pub login: Option<LoginRow>,
}

/// A row that will not be imported, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    pub line: u64,
    pub reason: String,
}

/// A data row as read: checked alone, or rejected.
pub type ParsedRow = Result<Row, RejectedRow>;

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
    #[error("cannot read the file: {0}")]
    Io(String),
}

/// The rows of an import file, in batches as they are read; an error ends
/// the import.
pub type ImportRows = tokio::sync::mpsc::Receiver<Result<Vec<ParsedRow>, ImportError>>;

/// Rows read and written per batch: a few thousand bound values per
/// statement, well under either database's limit.
pub const BATCH_ROWS: usize = 500;
/// Batches read ahead of the writer.
const READ_AHEAD: usize = 2;

/// Reads a file on a blocking thread, in batches, as the receiver takes
/// them: its header first (a file that cannot be read at all is an error
/// here), then its rows. `check` vets each reply attribute.
pub async fn stream<R, C>(
    open: impl FnOnce() -> std::io::Result<R> + Send + 'static,
    check: C,
) -> Result<ImportRows, ImportError>
where
    R: Read,
    C: Fn(&ReplyAttribute) -> Result<(), String> + Send + Sync + 'static,
{
    let (header, header_checked) = tokio::sync::oneshot::channel();
    let (batches, rows) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let opened = open()
            .map_err(|e| ImportError::Io(e.to_string()))
            .and_then(|input| Reader::new(input, &check));
        let mut reader = match opened {
            Ok(reader) => reader,
            Err(e) => {
                let _ = header.send(Err(e));
                return;
            }
        };
        if header.send(Ok(())).is_err() {
            return;
        }
        loop {
            let batch = reader.next_batch(BATCH_ROWS);
            let end = match &batch {
                Ok(rows) if rows.is_empty() => break,
                Ok(_) => false,
                Err(_) => true,
            };
            // The writer gone (it failed) ends the reading too.
            if batches.blocking_send(batch).is_err() || end {
                break;
            }
        }
    });
    match header_checked.await {
        Ok(Ok(())) => Ok(rows),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ImportError::Io("the reader stopped".to_owned())),
    }
}

/// Checks a reply attribute (against the RADIUS dictionaries, in the
/// daemon); a failure rejects the row.
pub type AttributeCheck = dyn Fn(&ReplyAttribute) -> Result<(), String> + Send + Sync;

/// What the import took from the file for one contract so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// The first line that gave the contract.
    pub line: u64,
    pub name: Option<String>,
    pub state: Option<ContractState>,
}

/// How a row's contract adds to what the file gave before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The first row of this contract.
    First,
    /// A later row that fills in what the earlier ones left empty.
    FillIn {
        name: Option<String>,
        state: Option<ContractState>,
    },
    /// A later row that adds nothing (it may carry a login).
    Same,
}

/// Decides a row's contract against what the file gave before: a later
/// row may repeat a value or leave it empty, but not contradict it.
pub fn merge(known: Option<&Known>, row: &ContractRow) -> Result<Merge, String> {
    let Some(known) = known else {
        return Ok(Merge::First);
    };
    contradiction(known.name.as_ref(), row.name.as_ref(), "name", known.line)?;
    contradiction(
        known.state.as_ref(),
        row.state.as_ref(),
        "state",
        known.line,
    )?;
    let name = row.name.clone().filter(|_| known.name.is_none());
    let state = row.state.filter(|_| known.state.is_none());
    Ok(if name.is_none() && state.is_none() {
        Merge::Same
    } else {
        Merge::FillIn { name, state }
    })
}

impl Known {
    /// What the file gave for a contract after `merge` accepted `row`.
    pub fn after(known: Option<&Known>, row: &ContractRow) -> Known {
        match known {
            None => Known {
                line: row.line,
                name: row.name.clone(),
                state: row.state,
            },
            Some(known) => Known {
                line: known.line,
                name: known.name.clone().or_else(|| row.name.clone()),
                state: known.state.or(row.state),
            },
        }
    }
}

/// A login given on an earlier line is refused.
pub fn repeated_login(username: &str, first: Option<u64>) -> Result<(), String> {
    match first {
        Some(first) => Err(format!("login {username} is already on line {first}")),
        None => Ok(()),
    }
}

fn contradiction<T: PartialEq + std::fmt::Debug>(
    known: Option<&T>,
    given: Option<&T>,
    field: &str,
    first_line: u64,
) -> Result<(), String> {
    match (known, given) {
        (Some(k), Some(g)) if k != g => Err(format!(
            "{field} {g:?} contradicts {k:?} given for this contract on line {first_line}"
        )),
        _ => Ok(()),
    }
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

/// Bytes read ahead to find the header's delimiter.
const SNIFF: usize = 64 * 1024;

/// Reads an import file row by row.
pub struct Reader<'c, R: Read> {
    records: csv::StringRecordsIntoIter<Lines<std::io::Chain<std::io::Cursor<Vec<u8>>, R>>>,
    lines: Rc<RefCell<LineBreaks>>,
    header: Header,
    check: &'c AttributeCheck,
}

impl<'c, R: Read> Reader<'c, R> {
    /// Reads the header; `check` vets each reply attribute.
    pub fn new(mut input: R, check: &'c AttributeCheck) -> Result<Reader<'c, R>, ImportError> {
        let mut start = Vec::with_capacity(4096);
        (&mut input)
            .take(SNIFF as u64)
            .read_to_end(&mut start)
            .map_err(|e| ImportError::Io(e.to_string()))?;
        if start.starts_with(b"\xef\xbb\xbf") {
            start.drain(..3);
        }
        let first_line = start
            .split(|b| *b == b'\n' || *b == b'\r')
            .next()
            .unwrap_or_default();
        let delimiter = if first_line.contains(&b';') && !first_line.contains(&b',') {
            b';'
        } else {
            b','
        };
        let lines = Rc::new(RefCell::new(LineBreaks::default()));
        let normalized = Lines {
            inner: std::io::Cursor::new(start).chain(input),
            breaks: Rc::clone(&lines),
            offset: 0,
            carriage_return: false,
        };
        let mut records = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(normalized)
            .into_records();
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
        Ok(Reader {
            records,
            lines,
            header,
            check,
        })
    }

    /// Up to `max` more data rows; fewer only at the end of the file. A
    /// row that cannot be read as text is rejected; a file that cannot be
    /// read any further is an error.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<ParsedRow>, ImportError> {
        let mut batch = Vec::with_capacity(max.min(1024));
        while batch.len() < max {
            let Some(record) = self.records.next() else {
                break;
            };
            batch.push(match record {
                Ok(record) => {
                    let line = self.line_of(record.position());
                    self.row(&record, line)
                        .map_err(|reason| RejectedRow { line, reason })
                }
                Err(e) => {
                    let line = self.line_of(e.position());
                    let reason = match e.kind() {
                        csv::ErrorKind::Utf8 { err, .. } => format!(
                            "field {} is not UTF-8 text; convert the file (for example \
                             `iconv -f latin1 -t utf-8`)",
                            err.field() + 1
                        ),
                        csv::ErrorKind::Io(e) => return Err(ImportError::Io(e.to_string())),
                        _ => e.to_string(),
                    };
                    Err(RejectedRow { line, reason })
                }
            });
        }
        Ok(batch)
    }

    /// The line a text editor shows for a record starting at `position`.
    fn line_of(&self, position: Option<&csv::Position>) -> u64 {
        let byte = position.map_or(0, csv::Position::byte);
        self.lines.borrow_mut().line_at(byte)
    }

    /// Checks one data row on its own.
    fn row(&self, record: &csv::StringRecord, line: u64) -> Result<Row, String> {
        let header = &self.header;
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
        let login = self.login_of_row(record, line, id)?;
        if let Some(login) = &login {
            login.reply.iter().try_for_each(self.check)?;
        }
        Ok(Row {
            line,
            contract: ContractRow {
                line,
                id: id.to_owned(),
                name: name.map(str::to_owned),
                state,
            },
            login,
        })
    }

    fn login_of_row(
        &self,
        record: &csv::StringRecord,
        line: u64,
        contract_id: &str,
    ) -> Result<Option<LoginRow>, String> {
        let header = &self.header;
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

/// Where the lines of the text read so far begin, for the records not yet
/// numbered: the offsets of the line breaks ahead of them.
#[derive(Default)]
struct LineBreaks {
    ahead: VecDeque<u64>,
    passed: u64,
}

impl LineBreaks {
    /// The line of a record whose text starts at `byte` (or at the blank
    /// lines before it, which the CSV reader skips and counts as its own).
    fn line_at(&mut self, byte: u64) -> u64 {
        while self.ahead.front().is_some_and(|b| *b < byte) {
            self.ahead.pop_front();
            self.passed += 1;
        }
        let mut blank = byte;
        while self.ahead.front() == Some(&blank) {
            self.ahead.pop_front();
            self.passed += 1;
            blank += 1;
        }
        self.passed + 1
    }
}

/// The input with every line break (CRLF, CR, LF) made one LF, whose
/// offsets it records: the CSV reader then sees one kind of line, and each
/// row's line is the one an editor shows. Inside quoted fields too: a
/// value may hold no line break anyway (names, attributes and passwords
/// refuse control characters).
struct Lines<R> {
    inner: R,
    breaks: Rc<RefCell<LineBreaks>>,
    /// Bytes handed out so far.
    offset: u64,
    /// The last byte read was a CR: a LF right after it is the same break.
    carriage_return: bool,
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut buffer = [0u8; 8192];
        // What is handed out is never longer than what is read.
        let want = out.len().min(buffer.len());
        let mut written = 0;
        while written == 0 && want > 0 {
            let n = self.inner.read(&mut buffer[..want])?;
            if n == 0 {
                break;
            }
            for &byte in &buffer[..n] {
                let emit = match byte {
                    b'\n' if self.carriage_return => {
                        self.carriage_return = false;
                        continue;
                    }
                    b'\r' | b'\n' => {
                        self.carriage_return = byte == b'\r';
                        self.breaks.borrow_mut().ahead.push_back(self.offset);
                        b'\n'
                    }
                    other => {
                        self.carriage_return = false;
                        other
                    }
                };
                if let Some(slot) = out.get_mut(written) {
                    *slot = emit;
                    written += 1;
                    self.offset += 1;
                }
            }
        }
        Ok(written)
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
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

/// The good rows of a whole file, merged per contract, and the rejected
/// ones: a file read in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportPlan {
    pub contracts: Vec<ContractRow>,
    pub logins: Vec<LoginRow>,
    pub rejected: Vec<RejectedRow>,
    /// Data rows read (header excluded).
    pub rows: u64,
}

/// Reads an import text in memory, checking only the form of reply
/// attributes.
pub fn parse(text: &str) -> Result<ImportPlan, ImportError> {
    parse_with(text, &|_: &ReplyAttribute| Ok(()))
}

/// Reads an import text in memory; `check` vets each reply attribute.
pub fn parse_with(text: &str, check: &AttributeCheck) -> Result<ImportPlan, ImportError> {
    let mut reader = Reader::new(text.as_bytes(), check)?;
    let mut plan = ImportPlan::default();
    let mut contracts: HashMap<String, usize> = HashMap::new();
    let mut logins: HashMap<String, u64> = HashMap::new();
    loop {
        let batch = reader.next_batch(512)?;
        if batch.is_empty() {
            return Ok(plan);
        }
        for parsed in batch {
            plan.rows += 1;
            let accepted = parsed.and_then(|row| {
                let reject = |reason| RejectedRow {
                    line: row.line,
                    reason,
                };
                if let Some(login) = &row.login {
                    repeated_login(&login.username, logins.get(&login.username).copied())
                        .map_err(reject)?;
                }
                let at = contracts.get(&row.contract.id).copied();
                let known = at.map(|i| {
                    let c = &plan.contracts[i];
                    Known {
                        line: c.line,
                        name: c.name.clone(),
                        state: c.state,
                    }
                });
                merge(known.as_ref(), &row.contract).map_err(reject)?;
                let after = Known::after(known.as_ref(), &row.contract);
                match at {
                    Some(i) => {
                        let c = &mut plan.contracts[i];
                        c.name = after.name;
                        c.state = after.state;
                    }
                    None => {
                        contracts.insert(row.contract.id.clone(), plan.contracts.len());
                        plan.contracts.push(row.contract.clone());
                    }
                }
                Ok(row)
            });
            match accepted {
                Ok(row) => {
                    if let Some(login) = row.login {
                        logins.insert(login.username.clone(), login.line);
                        plan.logins.push(login);
                    }
                }
                Err(rejected) => plan.rejected.push(rejected),
            }
        }
    }
}

/// What an import wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportCounts {
    pub contracts_created: u64,
    pub contracts_updated: u64,
    pub contracts_unchanged: u64,
    pub logins_created: u64,
    pub logins_updated: u64,
    pub logins_unchanged: u64,
    /// CoA / Disconnect jobs queued by state changes.
    pub enforcement_jobs: u64,
}

/// What an import did (the admin socket's answer too).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportOutcome {
    /// Whether anything was written (not when rows were rejected without
    /// `skip_invalid`).
    pub applied: bool,
    /// Data rows read.
    pub rows: u64,
    pub counts: ImportCounts,
    /// The rejected rows, the first [`MAX_LISTED_REJECTIONS`] of them.
    pub rejected: Vec<RejectedRow>,
    /// How many rows were rejected in all.
    #[serde(default)]
    pub rejected_total: u64,
}

impl ImportOutcome {
    pub(crate) fn reject(&mut self, row: RejectedRow) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_LISTED_REJECTIONS {
            self.rejected.push(row);
        }
    }
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

    /// The lines of the rejected rows of a file whose rows 3, 5 and 7 (as
    /// an editor counts them) are bad, written with `eol`, with a blank
    /// line and a quoted line break.
    fn rejected_lines(eol: &str) -> Vec<u64> {
        let text = [
            "contract_id,name,state,username,password",
            "1,A,blocked,a,pw",
            "2,B,bloqueado,b,pw",
            "",
            "3,C,wrong,c,pw",
            "\"4\",\"D",
            "E\",active,d,pw",
        ]
        .join(eol);
        let text = format!("{text}{eol}");
        let plan = parse(&text).unwrap();
        plan.rejected.iter().map(|r| r.line).collect()
    }

    #[test]
    fn lines_are_counted_as_an_editor_counts_them() {
        // Row 6-7 holds a line break inside quotes: rejected (a name holds
        // no control character), on the line it starts.
        for eol in ["\n", "\r\n", "\r"] {
            assert_eq!(rejected_lines(eol), vec![3, 5, 6], "{eol:?}");
        }
        // With a byte-order mark, and several blank lines.
        let plan =
            parse("\u{feff}contract_id,state\r\n\r\n\r\n1,nope\r\n2,blocked\r\n3,x\r\n").unwrap();
        let lines: Vec<u64> = plan.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![4, 6]);
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

    #[test]
    fn merging_fills_in_refuses_contradictions_and_keeps_the_first_line() {
        let row = |line, name: Option<&str>, state| ContractRow {
            line,
            id: "1".into(),
            name: name.map(str::to_owned),
            state,
        };
        let first = row(2, None, Some(ContractState::Blocked));
        assert_eq!(merge(None, &first), Ok(Merge::First));
        let known = Known::after(None, &first);
        let fill = row(5, Some("Ana"), None);
        assert_eq!(
            merge(Some(&known), &fill),
            Ok(Merge::FillIn {
                name: Some("Ana".into()),
                state: None
            })
        );
        let known = Known::after(Some(&known), &fill);
        assert_eq!(known.line, 2);
        assert_eq!(known.name.as_deref(), Some("Ana"));
        assert_eq!(
            merge(Some(&known), &row(6, Some("Ana"), None)),
            Ok(Merge::Same)
        );
        let e = merge(Some(&known), &row(7, None, Some(ContractState::Active))).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn batches_come_in_the_size_asked_and_end_empty() {
        let mut text = "contract_id\n".to_owned();
        for i in 0..1_200 {
            text.push_str(&format!("{i}\n"));
        }
        let check = |_: &ReplyAttribute| Ok(());
        let mut reader = Reader::new(text.as_bytes(), &check).unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let batch = reader.next_batch(500).unwrap();
            (!batch.is_empty()).then_some(batch.len())
        })
        .collect();
        assert_eq!(sizes, vec![500, 500, 200]);
    }
}
