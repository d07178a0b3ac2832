//! Integration tests: scenario sweeps, determinism, planted bugs, checkers.
mod linearizability;
