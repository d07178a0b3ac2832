//! The replicated key-value store: commands, state machine, and the clients that load it.
pub mod client;
pub mod state;

pub use state::{Command, Entry, KvState, Snapshot};

/// A client's request as carried over the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    Get { key: u32 },
    Put { key: u32, value: u64 },
}

/// A node's answer to a client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientReply {
    /// Done; reads carry the value (None = key never written).
    Ok(Option<u64>),
    /// This node is not the leader; try the hinted one.
    NotLeader(Option<usize>),
    /// The node lost leadership or cannot serve yet; the outcome of a write is
    /// unknown, so the client retries the same sequence number elsewhere.
    Retry,
}
