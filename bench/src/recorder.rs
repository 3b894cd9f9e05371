//! What one client saw: latencies in HDR histograms (all operations, Gets,
//! Sets), misses, and errors by kind. Each client owns one, and they are
//! merged at the end, so the hot loop never shares a lock.
//!
//! Owns: recording and merging. Does not own: when to record (`driver` skips
//! the warm-up) or presenting (`report`).

use crate::targets::{OpError, Outcome};
use crate::workload::OpKind;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies up to a minute at 3 significant digits; longer ones are clamped to it.
const HIGHEST_TRACKABLE_NANOS: u64 = 60_000_000_000;

pub struct Recorder {
    pub all: Histogram<u64>,
    pub gets: Histogram<u64>,
    pub sets: Histogram<u64>,
    pub misses: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        let histogram =
            || Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_NANOS, 3).expect("valid histogram bounds");
        Self {
            all: histogram(),
            gets: histogram(),
            sets: histogram(),
            misses: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Successful calls go into the histograms; failed ones are only counted, so
    /// that fast refusals cannot make the percentiles look better.
    pub fn record(&mut self, kind: OpKind, latency: Duration, result: &Result<Outcome, OpError>) {
        match result {
            Ok(outcome) => {
                let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
                self.all.saturating_record(nanos);
                match kind {
                    OpKind::Get => self.gets.saturating_record(nanos),
                    OpKind::Set => self.sets.saturating_record(nanos),
                }
                if *outcome == Outcome::Miss {
                    self.misses += 1;
                }
            }
            Err(error) => *self.errors.entry(error.kind.clone()).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.all
            .add(&other.all)
            .expect("histograms with the same bounds merge");
        self.gets
            .add(&other.gets)
            .expect("histograms with the same bounds merge");
        self.sets
            .add(&other.sets)
            .expect("histograms with the same bounds merge");
        self.misses += other.misses;
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}
