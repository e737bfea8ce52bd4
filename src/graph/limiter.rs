//! Client-side rate limits per tenant: Graph's throttling budget belongs to an app in a
//! tenant, so every resource of that tenant shares one token bucket here.
//!
//! Adaptive: a throttling episode (however many 429s it brings) halves the tenant's rate
//! once and pauses the whole tenant for Retry-After; time without throttling raises the
//! rate slowly (a tenth per second) back to the configured one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;

/// 429s closer together than this (or during a Retry-After pause) are one episode.
const EPISODE: Duration = Duration::from_secs(1);
/// Never below this, however often Graph throttles: Retry-After does the rest.
const MIN_RATE: f64 = 0.1;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests per second per tenant.
    pub rate: f64,
    /// Requests that may go at once after a quiet period.
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    rate: f64,
    refilled_at: Instant,
    paused_until: Option<Instant>,
    /// When a throttling episode last lowered the rate.
    lowered_at: Option<Instant>,
    /// When the rate was last changed (lowered or raised).
    adjusted_at: Instant,
    /// When a request last asked for this tenant: idle tenants are forgotten.
    used_at: Instant,
}

pub struct TenantLimiter {
    limits: Limits,
    buckets: Mutex<HashMap<String, Arc<Mutex<Bucket>>>>,
    metrics: Arc<Metrics>,
}

impl TenantLimiter {
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Self {
        TenantLimiter { limits, buckets: Mutex::default(), metrics }
    }

    fn bucket(&self, tenant: &str) -> Arc<Mutex<Bucket>> {
        self.buckets
            .lock()
            .unwrap()
            .entry(tenant.to_string())
            .or_insert_with(|| {
                self.metrics.tenant_rate(tenant, self.limits.rate);
                Arc::new(Mutex::new(Bucket {
                    tokens: self.limits.burst,
                    rate: self.limits.rate,
                    refilled_at: Instant::now(),
                    paused_until: None,
                    lowered_at: None,
                    adjusted_at: Instant::now(),
                    used_at: Instant::now(),
                }))
            })
            .clone()
    }

    /// Waits until `tenant` may send one more request, and takes it.
    pub async fn acquire(&self, tenant: &str) {
        let bucket = self.bucket(tenant);
        loop {
            let wait = {
                let mut b = bucket.lock().unwrap();
                let now = Instant::now();
                b.used_at = now;
                match b.paused_until {
                    Some(until) if until > now => until - now,
                    _ => {
                        b.paused_until = None;
                        let elapsed = now.duration_since(b.refilled_at).as_secs_f64();
                        b.tokens = (b.tokens + elapsed * b.rate).min(self.limits.burst);
                        b.refilled_at = now;
                        if b.tokens >= 1.0 {
                            b.tokens -= 1.0;
                            return;
                        }
                        Duration::from_secs_f64((1.0 - b.tokens) / b.rate)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Graph asked to slow down: pause the tenant and lower its rate.
    pub fn throttled(&self, tenant: &str, retry_after: Option<Duration>) {
        let bucket = self.bucket(tenant);
        let mut b = bucket.lock().unwrap();
        let now = Instant::now();
        // One throttling episode lowers the rate once: 429s for requests already in flight,
        // or during the pause Graph asked for, are the same signal again.
        let same_episode =
            b.paused_until.is_some_and(|p| p > now) || b.lowered_at.is_some_and(|t| now.duration_since(t) < EPISODE);
        if !same_episode {
            b.rate = (b.rate / 2.0).max(MIN_RATE);
            b.lowered_at = Some(now);
            b.adjusted_at = now;
        }
        b.tokens = b.tokens.min(0.0);
        if let Some(after) = retry_after {
            let until = Instant::now() + after;
            b.paused_until = Some(b.paused_until.map_or(until, |p| p.max(until)));
        }
        self.metrics.tenant_rate(tenant, b.rate);
    }

    /// A request went through: recover the rate slowly.
    pub fn succeeded(&self, tenant: &str) {
        let bucket = self.bucket(tenant);
        let mut b = bucket.lock().unwrap();
        if b.rate >= self.limits.rate {
            return;
        }
        // Recover with time, not with the number of answers: +10% per second without throttling.
        let now = Instant::now();
        let since = now.duration_since(b.adjusted_at).as_secs_f64();
        if since >= 1.0 {
            b.rate = (b.rate * 1.1f64.powf(since)).min(self.limits.rate);
            b.adjusted_at = now;
            self.metrics.tenant_rate(tenant, b.rate);
        }
    }

    /// Forgets tenants nobody asked for within `idle`, unless they still remember throttling
    /// (a pause or a lowered rate): a retired tenant leaves no bucket and no metric series.
    pub fn sweep(&self, idle: Duration) {
        let now = Instant::now();
        let mut removed = Vec::new();
        self.buckets.lock().unwrap().retain(|tenant, bucket| {
            let b = bucket.lock().unwrap();
            let quiet = now.duration_since(b.used_at) >= idle;
            let calm = b.paused_until.is_none_or(|p| p <= now) && b.rate >= self.limits.rate;
            let keep = !(quiet && calm);
            if !keep {
                removed.push(tenant.clone());
            }
            keep
        });
        for tenant in removed {
            self.metrics.forget_tenant(&tenant);
        }
    }

    /// Tenants with a bucket, for `pwreset_cache_entries`.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rate currently allowed for `tenant`.
    pub fn current_rate(&self, tenant: &str) -> f64 {
        self.bucket(tenant).lock().unwrap().rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: f64) -> TenantLimiter {
        TenantLimiter::new(Limits { rate, burst }, Arc::new(Metrics::default()))
    }

    #[tokio::test(start_paused = true)]
    async fn holds_each_tenant_to_its_rate_after_the_burst() {
        let l = limiter(10.0, 5.0);
        let start = Instant::now();
        for _ in 0..25 {
            l.acquire("a").await;
        }
        // 5 at once, then 20 at 10/s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1990) && took < Duration::from_millis(2100), "{took:?}");
        // Another tenant has its own budget.
        let start = Instant::now();
        l.acquire("b").await;
        assert!(start.elapsed() < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn one_throttling_episode_lowers_the_rate_once_and_time_restores_it() {
        let l = limiter(10.0, 10.0);
        tokio::time::advance(Duration::from_secs(2)).await;
        l.throttled("a", Some(Duration::from_secs(3)));
        // More 429s from requests that were already in flight: the same episode.
        l.throttled("a", Some(Duration::from_secs(3)));
        l.throttled("a", None);
        assert_eq!(l.current_rate("a"), 5.0);
        let start = Instant::now();
        l.acquire("a").await;
        assert!(start.elapsed() >= Duration::from_secs(3), "the whole tenant waits for Retry-After");
        // A second episode later halves it again.
        tokio::time::advance(Duration::from_millis(100)).await;
        l.throttled("a", None);
        assert_eq!(l.current_rate("a"), 2.5);
        // Recovery is with time, a tenth per second, never above the configured rate.
        tokio::time::advance(Duration::from_secs(2)).await;
        l.succeeded("a");
        assert!((l.current_rate("a") - 2.5 * 1.1f64.powi(2)).abs() < 0.01, "{}", l.current_rate("a"));
        tokio::time::advance(Duration::from_secs(60)).await;
        l.succeeded("a");
        assert_eq!(l.current_rate("a"), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tenants_are_forgotten_unless_they_still_remember_throttling() {
        let l = limiter(10.0, 10.0);
        l.acquire("quiet").await;
        l.acquire("throttled").await;
        l.throttled("throttled", Some(Duration::from_secs(600)));
        l.acquire("busy").await;
        l.sweep(Duration::from_secs(60));
        assert_eq!(l.len(), 3, "nothing is idle yet");
        tokio::time::advance(Duration::from_secs(61)).await;
        l.acquire("busy").await;
        l.sweep(Duration::from_secs(60));
        let mut left: Vec<String> = l.buckets.lock().unwrap().keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["busy", "throttled"]);
    }
}
