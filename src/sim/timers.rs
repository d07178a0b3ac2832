//! Per-endpoint named timers on the endpoint's local clock.
//!
//! Timers are lazy: pushing a deadline later (as every heartbeat does to the
//! election timer) does not touch the event queue; the queued event notices
//! the later deadline when it fires and re-queues itself. A generation
//! number invalidates queued events when a timer moves earlier, its node
//! crashes, or its clock changes; a cancelled timer simply has no deadline
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
    deadline_local: [Option<u64>; TIMER_KINDS],
    queued_at: [Option<u64>; TIMER_KINDS],
    generation: [u32; TIMER_KINDS],
}

/// Result of a queued timer event firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fired {
    /// Stale or cancelled: ignore.
    Ignore,
    /// Not yet due on the local clock: re-queued.
    Requeue(Schedule),
    /// Due: run the timer.
    Run,
}

impl TimerSlots {
    /// Sets `slot` to fire when the local clock advances by `after_ns`.
    pub fn set(&mut self, slot: usize, after_ns: u64, clock: &Clock, now_ns: u64) -> Schedule {
        let deadline = clock.local(now_ns).saturating_add(after_ns);
        self.deadline_local[slot] = Some(deadline);
        let at_ns = clock.global_when(deadline, now_ns);
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
        self.deadline_local[slot] = None;
    }

    /// Cancels every timer and invalidates queued events (crash).
    pub fn clear(&mut self) {
        for slot in 0..TIMER_KINDS {
            self.deadline_local[slot] = None;
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
        let Some(deadline) = self.deadline_local[slot] else {
            return Fired::Ignore;
        };
        if clock.local(now_ns) < deadline {
            let at_ns = clock.global_when(deadline, now_ns);
            return Fired::Requeue(self.queue(slot, at_ns));
        }
        self.deadline_local[slot] = None;
        Fired::Run
    }

    /// Recomputes every pending timer after the clock changed.
    pub fn reschedule(&mut self, clock: &Clock, now_ns: u64) -> Vec<Schedule> {
        let mut out = Vec::new();
        for slot in 0..TIMER_KINDS {
            if let Some(deadline) = self.deadline_local[slot] {
                let at_ns = clock.global_when(deadline, now_ns);
                out.push(self.queue(slot, at_ns));
            }
        }
        out
    }
}
