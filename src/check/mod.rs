//! Correctness checkers: online invariants and offline history checkers.
pub mod cache_coherence;
pub mod cache_history;
pub mod history;
pub mod history_formats;
pub mod linearizability;
pub mod lock_history;
pub mod lock_safety;
pub mod queue_delivery;
pub mod raft_safety;
