//! The simulated world: virtual time, network, clocks,
//! storage and faults, driving the sans-IO components.
pub mod budget;
pub mod clock;
pub mod network;
pub mod queue;
pub mod storage;
pub mod timers;
pub mod world;
