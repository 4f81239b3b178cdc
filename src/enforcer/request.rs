//! RFC 5176 requests for one job, and what the NAS's answer means: pure
//! functions of the job, the NAS, the settings and the clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{CoaMode, EnforcementConfig, ProfileAction};
use crate::model::OutboxJob;
use crate::model::RequestKind;
use crate::radius::Settings;
use crate::radius::dictionary::WireAttribute;
use crate::radius::packet::{self, Attributes, attr, code};
use crate::radius::settings::NasClient;

/// What to send for a job: the kind and, for CoA, the profile's attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub kind: RequestKind,
    pub attributes: Vec<WireAttribute>,
}

/// Chooses CoA or Disconnect. A Disconnect is sent when the NAS is set to
/// disconnect, when a CoA already failed and fell back, when the target
/// profile rejects (or the contract is cancelled), and when the profile has
/// no CoA attributes: a CoA that changes nothing would leave the customer
/// where they are, while a reconnection gets the new profile from
/// Access-Request.
pub fn plan(job: &OutboxJob, nas: &NasClient, settings: &Settings) -> Plan {
    let disconnect = Plan {
        kind: RequestKind::Disconnect,
        attributes: Vec::new(),
    };
    if job.fallback || nas.coa_mode == CoaMode::Disconnect {
        return disconnect;
    }
    let Some(profile) = job.profile else {
        return disconnect;
    };
    let compiled = settings.profile(profile);
    if compiled.action == ProfileAction::Reject || compiled.coa.is_empty() {
        return disconnect;
    }
    Plan {
        kind: RequestKind::Coa,
        attributes: compiled.coa.clone(),
    }
}

/// Builds and signs the request: Message-Authenticator, the session's
/// identification as the NAS reported it, Event-Timestamp, then the plan's
/// attributes.
pub fn build(
    job: &OutboxJob,
    plan: &Plan,
    identifier: u8,
    secret: &[u8],
    now: DateTime<Utc>,
) -> Option<Vec<u8>> {
    let target = &job.target;
    let request_code = match plan.kind {
        RequestKind::Coa => code::COA_REQUEST,
        RequestKind::Disconnect => code::DISCONNECT_REQUEST,
    };
    let framed_ip = target
        .framed_ip_address
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
        .map(|ip| ip.octets());
    let nas_ip = target
        .nas_ip_address
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
        .map(|ip| ip.octets());
    let timestamp = u32::try_from(now.timestamp()).unwrap_or(0).to_be_bytes();
    let zeros = [0u8; 16];
    let mut attributes: Vec<(u8, &[u8])> = vec![
        (attr::MESSAGE_AUTHENTICATOR, &zeros),
        (attr::USER_NAME, target.username.as_bytes()),
        (attr::ACCT_SESSION_ID, target.acct_session_id.as_bytes()),
    ];
    if let Some(ip) = &framed_ip {
        attributes.push((attr::FRAMED_IP_ADDRESS, ip));
    }
    if let Some(ip) = &nas_ip {
        attributes.push((attr::NAS_IP_ADDRESS, ip));
    } else if let Some(identifier) = &target.nas_identifier {
        attributes.push((attr::NAS_IDENTIFIER, identifier.as_bytes()));
    }
    attributes.push((attr::EVENT_TIMESTAMP, &timestamp));
    attributes.extend(plan.attributes.iter().map(|a| (a.typ, a.value.as_slice())));
    let mut bytes = packet::encode(request_code, identifier, &[0; 16], &attributes)?;
    packet::sign_request(&mut bytes, secret);
    Some(bytes)
}

/// What the NAS said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Ack,
    Nak { error_cause: Option<u32> },
}

/// Reads a reply to `request`: `None` unless it answers it (identifier, a
/// code for its kind) and authenticates with the secret.
pub fn interpret(reply: &[u8], request: &[u8], secret: &[u8]) -> Option<Answer> {
    let request_code = *request.first()?;
    if reply.get(1)? != request.get(1)? {
        return None;
    }
    let request_authenticator: [u8; 16] = request.get(4..packet::HEADER)?.try_into().ok()?;
    if !packet::reply_valid(reply, &request_authenticator, secret) {
        return None;
    }
    let error_cause = || {
        Attributes::over(reply)
            .find(|(t, _)| *t == attr::ERROR_CAUSE)
            .and_then(|(_, v)| <[u8; 4]>::try_from(v).ok())
            .map(u32::from_be_bytes)
    };
    match (request_code, reply[0]) {
        (code::COA_REQUEST, code::COA_ACK) | (code::DISCONNECT_REQUEST, code::DISCONNECT_ACK) => {
            Some(Answer::Ack)
        }
        (code::COA_REQUEST, code::COA_NAK) | (code::DISCONNECT_REQUEST, code::DISCONNECT_NAK) => {
            Some(Answer::Nak {
                error_cause: error_cause(),
            })
        }
        _ => None,
    }
}

/// RFC 5176 Error-Cause 503: the NAS has no such session.
pub const SESSION_CONTEXT_NOT_FOUND: u32 = 503;

/// The name of an Error-Cause (RFC 5176 §3.5), for outcomes and logs.
pub fn error_cause_name(cause: u32) -> &'static str {
    match cause {
        201 => "Residual-Context-Removed",
        202 => "Invalid-EAP-Packet",
        401 => "Unsupported-Attribute",
        402 => "Missing-Attribute",
        403 => "NAS-Identification-Mismatch",
        404 => "Invalid-Request",
        405 => "Unsupported-Service",
        406 => "Unsupported-Extension",
        407 => "Invalid-Attribute-Value",
        501 => "Administratively-Prohibited",
        502 => "Request-Not-Routable",
        503 => "Session-Context-Not-Found",
        504 => "Session-Context-Not-Removable",
        505 => "Other-Proxy-Processing-Error",
        506 => "Resources-Unavailable",
        507 => "Request-Initiated",
        508 => "Multiple-Session-Selection-Unsupported",
        _ => "unknown",
    }
}

/// The name of a request kind's packets, for outcomes.
pub fn kind_name(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Coa => "CoA",
        RequestKind::Disconnect => "Disconnect",
    }
}

/// How long to wait after the `sends`-th send (RFC 5080 §2.2.1): the
/// initial timeout doubled each time up to the maximum, with ±10 % jitter
/// (deterministic per job, so that retransmissions of many jobs spread).
pub fn retransmission_timeout(config: &EnforcementConfig, sends: u32, job_id: i64) -> Duration {
    let base = config
        .retry_initial_ms
        .saturating_mul(1u64 << sends.saturating_sub(1).min(20))
        .min(config.retry_max_ms);
    // A cheap spread in [-10 %, +10 %].
    let mix = (job_id as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(u64::from(sends).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let permille = (mix >> 33) % 201;
    let jittered = base.saturating_mul(900 + permille) / 1000;
    Duration::from_millis(jittered.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::SessionTarget;
    use crate::policy::Profile;
    use crate::radius::packet::{Port, check};

    fn settings(mode: &str) -> Settings {
        let dict = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/dictionaries/dictionary.mikrotik");
        let text = format!(
            "[radius]\ndictionaries = [\"{}\"]\n[[nas]]\nname = \"n\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\ncoa_mode = \"{mode}\"\n\
             [profiles.active]\ncoa = [\"Mikrotik-Rate-Limit = 50M/50M\"]\n[profiles.blocked]\nreply = [\"Framed-Pool = b\"]\n",
            dict.display()
        );
        Settings::build(&Config::parse_with_env(&text, "t", []).unwrap()).unwrap()
    }

    fn job(profile: Option<Profile>) -> OutboxJob {
        OutboxJob {
            id: 7,
            session_id: 1,
            contract_id: "1".into(),
            profile,
            kind: None,
            fallback: false,
            packet: None,
            sends: 0,
            outcome: None,
            target: SessionTarget {
                nas_name: "n".into(),
                nas_address: "10.0.0.1".into(),
                username: "maria".into(),
                acct_session_id: "81a0".into(),
                framed_ip_address: Some("100.64.0.9".into()),
                nas_ip_address: None,
                nas_identifier: Some("bras-01".into()),
            },
        }
    }

    #[test]
    fn coa_or_disconnect() {
        let s = settings("coa");
        let nas = s.nas.by_name("n").unwrap();
        assert_eq!(
            plan(&job(Some(Profile::Active)), nas, &s).kind,
            RequestKind::Coa
        );
        // No CoA attributes for blocked: a reconnection is what moves it.
        assert_eq!(
            plan(&job(Some(Profile::Blocked)), nas, &s).kind,
            RequestKind::Disconnect
        );
        assert_eq!(plan(&job(None), nas, &s).kind, RequestKind::Disconnect);
        let mut fell_back = job(Some(Profile::Active));
        fell_back.fallback = true;
        assert_eq!(plan(&fell_back, nas, &s).kind, RequestKind::Disconnect);
        let s = settings("disconnect");
        let nas = s.nas.by_name("n").unwrap();
        assert_eq!(
            plan(&job(Some(Profile::Active)), nas, &s).kind,
            RequestKind::Disconnect
        );
    }

    #[test]
    fn requests_identify_the_session_and_are_signed() {
        let s = settings("coa");
        let nas = s.nas.by_name("n").unwrap();
        let j = job(Some(Profile::Active));
        let p = plan(&j, nas, &s);
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let bytes = build(&j, &p, 42, b"s", now).unwrap();
        assert_eq!(bytes[0], code::COA_REQUEST);
        assert_eq!(bytes[1], 42);
        let attributes: Vec<(u8, Vec<u8>)> = Attributes::over(&bytes)
            .map(|(t, v)| (t, v.to_vec()))
            .collect();
        assert_eq!(attributes[0].0, attr::MESSAGE_AUTHENTICATOR);
        let text: Vec<String> = attributes
            .iter()
            .skip(1)
            .flat_map(|(t, v)| s.dictionary.describe(*t, v))
            .collect();
        assert_eq!(
            text,
            vec![
                "User-Name = maria",
                "Acct-Session-Id = 81a0",
                "Framed-IP-Address = 100.64.0.9",
                "NAS-Identifier = bras-01",
                "Event-Timestamp = 1800000000",
                "Mikrotik-Rate-Limit = 50M/50M",
            ]
        );
        // It is signed as RFC 5176 asks, the way a NAS verifies it,
        // computed here from the RFCs rather than by liberad's signing:
        // Message-Authenticator is HMAC-MD5 of the packet with a zero
        // authenticator and itself zeroed; the Request Authenticator is
        // MD5 of the packet with a zero authenticator, then the secret.
        use hmac::Mac;
        use md5::Digest;
        let mut unsigned = bytes.clone();
        unsigned[4..20].fill(0);
        let ma_value = 20 + 2;
        let mut zeroed = unsigned.clone();
        zeroed[ma_value..ma_value + 16].fill(0);
        let mut mac = hmac::Hmac::<md5::Md5>::new_from_slice(b"s").unwrap();
        mac.update(&zeroed);
        assert_eq!(
            &bytes[ma_value..ma_value + 16],
            mac.finalize().into_bytes().as_slice()
        );
        let mut md5 = md5::Md5::new();
        md5.update(&unsigned);
        md5.update(b"s");
        assert_eq!(&bytes[4..20], md5.finalize().as_slice());
        // And a RADIUS server's receive checks do not take it for one of
        // the requests they serve.
        assert!(check(&bytes, Port::Auth, b"s", packet::Demands::default()).is_err());
        assert!(check(&bytes, Port::Acct, b"s", packet::Demands::default()).is_err());
    }

    fn reply_to(request: &[u8], reply_code: u8, extra: &[(u8, &[u8])], secret: &[u8]) -> Vec<u8> {
        let auth: [u8; 16] = request[4..20].try_into().unwrap();
        let mut r = packet::encode(reply_code, request[1], &auth, extra).unwrap();
        packet::sign_reply(&mut r, &auth, secret);
        r
    }

    #[test]
    fn answers_are_checked_before_they_are_believed() {
        let s = settings("coa");
        let nas = s.nas.by_name("n").unwrap();
        let j = job(Some(Profile::Active));
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let request = build(&j, &plan(&j, nas, &s), 9, b"s", now).unwrap();
        assert_eq!(
            interpret(
                &reply_to(&request, code::COA_ACK, &[], b"s"),
                &request,
                b"s"
            ),
            Some(Answer::Ack)
        );
        let nak = reply_to(
            &request,
            code::COA_NAK,
            &[(attr::ERROR_CAUSE, &503u32.to_be_bytes())],
            b"s",
        );
        assert_eq!(
            interpret(&nak, &request, b"s"),
            Some(Answer::Nak {
                error_cause: Some(503)
            })
        );
        // Forged (wrong secret), wrong identifier, wrong kind: ignored.
        assert_eq!(
            interpret(
                &reply_to(&request, code::COA_ACK, &[], b"x"),
                &request,
                b"s"
            ),
            None
        );
        let mut other_id = reply_to(&request, code::COA_ACK, &[], b"s");
        other_id[1] = 10;
        assert_eq!(interpret(&other_id, &request, b"s"), None);
        assert_eq!(
            interpret(
                &reply_to(&request, code::DISCONNECT_ACK, &[], b"s"),
                &request,
                b"s"
            ),
            None
        );
        assert_eq!(interpret(&[], &request, b"s"), None);
    }

    #[test]
    fn retransmission_timeouts_double_up_to_the_maximum() {
        let config = EnforcementConfig::default();
        let timeouts: Vec<u128> = (1..=6)
            .map(|n| retransmission_timeout(&config, n, 1).as_millis())
            .collect();
        for (t, base) in timeouts
            .iter()
            .zip([2000u128, 4000, 8000, 16_000, 16_000, 16_000])
        {
            assert!(*t >= base * 9 / 10 && *t <= base * 11 / 10, "{timeouts:?}");
        }
    }
}
