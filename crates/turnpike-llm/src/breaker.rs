//! [`Breaker`]: a circuit breaker per deployment, plus the provider's own `Retry-After` cool-down.
//!
//! Guarantees: a deployment whose failure rate over the last `window` reaches `failure_rate` (with at
//! least `min_requests` outcomes, so one early failure cannot open it) is *open*: no request goes to it
//! for `cool_down`; then it is *half-open* and lets exactly one probe through (another only if that probe
//! reports nothing within `cool_down`, so a dropped stream cannot wedge it); the probe's success closes
//! it, its failure re-opens it. Independently, a `Retry-After` keeps the deployment out of picks until
//! that instant. All state sits behind one short, never-awaited mutex.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Tuning of a breaker; the defaults are LiteLLM's (cool-down 5 s, >= 50 % failures in a minute).
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    pub window: Duration,
    pub min_requests: u32,
    /// In `0.0..=1.0`.
    pub failure_rate: f64,
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(60),
            min_requests: 4,
            failure_rate: 0.5,
            cool_down: Duration::from_secs(5),
        }
    }
}

/// What a metrics gauge shows: 0 closed, 1 half-open, 2 open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// `(when, succeeded)` within the window, oldest first.
    outcomes: VecDeque<(Instant, bool)>,
    /// From a `Retry-After`: no picks before this instant.
    cooling_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        let inner = Inner { state: State::Closed, outcomes: VecDeque::new(), cooling_until: None };
        Breaker { cfg, inner: Mutex::new(inner) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock, and the state stays consistent at every statement.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a request go to this deployment now? `Err(t)`: not before `t`.
    pub fn try_acquire(&self, now: Instant) -> Result<(), Instant> {
        let mut inner = self.lock();
        let by_state = match inner.state {
            State::Closed => None,
            State::Open { until } => Some(until),
            State::HalfOpen { probe_since } => Some(probe_since + self.cfg.cool_down),
        }
        .filter(|until| *until > now);
        let cooling = inner.cooling_until.filter(|until| *until > now);
        // The later of the two: waiting for a Retry-After is pointless if the breaker stays open longer.
        if let Some(until) = by_state.max(cooling) {
            return Err(until);
        }
        if !matches!(inner.state, State::Closed) {
            inner.state = State::HalfOpen { probe_since: now };
        }
        Ok(())
    }

    /// Records one attempt's outcome.
    pub fn record(&self, now: Instant, ok: bool) {
        let mut inner = self.lock();
        match inner.state {
            State::HalfOpen { .. } => {
                inner.outcomes.clear();
                inner.state = if ok { State::Closed } else { State::Open { until: now + self.cfg.cool_down } };
            }
            // A late outcome of a request admitted before the breaker opened changes nothing.
            State::Open { .. } => {}
            State::Closed => {
                inner.outcomes.push_back((now, ok));
                while inner.outcomes.front().is_some_and(|(at, _)| now.duration_since(*at) > self.cfg.window) {
                    inner.outcomes.pop_front();
                }
                let total = inner.outcomes.len();
                let failures = inner.outcomes.iter().filter(|(_, ok)| !ok).count();
                if total >= self.cfg.min_requests as usize
                    && failures as f64 >= self.cfg.failure_rate * total as f64
                    && failures > 0
                {
                    inner.outcomes.clear();
                    inner.state = State::Open { until: now + self.cfg.cool_down };
                }
            }
        }
    }

    /// Honours a provider's `Retry-After`: no picks before `until` (the later of two hints wins).
    pub fn cool_until(&self, until: Instant) {
        let mut inner = self.lock();
        inner.cooling_until = Some(inner.cooling_until.map_or(until, |u| u.max(until)));
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.lock().state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            window: Duration::from_secs(10),
            min_requests: 4,
            failure_rate: 0.5,
            cool_down: Duration::from_secs(5),
        })
    }

    #[test]
    fn opens_on_failure_rate_then_half_opens_one_probe() {
        let b = breaker();
        let t0 = Instant::now();
        for ok in [true, false, true] {
            b.record(t0, ok);
        }
        assert_eq!(b.state(t0), BreakerState::Closed, "3 outcomes are below min_requests");
        b.record(t0, false); // 2 of 4 failed: 50 %
        assert_eq!(b.state(t0), BreakerState::Open);
        assert_eq!(b.try_acquire(t0 + Duration::from_secs(1)), Err(t0 + Duration::from_secs(5)));

        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.try_acquire(t1), Ok(()), "the probe");
        assert!(b.try_acquire(t1).is_err(), "only one probe at a time");
        b.record(t1, false);
        assert_eq!(b.state(t1), BreakerState::Open, "a failed probe re-opens");

        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(b.try_acquire(t2), Ok(()));
        b.record(t2, true);
        assert_eq!(b.state(t2), BreakerState::Closed);
        assert_eq!(b.try_acquire(t2), Ok(()));
    }

    #[test]
    fn old_failures_leave_the_window_and_a_silent_probe_expires() {
        let b = breaker();
        let t0 = Instant::now();
        b.record(t0, false);
        b.record(t0, false);
        let later = t0 + Duration::from_secs(11);
        b.record(later, true);
        b.record(later, false);
        assert_eq!(b.state(later), BreakerState::Closed, "only 2 outcomes in the window");

        for _ in 0..3 {
            b.record(later, false);
        }
        let probe = later + Duration::from_secs(5);
        assert_eq!(b.try_acquire(probe), Ok(()));
        // The probe's stream was dropped without an outcome: another probe after a cool-down.
        assert_eq!(b.try_acquire(probe + Duration::from_secs(5)), Ok(()));
    }

    #[test]
    fn retry_after_keeps_a_closed_breaker_out_of_picks() {
        let b = breaker();
        let t0 = Instant::now();
        b.cool_until(t0 + Duration::from_secs(2));
        b.cool_until(t0 + Duration::from_secs(1));
        assert_eq!(b.try_acquire(t0), Err(t0 + Duration::from_secs(2)));
        assert_eq!(b.try_acquire(t0 + Duration::from_secs(2)), Ok(()));
        assert_eq!(b.state(t0), BreakerState::Closed);

        // Open for longer than the Retry-After: the answer is the breaker's, not the shorter hint.
        for _ in 0..4 {
            b.record(t0, false);
        }
        b.cool_until(t0 + Duration::from_secs(1));
        assert_eq!(b.try_acquire(t0), Err(t0 + Duration::from_secs(5)));
    }
}
