//! Structured logs with slog: JSON (default) or text on stdout, written by a
//! background thread, with the records of tonic, h2, hyper and tower (which log
//! through `tracing`; `tracing_bridge` hands them to `log`, slog-stdlog to slog)
//! bridged in and kept only at warning and above unless LOG_LEVEL is trace.
//!
//! Owns: building the root logger, installing the bridges, and the guard that
//! flushes the logger at exit.
//! Does not own: what is logged (one line per event worth knowing, never one per
//! request at info level: that is each module's discipline).

mod tracing_bridge;

use crate::config::LogFormat;
use slog::{Drain, Level, Logger, o};

/// Keeps the log thread alive; dropping it flushes every pending record.
pub struct LogGuard {
    _async: slog_async::AsyncGuard,
    _scope: slog_scope::GlobalLoggerGuard,
}

/// The crates whose records arrive through the `log` bridge, by target prefix.
const BRIDGED: &[&str] = &["h2", "hyper", "tonic", "tower", "rustls", "mio", "want"];

/// Our own records pass at `level`; bridged ones at warning (or `level`, if lower
/// than debug, so LOG_LEVEL=trace shows everything).
struct LevelByOrigin<D> {
    drain: D,
    level: Level,
}

impl<D: Drain> Drain for LevelByOrigin<D> {
    type Ok = Option<D::Ok>;
    type Err = D::Err;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<Self::Ok, Self::Err> {
        let bridged = BRIDGED.iter().any(|prefix| record.tag().starts_with(prefix));
        let threshold = if bridged && self.level != Level::Trace {
            Level::Warning
        } else {
            self.level
        };
        if record.level().is_at_least(threshold) {
            self.drain.log(record, values).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Sets up logging for the process: the returned logger for our code, and the
/// global bridge for libraries.
pub fn init(format: &LogFormat, level: Level) -> (Logger, LogGuard) {
    let (drain, async_guard) = match format {
        LogFormat::Json => {
            let json = slog_json::Json::new(std::io::stdout())
                .add_default_keys()
                .build()
                .fuse();
            asynchronous(json)
        }
        LogFormat::Text => {
            let decorator = slog_term::PlainDecorator::new(std::io::stdout());
            asynchronous(slog_term::FullFormat::new(decorator).build().fuse())
        }
    };
    let drain = LevelByOrigin { drain, level }.fuse();
    let logger = Logger::root(drain, o!("service" => "quorum-cache"));
    let scope_guard = slog_scope::set_global_logger(logger.clone());
    // Only the first call in a process installs the bridge; later ones are no-ops.
    let _ = slog_stdlog::init_with_level(bridge_level(level));
    // The bridge's level is what library call sites test before building a
    // record: records LevelByOrigin would drop anyway must not be built at all
    // (h2 builds one per frame).
    log::set_max_level(bridge_level(level).to_level_filter());
    // The same level for `tracing`, whose call sites then decide once, not per call.
    let tracing_level = tracing_bridge::level_filter(bridge_level(level));
    let events_to_log = tracing_bridge::EventsToLog::new(tracing_level, tracing_bridge::to_log_crate);
    let _ = tracing::subscriber::set_global_default(events_to_log);
    (
        logger,
        LogGuard {
            _async: async_guard,
            _scope: scope_guard,
        },
    )
}

/// The most verbose `log` record LevelByOrigin can let through at `level`.
fn bridge_level(level: Level) -> log::Level {
    match level {
        Level::Trace => log::Level::Trace,
        // Our own code logs through slog, not `log`; bridged crates pass at warning.
        _ => log::Level::Warn,
    }
}

fn asynchronous<D>(drain: D) -> (slog::Fuse<slog_async::Async>, slog_async::AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(8_192)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .build_with_guard();
    (drain.fuse(), guard)
}

/// A logger that discards everything, for tests and embedded use.
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}
