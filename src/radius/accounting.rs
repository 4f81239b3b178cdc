//! Accounting-Request: what the NAS reports about sessions, read with the
//! `radius` crate's RFC helpers, and the writer that batches those reports
//! into store transactions so that a burst never waits on a locked database.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use radius::core::packet::Packet;
use radius::core::{rfc2865, rfc2866, rfc2869};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::packet::{Attributes, Checked, attr};
use super::settings::NasClient;
use crate::config::CoaMode;
use crate::model::{AccountingEvent, AccountingKind};
use crate::store::{Store, StoreError};

/// Most events written in one transaction.
const MAX_BATCH: usize = 512;

/// What an Accounting-Request asks of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A change to record before answering.
    Event(Box<AccountingEvent>),
    /// Nothing to record (answered all the same, so the NAS stops
    /// retrying), and why.
    Ignored(&'static str),
    /// A request the store cannot hold as sent: not recorded, so not
    /// answered (RFC 2866 §4.1), and why.
    Refused(&'static str),
}

/// Reads an Accounting-Request that passed the receive checks.
pub fn report(
    request: &Checked<'_>,
    nas: &NasClient,
    source: IpAddr,
    now: DateTime<Utc>,
) -> Report {
    let Ok(packet) = Packet::decode(request.bytes, &nas.secret) else {
        return Report::Ignored("the packet does not decode");
    };
    let kind = match rfc2866::lookup_acct_status_type(&packet) {
        Some(Ok(rfc2866::ACCT_STATUS_TYPE_START)) => AccountingKind::Start,
        Some(Ok(rfc2866::ACCT_STATUS_TYPE_STOP)) => AccountingKind::Stop,
        Some(Ok(rfc2866::ACCT_STATUS_TYPE_INTERIM_UPDATE)) => AccountingKind::Interim,
        Some(Ok(rfc2866::ACCT_STATUS_TYPE_ACCOUNTING_ON)) => AccountingKind::On,
        Some(Ok(rfc2866::ACCT_STATUS_TYPE_ACCOUNTING_OFF)) => AccountingKind::Off,
        Some(Ok(_)) => return Report::Ignored("an Acct-Status-Type liberad does not record"),
        Some(Err(_)) | None => return Report::Ignored("no valid Acct-Status-Type"),
    };
    // A NUL is valid UTF-8, but PostgreSQL cannot store it in text (nor
    // can any login or CoA use it): such a request is refused whole, on
    // either backend, before it reaches the database.
    if Attributes::over(request.bytes).any(|(typ, value)| TEXT.contains(&typ) && value.contains(&0))
    {
        return Report::Refused("a text attribute holds a NUL byte");
    }
    let text =
        |found: Option<Result<String, _>>| found.and_then(Result::ok).filter(|s| !s.is_empty());
    let number = |found: Option<Result<u32, _>>| found.and_then(Result::ok);
    let nas_ip_address = rfc2865::lookup_nas_ip_address(&packet)
        .and_then(Result::ok)
        .map(|ip| ip.to_string());
    let nas_identifier = text(rfc2865::lookup_nas_identifier(&packet));
    let nas_identity = nas_identifier
        .clone()
        .or_else(|| nas_ip_address.clone())
        .unwrap_or_else(|| source.to_canonical().to_string());
    let username = text(rfc2865::lookup_user_name(&packet));
    let acct_session_id = text(rfc2866::lookup_acct_session_id(&packet));
    let (username, acct_session_id) = match kind {
        AccountingKind::On | AccountingKind::Off => (
            username.unwrap_or_default(),
            acct_session_id.unwrap_or_default(),
        ),
        _ => match (username, acct_session_id) {
            (Some(u), Some(s)) => (u, s),
            _ => return Report::Ignored("no User-Name or Acct-Session-Id"),
        },
    };
    let delay = number(rfc2866::lookup_acct_delay_time(&packet)).unwrap_or(0);
    let octets = |low: Option<u32>, high: Option<u32>| {
        (u64::from(high.unwrap_or(0)) << 32) | u64::from(low.unwrap_or(0))
    };
    Report::Event(Box::new(AccountingEvent {
        kind,
        at: now - chrono::Duration::seconds(i64::from(delay)),
        nas_name: nas.name.clone(),
        nas_identity,
        nas_address: source.to_canonical().to_string(),
        nas_ip_address,
        nas_identifier,
        username,
        acct_session_id,
        framed_ip_address: rfc2865::lookup_framed_ip_address(&packet)
            .and_then(Result::ok)
            .map(|ip| ip.to_string()),
        calling_station_id: text(rfc2865::lookup_calling_station_id(&packet)),
        nas_port: number(rfc2865::lookup_nas_port(&packet)),
        nas_without_coa: nas.coa_mode == CoaMode::None,
        nas_port_id: text(rfc2869::lookup_nas_port_id(&packet)),
        session_time: number(rfc2866::lookup_acct_session_time(&packet)),
        input_octets: octets(
            number(rfc2866::lookup_acct_input_octets(&packet)),
            number(rfc2869::lookup_acct_input_gigawords(&packet)),
        ),
        output_octets: octets(
            number(rfc2866::lookup_acct_output_octets(&packet)),
            number(rfc2869::lookup_acct_output_gigawords(&packet)),
        ),
        terminate_cause: number(rfc2866::lookup_acct_terminate_cause(&packet))
            .map(terminate_cause_name),
    }))
}

/// The text attributes an accounting report keeps.
const TEXT: [u8; 5] = [
    attr::USER_NAME,
    attr::ACCT_SESSION_ID,
    attr::NAS_IDENTIFIER,
    attr::CALLING_STATION_ID,
    attr::NAS_PORT_ID,
];

/// The RFC 2866 name of an Acct-Terminate-Cause.
fn terminate_cause_name(cause: u32) -> String {
    let name = match cause {
        1 => "User-Request",
        2 => "Lost-Carrier",
        3 => "Lost-Service",
        4 => "Idle-Timeout",
        5 => "Session-Timeout",
        6 => "Admin-Reset",
        7 => "Admin-Reboot",
        8 => "Port-Error",
        9 => "NAS-Error",
        10 => "NAS-Request",
        11 => "NAS-Reboot",
        12 => "Port-Unneeded",
        13 => "Port-Preempted",
        14 => "Port-Suspended",
        15 => "Service-Unavailable",
        16 => "Callback",
        17 => "User-Error",
        18 => "Host-Request",
        other => return other.to_string(),
    };
    name.to_owned()
}

struct Job {
    event: AccountingEvent,
    durable: oneshot::Sender<bool>,
}

/// Hands accounting events to a single writer task that groups whatever is
/// waiting into one transaction.
#[derive(Clone)]
pub struct AccountingWriter {
    queue: mpsc::Sender<Job>,
}

impl AccountingWriter {
    /// Starts the writer; it stops once every handle is dropped and what
    /// was queued is written.
    pub fn start(store: Arc<Store>, capacity: usize, tasks: &TaskTracker) -> AccountingWriter {
        let (queue, jobs) = mpsc::channel(capacity.max(1));
        tasks.spawn(write_batches(store, jobs));
        AccountingWriter { queue }
    }

    /// Records an event; true once it is durable in the store.
    pub async fn record(&self, event: AccountingEvent) -> bool {
        let (durable, done) = oneshot::channel();
        if self.queue.send(Job { event, durable }).await.is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }
}

async fn write_batches(store: Arc<Store>, mut jobs: mpsc::Receiver<Job>) {
    let failures = crate::logging::Throttle::new(std::time::Duration::from_secs(10));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, waiting): (Vec<AccountingEvent>, Vec<oneshot::Sender<bool>>) =
            batch.drain(..).map(|job| (job.event, job.durable)).unzip();
        let (written, errors) = record_batch(&events, &store).await;
        for (error, events) in errors {
            if let Some(held) = failures.allow(tokio::time::Instant::now()) {
                let what = format!(
                    "accounting not recorded ({events} events, {held} more failures since the \
                     last line; not answered: the NAS will retry)"
                );
                crate::store::log_failure(store.as_ref(), &what, &error);
            }
        }
        for (sender, durable) in waiting.into_iter().zip(written) {
            let _ = sender.send(durable);
        }
    }
}

/// A write of accounting events that has finished: durable, or why not.
type Written<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Where accounting events are written: the store (a test writes them
/// elsewhere).
trait Sink: Sync {
    fn write<'a>(&'a self, events: &'a [AccountingEvent]) -> Written<'a>;
}

impl Sink for Arc<Store> {
    fn write<'a>(&'a self, events: &'a [AccountingEvent]) -> Written<'a> {
        Box::pin(self.record_accounting(events))
    }
}

/// Writes a batch of events in one transaction. When the database refuses
/// it over something in it (not the database itself), each event is
/// written alone, so that one bad request never costs the others their
/// answer. Returns which events are durable, and the errors with how many
/// events each left unwritten.
async fn record_batch(
    events: &[AccountingEvent],
    sink: &impl Sink,
) -> (Vec<bool>, Vec<(StoreError, usize)>) {
    match sink.write(events).await {
        Ok(()) => (vec![true; events.len()], Vec::new()),
        Err(e) if e.outage_cause().is_none() && events.len() > 1 => {
            let mut written = Vec::with_capacity(events.len());
            let mut errors = Vec::new();
            for event in events {
                match sink.write(std::slice::from_ref(event)).await {
                    Ok(()) => written.push(true),
                    Err(e) => {
                        written.push(false);
                        errors.push((e, 1));
                    }
                }
            }
            (written, errors)
        }
        Err(e) => (vec![false; events.len()], vec![(e, events.len())]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(session: &str) -> AccountingEvent {
        AccountingEvent {
            acct_session_id: session.to_owned(),
            ..AccountingEvent::default()
        }
    }

    /// A database that refuses, over its data, any write holding a bad
    /// event, or every write while it is down.
    struct Refusing {
        down: bool,
    }

    impl Sink for Refusing {
        fn write<'a>(&'a self, events: &'a [AccountingEvent]) -> Written<'a> {
            Box::pin(async move {
                if self.down {
                    return Err(StoreError::Unwritable {
                        cause: "unreachable",
                        detail: "the test's database is down".into(),
                    });
                }
                if events.iter().any(|e| e.acct_session_id == "bad") {
                    return Err(StoreError::Corrupt("a value it cannot hold".into()));
                }
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn one_bad_event_never_costs_the_others_their_answer() {
        let up = Refusing { down: false };
        let events = [event("a"), event("bad"), event("c")];
        let (written, errors) = record_batch(&events, &up).await;
        assert_eq!(written, vec![true, false, true]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].1, 1);
        // An outage is no reason to try each one: none is written.
        let (written, errors) = record_batch(&events, &Refusing { down: true }).await;
        assert_eq!(written, vec![false; 3]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].1, 3);
        let good = [event("a"), event("b")];
        let (written, errors) = record_batch(&good, &up).await;
        assert_eq!(written, vec![true, true]);
        assert!(errors.is_empty());
    }
}
