//! The distributed queue: queues split into partitions, placed on Redis
//! shards by consistent hashing.
pub mod ring;
