//! The lock service's safety, checked online on every node's applied events.
//!
//! Every node applies the same log, so every node's view must be safe on its
//! own: no two sessions hold one lock in conflicting modes; a new grant's
//! fencing token is above every earlier one on that lock (grants made by one
//! entry share its index, so only shared batches may tie); and a reported
//! deadlock is a real cycle of waits at that point, broken at its youngest
//! session.

use std::collections::{BTreeMap, BTreeSet};

use super::raft_safety::Violation;
use crate::lock::Mode;
use crate::lock::wait_for::{self, WaitForGraph};
use crate::trace::{NodeId, TraceEvent};

#[derive(Clone, Debug, Default)]
struct View {
    /// lock -> session -> (mode, token)
    holders: BTreeMap<u32, BTreeMap<u64, (&'static str, u64)>>,
    /// lock -> queue of (session, requested mode), oldest first
    queues: BTreeMap<u32, Vec<(u64, &'static str)>>,
    /// (session, lock) -> simulated time its wait began
    waiting_since: BTreeMap<(u64, u32), u64>,
    /// lock -> (highest token, whether every grant at that token was shared)
    last_token: BTreeMap<u32, (u64, bool)>,
    /// Highest log index applied, to tell a snapshot install from compaction.
    applied: u64,
    /// False once the node loaded state from a snapshot: holders and queues
    /// from before it are unknown, so cycles through them cannot be judged.
    complete: bool,
    counts: LockCounts,
}

/// What one node's lock service did (new grants, releases to zero,
/// expiries, deadlocks broken), for run summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockCounts {
    pub grants: u64,
    pub releases: u64,
    pub expiries: u64,
    pub deadlocks: u64,
}

impl View {
    fn fresh(complete: bool) -> Self {
        View {
            complete,
            ..View::default()
        }
    }
}

fn mode_of(m: &str) -> Mode {
    if m == "shared" {
        Mode::Shared
    } else {
        Mode::Exclusive
    }
}

fn conflicts(a: &str, b: &str) -> bool {
    a == "exclusive" || b == "exclusive"
}

/// The online lock checker for one cluster.
#[derive(Clone)]
pub struct LockChecker {
    nodes: Vec<View>,
    /// At the resource: lock -> client -> token of each writer inside its
    /// critical section (an accepted begin, no end yet).
    inside: BTreeMap<u32, BTreeMap<u32, u64>>,
    /// (lock, writer, token) pushed out by a higher token: no write of that
    /// writer with that token may be accepted again.
    fenced: BTreeSet<(u32, u32, u64)>,
    /// session -> (simulated time of its last acknowledged renewal, ttl)
    renewed: BTreeMap<u64, (u64, u64)>,
    /// Sessions whose expiry was already judged (every node applies it).
    expired: BTreeSet<u64>,
    /// When each ended session (closed or expired) was first seen ended.
    ends: BTreeMap<u64, u64>,
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
    /// Estimated bytes kept: the per-session and per-token records, which
    /// grow with the sessions and writers of a run.
    pub fn retained_bytes(&self) -> u64 {
        use crate::sim::budget::entries;
        entries::<(u32, u32, u64)>(self.fenced.len())
            + entries::<(u64, (u64, u64))>(self.renewed.len())
            + entries::<u64>(self.expired.len())
            + entries::<(u64, u64)>(self.ends.len())
    }

    /// A checker for `n` nodes.
    pub fn new(n: usize) -> Self {
        LockChecker {
            nodes: vec![View::fresh(true); n],
            inside: BTreeMap::new(),
            fenced: BTreeSet::new(),
            renewed: BTreeMap::new(),
            expired: BTreeSet::new(),
            ends: BTreeMap::new(),
        }
    }

    /// A restarted node re-applies its log from its snapshot (if any): its
    /// view starts over, complete only if there was no snapshot.
    pub fn on_restart(&mut self, node: NodeId, snapshot_index: u64) {
        self.nodes[node] = View::fresh(snapshot_index == 0);
        self.nodes[node].applied = snapshot_index;
    }

    /// The lock service's activity as seen by the node that applied the most
    /// (every node applies the same log; a crashed one sees less).
    pub fn counts(&self) -> LockCounts {
        self.nodes
            .iter()
            .map(|v| v.counts)
            .max_by_key(|c| (c.grants, c.releases, c.expiries, c.deadlocks))
            .unwrap_or_default()
    }

    /// Every ended session and when it was first seen ended.
    pub fn session_ends(&self) -> Vec<(u64, u64)> {
        self.ends.iter().map(|(&s, &t)| (s, t)).collect()
    }

    /// Liveness at the end of a run, on the live nodes whose view is
    /// complete: no request has waited longer than `bound_ns` (the wait
    /// timeout plus time to elect a leader), and no wait-for cycle is left.
    pub fn at_end(&self, live: &[NodeId], end_ns: u64, bound_ns: u64) -> Result<(), String> {
        for &n in live {
            let v = &self.nodes[n];
            if !v.complete {
                continue;
            }
            for (lock, q) in &v.queues {
                for (session, _) in q {
                    let since = v
                        .waiting_since
                        .get(&(*session, *lock))
                        .copied()
                        .unwrap_or(end_ns);
                    if end_ns.saturating_sub(since) > bound_ns {
                        return Err(format!(
                            "n{}: session {session} has waited for lock {lock} since {} ms, longer than the {} ms bound",
                            n + 1,
                            since / 1_000_000,
                            bound_ns / 1_000_000
                        ));
                    }
                }
            }
            let mut edges = Vec::new();
            for (lock, q) in &v.queues {
                let (holders, queue) = modes(v, *lock, q);
                for pos in 0..queue.len() {
                    edges.extend(
                        wait_for::waits_for(&holders, &queue, pos)
                            .into_iter()
                            .map(|b| (queue[pos].0, b)),
                    );
                }
            }
            if let Some(cycle) = WaitForGraph::from_edges(edges).find_cycle() {
                return Err(format!(
                    "n{}: the wait-for cycle {cycle:?} was never broken",
                    n + 1
                ));
            }
        }
        Ok(())
    }

    /// Checks an event of the protected resource or a lock client, at simulated time `t_ns`.
    pub fn observe_world(&mut self, ev: &TraceEvent, t_ns: u64) -> Check {
        match *ev {
            TraceEvent::ResourceWrite {
                client,
                lock,
                token,
                begin,
                accepted,
            } => self.on_write(client, lock, token, begin, accepted),
            TraceEvent::LockRenewed {
                session,
                ttl,
                age_ns,
            } => {
                // The lease runs from when the acknowledged renewal was sent.
                self.renewed
                    .insert(session, (t_ns.saturating_sub(age_ns), ttl));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Exclusion where it matters, at the resource: a higher token pushes
    /// earlier writers out, and nothing from a pushed-out writer is accepted.
    fn on_write(
        &mut self,
        client: u32,
        lock: u32,
        token: u64,
        begin: bool,
        accepted: bool,
    ) -> Check {
        let inside = self.inside.entry(lock).or_default();
        if !accepted {
            inside.remove(&client);
            return Ok(());
        }
        if self.fenced.contains(&(lock, client, token)) {
            return Err(Violation {
                invariant: "Fencing at the resource",
                detail: format!(
                    "the resource accepted a write to lock {lock} from c{} with token {token} after a higher token had pushed it out",
                    client + 1
                ),
                nodes: vec![],
            });
        }
        if !begin {
            inside.remove(&client);
            return Ok(());
        }
        for (&other, &t) in inside.iter() {
            if other != client && t >= token {
                return Err(Violation {
                    invariant: "Exclusion at the resource",
                    detail: format!(
                        "c{} entered lock {lock} with token {token} while c{} is inside with token {t}",
                        client + 1,
                        other + 1
                    ),
                    nodes: vec![],
                });
            }
        }
        let pushed: Vec<(u32, u64)> = inside
            .iter()
            .map(|(&o, &t)| (o, t))
            .filter(|&(o, _)| o != client)
            .collect();
        for (other, t) in pushed {
            inside.remove(&other);
            self.fenced.insert((lock, other, t));
        }
        inside.insert(client, token);
        Ok(())
    }

    /// Checks one applied lock event of `node` at simulated time `t_ns`.
    pub fn observe(&mut self, node: NodeId, ev: &TraceEvent, t_ns: u64) -> Check {
        if let TraceEvent::LockSession {
            session,
            what: "closed" | "expired",
            ..
        } = ev
        {
            self.ends.entry(*session).or_insert(t_ns);
        }
        if let TraceEvent::LockSession {
            session,
            what: "expired",
            ..
        } = ev
            && self.expired.insert(*session)
            && let Some(&(renewed, ttl)) = self.renewed.get(session)
        {
            // A lease ends only after a whole TTL of silence on some leader's
            // clock. Half a TTL of slack covers drift and message delays; an
            // expiry sooner after an acknowledged renewal freed a live lock.
            if t_ns < renewed + ttl / 2 {
                return fail(
                    "Lease honoured",
                    node,
                    format!(
                        "session {session} expired {} ms after its client sent a renewal that was acknowledged, with a TTL of {} ms",
                        (t_ns - renewed) / 1_000_000,
                        ttl / 1_000_000
                    ),
                );
            }
        }
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
                holds,
            } => {
                if let Some(q) = v.queues.get_mut(lock) {
                    q.retain(|(s, _)| s != session);
                }
                let held = v.holders.entry(*lock).or_default();
                // A new grant (or an upgrade's new token), not a re-entry.
                // A hold count above 1 with no record means a view rebuilt
                // from a snapshot: the earlier grant was never seen here.
                let fresh = match held.get(session) {
                    Some((_, t)) => t != token,
                    None => *holds == 1,
                };
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
                    v.counts.grants += 1;
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
            } => {
                // An upgrade (a holder asking for more) queues ahead of
                // ordinary waiters, behind earlier upgrades, as the service does.
                let holders = v.holders.get(lock);
                let is_upgrade = |s: &u64| holders.is_some_and(|h| h.contains_key(s));
                let q = v.queues.entry(*lock).or_default();
                let at = if is_upgrade(session) {
                    q.iter().take_while(|(s, _)| is_upgrade(s)).count()
                } else {
                    q.len()
                };
                q.insert(at, (*session, mode));
                v.waiting_since.insert((*session, *lock), t_ns);
            }
            TraceEvent::LockRelease {
                lock,
                session,
                holds: 0,
            } => {
                v.counts.releases += 1;
                if let Some(h) = v.holders.get_mut(lock) {
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
                if *what == "expired" {
                    v.counts.expiries += 1;
                }
                for h in v.holders.values_mut() {
                    h.remove(session);
                }
                for q in v.queues.values_mut() {
                    q.retain(|(s, _)| s != session);
                }
            }
            TraceEvent::LockDeadlock { cycle, victim } => {
                v.counts.deadlocks += 1;
                if v.complete {
                    return check_cycle(v, node, cycle, *victim);
                }
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

/// True if `a` waits for `b` by the service's own rule (wait_for.rs):
/// `b` holds the lock `a` waits for in a conflicting mode, or waits ahead
/// of `a` for it in a conflicting mode.
fn waits_for(v: &View, a: u64, b: u64) -> bool {
    v.queues.iter().any(|(lock, q)| {
        let Some(pos) = q.iter().position(|(s, _)| *s == a) else {
            return false;
        };
        let (holders, queue) = modes(v, *lock, q);
        wait_for::waits_for(&holders, &queue, pos).contains(&b)
    })
}

/// The holders and the queue of `lock` as the service's types.
/// (session, mode) pairs, in the service's own types.
type Modes = Vec<(u64, Mode)>;

fn modes(v: &View, lock: u32, q: &[(u64, &'static str)]) -> (Modes, Modes) {
    let holders = v
        .holders
        .get(&lock)
        .map(|h| h.iter().map(|(s, (m, _))| (*s, mode_of(m))).collect())
        .unwrap_or_default();
    let queue = q.iter().map(|(s, m)| (*s, mode_of(m))).collect();
    (holders, queue)
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
            .find_map(|e| c.observe(0, e, 0).err())
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

    fn write(client: u32, token: u64, begin: bool, accepted: bool) -> TraceEvent {
        TraceEvent::ResourceWrite {
            client,
            lock: 1,
            token,
            begin,
            accepted,
        }
    }

    fn feed_world(events: &[TraceEvent]) -> Option<&'static str> {
        let mut c = LockChecker::new(1);
        events
            .iter()
            .find_map(|e| c.observe_world(e, 0).err())
            .map(|v| v.invariant)
    }

    #[test]
    fn a_paused_holder_fenced_out_is_fine_if_its_write_is_refused() {
        let evs = [
            write(0, 5, true, true),
            write(1, 9, true, true),
            write(0, 5, false, false),
            write(1, 9, false, true),
        ];
        assert_eq!(feed_world(&evs), None);
    }

    #[test]
    fn a_fenced_out_write_that_is_accepted_is_caught() {
        let evs = [
            write(0, 5, true, true),
            write(1, 9, true, true),
            write(0, 5, false, true),
        ];
        assert_eq!(feed_world(&evs), Some("Fencing at the resource"));
    }

    #[test]
    fn entering_below_the_writer_inside_is_caught() {
        assert_eq!(
            feed_world(&[write(0, 9, true, true), write(1, 5, true, true)]),
            Some("Exclusion at the resource")
        );
    }

    #[test]
    fn expiring_a_session_renewed_just_now_is_caught() {
        let mut c = LockChecker::new(1);
        c.observe_world(
            &TraceEvent::LockRenewed {
                session: 7,
                ttl: 1_000_000_000,
                age_ns: 0,
            },
            5_000_000_000,
        )
        .unwrap();
        let expired = TraceEvent::LockSession {
            session: 7,
            client: None,
            what: "expired",
        };
        assert_eq!(
            c.observe(0, &expired, 5_100_000_000).unwrap_err().invariant,
            "Lease honoured"
        );
        let mut c = LockChecker::new(1);
        c.observe_world(
            &TraceEvent::LockRenewed {
                session: 7,
                ttl: 1_000_000_000,
                age_ns: 0,
            },
            5_000_000_000,
        )
        .unwrap();
        assert!(c.observe(0, &expired, 6_200_000_000).is_ok());
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
