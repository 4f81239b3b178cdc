//! Access-Request: who is asking, whether the password is right, and what
//! the contract's state and release make of it — as pure functions of the
//! request, the login's record and `now`.

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use super::dictionary::WireAttribute;
use super::mschap::{self, NtHash, V2Response, vendor_attr};
use super::packet::{self, Checked, attr, code};
use super::settings::Settings;
use crate::config::ProfileAction;
use crate::model::AuthRecord;
use crate::model::Password;
use crate::policy::{self, Profile};

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
    /// MS-CHAPv2 (RFC 2759, RFC 2548).
    MsChapV2(V2Response<'a>),
    /// MS-CHAP version 1 (RFC 2433) with its NT-Response.
    MsChapV1 {
        ident: u8,
        challenge: &'a [u8; 8],
        nt_response: &'a [u8; 24],
    },
    /// MS-CHAP attributes that do not make a whole request: named.
    MsChapMalformed(&'static str),
    Eap,
    None,
}

/// Reads the authentication method of a request.
pub fn method<'a>(request: &Checked<'a>) -> Method<'a> {
    let mut chap = None;
    let mut challenge = None;
    let mut ms_challenge = None;
    let mut ms_v1 = None;
    let mut ms_v2 = None;
    for (typ, value) in request.attributes() {
        match typ {
            attr::USER_PASSWORD => return Method::Pap { hidden: value },
            attr::CHAP_PASSWORD => chap = Some(value),
            attr::CHAP_CHALLENGE => challenge = Some(value),
            attr::EAP_MESSAGE => return Method::Eap,
            attr::VENDOR_SPECIFIC => {
                if let Some(data) = mschap::vendor_data(value, vendor_attr::MS_CHAP_CHALLENGE) {
                    ms_challenge = Some(data);
                } else if let Some(data) =
                    mschap::vendor_data(value, vendor_attr::MS_CHAP2_RESPONSE)
                {
                    ms_v2 = Some(data);
                } else if let Some(data) = mschap::vendor_data(value, vendor_attr::MS_CHAP_RESPONSE)
                {
                    ms_v1 = Some(data);
                }
            }
            _ => {}
        }
    }
    match (ms_challenge, ms_v2, ms_v1) {
        (Some(c), Some(r), _) => {
            return V2Response::parse(r, c).map_or(
                Method::MsChapMalformed(
                    "malformed MS-CHAP2-Response or MS-CHAP-Challenge (50 and 16 bytes expected)",
                ),
                Method::MsChapV2,
            );
        }
        (Some(c), None, Some(r)) => return ms_chap_v1(c, r),
        (None, Some(_), _) | (None, None, Some(_)) => {
            return Method::MsChapMalformed("MS-CHAP response without MS-CHAP-Challenge");
        }
        _ => {}
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

/// MS-CHAP-Response (RFC 2548 §2.1.3: ident, flags, LM-Response,
/// NT-Response) with an 8-byte MS-CHAP-Challenge.
fn ms_chap_v1<'a>(challenge: &'a [u8], response: &'a [u8]) -> Method<'a> {
    // ident, flags, LM-Response (24 bytes), NT-Response (24 bytes)
    let nt_response = response
        .get(26..)
        .and_then(|nt| <&[u8; 24]>::try_from(nt).ok());
    let (Ok(challenge), Some(nt_response), [ident, flags, ..]) =
        (<&[u8; 8]>::try_from(challenge), nt_response, response)
    else {
        return Method::MsChapMalformed(
            "malformed MS-CHAP-Response or MS-CHAP-Challenge (50 and 8 bytes expected)",
        );
    };
    if flags & 1 == 0 {
        return Method::MsChapMalformed("MS-CHAP with a LAN Manager response only");
    }
    Method::MsChapV1 {
        ident: *ident,
        challenge,
        nt_response,
    }
}

/// Why an Access-Request is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    NoUserName,
    UnknownLogin,
    WrongPassword,
    NoCredentials,
    /// A method liberad does not verify: named.
    UnsupportedMethod(&'static str),
    /// The credentials are malformed: how.
    Malformed(&'static str),
    ContractCancelled,
    /// The effective profile is configured to reject.
    Profile(Profile),
    /// The database could not be reached and nothing recent is known.
    StoreUnavailable,
    /// The database answered, but the login's record cannot be used.
    Unreadable,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoUserName => "no User-Name",
            RejectReason::UnknownLogin => "unknown login",
            RejectReason::WrongPassword => "wrong password",
            RejectReason::NoCredentials => "no password in the request",
            RejectReason::UnsupportedMethod(m) | RejectReason::Malformed(m) => m,
            RejectReason::ContractCancelled => "contract cancelled",
            RejectReason::Profile(Profile::Active) => "profile active rejects",
            RejectReason::Profile(Profile::Released) => "profile released rejects",
            RejectReason::Profile(Profile::Reduced) => "profile reduced rejects",
            RejectReason::Profile(Profile::Blocked) => "profile blocked rejects",
            RejectReason::StoreUnavailable => "database unavailable",
            RejectReason::Unreadable => "the login's record cannot be read",
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
/// (`None`: no such login). `salt` is the first of the two salts of the
/// MPPE keys an MS-CHAP Accept carries: the caller chooses it (distinct
/// from one reply to the next), so that a decision can be replayed.
pub fn decide(
    settings: &Settings,
    request: &Checked<'_>,
    secret: &[u8],
    record: Option<&AuthRecord>,
    now: DateTime<Utc>,
    salt: u16,
) -> Decision {
    let Some(record) = record else {
        return Decision::Reject(if username(request).is_none() {
            RejectReason::NoUserName
        } else {
            RejectReason::UnknownLogin
        });
    };
    let method = method(request);
    let proof = match verify(&method, request, secret, &record.password) {
        Ok(proof) => proof,
        Err(reason) => return Decision::Reject(reason),
    };
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
            // Stored before these checks existed, or under other
            // dictionaries: skipped, never sent.
            match settings.encode_login_attribute(attribute) {
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
    attributes.extend(ms_chap_accept(settings, request, secret, &proof, salt));
    Decision::Accept {
        profile,
        attributes,
    }
}

/// What a verified password proves beyond itself: for MS-CHAP, what the
/// Access-Accept must carry back.
enum Proof {
    Password,
    MsChapV2 {
        ident: u8,
        success: mschap::V2Success,
    },
    MsChapV1 {
        hash: NtHash,
    },
}

/// Checks the request's credentials against the login's password.
fn verify(
    method: &Method<'_>,
    request: &Checked<'_>,
    secret: &[u8],
    password: &Password,
) -> Result<Proof, RejectReason> {
    let checked = |ok: bool| {
        if ok {
            Ok(Proof::Password)
        } else {
            Err(RejectReason::WrongPassword)
        }
    };
    match (*method, password) {
        (Method::Pap { hidden }, _) => {
            let given = packet::reveal_password(hidden, &request.authenticator, secret);
            checked(given.is_some_and(|given| {
                match password {
                    Password::Cleartext(p) => bool::from(given.ct_eq(p.as_bytes())),
                    Password::NtHash(hash) => std::str::from_utf8(&given)
                        .is_ok_and(|g| bool::from(mschap::nt_password_hash(g).ct_eq(hash))),
                }
            }))
        }
        (
            Method::Chap {
                response,
                challenge,
            },
            Password::Cleartext(p),
        ) => checked(packet::chap_valid(response, challenge, p.as_bytes())),
        (Method::Chap { .. }, Password::NtHash(_)) => Err(RejectReason::UnsupportedMethod(
            "CHAP needs the password itself; this login keeps only its NT hash",
        )),
        (Method::MsChapV2(response), _) => {
            let user = request.attribute(attr::USER_NAME).unwrap_or_default();
            mschap::verify_v2(&response, user, &nt_hash(password))
                .map(|success| Proof::MsChapV2 {
                    ident: response.ident,
                    success,
                })
                .ok_or(RejectReason::WrongPassword)
        }
        (
            Method::MsChapV1 {
                challenge,
                nt_response,
                ..
            },
            _,
        ) => {
            let hash = nt_hash(password);
            let expected = mschap::challenge_response(challenge, &hash);
            if bool::from(expected.ct_eq(nt_response)) {
                Ok(Proof::MsChapV1 { hash })
            } else {
                Err(RejectReason::WrongPassword)
            }
        }
        (Method::MsChapMalformed(how), _) => Err(RejectReason::Malformed(how)),
        (Method::Eap, _) => Err(RejectReason::UnsupportedMethod("EAP is not supported")),
        (Method::None, _) => Err(RejectReason::NoCredentials),
    }
}

fn nt_hash(password: &Password) -> NtHash {
    match password {
        Password::Cleartext(p) => mschap::nt_password_hash(p),
        Password::NtHash(hash) => *hash,
    }
}

fn microsoft(typ: u8, data: &[u8]) -> Option<WireAttribute> {
    mschap::vendor_value(typ, data).map(|value| WireAttribute {
        typ: attr::VENDOR_SPECIFIC,
        value,
    })
}

/// The Access-Accept attributes of an MS-CHAP login: the proof that
/// liberad knew the password (v2) and the MPPE keys, as configured.
fn ms_chap_accept(
    settings: &Settings,
    request: &Checked<'_>,
    secret: &[u8],
    proof: &Proof,
    salt: u16,
) -> Vec<WireAttribute> {
    let mut out = Vec::new();
    let keys: Vec<(u8, Vec<u8>)> = match proof {
        Proof::Password => return out,
        Proof::MsChapV2 { ident, success } => {
            let mut data = vec![*ident];
            data.extend_from_slice(success.authenticator_response.as_bytes());
            out.extend(microsoft(vendor_attr::MS_CHAP2_SUCCESS, &data));
            vec![
                (
                    vendor_attr::MS_MPPE_RECV_KEY,
                    mschap::encrypt_key(&success.recv_key, salt, secret, &request.authenticator),
                ),
                (
                    vendor_attr::MS_MPPE_SEND_KEY,
                    mschap::encrypt_key(
                        &success.send_key,
                        salt.wrapping_add(1),
                        secret,
                        &request.authenticator,
                    ),
                ),
            ]
        }
        Proof::MsChapV1 { hash } => {
            // No LAN Manager key (liberad keeps no LM hash), then the NT key.
            let mut plain = [0u8; 24];
            plain[8..].copy_from_slice(&mschap::hash_nt_password_hash(hash));
            let hidden = packet::hide_password(&plain, &request.authenticator, secret);
            vec![(vendor_attr::MS_CHAP_MPPE_KEYS, hidden)]
        }
    };
    if let Some(mppe) = settings.mppe {
        for (typ, data) in keys {
            out.extend(microsoft(typ, &data));
        }
        out.extend(microsoft(
            vendor_attr::MS_MPPE_ENCRYPTION_POLICY,
            &mppe.policy.to_be_bytes(),
        ));
        out.extend(microsoft(
            vendor_attr::MS_MPPE_ENCRYPTION_TYPES,
            &mppe.types.to_be_bytes(),
        ));
    }
    out
}

/// MS-CHAP-Error for a rejected MS-CHAP request (RFC 2759 §6): 647 when
/// the account is disabled (the contract's profile rejects), 691 for
/// every other failure; no retry.
fn ms_chap_error(request: &Checked<'_>, reason: RejectReason) -> Option<WireAttribute> {
    let error = match reason {
        RejectReason::ContractCancelled | RejectReason::Profile(_) => 647,
        _ => 691,
    };
    let (ident, text) = match method(request) {
        Method::MsChapV2(response) => (
            response.ident,
            format!(
                "E={error} R=0 C={} V=3 M=Authentication failed",
                mschap::hex_upper(response.authenticator_challenge)
            ),
        ),
        Method::MsChapV1 { ident, .. } => (ident, format!("E={error} R=0 V=2")),
        _ => return None,
    };
    let mut data = vec![ident];
    data.extend_from_slice(text.as_bytes());
    microsoft(vendor_attr::MS_CHAP_ERROR, &data)
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
    let error;
    let (reply_code, extra): (u8, Vec<&WireAttribute>) = match decision {
        Decision::Accept { attributes, .. } => (code::ACCESS_ACCEPT, attributes.iter().collect()),
        Decision::Reject(reason) => {
            error = ms_chap_error(request, *reason);
            let all = settings.reject_message.iter().chain(error.as_ref());
            (code::ACCESS_REJECT, all.collect())
        }
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
    use crate::radius::packet::{Attributes, Port, check, encode, hide_password, sign_request};

    const SECRET: &[u8] = b"s3cr3t";

    #[test]
    fn ms_chap_v1_fields_are_read_only_from_whole_attributes() {
        let challenge = [7u8; 8];
        let mut response = [0u8; 50];
        response[0] = 9;
        response[1] = 1;
        response[26..].copy_from_slice(&[5u8; 24]);
        match ms_chap_v1(&challenge, &response) {
            Method::MsChapV1 {
                ident,
                challenge: c,
                nt_response,
            } => {
                assert_eq!((ident, c, nt_response), (9, &challenge, &[5u8; 24]));
            }
            _ => panic!("a whole MS-CHAP-Response must be read"),
        }
        for (challenge, response) in [
            (&challenge[..7], &response[..]),
            (&challenge[..], &response[..49]),
            (&challenge[..], &[0u8; 51][..]),
            (&challenge[..], &[][..]),
        ] {
            assert!(matches!(
                ms_chap_v1(challenge, response),
                Method::MsChapMalformed(_)
            ));
        }
        response[1] = 0;
        assert!(matches!(
            ms_chap_v1(&challenge, &response),
            Method::MsChapMalformed("MS-CHAP with a LAN Manager response only")
        ));
    }

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
            password: Password::Cleartext("pw".into()),
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
        let checked = check(&packet, Port::Auth, SECRET, packet::Demands::SIGNED).unwrap();
        decide(
            &s,
            &checked,
            SECRET,
            Some(&record(state, release_ends_in)),
            now(),
            0,
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
        let checked = check(&packet, Port::Auth, SECRET, packet::Demands::SIGNED).unwrap();
        // Without a configured blocked profile, blocked is rejected.
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Blocked, None)),
            now(),
            0,
        );
        assert_eq!(d, Decision::Reject(RejectReason::Profile(Profile::Blocked)));
        assert_eq!(
            decide(&s, &checked, SECRET, None, now(), 0),
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
        let checked = check(&p, Port::Auth, SECRET, packet::Demands::default()).unwrap();
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Active, None)),
            now(),
            0,
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
        let checked = check(&p, Port::Auth, SECRET, packet::Demands::default()).unwrap();
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Active, None)),
            now(),
            0,
        );
        assert!(matches!(d, Decision::Accept { .. }), "{d:?}");
    }

    fn microsoft_vsa(typ: u8, data: &[u8]) -> Vec<u8> {
        mschap::vendor_value(typ, data).unwrap()
    }

    const AUTH_CHALLENGE: [u8; 16] = [0x5b; 16];
    const PEER_CHALLENGE: [u8; 16] = [0x21; 16];

    /// An MS-CHAPv2 Access-Request as a NAS builds it for `user` typing
    /// `password`.
    fn ms_chap_v2_request(user: &str, password: &str) -> Vec<u8> {
        let hash = mschap::nt_password_hash(password);
        let nt = mschap::nt_response(&AUTH_CHALLENGE, &PEER_CHALLENGE, user.as_bytes(), &hash);
        let mut response = vec![9u8, 0];
        response.extend_from_slice(&PEER_CHALLENGE);
        response.extend_from_slice(&[0; 8]);
        response.extend_from_slice(&nt);
        encode(
            code::ACCESS_REQUEST,
            1,
            &[3; 16],
            &[
                (attr::USER_NAME, user.as_bytes()),
                (
                    attr::VENDOR_SPECIFIC,
                    &microsoft_vsa(vendor_attr::MS_CHAP_CHALLENGE, &AUTH_CHALLENGE),
                ),
                (
                    attr::VENDOR_SPECIFIC,
                    &microsoft_vsa(vendor_attr::MS_CHAP2_RESPONSE, &response),
                ),
            ],
        )
        .unwrap()
    }

    /// The Microsoft attributes of a decision, by vendor type.
    fn microsoft_attributes(attributes: &[WireAttribute]) -> Vec<(u8, Vec<u8>)> {
        attributes
            .iter()
            .filter(|a| {
                a.typ == attr::VENDOR_SPECIFIC && a.value[..4] == mschap::MICROSOFT.to_be_bytes()
            })
            .map(|a| (a.value[4], a.value[6..].to_vec()))
            .collect()
    }

    fn decide_with(s: &Settings, p: &[u8], record: &AuthRecord) -> Decision {
        let checked = check(p, Port::Auth, SECRET, packet::Demands::default()).unwrap();
        decide(s, &checked, SECRET, Some(record), now(), 0)
    }

    #[test]
    fn ms_chap_v2_accepts_with_the_authenticator_response_and_mppe_keys() {
        let s = settings("");
        let p = ms_chap_v2_request("maria", "pw");
        let Decision::Accept { attributes, .. } =
            decide_with(&s, &p, &record(ContractState::Active, None))
        else {
            panic!("rejected");
        };
        let ms = microsoft_attributes(&attributes);
        let types: Vec<u8> = ms.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, [26, 17, 16, 7, 8]);
        let hash = mschap::nt_password_hash("pw");
        let nt = mschap::nt_response(&AUTH_CHALLENGE, &PEER_CHALLENGE, b"maria", &hash);
        let mut success = vec![9u8];
        success.extend_from_slice(
            mschap::authenticator_response(&hash, &nt, &PEER_CHALLENGE, &AUTH_CHALLENGE, b"maria")
                .as_bytes(),
        );
        assert_eq!(ms[0].1, success);
        let master = mschap::master_key(&hash, &nt);
        let authenticator = [3u8; 16];
        assert_eq!(
            mschap::decrypt_key(&ms[1].1, SECRET, &authenticator).unwrap(),
            mschap::server_start_key(&master, false)
        );
        assert_eq!(
            mschap::decrypt_key(&ms[2].1, SECRET, &authenticator).unwrap(),
            mschap::server_start_key(&master, true)
        );
        assert_ne!(ms[1].1[..2], ms[2].1[..2], "distinct salts");
        assert_eq!(ms[3].1, 1u32.to_be_bytes(), "encryption allowed");
        assert_eq!(ms[4].1, 6u32.to_be_bytes(), "40 or 128 bits");
        // The contract's own attributes still come.
        assert!(
            attributes
                .iter()
                .any(|a| a.typ == attr::VENDOR_SPECIFIC && a.value[..4] == 14988u32.to_be_bytes())
        );
    }

    #[test]
    fn ms_chap_v2_follows_the_contract_and_says_why_it_fails() {
        let s = settings("[profiles.blocked]\naction = \"reject\"\n");
        let wrong = ms_chap_v2_request("maria", "pW");
        let d = decide_with(&s, &wrong, &record(ContractState::Active, None));
        assert_eq!(d, Decision::Reject(RejectReason::WrongPassword));
        let checked = check(&wrong, Port::Auth, SECRET, packet::Demands::default()).unwrap();
        let reply = super::reply(&s, &checked, SECRET, &d).unwrap();
        let error = Attributes::over(&reply)
            .find(|(t, v)| *t == attr::VENDOR_SPECIFIC && v[4] == vendor_attr::MS_CHAP_ERROR)
            .map(|(_, v)| v[6..].to_vec())
            .unwrap();
        assert_eq!(error[0], 9);
        assert_eq!(
            String::from_utf8_lossy(&error[1..]),
            format!(
                "E=691 R=0 C={} V=3 M=Authentication failed",
                mschap::hex_upper(&AUTH_CHALLENGE)
            )
        );
        let right = ms_chap_v2_request("maria", "pw");
        let blocked = decide_with(&s, &right, &record(ContractState::Blocked, None));
        assert_eq!(
            blocked,
            Decision::Reject(RejectReason::Profile(Profile::Blocked))
        );
        let checked = check(&right, Port::Auth, SECRET, packet::Demands::default()).unwrap();
        let reply = super::reply(&s, &checked, SECRET, &blocked).unwrap();
        assert!(
            Attributes::over(&reply).any(
                |(t, v)| t == attr::VENDOR_SPECIFIC && v[6..].windows(5).any(|w| w == b"E=647")
            ),
            "account disabled"
        );
        let released = decide_with(&s, &right, &record(ContractState::Blocked, Some(600)));
        assert!(matches!(
            released,
            Decision::Accept {
                profile: Profile::Released,
                ..
            }
        ));
    }

    #[test]
    fn an_nt_hash_serves_ms_chap_v2_and_pap_but_not_chap() {
        let s = settings("");
        let mut login = record(ContractState::Active, None);
        login.password = Password::NtHash(mschap::nt_password_hash("pw"));
        let d = decide_with(&s, &ms_chap_v2_request("maria", "pw"), &login);
        assert!(matches!(d, Decision::Accept { .. }), "{d:?}");
        assert!(matches!(
            decide_with(&s, &pap_request(b"pw"), &login),
            Decision::Accept { .. }
        ));
        assert_eq!(
            decide_with(&s, &pap_request(b"pW"), &login),
            Decision::Reject(RejectReason::WrongPassword)
        );
        let chap = encode(
            code::ACCESS_REQUEST,
            1,
            &[3; 16],
            &[(attr::USER_NAME, b"maria"), (attr::CHAP_PASSWORD, &[1; 17])],
        )
        .unwrap();
        assert!(matches!(
            decide_with(&s, &chap, &login),
            Decision::Reject(RejectReason::UnsupportedMethod(m)) if m.contains("NT hash")
        ));
    }

    #[test]
    fn ms_chap_v1_is_verified_and_gets_its_keys() {
        let s = settings("");
        let challenge = [7u8; 8];
        let hash = mschap::nt_password_hash("pw");
        let mut response = vec![4u8, 1];
        response.extend_from_slice(&[0; 24]);
        response.extend_from_slice(&mschap::challenge_response(&challenge, &hash));
        let build = |response: &[u8]| {
            encode(
                code::ACCESS_REQUEST,
                1,
                &[3; 16],
                &[
                    (attr::USER_NAME, b"maria"),
                    (
                        attr::VENDOR_SPECIFIC,
                        &microsoft_vsa(vendor_attr::MS_CHAP_CHALLENGE, &challenge),
                    ),
                    (
                        attr::VENDOR_SPECIFIC,
                        &microsoft_vsa(vendor_attr::MS_CHAP_RESPONSE, response),
                    ),
                ],
            )
            .unwrap()
        };
        let Decision::Accept { attributes, .. } =
            decide_with(&s, &build(&response), &record(ContractState::Active, None))
        else {
            panic!("rejected");
        };
        let ms = microsoft_attributes(&attributes);
        assert_eq!(ms[0].0, vendor_attr::MS_CHAP_MPPE_KEYS);
        let keys = packet::reveal_password(&ms[0].1, &[3; 16], SECRET).unwrap();
        assert_eq!(keys[..8], [0; 8]);
        assert_eq!(keys[8..24], mschap::hash_nt_password_hash(&hash));
        response[30] ^= 1;
        assert_eq!(
            decide_with(&s, &build(&response), &record(ContractState::Active, None)),
            Decision::Reject(RejectReason::WrongPassword)
        );
        response[1] = 0;
        assert!(matches!(
            decide_with(&s, &build(&response), &record(ContractState::Active, None)),
            Decision::Reject(RejectReason::Malformed(_))
        ));
    }

    #[test]
    fn malformed_ms_chap_and_eap_are_rejected_by_name() {
        let mut s = settings("");
        s.mppe = None;
        let mut p = ms_chap_v2_request("maria", "pw");
        // Without MPPE, only the success attribute.
        let Decision::Accept { attributes, .. } =
            decide_with(&s, &p, &record(ContractState::Active, None))
        else {
            panic!("rejected");
        };
        assert_eq!(microsoft_attributes(&attributes).len(), 1);
        // The challenge's vendor type changed: a response without it.
        let at = p
            .windows(6)
            .position(|w| w == [0, 0, 1, 55, 11, 18])
            .unwrap();
        p[at + 4] = 99;
        let p = {
            let mut fixed = p;
            packet::sign_request(&mut fixed, SECRET);
            fixed
        };
        assert!(matches!(
            decide_with(&s, &p, &record(ContractState::Active, None)),
            Decision::Reject(RejectReason::Malformed(_))
        ));
        let eap = encode(
            code::ACCESS_REQUEST,
            1,
            &[3; 16],
            &[
                (attr::USER_NAME, b"maria"),
                (attr::EAP_MESSAGE, &[2, 1, 0, 4]),
            ],
        )
        .unwrap();
        assert_eq!(
            decide_with(&s, &eap, &record(ContractState::Active, None)),
            Decision::Reject(RejectReason::UnsupportedMethod("EAP is not supported"))
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
        let checked = check(&packet, Port::Auth, SECRET, packet::Demands::SIGNED).unwrap();
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Active, None)),
            now(),
            0,
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
        let checked = check(&packet, Port::Auth, SECRET, packet::Demands::SIGNED).unwrap();
        let d = decide(
            &s,
            &checked,
            SECRET,
            Some(&record(ContractState::Active, None)),
            now(),
            0,
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
