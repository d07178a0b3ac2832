//! distsync: a deterministic simulation testbed for distributed synchronization.
//!
//! A seeded discrete-event simulator runs sans-IO protocol components (Raft
//! and the key-value store it replicates) under injected faults, checks
//! their safety after every event, and records a replayable trace.
pub mod bench;
pub mod bugs;
pub mod cache;
pub mod check;
pub mod env;
pub mod explore;
pub mod fxmap;
pub mod input;
pub mod kv;
pub mod lock;
pub mod node;
pub mod queue;
pub mod raft;
#[cfg(feature = "real-network")]
pub mod real;
pub mod redis;
pub mod replicated;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod sim;
pub mod step;
pub mod storage;
pub mod trace;
pub mod trace_merge;
