//! Correctness checkers: online invariants and offline history checkers.
pub mod cache_coherence;
pub mod cache_history;
pub mod history;
pub mod history_formats;
pub mod linearizability;
pub mod lock_history;
pub mod lock_safety;
mod message_table;
pub mod queue_delivery;
pub mod raft_safety;
pub mod raft_trace;
pub mod unique_register;

/// A latency summary in simulated nanoseconds: how many samples, their
/// median, 99th percentile (nearest rank) and maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    pub count: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl Latency {
    /// The figures of `samples` (all zero when empty).
    pub fn of(samples: &[u64]) -> Self {
        let mut s = samples.to_vec();
        s.sort_unstable();
        let pick = |q: f64| {
            s.get(((s.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        Latency {
            count: s.len() as u64,
            p50_ns: pick(0.5),
            p99_ns: pick(0.99),
            max_ns: s.last().copied().unwrap_or(0),
        }
    }
}
