//! Log output: `tracing` events to standard error, as text or JSON lines,
//! filtered by the configured level, which a reload can change; and the
//! throttle that keeps a repeated failure to one line per interval.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

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

/// Allows an event once per interval and counts the ones it held back.
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last time)` when the event may be logged
    /// now, `None` when it is held back.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, held) = &mut *state;
        if last.is_some_and(|at| now - at < self.every) {
            *held += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_one_through_per_interval_and_counts_the_rest() {
        let t0 = Instant::now();
        let throttle = Throttle::new(Duration::from_secs(10));
        assert_eq!(throttle.allow(t0), Some(0));
        assert_eq!(throttle.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(10)), Some(2));
    }
}
