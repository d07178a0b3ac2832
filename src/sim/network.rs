//! The network model: per-link latency, loss, duplication, reordering and partitions.

use crate::rng::Rng;
use crate::scenario::{LinkConfig, NetworkConfig};

/// What happens to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered after each delay (two delays = duplicated).
    Deliver { delays_ns: [u64; 2], copies: u8 },
    /// Dropped, with the reason for the trace.
    Drop(&'static str),
}

/// Links between places: the nodes, then the Redis shards. Every other
/// endpoint is a client, which sees the default latency and never loss or
/// partitions (a client's link is not what the scenarios test).
#[derive(Clone)]
pub struct Network {
    nodes: usize,
    /// Endpoint id of the first shard, and how many there are.
    shard_base: usize,
    shards: usize,
    /// Places: nodes + shards; the matrices are places × places.
    places: usize,
    default: LinkConfig,
    links: Vec<LinkConfig>,
    blocked: Vec<bool>,
}

impl Network {
    /// A network with the scenario's defaults and overrides; `shards`
    /// shard endpoints start at endpoint id `shard_base`.
    pub fn new(nodes: usize, shards: usize, shard_base: usize, config: &NetworkConfig) -> Self {
        let places = nodes + shards;
        let mut net = Network {
            nodes,
            shard_base,
            shards,
            places,
            default: config.link,
            links: vec![config.link; places * places],
            blocked: vec![false; places * places],
        };
        for &(from, to, link) in &config.overrides {
            net.links[from * places + to] = link;
        }
        net
    }

    /// The place of an endpoint, if it is a node or a shard.
    #[inline]
    fn place(&self, id: usize) -> Option<usize> {
        if id < self.nodes {
            Some(id)
        } else if id >= self.shard_base && id < self.shard_base + self.shards {
            Some(self.nodes + id - self.shard_base)
        } else {
            None
        }
    }

    /// Decides the fate of a message from `from` to `to`, drawing from `rng`.
    #[inline]
    pub fn route(&self, from: usize, to: usize, rng: &mut Rng) -> Fate {
        let m = self.places;
        let link = if let (Some(a), Some(b)) = (self.place(from), self.place(to)) {
            if self.blocked[a * m + b] {
                return Fate::Drop("partition");
            }
            &self.links[a * m + b]
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

    /// Blocks traffic between different groups of places; places in no
    /// group form one more group.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        let n = self.places;
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
                self.blocked[a * self.places + b] = true;
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// True if place `from` can currently send to place `to`.
    pub fn connected(&self, from: usize, to: usize) -> bool {
        !self.blocked[from * self.places + to]
    }

    /// Changes one directed link, or every link (and the default) when `link` is None.
    pub fn set_link(&mut self, link: Option<(usize, usize)>, config: LinkConfig) {
        match link {
            Some((a, b)) => self.links[a * self.places + b] = config,
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
