//! The process's `tracing` subscriber: passes the events of tonic, h2, hyper and
//! tower at or above a level on to the `log` crate (which slog-stdlog bridges into
//! slog), and turns every span and every quieter event off at its call site.
//!
//! Owns: which `tracing` call sites are enabled, and turning an event into a
//! `log` record (target kept, fields after the message as `key=value`).
//! Does not own: where records end up or how they are filtered by origin
//! (`logging`).
//!
//! Why a subscriber at all: with `tracing`'s `log` feature and no subscriber,
//! every span a library opens on the hot path (h2 opens several per poll) builds
//! its field set and tries to log it, whatever `log`'s level (the profile:
//! docs/design-notes.md). Once a subscriber is set, `tracing` asks it instead, and a
//! call site it declines costs one cached load. Written by hand: the crates that
//! bridge the other way (slog → tracing) or print on their own (tracing-subscriber's
//! fmt) do not fit, and forwarding an event is a page.

use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// Where a forwarded event goes: `log::logger()` in a node, a recorder in tests.
pub type Sink = fn(&log::Record<'_>);

/// Forwards events at or above `max_level` to `sink`; no span is ever enabled.
pub struct EventsToLog {
    max_level: LevelFilter,
    sink: Sink,
}

impl EventsToLog {
    pub fn new(max_level: LevelFilter, sink: Sink) -> Self {
        Self { max_level, sink }
    }
}

/// The `log` crate's logger, as a `Sink`.
pub fn to_log_crate(record: &log::Record<'_>) {
    log::logger().log(record);
}

impl Subscriber for EventsToLog {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && self.max_level >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        // Never called for a disabled span; an id is still owed if it is.
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let mut text = MessageThenFields::default();
        event.record(&mut text);
        (self.sink)(
            &log::Record::builder()
                .level(log_level(*metadata.level()))
                .target(metadata.target())
                .module_path(metadata.module_path())
                .file(metadata.file())
                .line(metadata.line())
                .args(format_args!("{}", text.finish()))
                .build(),
        );
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

fn log_level(level: Level) -> log::Level {
    match level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    }
}

/// The `tracing` filter that lets through what `log` lets through at `level`.
pub fn level_filter(level: log::Level) -> LevelFilter {
    match level {
        log::Level::Error => LevelFilter::ERROR,
        log::Level::Warn => LevelFilter::WARN,
        log::Level::Info => LevelFilter::INFO,
        log::Level::Debug => LevelFilter::DEBUG,
        log::Level::Trace => LevelFilter::TRACE,
    }
}

/// An event's `message` field first, then its other fields as `key=value`.
#[derive(Default)]
struct MessageThenFields {
    message: String,
    fields: String,
}

impl MessageThenFields {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }
}

impl Visit for MessageThenFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let separator = if self.fields.is_empty() { "" } else { " " };
            let _ = write!(self.fields, "{separator}{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        static FORWARDED: RefCell<Vec<(log::Level, String, String)>> = const { RefCell::new(Vec::new()) };
    }

    fn record(record: &log::Record<'_>) {
        FORWARDED.with(|seen| {
            seen.borrow_mut().push((
                record.level(),
                record.target().to_string(),
                record.args().to_string(),
            ))
        });
    }

    /// Runs `emit` under an `EventsToLog` at `max_level` and returns what it forwarded.
    fn forwarded(max_level: LevelFilter, emit: impl FnOnce()) -> Vec<(log::Level, String, String)> {
        FORWARDED.with(|seen| seen.borrow_mut().clear());
        tracing::subscriber::with_default(EventsToLog::new(max_level, record), emit);
        FORWARDED.with(|seen| seen.take())
    }

    #[test]
    fn an_event_at_the_level_is_forwarded_with_its_target_message_and_fields() {
        let seen = forwarded(LevelFilter::WARN, || {
            tracing::warn!(target: "h2::proto", peer = "10.0.0.2:7000", streams = 3, "connection error");
            tracing::error!(target: "tonic", "no message fields");
        });
        assert_eq!(
            seen,
            vec![
                (
                    log::Level::Warn,
                    "h2::proto".into(),
                    "connection error peer=\"10.0.0.2:7000\" streams=3".into()
                ),
                (log::Level::Error, "tonic".into(), "no message fields".into()),
            ]
        );
    }

    #[test]
    fn quieter_events_and_all_spans_are_turned_off() {
        let seen = forwarded(LevelFilter::WARN, || {
            tracing::info!(target: "hyper", "per-request chatter");
            tracing::debug!(target: "h2", "frame");
            let span = tracing::warn_span!(target: "h2", "poll", id = 1);
            assert!(span.is_disabled(), "spans must cost nothing, even at warning");
        });
        assert_eq!(seen, vec![]);
    }

    #[test]
    fn at_trace_everything_but_spans_is_forwarded() {
        let seen = forwarded(LevelFilter::TRACE, || {
            tracing::trace!(target: "h2", size = 9, "read frame");
            assert!(tracing::trace_span!(target: "h2", "poll").is_disabled());
        });
        assert_eq!(
            seen,
            vec![(log::Level::Trace, "h2".into(), "read frame size=9".into())]
        );
    }
}
