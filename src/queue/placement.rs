//! Which shard holds each partition: the queue's routing table, replicated
//! by Raft so that every node routes identically.
//!
//! The table changes only through applied log entries. A ring change bumps
//! the epoch and marks every partition whose shard changed as moving; a
//! moving partition is served by nobody until the leader has copied it and
//! the `Moved` entry commits. Ring changes asked for while partitions are
//! still moving wait their turn, so at most one epoch is ever in transit.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

use super::functions::Partition;
use super::ring::{Ring, ShardId};

/// A replicated change to the queue's placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RingCommand {
    /// Put a shard on the ring (no effect if it is on it).
    Add(ShardId),
    /// Take a shard off the ring (no effect if absent or the last one).
    Remove(ShardId),
    /// The leader finished copying `partition` for ring epoch `epoch`.
    Moved { partition: Partition, epoch: u64 },
}

/// One partition in transit between shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub from: ShardId,
    pub to: ShardId,
}

/// Where a request for a partition should go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Shard(ShardId),
    /// Being copied to another shard: try again shortly.
    Moving,
}

/// The replicated placement of partitions on shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    epoch: u64,
    ring: Ring,
    owner: Vec<ShardId>,
    moving: BTreeMap<Partition, Move>,
    deferred: VecDeque<RingCommand>,
    /// The ring's shards at each epoch, epoch 0 first.
    history: Vec<Vec<ShardId>>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement::none()
    }
}

/// What applying a command changed, for the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Nothing,
    /// The ring changed: new epoch and members.
    Ring {
        epoch: u64,
        shards: Vec<ShardId>,
    },
    /// A partition finished moving.
    Moved {
        partition: Partition,
        from: ShardId,
        to: ShardId,
    },
}

/// The ring key of a partition: fixed bytes, so placement never depends on
/// anything but the partition's number and the ring.
fn partition_key(p: Partition) -> Vec<u8> {
    format!("partition-{p}").into_bytes()
}

impl Placement {
    /// The placement at epoch 0: `initial` shards, `partitions` partitions.
    pub fn new(initial: &[ShardId], vnodes: u32, partitions: u32) -> Self {
        let mut ring = Ring::new(vnodes);
        for &s in initial {
            ring.add(s);
        }
        let owner = (0..partitions)
            .map(|p| ring.shard_for(&partition_key(p)).unwrap_or(0))
            .collect();
        Placement {
            epoch: 0,
            history: vec![ring.shards()],
            ring,
            owner,
            moving: BTreeMap::new(),
            deferred: VecDeque::new(),
        }
    }

    /// An empty placement for clusters without a queue.
    pub fn none() -> Self {
        Placement::new(&[], 1, 0)
    }

    /// The ring epoch: bumped by every change of members.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Total partitions over all queues.
    pub fn partitions(&self) -> u32 {
        self.owner.len() as u32
    }

    /// Shards on the ring, ascending.
    pub fn shards(&self) -> Vec<ShardId> {
        self.ring.shards()
    }

    /// The ring's shards at every epoch so far, epoch 0 first.
    pub fn history(&self) -> &[Vec<ShardId>] {
        &self.history
    }

    /// Virtual nodes per shard.
    pub fn vnodes(&self) -> u32 {
        self.ring.vnodes()
    }

    /// Where requests for `p` go now (None for an unknown partition).
    pub fn route(&self, p: Partition) -> Option<Route> {
        let owner = *self.owner.get(p as usize)?;
        Some(if self.moving.contains_key(&p) {
            Route::Moving
        } else {
            Route::Shard(owner)
        })
    }

    /// Partitions in transit, in partition order.
    pub fn moves(&self) -> impl Iterator<Item = (Partition, Move)> + '_ {
        self.moving.iter().map(|(&p, &m)| (p, m))
    }

    /// Applies one committed command; changes that arrive while partitions
    /// are moving are kept and applied, in order, once the last one lands.
    pub fn apply(&mut self, cmd: RingCommand) -> Vec<Applied> {
        let mut out = Vec::new();
        match cmd {
            RingCommand::Moved { partition, epoch } => {
                if epoch == self.epoch
                    && let Some(m) = self.moving.remove(&partition)
                {
                    out.push(Applied::Moved {
                        partition,
                        from: m.from,
                        to: m.to,
                    });
                }
            }
            change if !self.moving.is_empty() => self.deferred.push_back(change),
            change => out.push(self.change_ring(change)),
        }
        while self.moving.is_empty() {
            let Some(change) = self.deferred.pop_front() else {
                break;
            };
            out.push(self.change_ring(change));
        }
        out.retain(|a| *a != Applied::Nothing);
        out
    }

    fn change_ring(&mut self, change: RingCommand) -> Applied {
        let mut ring = self.ring.clone();
        match change {
            RingCommand::Add(s) => ring.add(s),
            // The last shard stays: a queue with nowhere to live loses everything.
            RingCommand::Remove(s) if self.ring.shards() != [s] => ring.remove(s),
            _ => return Applied::Nothing,
        }
        if ring == self.ring {
            return Applied::Nothing;
        }
        self.ring = ring;
        self.epoch += 1;
        self.history.push(self.ring.shards());
        for p in 0..self.owner.len() {
            let to = self.ring.shard_for(&partition_key(p as Partition));
            let from = self.owner[p];
            if let Some(to) = to
                && to != from
            {
                self.owner[p] = to;
                self.moving.insert(p as Partition, Move { from, to });
            }
        }
        Applied::Ring {
            epoch: self.epoch,
            shards: self.ring.shards(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_shard_takes_some_partitions_which_move_until_marked_done() {
        let mut p = Placement::new(&[0, 1, 2], 64, 64);
        assert!(
            (0..64).all(|i| matches!(p.route(i), Some(Route::Shard(s)) if s < 3)),
            "all partitions on the first three shards"
        );
        let applied = p.apply(RingCommand::Add(3));
        assert_eq!(
            applied,
            vec![Applied::Ring {
                epoch: 1,
                shards: vec![0, 1, 2, 3]
            }]
        );
        let moves: Vec<_> = p.moves().collect();
        assert!(!moves.is_empty() && moves.len() < 32, "{moves:?}");
        assert!(moves.iter().all(|(_, m)| m.to == 3 && m.from < 3));
        let (first, _) = moves[0];
        assert_eq!(p.route(first), Some(Route::Moving));
        // A stale epoch's completion changes nothing.
        assert!(
            p.apply(RingCommand::Moved {
                partition: first,
                epoch: 0
            })
            .is_empty()
        );
        for (part, m) in &moves {
            let a = p.apply(RingCommand::Moved {
                partition: *part,
                epoch: 1,
            });
            assert_eq!(
                a,
                vec![Applied::Moved {
                    partition: *part,
                    from: m.from,
                    to: 3
                }]
            );
            assert_eq!(p.route(*part), Some(Route::Shard(3)));
        }
        assert_eq!(p.moves().count(), 0);
    }

    #[test]
    fn changes_wait_for_moves_and_the_last_shard_stays() {
        let mut p = Placement::new(&[0], 16, 32);
        assert!(
            p.apply(RingCommand::Remove(0)).is_empty(),
            "last shard kept"
        );
        assert!(p.apply(RingCommand::Add(0)).is_empty(), "already a member");
        assert_eq!(p.apply(RingCommand::Add(1)).len(), 1);
        assert!(p.moves().count() > 0);
        assert!(p.apply(RingCommand::Remove(0)).is_empty(), "deferred");
        assert_eq!(p.epoch(), 1);
        let moves: Vec<_> = p.moves().map(|(q, _)| q).collect();
        let mut last = Vec::new();
        for q in moves {
            last = p.apply(RingCommand::Moved {
                partition: q,
                epoch: 1,
            });
        }
        // The deferred removal ran as the last move landed.
        assert!(last.contains(&Applied::Ring {
            epoch: 2,
            shards: vec![1]
        }));
        assert!(p.moves().all(|(_, m)| m.from == 0 && m.to == 1));
        assert_eq!(
            p.moves().count() as u32
                + (0..32)
                    .filter(|&q| p.route(q) == Some(Route::Shard(1)))
                    .count() as u32,
            32
        );
    }
}
