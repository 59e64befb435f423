//! A circuit breaker per model: after `failures` consecutive failed calls the model is skipped
//! (its fallback answers, or the grading fails fast) for `cooldown`; then one probe call is let
//! through (half-open). The probe's success closes the breaker, its failure opens it again.
//!
//! Why: a provider outage otherwise costs every grading the full retry budget (seconds of
//! backoff per sample) before the fallback is tried, and hammers a struggling provider.
//! Time is passed in (`now`) so the state machine is tested without sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::{BreakerGauge, JudgeMetrics};

/// When to open and how long to stay open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failed calls (after retries) that open the breaker; 0 disables it.
    pub failures: u32,
    /// How long an open breaker refuses calls before one half-open probe.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        consecutive: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight since `since`; everyone else is refused.
    HalfOpen {
        since: Instant,
    },
}

/// What [`Breaker::allow`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: call normally.
    Call,
    /// Half-open: this call is the probe.
    Probe,
    /// Open (or a probe is in flight): do not call; retry after the given time.
    Refused { retry_in: Duration },
}

impl Permit {
    pub fn allowed(self) -> bool {
        !matches!(self, Permit::Refused { .. })
    }
}

/// The breaker of one model. Cheap to share: one small mutex, held for a few instructions.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    settings: BreakerSettings,
    state: Mutex<State>,
    metrics: Arc<JudgeMetrics>,
}

impl Breaker {
    pub fn new(name: &str, settings: BreakerSettings, metrics: Arc<JudgeMetrics>) -> Breaker {
        metrics.breaker(name, BreakerGauge::Closed);
        Breaker {
            name: name.to_string(),
            settings,
            state: Mutex::new(State::Closed { consecutive: 0 }),
            metrics,
        }
    }

    fn set(&self, state: &mut State, new: State) {
        *state = new;
        self.metrics.breaker(
            &self.name,
            match new {
                State::Closed { .. } => BreakerGauge::Closed,
                State::HalfOpen { .. } => BreakerGauge::HalfOpen,
                State::Open { .. } => BreakerGauge::Open,
            },
        );
    }

    /// May a call go to this model now? An open breaker past its cool-down lets exactly one
    /// probe through. A probe that never reports back (its grading was cancelled) is given
    /// up after another cool-down, so a lost probe cannot wedge the breaker half-open.
    pub fn allow(&self, now: Instant) -> Permit {
        if self.settings.failures == 0 {
            return Permit::Call;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Closed { .. } => Permit::Call,
            State::Open { until } if now < until => Permit::Refused {
                retry_in: until - now,
            },
            State::Open { .. } => {
                self.set(&mut state, State::HalfOpen { since: now });
                Permit::Probe
            }
            State::HalfOpen { since } if now.duration_since(since) >= self.settings.cooldown => {
                self.set(&mut state, State::HalfOpen { since: now });
                Permit::Probe
            }
            State::HalfOpen { since } => Permit::Refused {
                retry_in: self
                    .settings
                    .cooldown
                    .saturating_sub(now.duration_since(since)),
            },
        }
    }

    pub fn on_success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *state != (State::Closed { consecutive: 0 }) {
            self.set(&mut state, State::Closed { consecutive: 0 });
        }
    }

    /// A failed call (after its retries). Opens the breaker at the threshold, and at once
    /// when the failed call was the half-open probe.
    pub fn on_failure(&self, now: Instant) {
        if self.settings.failures == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let open = State::Open {
            until: now + self.settings.cooldown,
        };
        match *state {
            State::Closed { consecutive } => {
                let consecutive = consecutive + 1;
                if consecutive >= self.settings.failures {
                    tracing::warn!(model = %self.name, failures = consecutive, cooldown_s = self.settings.cooldown.as_secs_f64(), "circuit breaker opened");
                    self.set(&mut state, open);
                } else {
                    *state = State::Closed { consecutive };
                }
            }
            State::HalfOpen { .. } => {
                tracing::warn!(model = %self.name, "half-open probe failed; circuit breaker open again");
                self.set(&mut state, open);
            }
            State::Open { .. } => {}
        }
    }

    /// `closed`, `half_open` or `open`, for messages and tests.
    pub fn state_name(&self, now: Instant) -> &'static str {
        match *self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Closed { .. } => "closed",
            State::Open { until } if now < until => "open",
            State::Open { .. } | State::HalfOpen { .. } => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32) -> Breaker {
        Breaker::new(
            "m",
            BreakerSettings {
                failures,
                cooldown: Duration::from_secs(10),
            },
            Arc::new(JudgeMetrics::new()),
        )
    }

    #[test]
    fn opens_after_n_consecutive_failures_and_a_success_resets_the_count() {
        let b = breaker(3);
        let t = Instant::now();
        b.on_failure(t);
        b.on_failure(t);
        b.on_success();
        b.on_failure(t);
        b.on_failure(t);
        assert_eq!(b.allow(t), Permit::Call, "2 consecutive < 3");
        b.on_failure(t);
        assert_eq!(
            b.allow(t + Duration::from_secs(4)),
            Permit::Refused {
                retry_in: Duration::from_secs(6)
            }
        );
        assert_eq!(b.state_name(t), "open");
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_result_decides() {
        let b = breaker(1);
        let t = Instant::now();
        b.on_failure(t);
        let later = t + Duration::from_secs(10);
        assert_eq!(b.allow(later), Permit::Probe);
        assert!(!b.allow(later).allowed(), "only one probe at a time");
        b.on_failure(later);
        assert!(!b.allow(later + Duration::from_secs(9)).allowed());
        let again = later + Duration::from_secs(10);
        assert_eq!(b.allow(again), Permit::Probe);
        b.on_success();
        assert_eq!(b.allow(again), Permit::Call);
        assert_eq!(b.state_name(again), "closed");
    }

    #[test]
    fn a_lost_probe_is_replaced_after_a_cool_down() {
        let b = breaker(1);
        let t = Instant::now();
        b.on_failure(t);
        assert_eq!(b.allow(t + Duration::from_secs(10)), Permit::Probe);
        // The probe's grading was cancelled: no report. Another cool-down later, a new probe.
        assert!(!b.allow(t + Duration::from_secs(15)).allowed());
        assert_eq!(b.allow(t + Duration::from_secs(20)), Permit::Probe);
    }

    #[test]
    fn zero_failures_disables_the_breaker() {
        let b = breaker(0);
        let t = Instant::now();
        for _ in 0..100 {
            b.on_failure(t);
        }
        assert_eq!(b.allow(t), Permit::Call);
    }
}
