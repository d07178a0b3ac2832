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
// Real redis-server processes, which madsim's simulated world has no room for.
#[cfg(not(madsim))]
pub mod node_cmd;
#[cfg(all(test, not(madsim)))]
mod redis_diff;
pub mod runtime;
#[cfg(test)]
mod temp_dir;
#[cfg(test)]
mod test_cluster;
pub mod transport;
pub mod wal;

use std::time::Duration;

/// The longest an API lock acquire may wait in its lock's queue.
pub const MAX_LOCK_WAIT: Duration = Duration::from_secs(60);

/// The lock service's settings in the real deployment. A caller's own wait
/// (at most `MAX_LOCK_WAIT`) is cancelled by its node; the leader's wait
/// timeout is only the backstop for a waiter whose node went down with it,
/// so it is a little longer than any caller's wait.
pub fn lock_config() -> crate::scenario::LockConfig {
    const BACKSTOP_SLACK: Duration = Duration::from_secs(5);
    crate::scenario::LockConfig {
        wait_ns: u64::try_from((MAX_LOCK_WAIT + BACKSTOP_SLACK).as_nanos())
            .expect("a wait of seconds fits in u64 nanoseconds"),
        ..Default::default()
    }
}
