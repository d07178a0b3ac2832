//! The real deployment (feature `real-network`): what drives the same
//! protocol components outside the simulator.

pub mod config;
pub mod transport;
pub mod wal;
