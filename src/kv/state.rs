//! The key-value state machine replicated by Raft, with client sessions.
//!
//! Sessions (Raft thesis 6.3) make retried and network-duplicated writes apply
//! at most once: each client has one write in flight, so remembering the last
//! applied sequence number per client is enough.

use std::collections::BTreeMap;
use std::rc::Rc;

/// A replicated command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Appended by each new leader so it can commit entries of its own term.
    Noop,
    Put {
        client: u32,
        seq: u64,
        key: u32,
        value: u64,
    },
}

/// One Raft log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: u64,
    pub cmd: Command,
}

impl Entry {
    /// A stable 64-bit digest of the entry (term and command), used in traces
    /// and by the checkers to tell entries apart.
    pub fn digest(&self) -> u64 {
        let words = match self.cmd {
            Command::Noop => [self.term, 0, 0, 0, 0],
            Command::Put {
                client,
                seq,
                key,
                value,
            } => [self.term, 1 + client as u64, seq, key as u64, value],
        };
        words
            .iter()
            .fold(0x9e37_79b9_7f4a_7c15u64, |h, w| mix64(h ^ w))
    }
}

/// SplitMix64 finalizer: a cheap, well-spread mixing step.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The state machine: values by key, and the last applied write per client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    values: BTreeMap<u32, u64>,
    sessions: BTreeMap<u32, u64>,
}

impl KvState {
    /// Applies one command; returns false if it was a duplicate and skipped.
    pub fn apply(&mut self, cmd: &Command) -> bool {
        match *cmd {
            Command::Noop => true,
            Command::Put {
                client,
                seq,
                key,
                value,
            } => {
                let last = self.sessions.entry(client).or_insert(0);
                if seq <= *last {
                    return false;
                }
                *last = seq;
                self.values.insert(key, value);
                true
            }
        }
    }

    /// The value of `key`, if ever written.
    pub fn get(&self, key: u32) -> Option<u64> {
        self.values.get(&key).copied()
    }

    /// The highest write sequence applied for `client` (0 if none).
    pub fn applied_seq(&self, client: u32) -> u64 {
        self.sessions.get(&client).copied().unwrap_or(0)
    }
}

/// A state-machine snapshot covering the log up to `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    /// Shared, never mutated: snapshots are copied between nodes and storage.
    pub data: Rc<KvState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_apply_once() {
        let mut s = KvState::default();
        let put = Command::Put {
            client: 1,
            seq: 1,
            key: 0,
            value: 10,
        };
        assert!(s.apply(&put));
        assert!(s.apply(&Command::Put {
            client: 1,
            seq: 2,
            key: 0,
            value: 11
        }));
        assert!(
            !s.apply(&put),
            "a late duplicate must not roll the value back"
        );
        assert_eq!(s.get(0), Some(11));
    }

    #[test]
    fn digests_tell_entries_apart() {
        let a = Entry {
            term: 1,
            cmd: Command::Noop,
        };
        let b = Entry {
            term: 2,
            cmd: Command::Noop,
        };
        let c = Entry {
            term: 1,
            cmd: Command::Put {
                client: 0,
                seq: 1,
                key: 0,
                value: 0,
            },
        };
        assert!(a.digest() != b.digest() && a.digest() != c.digest());
    }
}
