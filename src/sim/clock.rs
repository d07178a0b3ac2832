//! Per-node local clocks: offset, drift and steps over global virtual time.

/// Local clocks start here so that negative offsets and backward steps never
/// go below zero.
pub const LOCAL_EPOCH_NS: i128 = 1_000_000 * 1_000_000_000;

/// local = epoch + offset + global * (1 + drift_ppm / 1e6).
///
/// A drift change keeps local time continuous (the offset absorbs it), as a
/// crystal warming up would; an offset change or a step jumps it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Clock {
    offset_ns: i128,
    drift_ppm: i64,
    /// Like `offset_ns` for the monotonic reading, which only drift changes.
    mono_offset_ns: i128,
}

impl Clock {
    /// A clock with the given offset and drift from t = 0.
    pub fn new(offset_ns: i64, drift_ppm: i64) -> Self {
        Clock {
            offset_ns: offset_ns as i128,
            drift_ppm,
            mono_offset_ns: 0,
        }
    }

    /// Local time at global time `global_ns`.
    #[inline]
    pub fn local(&self, global_ns: u64) -> u64 {
        let g = global_ns as i128;
        let v = LOCAL_EPOCH_NS + self.offset_ns + g + g * self.drift_ppm as i128 / 1_000_000;
        v.clamp(0, u64::MAX as i128) as u64
    }

    /// The monotonic clock at global time `global_ns`: it runs at the same
    /// (drifting) rate as the local clock but never jumps, as
    /// CLOCK_MONOTONIC does when the wall clock is stepped.
    #[inline]
    pub fn monotonic(&self, global_ns: u64) -> u64 {
        let g = global_ns as i128;
        let v = LOCAL_EPOCH_NS + self.mono_offset_ns + g + g * self.drift_ppm as i128 / 1_000_000;
        v.clamp(0, u64::MAX as i128) as u64
    }

    /// The earliest global time >= `now_ns` at which local time reaches `local_ns`.
    pub fn global_when(&self, local_ns: u64, now_ns: u64) -> u64 {
        if self.local(now_ns) >= local_ns {
            return now_ns;
        }
        let rate = 1_000_000 + self.drift_ppm as i128;
        let base = LOCAL_EPOCH_NS + self.offset_ns;
        let mut g = ((local_ns as i128 - base) * 1_000_000 / rate).max(now_ns as i128) as u64;
        // Integer rounding can leave us a nanosecond or two short.
        while self.local(g) < local_ns {
            g += 1;
        }
        g
    }

    /// Sets the offset so that local time jumps by `step_ns` now.
    pub fn step(&mut self, step_ns: i64) {
        self.offset_ns += step_ns as i128;
    }

    /// Sets the offset relative to the ideal clock (a jump).
    pub fn set_offset(&mut self, offset_ns: i64) {
        self.offset_ns = offset_ns as i128;
    }

    /// Changes the drift from `now_ns` on, keeping local time continuous.
    pub fn set_drift(&mut self, drift_ppm: i64, now_ns: u64) {
        let (before, mono_before) = (self.local(now_ns) as i128, self.monotonic(now_ns) as i128);
        self.drift_ppm = drift_ppm;
        self.offset_ns += before - self.local(now_ns) as i128;
        self.mono_offset_ns += mono_before - self.monotonic(now_ns) as i128;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_and_inverse_agree() {
        let c = Clock::new(-5_000_000, 50_000);
        for now in [0u64, 1_000, 3_000_000_000] {
            let target = c.local(now) + 100_000_000;
            let g = c.global_when(target, now);
            assert!(c.local(g) >= target);
            assert!(c.local(g - 1) < target);
            // 5% fast: 100ms local passes in about 95.2ms global.
            assert!((g - now).abs_diff(95_238_095) < 5);
        }
    }

    #[test]
    fn drift_change_is_continuous_and_steps_jump() {
        let mut c = Clock::new(0, 0);
        let before = c.local(1_000_000_000);
        c.set_drift(100_000, 1_000_000_000);
        assert_eq!(c.local(1_000_000_000), before);
        let mono = c.monotonic(1_000_000_000);
        c.step(-200_000_000);
        assert_eq!(c.local(1_000_000_000), before - 200_000_000);
        c.set_offset(5_000_000_000);
        assert_eq!(
            c.monotonic(1_000_000_000),
            mono,
            "steps and offsets never move the monotonic clock"
        );
    }
}
