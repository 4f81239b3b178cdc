//! How `liberactl` shows responses: the daemon's JSON with `--json`,
//! otherwise text and aligned tables, times in the daemon's time zone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;

use super::{Command, ContractCommand, LoginCommand, NasCommand, ParamsCommand, TokenCommand};
use crate::admin::protocol::{
    ContractSummary, ImportReport, MadeToken, ParamsView, Pong, Response, code,
};
use crate::model::NasReport;
use crate::model::{
    AuditEntry, Contract, EnforcementJob, JobState, Login, Release, Session, TokenInfo,
};

pub struct View<'a> {
    pub json: bool,
    pub command: &'a Command,
}

impl View<'_> {
    pub fn print(&self, response: &Response) {
        if self.json {
            match serde_json::to_string(response) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("liberactl: cannot print the response: {e}"),
            }
            return;
        }
        let tz = response
            .timezone
            .as_deref()
            .and_then(|name| name.parse::<Tz>().ok())
            .unwrap_or(Tz::UTC);
        let message = response.message.as_deref().unwrap_or("");
        if !response.ok {
            eprintln!("liberactl: {message}");
            if response.code.as_deref() == Some(code::REJECTED_ROWS)
                && let Some(report) = data::<ImportReport>(response)
            {
                eprint!("{}", rejected_rows(&report));
            }
            return;
        }
        let text = match self.command {
            Command::Contract(ContractCommand::Show { .. }) => {
                data::<ContractSummary>(response).map(|s| summary(&s, tz))
            }
            Command::Contract(ContractCommand::List { .. }) => {
                data::<Vec<Contract>>(response).map(|list| {
                    let mut text = contracts(&list, tz);
                    if let Some(next) = &response.next_after {
                        text.push_str(&format!("(more: --after {next})\n"));
                    }
                    text
                })
            }
            Command::Login(LoginCommand::Show { .. }) => {
                data::<Login>(response).map(|l| login(&l, tz))
            }
            Command::Releases { .. } => {
                data::<Vec<Release>>(response).map(|list| releases(&list, tz))
            }
            Command::Audit { .. } => data::<Vec<AuditEntry>>(response).map(|list| audit(&list, tz)),
            Command::Params(ParamsCommand::Show | ParamsCommand::Set { .. }) => {
                data::<ParamsView>(response).map(|p| {
                    table(
                        &["PARAMETER", "VALUE"],
                        vec![
                            vec!["enabled".into(), p.enabled.to_string()],
                            vec!["release_days".into(), p.release_days.to_string()],
                            vec!["renew_after_days".into(), p.renew_after_days.to_string()],
                        ],
                    )
                })
            }
            Command::Sessions { .. } => {
                data::<Vec<Session>>(response).map(|list| sessions(&list, tz))
            }
            Command::Nas(NasCommand::List) => data::<NasReport>(response).map(|r| nas(&r)),
            Command::Coa { .. } => {
                data::<Vec<EnforcementJob>>(response).map(|list| enforcement(&list, tz))
            }
            Command::Ping => data::<Pong>(response).map(|p| {
                let mut text = format!(
                    "{message}: version {}, time zone {}, RADIUS auth {}, accounting {}\n",
                    p.version,
                    p.timezone,
                    p.radius_auth.as_deref().unwrap_or("-"),
                    p.radius_acct.as_deref().unwrap_or("-")
                );
                if let Some(database) = p.database.filter(|d| !d.writable) {
                    text.push_str(&format!(
                        "database: refuses writes ({}), {} failed writes; last error: {}\n",
                        database.cause.as_deref().unwrap_or("unknown cause"),
                        database.failures,
                        database.error.as_deref().unwrap_or("-")
                    ));
                }
                text
            }),
            // The token alone on its own line, for a script to take.
            Command::Token(TokenCommand::Add { .. }) => {
                data::<MadeToken>(response).map(|t| format!("{message}\n{}\n", t.token))
            }
            Command::Token(TokenCommand::List) => {
                data::<Vec<TokenInfo>>(response).map(|list| tokens(&list, tz))
            }
            Command::Import { .. } => {
                data::<ImportReport>(response).map(|r| format!("{message}\n{}", rejected_rows(&r)))
            }
            _ => None,
        };
        match text {
            Some(text) => print!("{text}"),
            None => println!("{message}"),
        }
    }
}

fn data<T: DeserializeOwned>(response: &Response) -> Option<T> {
    serde_json::from_value(response.data.clone()?).ok()
}

fn time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

fn summary(s: &ContractSummary, tz: Tz) -> String {
    let c = &s.contract;
    let mut rows: Vec<(String, String)> = vec![
        ("contract".into(), format!("{}  {}", c.id, c.name)),
        (
            "state".into(),
            format!("{} since {}", c.state, time(c.state_changed_at, tz)),
        ),
        (
            "profile".into(),
            s.profile
                .map(|p| p.to_string())
                .unwrap_or_else(|| "rejected (cancelled)".into()),
        ),
    ];
    let running = match &s.running_release {
        Some(r) => format!(
            "running until {} (#{} started {} by {}{})",
            time(r.ends_at, tz),
            r.id,
            time(r.started_at, tz),
            r.operator,
            reason_suffix(&r.reason)
        ),
        None => "none running".into(),
    };
    rows.push(("release".into(), running));
    let last = match &s.last_release {
        Some(r) => format!(
            "#{} {} -> {}, {}",
            r.id,
            time(r.started_at, tz),
            time(r.ended_at.unwrap_or(r.ends_at), tz),
            release_status(r, None)
        ),
        None => "never released".into(),
    };
    rows.push(("last release".into(), last));
    let next = if s.release_enabled {
        s.next_allowed.to_string()
    } else {
        format!("{} (temporary release is disabled)", s.next_allowed)
    };
    rows.push(("next allowed".into(), next));
    let logins = if s.logins.is_empty() {
        "none".into()
    } else {
        s.logins
            .iter()
            .map(|l| l.username.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    rows.push(("logins".into(), logins));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        out.push_str(&format!("{key:width$}  {value}\n"));
    }
    out.push_str(&format!("(times in {})\n", tz.name()));
    if !s.sessions.is_empty() {
        out.push_str("\nonline sessions:\n");
        let rows = s
            .sessions
            .iter()
            .map(|entry| {
                let session = &entry.session;
                vec![
                    session.username.clone(),
                    session.nas_name.clone(),
                    session
                        .framed_ip_address
                        .clone()
                        .unwrap_or_else(|| "-".into()),
                    time(session.started_at, tz),
                    match &entry.last_job {
                        None if !session.takes_coa => "profile given at login; its NAS takes \
                                                       no CoA: a change applies at the next \
                                                       connection"
                            .to_owned(),
                        None => "profile given at login".to_owned(),
                        Some(job) => job_status(job),
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &["USER", "NAS", "IP", "SINCE", "PROFILE ON THE NAS"],
            rows,
        ));
    }
    if !s.audit.is_empty() {
        out.push_str("\nrecent audit:\n");
        out.push_str(&audit(&s.audit, tz));
    }
    out
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// `running`, or how it ended (`expired`, `revoked by ana`, ...).
fn release_status(r: &Release, now: Option<DateTime<Utc>>) -> String {
    let now = now.unwrap_or_else(Utc::now);
    match r.ending(now) {
        None => "running".into(),
        Some((reason, _)) => match &r.ended_by {
            Some(by) => format!("{reason} by {by}"),
            None => reason.to_string(),
        },
    }
}

fn contracts(list: &[Contract], tz: Tz) -> String {
    table(
        &["CONTRACT", "STATE", "SINCE", "NAME"],
        list.iter()
            .map(|c| {
                vec![
                    c.id.clone(),
                    c.state.to_string(),
                    time(c.state_changed_at, tz),
                    c.name.clone(),
                ]
            })
            .collect(),
    )
}

fn login(l: &Login, tz: Tz) -> String {
    let mut out = format!(
        "login     {}\ncontract  {}\nupdated   {}\n",
        l.username,
        l.contract_id,
        time(l.updated_at, tz)
    );
    if l.reply.is_empty() {
        out.push_str("reply     (none)\n");
    }
    for (i, attribute) in l.reply.iter().enumerate() {
        let key = if i == 0 { "reply" } else { "" };
        out.push_str(&format!("{key:8}  {attribute}\n"));
    }
    out
}

fn releases(list: &[Release], tz: Tz) -> String {
    table(
        &[
            "ID", "CONTRACT", "STARTED", "ENDS", "STATUS", "OPERATOR", "REASON",
        ],
        list.iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.contract_id.clone(),
                    time(r.started_at, tz),
                    time(r.ended_at.unwrap_or(r.ends_at), tz),
                    release_status(r, None),
                    r.operator.clone(),
                    r.reason.clone(),
                ]
            })
            .collect(),
    )
}

fn audit(list: &[AuditEntry], tz: Tz) -> String {
    table(
        &["AT", "WHO", "ACTION", "CONTRACT", "OUTCOME", "DETAIL"],
        list.iter()
            .map(|a| {
                let who = match (&a.operator, a.actor_uid) {
                    (Some(o), Some(uid)) => format!("{o} (uid {uid})"),
                    (Some(o), None) => o.clone(),
                    (None, Some(uid)) => format!("uid {uid}"),
                    (None, None) => "-".into(),
                };
                vec![
                    time(a.at, tz),
                    who,
                    a.action.clone(),
                    a.contract_id.clone().unwrap_or_else(|| "-".into()),
                    a.outcome.clone(),
                    a.detail.clone(),
                ]
            })
            .collect(),
    )
}

fn tokens(list: &[TokenInfo], tz: Tz) -> String {
    let at = |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), |t| time(t, tz));
    table(
        &["NAME", "ROLE", "MADE", "LAST USED", "EXPIRES", "REVOKED"],
        list.iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.role.to_string(),
                    time(t.created_at, tz),
                    at(t.last_used_at),
                    at(t.expires_at),
                    at(t.revoked_at),
                ]
            })
            .collect(),
    )
}

fn sessions(list: &[Session], tz: Tz) -> String {
    table(
        &[
            "USER",
            "CONTRACT",
            "NAS",
            "IP",
            "STARTED",
            "STATUS",
            "IN",
            "OUT",
            "SESSION-ID",
        ],
        list.iter()
            .map(|s| {
                let status = match (s.stopped_at, &s.terminate_cause) {
                    (None, _) => "online".to_owned(),
                    (Some(at), Some(cause)) => format!("stopped {} ({cause})", time(at, tz)),
                    (Some(at), None) => format!("stopped {}", time(at, tz)),
                };
                vec![
                    s.username.clone(),
                    s.contract_id.clone().unwrap_or_else(|| "-".into()),
                    s.nas_name.clone(),
                    s.framed_ip_address.clone().unwrap_or_else(|| "-".into()),
                    time(s.started_at, tz),
                    status,
                    s.input_octets.to_string(),
                    s.output_octets.to_string(),
                    s.acct_session_id.clone(),
                ]
            })
            .collect(),
    )
}

fn nas(report: &NasReport) -> String {
    let drops = |c: &crate::model::CounterSnapshot| {
        if c.drops.is_empty() {
            "0".to_owned()
        } else {
            c.drops
                .iter()
                .map(|(reason, n)| format!("{reason}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let mut rows: Vec<Vec<String>> = report
        .nas
        .iter()
        .map(|n| {
            let c = &n.counters;
            vec![
                n.name.clone(),
                n.address.clone(),
                message_authenticator(n),
                n.coa_mode.as_str().to_owned(),
                n.coa_port.to_string(),
                c.access_requests.to_string(),
                c.accepts.to_string(),
                c.rejects.to_string(),
                c.accounting_requests.to_string(),
                drops(c),
            ]
        })
        .collect();
    rows.push(vec![
        "(unknown)".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        drops(&report.unknown_clients),
    ]);
    table(
        &[
            "NAS",
            "ADDRESS",
            "MESSAGE-AUTHENTICATOR",
            "COA-MODE",
            "COA-PORT",
            "AUTH",
            "ACCEPT",
            "REJECT",
            "ACCT",
            "DROPPED",
        ],
        rows,
    )
}

/// Whether a NAS must sign its Access-Requests: "required", "not
/// required", "auto: required from 10.0.0.1" or "auto: not seen signing".
fn message_authenticator(n: &crate::model::NasView) -> String {
    use crate::config::MessageAuthenticatorRule as Rule;
    match n.require_message_authenticator {
        Rule::Required => "required".to_owned(),
        Rule::NotRequired => "not required".to_owned(),
        Rule::Auto if n.signing_sources.is_empty() => "auto: not seen signing".to_owned(),
        Rule::Auto => format!("auto: required from {}", n.signing_sources.join(", ")),
    }
}

/// Whether the NAS has the profile a job moved the session to.
fn job_status(job: &EnforcementJob) -> String {
    let outcome = job.outcome.as_deref().unwrap_or("");
    match job.state {
        JobState::Acked => format!("{} confirmed ({outcome})", job.profile),
        JobState::Pending => format!("{} pending (not sent yet)", job.profile),
        JobState::Sent => format!("{} pending (sent {} times)", job.profile, job.sends),
        JobState::Nak | JobState::Timeout | JobState::Dropped => {
            format!("{} FAILED: {outcome}", job.profile)
        }
        JobState::Superseded => format!("{} superseded", job.profile),
    }
}

fn enforcement(list: &[EnforcementJob], tz: Tz) -> String {
    table(
        &[
            "ID", "CREATED", "CONTRACT", "USER", "NAS", "PROFILE", "KIND", "STATE", "SENDS",
            "OUTCOME",
        ],
        list.iter()
            .map(|j| {
                vec![
                    j.id.to_string(),
                    time(j.created_at, tz),
                    j.contract_id.clone(),
                    j.username.clone(),
                    j.nas_name.clone(),
                    j.profile.clone(),
                    j.kind
                        .map(|k| k.as_str().to_owned())
                        .unwrap_or_else(|| "-".into()),
                    j.state.as_str().to_owned(),
                    j.sends.to_string(),
                    format!("{} ({})", j.outcome.clone().unwrap_or_default(), j.cause),
                ]
            })
            .collect(),
    )
}

/// The rejected rows listed, and how many more there were.
fn rejected_rows(report: &ImportReport) -> String {
    let mut text: String = report
        .rejected
        .iter()
        .map(|r| format!("  line {}: {}\n", r.line, r.reason))
        .collect();
    let unlisted = report
        .rejected_total
        .saturating_sub(report.rejected.len() as u64);
    if unlisted > 0 {
        text.push_str(&format!("  ... and {unlisted} more rows rejected\n"));
    }
    text
}

/// Columns aligned on the widest cell; the last column is not padded.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i < last {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
