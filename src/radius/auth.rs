//! Access-Request: who is asking, whether the password is right, and what
//! the contract's state and release make of it — as pure functions of the
//! request, the login's record and `now`.

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use super::dictionary::WireAttribute;
use super::packet::{self, Checked, attr, code};
use super::settings::Settings;
use crate::config::ProfileAction;
use crate::policy::{self, Profile};
use crate::store::AuthRecord;

/// Microsoft's vendor id, whose attributes carry MS-CHAP.
const MICROSOFT: u32 = 311;
/// MS-CHAP-Response, MS-CHAP-Challenge, MS-CHAP2-Response.
const MS_CHAP_TYPES: [u8; 3] = [1, 11, 25];

/// How the subscriber proves who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method<'a> {
    Pap {
        hidden: &'a [u8],
    },
    Chap {
        response: &'a [u8],
        challenge: &'a [u8],
    },
    MsChap,
    Eap,
    None,
}

/// Reads the authentication method of a request.
pub fn method<'a>(request: &Checked<'a>) -> Method<'a> {
    let mut chap = None;
    let mut challenge = None;
    for (typ, value) in request.attributes() {
        match typ {
            attr::USER_PASSWORD => return Method::Pap { hidden: value },
            attr::CHAP_PASSWORD => chap = Some(value),
            attr::CHAP_CHALLENGE => challenge = Some(value),
            attr::EAP_MESSAGE => return Method::Eap,
            attr::VENDOR_SPECIFIC if is_ms_chap(value) => return Method::MsChap,
            _ => {}
        }
    }
    match chap {
        Some(response) => Method::Chap {
            response,
            // Without CHAP-Challenge the Request Authenticator is the
            // challenge (RFC 2865 §2.2).
            challenge: challenge.unwrap_or(&request.bytes[4..packet::HEADER]),
        },
        None => Method::None,
    }
}

fn is_ms_chap(vsa: &[u8]) -> bool {
    vsa.len() > 4 && vsa[..4] == MICROSOFT.to_be_bytes() && MS_CHAP_TYPES.contains(&vsa[4])
}

/// Why an Access-Request is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    NoUserName,
    UnknownLogin,
    WrongPassword,
    NoCredentials,
    /// A method liberad does not verify (yet): named.
    UnsupportedMethod(&'static str),
    ContractCancelled,
    /// The effective profile is configured to reject.
    Profile(Profile),
    /// The database could not be reached and nothing recent is known.
    StoreUnavailable,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoUserName => "no User-Name",
            RejectReason::UnknownLogin => "unknown login",
            RejectReason::WrongPassword => "wrong password",
            RejectReason::NoCredentials => "no password in the request",
            RejectReason::UnsupportedMethod(m) => m,
            RejectReason::ContractCancelled => "contract cancelled",
            RejectReason::Profile(Profile::Active) => "profile active rejects",
            RejectReason::Profile(Profile::Released) => "profile released rejects",
            RejectReason::Profile(Profile::Reduced) => "profile reduced rejects",
            RejectReason::Profile(Profile::Blocked) => "profile blocked rejects",
            RejectReason::StoreUnavailable => "database unavailable",
        }
    }
}

/// The answer to an Access-Request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept {
        profile: Profile,
        attributes: Vec<WireAttribute>,
    },
    Reject(RejectReason),
}

/// The User-Name of a request, if it has a readable one.
pub fn username<'a>(request: &Checked<'a>) -> Option<&'a str> {
    request
        .attribute(attr::USER_NAME)
        .and_then(|name| std::str::from_utf8(name).ok())
        .filter(|name| !name.is_empty())
}

/// Decides an Access-Request for a login whose record the store returned
/// (`None`: no such login).
pub fn decide(
    settings: &Settings,
    request: &Checked<'_>,
    secret: &[u8],
    record: Option<&AuthRecord>,
    now: DateTime<Utc>,
) -> Decision {
    let Some(record) = record else {
        return Decision::Reject(if username(request).is_none() {
            RejectReason::NoUserName
        } else {
            RejectReason::UnknownLogin
        });
    };
    let password = record.password.as_bytes();
    let verified = match method(request) {
        Method::Pap { hidden } => packet::reveal_password(hidden, &request.authenticator, secret)
            .is_some_and(|given| bool::from(given.ct_eq(password))),
        Method::Chap {
            response,
            challenge,
        } => packet::chap_valid(response, challenge, password),
        Method::MsChap => {
            return Decision::Reject(RejectReason::UnsupportedMethod(
                "MS-CHAP is not supported yet",
            ));
        }
        Method::Eap => {
            return Decision::Reject(RejectReason::UnsupportedMethod("EAP is not supported"));
        }
        Method::None => return Decision::Reject(RejectReason::NoCredentials),
    };
    if !verified {
        return Decision::Reject(RejectReason::WrongPassword);
    }
    let release_end = policy::running_until(record.open_release_ends_at, now);
    let Some(profile) = policy::effective_profile(record.state, release_end.is_some()) else {
        return Decision::Reject(RejectReason::ContractCancelled);
    };
    let compiled = settings.profile(profile);
    if compiled.action == ProfileAction::Reject {
        return Decision::Reject(RejectReason::Profile(profile));
    }
    let mut attributes = compiled.reply.clone();
    if compiled.login_reply {
        for attribute in &record.reply {
            match settings.dictionary.encode(attribute) {
                Ok(wire) => attributes.push(wire),
                Err(e) => tracing::warn!(
                    user = %record.username,
                    error = %e,
                    "login reply attribute skipped"
                ),
            }
        }
    }
    if profile == Profile::Released
        && let Some(end) = release_end
    {
        cap_session_timeout(&mut attributes, end, now);
    }
    Decision::Accept {
        profile,
        attributes,
    }
}

/// Makes Session-Timeout no later than `end`: the smallest of those given
/// and the seconds left, as a single attribute.
fn cap_session_timeout(
    attributes: &mut Vec<WireAttribute>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    let left = u32::try_from((end - now).num_seconds().max(1)).unwrap_or(u32::MAX);
    let configured = attributes
        .iter()
        .filter(|a| a.typ == attr::SESSION_TIMEOUT)
        .filter_map(|a| <[u8; 4]>::try_from(a.value.as_slice()).ok())
        .map(u32::from_be_bytes)
        .min();
    let timeout = configured.map_or(left, |c| c.min(left));
    attributes.retain(|a| a.typ != attr::SESSION_TIMEOUT);
    attributes.push(WireAttribute {
        typ: attr::SESSION_TIMEOUT,
        value: timeout.to_be_bytes().to_vec(),
    });
}

/// Builds the signed reply to an Access-Request or Status-Server:
/// Message-Authenticator first, the request's Proxy-State attributes in
/// order, then the decision's attributes.
pub fn reply(
    settings: &Settings,
    request: &Checked<'_>,
    secret: &[u8],
    decision: &Decision,
) -> Option<Vec<u8>> {
    let (reply_code, extra): (u8, &[WireAttribute]) = match decision {
        Decision::Accept { attributes, .. } => (code::ACCESS_ACCEPT, attributes),
        Decision::Reject(_) => (code::ACCESS_REJECT, settings.reject_message.as_slice()),
    };
    let extra: Vec<(u8, &[u8])> = extra.iter().map(|a| (a.typ, a.value.as_slice())).collect();
    let built = packet::reply_packet(request, reply_code, secret, true, &extra);
    if built.is_none() && reply_code == code::ACCESS_ACCEPT {
        tracing::error!("the reply attributes do not fit in one RADIUS packet; rejecting");
        return packet::reply_packet(request, code::ACCESS_REJECT, secret, true, &[]);
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::ReplyAttribute;
    use crate::policy::ContractState;
    use crate::radius::packet::{Port, check, encode, hide_password, sign_request};

    const SECRET: &[u8] = b"s3cr3t";

    fn settings(extra: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.toml");
        let dict = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/dictionaries/dictionary.mikrotik");
        std::fs::write(
            &path,
            format!(
                "[radius]\ndictionaries = [\"{}\"]\n[[nas]]\nname = \"t\"\naddress = \"127.0.0.1\"\nsecret = \"s3cr3t\"\n{extra}",
                dict.display()
            ),
        )
        .unwrap();
        let config = Config::load_with_env(&path, []).unwrap();
        Settings::build(&config).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn record(state: ContractState, release_ends_in: Option<i64>) -> AuthRecord {
        AuthRecord {
            username: "maria".into(),
            password: "pw".into(),
            contract_id: "1".into(),
            state,
            open_release_ends_at: release_ends_in.map(|s| now() + chrono::Duration::seconds(s)),
            reply: vec![
                "Mikrotik-Rate-Limit = 10M/10M"
                    .parse::<ReplyAttribute>()
                    .unwrap(),
            ],
        }
    }

    fn pap_request(password: &[u8]) -> Vec<u8> {
        let authenticator = [9u8; 16];
        let hidden = hide_password(password, &authenticator, SECRET);
        let mut p = encode(
            code::ACCESS_REQUEST,
            5,
            &authenticator,
            &[
                (attr::USER_NAME, b"maria"),
                (attr::USER_PASSWORD, &hidden),
                (attr::PROXY_STATE, b"p1"),
                (attr::MESSAGE_AUTHENTICATOR, &[0; 16]),
                (attr::PROXY_STATE, b"p2"),
            ],
        )
        .unwrap();
        sign_request(&mut p, SECRET);
        p
    }

    const PROFILES: &str = r#"
[profiles.active]
reply = ["Session-Timeout = 86400"]
[profiles.released]
reply = ["Session-Timeout = 86400", "Mikrotik-Address-List = liberados"]
[profiles.blocked]
action = "accept"
reply = ["Mikrotik-Address-List = bloqueados"]
"#;

    fn decision_for(
        state: ContractState,
        release_ends_in: Option<i64>,
        password: &[u8],
    ) -> Decision {
        let s = settings(PROFILES);
        let packet = pap_request(password);
        let checked = check(&packet, Port::Auth, SECRET, true).unwrap();
        decide(
            &s,
            &checked,
            SECRET,
            Some(&record(state, release_ends_in)),
            now(),
        )
    }

    fn describe(d: &Decision) -> Vec<String> {
        let s = settings(PROFILES);
        match d {
            Decision::Accept { attributes, .. } => attributes
                .iter()
                .flat_map(|a| s.dictionary.describe(a.typ, &a.value))
                .collect(),
            Decision::Reject(r) => vec![r.as_str().to_owned()],
        }
    }

    #[test]
    fn active_gets_its_profile_and_the_login_attributes() {
        let d = decision_for(ContractState::Active, None, b"pw");
        assert!(matches!(
            d,
            Decision::Accept {
                profile: Profile::Active,
                ..
            }
        ));
        assert_eq!(
            describe(&d),
            vec!["Session-Timeout = 86400", "Mikrotik-Rate-Limit = 10M/10M"]
        );
    }

    #[test]
    fn blocked_gets_the_blocked_profile_without_login_attributes() {
        let d = decision_for(ContractState::Blocked, None, b"pw");
        assert_eq!(describe(&d), vec!["Mikrotik-Address-List = bloqueados"]);
        // A release that has run out does not count.
        let d = decision_for(ContractState::Blocked, Some(0), b"pw");
        assert!(matches!(
            d,
            Decision::Accept {
                profile: Profile::Blocked,
                ..
            }
        ));
    }

    #[test]
    fn released_is_capped_at_the_release_end() {
        let d = decision_for(ContractState::Blocked, Some(3600), b"pw");
        assert!(matches!(
            d,
            Decision::Accept {
                profile: Profile::Released,
                ..
            }
        ));
        assert_eq!(
            describe(&d),
            vec![
                "Mikrotik-Address-List = liberados",
                "Mikrotik-Rate-Limit = 10M/10M",
                "Session-Timeout = 3600"
            ]
        );
        // A release longer than the profile's timeout keeps the profile's.
        let d = decision_for(ContractState::Reduced, Some(200_000), b"pw");
        assert!(describe(&d).contains(&"Session-Timeout = 86400".to_owned()));
    }

    #[test]
    fn rejections() {
        assert_eq!(
            decision_for(ContractState::Active, None, b"wrong"),
            Decision::Reject(RejectReason::WrongPassword)
        );
        assert_eq!(
            decision_for(ContractState::Cancelled, Some(3600), b"pw"),
            Decision::Reject(RejectReason::ContractCancelled)
        );
        let s = settings("");
        let packet = pap_request(b"pw");
        let checked = check(&packet, Port::Auth, SECRET, true).unwrap();
        // Without a configured blocked profile, blocked is rejected.
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Blocked, None)),
            now(),
        );
        assert_eq!(d, Decision::Reject(RejectReason::Profile(Profile::Blocked)));
        assert_eq!(
            decide(&s, &checked, SECRET, None, now()),
            Decision::Reject(RejectReason::UnknownLogin)
        );
    }

    #[test]
    fn chap_with_and_without_challenge() {
        let s = settings("");
        let challenge = [4u8; 16];
        let mut response = vec![7u8];
        let mut md5 = <md5::Md5 as md5::Digest>::new();
        md5::Digest::update(&mut md5, [7u8]);
        md5::Digest::update(&mut md5, b"pw");
        md5::Digest::update(&mut md5, challenge);
        response.extend_from_slice(&md5::Digest::finalize(md5));
        let p = encode(
            code::ACCESS_REQUEST,
            1,
            &[1; 16],
            &[
                (attr::USER_NAME, b"maria"),
                (attr::CHAP_PASSWORD, &response),
                (attr::CHAP_CHALLENGE, &challenge),
            ],
        )
        .unwrap();
        let checked = check(&p, Port::Auth, SECRET, false).unwrap();
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Active, None)),
            now(),
        );
        assert!(matches!(d, Decision::Accept { .. }), "{d:?}");
        // The Request Authenticator as the challenge.
        let p = encode(
            code::ACCESS_REQUEST,
            1,
            &challenge,
            &[
                (attr::USER_NAME, b"maria"),
                (attr::CHAP_PASSWORD, &response),
            ],
        )
        .unwrap();
        let checked = check(&p, Port::Auth, SECRET, false).unwrap();
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Active, None)),
            now(),
        );
        assert!(matches!(d, Decision::Accept { .. }), "{d:?}");
    }

    #[test]
    fn ms_chap_and_eap_are_rejected_by_name() {
        let s = settings("");
        let mut vsa = MICROSOFT.to_be_bytes().to_vec();
        vsa.extend([25, 4, 0, 0]);
        let p = encode(
            code::ACCESS_REQUEST,
            1,
            &[1; 16],
            &[(attr::USER_NAME, b"maria"), (attr::VENDOR_SPECIFIC, &vsa)],
        )
        .unwrap();
        let checked = check(&p, Port::Auth, SECRET, false).unwrap();
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Active, None)),
            now(),
        );
        assert_eq!(
            d,
            Decision::Reject(RejectReason::UnsupportedMethod(
                "MS-CHAP is not supported yet"
            ))
        );
    }

    #[test]
    fn a_reject_carries_the_configured_reply_message() {
        let config = Config::parse_with_env(
            "[radius]\nreject_message = \"Procure a central\"\n[[nas]]\nname = \"t\"\naddress = \"127.0.0.1\"\nsecret = \"s3cr3t\"\n",
            "t",
            [],
        )
        .unwrap();
        let s = Settings::build(&config).unwrap();
        let packet = pap_request(b"wrong");
        let checked = check(&packet, Port::Auth, SECRET, true).unwrap();
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Active, None)),
            now(),
        );
        let bytes = reply(&s, &checked, SECRET, &d).unwrap();
        assert_eq!(bytes[0], code::ACCESS_REJECT);
        let message = packet::Attributes::over(&bytes).find(|(t, _)| *t == attr::REPLY_MESSAGE);
        assert_eq!(
            message,
            Some((attr::REPLY_MESSAGE, &b"Procure a central"[..]))
        );
    }

    #[test]
    fn replies_put_message_authenticator_first_and_copy_proxy_state() {
        let s = settings(PROFILES);
        let packet = pap_request(b"pw");
        let checked = check(&packet, Port::Auth, SECRET, true).unwrap();
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Active, None)),
            now(),
        );
        let bytes = reply(&s, &checked, SECRET, &d).unwrap();
        assert_eq!(bytes[0], code::ACCESS_ACCEPT);
        assert_eq!(bytes[1], 5);
        assert_eq!(bytes[20], attr::MESSAGE_AUTHENTICATOR);
        assert!(packet::reply_valid(&bytes, &checked.authenticator, SECRET));
        let reply_attrs: Vec<(u8, Vec<u8>)> = packet::Attributes::over(&bytes)
            .map(|(t, v)| (t, v.to_vec()))
            .collect();
        let states: Vec<&[u8]> = reply_attrs
            .iter()
            .filter(|(t, _)| *t == attr::PROXY_STATE)
            .map(|(_, v)| v.as_slice())
            .collect();
        assert_eq!(states, vec![&b"p1"[..], &b"p2"[..]]);
    }
}
