//! The daemon's configuration: a TOML file read with the `config` crate,
//! every key overridable from the environment (`LIBERAD_DATABASE__URL`
//! overrides `[database] url`).
//!
//! Unknown keys and bad values are refused with a message naming the key and
//! the file; [`Config::load`] returns only a configuration that is valid as a
//! whole.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "LIBERAD";
/// Environment variable read by `liberactl` for the socket path; not a
/// config key, so the daemon leaves it alone.
pub const ENV_SOCKET: &str = "LIBERAD_SOCKET";
/// Environment variable read by `liberactl` for the operator's name.
pub const ENV_OPERATOR: &str = "LIBERAD_OPERATOR";
/// The variables `liberactl` documents: an operator may export them in a
/// profile, so they never stop the daemon from starting.
pub const CLI_VARIABLES: [&str; 2] = [ENV_SOCKET, ENV_OPERATOR];

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// The file (or "the environment") the problem comes from.
    pub origin: String,
    pub message: String,
}

/// The whole configuration of a liberad instance.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Calendar of the releases: an IANA zone name such as
    /// `America/Sao_Paulo`. Default: the system's zone.
    #[serde(default = "system_timezone", deserialize_with = "de_timezone")]
    pub timezone: Tz,
    /// Where liberad keeps its state (the SQLite database by default).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub radius: RadiusConfig,
    /// The NAS / BRAS equipment allowed to talk to liberad.
    #[serde(default)]
    pub nas: Vec<NasConfig>,
    #[serde(default)]
    pub profiles: ProfilesConfig,
    #[serde(default)]
    pub enforcement: EnforcementConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub api: ApiConfig,
}

/// `[api]`: the HTTP API for billing systems, bots and support desks.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the API is served; off when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Serve plain HTTP on an address other than loopback (a warning at
    /// every start): a token must not cross a network in clear by
    /// accident.
    #[serde(default)]
    pub allow_plaintext: bool,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served; off when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// `[enforcement]`: how CoA and Disconnect requests are sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcementConfig {
    /// First retransmission timeout (RFC 5080: 2 s), doubled each time.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest retransmission timeout (RFC 5080: 16 s).
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Sends of one request before giving up (RFC 5080: 5).
    #[serde(default = "default_max_sends")]
    pub max_sends: u32,
    /// Requests waiting for an answer from one NAS at most.
    #[serde(default = "default_max_in_flight_per_nas")]
    pub max_in_flight_per_nas: usize,
    /// New requests to one NAS in any one second (a sliding window).
    #[serde(default = "default_max_per_second_per_nas")]
    pub max_per_second_per_nas: u32,
    /// How long `release --wait` waits for the NAS's answers.
    #[serde(default = "default_wait_timeout_secs")]
    pub wait_timeout_secs: u64,
    /// Local address CoA requests are sent from; default: any, port chosen
    /// by the system.
    #[serde(default)]
    pub source: Option<SocketAddr>,
    /// Releases ended per transaction when many end at once.
    #[serde(default = "default_expiry_batch")]
    pub expiry_batch: u32,
    /// How long a request being sent stays this instance's without a
    /// send; after that another instance sharing the database takes it
    /// over.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// This instance's name in the outbox; default: host name and admin
    /// socket.
    #[serde(default)]
    pub instance: Option<String>,
}

impl Default for EnforcementConfig {
    fn default() -> Self {
        EnforcementConfig {
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
            max_sends: default_max_sends(),
            max_in_flight_per_nas: default_max_in_flight_per_nas(),
            max_per_second_per_nas: default_max_per_second_per_nas(),
            wait_timeout_secs: default_wait_timeout_secs(),
            source: None,
            expiry_batch: default_expiry_batch(),
            lease_secs: default_lease_secs(),
            instance: None,
        }
    }
}

/// `[radius]`: the listeners.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusConfig {
    #[serde(default = "default_auth_listen")]
    pub auth_listen: SocketAddr,
    #[serde(default = "default_acct_listen")]
    pub acct_listen: SocketAddr,
    /// Socket receive buffer (SO_RCVBUF) in bytes; default: the system's.
    #[serde(default)]
    pub recv_buffer_bytes: Option<usize>,
    /// Access-Requests processed at once; a packet beyond is dropped and
    /// counted.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Accounting-Requests waiting for the database at once, apart from
    /// authentication, so that a stalled writer never stops the answers
    /// to logins.
    #[serde(default = "default_max_in_flight")]
    pub max_accounting_in_flight: usize,
    /// How long a reply is kept to answer retransmissions identically.
    #[serde(default = "default_duplicate_window_secs")]
    pub duplicate_window_secs: u64,
    /// Extra dictionary files in FreeRADIUS format, added to the built-in
    /// standard attributes.
    #[serde(default)]
    pub dictionaries: Vec<PathBuf>,
    /// Reply-Message sent with every Access-Reject (none by default).
    #[serde(default)]
    pub reject_message: Option<String>,
    /// MS-CHAP logins: whether the NAS must encrypt the link with the MPPE
    /// keys liberad sends, or may, or gets no keys at all.
    #[serde(default)]
    pub mppe_encryption_policy: MppePolicy,
    /// MS-CHAP logins: the MPPE strengths allowed (MS-MPPE-Encryption-Types).
    #[serde(default = "default_mppe_types")]
    pub mppe_encryption_types: Vec<MppeType>,
}

/// MS-MPPE-Encryption-Policy (RFC 2548 §2.4.4), or no MPPE attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MppePolicy {
    /// Encryption allowed (1): the keys are sent.
    #[default]
    Allowed,
    /// Encryption required (2): the keys are sent.
    Required,
    /// No MPPE keys, policy or types in the reply.
    Off,
}

/// One MPPE strength (RFC 2548 §2.4.5, and 56-bit RC4 as Windows has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MppeType {
    #[serde(rename = "rc4-40")]
    Rc4Bits40,
    #[serde(rename = "rc4-56")]
    Rc4Bits56,
    #[serde(rename = "rc4-128")]
    Rc4Bits128,
}

impl MppeType {
    /// Its bit in MS-MPPE-Encryption-Types.
    pub fn bit(self) -> u32 {
        match self {
            MppeType::Rc4Bits40 => 0x2,
            MppeType::Rc4Bits128 => 0x4,
            MppeType::Rc4Bits56 => 0x8,
        }
    }
}

fn default_mppe_types() -> Vec<MppeType> {
    vec![MppeType::Rc4Bits40, MppeType::Rc4Bits128]
}

impl Default for RadiusConfig {
    fn default() -> Self {
        RadiusConfig {
            auth_listen: default_auth_listen(),
            acct_listen: default_acct_listen(),
            recv_buffer_bytes: None,
            max_in_flight: default_max_in_flight(),
            max_accounting_in_flight: default_max_in_flight(),
            duplicate_window_secs: default_duplicate_window_secs(),
            dictionaries: Vec::new(),
            reject_message: None,
            mppe_encryption_policy: MppePolicy::default(),
            mppe_encryption_types: default_mppe_types(),
        }
    }
}

/// One `[[nas]]` entry: a BRAS/NAS, or a network of them sharing a secret.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NasConfig {
    pub name: String,
    /// An IP address or a network in CIDR form.
    pub address: String,
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the secret (its first line).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Whether Access-Requests must carry Message-Authenticator: `true`,
    /// `false`, or `"auto"` (FreeRADIUS 3.2.5's answer to BlastRADIUS):
    /// required once the NAS has been seen sending it.
    #[serde(default)]
    pub require_message_authenticator: MessageAuthenticatorRule,
    /// Drop an Access-Request that carries Proxy-State without
    /// Message-Authenticator (BlastRADIUS forges replies through
    /// Proxy-State); a NAS is no proxy.
    #[serde(default = "default_true")]
    pub limit_proxy_state: bool,
    /// Where the NAS listens for CoA and Disconnect (RFC 5176: 3799;
    /// MikroTik: 1700).
    #[serde(default = "default_coa_port")]
    pub coa_port: u16,
    #[serde(default)]
    pub coa_mode: CoaMode,
}

/// `[[nas]] require_message_authenticator`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MessageAuthenticatorRule {
    /// Every Access-Request must carry it.
    Required,
    /// None need carry it (checked where present).
    NotRequired,
    /// Required from a NAS entry and source address once they have been
    /// seen sending it; remembered in the database across restarts.
    #[default]
    Auto,
}

impl MessageAuthenticatorRule {
    /// As written in the configuration.
    pub fn as_config(self) -> &'static str {
        match self {
            MessageAuthenticatorRule::Required => "true",
            MessageAuthenticatorRule::NotRequired => "false",
            MessageAuthenticatorRule::Auto => "\"auto\"",
        }
    }
}

impl<'de> Deserialize<'de> for MessageAuthenticatorRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Flag(bool),
            Word(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Flag(true) => Ok(MessageAuthenticatorRule::Required),
            Written::Flag(false) => Ok(MessageAuthenticatorRule::NotRequired),
            Written::Word(word) if word == "auto" => Ok(MessageAuthenticatorRule::Auto),
            Written::Word(word) => Err(serde::de::Error::custom(format!(
                "{word:?} is not a choice: write true, false or \"auto\""
            ))),
        }
    }
}

impl serde::Serialize for MessageAuthenticatorRule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MessageAuthenticatorRule::Required => serializer.serialize_bool(true),
            MessageAuthenticatorRule::NotRequired => serializer.serialize_bool(false),
            MessageAuthenticatorRule::Auto => serializer.serialize_str("auto"),
        }
    }
}

/// How a change of profile reaches a NAS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoaMode {
    /// CoA-Request with the new profile's attributes.
    #[default]
    Coa,
    /// Disconnect-Request: the customer reconnects into the new profile.
    Disconnect,
    /// CoA, and Disconnect when the CoA is refused or unanswered.
    CoaThenDisconnect,
    /// The NAS takes neither (pppd): nothing is sent, a change applies at
    /// the session's next connection, and the profiles' Session-Timeout
    /// bounds how long that takes.
    None,
}

impl CoaMode {
    /// As the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            CoaMode::Coa => "coa",
            CoaMode::Disconnect => "disconnect",
            CoaMode::CoaThenDisconnect => "coa_then_disconnect",
            CoaMode::None => "none",
        }
    }
}

/// `[profiles.*]`: what each effective profile gets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesConfig {
    #[serde(default)]
    pub active: Option<ProfileConfig>,
    /// Default: the same as `active`.
    #[serde(default)]
    pub released: Option<ProfileConfig>,
    /// Default: the same as `active`.
    #[serde(default)]
    pub reduced: Option<ProfileConfig>,
    /// Default: reject.
    #[serde(default)]
    pub blocked: Option<ProfileConfig>,
}

/// One profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    #[serde(default)]
    pub action: ProfileAction,
    /// Reply attributes, `Name = value`.
    #[serde(default)]
    pub reply: Vec<String>,
    /// Whether the login's own reply attributes are added. Default: yes,
    /// except for the blocked profile.
    #[serde(default)]
    pub login_reply: Option<bool>,
    /// Attributes of the CoA-Request sent when a session moves into this
    /// profile.
    #[serde(default)]
    pub coa: Vec<String>,
}

/// Accept or reject the logins of a profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileAction {
    #[default]
    Accept,
    Reject,
}

/// `[database]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://…`; default
    /// `sqlite://STATE_DIR/liberad.db`.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL: connections in the pool.
    #[serde(default = "default_max_connections_db")]
    pub max_connections: u32,
    /// PostgreSQL: how long a request waits for a connection before it is
    /// treated as a database outage.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// What RADIUS authentication answers while the database is
    /// unreachable.
    #[serde(default)]
    pub on_outage: OutagePolicy,
    /// With `on_outage = "cache"`: how old a remembered login may be.
    #[serde(default = "default_cache_ttl_secs")]
    pub cache_ttl_secs: u64,
    /// With `on_outage = "cache"`: how many logins are remembered at most
    /// (the least recently seen are forgotten first).
    #[serde(default = "default_cache_logins")]
    pub cache_logins: usize,
    /// SQLite: whether liberad may create the database file when it is
    /// missing. With `false`, a missing database is an error at start,
    /// never a silent fresh start.
    #[serde(default = "default_true")]
    pub create: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: default_max_connections_db(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
            on_outage: OutagePolicy::default(),
            cache_ttl_secs: default_cache_ttl_secs(),
            cache_logins: default_cache_logins(),
            create: true,
        }
    }
}

/// What Access-Requests get while the database cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutagePolicy {
    /// Logins seen in the last `cache_ttl_secs` are decided from what was
    /// known then; others are rejected.
    #[default]
    Cache,
    /// Every Access-Request is rejected.
    Reject,
}

/// `[admin]`: the Unix socket `liberactl` talks to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// File mode of the socket, octal as a string (`"0660"`).
    #[serde(default = "default_socket_mode", deserialize_with = "de_mode")]
    pub socket_mode: u32,
    /// Connections served at once; more are answered `busy` and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection silent for this long between requests is closed.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// A request must arrive whole within this long: its first line after
    /// the connection opens, and each line once its first byte came, so
    /// that a slow or silent client does not hold a slot.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: default_socket(),
            socket_mode: default_socket_mode(),
            max_connections: default_max_connections(),
            idle_timeout_secs: default_idle_timeout_secs(),
            request_timeout_secs: default_request_timeout_secs(),
        }
    }
}

impl AdminConfig {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `liberad=debug,sqlx=warn`, ...
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default, deserialize_with = "de_log_format")]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn default_auth_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1812))
}

fn default_acct_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1813))
}

fn default_max_in_flight() -> usize {
    1024
}

fn default_duplicate_window_secs() -> u64 {
    5
}

fn default_coa_port() -> u16 {
    3799
}

fn default_max_connections_db() -> u32 {
    16
}

fn default_acquire_timeout_ms() -> u64 {
    2000
}

fn default_cache_ttl_secs() -> u64 {
    300
}

fn default_cache_logins() -> usize {
    100_000
}

fn default_retry_initial_ms() -> u64 {
    2000
}

fn default_retry_max_ms() -> u64 {
    16_000
}

fn default_max_sends() -> u32 {
    5
}

fn default_max_in_flight_per_nas() -> usize {
    32
}

fn default_max_per_second_per_nas() -> u32 {
    50
}

fn default_wait_timeout_secs() -> u64 {
    10
}

fn default_lease_secs() -> u64 {
    60
}

fn default_expiry_batch() -> u32 {
    500
}

fn default_true() -> bool {
    true
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/liberad")
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/liberad/liberad.sock")
}

fn default_socket_mode() -> u32 {
    0o660
}

fn default_max_connections() -> usize {
    16
}

fn default_idle_timeout_secs() -> u64 {
    300
}

fn default_request_timeout_secs() -> u64 {
    10
}

fn default_log_level() -> String {
    "info".to_owned()
}

/// The system's time zone, or UTC when it cannot be told.
fn system_timezone() -> Tz {
    iana_time_zone::get_timezone()
        .ok()
        .and_then(|name| name.parse().ok())
        .unwrap_or(Tz::UTC)
}

fn de_timezone<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
    let name = String::deserialize(d)?;
    name.parse::<Tz>().map_err(|_| {
        de::Error::custom(format!(
            "unknown time zone {name:?} (expected an IANA name such as America/Sao_Paulo)"
        ))
    })
}

fn de_log_format<'de, D: Deserializer<'de>>(d: D) -> Result<LogFormat, D::Error> {
    let name = String::deserialize(d)?;
    match name.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(de::Error::custom(format!(
            "{name:?} is not a log format (expected text or json)"
        ))),
    }
}

/// A file mode: a string of octal digits (`"0660"`), or a TOML integer such
/// as `0o660`.
fn de_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct ModeVisitor;
    impl de::Visitor<'_> for ModeVisitor {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an octal file mode such as \"0660\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<u32, E> {
            u32::from_str_radix(s.trim(), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    E::custom(format!("{s:?} is not an octal file mode such as \"0660\""))
                })
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<u32, E> {
            u32::try_from(n)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| E::custom(format!("{n} is not a file mode (write it as \"0660\")")))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<u32, E> {
            self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
        }
    }
    d.deserialize_any(ModeVisitor)
}

/// Configuration text with `LIBERAD_SECTION__KEY` overrides on top.
fn with_overrides(
    text: &str,
    overrides: config::Map<String, String>,
) -> Result<config::Config, config::ConfigError> {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(overrides)),
        )
        .build()
}

impl Config {
    /// Reads the TOML file at `path`, applies `LIBERAD_…` overrides from the
    /// process environment, and validates the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let config = Config::load_with_env(path, std::env::vars())?;
        config.check_secrets_private(path)?;
        Ok(config)
    }

    /// Refuses secrets that every local user can read: a configuration
    /// file holding a NAS secret, or a `secret_file`, readable by others.
    /// Entries that only match loopback addresses (test set-ups such as the
    /// shipped example) are exempt.
    pub fn check_secrets_private(&self, path: &Path) -> Result<(), ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let readable_by_others = |file: &Path| {
            std::fs::metadata(file)
                .map(|m| m.permissions().mode() & 0o004 != 0)
                .unwrap_or(false)
        };
        for nas in &self.nas {
            if nas_is_loopback_only(&nas.address) {
                continue;
            }
            let (file, holder) = match (&nas.secret, &nas.secret_file) {
                (Some(_), _) => (path, "holds the secret of"),
                (None, Some(secret_file)) => (secret_file.as_path(), "is the secret file of"),
                (None, None) => continue,
            };
            if readable_by_others(file) {
                return Err(ConfigError {
                    origin: path.display().to_string(),
                    message: format!(
                        "{} {holder} NAS {:?} and every local user can read it; \
                         run `chmod o-r {}` (the package sets mode 0640, group liberad)",
                        file.display(),
                        nas.name,
                        file.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The settings that differ from `running` and only apply after a
    /// restart (a reload takes NAS clients, profiles, dictionaries, the
    /// reject message and the log level).
    pub fn restart_needed(&self, running: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |differs: bool, name: &'static str| {
            if differs {
                changed.push(name);
            }
        };
        check(self.timezone != running.timezone, "timezone");
        check(self.state_dir != running.state_dir, "state_dir");
        check(self.database != running.database, "database");
        check(self.admin != running.admin, "admin");
        check(self.log.format != running.log.format, "log.format");
        let (r, o) = (&self.radius, &running.radius);
        check(r.auth_listen != o.auth_listen, "radius.auth_listen");
        check(r.acct_listen != o.acct_listen, "radius.acct_listen");
        check(
            r.recv_buffer_bytes != o.recv_buffer_bytes,
            "radius.recv_buffer_bytes",
        );
        check(r.max_in_flight != o.max_in_flight, "radius.max_in_flight");
        check(
            r.max_accounting_in_flight != o.max_accounting_in_flight,
            "radius.max_accounting_in_flight",
        );
        check(
            r.duplicate_window_secs != o.duplicate_window_secs,
            "radius.duplicate_window_secs",
        );
        check(self.enforcement != running.enforcement, "enforcement");
        check(self.metrics != running.metrics, "metrics");
        check(self.api != running.api, "api");
        changed
    }

    /// The admin socket a configuration file names (with `LIBERAD_…`
    /// overrides), reading nothing else: what `liberactl --config` needs,
    /// without the dictionaries, the secrets or the rest being valid.
    pub fn admin_socket(path: &Path) -> Result<PathBuf, ConfigError> {
        #[derive(Deserialize)]
        struct Only {
            #[serde(default)]
            admin: OnlyAdmin,
        }
        #[derive(Deserialize, Default)]
        struct OnlyAdmin {
            #[serde(default = "default_socket")]
            socket: PathBuf,
        }
        let origin = path.display().to_string();
        let error = |message: String| ConfigError {
            origin: origin.clone(),
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(format!("cannot read the configuration file: {e}")))?;
        let overrides = std::env::vars()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&format!("{ENV_PREFIX}_ADMIN__SOCKET")))
            .collect();
        let only: Only = with_overrides(&text, overrides)
            .and_then(config::Config::try_deserialize)
            .map_err(|e| error(describe_error(&e)))?;
        if only.admin.socket.as_os_str().is_empty() {
            return Err(error("admin.socket: the socket path is empty".to_owned()));
        }
        Ok(only.admin.socket)
    }

    /// [`Config::load`] with an explicit environment, for tests.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // Read the file ourselves so that a missing or unreadable file is
        // reported as such, not as a parse error.
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: path.display().to_string(),
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Config::parse_with_env(&text, &path.display().to_string(), env)
    }

    /// Reads configuration text; `origin` names it in errors.
    pub fn parse_with_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let file_error = |message: String| ConfigError {
            origin: origin.to_owned(),
            message,
        };
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| {
                k.to_ascii_uppercase()
                    .starts_with(&format!("{ENV_PREFIX}_"))
                    && !CLI_VARIABLES.iter().any(|cli| k.eq_ignore_ascii_case(cli))
            })
            .collect();
        let from_env: Vec<String> = overrides.keys().cloned().collect();
        let built = with_overrides(text, overrides).map_err(|e| file_error(describe_error(&e)))?;
        let config: Config = built.try_deserialize().map_err(|e| {
            let mut message = describe_error(&e);
            if !from_env.is_empty() {
                message.push_str(&format!(
                    " (environment overrides in effect: {})",
                    from_env.join(", ")
                ));
            }
            file_error(message)
        })?;
        config.validate().map_err(file_error)?;
        Ok(config)
    }

    /// Checks that need more than one value's type: every numeric key
    /// within its documented range, and values that depend on each other.
    /// The RADIUS part (dictionaries, NAS secrets, profile attributes) is
    /// checked by compiling it, which only the daemon does
    /// (`radius::Settings::build`).
    fn validate(&self) -> Result<(), String> {
        check_log_level(&self.log.level)?;
        if self.admin.socket.as_os_str().is_empty() {
            return Err("admin.socket: the socket path is empty".to_owned());
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err("state_dir: the directory is empty".to_owned());
        }
        DatabaseUrl::parse(&self.database_url())?;
        if let Some(listen) = self.api.listen
            && !listen.ip().is_loopback()
            && !self.api.allow_plaintext
        {
            return Err(format!(
                "api.listen: {listen} is not a loopback address, and the API is served in plain \
                 HTTP: a token would cross the network in clear. Listen on 127.0.0.1 behind a \
                 TLS proxy, or set api.allow_plaintext = true"
            ));
        }
        for range in self.ranges() {
            range.check()?;
        }
        let e = &self.enforcement;
        if e.retry_max_ms < e.retry_initial_ms {
            return Err(format!(
                "enforcement.retry_max_ms: {} is below retry_initial_ms ({}); need \
                 initial <= max",
                e.retry_max_ms, e.retry_initial_ms
            ));
        }
        if e.lease_secs.saturating_mul(1000) < e.retry_max_ms.saturating_mul(2) {
            return Err(
                "enforcement.lease_secs: must be at least twice retry_max_ms, so that a \
                 request being sent is not taken over"
                    .to_owned(),
            );
        }
        for (i, nas) in self.nas.iter().enumerate() {
            Range::new(format!("nas[{i}].coa_port"), nas.coa_port, 1, 65_535).check()?;
        }
        Ok(())
    }

    /// Every numeric key of the configuration with its allowed range (the
    /// README's configuration reference lists the same).
    fn ranges(&self) -> Vec<Range> {
        let (d, a, r, e) = (&self.database, &self.admin, &self.radius, &self.enforcement);
        let mut ranges = vec![
            Range::new("database.max_connections", d.max_connections, 1, 1_000),
            Range::new(
                "database.acquire_timeout_ms",
                d.acquire_timeout_ms,
                1,
                600_000,
            ),
            Range::new("database.cache_ttl_secs", d.cache_ttl_secs, 1, 86_400),
            Range::new("database.cache_logins", d.cache_logins, 1, 10_000_000),
            Range::new("admin.max_connections", a.max_connections, 1, 1_024),
            Range::new("admin.idle_timeout_secs", a.idle_timeout_secs, 1, 86_400),
            Range::new(
                "admin.request_timeout_secs",
                a.request_timeout_secs,
                1,
                3_600,
            ),
            Range::new("radius.max_in_flight", r.max_in_flight, 1, 65_536),
            Range::new(
                "radius.max_accounting_in_flight",
                r.max_accounting_in_flight,
                1,
                65_536,
            ),
            Range::new(
                "radius.duplicate_window_secs",
                r.duplicate_window_secs,
                1,
                60,
            ),
            Range::new(
                "enforcement.retry_initial_ms",
                e.retry_initial_ms,
                10,
                60_000,
            ),
            Range::new("enforcement.retry_max_ms", e.retry_max_ms, 10, 600_000),
            Range::new("enforcement.max_sends", e.max_sends, 1, 20),
            Range::new(
                "enforcement.max_in_flight_per_nas",
                e.max_in_flight_per_nas,
                1,
                255,
            ),
            Range::new(
                "enforcement.max_per_second_per_nas",
                e.max_per_second_per_nas,
                1,
                100_000,
            ),
            Range::new(
                "enforcement.wait_timeout_secs",
                e.wait_timeout_secs,
                1,
                3_600,
            ),
            Range::new("enforcement.expiry_batch", e.expiry_batch, 1, 10_000),
            Range::new("enforcement.lease_secs", e.lease_secs, 1, 86_400),
        ];
        if let Some(bytes) = r.recv_buffer_bytes {
            ranges.push(Range::new(
                "radius.recv_buffer_bytes",
                bytes,
                4_096,
                1 << 30,
            ));
        }
        ranges
    }

    /// What is valid but probably not meant: said at every start (and by
    /// `--check-config`), never refused.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.nas.is_empty() {
            warnings.push(
                "no [[nas]] entry: every RADIUS packet will be dropped until one is added"
                    .to_owned(),
            );
        }
        if self.admin.socket_mode & 0o007 != 0 {
            warnings.push(format!(
                "admin.socket_mode {:04o} lets every local user connect to the admin socket \
                 and release contracts; use \"0660\" and put operators in liberad's group",
                self.admin.socket_mode
            ));
        }
        for nas in &self.nas {
            if nas.require_message_authenticator == MessageAuthenticatorRule::NotRequired
                && !nas.limit_proxy_state
            {
                warnings.push(format!(
                    "nas {:?}: require_message_authenticator = false with limit_proxy_state = \
                     false takes forged Access-Requests (BlastRADIUS, CVE-2024-3596); use \
                     \"auto\", or keep limit_proxy_state",
                    nas.name
                ));
            }
        }
        if let Some(listen) = self.api.listen
            && self.api.allow_plaintext
            && !listen.ip().is_loopback()
        {
            warnings.push(format!(
                "api.allow_plaintext: the API on {listen} is plain HTTP; its tokens and answers \
                 cross the network in clear"
            ));
        }
        warnings
    }

    /// This instance's name in the enforcement outbox.
    pub fn instance(&self) -> String {
        if let Some(name) = &self.enforcement.instance {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        format!("{host}:{}", self.admin.socket.display())
    }

    /// The database URL, the default derived from `state_dir`.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.state_dir.join("liberad.db").display()),
        }
    }
}

/// A numeric key, its value and the values it may take.
struct Range {
    key: String,
    value: u64,
    min: u64,
    max: u64,
}

impl Range {
    fn new(key: impl Into<String>, value: impl TryInto<u64>, min: u64, max: u64) -> Range {
        Range {
            key: key.into(),
            // Every value that does not fit a u64 is above any maximum.
            value: value.try_into().unwrap_or(u64::MAX),
            min,
            max,
        }
    }

    fn check(&self) -> Result<(), String> {
        if (self.min..=self.max).contains(&self.value) {
            return Ok(());
        }
        Err(format!(
            "{}: {} is out of range (from {} to {})",
            self.key, self.value, self.min, self.max
        ))
    }
}

/// The levels `[log] level` takes, alone or after `target=`.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Accepts a level (`info`) or a list of directives (`liberad=debug,sqlx=warn`),
/// each naming one of [`LOG_LEVELS`]. A word that is not a level would be
/// read by `tracing` as a target name and silence every line.
fn check_log_level(filter: &str) -> Result<(), String> {
    let refuse = |why: String| {
        Err(format!(
            "log.level: {filter:?} {why} (a level is one of {}; a filter looks like \
             \"liberad=debug,sqlx=warn\")",
            LOG_LEVELS.join(", ")
        ))
    };
    let is_level = |word: &str| {
        LOG_LEVELS
            .iter()
            .any(|l| l.eq_ignore_ascii_case(word.trim()))
    };
    if filter.trim().is_empty() {
        return refuse("is empty".to_owned());
    }
    for directive in filter.split(',') {
        let directive = directive.trim();
        let level = match directive.rsplit_once('=') {
            Some((target, level)) => {
                let target_ok = !target.trim().is_empty()
                    && target
                        .trim()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'));
                if !target_ok {
                    return refuse(format!(
                        "has {:?}, which is not a module name",
                        target.trim()
                    ));
                }
                level
            }
            None => directive,
        };
        if !is_level(level) {
            return refuse(format!("has {:?}, which is not a level", level.trim()));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .or_else(|e| refuse(format!("is not a log filter: {e}")))
}

/// Whether a NAS address (IP or CIDR) covers loopback addresses only.
fn nas_is_loopback_only(address: &str) -> bool {
    let address = address.trim();
    let network = address
        .parse::<ipnet::IpNet>()
        .or_else(|_| address.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
    match network {
        Ok(net) => net.network().is_loopback() && net.broadcast().is_loopback(),
        Err(_) => false,
    }
}

/// The database a URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err(format!(
                    "database.url: {url:?} names no file (write sqlite://PATH)"
                ));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // The rest of the URL is the store's to read
            // (`store::check_url`, at --check-config and at start).
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        Err(format!(
            "database.url: {} is not a database URL (expected sqlite://PATH or postgres://…)",
            redact_url(url)
        ))
    }
}

/// A URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://…@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    };
    // A password may also come as a query parameter.
    match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=…"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url,
    }
}

/// Turns the `config` crate's errors into one line that names the key.
fn describe_error(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => match key {
            Some(key) => format!("{key}: expected {expected}, found {unexpected}"),
            None => format!("expected {expected}, found {unexpected}"),
        },
        config::ConfigError::At { error, key, .. } => match key {
            Some(key) => format!("{key}: {}", describe_error(error)),
            None => describe_error(error),
        },
        config::ConfigError::FileParse { cause, .. } => format!("not valid TOML: {cause}"),
        config::ConfigError::Message(m) => m.replacen("unknown field", "unknown key", 1),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liberad.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_with_env(
            &path,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.admin.socket, PathBuf::from("/run/liberad/liberad.sock"));
        assert_eq!(c.admin.socket_mode, 0o660);
        assert_eq!(c.database_url(), "sqlite:///var/lib/liberad/liberad.db");
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn message_authenticator_is_true_false_or_auto_and_auto_by_default() {
        let nas = |line: &str| {
            let text =
                format!("[[nas]]\nname = \"n\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\n{line}");
            load(&text, &[]).map(|c| {
                (
                    c.nas[0].require_message_authenticator,
                    c.nas[0].limit_proxy_state,
                )
            })
        };
        assert_eq!(nas("").unwrap(), (MessageAuthenticatorRule::Auto, true));
        assert_eq!(
            nas("require_message_authenticator = true").unwrap().0,
            MessageAuthenticatorRule::Required
        );
        assert_eq!(
            nas("require_message_authenticator = false").unwrap().0,
            MessageAuthenticatorRule::NotRequired
        );
        assert_eq!(
            nas("require_message_authenticator = \"auto\"").unwrap().0,
            MessageAuthenticatorRule::Auto
        );
        assert!(!nas("limit_proxy_state = false").unwrap().1);
        let open = load(
            "[[nas]]\nname = \"n\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\n\
             require_message_authenticator = false\nlimit_proxy_state = false\n",
            &[],
        )
        .unwrap();
        assert!(open.warnings().iter().any(|w| w.contains("BlastRADIUS")));
        let e = nas("require_message_authenticator = \"sometimes\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("true, false or \"auto\""), "{e}");
        let c = load(
            "[[nas]]\nname = \"n\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\ncoa_mode = \"none\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.nas[0].coa_mode, CoaMode::None);
    }

    #[test]
    fn coa_modes_print_as_the_configuration_writes_them() {
        for mode in [
            CoaMode::Coa,
            CoaMode::Disconnect,
            CoaMode::CoaThenDisconnect,
            CoaMode::None,
        ] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
    }

    #[test]
    fn values_are_read() {
        let c = load(
            r#"
            timezone = "America/Sao_Paulo"
            state_dir = "state"
            [admin]
            socket = "state/liberad.sock"
            socket_mode = "0600"
            [log]
            level = "debug"
            format = "json"
            "#,
            &[],
        )
        .unwrap();
        assert_eq!(c.timezone, chrono_tz::America::Sao_Paulo);
        assert_eq!(c.admin.socket_mode, 0o600);
        assert_eq!(c.database_url(), "sqlite://state/liberad.db");
        assert_eq!(c.log.format, LogFormat::Json);
        let c = load("[admin]\nsocket_mode = 0o640\n", &[]).unwrap();
        assert_eq!(c.admin.socket_mode, 0o640);
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = load(
            "[database]\nurl = \"sqlite://a.db\"\n",
            &[
                ("LIBERAD_DATABASE__URL", "sqlite://b.db"),
                ("LIBERAD_ADMIN__SOCKET_MODE", "0600"),
                ("LIBERAD_TIMEZONE", "America/Manaus"),
                ("LIBERAD_ADMIN__MAX_CONNECTIONS", "4"),
                ("LIBERAD_SOCKET", "/tmp/ignored.sock"),
                ("LIBERAD_OPERATOR", "ana"),
                ("OTHER_DATABASE__URL", "sqlite://c.db"),
            ],
        )
        .unwrap();
        assert_eq!(c.database_url(), "sqlite://b.db");
        assert_eq!(c.admin.socket_mode, 0o600);
        assert_eq!(c.admin.max_connections, 4);
        assert_eq!(c.timezone, chrono_tz::America::Manaus);
    }

    fn error_of(text: &str) -> String {
        load(text, &[]).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_are_refused_by_name_and_file() {
        let e = error_of("databse = 1\n");
        assert!(e.contains("liberad.toml"), "{e}");
        assert!(e.contains("databse"), "{e}");
        let e = error_of("[admin]\nsockt = \"x\"\n");
        assert!(e.contains("sockt"), "{e}");
        let e = error_of("[nonsense]\n");
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_by_key() {
        for (text, key) in [
            ("timezone = \"Mars/Olympus\"\n", "timezone"),
            ("[admin]\nsocket_mode = \"0999\"\n", "socket_mode"),
            ("[admin]\nsocket_mode = \"rw-rw----\"\n", "socket_mode"),
            ("[admin]\nmax_connections = \"many\"\n", "max_connections"),
            ("[admin]\nmax_connections = 0\n", "max_connections"),
            ("[log]\nformat = \"xml\"\n", "format"),
            ("[log]\nlevel = \"liberad=loud\"\n", "log.level"),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
        ] {
            let e = error_of(text);
            assert!(e.contains(key), "{text:?} gave {e}");
            assert!(e.contains("liberad.toml"), "{text:?} gave {e}");
            assert!(!e.contains("secret"), "{e}");
        }
        let e = error_of("timezone = \n");
        assert!(e.contains("TOML"), "{e}");
    }

    #[test]
    fn log_levels_are_levels_or_filters_of_levels() {
        for good in [
            "info",
            "WARN",
            "off",
            "liberad=debug,sqlx=warn",
            "debug,liberad::radius=trace",
        ] {
            load(&format!("[log]\nlevel = \"{good}\"\n"), &[]).unwrap();
        }
        for bad in [
            "warning",
            "verbose",
            "",
            "liberad=loud",
            "=debug",
            "info,chatty",
            "a b=info",
        ] {
            let e = error_of(&format!("[log]\nlevel = \"{bad}\"\n"));
            assert!(
                e.contains("log.level") && e.contains("a level is one of"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn numeric_keys_outside_their_range_are_refused() {
        let huge = "4611686018427387904";
        for (section, key) in [
            ("radius", "max_in_flight"),
            ("radius", "max_accounting_in_flight"),
            ("radius", "recv_buffer_bytes"),
            ("radius", "duplicate_window_secs"),
            ("admin", "max_connections"),
            ("admin", "idle_timeout_secs"),
            ("admin", "request_timeout_secs"),
            ("database", "max_connections"),
            ("database", "acquire_timeout_ms"),
            ("database", "cache_ttl_secs"),
            ("database", "cache_logins"),
            ("enforcement", "max_sends"),
            ("enforcement", "max_per_second_per_nas"),
            ("enforcement", "wait_timeout_secs"),
            ("enforcement", "expiry_batch"),
            ("enforcement", "max_in_flight_per_nas"),
        ] {
            for value in [huge, "0"] {
                let e = error_of(&format!("[{section}]\n{key} = {value}\n"));
                // Keys of 32 bits refuse a huge number by its type.
                assert!(
                    e.contains(&format!("{section}.{key}"))
                        && (e.contains("out of range") || e.contains("32 bit")),
                    "{section}.{key} = {value}: {e}"
                );
            }
        }
        let e = error_of("[enforcement]\nretry_initial_ms = 5000\nretry_max_ms = 1000\n");
        assert!(e.contains("retry_max_ms"), "{e}");
        let e = error_of(
            "[[nas]]\nname = \"a\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\ncoa_port = 0\n",
        );
        assert!(e.contains("coa_port"), "{e}");
        // A negative number does not fit the key's type at all.
        let e = error_of("[radius]\nmax_in_flight = -1\n");
        assert!(e.contains("max_in_flight"), "{e}");
    }

    #[test]
    fn what_is_probably_not_meant_is_warned_about() {
        let c = load("", &[]).unwrap();
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("[[nas]]"), "{warnings:?}");
        let c = load(
            "[admin]\nsocket_mode = \"0666\"\n[[nas]]\nname = \"a\"\naddress = \"127.0.0.1\"\nsecret = \"s\"\n",
            &[],
        )
        .unwrap();
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("0666"), "{warnings:?}");
        let c = load(
            "[admin]\nsocket_mode = \"0660\"\n[[nas]]\nname = \"a\"\naddress = \"127.0.0.1\"\nsecret = \"s\"\n",
            &[],
        )
        .unwrap();
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn an_unknown_variable_is_refused_by_name() {
        let e = load("", &[("LIBERAD_COLOUR", "red")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour") && e.contains("LIBERAD_COLOUR"), "{e}");
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact_url("postgres://u:secret@db/liberad"),
            "postgres://…@db/liberad"
        );
        assert_eq!(
            redact_url("postgres:///l?host=/run&password=secret&user=u"),
            "postgres:///l?host=/run&password=…&user=u"
        );
        assert_eq!(redact_url("sqlite://state/l.db"), "sqlite://state/l.db");
    }

    #[test]
    fn a_missing_file_says_so() {
        let e = Config::load_with_env(Path::new("/nonexistent/liberad.toml"), []).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        assert!(e.to_string().contains("/nonexistent/liberad.toml"), "{e}");
    }

    #[test]
    fn secrets_readable_by_everyone_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liberad.toml");
        let text = "[[nas]]\nname = \"bras\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\n";
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = Config::load_with_env(&path, []).unwrap();
        let e = config.check_secrets_private(&path).unwrap_err().to_string();
        assert!(e.contains("chmod o-r") && e.contains("bras"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(config.check_secrets_private(&path).is_ok());
        // A secret file readable by everyone is refused too.
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
        let text = format!(
            "[[nas]]\nname = \"bras\"\naddress = \"10.0.0.0/24\"\nsecret_file = \"{}\"\n",
            secret.display()
        );
        std::fs::write(&path, text).unwrap();
        let config = Config::load_with_env(&path, []).unwrap();
        assert!(config.check_secrets_private(&path).is_err());
        // Loopback-only NAS entries (tests, the example) are exempt.
        let text = "[[nas]]\nname = \"t\"\naddress = \"127.0.0.0/8\"\nsecret = \"s\"\n";
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = Config::load_with_env(&path, []).unwrap();
        assert!(config.check_secrets_private(&path).is_ok());
    }

    #[test]
    fn a_reload_names_what_needs_a_restart() {
        let a = load("[radius]\nauth_listen = \"127.0.0.1:1812\"\n", &[]).unwrap();
        let b = load(
            "[radius]\nauth_listen = \"127.0.0.1:11812\"\nreject_message = \"x\"\n[log]\nlevel = \"debug\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(b.restart_needed(&a), vec!["radius.auth_listen"]);
        assert!(a.restart_needed(&a).is_empty());
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/liberad.toml");
        let c = Config::load_with_env(&path, []).unwrap();
        assert_eq!(c.timezone, chrono_tz::America::Sao_Paulo);
    }
}
