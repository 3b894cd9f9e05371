//! `memory`: resident bytes per entry of quorum-cache and Redis.
//!
//! Owns: storing N entries (100 B values by default) and reading memory before
//! and after: quorum-cache's RSS from /proc/PID/status (VmRSS), Redis's
//! `used_memory` from `INFO memory` (its allocator's own count) and, if its
//! PID is given, its RSS too. Does not own: starting the servers (`compare`
//! starts a fresh node with a CAPACITY large enough that nothing is evicted).
//!
//! RSS is coarse (allocator arenas, page granularity), which is why N is large:
//! at a million entries the noise per entry is a few bytes.

use crate::driver;
use crate::targets::{Outcome, Route, Target, TargetKind, TargetSpec};
use crate::workload::{Distribution, Workload};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

pub struct MemoryPlan {
    pub quorum_cache: Option<(Vec<String>, u32)>,
    pub redis: Option<(String, Option<u32>)>,
    pub entries: usize,
    pub value_size: usize,
    pub clients: usize,
    pub connections: usize,
}

#[derive(Debug, Serialize)]
pub struct MemoryReport {
    pub entries: usize,
    pub key_size: usize,
    pub value_size: usize,
    pub quorum_cache: Option<QuorumCacheMemory>,
    pub redis: Option<RedisMemory>,
}

#[derive(Debug, Serialize)]
pub struct QuorumCacheMemory {
    pub rss_before: u64,
    pub rss_after: u64,
    pub rss_bytes_per_entry: f64,
    pub errors: u64,
    /// The first and last key still readable afterwards (false: evicted, raise CAPACITY).
    pub all_retained: bool,
}

#[derive(Debug, Serialize)]
pub struct RedisMemory {
    pub used_memory_before: u64,
    pub used_memory_after: u64,
    pub used_memory_bytes_per_entry: f64,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    pub rss_bytes_per_entry: Option<f64>,
    pub errors: u64,
}

const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lets the server finish in-flight work and the allocator settle before reading RSS.
const SETTLE: Duration = Duration::from_secs(1);

pub async fn measure(plan: &MemoryPlan) -> Result<MemoryReport, String> {
    let workload = Arc::new(Workload::new(
        "m",
        plan.entries,
        plan.value_size,
        0,
        Distribution::Uniform,
    ));
    let per_entry = |before: u64, after: u64| (after as f64 - before as f64) / plan.entries as f64;
    let mut report = MemoryReport {
        entries: plan.entries,
        key_size: workload.keys[0].len(),
        value_size: plan.value_size,
        quorum_cache: None,
        redis: None,
    };
    if let Some((addrs, pid)) = &plan.quorum_cache {
        let target = Target::connect(
            &spec(TargetKind::QuorumCache, addrs.clone(), plan.connections),
            &workload.keys,
        )
        .await?;
        let rss_before = rss_bytes(*pid)?;
        eprintln!(
            "memory: storing {} entries in quorum-cache at {}",
            plan.entries,
            addrs.join(",")
        );
        let preload = driver::preload(&target, &workload, plan.clients, OP_TIMEOUT).await;
        tokio::time::sleep(SETTLE).await;
        let rss_after = rss_bytes(*pid)?;
        let all_retained = retained(&target, &workload).await;
        report.quorum_cache = Some(QuorumCacheMemory {
            rss_before,
            rss_after,
            rss_bytes_per_entry: per_entry(rss_before, rss_after),
            errors: preload.errors,
            all_retained,
        });
    }
    if let Some((addr, pid)) = &plan.redis {
        let target = Target::connect(
            &spec(TargetKind::Redis, vec![addr.clone()], plan.connections),
            &workload.keys,
        )
        .await?;
        let mut info_connection = crate::targets::redis::connect(addr, Duration::from_secs(5)).await?;
        let used_memory_before = used_memory(&mut info_connection).await?;
        let rss_before = pid.map(rss_bytes).transpose()?;
        eprintln!("memory: storing {} entries in Redis at {addr}", plan.entries);
        let preload = driver::preload(&target, &workload, plan.clients, OP_TIMEOUT).await;
        tokio::time::sleep(SETTLE).await;
        let used_memory_after = used_memory(&mut info_connection).await?;
        let rss_after = pid.map(rss_bytes).transpose()?;
        report.redis = Some(RedisMemory {
            used_memory_before,
            used_memory_after,
            used_memory_bytes_per_entry: per_entry(used_memory_before, used_memory_after),
            rss_before,
            rss_after,
            rss_bytes_per_entry: rss_before
                .zip(rss_after)
                .map(|(before, after)| per_entry(before, after)),
            errors: preload.errors,
        });
    }
    Ok(report)
}

fn spec(kind: TargetKind, addrs: Vec<String>, connections: usize) -> TargetSpec {
    TargetSpec {
        kind,
        members: addrs.clone(),
        addrs,
        route: Route::Any,
        connections,
        connect_timeout: Duration::from_secs(5),
    }
}

/// Whether the first and the last key stored are still there: the cheap check
/// that the node did not evict entries to stay under its capacity.
async fn retained(target: &Target, workload: &Workload) -> bool {
    let mut session = target.session(0);
    let last = workload.keys.len() - 1;
    for index in [0, last] {
        if !matches!(session.get(index, &workload.keys[index]).await, Ok(Outcome::Done)) {
            return false;
        }
    }
    true
}

/// VmRSS of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|error| format!("{path}: {error}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("{path}: no VmRSS line"))
}

async fn used_memory(connection: &mut redis::aio::MultiplexedConnection) -> Result<u64, String> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(connection)
        .await
        .map_err(|error| format!("Redis INFO memory: {error}"))?;
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| "Redis INFO memory: no used_memory line".to_string())
}

impl MemoryReport {
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "memory: {} entries, {} B keys, {} B values\n",
            self.entries, self.key_size, self.value_size
        );
        if let Some(qc) = &self.quorum_cache {
            text += &format!(
                "  quorum-cache  RSS {:.1} bytes/entry ({} -> {} bytes){}{}\n",
                qc.rss_bytes_per_entry,
                qc.rss_before,
                qc.rss_after,
                if qc.errors > 0 {
                    format!(", {} errors", qc.errors)
                } else {
                    String::new()
                },
                if qc.all_retained {
                    ""
                } else {
                    ", WARNING: entries were evicted (raise CAPACITY / CAPACITY_BYTES)"
                },
            );
        }
        if let Some(redis) = &self.redis {
            text += &format!(
                "  redis         used_memory {:.1} bytes/entry ({} -> {} bytes)",
                redis.used_memory_bytes_per_entry, redis.used_memory_before, redis.used_memory_after
            );
            if let Some(rss) = redis.rss_bytes_per_entry {
                text += &format!(", RSS {rss:.1} bytes/entry");
            }
            if redis.errors > 0 {
                text += &format!(", {} errors", redis.errors);
            }
            text += "\n";
        }
        text
    }
}
