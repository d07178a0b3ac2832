//! distsync: a deterministic simulation testbed for distributed synchronization.
pub mod check;
