//! The lock service's safety, checked online on every node's applied events.
//!
//! Every node applies the same log, so every node's view must be safe on its
//! own: no two sessions hold one lock in conflicting modes; a new grant's
//! fencing token is above every earlier one on that lock (grants made by one
//! entry share its index, so only shared batches may tie); and a reported
//! deadlock is a real cycle of waits at that point, broken at its youngest
//! session.

use std::collections::BTreeMap;

use super::raft_safety::Violation;
use crate::trace::{NodeId, TraceEvent};

#[derive(Clone, Debug, Default)]
struct View {
    /// lock -> session -> (mode, token)
    holders: BTreeMap<u32, BTreeMap<u64, (&'static str, u64)>>,
    /// lock -> queue of (session, requested mode), oldest first
    queues: BTreeMap<u32, Vec<(u64, &'static str)>>,
    /// lock -> (highest token, whether every grant at that token was shared)
    last_token: BTreeMap<u32, (u64, bool)>,
    /// Highest log index applied, to tell a snapshot install from compaction.
    applied: u64,
    /// False once the node loaded state from a snapshot: holders and queues
    /// from before it are unknown, so cycles through them cannot be judged.
    complete: bool,
}

impl View {
    fn fresh(complete: bool) -> Self {
        View {
            complete,
            ..View::default()
        }
    }
}

fn conflicts(a: &str, b: &str) -> bool {
    a == "exclusive" || b == "exclusive"
}

/// The online lock checker for one cluster.
pub struct LockChecker {
    nodes: Vec<View>,
}

type Check = Result<(), Violation>;

fn fail(invariant: &'static str, node: NodeId, detail: String) -> Check {
    Err(Violation {
        invariant,
        detail,
        nodes: vec![node],
    })
}

impl LockChecker {
    /// A checker for `n` nodes.
    pub fn new(n: usize) -> Self {
        LockChecker {
            nodes: vec![View::fresh(true); n],
        }
    }

    /// A restarted node re-applies its log from its snapshot (if any): its
    /// view starts over, complete only if there was no snapshot.
    pub fn on_restart(&mut self, node: NodeId, snapshot_index: u64) {
        self.nodes[node] = View::fresh(snapshot_index == 0);
        self.nodes[node].applied = snapshot_index;
    }

    /// Checks one applied lock event of `node`.
    pub fn observe(&mut self, node: NodeId, ev: &TraceEvent) -> Check {
        let v = &mut self.nodes[node];
        match ev {
            TraceEvent::RaftApply { index, .. } => v.applied = *index,
            TraceEvent::RaftSnapshot { index, .. } if *index > v.applied => {
                // A snapshot install replaces the state this view was built from.
                *v = View::fresh(false);
                v.applied = *index;
            }
            TraceEvent::LockGrant {
                lock,
                session,
                mode,
                token,
                ..
            } => {
                if let Some(q) = v.queues.get_mut(lock) {
                    q.retain(|(s, _)| s != session);
                }
                let held = v.holders.entry(*lock).or_default();
                let fresh = held.get(session).is_none_or(|(_, t)| t != token);
                held.insert(*session, (mode, *token));
                // Mutual exclusion: conflicting modes are never held together.
                for (other, (m, _)) in held.iter() {
                    if other != session && conflicts(mode, m) {
                        return fail(
                            "Lock exclusion",
                            node,
                            format!(
                                "lock {lock} granted {mode} to session {session} while session {other} holds it {m}"
                            ),
                        );
                    }
                }
                if fresh {
                    // Fencing: a new grant's token beats every earlier grant's.
                    let (last, all_shared) = v.last_token.get(lock).copied().unwrap_or((0, true));
                    let shared = *mode == "shared";
                    let ok = *token > last || (*token == last && shared && all_shared);
                    if !ok {
                        return fail(
                            "Fencing tokens increase",
                            node,
                            format!(
                                "lock {lock} granted to session {session} with token {token}, not above the earlier token {last}"
                            ),
                        );
                    }
                    let all = if *token == last {
                        all_shared && shared
                    } else {
                        shared
                    };
                    v.last_token.insert(*lock, (*token, all));
                }
            }
            TraceEvent::LockWait {
                lock,
                session,
                mode,
            } => v.queues.entry(*lock).or_default().push((*session, mode)),
            TraceEvent::LockRelease {
                lock,
                session,
                holds,
            } => {
                if *holds == 0
                    && let Some(h) = v.holders.get_mut(lock)
                {
                    h.remove(session);
                }
            }
            TraceEvent::LockFail {
                session,
                lock: Some(lock),
                ..
            } => {
                if let Some(q) = v.queues.get_mut(lock) {
                    q.retain(|(s, _)| s != session);
                }
            }
            TraceEvent::LockSession { session, what, .. } if *what != "opened" => {
                for h in v.holders.values_mut() {
                    h.remove(session);
                }
                for q in v.queues.values_mut() {
                    q.retain(|(s, _)| s != session);
                }
            }
            TraceEvent::LockDeadlock { cycle, victim } if v.complete => {
                return check_cycle(v, node, cycle, *victim);
            }
            _ => {}
        }
        Ok(())
    }
}

/// A reported deadlock must be a real cycle of waits now, reported at its youngest session.
fn check_cycle(v: &View, node: NodeId, cycle: &[u64], victim: u64) -> Check {
    if cycle.iter().max() != Some(&victim) {
        return fail(
            "Deadlock victim",
            node,
            format!("cycle {cycle:?}: the victim {victim} is not its youngest session"),
        );
    }
    for (i, &a) in cycle.iter().enumerate() {
        let b = cycle[(i + 1) % cycle.len()];
        if !waits_for(v, a, b) {
            return fail(
                "Deadlock is real",
                node,
                format!("cycle {cycle:?}: session {a} does not wait for session {b}"),
            );
        }
    }
    Ok(())
}

/// True if `a` waits on some lock that `b` holds, or waits for ahead of `a`, in a conflicting mode.
fn waits_for(v: &View, a: u64, b: u64) -> bool {
    v.queues.iter().any(|(lock, q)| {
        let Some(pos) = q.iter().position(|(s, _)| *s == a) else {
            return false;
        };
        let want = q[pos].1;
        let held = v.holders.get(lock).is_some_and(|h| {
            h.get(&b)
                .is_some_and(|(m, _)| conflicts(want, m) || h.contains_key(&a))
        });
        let ahead = q[..pos].iter().any(|(s, m)| *s == b && conflicts(want, m));
        held || ahead
    })
}

#[cfg(test)]
mod tests {
    //! Each property, fed a hand-made event sequence that breaks it.
    use super::*;

    fn grant(lock: u32, session: u64, mode: &'static str, token: u64) -> TraceEvent {
        TraceEvent::LockGrant {
            lock,
            session,
            mode,
            token,
            holds: 1,
        }
    }

    fn feed(events: &[TraceEvent]) -> Option<&'static str> {
        let mut c = LockChecker::new(1);
        events
            .iter()
            .find_map(|e| c.observe(0, e).err())
            .map(|v| v.invariant)
    }

    #[test]
    fn a_correct_sequence_passes() {
        let evs = [
            grant(1, 10, "shared", 5),
            grant(1, 11, "shared", 5),
            TraceEvent::LockRelease {
                lock: 1,
                session: 10,
                holds: 0,
            },
            TraceEvent::LockRelease {
                lock: 1,
                session: 11,
                holds: 0,
            },
            grant(1, 12, "exclusive", 9),
            TraceEvent::LockGrant {
                lock: 1,
                session: 12,
                mode: "exclusive",
                token: 9,
                holds: 2,
            },
        ];
        assert_eq!(feed(&evs), None);
    }

    #[test]
    fn conflicting_holders_are_caught() {
        assert_eq!(
            feed(&[grant(1, 10, "exclusive", 5), grant(1, 11, "shared", 6)]),
            Some("Lock exclusion")
        );
        assert_eq!(
            feed(&[grant(1, 10, "shared", 5), grant(1, 11, "exclusive", 6)]),
            Some("Lock exclusion")
        );
    }

    #[test]
    fn an_expired_session_no_longer_holds() {
        let evs = [
            grant(1, 10, "exclusive", 5),
            TraceEvent::LockSession {
                session: 10,
                client: None,
                what: "expired",
            },
            grant(1, 11, "exclusive", 7),
        ];
        assert_eq!(feed(&evs), None);
    }

    #[test]
    fn tokens_that_do_not_increase_are_caught() {
        let release = TraceEvent::LockRelease {
            lock: 1,
            session: 10,
            holds: 0,
        };
        assert_eq!(
            feed(&[
                grant(1, 10, "exclusive", 5),
                release.clone(),
                grant(1, 11, "exclusive", 5)
            ]),
            Some("Fencing tokens increase")
        );
        assert_eq!(
            feed(&[
                grant(1, 10, "exclusive", 5),
                release,
                grant(1, 11, "shared", 4)
            ]),
            Some("Fencing tokens increase")
        );
    }

    #[test]
    fn reported_deadlocks_must_be_real_and_broken_at_the_youngest() {
        // 10 holds A and waits for B; 11 holds B and waits for A: a real 2-cycle.
        let setup = [
            grant(1, 10, "exclusive", 3),
            grant(2, 11, "exclusive", 4),
            TraceEvent::LockWait {
                lock: 2,
                session: 10,
                mode: "exclusive",
            },
            TraceEvent::LockWait {
                lock: 1,
                session: 11,
                mode: "exclusive",
            },
        ];
        let real = TraceEvent::LockDeadlock {
            cycle: vec![11, 10],
            victim: 11,
        };
        assert_eq!(feed(&[&setup[..], &[real]].concat()), None);
        let wrong_victim = TraceEvent::LockDeadlock {
            cycle: vec![10, 11],
            victim: 10,
        };
        assert_eq!(
            feed(&[&setup[..], &[wrong_victim]].concat()),
            Some("Deadlock victim")
        );
        // Without 11's wait there is no cycle to report.
        let imagined = TraceEvent::LockDeadlock {
            cycle: vec![11, 10],
            victim: 11,
        };
        assert_eq!(
            feed(&[&setup[..3], &[imagined]].concat()),
            Some("Deadlock is real")
        );
    }
}
