//! The wait-for graph between lock sessions, and the cycle search that finds
//! deadlocks in it.
//!
//! Edge rule: a session waiting on a lock has an edge to
//! - every other session holding that lock in a mode that conflicts with the
//!   requested one (for an upgrade: every other holder), and
//! - every session queued ahead of it on that lock whose requested mode
//!   conflicts with its own. Queues are FIFO, so it cannot be granted before
//!   them, and once they are granted they hold in a conflicting mode.
//!
//! A compatible earlier waiter (shared ahead of shared) gets no edge: whatever
//! blocks it, a conflicting holder or earlier waiter, conflicts with the later
//! one too, which therefore has that edge itself. With this rule every waiter
//! has at least one edge, and a cycle is exactly a set of waiting sessions
//! none of which can be granted before another in the set lets go.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{Mode, SessionId};

/// The sessions the waiter at `queue[pos]` waits for, given the lock's
/// `holders` (queue entries are `(session, requested mode)`); sorted, no duplicates.
pub fn waits_for(
    holders: &[(SessionId, Mode)],
    queue: &[(SessionId, Mode)],
    pos: usize,
) -> Vec<SessionId> {
    let (me, mode) = queue[pos];
    // An upgrading session is both a holder and a waiter: skip itself.
    let blocking_holders = holders
        .iter()
        .filter(|&&(s, held)| s != me && !held.compatible(mode));
    let blocking_waiters = queue[..pos]
        .iter()
        .filter(|&&(_, asked)| !asked.compatible(mode));
    let out: BTreeSet<SessionId> = blocking_holders
        .chain(blocking_waiters)
        .map(|&(s, _)| s)
        .collect();
    out.into_iter().collect()
}

/// A directed graph of sessions: an edge `a -> b` means `a` waits for `b`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitForGraph {
    out: BTreeMap<SessionId, BTreeSet<SessionId>>,
}

impl WaitForGraph {
    /// A graph with the given edges `(waiting, waited_for)`.
    pub fn from_edges(edges: impl IntoIterator<Item = (SessionId, SessionId)>) -> Self {
        let mut g = Self::default();
        for (from, to) in edges {
            g.out.entry(from).or_default().insert(to);
        }
        g
    }

    /// All edges, sorted.
    pub fn edges(&self) -> Vec<(SessionId, SessionId)> {
        self.out
            .iter()
            .flat_map(|(&from, tos)| tos.iter().map(move |&to| (from, to)))
            .collect()
    }

    /// A cycle through `start`, listed from `start` in edge order, or None.
    ///
    /// Depth-first, successors in ascending order, so the same graph always
    /// yields the same cycle.
    pub fn cycle_through(&self, start: SessionId) -> Option<Vec<SessionId>> {
        let mut path = vec![start];
        let mut stack = vec![self.successors(start)];
        // A node explored once cannot lead back to `start` on a second visit
        // either: plain reachability, so each node is expanded at most once.
        let mut seen = BTreeSet::from([start]);
        while let Some(top) = stack.last_mut() {
            match top.next() {
                Some(next) if next == start => return Some(path),
                Some(next) => {
                    if seen.insert(next) {
                        path.push(next);
                        stack.push(self.successors(next));
                    }
                }
                None => {
                    stack.pop();
                    path.pop();
                }
            }
        }
        None
    }

    /// Some cycle (the first found through the lowest session on any), or None.
    pub fn find_cycle(&self) -> Option<Vec<SessionId>> {
        self.out.keys().find_map(|&s| self.cycle_through(s))
    }

    fn successors(&self, s: SessionId) -> impl Iterator<Item = SessionId> {
        self.out.get(&s).into_iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Mode::{Exclusive as X, Shared as S};

    #[test]
    fn exclusive_waiter_waits_for_every_other_holder() {
        assert_eq!(waits_for(&[(1, S), (2, S)], &[(3, X)], 0), vec![1, 2]);
    }

    #[test]
    fn shared_waiter_does_not_wait_for_shared_holders() {
        // Only possible behind a conflicting waiter; the holders are not the reason.
        assert_eq!(waits_for(&[(1, S)], &[(2, X), (3, S)], 1), vec![2]);
    }

    #[test]
    fn shared_waiter_waits_for_exclusive_holder_not_for_shared_waiter_ahead() {
        assert_eq!(waits_for(&[(1, X)], &[(2, S), (3, S)], 1), vec![1]);
    }

    #[test]
    fn waiter_waits_for_conflicting_earlier_waiters() {
        let queue = [(2, S), (3, X), (4, S), (5, X)];
        assert_eq!(waits_for(&[(1, X)], &queue, 3), vec![1, 2, 3, 4]);
        assert_eq!(waits_for(&[(1, X)], &queue, 2), vec![1, 3]);
    }

    #[test]
    fn upgrade_waits_for_the_other_holders_not_itself() {
        assert_eq!(
            waits_for(&[(1, S), (2, S), (3, S)], &[(2, X)], 0),
            vec![1, 3]
        );
    }

    #[test]
    fn edges_are_sorted_and_deduplicated() {
        let g = WaitForGraph::from_edges([(3, 1), (1, 2), (3, 1), (1, 0)]);
        assert_eq!(g.edges(), vec![(1, 0), (1, 2), (3, 1)]);
    }

    #[test]
    fn two_cycle_is_found_from_either_end() {
        let g = WaitForGraph::from_edges([(1, 2), (2, 1)]);
        assert_eq!(g.cycle_through(1), Some(vec![1, 2]));
        assert_eq!(g.cycle_through(2), Some(vec![2, 1]));
    }

    #[test]
    fn three_cycle_is_listed_in_edge_order() {
        let g = WaitForGraph::from_edges([(5, 9), (9, 7), (7, 5)]);
        assert_eq!(g.cycle_through(7), Some(vec![7, 5, 9]));
    }

    #[test]
    fn cycle_not_through_start_is_not_reported() {
        // 1 reaches the cycle 2 <-> 3 but is not on it.
        let g = WaitForGraph::from_edges([(1, 2), (2, 3), (3, 2)]);
        assert_eq!(g.cycle_through(1), None);
        assert_eq!(g.find_cycle(), Some(vec![2, 3]));
    }

    #[test]
    fn acyclic_graph_has_no_cycle() {
        let g = WaitForGraph::from_edges([(1, 2), (1, 3), (2, 3), (3, 4)]);
        assert_eq!(g.find_cycle(), None);
        assert_eq!(WaitForGraph::default().find_cycle(), None);
    }

    #[test]
    fn lowest_successor_is_explored_first() {
        // Two cycles through 1: via 2 and via 3; the search picks the one via 2.
        let g = WaitForGraph::from_edges([(1, 3), (1, 2), (2, 1), (3, 1)]);
        assert_eq!(g.cycle_through(1), Some(vec![1, 2]));
    }

    #[test]
    fn dead_end_branches_are_skipped() {
        let g = WaitForGraph::from_edges([(1, 2), (2, 4), (4, 5), (1, 3), (3, 4), (3, 1)]);
        assert_eq!(g.cycle_through(1), Some(vec![1, 3]));
    }
}
