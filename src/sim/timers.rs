//! Per-endpoint named timers on the endpoint's monotonic clock.
//!
//! As a real runtime arms timers on CLOCK_MONOTONIC, a deadline is kept in
//! monotonic time: it runs at the node's (drifting) rate but a step of the
//! wall clock never moves it, so a clock step neither fires an election
//! timeout early nor holds one back.
//!
//! Timers are lazy: pushing a deadline later (as every heartbeat does to the
//! election timer) does not touch the event queue; the queued event notices
//! the later deadline when it fires and re-queues itself. A generation
//! number invalidates queued events when a timer moves earlier, its node
//! crashes, or its clock's rate changes; a cancelled timer simply has no deadline
//! when its queued event fires.

use super::clock::Clock;
use crate::env::TIMER_KINDS;

/// What the world must do after a timer operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Nothing to queue.
    None,
    /// Queue a timer event for `slot` with `generation` at global time `at_ns`.
    At {
        slot: usize,
        generation: u32,
        at_ns: u64,
    },
}

/// Timer state of one endpoint.
#[derive(Clone, Debug, Default)]
pub struct TimerSlots {
    deadline_mono: [Option<u64>; TIMER_KINDS],
    queued_at: [Option<u64>; TIMER_KINDS],
    generation: [u32; TIMER_KINDS],
}

/// Result of a queued timer event firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// Stale or cancelled: ignore.
    Ignore,
    /// Not yet due on the monotonic clock: re-queued.
    Requeue(Schedule),
    /// Due: run the timer.
    Run,
}

impl TimerSlots {
    /// Sets `slot` to fire when the monotonic clock advances by `after_ns`.
    pub fn set(&mut self, slot: usize, after_ns: u64, clock: &Clock, now_ns: u64) -> Schedule {
        let deadline = clock.monotonic(now_ns).saturating_add(after_ns);
        self.deadline_mono[slot] = Some(deadline);
        let at_ns = clock.global_when_monotonic(deadline, now_ns);
        match self.queued_at[slot] {
            Some(q) if q <= at_ns => Schedule::None,
            _ => self.queue(slot, at_ns),
        }
    }

    fn queue(&mut self, slot: usize, at_ns: u64) -> Schedule {
        self.generation[slot] = self.generation[slot].wrapping_add(1);
        self.queued_at[slot] = Some(at_ns);
        Schedule::At {
            slot,
            generation: self.generation[slot],
            at_ns,
        }
    }

    /// Cancels `slot`.
    pub fn cancel(&mut self, slot: usize) {
        self.deadline_mono[slot] = None;
    }

    /// Cancels every timer and invalidates queued events (crash).
    pub fn clear(&mut self) {
        for slot in 0..TIMER_KINDS {
            self.deadline_mono[slot] = None;
            self.queued_at[slot] = None;
            self.generation[slot] = self.generation[slot].wrapping_add(1);
        }
    }

    /// A queued event for (`slot`, `generation`) fired at `now_ns`.
    pub fn fire(&mut self, slot: usize, generation: u32, clock: &Clock, now_ns: u64) -> Fired {
        if generation != self.generation[slot] {
            return Fired::Ignore;
        }
        self.queued_at[slot] = None;
        let Some(deadline) = self.deadline_mono[slot] else {
            return Fired::Ignore;
        };
        if clock.monotonic(now_ns) < deadline {
            let at_ns = clock.global_when_monotonic(deadline, now_ns);
            return Fired::Requeue(self.queue(slot, at_ns));
        }
        self.deadline_mono[slot] = None;
        Fired::Run
    }

    /// Recomputes every pending timer after the clock's rate changed (a
    /// step or an offset leaves the monotonic clock, and so every queued
    /// time, as it was).
    pub fn reschedule(&mut self, clock: &Clock, now_ns: u64) -> Vec<Schedule> {
        let mut out = Vec::new();
        for slot in 0..TIMER_KINDS {
            if let Some(deadline) = self.deadline_mono[slot] {
                let at_ns = clock.global_when_monotonic(deadline, now_ns);
                out.push(self.queue(slot, at_ns));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: Schedule) -> u64 {
        match s {
            Schedule::At { at_ns, .. } => at_ns,
            Schedule::None => panic!("nothing queued"),
        }
    }

    #[test]
    fn a_step_of_the_wall_clock_moves_no_timer() {
        for step in [-2_000_000_000i64, 2_000_000_000] {
            let mut clock = Clock::new(0, 20_000);
            let mut slots = TimerSlots::default();
            let queued = at(slots.set(0, 300_000_000, &clock, 1_000_000_000));
            clock.step(step);
            // Neither early (forward step) nor late (backward step).
            let generation = slots.generation[0];
            assert_eq!(
                slots.fire(0, generation, &clock, queued - 1),
                Fired::Requeue(Schedule::At {
                    slot: 0,
                    generation: generation + 1,
                    at_ns: queued
                })
            );
            assert_eq!(
                slots.fire(0, slots.generation[0], &clock, queued),
                Fired::Run
            );
        }
    }

    #[test]
    fn a_rate_change_moves_the_deadline_with_it() {
        let mut clock = Clock::new(0, 0);
        let mut slots = TimerSlots::default();
        let queued = at(slots.set(0, 100_000_000, &clock, 0));
        assert_eq!(queued, 100_000_000);
        clock.set_drift(100_000, 50_000_000);
        // 50 ms left at 10% fast: 45.45 ms of global time.
        let moved = at(slots.reschedule(&clock, 50_000_000)[0]);
        assert_eq!(moved, 50_000_000 + 45_454_546);
        assert_eq!(
            slots.fire(0, slots.generation[0], &clock, moved),
            Fired::Run
        );
    }

    #[test]
    fn the_longest_timer_saturates() {
        let clock = Clock::new(0, -100_000);
        let mut slots = TimerSlots::default();
        assert_eq!(at(slots.set(1, u64::MAX, &clock, 7)), u64::MAX);
    }
}
