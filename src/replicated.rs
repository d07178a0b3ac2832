//! What Raft replicates: commands, log entries, and the state machine they
//! build (the key-value store and the lock service side by side), with the
//! snapshots that stand in for a log prefix.

use serde::{Deserialize, Serialize};
use std::rc::Rc;

use crate::kv::KvState;
use crate::lock::{LockCommand, LockEvent, LockState, Mode};
use crate::queue::placement::{Placement, RingCommand};

/// A replicated command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Appended by each new leader so it can commit entries of its own term.
    Noop,
    /// A key-value write.
    Put {
        client: u32,
        seq: u64,
        key: u32,
        value: u64,
    },
    /// A key-value delete.
    Delete { client: u32, seq: u64, key: u32 },
    /// A lock-service command.
    Lock(LockCommand),
    /// A change to the queue's placement of partitions on shards.
    Ring(RingCommand),
}

/// One Raft log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub cmd: Command,
}

impl Entry {
    /// A stable 64-bit digest of the entry (term and command), used in traces
    /// and by the checkers to tell entries apart.
    pub fn digest(&self) -> u64 {
        let t = self.term;
        let words = match self.cmd {
            Command::Noop => [t, 0, 0, 0, 0, 0],
            Command::Put {
                client,
                seq,
                key,
                value,
            } => [t, 1 + client as u64, seq, key as u64, value, 0],
            Command::Delete { client, seq, key } => [t, 3 << 40, client as u64, seq, key as u64, 0],
            Command::Lock(l) => lock_words(t, &l),
            Command::Ring(r) => ring_words(t, &r),
        };
        // Noop and Put hash five words, as they always have, so their digests
        // (and the traces of key-value runs) stay stable.
        let n = if matches!(
            self.cmd,
            Command::Lock(_) | Command::Ring(_) | Command::Delete { .. }
        ) {
            6
        } else {
            5
        };
        words[..n]
            .iter()
            .fold(0x9e37_79b9_7f4a_7c15u64, |h, w| mix64(h ^ w))
    }
}

fn lock_words(t: u64, l: &LockCommand) -> [u64; 6] {
    const TAG: u64 = 1 << 40;
    let mode = |m: Mode| m as u64;
    match *l {
        LockCommand::OpenSession {
            client,
            seq,
            ttl_ns,
        } => [t, TAG, client as u64, seq, ttl_ns, 0],
        LockCommand::CloseSession {
            client,
            seq,
            session,
        } => [t, TAG + 1, client as u64, seq, session, 0],
        LockCommand::Acquire {
            client,
            seq,
            session,
            lock,
            mode: m,
            wait,
        } => [
            t,
            TAG + 2 + ((mode(m) << 1) | wait as u64) * 16,
            client as u64,
            seq,
            session,
            lock as u64,
        ],
        LockCommand::Release {
            client,
            seq,
            session,
            lock,
        } => [t, TAG + 3, client as u64, seq, session, lock as u64],
        LockCommand::Expire { session } => [t, TAG + 4, session, 0, 0, 0],
        LockCommand::WaitTimeout { session, lock, seq } => {
            [t, TAG + 5, session, lock as u64, seq, 0]
        }
    }
}

fn ring_words(t: u64, r: &RingCommand) -> [u64; 6] {
    const TAG: u64 = 2 << 40;
    match *r {
        RingCommand::Add(s) => [t, TAG, s as u64, 0, 0, 0],
        RingCommand::Remove(s) => [t, TAG + 1, s as u64, 0, 0, 0],
        RingCommand::Moved { partition, epoch } => [t, TAG + 2, partition as u64, epoch, 0, 0],
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

/// The replicated state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicated {
    pub kv: KvState,
    pub locks: LockState,
    /// Where the queue's partitions live.
    pub queue: Placement,
}

impl Replicated {
    /// Applies the entry committed at `index`; returns what the lock service did.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Vec<LockEvent> {
        match cmd {
            Command::Ring(r) => {
                self.queue.apply(*r);
                Vec::new()
            }
            Command::Noop => Vec::new(),
            Command::Put {
                client,
                seq,
                key,
                value,
            } => {
                self.kv.put(*client, *seq, *key, *value);
                Vec::new()
            }
            Command::Delete { client, seq, key } => {
                self.kv.delete(*client, *seq, *key);
                Vec::new()
            }
            Command::Lock(l) => self.locks.apply(index, l),
        }
    }
}

/// A state-machine snapshot covering the log up to `index`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    /// Shared, never mutated: snapshots are copied between nodes and storage.
    pub data: Rc<Replicated>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_tell_entries_apart() {
        let e = |term, cmd| Entry { term, cmd }.digest();
        let put = Command::Put {
            client: 0,
            seq: 1,
            key: 0,
            value: 0,
        };
        let open = Command::Lock(LockCommand::OpenSession {
            client: 0,
            seq: 1,
            ttl_ns: 0,
        });
        let acq = |mode, wait| {
            Command::Lock(LockCommand::Acquire {
                client: 0,
                seq: 1,
                session: 1,
                lock: 0,
                mode,
                wait,
            })
        };
        let all = [
            e(1, Command::Noop),
            e(2, Command::Noop),
            e(1, put),
            e(
                1,
                Command::Delete {
                    client: 0,
                    seq: 1,
                    key: 0,
                },
            ),
            e(1, open),
            e(1, acq(Mode::Shared, false)),
            e(1, acq(Mode::Shared, true)),
            e(1, acq(Mode::Exclusive, false)),
            e(1, acq(Mode::Exclusive, true)),
        ];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "entries {i} and {j}");
            }
        }
    }
}
