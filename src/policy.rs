//! The temporary-release rules ("liberação temporária"), as pure functions.
//!
//! Nothing here reads a clock, a file or a database: every function takes the
//! instant `now` and the time zone it needs. The store calls [`check_release`]
//! inside the transaction that writes the release, the admin socket uses
//! [`next_allowed_date`] for the contract summary, and RADIUS authentication
//! and the enforcement of a change use [`effective_profile`].

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The state of a contract as the billing system sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractState {
    /// Paid up: full service.
    Active,
    /// Speed reduced ahead of a block, as Brazilian rules require.
    Reduced,
    /// Blocked for non-payment.
    Blocked,
    /// No longer a customer: always rejected.
    Cancelled,
}

impl ContractState {
    /// Every state, in the order operators read them.
    pub const ALL: [ContractState; 4] = [
        ContractState::Active,
        ContractState::Reduced,
        ContractState::Blocked,
        ContractState::Cancelled,
    ];

    /// The name used in the database, the socket protocol and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractState::Active => "active",
            ContractState::Reduced => "reduced",
            ContractState::Blocked => "blocked",
            ContractState::Cancelled => "cancelled",
        }
    }

    /// Whether a temporary release may apply to a contract in this state.
    pub fn is_restricted(self) -> bool {
        matches!(self, ContractState::Reduced | ContractState::Blocked)
    }
}

impl fmt::Display for ContractState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A contract state name that is not one of `active|reduced|blocked|cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown contract state {0:?} (expected active, reduced, blocked or cancelled)")]
pub struct UnknownState(pub String);

impl FromStr for ContractState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContractState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// The three parameters of the temporary release, shared by every instance
/// through the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    /// Temporary release may be used at all ("Status liberar temporariamente").
    pub enabled: bool,
    /// Calendar days a release lasts; 1 = only the current day
    /// ("Quantidade de dias de liberação temporária").
    pub release_days: u32,
    /// Days after the last release before another is allowed; 0 = no wait
    /// ("Renovar liberação temporária após quantos dias").
    pub renew_after_days: u32,
}

impl Default for Parameters {
    fn default() -> Self {
        Parameters {
            enabled: true,
            release_days: 1,
            renew_after_days: 30,
        }
    }
}

/// The values `release_days` may take.
pub const RELEASE_DAYS: RangeInclusive<u32> = 1..=90;
/// The values `renew_after_days` may take.
pub const RENEW_AFTER_DAYS: RangeInclusive<u32> = 0..=365;

/// A temporary-release parameter, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParameterName {
    Enabled,
    ReleaseDays,
    RenewAfterDays,
}

impl ParameterName {
    /// Every parameter, in the order `params show` lists them.
    pub const ALL: [ParameterName; 3] = [
        ParameterName::Enabled,
        ParameterName::ReleaseDays,
        ParameterName::RenewAfterDays,
    ];

    /// The name `params set` takes, and the column it is kept in.
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterName::Enabled => "enabled",
            ParameterName::ReleaseDays => "release_days",
            ParameterName::RenewAfterDays => "renew_after_days",
        }
    }

    /// What a value must be, as an error says it.
    fn expected(self) -> &'static str {
        match self {
            ParameterName::Enabled => "true or false",
            ParameterName::ReleaseDays => "a whole number of days from 1 to 90",
            ParameterName::RenewAfterDays => "a whole number of days from 0 to 365",
        }
    }
}

impl fmt::Display for ParameterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParameterName {
    type Err = ParameterError;

    fn from_str(name: &str) -> Result<ParameterName, ParameterError> {
        ParameterName::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| ParameterError::UnknownName(name.to_owned()))
    }
}

/// One parameter set to a value, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parameter {
    Enabled(bool),
    ReleaseDays(u32),
    RenewAfterDays(u32),
}

impl Parameter {
    /// A parameter as an operator typed it (`release_days`, `3`), or why
    /// it cannot be set so.
    pub fn parse(name: &str, value: &str) -> Result<Parameter, ParameterError> {
        let name: ParameterName = name.parse()?;
        let bad = || ParameterError::BadValue {
            name: name.as_str(),
            value: value.to_owned(),
            expected: name.expected(),
        };
        Ok(match name {
            ParameterName::Enabled => {
                Parameter::Enabled(match value.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "1" => true,
                    "false" | "no" | "off" | "0" => false,
                    _ => return Err(bad()),
                })
            }
            ParameterName::ReleaseDays => {
                Parameter::ReleaseDays(parse_in_range(value, &RELEASE_DAYS).ok_or_else(bad)?)
            }
            ParameterName::RenewAfterDays => {
                Parameter::RenewAfterDays(parse_in_range(value, &RENEW_AFTER_DAYS).ok_or_else(bad)?)
            }
        })
    }

    pub fn name(self) -> ParameterName {
        match self {
            Parameter::Enabled(_) => ParameterName::Enabled,
            Parameter::ReleaseDays(_) => ParameterName::ReleaseDays,
            Parameter::RenewAfterDays(_) => ParameterName::RenewAfterDays,
        }
    }
}

/// `release_days = 3`, as the audit records a change.
impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parameter::Enabled(on) => write!(f, "{} = {on}", self.name()),
            Parameter::ReleaseDays(n) | Parameter::RenewAfterDays(n) => {
                write!(f, "{} = {n}", self.name())
            }
        }
    }
}

/// A parameter change that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParameterError {
    #[error("unknown parameter {0:?} (expected enabled, release_days or renew_after_days)")]
    UnknownName(String),
    #[error("{name} must be {expected}, not {value:?}")]
    BadValue {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl Parameters {
    /// These parameters with one of them changed.
    pub fn with(self, parameter: Parameter) -> Parameters {
        let mut next = self;
        match parameter {
            Parameter::Enabled(on) => next.enabled = on,
            Parameter::ReleaseDays(n) => next.release_days = n,
            Parameter::RenewAfterDays(n) => next.renew_after_days = n,
        }
        next
    }
}

fn parse_in_range(value: &str, range: &RangeInclusive<u32>) -> Option<u32> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
}

/// What the rules need to know about one existing contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContractFacts {
    pub state: ContractState,
    /// End of the release not yet recorded as ended, if any. The policy
    /// itself decides whether it is still running at `now`.
    pub open_release_ends_at: Option<DateTime<Utc>>,
    /// Start of the contract's most recent release, however it ended.
    pub last_release_started_at: Option<DateTime<Utc>>,
}

/// Why a release is refused, in the order the checks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The feature is switched off (`enabled = false`).
    Disabled,
    /// No contract has that id.
    NotFound,
    /// The contract is cancelled.
    Cancelled,
    /// The contract is active: there is nothing to release.
    NotBlocked,
    /// A release is running until the given instant.
    AlreadyReleased { until: DateTime<Utc> },
    /// The last release was too recent; a release is allowed from the given
    /// local date on.
    Cooldown { next_allowed: NaiveDate },
}

impl Refusal {
    /// The stable error code that scripts match on.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::NotFound => "not_found",
            Refusal::Cancelled => "cancelled",
            Refusal::NotBlocked => "not_blocked",
            Refusal::AlreadyReleased { .. } => "already_released",
            Refusal::Cooldown { .. } => "cooldown",
        }
    }

    /// The message for the operator: what happened and what to do.
    pub fn describe(&self, contract: &str, tz: Tz) -> String {
        match self {
            Refusal::Disabled => "temporary release (liberação temporária) is disabled; \
                 enable it with `liberactl params set enabled true`"
                .to_owned(),
            Refusal::NotFound => format!(
                "contract {contract} is not known; add it with `liberactl contract add` or import it"
            ),
            Refusal::Cancelled => {
                format!("contract {contract} is cancelled; a cancelled contract cannot be released")
            }
            Refusal::NotBlocked => format!(
                "contract {contract} is active; only a reduced or blocked contract can be released"
            ),
            Refusal::AlreadyReleased { until } => format!(
                "contract {contract} is already released until {}",
                format_local(*until, tz)
            ),
            Refusal::Cooldown { next_allowed } => format!(
                "contract {contract} was released recently; it may be released again on {next_allowed}"
            ),
        }
    }
}

/// The release that the rules allow: from `starts_at` to `ends_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Decides a release request for a contract at `now`. `contract` is `None`
/// when no contract has the requested id. The first failing check is the
/// answer: enabled, contract known, neither cancelled nor active, not
/// already released, the renewal interval passed.
pub fn check_release(
    params: &Parameters,
    contract: Option<&ContractFacts>,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Grant, Refusal> {
    if !params.enabled {
        return Err(Refusal::Disabled);
    }
    let facts = contract.ok_or(Refusal::NotFound)?;
    match facts.state {
        ContractState::Cancelled => return Err(Refusal::Cancelled),
        ContractState::Active => return Err(Refusal::NotBlocked),
        ContractState::Reduced | ContractState::Blocked => {}
    }
    if let Some(until) = running_until(facts.open_release_ends_at, now) {
        return Err(Refusal::AlreadyReleased { until });
    }
    if let Some(started) = facts.last_release_started_at {
        let next_allowed = add_days(local_date(started, tz), params.renew_after_days);
        if next_allowed > local_date(now, tz) {
            return Err(Refusal::Cooldown { next_allowed });
        }
    }
    Ok(Grant {
        starts_at: now,
        ends_at: release_end(now, tz, params.release_days),
    })
}

/// The end of an open release if it is still running at `now`.
pub fn running_until(ends_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    ends_at.filter(|end| *end > now)
}

/// The first local date on which a release may start, for the contract
/// summary: today, unless a running release or the cooldown after the last
/// one pushes it later.
pub fn next_allowed_date(
    params: &Parameters,
    facts: &ContractFacts,
    now: DateTime<Utc>,
    tz: Tz,
) -> NaiveDate {
    let mut date = local_date(now, tz);
    if let Some(started) = facts.last_release_started_at {
        date = date.max(add_days(local_date(started, tz), params.renew_after_days));
    }
    if let Some(until) = running_until(facts.open_release_ends_at, now) {
        date = date.max(local_date(until, tz));
    }
    date
}

/// When a release made at `now` ends: local midnight at the start of day
/// (today + `release_days`). With 1 day it ends tonight at 00:00.
pub fn release_end(now: DateTime<Utc>, tz: Tz, release_days: u32) -> DateTime<Utc> {
    start_of_day(add_days(local_date(now, tz), release_days), tz)
}

/// The local calendar date of an instant.
pub fn local_date(instant: DateTime<Utc>, tz: Tz) -> NaiveDate {
    instant.with_timezone(&tz).date_naive()
}

/// The first instant of a local date. Where a DST change skips midnight
/// (Brazil until 2019 moved clocks from 00:00 to 01:00), the day starts at
/// the first instant that exists; where midnight happens twice, at the first.
pub fn start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => {
            first.with_timezone(&Utc).min(second.with_timezone(&Utc))
        }
        LocalResult::None => {
            // Midnight lies in a gap. Read with the offset in force before the
            // gap, it names exactly the instant of the transition, which is
            // the first instant of the new day.
            let before_gap = midnight.and_utc() - chrono::Duration::days(1);
            let offset = tz
                .offset_from_utc_datetime(&before_gap.naive_utc())
                .fix()
                .local_minus_utc();
            midnight.and_utc() - chrono::Duration::seconds(i64::from(offset))
        }
    }
}

/// An instant as an operator reads it: `2026-11-28 00:00 America/Sao_Paulo`
/// (seconds shown only when not zero).
pub fn format_local(instant: DateTime<Utc>, tz: Tz) -> String {
    let local = instant.with_timezone(&tz);
    let pattern = if instant.timestamp() % 60 == 0 {
        "%Y-%m-%d %H:%M"
    } else {
        "%Y-%m-%d %H:%M:%S"
    };
    format!("{} {}", local.format(pattern), tz.name())
}

fn add_days(date: NaiveDate, days: u32) -> NaiveDate {
    date.checked_add_days(Days::new(u64::from(days)))
        .unwrap_or(NaiveDate::MAX)
}

/// The RADIUS profile a contract gets from its state and release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Active,
    Released,
    Reduced,
    Blocked,
}

impl Profile {
    /// The name used in the configuration (`[profiles.NAME]`) and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Active => "active",
            Profile::Released => "released",
            Profile::Reduced => "reduced",
            Profile::Blocked => "blocked",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The profile the network applies to a contract, or `None` when its logins
/// are to be rejected outright (cancelled contract).
pub fn effective_profile(state: ContractState, released: bool) -> Option<Profile> {
    match (state, released) {
        (ContractState::Cancelled, _) => None,
        (ContractState::Active, _) => Some(Profile::Active),
        (ContractState::Reduced | ContractState::Blocked, true) => Some(Profile::Released),
        (ContractState::Reduced, false) => Some(Profile::Reduced),
        (ContractState::Blocked, false) => Some(Profile::Blocked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::{Los_Angeles, Manaus, Sao_Paulo};

    /// An instant given as local wall-clock time in `tz` (must exist).
    fn local(tz: Tz, s: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        tz.from_local_datetime(&naive)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn blocked() -> ContractFacts {
        ContractFacts {
            state: ContractState::Blocked,
            open_release_ends_at: None,
            last_release_started_at: None,
        }
    }

    fn params(release_days: u32, renew_after_days: u32) -> Parameters {
        Parameters {
            enabled: true,
            release_days,
            renew_after_days,
        }
    }

    #[test]
    fn defaults_are_those_of_the_design() {
        assert_eq!(params(1, 30), Parameters::default());
    }

    #[test]
    fn disabled_is_checked_first() {
        let p = Parameters {
            enabled: false,
            ..Parameters::default()
        };
        let now = local(Sao_Paulo, "2026-11-27 10:00:00");
        assert_eq!(
            check_release(&p, None, now, Sao_Paulo),
            Err(Refusal::Disabled)
        );
        let cancelled = ContractFacts {
            state: ContractState::Cancelled,
            ..blocked()
        };
        assert_eq!(
            check_release(&p, Some(&cancelled), now, Sao_Paulo),
            Err(Refusal::Disabled)
        );
    }

    #[test]
    fn unknown_contract_is_not_found() {
        let now = local(Sao_Paulo, "2026-11-27 10:00:00");
        assert_eq!(
            check_release(&params(1, 30), None, now, Sao_Paulo),
            Err(Refusal::NotFound)
        );
    }

    #[test]
    fn cancelled_and_active_contracts_are_refused() {
        let now = local(Sao_Paulo, "2026-11-27 10:00:00");
        for (state, refusal) in [
            (ContractState::Cancelled, Refusal::Cancelled),
            (ContractState::Active, Refusal::NotBlocked),
        ] {
            let facts = ContractFacts {
                state,
                // Even a running release does not hide the state check.
                open_release_ends_at: Some(now + chrono::Duration::hours(3)),
                last_release_started_at: Some(now - chrono::Duration::hours(1)),
            };
            assert_eq!(
                check_release(&params(1, 30), Some(&facts), now, Sao_Paulo),
                Err(refusal)
            );
        }
    }

    #[test]
    fn reduced_and_blocked_contracts_may_be_released() {
        let now = local(Sao_Paulo, "2026-11-27 10:00:00");
        for state in [ContractState::Reduced, ContractState::Blocked] {
            let facts = ContractFacts { state, ..blocked() };
            let grant = check_release(&params(1, 30), Some(&facts), now, Sao_Paulo).unwrap();
            assert_eq!(grant.starts_at, now);
            assert_eq!(grant.ends_at, local(Sao_Paulo, "2026-11-28 00:00:00"));
        }
    }

    #[test]
    fn running_release_is_already_released_with_its_end() {
        let now = local(Sao_Paulo, "2026-11-27 10:00:00");
        let until = local(Sao_Paulo, "2026-11-28 00:00:00");
        let facts = ContractFacts {
            open_release_ends_at: Some(until),
            last_release_started_at: Some(local(Sao_Paulo, "2026-11-27 09:00:00")),
            ..blocked()
        };
        let refusal = check_release(&params(1, 0), Some(&facts), now, Sao_Paulo).unwrap_err();
        assert_eq!(refusal, Refusal::AlreadyReleased { until });
        assert_eq!(refusal.code(), "already_released");
        assert_eq!(
            refusal.describe("1234", Sao_Paulo),
            "contract 1234 is already released until 2026-11-28 00:00 America/Sao_Paulo"
        );
    }

    #[test]
    fn an_open_release_past_its_end_is_not_running() {
        let until = local(Sao_Paulo, "2026-11-28 00:00:00");
        let facts = ContractFacts {
            open_release_ends_at: Some(until),
            last_release_started_at: Some(local(Sao_Paulo, "2026-11-27 09:00:00")),
            ..blocked()
        };
        // At the very instant of the end the release is over.
        let grant = check_release(&params(1, 0), Some(&facts), until, Sao_Paulo).unwrap();
        assert_eq!(grant.ends_at, local(Sao_Paulo, "2026-11-29 00:00:00"));
        let just_before = until - chrono::Duration::seconds(1);
        assert_eq!(
            check_release(&params(1, 0), Some(&facts), just_before, Sao_Paulo),
            Err(Refusal::AlreadyReleased { until })
        );
    }

    #[test]
    fn release_at_the_last_second_of_the_day_ends_one_second_later() {
        let now = local(Sao_Paulo, "2026-11-27 23:59:59");
        let grant = check_release(&params(1, 30), Some(&blocked()), now, Sao_Paulo).unwrap();
        assert_eq!(grant.ends_at, local(Sao_Paulo, "2026-11-28 00:00:00"));
        assert_eq!((grant.ends_at - grant.starts_at).num_seconds(), 1);
    }

    #[test]
    fn release_at_midnight_lasts_the_whole_day() {
        let now = local(Sao_Paulo, "2026-11-28 00:00:00");
        let grant = check_release(&params(1, 30), Some(&blocked()), now, Sao_Paulo).unwrap();
        assert_eq!(grant.ends_at, local(Sao_Paulo, "2026-11-29 00:00:00"));
        assert_eq!((grant.ends_at - grant.starts_at).num_hours(), 24);
    }

    #[test]
    fn release_days_three_ends_at_the_start_of_the_third_day_after() {
        let now = local(Sao_Paulo, "2026-11-27 15:30:00");
        let grant = check_release(&params(3, 30), Some(&blocked()), now, Sao_Paulo).unwrap();
        assert_eq!(grant.ends_at, local(Sao_Paulo, "2026-11-30 00:00:00"));
        let at_midnight = local(Sao_Paulo, "2026-11-27 00:00:00");
        assert_eq!(
            release_end(at_midnight, Sao_Paulo, 3),
            local(Sao_Paulo, "2026-11-30 00:00:00")
        );
    }

    /// A contract whose last release started at `started` (and has ended).
    fn released_before(started: DateTime<Utc>) -> ContractFacts {
        ContractFacts {
            last_release_started_at: Some(started),
            ..blocked()
        }
    }

    #[test]
    fn renew_after_zero_allows_a_new_release_the_same_day() {
        let started = local(Sao_Paulo, "2026-11-27 08:00:00");
        let now = local(Sao_Paulo, "2026-11-27 20:00:00");
        let grant = check_release(
            &params(1, 0),
            Some(&released_before(started)),
            now,
            Sao_Paulo,
        );
        let grant = grant.unwrap();
        assert_eq!(grant.starts_at, now);
        assert_eq!(grant.ends_at, local(Sao_Paulo, "2026-11-28 00:00:00"));
    }

    #[test]
    fn renew_after_one_allows_the_next_day_and_not_before() {
        let started = local(Sao_Paulo, "2026-11-27 08:00:00");
        let facts = released_before(started);
        let last_second = local(Sao_Paulo, "2026-11-27 23:59:59");
        assert_eq!(
            check_release(&params(1, 1), Some(&facts), last_second, Sao_Paulo),
            Err(Refusal::Cooldown {
                next_allowed: date("2026-11-28")
            })
        );
        let next_midnight = local(Sao_Paulo, "2026-11-28 00:00:00");
        let grant = check_release(&params(1, 1), Some(&facts), next_midnight, Sao_Paulo).unwrap();
        assert_eq!(grant.ends_at, local(Sao_Paulo, "2026-11-29 00:00:00"));
    }

    #[test]
    fn renew_after_thirty_allows_exactly_the_first_allowed_date() {
        let started = local(Sao_Paulo, "2026-11-27 23:00:00");
        let facts = released_before(started);
        let day_before = local(Sao_Paulo, "2026-12-26 23:59:59");
        let refusal = check_release(&params(1, 30), Some(&facts), day_before, Sao_Paulo);
        assert_eq!(
            refusal,
            Err(Refusal::Cooldown {
                next_allowed: date("2026-12-27")
            })
        );
        assert_eq!(
            refusal.unwrap_err().describe("1234", Sao_Paulo),
            "contract 1234 was released recently; it may be released again on 2026-12-27"
        );
        let first_allowed = local(Sao_Paulo, "2026-12-27 00:00:00");
        let grant = check_release(&params(1, 30), Some(&facts), first_allowed, Sao_Paulo).unwrap();
        assert_eq!(grant.starts_at, first_allowed);
        assert_eq!(grant.ends_at, local(Sao_Paulo, "2026-12-28 00:00:00"));
    }

    #[test]
    fn released_unblocked_and_blocked_again_still_waits_for_the_cooldown() {
        // Released on the 27th, paid (unblocked) the same day: the release
        // ended early, but it still counts as the last release.
        let started = local(Sao_Paulo, "2026-11-27 10:00:00");
        let facts = released_before(started);
        let blocked_again = local(Sao_Paulo, "2026-12-10 09:00:00");
        assert_eq!(
            check_release(&params(1, 30), Some(&facts), blocked_again, Sao_Paulo),
            Err(Refusal::Cooldown {
                next_allowed: date("2026-12-27")
            })
        );
        assert_eq!(
            next_allowed_date(&params(1, 30), &facts, blocked_again, Sao_Paulo),
            date("2026-12-27")
        );
    }

    #[test]
    fn sao_paulo_2018_11_04_starts_at_one_in_the_morning() {
        // Brazil moved its clocks from 00:00 to 01:00 that day: midnight did
        // not exist, the day began at 01:00 -02 (03:00 UTC).
        let day = date("2018-11-04");
        assert_eq!(start_of_day(day, Sao_Paulo), utc("2018-11-04T03:00:00Z"));
        let now = local(Sao_Paulo, "2018-11-03 18:00:00");
        let grant = check_release(&params(1, 30), Some(&blocked()), now, Sao_Paulo).unwrap();
        assert_eq!(grant.ends_at, utc("2018-11-04T03:00:00Z"));
        assert_eq!(
            format_local(grant.ends_at, Sao_Paulo),
            "2018-11-04 01:00 America/Sao_Paulo"
        );
        // A release lasting over the gap day: that day has 23 hours.
        let grant = check_release(&params(2, 30), Some(&blocked()), now, Sao_Paulo).unwrap();
        assert_eq!(grant.ends_at, utc("2018-11-05T02:00:00Z"));
    }

    #[test]
    fn sao_paulo_end_of_dst_repeats_the_last_hour_not_midnight() {
        // 2019-02-17: clocks went from 00:00 -02 back to 23:00 -03 on the
        // 16th. Midnight of the 17th happened once, at 03:00 UTC.
        assert_eq!(
            start_of_day(date("2019-02-17"), Sao_Paulo),
            utc("2019-02-17T03:00:00Z")
        );
        // Released in the repeated hour: the release still ends at the
        // start of the 17th.
        let repeated = utc("2019-02-17T02:30:00Z");
        assert_eq!(local_date(repeated, Sao_Paulo), date("2019-02-16"));
        assert_eq!(
            release_end(repeated, Sao_Paulo, 1),
            utc("2019-02-17T03:00:00Z")
        );
    }

    #[test]
    fn a_zone_with_midnight_twice_starts_the_day_at_the_first() {
        // America/Havana ended DST at 01:00 -> 00:00 on 2013-11-03, so
        // midnight of the 3rd happened twice; the day starts at the first.
        let havana: Tz = "America/Havana".parse().unwrap();
        assert_eq!(
            start_of_day(date("2013-11-03"), havana),
            utc("2013-11-03T04:00:00Z")
        );
    }

    #[test]
    fn west_of_utc_the_local_date_rules_not_the_utc_date() {
        // 22:00 in Los Angeles on the 27th is already the 28th in UTC.
        let now = local(Los_Angeles, "2026-11-27 22:00:00");
        assert_eq!(now.date_naive(), date("2026-11-28"));
        let grant = check_release(&params(1, 30), Some(&blocked()), now, Los_Angeles).unwrap();
        assert_eq!(grant.ends_at, utc("2026-11-28T08:00:00Z"));
        assert_eq!(
            format_local(grant.ends_at, Los_Angeles),
            "2026-11-28 00:00 America/Los_Angeles"
        );
        // The cooldown counts local dates too: released late on the 27th
        // local, renew after 1 day allows the 28th local, even though that
        // release started on the 28th in UTC.
        let facts = released_before(now);
        let next_morning = local(Los_Angeles, "2026-11-28 00:00:00");
        let grant = check_release(&params(1, 1), Some(&facts), next_morning, Los_Angeles).unwrap();
        assert_eq!(grant.ends_at, local(Los_Angeles, "2026-11-29 00:00:00"));
        let same_evening = local(Los_Angeles, "2026-11-27 23:59:59");
        assert_eq!(
            check_release(&params(1, 1), Some(&facts), same_evening, Los_Angeles),
            Err(Refusal::Cooldown {
                next_allowed: date("2026-11-28")
            })
        );
    }

    #[test]
    fn a_zone_without_dst_has_fixed_midnights() {
        let now = local(Manaus, "2026-11-27 12:00:00");
        assert_eq!(release_end(now, Manaus, 1), utc("2026-11-28T04:00:00Z"));
    }

    #[test]
    fn next_allowed_date_accounts_for_running_release_and_cooldown() {
        let now = local(Sao_Paulo, "2026-11-27 10:00:00");
        assert_eq!(
            next_allowed_date(&params(1, 30), &blocked(), now, Sao_Paulo),
            date("2026-11-27")
        );
        let running = ContractFacts {
            open_release_ends_at: Some(local(Sao_Paulo, "2026-11-30 00:00:00")),
            last_release_started_at: Some(now),
            ..blocked()
        };
        assert_eq!(
            next_allowed_date(&params(3, 0), &running, now, Sao_Paulo),
            date("2026-11-30")
        );
        assert_eq!(
            next_allowed_date(&params(3, 30), &running, now, Sao_Paulo),
            date("2026-12-27")
        );
    }

    #[test]
    fn effective_profile_follows_the_design_table() {
        use ContractState::*;
        assert_eq!(effective_profile(Active, false), Some(Profile::Active));
        assert_eq!(effective_profile(Active, true), Some(Profile::Active));
        assert_eq!(effective_profile(Reduced, true), Some(Profile::Released));
        assert_eq!(effective_profile(Blocked, true), Some(Profile::Released));
        assert_eq!(effective_profile(Reduced, false), Some(Profile::Reduced));
        assert_eq!(effective_profile(Blocked, false), Some(Profile::Blocked));
        assert_eq!(effective_profile(Cancelled, false), None);
        assert_eq!(effective_profile(Cancelled, true), None);
    }

    #[test]
    fn every_refusal_has_its_own_code() {
        let now = utc("2026-11-27T12:00:00Z");
        let codes: std::collections::HashSet<_> = [
            Refusal::Disabled,
            Refusal::NotFound,
            Refusal::Cancelled,
            Refusal::NotBlocked,
            Refusal::AlreadyReleased { until: now },
            Refusal::Cooldown {
                next_allowed: date("2026-12-01"),
            },
        ]
        .iter()
        .map(Refusal::code)
        .collect();
        assert_eq!(codes.len(), 6);
    }

    #[test]
    fn parameters_are_validated() {
        let p = Parameters::default();
        let set = |name: &str, value: &str| Parameter::parse(name, value).map(|v| p.with(v));
        assert_eq!(set("release_days", "3").unwrap().release_days, 3);
        assert_eq!(set("release_days", " 90 ").unwrap().release_days, 90);
        assert!(set("release_days", "0").is_err());
        assert!(set("release_days", "91").is_err());
        assert!(set("release_days", "-1").is_err());
        assert!(set("release_days", "1.5").is_err());
        assert_eq!(set("renew_after_days", "0").unwrap().renew_after_days, 0);
        assert_eq!(
            set("renew_after_days", "365").unwrap().renew_after_days,
            365
        );
        assert!(set("renew_after_days", "366").is_err());
        assert!(!set("enabled", "false").unwrap().enabled);
        assert!(set("enabled", "maybe").is_err());
        assert_eq!(
            set("days", "1"),
            Err(ParameterError::UnknownName("days".into()))
        );
        // Each name once: parsed back from what it prints.
        for name in ParameterName::ALL {
            assert_eq!(name.as_str().parse(), Ok(name));
        }
        assert_eq!(
            Parameter::parse("release_days", "3").unwrap().to_string(),
            "release_days = 3"
        );
    }

    #[test]
    fn contract_states_parse_by_name() {
        assert_eq!("Blocked".parse(), Ok(ContractState::Blocked));
        assert_eq!(" reduced ".parse(), Ok(ContractState::Reduced));
        assert!("bloqueado".parse::<ContractState>().is_err());
    }
}
