//! Durable storage as protocol code sees it: what it may write, and what a
//! restart reads back.
//!
//! Two implementations stand behind this trait: the simulator's `Durable`
//! (a model in which a crash drops unsynced writes) and, with the
//! `real-network` feature, the on-disk write-ahead log (`wal::DiskLog`).
//! Writes are recorded first and made stable by `sync`; nothing that depends
//! on a write may leave the node before the `sync` that covers it.

use serde::{Deserialize, Serialize};

use crate::replicated::{Entry, Snapshot};
use crate::trace::NodeId;

/// The writes Raft makes, and the one call that makes them stable.
pub trait Storage {
    /// Records a term/vote change (not yet stable).
    fn set_hard_state(&mut self, term: u64, voted_for: Option<NodeId>);
    /// Records that the log from index `from` on is now `entries`.
    fn splice(&mut self, from: u64, entries: &[Entry]);
    /// Records a snapshot; later entries survive it only if `keep_suffix`.
    fn snapshot(&mut self, snapshot: Snapshot, keep_suffix: bool);
    /// Makes every recorded write stable (fsync), in the order recorded.
    fn sync(&mut self);
}

/// One write, recorded and not yet stable: what both stores keep until
/// `sync`, and what the on-disk log writes as a record (all but snapshots,
/// which go to a file of their own).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Write {
    HardState {
        term: u64,
        voted_for: Option<NodeId>,
    },
    /// Remove entries at and after `from`, then append `entries` there.
    Splice { from: u64, entries: Vec<Entry> },
    /// Replace everything up to the snapshot's index; keep later entries only
    /// if `keep_suffix`.
    Snapshot {
        snapshot: Snapshot,
        keep_suffix: bool,
    },
}

/// A node's stable state as it would be read back after a restart.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    pub term: u64,
    pub voted_for: Option<NodeId>,
    /// The latest snapshot, if any; `log` holds entries after it.
    pub snapshot: Option<Snapshot>,
    pub log: Vec<Entry>,
}

impl Persisted {
    /// Index of the last entry covered by the snapshot (0 if none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.index)
    }

    /// Index of the last durable entry.
    pub fn last_index(&self) -> u64 {
        self.snapshot_index() + self.log.len() as u64
    }

    /// Term of the last durable entry (the snapshot's term if the log after
    /// it is empty, 0 if there is nothing at all).
    pub fn last_term(&self) -> u64 {
        match self.log.last() {
            Some(e) => e.term,
            None => self.snapshot.as_ref().map_or(0, |s| s.term),
        }
    }

    /// Term of the durable entry at `index`: the snapshot's term at its own
    /// index, None inside the snapshot (compacted) or past the end.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        let base = self.snapshot_index();
        if index == base {
            return Some(self.snapshot.as_ref().map_or(0, |s| s.term));
        }
        if index < base {
            return None;
        }
        self.log.get((index - base - 1) as usize).map(|e| e.term)
    }

    /// Applies one write, as a sync or a replay does.
    pub fn apply(&mut self, write: Write) {
        match write {
            Write::HardState { term, voted_for } => {
                self.term = term;
                self.voted_for = voted_for;
            }
            Write::Splice { from, entries } => {
                let keep = from.saturating_sub(self.snapshot_index() + 1) as usize;
                self.log.truncate(keep.min(self.log.len()));
                self.log.extend(entries);
            }
            // Everything up to the snapshot's index goes; later entries stay
            // only if `keep_suffix` and the log reaches that far.
            Write::Snapshot {
                snapshot,
                keep_suffix,
            } => {
                let drop_n = snapshot.index.saturating_sub(self.snapshot_index()) as usize;
                if keep_suffix && drop_n <= self.log.len() {
                    self.log.drain(..drop_n);
                } else {
                    self.log.clear();
                }
                self.snapshot = Some(snapshot);
            }
        }
    }
}
