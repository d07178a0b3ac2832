//! The durable storage model: what survives a crash is what was synced.
//!
//! Writes go to a pending list; `sync` applies them to the stable image, and a
//! crash throws the pending list away. This is how a missing fsync becomes a
//! visible bug in simulation.

use crate::replicated::{Entry, Snapshot};
use crate::trace::NodeId;

/// A node's stable state as it would be read back after a restart.
#[derive(Clone, Debug, Default)]
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
}

/// One write, not yet stable.
#[derive(Clone, Debug)]
enum Write {
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

/// Durable storage of one node.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    stable: Persisted,
    pending: Vec<Write>,
    syncs: u64,
}

impl Durable {
    /// Records a term/vote change (not yet stable).
    pub fn set_hard_state(&mut self, term: u64, voted_for: Option<NodeId>) {
        self.pending.push(Write::HardState { term, voted_for });
    }

    /// Records that the log from index `from` on is now `entries`.
    pub fn splice(&mut self, from: u64, entries: &[Entry]) {
        self.pending.push(Write::Splice {
            from,
            entries: entries.to_vec(),
        });
    }

    /// Records a snapshot.
    pub fn snapshot(&mut self, snapshot: Snapshot, keep_suffix: bool) {
        self.pending.push(Write::Snapshot {
            snapshot,
            keep_suffix,
        });
    }

    /// Makes every pending write stable (fsync).
    pub fn sync(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.syncs += 1;
        for w in self.pending.drain(..) {
            let s = &mut self.stable;
            match w {
                Write::HardState { term, voted_for } => {
                    s.term = term;
                    s.voted_for = voted_for;
                }
                Write::Splice { from, entries } => {
                    let keep = from.saturating_sub(s.snapshot_index() + 1) as usize;
                    s.log.truncate(keep.min(s.log.len()));
                    s.log.extend(entries);
                }
                Write::Snapshot {
                    snapshot,
                    keep_suffix,
                } => {
                    let drop_n = snapshot.index.saturating_sub(s.snapshot_index()) as usize;
                    if keep_suffix && drop_n <= s.log.len() {
                        s.log.drain(..drop_n);
                    } else {
                        s.log.clear();
                    }
                    s.snapshot = Some(snapshot);
                }
            }
        }
    }

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
