//! What lock clients and nodes say to each other over the network.

use serde::{Deserialize, Serialize};

use super::state::{LockCommand, LockError, LockEvent, LockId, Mode, SessionId};
use crate::trace::TraceEvent;

/// The client id under which nodes propose the lock requests of their API
/// (the real deployment's HTTP). Every node uses this one id, so a session
/// opened through one leader stays its client's under the next; the
/// simulator numbers its clients from 0 and never reaches it.
pub const API_CLIENT: u32 = u32::MAX;

/// A lock client's request to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockRequest {
    /// Open a session whose lease lasts `ttl_ns` without a keep-alive.
    Open { ttl_ns: u64 },
    /// Renew the session's lease (handled by the leader alone, not logged).
    KeepAlive { session: SessionId },
    /// Close the session, releasing everything it holds.
    Close { session: SessionId },
    /// Acquire `lock`; if it is not free, queue (for at most the service's
    /// wait timeout) when `wait`, else fail at once.
    Acquire {
        session: SessionId,
        lock: LockId,
        mode: Mode,
        wait: bool,
    },
    /// Release one hold of `lock`.
    Release { session: SessionId, lock: LockId },
}

/// A node's answer to a lock request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The reply an applied event owes a client, if any: (client, seq, reply).
/// `cmd` is the command whose application produced `ev` (a close's event
/// names no client, its command does).
pub fn reply_for(cmd: &LockCommand, ev: &LockEvent) -> Option<(u32, u64, LockReply)> {
    match ev {
        LockEvent::SessionOpened {
            client,
            seq,
            session,
        } => Some((*client, *seq, LockReply::Session(*session))),
        LockEvent::Granted {
            client,
            seq,
            token,
            holds,
            ..
        } => Some((
            *client,
            *seq,
            LockReply::Granted {
                token: *token,
                holds: *holds,
            },
        )),
        LockEvent::Waiting { client, seq, .. } => Some((*client, *seq, LockReply::Waiting)),
        LockEvent::Released {
            client, seq, holds, ..
        } => Some((*client, *seq, LockReply::Released { holds: *holds })),
        LockEvent::Failed {
            client, seq, error, ..
        } => Some((*client, *seq, LockReply::Failed(error.clone()))),
        LockEvent::SessionClosed { session } => match *cmd {
            LockCommand::CloseSession {
                client,
                seq,
                session: s,
            } if s == *session => Some((client, seq, LockReply::Closed)),
            _ => None,
        },
        LockEvent::SessionExpired { .. }
        | LockEvent::DeadlockFound { .. }
        | LockEvent::Duplicate { .. } => None,
    }
}

/// The trace line of an applied event (None for the duplicate marker).
pub fn trace_of(ev: &LockEvent) -> Option<TraceEvent> {
    let mode = |m: Mode| {
        if m == Mode::Shared {
            "shared"
        } else {
            "exclusive"
        }
    };
    Some(match ev {
        LockEvent::SessionOpened {
            client, session, ..
        } => TraceEvent::LockSession {
            session: *session,
            client: Some(*client),
            what: "opened",
        },
        LockEvent::SessionClosed { session } => TraceEvent::LockSession {
            session: *session,
            client: None,
            what: "closed",
        },
        LockEvent::SessionExpired { session } => TraceEvent::LockSession {
            session: *session,
            client: None,
            what: "expired",
        },
        LockEvent::Granted {
            session,
            lock,
            mode: m,
            token,
            holds,
            ..
        } => TraceEvent::LockGrant {
            lock: *lock,
            session: *session,
            mode: mode(*m),
            token: *token,
            holds: *holds,
        },
        LockEvent::Waiting {
            session,
            lock,
            mode: m,
            ..
        } => TraceEvent::LockWait {
            lock: *lock,
            session: *session,
            mode: mode(*m),
        },
        LockEvent::Released {
            session,
            lock,
            holds,
            ..
        } => TraceEvent::LockRelease {
            lock: *lock,
            session: *session,
            holds: *holds,
        },
        LockEvent::Failed {
            session,
            lock,
            error,
            ..
        } => TraceEvent::LockFail {
            session: *session,
            lock: *lock,
            error: error.to_string(),
        },
        LockEvent::DeadlockFound { cycle, victim } => TraceEvent::LockDeadlock {
            cycle: cycle.clone(),
            victim: *victim,
        },
        LockEvent::Duplicate { .. } => return None,
    })
}
