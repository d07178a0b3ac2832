//! The replicated key-value store: commands, state machine, and the clients that load it.
pub mod client;
pub mod state;

pub use state::KvState;

use serde::{Deserialize, Serialize};

use crate::lock::protocol::{LockReply, LockRequest};

/// A client's request as carried over the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    Get {
        key: u32,
    },
    Put {
        key: u32,
        value: u64,
    },
    /// Removes the key (the real deployment's `DELETE /kv/{key}`; the
    /// simulator's generated clients only read and write).
    Delete {
        key: u32,
    },
    Lock(LockRequest),
}

/// A node's answer to a client request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// The lock service's answer.
    Lock(LockReply),
    /// Done; reads carry the value (None = key never written).
    Ok(Option<u64>),
    /// This node is not the leader; try the hinted one.
    NotLeader(Option<usize>),
    /// The node lost leadership or cannot serve yet; the outcome of a write is
    /// unknown, so the client retries the same sequence number elsewhere.
    Retry,
}
