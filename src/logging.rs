//! Log output: `tracing` events to standard error, as text or JSON lines,
//! filtered by the configured level, which a reload can change.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{LogConfig, LogFormat};

/// Changes the log level of the running process.
#[derive(Clone)]
pub struct LogControl {
    filter: reload::Handle<EnvFilter, Registry>,
}

impl LogControl {
    /// Applies a new level (validated with the configuration).
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.filter.reload(filter).map_err(|e| e.to_string())
    }
}

/// Installs the global subscriber. The level was validated with the
/// configuration; should it still not parse, `info` is used.
pub fn init(config: &LogConfig) -> Option<LogControl> {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let text = (config.format == LogFormat::Text)
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let json = (config.format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
    });
    match tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
    {
        Ok(()) => Some(LogControl { filter: handle }),
        Err(e) => {
            eprintln!("liberad: logging was already set up: {e}");
            None
        }
    }
}
