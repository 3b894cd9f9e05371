//! The results of one `run`: a serializable summary and its text form.
//!
//! Owns: turning a `Measurement` into numbers (throughput, percentiles in
//! microseconds, errors by kind, CPU per operation) and printing them. Does not own: measuring.

use crate::driver::{Measurement, PreloadSummary};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What was run, echoed into the results so a JSON file explains itself.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    pub target: crate::targets::TargetKind,
    pub addrs: Vec<String>,
    pub route: crate::targets::Route,
    pub clients: usize,
    pub connections: usize,
    /// The generator's runtime threads (`--threads`; 1 = single-threaded).
    pub generator_threads: usize,
    /// "closed" or "open".
    pub mode: &'static str,
    /// Total ops/s asked for in open loop; 0 in closed loop.
    pub rate: f64,
    pub keys: usize,
    pub value_size: usize,
    pub read_ratio: u8,
    pub distribution: crate::workload::Distribution,
    pub warmup_s: f64,
    pub duration_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// `None` for an empty histogram: no calls of that kind succeeded.
    fn of(histogram: &Histogram<u64>) -> Option<Self> {
        let micros = |nanos: u64| nanos as f64 / 1000.0;
        (!histogram.is_empty()).then(|| Self {
            count: histogram.len(),
            mean: histogram.mean() / 1000.0,
            p50: micros(histogram.value_at_quantile(0.50)),
            p90: micros(histogram.value_at_quantile(0.90)),
            p99: micros(histogram.value_at_quantile(0.99)),
            p999: micros(histogram.value_at_quantile(0.999)),
            max: micros(histogram.max()),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preload {
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
}

/// CPU time during the measured window (see `cpu`).
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// Server processes named with `--server-pids` (0: none, and no server figures).
    pub server_processes: usize,
    /// Their CPU time per successful operation, in microseconds.
    pub server_us_per_op: Option<f64>,
    /// Cores they kept busy, on average over the window.
    pub server_cores: Option<f64>,
    pub generator_us_per_op: Option<f64>,
    pub generator_cores: f64,
}

impl CpuUse {
    fn of(spent: &crate::cpu::Spent, ops: u64) -> Self {
        let window_s = spent.window.as_secs_f64();
        let per_op = |cpu: std::time::Duration| (ops > 0).then(|| cpu.as_secs_f64() * 1e6 / ops as f64);
        let cores = |cpu: std::time::Duration| {
            if window_s > 0.0 {
                cpu.as_secs_f64() / window_s
            } else {
                0.0
            }
        };
        Self {
            server_processes: spent.server_processes,
            server_us_per_op: spent.servers.and_then(per_op),
            server_cores: spent.servers.map(cores),
            generator_us_per_op: per_op(spent.generator),
            generator_cores: cores(spent.generator),
        }
    }

    fn to_text(&self) -> String {
        let per_op = |us: Option<f64>| us.map_or_else(|| "-".to_string(), |us| format!("{us:.1}"));
        let servers = match self.server_cores {
            Some(cores) => format!(
                "servers {} µs/op, {cores:.2} cores ({} processes)",
                per_op(self.server_us_per_op),
                self.server_processes
            ),
            None => "servers not measured (no --server-pids)".to_string(),
        };
        format!(
            "{servers} | generator {} µs/op, {:.2} cores",
            per_op(self.generator_us_per_op),
            self.generator_cores
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: RunSettings,
    /// Successful calls in the measured window.
    pub ops: u64,
    pub gets: u64,
    pub sets: u64,
    /// Gets that found nothing (counted in `ops`, not errors).
    pub misses: u64,
    pub elapsed_s: f64,
    pub throughput_ops_s: f64,
    pub errors: Errors,
    /// All successful calls, in microseconds; open loop: from the intended send time.
    pub latency_us: Option<Percentiles>,
    pub get_latency_us: Option<Percentiles>,
    pub set_latency_us: Option<Percentiles>,
    pub preload: Option<Preload>,
    /// CPU per operation over the measured window; `None` when it could not be
    /// read, with the reason in `cpu_unavailable`.
    pub cpu: Option<CpuUse>,
    pub cpu_unavailable: Option<String>,
}

impl Report {
    pub fn new(settings: RunSettings, measurement: &Measurement, preload: Option<&PreloadSummary>) -> Self {
        let recorder = &measurement.recorder;
        let elapsed_s = measurement.elapsed.as_secs_f64();
        // Calls started in the window over the window's length: in steady state as
        // many start as finish, and this does not depend on how long the tail takes.
        let window_s = measurement.window.as_secs_f64();
        let ops = recorder.all.len();
        let (cpu, cpu_unavailable) = match &measurement.cpu {
            Ok(spent) => (Some(CpuUse::of(spent, ops)), None),
            Err(reason) => (None, Some(reason.clone())),
        };
        Self {
            settings,
            ops,
            gets: recorder.gets.len(),
            sets: recorder.sets.len(),
            misses: recorder.misses,
            elapsed_s,
            throughput_ops_s: if window_s > 0.0 {
                ops as f64 / window_s
            } else {
                0.0
            },
            errors: Errors {
                total: recorder.error_count(),
                by_kind: recorder.errors.clone(),
            },
            latency_us: Percentiles::of(&recorder.all),
            get_latency_us: Percentiles::of(&recorder.gets),
            set_latency_us: Percentiles::of(&recorder.sets),
            preload: preload.map(|preload| Preload {
                ops: preload.ops,
                errors: preload.errors,
                seconds: preload.elapsed.as_secs_f64(),
            }),
            cpu,
            cpu_unavailable,
        }
    }

    pub fn to_text(&self) -> String {
        let s = &self.settings;
        let mut text = String::new();
        let rate = if s.mode == "open" {
            format!(" at {:.0} ops/s", s.rate)
        } else {
            String::new()
        };
        let _ = writeln!(
            text,
            "target {:?} {} route={:?} | {} loop{rate}, {} clients, {} connections, {} generator thread(s) | {} keys ({:?}), {} B values, {}% gets | {:.0}s after {:.0}s warm-up",
            s.target,
            s.addrs.join(","),
            s.route,
            s.mode,
            s.clients,
            s.connections,
            s.generator_threads,
            s.keys,
            s.distribution,
            s.value_size,
            s.read_ratio,
            s.duration_s,
            s.warmup_s,
        );
        if let Some(preload) = &self.preload {
            let _ = writeln!(
                text,
                "preload    {} sets in {:.1}s, {} errors",
                preload.ops, preload.seconds, preload.errors
            );
        }
        let _ = writeln!(
            text,
            "throughput {:.0} ops/s  ({} ops: {} gets, {} sets, {} misses; last answer {:.2}s after the window opened)",
            self.throughput_ops_s, self.ops, self.gets, self.sets, self.misses, self.elapsed_s
        );
        let kinds: Vec<String> = self
            .errors
            .by_kind
            .iter()
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect();
        let _ = writeln!(
            text,
            "errors     {}{}",
            self.errors.total,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            }
        );
        let _ = writeln!(
            text,
            "latency µs {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        for (name, percentiles) in [
            ("all", &self.latency_us),
            ("get", &self.get_latency_us),
            ("set", &self.set_latency_us),
        ] {
            if let Some(p) = percentiles {
                let _ = writeln!(
                    text,
                    "  {name:<8} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                    p.p50, p.p90, p.p99, p.p999, p.max, p.mean
                );
            }
        }
        let cpu = match (&self.cpu, &self.cpu_unavailable) {
            (Some(cpu), _) => cpu.to_text(),
            (None, reason) => format!("not measured: {}", reason.as_deref().unwrap_or("unknown")),
        };
        let _ = writeln!(text, "cpu        {cpu}");
        text
    }
}
