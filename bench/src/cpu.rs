//! CPU time spent during the measured window, by the servers and by the generator.
//!
//! Owns: reading a process's user + system time from `/proc/PID/stat` (Linux;
//! it counts every thread of the process, exited ones included), and turning
//! two readings into CPU microseconds per operation and cores kept busy. This is
//! what tells a CPU-bound system from one that waits: on a machine of K cores
//! shared by the servers and the generator, no run can exceed
//! K / (server + generator CPU per operation) operations per second, and a run
//! well below that bound is waiting on something else (wake-ups, round trips).
//! Does not own: when the readings are taken (`driver`), how they are shown
//! (`report`).

use std::time::{Duration, Instant};

/// The processes to account for: the servers named on the command line, and
/// this process (the generator).
#[derive(Debug, Clone, Default)]
pub struct Watch {
    pub server_pids: Vec<u32>,
}

/// CPU time used so far, by the servers together and by the generator.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    servers: Duration,
    generator: Duration,
}

/// What the window cost, before it is divided by the operations.
#[derive(Debug, Clone, Copy)]
pub struct Spent {
    pub window: Duration,
    /// `None` when no server process was named.
    pub servers: Option<Duration>,
    pub server_processes: usize,
    pub generator: Duration,
}

impl Watch {
    /// Reads every process once: an error names the process that cannot be read,
    /// so that a wrong `--server-pids` fails before the run rather than after it.
    pub fn check(&self) -> Result<(), String> {
        self.read().map(|_| ())
    }

    /// CPU spent between `from` and `to` (sleeps until each, then reads).
    pub async fn spent_between(&self, from: Instant, to: Instant) -> Result<Spent, String> {
        tokio::time::sleep_until(from.into()).await;
        let start = self.read()?;
        tokio::time::sleep_until(to.into()).await;
        let end = self.read()?;
        Ok(Spent {
            window: end.at.saturating_duration_since(start.at),
            servers: (!self.server_pids.is_empty()).then(|| end.servers.saturating_sub(start.servers)),
            server_processes: self.server_pids.len(),
            generator: end.generator.saturating_sub(start.generator),
        })
    }

    fn read(&self) -> Result<Reading, String> {
        let mut servers = Duration::ZERO;
        for pid in &self.server_pids {
            servers += process_cpu(&format!("/proc/{pid}/stat")).map_err(|error| {
                format!("server process {pid}: {error}; give the PIDs of running servers")
            })?;
        }
        let generator =
            process_cpu("/proc/self/stat").map_err(|error| format!("the generator itself: {error}"))?;
        Ok(Reading {
            at: Instant::now(),
            servers,
            generator,
        })
    }
}

/// User + system time of the process whose `stat` file is at `path`.
fn process_cpu(path: &str) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(path).map_err(|error| format!("cannot read {path}: {error}"))?;
    let ticks = cpu_ticks(&stat).ok_or_else(|| format!("{path} does not have the layout of proc(5)"))?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()))
}

/// utime + stime (fields 14 and 15 of proc(5)), in clock ticks. The command
/// name (field 2) is in parentheses and may hold spaces and parentheses, so
/// fields are counted from the last ')'.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 is the first after the name
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_from_the_last_parenthesis() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 700 55 0 0 20 0 1 0 1 1 1";
        assert_eq!(cpu_ticks(stat), Some(755));
    }

    #[test]
    fn a_truncated_or_garbled_stat_is_refused() {
        assert_eq!(cpu_ticks("4242 (name) S 1 2 3"), None);
        assert_eq!(cpu_ticks("no parenthesis at all"), None);
        assert_eq!(cpu_ticks("1 (x) S 1 1 1 0 -1 0 0 0 0 0 lots 3"), None);
    }

    #[test]
    fn a_missing_process_is_named_in_the_error() {
        let watch = Watch {
            server_pids: vec![u32::MAX],
        };
        let error = watch.check().expect_err("no process has the largest PID");
        assert!(error.contains(&format!("server process {}", u32::MAX)), "{error}");
        assert!(error.contains("give the PIDs of running servers"), "{error}");
    }

    #[test]
    fn this_process_can_be_read() {
        let watch = Watch {
            server_pids: vec![std::process::id()],
        };
        watch.check().expect("the test's own process is readable");
    }
}
