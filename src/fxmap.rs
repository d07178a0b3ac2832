//! Hash maps with a fixed, fast hasher, for state that is looked up far more
//! often than walked.
//!
//! The hasher has no random seed, so nothing depends on one; still, a hash
//! map's iteration order follows its hash values and table size, so whatever
//! walks one where the order shows (a reply, a file, a report, a list in an
//! error) sorts first: [`sorted`].

use std::hash::{BuildHasherDefault, Hasher};

/// A hash map keyed with [`Fx`].
///
/// The hasher is fixed (no seed). Walks whose order could show (HGETALL, an
/// AOF rewrite) go through `sorted`; the others (byte estimates, expiry's
/// `retain`) do not depend on order.
pub type FxMap<K, V> = hashbrown::HashMap<K, V, BuildHasherDefault<Fx>>; // determinism-ok: fixed hasher; every order-visible walk sorts first

/// The Fx hash (rustc's `FxHasher`): a rotate, an xor and a multiply per
/// word. Not for untrusted keys, which a simulation does not have.
#[derive(Clone, Copy, Default)]
pub struct Fx(u64);

impl Fx {
    const K: u64 = 0x517c_c1b7_2722_0a95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Fx::K);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    // Integers are one word each, not bytes through `write`: ids and
    // numeric keys hash at the cost of one step.
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `map`'s entries in key order.
pub fn sorted<K: Ord, V>(map: &FxMap<K, V>) -> Vec<(&K, &V)> {
    let mut entries: Vec<(&K, &V)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_walks_in_key_order_whatever_the_insertion_order() {
        let mut map = FxMap::default();
        for k in [9u64, 3, 1_000_000, 0, 42, 7] {
            map.insert(k, k * 2);
        }
        let keys: Vec<u64> = sorted(&map).into_iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [0, 3, 7, 9, 42, 1_000_000]);
    }
}
