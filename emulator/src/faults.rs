//! Global random faults, drawn from a seeded RNG so a run can be replayed:
//! the same seed and the same request sequence give the same faults.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::Faults;

/// Which route a request hit, for scoping faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultScope {
    OperationGet,
    ResetPassword,
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 `serviceNotAvailable`, with `Retry-After` when configured.
    Unavailable { retry_after_secs: Option<u64> },
    /// 429 `TooManyRequests` with `Retry-After`.
    Throttled { retry_after_secs: u64 },
    /// 200 with a truncated JSON body.
    Malformed,
    /// 502 with an HTML page, as a broken proxy would send.
    Html,
}

/// The outcome of one draw: an optional fault and an optional delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roll {
    pub fault: Option<Fault>,
    pub delay: Option<Duration>,
}

pub struct FaultState {
    config: Faults,
    rng: StdRng,
    seed: u64,
}

impl FaultState {
    /// Without a configured seed a random one is picked; `seed()` tells it so
    /// a surprising run can be replayed.
    pub fn new(config: Faults) -> Self {
        let seed = config.seed.unwrap_or_else(rand::random);
        FaultState { rng: StdRng::seed_from_u64(seed), seed, config }
    }

    pub fn config(&self) -> &Faults {
        &self.config
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Draws the faults for one request on `scope`.
    pub fn roll(&mut self, scope: FaultScope) -> Roll {
        let c = &self.config;
        let in_scope = match scope {
            FaultScope::OperationGet => true,
            FaultScope::ResetPassword => c.reset_password_faults,
            FaultScope::Token => c.token_endpoint_faults,
        };
        let any = c.rate503 + c.rate429 + c.rate_malformed + c.rate_html + c.rate_slow;
        // No draw at all when nothing can happen: keeps the sequence of a
        // seeded run independent of requests on fault-free routes.
        if !in_scope || any == 0.0 {
            return Roll::default();
        }
        let [min, max] = c.retry_after_seconds;
        let draw: f64 = self.rng.random();
        let (to_503, to_429) = (c.rate503, c.rate503 + c.rate429);
        let to_malformed = to_429 + c.rate_malformed;
        let fault = if draw < to_503 {
            let retry = c.retry_after_on503.then(|| self.rng.random_range(min..=max));
            Some(Fault::Unavailable { retry_after_secs: retry })
        } else if draw < to_429 {
            Some(Fault::Throttled { retry_after_secs: self.rng.random_range(min..=max) })
        } else if draw < to_malformed {
            Some(Fault::Malformed)
        } else if draw < to_malformed + c.rate_html {
            Some(Fault::Html)
        } else {
            None
        };
        let slow: f64 = self.rng.random();
        let delay = (slow < c.rate_slow).then(|| Duration::from_millis(c.slow_ms));
        Roll { fault, delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(f: impl FnOnce(&mut Faults)) -> FaultState {
        let mut c = Faults { seed: Some(42), ..Faults::default() };
        f(&mut c);
        FaultState::new(c)
    }

    #[test]
    fn same_seed_same_faults() {
        let set = |c: &mut Faults| {
            c.rate503 = 0.3;
            c.rate429 = 0.3;
            c.rate_slow = 0.5;
        };
        let mut a = faults(set);
        let mut b = faults(set);
        let ra: Vec<_> = (0..200).map(|_| a.roll(FaultScope::OperationGet)).collect();
        let rb: Vec<_> = (0..200).map(|_| b.roll(FaultScope::OperationGet)).collect();
        assert_eq!(ra, rb);
        assert!(ra.iter().any(|r| r.fault.is_none()));
        assert!(ra.iter().any(|r| matches!(r.fault, Some(Fault::Throttled { .. }))));
    }

    #[test]
    fn token_endpoint_is_spared_by_default() {
        let mut s = faults(|c| c.rate503 = 1.0);
        assert_eq!(s.roll(FaultScope::Token), Roll::default());
        assert_eq!(s.roll(FaultScope::ResetPassword), Roll::default());
        assert!(matches!(s.roll(FaultScope::OperationGet).fault, Some(Fault::Unavailable { retry_after_secs: None })));
        let mut s = faults(|c| {
            c.rate503 = 1.0;
            c.token_endpoint_faults = true;
        });
        assert!(s.roll(FaultScope::Token).fault.is_some());
    }

    #[test]
    fn retry_after_within_range() {
        let mut s = faults(|c| {
            c.rate429 = 1.0;
            c.retry_after_seconds = [2, 4];
        });
        for _ in 0..100 {
            match s.roll(FaultScope::OperationGet).fault {
                Some(Fault::Throttled { retry_after_secs }) => {
                    assert!((2..=4).contains(&retry_after_secs))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn rates_are_roughly_respected() {
        let mut s = faults(|c| {
            c.rate_html = 0.25;
            c.rate_malformed = 0.25;
        });
        let rolls: Vec<_> = (0..4000).map(|_| s.roll(FaultScope::OperationGet)).collect();
        let html = rolls.iter().filter(|r| r.fault == Some(Fault::Html)).count();
        let bad = rolls.iter().filter(|r| r.fault == Some(Fault::Malformed)).count();
        assert!((800..1200).contains(&html), "{html}");
        assert!((800..1200).contains(&bad), "{bad}");
    }
}
