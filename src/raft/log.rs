//! The in-memory Raft log: a snapshot base followed by entries.

use crate::replicated::{Entry, Snapshot};

/// Entries after the snapshot point; index i lives at `entries[i - base - 1]`.
#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    base_index: u64,
    base_term: u64,
    entries: Vec<Entry>,
}

impl RaftLog {
    /// A log rebuilt from stable storage.
    pub fn restore(snapshot: Option<&Snapshot>, entries: Vec<Entry>) -> Self {
        let (base_index, base_term) = snapshot.map_or((0, 0), |s| (s.index, s.term));
        RaftLog {
            base_index,
            base_term,
            entries,
        }
    }

    /// Index of the last entry (or of the snapshot when empty).
    #[inline]
    pub fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    /// Term of the last entry.
    #[inline]
    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.base_term, |e| e.term)
    }

    /// Index covered by the snapshot.
    pub fn snapshot_index(&self) -> u64 {
        self.base_index
    }

    /// Term at `index`; None if compacted away (below the base) or beyond the end.
    #[inline]
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.base_index {
            Some(self.base_term)
        } else if index > self.base_index && index <= self.last_index() {
            Some(self.entries[(index - self.base_index - 1) as usize].term)
        } else {
            None
        }
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index > self.base_index && index <= self.last_index() {
            Some(&self.entries[(index - self.base_index - 1) as usize])
        } else {
            None
        }
    }

    /// Entries in [from, to] (clamped to what is held).
    pub fn slice(&self, from: u64, to: u64) -> &[Entry] {
        let lo = from.max(self.base_index + 1);
        let hi = to.min(self.last_index());
        if lo > hi {
            return &[];
        }
        &self.entries[(lo - self.base_index - 1) as usize..(hi - self.base_index) as usize]
    }

    /// Appends one entry; returns its index.
    pub fn push(&mut self, entry: Entry) -> u64 {
        self.entries.push(entry);
        self.last_index()
    }

    /// Removes entries at and after `from` (from > base).
    pub fn truncate_from(&mut self, from: u64) {
        debug_assert!(from > self.base_index);
        self.entries.truncate((from - self.base_index - 1) as usize);
    }

    /// Overwrites the entry at `index` in place (only the planted
    /// no-truncate bug does this).
    pub fn overwrite(&mut self, index: u64, entry: Entry) {
        self.entries[(index - self.base_index - 1) as usize] = entry;
    }

    /// First index of the run of entries with the same term as `index`,
    /// searching back no further than the snapshot (fast backtracking hint).
    pub fn first_index_of_term_at(&self, index: u64) -> u64 {
        let term = self.term_at(index);
        let mut i = index;
        while i > self.base_index + 1 && self.term_at(i - 1) == term {
            i -= 1;
        }
        i
    }

    /// Last index holding an entry of `term`, if any.
    pub fn last_index_of_term(&self, term: u64) -> Option<u64> {
        let mut i = self.last_index();
        while i > self.base_index {
            let t = self.term_at(i)?;
            if t == term {
                return Some(i);
            }
            if t < term {
                return None;
            }
            i -= 1;
        }
        None
    }

    /// Drops entries up to `index` (which must be held or be the base),
    /// keeping the rest: log compaction after a local snapshot.
    pub fn compact_to(&mut self, index: u64, term: u64) {
        let n = (index - self.base_index) as usize;
        self.entries.drain(..n.min(self.entries.len()));
        self.base_index = index;
        self.base_term = term;
    }

    /// Replaces the whole log by a snapshot point (installing a snapshot
    /// that does not match our log).
    pub fn reset_to(&mut self, index: u64, term: u64) {
        self.entries.clear();
        self.base_index = index;
        self.base_term = term;
    }
}
