//! Integration tests: scenario sweeps, determinism, planted bugs, bad input, checkers.
mod bad_input;
mod budgets;
mod cache;
mod clocks;
mod common;
mod determinism;
mod explore;
mod linearizability;
mod locks;
mod output_errors;
mod planted_bugs;
mod queue;
mod sweep;
mod teaching;
mod trace_merge;
