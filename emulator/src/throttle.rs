//! Per-tenant token bucket, the way Graph's identity limits work.
//!
//! Every request costs one unit, **including throttled ones** (the docs:
//! "throttled requests still count against the budget"), so a client that
//! retries without waiting only digs deeper. The debt is capped at one
//! bucket's worth so a storm cannot lock a tenant out for ever.

use std::time::Instant;

use super::config::ThrottleConfig;

/// `x-ms-throttle-limit-percentage` is only sent above this share of the limit.
const REPORT_ABOVE: f64 = 0.8;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    config: ThrottleConfig,
    /// May go negative (debt from throttled requests), down to `-capacity`.
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// `usage`: share of the limit in use, when above 80% (header value).
    Allowed {
        usage: Option<f64>,
    },
    Throttled {
        retry_after_secs: u64,
        usage: f64,
    },
}

impl TokenBucket {
    pub fn new(config: ThrottleConfig, now: Instant) -> Self {
        TokenBucket { config, tokens: config.capacity, last: now }
    }

    pub fn config(&self) -> ThrottleConfig {
        self.config
    }

    /// Charges one request made at `now`.
    pub fn take(&mut self, now: Instant) -> Decision {
        let ThrottleConfig { capacity, refill_per_second } = self.config;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * refill_per_second).min(capacity);

        let allowed = self.tokens >= 1.0;
        self.tokens = (self.tokens - 1.0).max(-capacity);
        // Used share of the limit: 1.0 when empty, up to 2.0 deep in debt;
        // Graph documents the header range as 0.8..1.8.
        let usage = ((capacity - self.tokens) / capacity).clamp(0.0, 1.8);
        if allowed {
            Decision::Allowed { usage: (usage > REPORT_ABOVE).then_some(usage) }
        } else {
            // Time until one whole token is back, rounded up, at least 1 s.
            let missing = 1.0 - self.tokens;
            let secs = (missing / refill_per_second).ceil().max(1.0);
            Decision::Throttled { retry_after_secs: secs.min(u64::MAX as f64) as u64, usage }
        }
    }
}

/// Header text for a usage share, e.g. `0.85`.
pub fn usage_header(usage: f64) -> String {
    format!("{usage:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bucket(capacity: f64, refill: f64) -> (TokenBucket, Instant) {
        let now = Instant::now();
        let cfg = ThrottleConfig { capacity, refill_per_second: refill };
        (TokenBucket::new(cfg, now), now)
    }

    #[test]
    fn allows_capacity_then_throttles() {
        let (mut b, t0) = bucket(3.0, 1.0);
        for _ in 0..3 {
            assert!(matches!(b.take(t0), Decision::Allowed { .. }));
        }
        match b.take(t0) {
            Decision::Throttled { retry_after_secs, .. } => assert_eq!(retry_after_secs, 2), // 1 for the debt, 1 for a token
            other => panic!("expected throttling, got {other:?}"),
        }
    }

    #[test]
    fn throttled_requests_count() {
        let (mut b, t0) = bucket(2.0, 1.0);
        b.take(t0);
        b.take(t0);
        let first = b.take(t0);
        let second = b.take(t0);
        let secs = |d: Decision| match d {
            Decision::Throttled { retry_after_secs, .. } => retry_after_secs,
            other => panic!("{other:?}"),
        };
        assert!(secs(second) > secs(first));
        // Debt is capped at one bucket: 2 (debt) + 1 = 3 s.
        for _ in 0..100 {
            b.take(t0);
        }
        assert_eq!(secs(b.take(t0)), 3);
    }

    #[test]
    fn refills_over_time() {
        let (mut b, t0) = bucket(1.0, 2.0);
        assert!(matches!(b.take(t0), Decision::Allowed { .. }));
        assert!(matches!(b.take(t0), Decision::Throttled { .. }));
        // Debt of 1 → need 2 tokens at 2/s → 1 s.
        assert!(matches!(b.take(t0 + Duration::from_millis(400)), Decision::Throttled { .. }));
        assert!(matches!(b.take(t0 + Duration::from_secs(5)), Decision::Allowed { .. }));
    }

    #[test]
    fn usage_reported_above_80_percent() {
        let (mut b, t0) = bucket(10.0, 1.0);
        let mut reported = Vec::new();
        for _ in 0..10 {
            if let Decision::Allowed { usage } = b.take(t0) {
                reported.push(usage);
            }
        }
        assert!(reported[..8].iter().all(Option::is_none));
        assert_eq!(reported[8].map(usage_header).as_deref(), Some("0.90"));
        assert_eq!(reported[9].map(usage_header).as_deref(), Some("1.00"));
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let (mut b, t0) = bucket(1.0, 1000.0);
        b.take(t0);
        match b.take(t0) {
            Decision::Throttled { retry_after_secs, .. } => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
    }
}
