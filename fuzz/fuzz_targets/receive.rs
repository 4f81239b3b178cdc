//! The receive path of one RADIUS packet: the checks on the raw datagram,
//! then, with the packet re-signed so that the checks pass, everything
//! that reads it: credentials, the decision, the reply, accounting.
//!
//! It checks, not only survives: a packet that fails its checks gets no
//! reply; the reply to one that passes passes the receiving side's own
//! checks (the NAS's: identifier, Response Authenticator,
//! Message-Authenticator first and right, a well-formed length); and a
//! decision replayed from the same input (the MPPE salt comes from it)
//! gives the same bytes.

#![no_main]

use std::sync::OnceLock;

use chrono::DateTime;
use liberad::config::Config;
use liberad::model::Password;
use liberad::policy::ContractState;
use liberad::radius::Settings;
use liberad::radius::accounting;
use liberad::radius::auth;
use liberad::radius::packet::{self, Attributes, Checked, Port, attr, code};
use liberad::model::AuthRecord;
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret";

fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let text = r#"
[[nas]]
name = "fuzz"
address = "127.0.0.1"
secret = "fuzz-secret"
[radius]
reject_message = "Acesso negado"
[profiles.blocked]
reply = ["Framed-Pool = bloqueados", "Session-Timeout = 600"]
"#;
        let config = Config::parse_with_env(text, "fuzz", []).expect("fuzz config");
        Settings::build(&config).expect("fuzz settings")
    })
}

/// What liberad's pure core answers to a datagram on a port, as the server
/// would (the store's record and the salt given): `None` when it answers
/// nothing.
fn respond<'a>(
    datagram: &'a [u8],
    port: Port,
    require: packet::Demands,
    record: &AuthRecord,
    salt: u16,
) -> Option<(Checked<'a>, Vec<u8>)> {
    let settings = settings();
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let request = packet::check(datagram, port, SECRET, require).ok()?;
    let reply = match request.code {
        code::STATUS_SERVER => {
            let reply_code = match port {
                Port::Auth => code::ACCESS_ACCEPT,
                Port::Acct => code::ACCOUNTING_RESPONSE,
            };
            packet::reply_packet(&request, reply_code, SECRET, true, &[])
        }
        code::ACCESS_REQUEST => {
            let _ = auth::method(&request);
            let decision = auth::decide(settings, &request, SECRET, Some(record), now, salt);
            auth::reply(settings, &request, SECRET, &decision)
        }
        code::ACCOUNTING_REQUEST => {
            let nas = settings.nas.lookup([127, 0, 0, 1].into()).expect("fuzz NAS");
            let _ = accounting::report(&request, nas, [127, 0, 0, 1].into(), now);
            packet::reply_packet(&request, code::ACCOUNTING_RESPONSE, SECRET, false, &[])
        }
        _ => None,
    }?;
    Some((request, reply))
}

/// The NAS's checks of a reply to `request`.
fn assert_a_nas_takes(request: &Checked<'_>, reply: &[u8]) {
    assert!(
        packet::reply_valid(reply, &request.authenticator, SECRET),
        "a reply that does not authenticate: {reply:?}"
    );
    assert_eq!(reply[1], request.identifier, "a reply to another identifier");
    let length = usize::from(u16::from_be_bytes([reply[2], reply[3]]));
    assert_eq!(length, reply.len(), "the length field is not the length");
    assert!(reply.len() <= packet::MAX_PACKET);
    // Attributes that exactly fill the packet.
    let covered: usize = Attributes::over(reply).map(|(_, v)| v.len() + 2).sum();
    assert_eq!(covered, reply.len() - packet::HEADER, "attributes do not fill the packet");
    let message_authenticators = Attributes::over(reply)
        .filter(|(t, _)| *t == attr::MESSAGE_AUTHENTICATOR)
        .count();
    if matches!(reply[0], code::ACCESS_ACCEPT | code::ACCESS_REJECT) {
        // BlastRADIUS: exactly one, first.
        assert_eq!(message_authenticators, 1, "{reply:?}");
        assert_eq!(Attributes::over(reply).next().map(|(t, _)| t), Some(attr::MESSAGE_AUTHENTICATOR));
    } else {
        assert!(message_authenticators <= 1, "{reply:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let settings = settings();
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    // Both kinds of stored secret and the salt, chosen by the input.
    let record = |username: &str| AuthRecord {
        username: username.to_owned(),
        password: if data.get(1).is_some_and(|id| id % 2 == 0) {
            Password::Cleartext("password".to_owned())
        } else {
            Password::NtHash([0x5a; 16])
        },
        contract_id: "1".to_owned(),
        state: ContractState::Blocked,
        open_release_ends_at: Some(now + chrono::Duration::hours(1)),
        reply: vec!["Framed-Pool = liberados".parse().expect("attribute")],
    };
    let salt = data
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));

    // The raw datagram, as an attacker sends it: what fails the checks is
    // never answered; what passes them gets a reply a NAS takes.
    for port in [Port::Auth, Port::Acct] {
        for require in [packet::Demands::default(), packet::Demands::SIGNED] {
            let passes = packet::check(data, port, SECRET, require).is_ok();
            let answer = respond(data, port, require, &record("user"), salt);
            if !passes {
                assert!(answer.is_none(), "a reply to a packet that failed its checks");
            }
            if let Some((request, reply)) = answer {
                assert_a_nas_takes(&request, &reply);
            }
        }
    }

    // The same bytes as a NAS with the secret would send them.
    if data.len() < packet::HEADER || data.len() > packet::MAX_PACKET {
        return;
    }
    let mut signed = data.to_vec();
    let length = u16::try_from(signed.len()).unwrap_or(u16::MAX);
    signed[2..4].copy_from_slice(&length.to_be_bytes());
    packet::sign_request(&mut signed, SECRET);
    for port in [Port::Auth, Port::Acct] {
        let Ok(request) = packet::check(&signed, port, SECRET, packet::Demands::default()) else {
            continue;
        };
        let username = auth::username(&request).unwrap_or("user").to_owned();
        let first = respond(&signed, port, packet::Demands::default(), &record(&username), salt);
        if let Some((request, reply)) = &first {
            assert_a_nas_takes(request, reply);
        }
        // Replayed from the same input, the same decision, to the byte.
        let again = respond(&signed, port, packet::Demands::default(), &record(&username), salt);
        assert_eq!(
            first.map(|(_, reply)| reply),
            again.map(|(_, reply)| reply),
            "a decision that cannot be replayed"
        );
        for (typ, value) in request.attributes() {
            let _ = settings.dictionary.describe(typ, value);
        }
    }
});
