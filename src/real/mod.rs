//! The real deployment (feature `real-network`): what drives the same
//! protocol components outside the simulator.

pub mod client_cmd;
pub mod config;
// The HTTP API runs on axum, which binds tokio's own sockets, and the node
// command builds tokio's runtime: neither exists under madsim, whose tests
// drive the runtime and transport below directly (madsim-tests/).
#[cfg(not(madsim))]
pub mod http;
pub mod http_client;
pub mod metrics;
#[cfg(not(madsim))]
pub mod node_cmd;
pub mod runtime;
#[cfg(test)]
mod temp_dir;
#[cfg(test)]
mod test_cluster;
pub mod transport;
pub mod wal;
