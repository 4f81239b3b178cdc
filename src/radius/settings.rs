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
use crate::config::{CoaMode, Config, NasConfig, ProfileAction, ProfileConfig};
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
    pub max_in_flight: usize,
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
    pub require_message_authenticator: bool,
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
        })
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
    let encode_all = |list: &[String], field: &str| -> Result<Vec<WireAttribute>, String> {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                let key = format!("profiles.{name}.{field}[{i}]");
                let attribute: ReplyAttribute = text.parse().map_err(|e| format!("{key}: {e}"))?;
                dictionary
                    .encode(&attribute)
                    .map_err(|e| format!("{key}: {e}"))
            })
            .collect()
    };
    Ok(CompiledProfile {
        action: profile.action,
        reply: encode_all(&profile.reply, "reply")?,
        login_reply: profile.login_reply.unwrap_or(login_reply_default),
        coa: encode_all(&profile.coa, "coa")?,
    })
}
