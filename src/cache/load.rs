//! Generated cache operations at a node: reads and writes at a steady rate,
//! over keys drawn from a Zipf distribution (a few keys are hot).

use std::rc::Rc;

use crate::rng::Rng;
use crate::scenario::{CacheOp, CacheWorkload};

/// One node's generator.
#[derive(Clone, Debug)]
pub struct CacheLoad {
    load: CacheWorkload,
    /// Cumulative key probabilities, shared by every node.
    cdf: Rc<Vec<f64>>,
    /// Values written are unique: the node in the high bits, a count below.
    next_value: u64,
}

/// Cumulative Zipf(s) probabilities of keys 0..keys (0 = uniform).
pub fn zipf_cdf(keys: u32, s: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=keys.max(1))
        .map(|k| 1.0 / (k as f64).powf(s))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

impl CacheLoad {
    /// The generator of node `node`.
    pub fn new(node: usize, load: CacheWorkload, cdf: Rc<Vec<f64>>) -> Self {
        CacheLoad {
            load,
            cdf,
            next_value: ((node as u64 + 1) << 40) + 1,
        }
    }

    /// Local time of the first operation (from `now`).
    pub fn first_gap_ns(&self, now_local: u64, start_local: u64, rng: &mut Rng) -> u64 {
        start_local.saturating_sub(now_local) + self.gap_ns(rng)
    }

    /// Time to the next operation.
    pub fn gap_ns(&self, rng: &mut Rng) -> u64 {
        rng.exponential(1e9 / self.load.rate_per_s).max(1.0) as u64
    }

    /// The next operation.
    pub fn next_op(&mut self, rng: &mut Rng) -> CacheOp {
        let u = rng.unit();
        let key = self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u32;
        if rng.chance(self.load.write_ratio) {
            let value = self.next_value;
            self.next_value += 1;
            CacheOp::Put { key, value }
        } else {
            CacheOp::Get { key }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Purpose;

    #[test]
    fn zipf_099_over_1000_keys_puts_the_head_first() {
        let cdf = zipf_cdf(1000, 0.99);
        assert!((cdf[999] - 1.0).abs() < 1e-9);
        // Key 0 alone carries about 13% of the mass; the top 100 over 60%.
        assert!(cdf[0] > 0.12 && cdf[0] < 0.14, "{}", cdf[0]);
        assert!(cdf[99] > 0.6, "{}", cdf[99]);
        let uniform = zipf_cdf(4, 0.0);
        assert!((uniform[1] - 0.5).abs() < 1e-9);
    }

    #[test]
    fn draws_follow_the_cdf_and_values_are_unique() {
        let load = CacheWorkload {
            rate_per_s: 100.0,
            keys: 10,
            zipf: 1.0,
            write_ratio: 0.5,
            ..CacheWorkload::default()
        };
        let mut g = CacheLoad::new(2, load, Rc::new(zipf_cdf(10, 1.0)));
        let mut rng = Rng::stream(1, Purpose::Client, 0);
        let mut counts = [0u32; 10];
        let mut values = Vec::new();
        for _ in 0..10_000 {
            match g.next_op(&mut rng) {
                CacheOp::Get { key } => counts[key as usize] += 1,
                CacheOp::Put { key, value } => {
                    counts[key as usize] += 1;
                    values.push(value);
                }
                op => panic!("unexpected {op:?}"),
            }
        }
        assert!(counts[0] > counts[1] && counts[1] > counts[9]);
        let n = values.len();
        values.dedup();
        assert_eq!(values.len(), n);
        assert!(values[0] >> 40 == 3);
    }
}
