//! What travels over the network for the queue: client requests to any node,
//! and the calls a node (router or rebalancing leader) makes on a shard.

use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::functions::{Delivery, Dump, MessageId, Partition, Refused, Stored};

/// A producer's or consumer's request, sent to any node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueRequest {
    /// Store a batch: seqs first_seq.. in order, one per body.
    Produce {
        partition: Partition,
        producer: u32,
        first_seq: u64,
        bodies: Rc<Vec<Vec<u8>>>,
    },
    /// Take up to `max` messages from a partition.
    Consume {
        partition: Partition,
        consumer: u32,
        max: u32,
    },
    /// Done with messages: `acks` are removed for good, `nacks` given back
    /// for redelivery (or the dead-letter queue).
    Settle {
        partition: Partition,
        acks: Rc<Vec<MessageId>>,
        nacks: Rc<Vec<MessageId>>,
    },
}

impl QueueRequest {
    /// The partition the request is about.
    pub fn partition(&self) -> Partition {
        match *self {
            QueueRequest::Produce { partition, .. }
            | QueueRequest::Consume { partition, .. }
            | QueueRequest::Settle { partition, .. } => partition,
        }
    }
}

/// A node's answer to a queue request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueReply {
    /// The shard stored the batch (or already had it).
    Produced(Stored),
    Delivered(Vec<Delivery>),
    /// Acks and nacks applied: how many acks found their message in flight.
    Settled(u32),
    /// Not served now (partition moving, shard unreachable, node behind):
    /// the outcome of a produce is unknown, so retry the same seqs.
    Retry,
}

/// One call of the queue's Redis functions on a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCall {
    Produce {
        partition: Partition,
        producer: u32,
        first_seq: u64,
        bodies: Rc<Vec<Vec<u8>>>,
    },
    Consume {
        partition: Partition,
        consumer: u32,
        max: u32,
        visibility_ns: u64,
        max_attempts: u32,
        /// False only under the planted bug `queue.no_visibility_timeout`.
        honour_visibility: bool,
    },
    Settle {
        partition: Partition,
        acks: Rc<Vec<MessageId>>,
        nacks: Rc<Vec<MessageId>>,
        max_attempts: u32,
    },
    /// Stop serving the partition here and hand over its content.
    Freeze {
        partition: Partition,
        epoch: u64,
        /// False only under the planted bug `queue.drop_inflight_on_rebalance`.
        include_inflight: bool,
    },
    /// Take over a partition's content (once per epoch).
    Import {
        partition: Partition,
        epoch: u64,
        dump: Rc<Dump>,
    },
    /// Delete a partition that now lives elsewhere.
    Drop { partition: Partition, epoch: u64 },
    /// Read a cache key's value and version from memory. `fence` is the
    /// incarnation of the home (or bus arbiter) asking: from then on memory
    /// refuses this key's writes from older incarnations, so a write-back
    /// sent before a crash and still in the network cannot bring back a
    /// value that the restarted home has already found missing.
    MemGet { key: u32, fence: u64 },
    /// Write a cache key's value to memory unless memory holds a newer
    /// version; answered with what memory then holds.
    MemSet {
        key: u32,
        value: u64,
        version: u64,
        fence: u64,
    },
}

impl ShardCall {
    /// Short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            ShardCall::Produce { .. } => "Produce",
            ShardCall::Consume { .. } => "Consume",
            ShardCall::Settle { .. } => "Settle",
            ShardCall::Freeze { .. } => "Freeze",
            ShardCall::Import { .. } => "Import",
            ShardCall::Drop { .. } => "Drop",
            ShardCall::MemGet { .. } => "MemGet",
            ShardCall::MemSet { .. } => "MemSet",
        }
    }
}

/// A shard's answer to a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardAnswer {
    Stored(Stored),
    Delivered(Vec<Delivery>),
    /// How many acks found their message in flight.
    Settled(u32),
    Frozen(Rc<Dump>),
    /// Import, drop or memory write done.
    Done,
    /// A cache key in memory: (value, version), None if never written.
    Memory(Option<(u64, u64)>),
    Refused(Refused),
    /// The shard could not be reached or did not answer sensibly (the real
    /// deployment's Redis is down): nothing is known of the call's effect.
    Unavailable,
}
