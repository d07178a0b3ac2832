//! What lock clients and nodes say to each other over the network.

use super::state::{LockError, LockId, Mode, SessionId};

/// A lock client's request to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockRequest {
    /// Open a session whose lease lasts `ttl_ns` without a keep-alive.
    Open { ttl_ns: u64 },
    /// Renew the session's lease (handled by the leader alone, not logged).
    KeepAlive { session: SessionId },
    /// Close the session, releasing everything it holds.
    Close { session: SessionId },
    /// Acquire `lock`; wait up to `wait_ns` in the queue (0 = try only).
    Acquire {
        session: SessionId,
        lock: LockId,
        mode: Mode,
        wait_ns: u64,
    },
    /// Release one hold of `lock`.
    Release { session: SessionId, lock: LockId },
}

/// A node's answer to a lock request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockReply {
    /// The session is open.
    Session(SessionId),
    /// The lease was renewed.
    Alive,
    /// The lock is held, with this fencing token and hold count.
    Granted { token: u64, holds: u32 },
    /// Queued: a `Granted` or `Failed` follows when the request is decided.
    Waiting,
    /// One hold released; `holds` remain.
    Released { holds: u32 },
    /// The session is closed.
    Closed,
    /// The request failed and changed nothing.
    Failed(LockError),
}
