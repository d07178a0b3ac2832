//! Deterministic random streams, one per (seed, purpose, index).
//!
//! Separate streams keep parts of a run independent: a node's election
//! timeouts do not depend on how many messages the network has routed or on
//! what the clients drew, so a hand-edited or shrunk scenario disturbs as
//! little of the rest of the run as possible.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng as _, SeedableRng};

/// What a stream is used for; part of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Network = 1,
    NodeTimers = 4,
    Client = 5,
    /// Swarm fuzzing: which faults a seed adds to its scenario.
    Explore = 6,
}

/// A ChaCha8 stream.
#[derive(Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// The stream for `(seed, purpose, index)`.
    pub fn stream(seed: u64, purpose: Purpose, index: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
        key[16..24].copy_from_slice(&index.to_le_bytes());
        key[24..32].copy_from_slice(b"distsync");
        Rng(ChaCha8Rng::from_seed(key))
    }

    /// 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, n); n = 0 gives 0.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift: no division, bias below 2^-64 * n.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [min, max] (inclusive); max < min gives min.
    #[inline]
    pub fn between(&mut self, min: u64, max: u64) -> u64 {
        if max <= min {
            min
        } else {
            min + self.below(max - min + 1)
        }
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`. Draws nothing when p <= 0, so a feature that
    /// is off does not shift the stream.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Exponentially distributed with the given mean (for arrival gaps).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::stream(7, Purpose::Network, 0).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng::stream(7, Purpose::Network, 0);
        let mut y = Rng::stream(7, Purpose::Network, 1);
        let mut z = Rng::stream(7, Purpose::Client, 0);
        let (x, y, z) = (x.next_u64(), y.next_u64(), z.next_u64());
        assert!(x != y && y != z && x != z);
    }

    #[test]
    fn between_stays_in_range() {
        let mut r = Rng::stream(1, Purpose::NodeTimers, 0);
        for _ in 0..1000 {
            let v = r.between(5, 9);
            assert!((5..=9).contains(&v));
        }
        assert_eq!(r.between(3, 3), 3);
    }
}
