//! The durable storage model: what survives a crash is what was synced.
//!
//! Writes go to a pending list; `sync` applies them to the stable image, and a
//! crash throws the pending list away. This is how a missing fsync becomes a
//! visible bug in simulation.

use crate::replicated::{Entry, Snapshot};
use crate::storage::{Persisted, Storage, Write};
use crate::trace::NodeId;

/// Durable storage of one node.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    stable: Persisted,
    pending: Vec<Write>,
    syncs: u64,
}

impl Storage for Durable {
    #[inline]
    fn set_hard_state(&mut self, term: u64, voted_for: Option<NodeId>) {
        self.pending.push(Write::HardState { term, voted_for });
    }

    #[inline]
    fn splice(&mut self, from: u64, entries: &[Entry]) {
        self.pending.push(Write::Splice {
            from,
            entries: entries.to_vec(),
        });
    }

    #[inline]
    fn snapshot(&mut self, snapshot: Snapshot, keep_suffix: bool) {
        self.pending.push(Write::Snapshot {
            snapshot,
            keep_suffix,
        });
    }

    /// Applies every pending write to the stable image (the model's fsync).
    fn sync(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.syncs += 1;
        for w in self.pending.drain(..) {
            self.stable.apply(w);
        }
    }
}

impl Durable {
    /// A crash: unsynced writes are lost.
    pub fn crash(&mut self) {
        self.pending.clear();
    }

    /// What a restarted node reads back.
    pub fn stable(&self) -> &Persisted {
        &self.stable
    }

    /// Writes recorded and not yet synced.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// Number of syncs that wrote something.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }
}
