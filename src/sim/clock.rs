//! Per-node local clocks: offset, drift and steps over global virtual time.

/// Local clocks start here so that negative offsets and backward steps never
/// go below zero.
pub const LOCAL_EPOCH_NS: i128 = 1_000_000 * 1_000_000_000;

/// `g + trunc(g * drift_ppm / 1e6)`: global time `g` as a clock drifting by
/// `drift_ppm` counts it. In 64-bit arithmetic when the product fits (always
/// without drift, and for the first hours of a drifting run): 128-bit
/// division is a library call, and clocks are read at every event.
#[inline]
fn drifted(g: u64, drift_ppm: i64) -> i128 {
    let wide = g as i128;
    if drift_ppm == 0 {
        return wide;
    }
    match i64::try_from(g).ok().and_then(|g| g.checked_mul(drift_ppm)) {
        Some(product) => wide + (product / 1_000_000) as i128,
        None => wide + wide * drift_ppm as i128 / 1_000_000,
    }
}

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
        let v = LOCAL_EPOCH_NS + self.offset_ns + drifted(global_ns, self.drift_ppm);
        v.clamp(0, u64::MAX as i128) as u64
    }

    /// The monotonic clock at global time `global_ns`: it runs at the same
    /// (drifting) rate as the local clock but never jumps, as
    /// CLOCK_MONOTONIC does when the wall clock is stepped.
    #[inline]
    pub fn monotonic(&self, global_ns: u64) -> u64 {
        let v = LOCAL_EPOCH_NS + self.mono_offset_ns + drifted(global_ns, self.drift_ppm);
        v.clamp(0, u64::MAX as i128) as u64
    }

    /// The drift now in force, in parts per million.
    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }

    /// The earliest global time >= `now_ns` at which local time reaches
    /// `local_ns` (u64::MAX if it never does before then).
    pub fn global_when(&self, local_ns: u64, now_ns: u64) -> u64 {
        if self.local(now_ns) >= local_ns {
            return now_ns;
        }
        self.first_global_reaching(local_ns as i128 - LOCAL_EPOCH_NS - self.offset_ns, now_ns)
    }

    /// The earliest global time >= `now_ns` at which the monotonic clock
    /// reaches `mono_ns` (u64::MAX if it never does before then). Timers
    /// are armed on it, so a step of the local clock never moves them.
    pub fn global_when_monotonic(&self, mono_ns: u64, now_ns: u64) -> u64 {
        if self.monotonic(now_ns) >= mono_ns {
            return now_ns;
        }
        self.first_global_reaching(
            mono_ns as i128 - LOCAL_EPOCH_NS - self.mono_offset_ns,
            now_ns,
        )
    }

    /// The least global g >= `now_ns` with g + g * drift / 1e6 >= `target`
    /// (the division truncating, as `local` and `monotonic` do), computed
    /// exactly and saturating at u64::MAX; the caller has checked that
    /// `now_ns` falls short, so `target` >= 1.
    ///
    /// With rate r = 1e6 + drift > 0 and g >= 0, g + trunc(g * drift / 1e6)
    /// is floor(g * r / 1e6) for drift >= 0 and ceil(g * r / 1e6) for
    /// drift < 0, and each bound inverts in one division:
    /// floor(x) >= T iff x >= T, ceil(x) >= T iff x > T - 1.
    fn first_global_reaching(&self, target: i128, now_ns: u64) -> u64 {
        let rate = 1_000_000 + self.drift_ppm as i128;
        if rate <= 0 {
            return u64::MAX; // a clock that never advances (refused by the parser)
        }
        // The same quotients in 64-bit arithmetic when the operands fit
        // (about the first 2.5 simulated hours): 128-bit division is a
        // library call, and timers are armed all the time.
        let narrow = |numerator: i128| -> i128 {
            match (i64::try_from(numerator), i64::try_from(rate)) {
                (Ok(n), Ok(r)) => (n / r) as i128,
                _ => numerator / rate,
            }
        };
        let g = if self.drift_ppm >= 0 {
            // ceil(target * 1e6 / rate)
            narrow(target * 1_000_000 + rate - 1)
        } else {
            // floor((target - 1) * 1e6 / rate) + 1
            narrow((target - 1) * 1_000_000) + 1
        };
        g.max(now_ns as i128).min(u64::MAX as i128) as u64
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
    fn the_narrow_paths_compute_the_wide_formulas() {
        let wide = |g: u64, d: i64| g as i128 + g as i128 * d as i128 / 1_000_000;
        let drifts = [
            0,
            1,
            -1,
            7,
            -7,
            999,
            -999_999,
            100_000,
            -100_000,
            1_000_000,
            i64::MAX / 2,
        ];
        let mut g = 1u64;
        while g < u64::MAX / 3 {
            for &d in &drifts {
                for x in [g - 1, g, g + 1, g * 3 - 1] {
                    assert_eq!(drifted(x, d), wide(x, d), "g {x} drift {d}");
                }
            }
            g = g * 3 + 1;
        }
        for &d in &drifts {
            assert_eq!(drifted(u64::MAX, d), wide(u64::MAX, d));
        }
    }

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

    #[test]
    fn inverses_are_exact_for_every_rate() {
        // The least global time reaching the target: reached there, not one
        // nanosecond before (unless that is before now).
        for drift in [
            -999_999, -100_000, -20_000, -1, 0, 1, 500, 50_000, 100_000, 999_999,
        ] {
            for offset in [-3_000_000_000i64, 0, 7_123_456_789] {
                let mut c = Clock::new(offset, 0);
                c.set_drift(drift, 1_234_567);
                for now in [0u64, 999, 3_000_000_017] {
                    for after in [1u64, 2, 3, 999_999, 1_000_001, 150_000_000, 10_000_000_007] {
                        let target = c.monotonic(now) + after;
                        let g = c.global_when_monotonic(target, now);
                        assert!(c.monotonic(g) >= target, "drift {drift} after {after}");
                        assert!(g == now || c.monotonic(g - 1) < target, "drift {drift}");
                        let target = c.local(now) + after;
                        let g = c.global_when(target, now);
                        assert!(c.local(g) >= target, "drift {drift} after {after}");
                        assert!(g == now || c.local(g - 1) < target, "drift {drift}");
                    }
                }
            }
        }
    }

    #[test]
    fn inverses_saturate_instead_of_wrapping() {
        let now = 5_000_000_000;
        for drift in [-100_000, 0, 100_000] {
            let c = Clock::new(0, drift);
            for target in [u64::MAX, u64::MAX - 1, u64::MAX / 4 * 3] {
                let g = c.global_when_monotonic(target, now);
                assert!(g > now);
                assert!(g == u64::MAX || c.monotonic(g) >= target, "drift {drift}");
                assert!(c.monotonic(g - 1) < target, "drift {drift}");
            }
        }
        // A slow clock reaches the end of its time only after the end of
        // global time: never, not a wrapped early time.
        let slow = Clock::new(0, -100_000);
        assert_eq!(slow.global_when_monotonic(u64::MAX, now), u64::MAX);
        assert_eq!(slow.global_when(u64::MAX, now), u64::MAX);
        // A clock that never advances never reaches a later time.
        let stuck = Clock::new(0, -1_000_000);
        assert_eq!(
            stuck.global_when_monotonic(stuck.monotonic(0) + 1, 0),
            u64::MAX
        );
    }

    #[test]
    fn conversions_hold_at_the_extremes() {
        // Every drift from a stopped clock to one running twice as fast,
        // every offset an i64 holds, global times up to the end of u64:
        // readings clamp, never wrap, and never run backwards; inverses
        // land at or after now and never before the reading is reached.
        let drifts = [-1_000_000, -999_999, -100_000, -1, 0, 1, 100_000, 1_000_000];
        let offsets = [i64::MIN, -3_600_000_000_000, 0, 3_600_000_000_000, i64::MAX];
        let times = [0, 1, 1_000_000_000, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        for drift in drifts {
            for offset in offsets {
                let c = Clock::new(offset, drift);
                for pair in times.windows(2) {
                    assert!(c.local(pair[0]) <= c.local(pair[1]), "{drift} {offset}");
                    assert!(c.monotonic(pair[0]) <= c.monotonic(pair[1]), "{drift}");
                }
                for now in times {
                    for target in [0, 1, c.local(now), c.local(now).saturating_add(1), u64::MAX] {
                        let g = c.global_when(target, now);
                        assert!(g >= now, "{drift} {offset} {now} {target}");
                        assert!(g == u64::MAX || c.local(g) >= target, "{drift} {offset}");
                        let g = c.global_when_monotonic(target, now);
                        assert!(g >= now, "{drift} {offset} {now} {target}");
                        assert!(g == u64::MAX || c.monotonic(g) >= target, "{drift}");
                    }
                }
            }
        }
        // Steps and drift changes at the end of time keep readings in range.
        let mut c = Clock::new(i64::MAX, 1_000_000);
        c.step(i64::MAX);
        c.set_drift(-1_000_000, u64::MAX);
        assert_eq!(c.local(u64::MAX), u64::MAX);
        c.step(i64::MIN);
        c.step(i64::MIN);
        c.step(i64::MIN);
        assert_eq!(c.local(0), 0);
    }
}
