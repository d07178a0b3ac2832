//! The seam between protocol code and the world that runs it.
//!
//! Components are plain structs: no I/O, no clock reads, no randomness of
//! their own. They ask an `Env` for everything, so the simulator and a real
//! runtime can drive the same code.

use crate::node::Msg;
use crate::rng::Rng;
use crate::storage::Storage;
use crate::trace::{NodeId, TraceEvent};

/// Named timers; setting one replaces its previous deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    Election = 0,
    Heartbeat = 1,
    ClientRetry = 2,
    ClientNext = 3,
    /// The leader's periodic look at leases and wait timeouts.
    LeaseCheck = 4,
    /// A Redis shard's once-a-second fsync (`appendfsync everysec`).
    Fsync = 5,
    /// The leader's look at partitions being moved between shards.
    Rebalance = 6,
    /// A cache operation's deadline.
    CacheOp = 7,
    /// The bus arbiter's deadline for the transaction on the bus.
    BusTxn = 8,
    /// A cache resends dirty data memory has not yet confirmed.
    FlushRetry = 9,
}

/// Number of timer slots per endpoint.
pub const TIMER_KINDS: usize = 10;

impl Timer {
    /// The timer for a slot index.
    pub fn from_index(i: usize) -> Timer {
        [
            Timer::Election,
            Timer::Heartbeat,
            Timer::ClientRetry,
            Timer::ClientNext,
            Timer::LeaseCheck,
            Timer::Fsync,
            Timer::Rebalance,
            Timer::CacheOp,
            Timer::BusTxn,
            Timer::FlushRetry,
        ][i]
    }
}

/// Everything a component may ask of its surroundings.
///
/// The storage is an associated type, not `&mut dyn Storage`: every
/// component takes `impl Env`, so each storage write compiles to a direct,
/// inlinable call into the one implementation the runtime chose, and the
/// simulator's hot path (a write per appended entry, a sync per input) pays
/// no indirect call and no branch on which storage it is.
pub trait Env {
    /// Where this endpoint's durable writes go.
    type Storage: Storage;
    /// This endpoint's local (wall) clock, in nanoseconds (skewed, and
    /// stepped by faults, in simulation). Read it for what really is wall
    /// time, such as a workload's start and stop; measure durations on
    /// `monotonic`.
    fn now(&self) -> u64;
    /// This endpoint's monotonic clock: drifts with `now` but never steps.
    /// Durations that must not jump, such as leases, are measured on it.
    fn monotonic(&self) -> u64;
    /// Sends a message; delivery is up to the network.
    fn send(&mut self, to: NodeId, msg: Msg);
    /// Fires `timer` once the monotonic clock has advanced by `after_ns`:
    /// timers drift with the node's clock rate but a step of `now` never
    /// moves them, as timers armed on CLOCK_MONOTONIC behave.
    fn set_timer(&mut self, timer: Timer, after_ns: u64);
    /// Cancels `timer` if set.
    fn cancel_timer(&mut self, timer: Timer);
    /// This endpoint's own deterministic random stream.
    fn rng(&mut self) -> &mut Rng;
    /// Durable storage (nodes only): the simulator's model or the disk.
    fn storage(&mut self) -> &mut Self::Storage;
    /// Records a trace event for this endpoint.
    fn trace(&mut self, ev: TraceEvent);
}
