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
// The redis crate runs on tokio itself, not madsim's; the madsim tests
// drive no queue.
#[cfg(not(madsim))]
pub mod redis_shards;
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

/// The real deployment's queues: named `0..QUEUES`, each split into
/// `PARTITIONS_PER_QUEUE` partitions placed on the Redis shards by the
/// consistent-hash ring (docs/queue.md), as in the simulator.
pub const QUEUES: u32 = 16;
pub const PARTITIONS_PER_QUEUE: u32 = 8;
/// How long a consumed message stays invisible before it is delivered again.
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// Deliveries before a message goes to its queue's dead letters.
pub const MAX_ATTEMPTS: u32 = 5;
/// Points per shard on the ring.
const RING_VNODES: u32 = 64;

/// The queue's setup for a cluster of `cluster_size` nodes over `shards`
/// Redis servers, and the placement a new cluster starts from (a node with
/// a snapshot keeps the replicated one).
pub fn queue_setup(
    cluster_size: usize,
    shards: usize,
) -> (
    crate::queue::router::QueueSetup,
    crate::queue::placement::Placement,
) {
    let setup = crate::queue::router::QueueSetup {
        shard_base: runtime::shard_base(cluster_size),
        visibility_ns: u64::try_from(VISIBILITY_TIMEOUT.as_nanos()).expect("seconds fit"),
        max_attempts: MAX_ATTEMPTS,
        ack_before_write: false,
        no_visibility_timeout: false,
        drop_inflight_on_rebalance: false,
    };
    let ids: Vec<_> = (0..shards).map(|k| k as _).collect();
    let placement =
        crate::queue::placement::Placement::new(&ids, RING_VNODES, QUEUES * PARTITIONS_PER_QUEUE);
    (setup, placement)
}
