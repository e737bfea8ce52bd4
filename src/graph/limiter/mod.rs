//! Client-side rate limits per tenant: Graph's throttling budget belongs to an app in a
//! tenant, so every resource of that tenant shares one token bucket here.
//!
//! Every 429 (or 503 with Retry-After) pauses the whole tenant for its Retry-After: that
//! is what Graph asked for, and it is always honoured.
//!
//! Lowering the *rate* is a separate decision, taken only when throttling depends on the
//! rate. A 429 alone does not say so: Graph also throttles for reasons that have nothing
//! to do with how fast this client sends (another app, a busy backend, the fault suite's
//! 10% 429s), and a limiter that halves on every such 429 falls to its floor and stays
//! there while Graph keeps answering 429s at the same share (it fell to 0.25 req/s of
//! 100 req/s in the fault suite). Real throttling is a token bucket per app and tenant:
//! sending faster than its refill raises the share of throttled answers, and what gets
//! through (the goodput) stays at the refill rate whatever the send rate.
//!
//! So answers are counted in windows (at least [`WINDOW_OUTCOMES`] answers and
//! [`WINDOW_MIN`]). A window whose throttled share is above what is known to be
//! rate-independent (nothing at first) by more than [`MARGIN`] plus a standard error, and
//! in which the rate rather than the tenant's demand set the pace ([`IDLE_SHARE`]), starts
//! a *probe*: the rate drops just below the window's goodput (what got through per second:
//! against a token bucket, at most its refill). The next, twice as long window judges the
//! probe, counting only answers from the first one that got through after the tenant's
//! pause and [`PROBE_SETTLE`] (earlier ones answer requests sent at the old rate, or met
//! a bucket still in debt from them): if throttling all but stopped (a share within half
//! [`MARGIN`]), it depended on the rate and the lower rate stays; if it fell clearly (three
//! standard errors) but not away, it depends on the rate and this one is still too fast:
//! another probe goes lower; if it did not fall, slowing down did not help, the rate goes
//! straight back to where it was and that share is remembered as rate-independent for
//! [`INDEPENDENT_FOR`], so the same faults do not start another probe before (only a
//! clearly higher share does). Time without a probe raises the rate
//! by a tenth per second back to the configured one: against a token bucket the rate
//! climbs past the refill, the share rises, a probe brings it back to the goodput, so it
//! stays around the refill (and above a rate a probe showed to hold, it climbs only by
//! [`SLOW_RECOVERY`] of it per second); with rate-independent faults it dips for one window
//! per [`INDEPENDENT_FOR`] at most.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;

/// Never below this, however often Graph throttles: Retry-After does the rest.
const MIN_RATE: f64 = 0.1;
/// A window closes after this many answers (succeeded or throttled)...
const WINDOW_OUTCOMES: u32 = 30;
/// ...and at least this long, so one burst of in-flight 429s is one sample.
const WINDOW_MIN: Duration = Duration::from_secs(1);
/// Throttled share above the known rate-independent one tolerated as noise, before the
/// standard error. Low on purpose: a needless probe costs one window at a lower rate.
const MARGIN: f64 = 0.05;
/// The probe goes a tenth below the goodput, so it is below a token bucket's refill.
const PROBE_BELOW_GOODPUT: f64 = 0.9;
/// Requests in flight when a probe starts (or the tenant's pause ends) are answered within
/// about this long; their answers say nothing about the probe's rate.
const PROBE_SETTLE: Duration = Duration::from_secs(2);
/// A share shown to be rate-independent is trusted this long, then probed again: a
/// bucket that paces the client through Retry-After alone looks rate-independent from a
/// rate that is not below its refill.
const INDEPENDENT_FOR: Duration = Duration::from_secs(300);
/// How long a rate a probe showed to hold slows the recovery above it.
const SUSTAINABLE_FOR: Duration = Duration::from_secs(300);
/// Recovery per second above a rate a probe showed to hold, as a share of that rate.
const SLOW_RECOVERY: f64 = 0.05;
/// Recovery per second without rate-dependent throttling.
const RECOVERY: f64 = 1.1;
/// A window starts no probe if at least this share of its requests found the tenant's
/// bucket full: the tenant sent what it had to send, below its rate, and lowering the rate
/// tests nothing that Retry-After does not already handle (a probe would only dip the rate
/// of a tenant with little left to do: it fell to 0.67/s of 20/s in the fault suite).
const IDLE_SHARE: f64 = 0.5;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests per second per tenant.
    pub rate: f64,
    /// Requests that may go at once after a quiet period.
    pub burst: f64,
}

/// Answers since `started`: the sample one rate decision is taken on.
struct Window {
    started: Instant,
    ok: u32,
    throttled: u32,
    /// Requests that found the bucket full: capacity the tenant's demand left unused.
    idle: u32,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window { started: now, ok: 0, throttled: 0, idle: 0 }
    }

    fn share(&self) -> f64 {
        let n = self.ok + self.throttled;
        if n == 0 { 0.0 } else { f64::from(self.throttled) / f64::from(n) }
    }

    /// Whether the tenant's demand, not the rate, set how fast requests went.
    fn demand_limited(&self) -> bool {
        f64::from(self.idle) >= IDLE_SHARE * f64::from(self.ok + self.throttled)
    }

    /// Standard error of the share, as a sample of the throttling probability.
    fn stderr(&self) -> f64 {
        let n = f64::from(self.ok + self.throttled).max(1.0);
        let share = self.share();
        (share * (1.0 - share) / n).sqrt()
    }
}

/// A rate lowered to test whether throttling depends on it.
struct Probe {
    /// The rate before, restored if the throttled share does not fall.
    from: f64,
    /// The throttled share at that rate, and its standard error.
    share: f64,
    stderr: f64,
    /// Answers are evidence only from the first one that got through after the tenant's
    /// pause and [`PROBE_SETTLE`]: those before answer requests sent at the old rate, or
    /// were refused while Graph's bucket was still in debt from them (throttled requests
    /// count against it).
    not_before: Instant,
    judging: bool,
}

struct Bucket {
    tokens: f64,
    rate: f64,
    refilled_at: Instant,
    paused_until: Option<Instant>,
    /// When the rate was last changed (lowered or raised).
    adjusted_at: Instant,
    /// When a request last asked for this tenant: idle tenants are forgotten.
    used_at: Instant,
    window: Window,
    probe: Option<Probe>,
    /// A throttled share shown not to fall with the rate (a probe that did not help), and
    /// when that was shown.
    independent: Option<(f64, Instant)>,
    /// The rate of a probe that lowered the throttled share, and when: above it the rate
    /// recovers slowly, so it lingers near a token bucket's refill.
    sustainable: Option<(f64, Instant)>,
}

impl Bucket {
    /// Closes the window once it is a sample, and judges or starts a probe (see the
    /// module doc). True when the rate changed.
    fn close_window(&mut self, now: Instant) -> bool {
        let w = &self.window;
        let elapsed = now.duration_since(w.started);
        // A probe's verdict needs a bigger sample: it should not be decided by noise.
        let needed = if self.probe.is_some() { 2 * WINDOW_OUTCOMES } else { WINDOW_OUTCOMES };
        if w.ok + w.throttled < needed || elapsed < WINDOW_MIN {
            return false;
        }
        let (share, stderr) = (w.share(), w.stderr());
        let goodput = f64::from(w.ok) / elapsed.as_secs_f64();
        let changed = match self.probe.take() {
            // Below a token bucket's refill throttling all but stops: it depended on the
            // rate, the lower rate stays. (Compared with MARGIN, not with the share that
            // started the probe: that one was picked for being high, so the next window
            // is lower by chance alone.)
            Some(_) if share <= MARGIN / 2.0 => {
                self.sustainable = Some((self.rate, now));
                // Recovery counts from the verdict, not from when the probe started.
                self.adjusted_at = now;
                false
            }
            // Clearly lower (by three standard errors of the difference), but not gone: it
            // depends on the rate, and this one is still above the budget. Lower again from
            // here (what gets through is near the refill now); should that not help, this
            // rate is where it goes back to.
            Some(probe) if probe.share - share > 3.0 * (probe.stderr.powi(2) + stderr.powi(2)).sqrt() => {
                let target = (goodput.min(self.rate) * PROBE_BELOW_GOODPUT).max(MIN_RATE);
                self.start_probe(share, stderr, target, now);
                true
            }
            // Slowing down did not help: back to the rate before, and this share is noise.
            Some(probe) => {
                self.independent = Some(((probe.share + share) / 2.0, now));
                self.rate = probe.from;
                true
            }
            None => {
                // More doubt (two standard errors) once a share is known to be noise.
                let tolerated = match self.independent {
                    Some((known, at)) if now.duration_since(at) < INDEPENDENT_FOR => known + MARGIN + 2.0 * stderr,
                    _ => MARGIN + stderr,
                };
                // What got through is below the refill while Graph's bucket is in debt (it
                // charges refused requests too); a rate a probe recently showed to hold is a
                // better floor. (If the budget shrank since, this probe fails to stop the
                // throttling and the next one goes lower.)
                let held = match self.sustainable {
                    Some((rate, at)) if now.duration_since(at) < SUSTAINABLE_FOR => rate,
                    _ => 0.0,
                };
                let target = (goodput.max(held) * PROBE_BELOW_GOODPUT).max(MIN_RATE);
                if share > tolerated && target < self.rate && !w.demand_limited() {
                    self.start_probe(share, stderr, target, now);
                    true
                } else {
                    false
                }
            }
        };
        if changed {
            self.adjusted_at = now;
        }
        self.window = Window::new(now);
        changed
    }

    fn start_probe(&mut self, share: f64, stderr: f64, target: f64, now: Instant) {
        let not_before = self.paused_until.map_or(now, |p| p.max(now)) + PROBE_SETTLE;
        self.probe = Some(Probe { from: self.rate, share, stderr, not_before, judging: false });
        self.rate = target;
    }

    /// Counts an answer in the current window, unless a probe is not judging yet.
    fn count(&mut self, throttled: bool, now: Instant) {
        if let Some(probe) = &mut self.probe
            && !probe.judging
        {
            if throttled || now < probe.not_before {
                return;
            }
            probe.judging = true;
            self.window = Window::new(now);
        }
        if throttled {
            self.window.throttled += 1;
        } else {
            self.window.ok += 1;
        }
    }
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
                let now = Instant::now();
                Arc::new(Mutex::new(Bucket {
                    tokens: self.limits.burst,
                    rate: self.limits.rate,
                    refilled_at: now,
                    paused_until: None,
                    adjusted_at: now,
                    used_at: now,
                    window: Window::new(now),
                    probe: None,
                    independent: None,
                    sustainable: None,
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
                        // Nothing accrues while paused: the first request after a pause is
                        // not followed by a burst (Graph counts throttled requests too).
                        if let Some(until) = b.paused_until.take() {
                            b.refilled_at = b.refilled_at.max(until);
                        }
                        let elapsed = now.duration_since(b.refilled_at).as_secs_f64();
                        b.tokens = (b.tokens + elapsed * b.rate).min(self.limits.burst);
                        b.refilled_at = now;
                        if b.tokens >= 1.0 {
                            if b.tokens >= self.limits.burst {
                                b.window.idle += 1;
                            }
                            b.tokens -= 1.0;
                            return;
                        }
                        // At least 1 ms: a shortfall of 1e-12 tokens (float rounding) would
                        // round to a zero sleep, and the loop would spin without the clock
                        // moving (for ever under a paused test clock).
                        Duration::from_secs_f64((1.0 - b.tokens) / b.rate).max(Duration::from_millis(1))
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Graph asked to slow down: pause the tenant for Retry-After; the rate drops only if
    /// the window shows the throttling depends on it (see the module doc).
    pub fn throttled(&self, tenant: &str, retry_after: Option<Duration>) {
        let bucket = self.bucket(tenant);
        let mut b = bucket.lock().unwrap();
        let now = Instant::now();
        // No burst straight after the pause: Graph counts throttled requests too.
        b.tokens = b.tokens.min(0.0);
        if let Some(after) = retry_after {
            let until = now + after;
            b.paused_until = Some(b.paused_until.map_or(until, |p| p.max(until)));
        }
        b.count(true, now);
        if b.close_window(now) {
            self.metrics.tenant_rate(tenant, b.rate);
        }
    }

    /// A request went through: count it, and recover the rate slowly.
    pub fn succeeded(&self, tenant: &str) {
        let bucket = self.bucket(tenant);
        let mut b = bucket.lock().unwrap();
        let now = Instant::now();
        b.count(false, now);
        let lowered = b.close_window(now);
        // Recover with time, not with the number of answers; a probe holds its rate until
        // its window is judged.
        let since = now.duration_since(b.adjusted_at).as_secs_f64();
        let raised = !lowered && b.probe.is_none() && b.rate < self.limits.rate && since >= 1.0;
        if raised {
            let raised = match b.sustainable {
                // Above a rate known to hold: a twentieth of it per second, so the next
                // window sees the share rise before the rate is far past the budget.
                Some((rate, at)) if b.rate >= rate && now.duration_since(at) < SUSTAINABLE_FOR => {
                    b.rate + rate * SLOW_RECOVERY * since
                }
                _ => b.rate * RECOVERY.powf(since),
            };
            b.rate = raised.min(self.limits.rate);
            b.adjusted_at = now;
        }
        if lowered || raised {
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
mod tests;
