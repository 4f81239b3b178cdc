//! The receive path of one RADIUS packet: the checks on the raw datagram,
//! then, with the packet re-signed so that the checks pass, everything
//! that reads it: credentials, the decision, the reply, accounting.

#![no_main]

use std::sync::OnceLock;

use chrono::DateTime;
use liberad::config::Config;
use liberad::model::Password;
use liberad::policy::ContractState;
use liberad::radius::Settings;
use liberad::radius::accounting;
use liberad::radius::auth;
use liberad::radius::packet::{self, Port};
use liberad::store::AuthRecord;
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
[profiles.blocked]
reply = ["Framed-Pool = bloqueados", "Session-Timeout = 600"]
"#;
        let config = Config::parse_with_env(text, "fuzz", []).expect("fuzz config");
        Settings::build(&config).expect("fuzz settings")
    })
}

fuzz_target!(|data: &[u8]| {
    let settings = settings();
    // The raw datagram, as an attacker sends it.
    for port in [Port::Auth, Port::Acct] {
        for require in [false, true] {
            let _ = packet::check(data, port, SECRET, require);
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
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let nas = settings
        .nas
        .lookup([127, 0, 0, 1].into())
        .expect("fuzz NAS");
    for port in [Port::Auth, Port::Acct] {
        let Ok(request) = packet::check(&signed, port, SECRET, false) else {
            continue;
        };
        let _ = auth::method(&request);
        let record = AuthRecord {
            username: auth::username(&request).unwrap_or("user").to_owned(),
            // Both kinds of stored secret, chosen by the packet's identifier.
            password: if signed[1] % 2 == 0 {
                Password::Cleartext("password".to_owned())
            } else {
                Password::NtHash([0x5a; 16])
            },
            contract_id: "1".to_owned(),
            state: ContractState::Blocked,
            open_release_ends_at: Some(now + chrono::Duration::hours(1)),
            reply: vec!["Framed-Pool = liberados".parse().expect("attribute")],
        };
        let decision = auth::decide(settings, &request, SECRET, Some(&record), now);
        let _ = auth::reply(settings, &request, SECRET, &decision);
        let _ = accounting::report(&request, nas, [127, 0, 0, 1].into(), now);
        for (typ, value) in request.attributes() {
            let _ = settings.dictionary.describe(typ, value);
        }
    }
});
