//! The key-value state machine replicated by Raft, with client sessions.
//!
//! Sessions (Raft thesis 6.3) make retried and network-duplicated writes apply
//! at most once: each client has one write in flight, so remembering the last
//! applied sequence number per client is enough.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The state machine: values by key, and the last applied write per client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    values: BTreeMap<u32, u64>,
    sessions: BTreeMap<u32, u64>,
}

impl KvState {
    /// Applies one write; returns false if it was a duplicate and skipped.
    pub fn put(&mut self, client: u32, seq: u64, key: u32, value: u64) -> bool {
        let last = self.sessions.entry(client).or_insert(0);
        if seq <= *last {
            return false;
        }
        *last = seq;
        self.values.insert(key, value);
        true
    }

    /// Removes `key` (a no-op if absent), under the same session rule as
    /// `put`; returns false if it was a duplicate and skipped.
    pub fn delete(&mut self, client: u32, seq: u64, key: u32) -> bool {
        let last = self.sessions.entry(client).or_insert(0);
        if seq <= *last {
            return false;
        }
        *last = seq;
        self.values.remove(&key);
        true
    }

    /// The value of `key`, if written and not deleted since.
    pub fn get(&self, key: u32) -> Option<u64> {
        self.values.get(&key).copied()
    }

    /// The highest write sequence applied for `client` (0 if none).
    pub fn applied_seq(&self, client: u32) -> u64 {
        self.sessions.get(&client).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_apply_once() {
        let mut s = KvState::default();
        assert!(s.put(1, 1, 0, 10));
        assert!(s.put(1, 2, 0, 11));
        assert!(
            !s.put(1, 1, 0, 10),
            "a late duplicate must not roll the value back"
        );
        assert_eq!(s.get(0), Some(11));
    }

    #[test]
    fn a_delete_removes_once_and_a_late_duplicate_put_does_not_revive() {
        let mut s = KvState::default();
        assert!(s.put(1, 1, 0, 10));
        assert!(s.delete(1, 2, 0));
        assert_eq!(s.get(0), None);
        assert!(
            !s.put(1, 1, 0, 10),
            "a duplicate put must not revive the key"
        );
        assert!(!s.delete(1, 2, 0));
        assert_eq!(s.get(0), None);
    }
}
