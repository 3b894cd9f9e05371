//! The Redis client: GET and SET over `--connections` multiplexed connections
//! (the `redis` crate pipelines the commands of many clients on each).
//!
//! Owns: connecting, spreading clients over connections (and over addresses
//! round-robin if several are given, for independent servers — not Redis
//! Cluster), and naming errors. Does not own: Redis's configuration (the
//! `compare` script starts it without persistence).

use super::{OpError, Outcome, TargetSpec};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;

#[derive(Clone)]
pub struct RedisTarget {
    /// `[address][connection]`.
    connections: Arc<Vec<Vec<MultiplexedConnection>>>,
}

impl RedisTarget {
    pub async fn connect(spec: &TargetSpec) -> Result<Self, String> {
        let mut connections = Vec::with_capacity(spec.addrs.len());
        for addr in &spec.addrs {
            let mut per_addr = Vec::with_capacity(spec.connections);
            for _ in 0..spec.connections.max(1) {
                per_addr.push(connect(addr, spec.connect_timeout).await?);
            }
            connections.push(per_addr);
        }
        Ok(Self {
            connections: Arc::new(connections),
        })
    }

    pub fn session(&self, client_index: usize) -> RedisSession {
        let per_addr = &self.connections[client_index % self.connections.len()];
        RedisSession {
            connection: per_addr[(client_index / self.connections.len()) % per_addr.len()].clone(),
        }
    }
}

/// One multiplexed connection to `addr` ("host:port" or a redis:// URL).
pub async fn connect(addr: &str, timeout: std::time::Duration) -> Result<MultiplexedConnection, String> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("redis://{addr}/")
    };
    let client = redis::Client::open(url).map_err(|error| format!("{addr}: not a Redis address: {error}"))?;
    match tokio::time::timeout(timeout, client.get_multiplexed_async_connection()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(format!("{addr}: cannot connect to Redis: {error}")),
        Err(_) => Err(format!("{addr}: cannot connect to Redis: timed out")),
    }
}

pub struct RedisSession {
    connection: MultiplexedConnection,
}

impl RedisSession {
    pub async fn get(&mut self, key: &str) -> Result<Outcome, OpError> {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.connection)
            .await
            .map_err(redis_error)?;
        Ok(if value.is_some() {
            Outcome::Done
        } else {
            Outcome::Miss
        })
    }

    pub async fn set(&mut self, key: &str, value: &str) -> Result<Outcome, OpError> {
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut self.connection)
            .await
            .map_err(redis_error)?;
        Ok(Outcome::Done)
    }
}

fn redis_error(error: redis::RedisError) -> OpError {
    OpError::new(format!("redis:{:?}", error.kind()))
}
