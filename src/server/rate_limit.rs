//! The client-call rate limit: RATE_LIMIT calls per second with RATE_LIMIT_BURST,
//! for the whole node (governor's GCRA). Installed as an interceptor on the
//! client service only, so health, reflection and node-to-node calls are never
//! limited. Over the limit: RESOURCE_EXHAUSTED, which clients do not treat as an
//! outage (UNAVAILABLE would be retried at once and counted as one).
//!
//! Owns: the limiter and its clock (injected, so tests are deterministic).
//! Does not own: per-client fairness (one budget for the node).

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use tonic::{Request, Status};

pub struct RateLimit<C: Clock = DefaultClock> {
    limiter: Option<RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>>,
    rate: u32,
    burst: u32,
}

impl RateLimit<DefaultClock> {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self::with_clock(rate, burst, DefaultClock::default())
    }
}

impl<C: Clock> RateLimit<C> {
    /// `rate` 0 disables the limit.
    pub fn with_clock(rate: u32, burst: u32, clock: C) -> Self {
        let limiter = NonZeroU32::new(rate).map(|per_second| {
            let burst = NonZeroU32::new(burst).unwrap_or(per_second);
            RateLimiter::direct_with_clock(Quota::per_second(per_second).allow_burst(burst), clock)
        });
        Self { limiter, rate, burst }
    }

    pub fn check(&self) -> Result<(), Status> {
        match &self.limiter {
            Some(limiter) if limiter.check().is_err() => {
                Err(super::status::rate_limited(self.rate, self.burst))
            }
            _ => Ok(()),
        }
    }
}

/// A tonic interceptor around a shared limiter, counting refusals.
pub fn interceptor(
    limit: Arc<RateLimit>,
    metrics: Arc<crate::metrics::Metrics>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request| {
        limit
            .check()
            .map(|()| request)
            .inspect_err(|_| metrics.rate_limited())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn allows_the_burst_then_refuses_until_time_passes() {
        let clock = FakeRelativeClock::default();
        let limit = RateLimit::with_clock(10, 3, clock.clone());
        for _ in 0..3 {
            limit.check().unwrap();
        }
        let refused = limit.check().unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("RATE_LIMIT=10"));
        clock.advance(Duration::from_millis(100));
        limit.check().expect("one call per 100 ms at 10/s");
        assert!(limit.check().is_err());
    }

    #[test]
    fn zero_disables_the_limit() {
        let limit = RateLimit::with_clock(0, 0, FakeRelativeClock::default());
        for _ in 0..10_000 {
            limit.check().unwrap();
        }
    }
}
