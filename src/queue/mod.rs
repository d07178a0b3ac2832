//! The distributed queue: queues split into partitions, placed on Redis
//! shards by consistent hashing.
pub mod client;
pub mod functions;
pub mod lua;
pub mod placement;
pub mod protocol;
pub mod rebalance;
pub mod ring;
pub mod router;
pub mod shard;
