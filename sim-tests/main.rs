//! Integration tests: scenario sweeps, determinism, planted bugs, bad input, checkers.
mod bad_input;
mod common;
mod determinism;
mod explore;
mod linearizability;
mod planted_bugs;
mod sweep;
