//! Reconnection delays: exponential backoff with jitter.
//!
//! The step doubles from `min` after every failed attempt and stops at
//! `max`; each wait is drawn uniformly between half the step and the whole
//! step ("equal jitter"), so nodes that lost a peer at the same moment do
//! not redial it in lockstep, and no wait is shorter than half of `min`.

use std::time::Duration;

use crate::rng::Rng;

/// One peer's reconnection delays.
#[derive(Clone, Debug)]
pub struct Backoff {
    min_ns: u64,
    max_ns: u64,
    step_ns: u64,
}

impl Backoff {
    /// Delays from `min` up to at most `max` (a `max` below `min` is taken as `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        let min_ns = duration_ns(min).max(1);
        let max_ns = duration_ns(max).max(min_ns);
        Backoff {
            min_ns,
            max_ns,
            step_ns: min_ns,
        }
    }

    /// A connection succeeded: the next failure waits about `min` again.
    pub fn reset(&mut self) {
        self.step_ns = self.min_ns;
    }

    /// The wait before the next attempt, in [step/2, step], and doubles the step.
    pub fn next(&mut self, rng: &mut Rng) -> Duration {
        let step = self.step_ns;
        self.step_ns = step.saturating_mul(2).min(self.max_ns);
        Duration::from_nanos(rng.between(step / 2, step))
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Purpose;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter_and_reset() {
        let (min, max) = (Duration::from_millis(50), Duration::from_secs(2));
        let mut b = Backoff::new(min, max);
        let mut rng = Rng::stream(1, Purpose::Network, 0);
        let mut step = min;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let w = b.next(&mut rng);
            assert!(
                w >= step / 2 && w <= step,
                "{w:?} outside [{:?}, {step:?}]",
                step / 2
            );
            waits.push(w);
            step = (step * 2).min(max);
        }
        assert!(waits.iter().all(|w| *w <= max));
        assert!(waits[11] >= max / 2, "the step never reached the cap");
        // Jitter: the capped waits are not all equal.
        assert!(waits[8..].windows(2).any(|p| p[0] != p[1]));
        b.reset();
        assert!(b.next(&mut rng) <= min);
    }

    #[test]
    fn degenerate_bounds_still_wait_and_stay_capped() {
        let mut rng = Rng::stream(2, Purpose::Network, 0);
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(b.next(&mut rng) <= Duration::from_nanos(1));
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_millis(1));
        for _ in 0..4 {
            assert!(b.next(&mut rng) <= Duration::from_secs(1));
        }
    }
}
