//! `pb.CacheService`: the client-facing API. Decodes, validates, calls the
//! coordinator, encodes.
//!
//! Owns: turning requests into coordinator calls and results into responses,
//! admitting each call through the drain (turned away once draining), and
//! reporting each call's method, code and latency to `metrics`.
//! Does not own: rate limiting (an interceptor, `rate_limit`), error codes
//! (`status`), the draining state (`drain`), the quorum logic (`coordinator`).

use super::drain::{CallGuard, Drain};
use super::status;
use crate::coordinator::Coordinator;
use crate::limits::InputLimits;
use crate::metrics::{Method, Metrics};
use crate::pb::cache_service_server::CacheService;
use crate::pb::{DeleteRequest, DeleteResponse, GetRequest, GetResponse, SetRequest, SetResponse};
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

pub struct ClientApi {
    coordinator: Arc<Coordinator>,
    limits: InputLimits,
    drain: Arc<Drain>,
    metrics: Arc<Metrics>,
}

impl ClientApi {
    pub fn new(
        coordinator: Arc<Coordinator>,
        limits: InputLimits,
        drain: Arc<Drain>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            coordinator,
            limits,
            drain,
            metrics,
        }
    }

    /// Runs one call, counting it and timing it.
    async fn observed<T>(
        &self,
        method: Method,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let outcome = call.await;
        let code = outcome.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.request(method, code, started.elapsed());
        outcome.map(Response::new)
    }

    fn admit(&self) -> Result<CallGuard, Status> {
        self.drain.enter().ok_or_else(status::draining)
    }

    fn key(&self, key: String) -> Result<Bytes, Status> {
        self.limits
            .check_key(key.as_bytes())
            .map_err(status::from_input)?;
        Ok(Bytes::from(key))
    }
}

#[tonic::async_trait]
impl CacheService for ClientApi {
    async fn set(&self, request: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        self.observed(Method::Set, self.set_value(request.into_inner()))
            .await
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.observed(Method::Get, self.get_value(request.into_inner()))
            .await
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        self.observed(Method::Delete, self.delete_key(request.into_inner()))
            .await
    }
}

impl ClientApi {
    async fn set_value(&self, request: SetRequest) -> Result<SetResponse, Status> {
        let _call = self.admit()?;
        let key = self.key(request.key)?;
        self.limits
            .check_value(request.value.as_bytes())
            .map_err(status::from_input)?;
        let ttl = self.limits.ttl(request.ttl_seconds).map_err(status::from_input)?;
        let expires_at_ms = self.coordinator.replica().clock().wall_ms() + ttl.as_millis() as u64;
        let version = self
            .coordinator
            .set(key, Bytes::from(request.value), expires_at_ms)
            .await
            .map_err(status::from_coordinator)?;
        Ok(SetResponse {
            version: Some(version.into()),
        })
    }

    async fn get_value(&self, request: GetRequest) -> Result<GetResponse, Status> {
        let _call = self.admit()?;
        let key = self.key(request.key)?;
        let found = self
            .coordinator
            .get(key.clone())
            .await
            .map_err(status::from_coordinator)?;
        let Some(found) = found else {
            return Err(status::not_found(&String::from_utf8_lossy(&key)));
        };
        // Values arrive as UTF-8 strings and are stored as their bytes; a replica
        // only ever holds what a client sent, so this does not fail in practice.
        let value = String::from_utf8(found.value.to_vec())
            .map_err(|_| Status::data_loss("stored value is not valid UTF-8"))?;
        let now = self.coordinator.replica().clock().wall_ms();
        Ok(GetResponse {
            value,
            version: Some(found.version.into()),
            ttl_remaining_ms: found.expires_at_ms.saturating_sub(now),
        })
    }

    async fn delete_key(&self, request: DeleteRequest) -> Result<DeleteResponse, Status> {
        let _call = self.admit()?;
        let key = self.key(request.key)?;
        let version = self
            .coordinator
            .delete(key)
            .await
            .map_err(status::from_coordinator)?;
        Ok(DeleteResponse {
            version: Some(version.into()),
        })
    }
}
