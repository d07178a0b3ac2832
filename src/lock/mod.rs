//! The lock service: a replicated state machine of sessions and shared or
//! exclusive locks with FIFO queues, fencing tokens and deadlock detection.
pub mod client;
pub mod leases;
pub mod protocol;
pub mod resource;
pub mod state;
pub mod wait_for;

pub use state::{
    DEFAULT_REENTRY_LIMIT, LockCommand, LockError, LockEvent, LockId, LockState, Mode, SessionId,
};
pub use wait_for::WaitForGraph;
