//! The simulated world: virtual time, random streams, network, clocks,
//! storage and faults, driving the sans-IO components.
pub mod budget;
pub mod clock;
pub mod network;
pub mod queue;
pub mod rng;
pub mod storage;
pub mod timers;
pub mod world;
