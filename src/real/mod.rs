//! The real deployment (feature `real-network`): what drives the same
//! protocol components outside the simulator.

pub mod runtime;
#[cfg(test)]
mod temp_dir;
pub mod wal;
