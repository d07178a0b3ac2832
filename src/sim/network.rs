//! The network model: per-link latency, loss, duplication, reordering and partitions.

use super::rng::Rng;
use crate::scenario::{LinkConfig, NetworkConfig};

/// What happens to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered after each delay (two delays = duplicated).
    Deliver { delays_ns: [u64; 2], copies: u8 },
    /// Dropped, with the reason for the trace.
    Drop(&'static str),
}

/// Links between `nodes` nodes; endpoints numbered past the nodes are
/// clients, which see the default latency and never loss or partitions (a
/// client's link is not what the scenarios test).
pub struct Network {
    nodes: usize,
    default: LinkConfig,
    links: Vec<LinkConfig>,
    blocked: Vec<bool>,
}

impl Network {
    /// A network with the scenario's defaults and overrides.
    pub fn new(nodes: usize, config: &NetworkConfig) -> Self {
        let mut net = Network {
            nodes,
            default: config.link,
            links: vec![config.link; nodes * nodes],
            blocked: vec![false; nodes * nodes],
        };
        for &(from, to, link) in &config.overrides {
            net.links[from * nodes + to] = link;
        }
        net
    }

    /// Decides the fate of a message from `from` to `to`, drawing from `rng`.
    #[inline]
    pub fn route(&self, from: usize, to: usize, rng: &mut Rng) -> Fate {
        let n = self.nodes;
        let link = if from < n && to < n {
            if self.blocked[from * n + to] {
                return Fate::Drop("partition");
            }
            &self.links[from * n + to]
        } else {
            let d = rng.between(self.default.latency_min_ns, self.default.latency_max_ns);
            return Fate::Deliver {
                delays_ns: [d, 0],
                copies: 1,
            };
        };
        if rng.chance(link.loss) {
            return Fate::Drop("loss");
        }
        let mut delays_ns = [0u64; 2];
        let copies = if rng.chance(link.duplicate) { 2 } else { 1 };
        for d in delays_ns.iter_mut().take(copies as usize) {
            *d = rng.between(link.latency_min_ns, link.latency_max_ns);
            if rng.chance(link.reorder) {
                *d += rng.between(0, link.reorder_delay_max_ns);
            }
        }
        Fate::Deliver { delays_ns, copies }
    }

    /// Blocks traffic between different groups; nodes in no group form one more group.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let n = self.nodes;
        let mut group_of = vec![usize::MAX; n];
        for (g, members) in groups.iter().enumerate() {
            for &m in members {
                group_of[m] = g;
            }
        }
        for a in 0..n {
            for b in 0..n {
                if group_of[a] != group_of[b] {
                    self.blocked[a * n + b] = true;
                }
            }
        }
    }

    /// Blocks messages from any of `from` to any of `to`.
    pub fn partition_one_way(&mut self, from: &[usize], to: &[usize]) {
        for &a in from {
            for &b in to {
                self.blocked[a * self.nodes + b] = true;
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// True if `from` can currently send to `to`.
    pub fn connected(&self, from: usize, to: usize) -> bool {
        !self.blocked[from * self.nodes + to]
    }

    /// Changes one directed link, or every link (and the default) when `link` is None.
    pub fn set_link(&mut self, link: Option<(usize, usize)>, config: LinkConfig) {
        match link {
            Some((a, b)) => self.links[a * self.nodes + b] = config,
            None => {
                self.default = config;
                self.links.iter_mut().for_each(|l| *l = config);
            }
        }
    }

    /// The current default link.
    pub fn default_link(&self) -> LinkConfig {
        self.default
    }
}
