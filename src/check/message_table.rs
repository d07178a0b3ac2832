//! The queue checker's per-message records, keyed by (partition, message id).
//!
//! A producer numbers its messages 1, 2, 3... across all partitions, so
//! each producer's ids are dense: its records sit in a vector indexed by
//! sequence number, found in one step instead of a tree search per event.
//! The vector grows in fixed chunks, never by copying what it holds, so a
//! long run's peak memory stays at what it keeps (a doubling table holds
//! both copies while it moves). An id that does not fit the dense layout
//! (a partition other than the one its first record named, an implausible
//! producer or sequence number from a faulty trace) goes to an ordered
//! overflow map: the table stays exact whatever the events say.

use std::collections::BTreeMap;

use crate::queue::functions::{MessageId, Partition};

/// A message's key as the checker names it.
pub type Key = (Partition, MessageId);

/// Records per chunk: 4,096 of them, allocated at once when the first is
/// needed.
const CHUNK: usize = 4096;

/// Producers numbered beyond this use the overflow map (a scenario has a
/// handful).
const MAX_DENSE_PRODUCERS: u32 = 1024;

/// A sequence number more than this past a producer's highest so far uses
/// the overflow map rather than allocating the gap.
const MAX_GAP: u64 = 1 << 20;

/// `CHUNK` slots of one producer's ids; a slot holds its record and the
/// partition the record was made for.
type Chunk<T> = Box<[Option<(Partition, T)>]>;

/// One record per message ever seen.
#[derive(Clone, Debug)]
pub struct MessageTable<T> {
    /// producer -> its chunks, indexed by seq.
    dense: Vec<Vec<Chunk<T>>>,
    overflow: BTreeMap<Key, T>,
    len: usize,
}

impl<T> Default for MessageTable<T> {
    fn default() -> Self {
        MessageTable {
            dense: Vec::new(),
            overflow: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T: Default> MessageTable<T> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The record for `k`, if one was made.
    pub fn get(&self, k: &Key) -> Option<&T> {
        let (partition, id) = *k;
        let dense = self
            .slot_index(id)
            .and_then(|(p, c, i)| self.dense.get(p)?.get(c)?[i].as_ref());
        match dense {
            Some((part, rec)) if *part == partition => Some(rec),
            _ => self.overflow.get(k),
        }
    }

    /// The record for `k`, made empty first if there was none.
    pub fn entry(&mut self, k: Key) -> &mut T {
        let (partition, id) = k;
        let Some((p, c, i)) = self.slot_index(id).filter(|&(p, c, _)| {
            // Allocate only a plausible next stretch of a producer's ids.
            let have = self.dense.get(p).map_or(0, Vec::len);
            (c as u64) <= have as u64 + MAX_GAP / CHUNK as u64
        }) else {
            return self.overflow_entry(k);
        };
        if self.dense.len() <= p {
            self.dense.resize_with(p + 1, Vec::new);
        }
        let chunks = &mut self.dense[p];
        while chunks.len() <= c {
            chunks.push((0..CHUNK).map(|_| None).collect());
        }
        if matches!(&chunks[c][i], Some((part, _)) if *part != partition) {
            return self.overflow_entry(k);
        }
        let slot = &mut self.dense[p][c][i];
        if slot.is_none() {
            self.len += 1;
        }
        &mut slot.get_or_insert_with(|| (partition, T::default())).1
    }

    /// Every record in key order (partition, producer, seq).
    #[cfg(test)]
    pub fn sorted(&self) -> Vec<(Key, &T)> {
        self.sorted_where(|_, _| true)
    }

    /// The records `keep` accepts, in key order. The end-of-run checks
    /// look for the few records that break a rule among every message of
    /// the run: filtering before sorting sorts those few, not the whole
    /// table (which was a few percent of a long queue run).
    pub fn sorted_where(&self, mut keep: impl FnMut(&Key, &T) -> bool) -> Vec<(Key, &T)> {
        let mut all: Vec<(Key, &T)> = Vec::new();
        for (producer, chunks) in self.dense.iter().enumerate() {
            for (c, chunk) in chunks.iter().enumerate() {
                for (i, slot) in chunk.iter().enumerate() {
                    if let Some((part, rec)) = slot {
                        let id = MessageId {
                            producer: producer as u32,
                            seq: (c * CHUNK + i) as u64,
                        };
                        let k = (*part, id);
                        if keep(&k, rec) {
                            all.push((k, rec));
                        }
                    }
                }
            }
        }
        all.extend(
            self.overflow
                .iter()
                .filter(|(k, v)| keep(k, v))
                .map(|(k, v)| (*k, v)),
        );
        all.sort_unstable_by_key(|(k, _)| *k);
        all
    }

    fn overflow_entry(&mut self, k: Key) -> &mut T {
        let len = &mut self.len;
        self.overflow.entry(k).or_insert_with(|| {
            *len += 1;
            T::default()
        })
    }

    /// (producer, chunk, index) of `id`'s dense slot, if it has one.
    fn slot_index(&self, id: MessageId) -> Option<(usize, usize, usize)> {
        if id.producer >= MAX_DENSE_PRODUCERS {
            return None;
        }
        let seq = usize::try_from(id.seq).ok()?;
        Some((id.producer as usize, seq / CHUNK, seq % CHUNK))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(partition: Partition, producer: u32, seq: u64) -> Key {
        (partition, MessageId { producer, seq })
    }

    #[test]
    fn records_are_found_again_and_counted_once() {
        let mut t: MessageTable<u32> = MessageTable::default();
        *t.entry(k(3, 0, 1)) += 1;
        *t.entry(k(3, 0, 1)) += 1;
        *t.entry(k(1, 2, 5000)) = 7;
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&k(3, 0, 1)), Some(&2));
        assert_eq!(t.get(&k(1, 2, 5000)), Some(&7));
        assert_eq!(t.get(&k(1, 2, 5001)), None);
        assert_eq!(t.get(&k(3, 9, 1)), None);
    }

    #[test]
    fn the_same_id_in_another_partition_is_another_record() {
        let mut t: MessageTable<u32> = MessageTable::default();
        *t.entry(k(3, 0, 1)) = 1;
        *t.entry(k(4, 0, 1)) = 2;
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&k(3, 0, 1)), Some(&1));
        assert_eq!(t.get(&k(4, 0, 1)), Some(&2));
        assert_eq!(t.get(&k(5, 0, 1)), None);
    }

    #[test]
    fn implausible_ids_go_to_the_overflow_map_not_a_huge_allocation() {
        let mut t: MessageTable<u32> = MessageTable::default();
        *t.entry(k(0, u32::MAX, 1)) = 1;
        *t.entry(k(0, 0, u64::MAX)) = 2;
        *t.entry(k(0, 0, MAX_GAP * 4)) = 3;
        assert_eq!(t.len(), 3);
        assert!(t.dense.iter().all(|chunks| chunks.is_empty()));
        assert_eq!(t.get(&k(0, 0, u64::MAX)), Some(&2));
        assert_eq!(t.get(&k(0, 0, MAX_GAP * 4)), Some(&3));
    }

    #[test]
    fn sorted_walks_in_key_order_like_an_ordered_map() {
        let keys = [
            k(2, 1, 9),
            k(0, 1, 10_000),
            k(2, 0, 3),
            k(0, 7, 1),
            k(1, 0, 3),
            k(0, 0, u64::MAX),
        ];
        let mut t: MessageTable<u64> = MessageTable::default();
        let mut reference = BTreeMap::new();
        for (n, key) in keys.iter().enumerate() {
            *t.entry(*key) = n as u64;
            reference.insert(*key, n as u64);
        }
        let walked: Vec<(Key, u64)> = t.sorted().into_iter().map(|(k, v)| (k, *v)).collect();
        let expected: Vec<(Key, u64)> = reference.into_iter().collect();
        assert_eq!(walked, expected);
    }
}
