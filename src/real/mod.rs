//! The real deployment (feature `real-network`): what drives the same
//! protocol components outside the simulator.

pub mod client_cmd;
pub mod config;
pub mod http;
pub mod http_client;
pub mod node_cmd;
pub mod runtime;
#[cfg(test)]
mod temp_dir;
#[cfg(test)]
mod test_cluster;
pub mod transport;
pub mod wal;
