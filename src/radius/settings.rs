//! The RADIUS part of the configuration, compiled: dictionaries loaded, NAS
//! clients with their secrets, and every profile attribute encoded, so that
//! a mistake is a configuration error at start (or reload), never a
//! surprise on a packet.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::dictionary::{Dictionary, WireAttribute};
use super::packet::attr;
use super::reply_rules::{self, Placement};
use crate::config::{
    CoaMode, Config, MessageAuthenticatorRule, NasConfig, ProfileAction, ProfileConfig,
};
use crate::model::ReplyAttribute;
use crate::policy::Profile;

/// Everything the RADIUS side needs from the configuration.
#[derive(Debug)]
pub struct Settings {
    pub dictionary: Dictionary,
    pub nas: NasTable,
    profiles: [CompiledProfile; 4],
    /// Reply-Message for every Access-Reject.
    pub reject_message: Option<WireAttribute>,
    pub duplicate_window: Duration,
    /// Access-Requests processed at once.
    pub max_in_flight: usize,
    /// Accounting-Requests waiting for the database at once.
    pub max_accounting_in_flight: usize,
    /// MS-MPPE-Encryption-Policy and -Types for MS-CHAP logins; `None`:
    /// no MPPE attributes.
    pub mppe: Option<Mppe>,
}

/// The MPPE attributes of an MS-CHAP Access-Accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mppe {
    pub policy: u32,
    pub types: u32,
}

/// A profile with its attributes ready for the wire.
#[derive(Clone, Debug)]
pub struct CompiledProfile {
    pub action: ProfileAction,
    pub reply: Vec<WireAttribute>,
    /// Whether the login's own reply attributes are added.
    pub login_reply: bool,
    /// Attributes of a CoA-Request into this profile.
    pub coa: Vec<WireAttribute>,
}

/// A configured NAS client.
#[derive(Clone, Debug)]
pub struct NasClient {
    pub name: String,
    pub network: IpNet,
    pub secret: Vec<u8>,
    pub require_message_authenticator: MessageAuthenticatorRule,
    pub limit_proxy_state: bool,
    pub coa_port: u16,
    pub coa_mode: CoaMode,
}

/// The NAS clients, most specific network first.
#[derive(Clone, Debug, Default)]
pub struct NasTable {
    clients: Vec<Arc<NasClient>>,
}

impl NasTable {
    /// The client whose network holds `ip`, the most specific one.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<NasClient>> {
        let ip = ip.to_canonical();
        self.clients.iter().find(|c| c.network.contains(&ip))
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<NasClient>> {
        self.clients.iter().find(|c| c.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<NasClient>> {
        self.clients.iter()
    }
}

impl Settings {
    /// Compiles the RADIUS settings of a configuration, or says what is
    /// wrong, naming the key.
    pub fn build(config: &Config) -> Result<Settings, String> {
        let mut dictionary = Dictionary::builtin();
        for path in &config.radius.dictionaries {
            dictionary
                .load_file(path)
                .map_err(|e| format!("radius.dictionaries: {e}"))?;
        }
        let nas = build_nas_table(&config.nas)?;
        let p = &config.profiles;
        let active = compile_profile("active", p.active.as_ref(), true, &dictionary)?;
        let released = match &p.released {
            Some(profile) => compile_profile("released", Some(profile), true, &dictionary)?,
            None => active.clone(),
        };
        let reduced = match &p.reduced {
            Some(profile) => compile_profile("reduced", Some(profile), true, &dictionary)?,
            None => active.clone(),
        };
        let blocked = match &p.blocked {
            Some(profile) => compile_profile("blocked", Some(profile), false, &dictionary)?,
            None => CompiledProfile {
                action: ProfileAction::Reject,
                reply: Vec::new(),
                login_reply: false,
                coa: Vec::new(),
            },
        };
        let reject_message = match &config.radius.reject_message {
            Some(text) => Some(
                WireAttribute::new(attr::REPLY_MESSAGE, text.as_bytes().to_vec())
                    .ok_or("radius.reject_message: longer than 253 bytes")?,
            ),
            None => None,
        };
        Ok(Settings {
            dictionary,
            nas,
            profiles: [active, released, reduced, blocked],
            reject_message,
            duplicate_window: Duration::from_secs(config.radius.duplicate_window_secs),
            max_in_flight: config.radius.max_in_flight,
            max_accounting_in_flight: config.radius.max_accounting_in_flight,
            mppe: mppe(&config.radius)?,
        })
    }

    /// A login's reply attribute on the wire, if the dictionaries know it
    /// and an Access-Accept may carry it.
    pub fn encode_login_attribute(
        &self,
        attribute: &ReplyAttribute,
    ) -> Result<WireAttribute, String> {
        encode_for(&self.dictionary, attribute, Placement::AccessAccept)
    }

    pub fn profile(&self, profile: Profile) -> &CompiledProfile {
        let index = match profile {
            Profile::Active => 0,
            Profile::Released => 1,
            Profile::Reduced => 2,
            Profile::Blocked => 3,
        };
        &self.profiles[index]
    }
}

fn mppe(radius: &crate::config::RadiusConfig) -> Result<Option<Mppe>, String> {
    use crate::config::MppePolicy;
    let policy = match radius.mppe_encryption_policy {
        MppePolicy::Allowed => 1,
        MppePolicy::Required => 2,
        MppePolicy::Off => return Ok(None),
    };
    let types = radius
        .mppe_encryption_types
        .iter()
        .fold(0, |bits, t| bits | t.bit());
    if types == 0 {
        return Err(
            "radius.mppe_encryption_types: name at least one of rc4-40, rc4-56, rc4-128 \
             (or set mppe_encryption_policy = \"off\")"
                .to_owned(),
        );
    }
    Ok(Some(Mppe { policy, types }))
}

fn build_nas_table(entries: &[NasConfig]) -> Result<NasTable, String> {
    let mut clients: Vec<NasClient> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let key = format!("nas[{i}] ({})", entry.name);
        if entry.name.trim().is_empty() || entry.name.chars().any(char::is_control) {
            return Err(format!("nas[{i}].name: a NAS needs a name"));
        }
        if clients.iter().any(|c| c.name == entry.name) {
            return Err(format!("{key}.name: another NAS has the same name"));
        }
        let network = parse_network(&entry.address).ok_or_else(|| {
            format!(
                "{key}.address: {:?} is not an IP address or CIDR network",
                entry.address
            )
        })?;
        if clients.iter().any(|c| c.network == network) {
            return Err(format!(
                "{key}.address: another NAS has the same address {network}"
            ));
        }
        let secret = match (&entry.secret, &entry.secret_file) {
            (Some(secret), None) => secret.clone(),
            (None, Some(path)) => {
                read_secret(path).map_err(|e| format!("{key}.secret_file: {e}"))?
            }
            (Some(_), Some(_)) => {
                return Err(format!("{key}: give secret or secret_file, not both"));
            }
            (None, None) => return Err(format!("{key}: a NAS needs a secret or a secret_file")),
        };
        if secret.is_empty() {
            return Err(format!("{key}.secret: the secret is empty"));
        }
        if entry.coa_port == 0 {
            return Err(format!("{key}.coa_port: must be a port number"));
        }
        clients.push(NasClient {
            name: entry.name.clone(),
            network,
            secret: secret.into_bytes(),
            require_message_authenticator: entry.require_message_authenticator,
            limit_proxy_state: entry.limit_proxy_state,
            coa_port: entry.coa_port,
            coa_mode: entry.coa_mode,
        });
    }
    // Most specific first, so that a host entry wins over its network.
    clients.sort_by_key(|c| std::cmp::Reverse(c.network.prefix_len()));
    Ok(NasTable {
        clients: clients.into_iter().map(Arc::new).collect(),
    })
}

fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .ok()
        .map(|net| net.trunc())
}

fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").trim_end().to_owned())
}

fn compile_profile(
    name: &str,
    profile: Option<&ProfileConfig>,
    login_reply_default: bool,
    dictionary: &Dictionary,
) -> Result<CompiledProfile, String> {
    let Some(profile) = profile else {
        return Ok(CompiledProfile {
            action: ProfileAction::Accept,
            reply: Vec::new(),
            login_reply: login_reply_default,
            coa: Vec::new(),
        });
    };
    let encode_all = |list: &[String], field: &str, placement: Placement| {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                let key = format!("profiles.{name}.{field}[{i}]");
                let attribute: ReplyAttribute = text.parse().map_err(|e| format!("{key}: {e}"))?;
                encode_for(dictionary, &attribute, placement).map_err(|e| format!("{key}: {e}"))
            })
            .collect::<Result<Vec<WireAttribute>, String>>()
    };
    Ok(CompiledProfile {
        action: profile.action,
        reply: encode_all(&profile.reply, "reply", Placement::AccessAccept)?,
        login_reply: profile.login_reply.unwrap_or(login_reply_default),
        coa: encode_all(&profile.coa, "coa", Placement::CoaRequest)?,
    })
}

/// An attribute on the wire, refused when the dictionaries do not know it
/// or `placement` may not carry it.
fn encode_for(
    dictionary: &Dictionary,
    attribute: &ReplyAttribute,
    placement: Placement,
) -> Result<WireAttribute, String> {
    let wire = dictionary.encode(attribute).map_err(|e| e.to_string())?;
    match reply_rules::refusal(&wire, placement) {
        Some(why) => Err(format!(
            "attribute {} may not be set here: {why}",
            attribute.name
        )),
        None => Ok(wire),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<Settings, String> {
        let config = Config::parse_with_env(text, "test.toml", []).map_err(|e| e.to_string())?;
        Settings::build(&config)
    }

    const NAS: &str = "[[nas]]\nname = \"a\"\naddress = \"10.0.0.0/24\"\nsecret = \"s\"\n";

    #[test]
    fn mppe_settings_are_compiled_or_refused_by_key() {
        let s = build(NAS).unwrap();
        assert_eq!(
            s.mppe,
            Some(Mppe {
                policy: 1,
                types: 6
            })
        );
        let s = build(&format!(
            "[radius]\nmppe_encryption_policy = \"required\"\n\
             mppe_encryption_types = [\"rc4-128\", \"rc4-56\"]\n{NAS}"
        ))
        .unwrap();
        assert_eq!(
            s.mppe,
            Some(Mppe {
                policy: 2,
                types: 12
            })
        );
        let s = build(&format!(
            "[radius]\nmppe_encryption_policy = \"off\"\n{NAS}"
        ))
        .unwrap();
        assert_eq!(s.mppe, None);
        for (radius, needle) in [
            (
                "mppe_encryption_types = []\n",
                "radius.mppe_encryption_types",
            ),
            ("mppe_encryption_types = [\"rc4-64\"]\n", "rc4-64"),
            ("mppe_encryption_policy = \"always\"\n", "always"),
        ] {
            let e = build(&format!("[radius]\n{radius}{NAS}")).unwrap_err();
            assert!(e.contains(needle), "{radius}: {e}");
        }
    }

    #[test]
    fn profile_attributes_are_checked_when_the_configuration_loads() {
        for (profile, needle) in [
            (
                "[profiles.blocked]\nreply = [\"Speed-Limit = 1\"]\n",
                "profiles.blocked.reply[0]",
            ),
            (
                "[profiles.active]\nreply = [\"Session-Timeout = soon\"]\n",
                "profiles.active.reply[0]",
            ),
            (
                "[profiles.reduced]\ncoa = [\"Framed-Pool\"]\n",
                "profiles.reduced.coa[0]",
            ),
            ("[profiles.blocked]\naction = \"maybe\"\n", "action"),
        ] {
            let e = build(&format!("{NAS}{profile}")).unwrap_err();
            assert!(e.contains(needle), "{profile}: {e}");
        }
        let s = build(&format!(
            "[radius]\nreject_message = \"Bloqueado\"\n{NAS}[profiles.blocked]\nreply = [\"Framed-Pool = bloqueados\"]\n"
        ))
        .unwrap();
        assert_eq!(s.profile(Profile::Blocked).reply.len(), 1);
        assert_eq!(s.profile(Profile::Blocked).action, ProfileAction::Accept);
        assert_eq!(
            s.reject_message.as_ref().map(|m| m.value.as_slice()),
            Some(&b"Bloqueado"[..])
        );
    }

    #[test]
    fn attributes_a_reply_may_not_carry_are_refused_by_name() {
        for (profile, needle) in [
            (
                "[profiles.active]\nreply = [\"Message-Authenticator = 0x00\"]\n",
                "Message-Authenticator",
            ),
            (
                "[profiles.blocked]\nreply = [\"User-Password = x\"]\n",
                "User-Password",
            ),
            (
                "[profiles.reduced]\nreply = [\"Proxy-State = 0x01\"]\n",
                "Proxy-State",
            ),
            ("[profiles.active]\nreply = [\"State = 0x01\"]\n", "State"),
            (
                "[profiles.active]\nreply = [\"EAP-Message = 0x01\"]\n",
                "EAP-Message",
            ),
            (
                "[profiles.active]\nreply = [\"CHAP-Challenge = 0x01\"]\n",
                "CHAP-Challenge",
            ),
            (
                "[profiles.blocked]\ncoa = [\"Acct-Session-Id = x\"]\n",
                "Acct-Session-Id",
            ),
            (
                "[profiles.blocked]\ncoa = [\"Message-Authenticator = 0x00\"]\n",
                "Message-Authenticator",
            ),
        ] {
            let e = build(&format!("{NAS}{profile}")).unwrap_err();
            assert!(
                e.contains(needle) && e.contains("may not be set here"),
                "{profile}: {e}"
            );
            assert!(e.contains("profiles."), "{profile}: {e}");
        }
        let s = build(NAS).unwrap();
        let login = |text: &str| s.encode_login_attribute(&text.parse().unwrap());
        assert!(login("Message-Authenticator = 0x00").is_err());
        assert!(login("Framed-Pool = clientes").is_ok());
    }

    #[test]
    fn unconfigured_profiles_take_their_defaults() {
        let s = build(&format!(
            "{NAS}[profiles.active]\nreply = [\"Idle-Timeout = 600\"]\n"
        ))
        .unwrap();
        assert_eq!(
            s.profile(Profile::Released).reply,
            s.profile(Profile::Active).reply
        );
        assert_eq!(
            s.profile(Profile::Reduced).reply,
            s.profile(Profile::Active).reply
        );
        assert_eq!(s.profile(Profile::Blocked).action, ProfileAction::Reject);
        assert!(s.profile(Profile::Active).login_reply);
    }

    #[test]
    fn nas_entries_are_validated_and_matched_most_specific_first() {
        let s = build(&format!(
            "{NAS}[[nas]]\nname = \"b\"\naddress = \"10.0.0.7\"\nsecret = \"t\"\ncoa_port = 1700\n"
        ))
        .unwrap();
        assert_eq!(s.nas.lookup("10.0.0.7".parse().unwrap()).unwrap().name, "b");
        assert_eq!(s.nas.lookup("10.0.0.8".parse().unwrap()).unwrap().name, "a");
        assert_eq!(
            s.nas
                .lookup("::ffff:10.0.0.9".parse().unwrap())
                .unwrap()
                .name,
            "a"
        );
        assert!(s.nas.lookup("10.0.1.1".parse().unwrap()).is_none());
        for (text, needle) in [
            (
                "[[nas]]\nname = \"x\"\naddress = \"10.0.0.1\"\n",
                "needs a secret",
            ),
            (
                "[[nas]]\nname = \"x\"\naddress = \"nowhere\"\nsecret = \"s\"\n",
                "address",
            ),
            (
                "[[nas]]\nname = \"x\"\naddress = \"10.0.0.1\"\nsecret = \"\"\n",
                "empty",
            ),
            (
                "[[nas]]\nname = \"x\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\nsecret_file = \"/f\"\n",
                "not both",
            ),
            (&format!("{NAS}{NAS}"), "same name"),
            (
                "[[nas]]\nname = \"x\"\naddress = \"10.0.0.1\"\nsecret_file = \"/nonexistent\"\n",
                "secret_file",
            ),
        ] {
            let e = build(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn a_secret_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\nignored\n").unwrap();
        let s = build(&format!(
            "[[nas]]\nname = \"f\"\naddress = \"192.0.2.1\"\nsecret_file = \"{}\"\n",
            path.display()
        ))
        .unwrap();
        assert_eq!(s.nas.by_name("f").unwrap().secret, b"from-file");
    }
}
