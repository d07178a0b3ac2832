//! The lock service's state machine, applied from committed Raft log entries.
//!
//! It is sans-IO and has no clock: leases and wait timeouts are judged by the
//! leader on its own clock and enter the log as explicit `Expire` and
//! `WaitTimeout` commands, so every replica makes every decision at the same
//! log index. Each command is applied with the index `i` of its entry
//! (strictly increasing from call to call), and the outcome depends only on
//! the state and `(i, command)`.
//!
//! Semantics (each point is pinned by unit tests below):
//! - Sessions: `OpenSession` at `i` creates session `i` (unique; a higher id
//!   is a younger session). A command naming a session that does not exist
//!   fails with `NoSession`, or `SessionClosed` / `SessionExpired` while the
//!   id is still remembered; naming a session opened by another client fails
//!   with `WrongClient`. Closing or expiring a session releases everything it
//!   holds whatever the hold counts, fails its waiting request, and grants the
//!   waiters that this unblocks.
//! - Exactly-once: per client, the highest `seq` applied and the events it
//!   produced (a client has one command in flight). A lower `seq` yields just
//!   `[Duplicate]`; the same `seq` yields `Duplicate` then the cached events.
//!   When a request that waited is later granted or failed, that outcome
//!   replaces its cached events: a retry after the lost reply then learns the
//!   outcome instead of "still waiting". `Expire` and `WaitTimeout` are
//!   idempotent instead: on a gone session or request they do nothing.
//! - Modes: Shared is compatible with Shared; Exclusive with nothing held by
//!   another session.
//! - Fairness: a new request is granted at once only if compatible with the
//!   holders and nobody waits on the lock; otherwise it waits (`wait`) or
//!   fails with `WouldBlock`. Whenever holders or the queue change, waiters
//!   are granted from the front while compatible, so a run of Shared waiters
//!   is granted together and an Exclusive one at the front blocks those behind.
//! - Re-entry: a session asking for a lock it holds in the same mode, or for
//!   Shared while holding Exclusive, gets one more hold with the same token at
//!   once, even past waiters (it would otherwise wait for itself). A session
//!   holds a lock at most `reentry_limit` times; past that the request fails
//!   with `ReentryLimit` and nothing changes. Release removes one hold.
//! - Upgrade: a Shared holder asking for Exclusive is granted at once if it is
//!   the only holder; otherwise it waits at the front of the queue, ahead of
//!   ordinary waiters, keeping its Shared hold. When granted, the mode becomes
//!   Exclusive, the hold count grows by one and the token is new.
//! - Fencing tokens: each new grant (not a re-entry) gets the index of the
//!   entry whose application granted it, so each lock's tokens strictly
//!   increase from entry to entry. Shared waiters granted together by one
//!   entry share its index; an Exclusive grant is always strictly above every
//!   earlier token of its lock.
//! - One waiting request per session: another `Acquire` meanwhile fails with
//!   `AlreadyWaiting`.
//! - Deadlocks: when a request starts waiting, every new wait-for edge (see
//!   `wait_for` for the edge rule) touches it, so any new cycle goes through
//!   it. While there is such a cycle, its youngest session is the victim: its
//!   waiting request fails with `Deadlock` (it keeps the locks it holds;
//!   its client decides what to do next). Cycles are searched in the current
//!   graph after every victim, so only cycles that exist are reported, and
//!   the graph is acyclic after every command.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::wait_for::{WaitForGraph, waits_for};

/// A session id: the log index of the `OpenSession` entry that created it.
pub type SessionId = u64;
/// A lock's name.
pub type LockId = u32;

/// The re-entry limit of `LockState::default()`.
pub const DEFAULT_REENTRY_LIMIT: u32 = 8;

/// How many closed or expired session ids are remembered for precise errors;
/// the oldest are forgotten first and then report `NoSession`.
const ENDED_MEMORY: usize = 1024;

/// How a lock is held or requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Readers: any number of sessions at once.
    Shared,
    /// A single writer.
    Exclusive,
}

impl Mode {
    /// Whether two different sessions may hold a lock in these modes at once.
    pub fn compatible(self, other: Mode) -> bool {
        self == Mode::Shared && other == Mode::Shared
    }
}

/// One replicated lock command. Must be Copy (it lives inside Raft log entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockCommand {
    /// Opens a session for `client`; its id is this entry's log index.
    OpenSession { client: u32, seq: u64, ttl_ns: u64 },
    /// Ends a session: releases all its holds and fails its waiting request.
    CloseSession {
        client: u32,
        seq: u64,
        session: SessionId,
    },
    /// Asks for `lock` in `mode`; `wait: false` fails at once if not grantable.
    Acquire {
        client: u32,
        seq: u64,
        session: SessionId,
        lock: LockId,
        mode: Mode,
        wait: bool,
    },
    /// Gives back one hold of `lock`.
    Release {
        client: u32,
        seq: u64,
        session: SessionId,
        lock: LockId,
    },
    /// Proposed by the leader when a session's lease ran out on its clock.
    Expire { session: SessionId },
    /// Proposed by the leader when a waiting acquire's wait timeout passed: fails that request if still waiting.
    WaitTimeout {
        session: SessionId,
        lock: LockId,
        seq: u64,
    },
}

impl LockCommand {
    /// The issuing client and its sequence number; None for leader-proposed commands.
    pub fn client_seq(&self) -> Option<(u32, u64)> {
        match *self {
            LockCommand::OpenSession { client, seq, .. }
            | LockCommand::CloseSession { client, seq, .. }
            | LockCommand::Acquire { client, seq, .. }
            | LockCommand::Release { client, seq, .. } => Some((client, seq)),
            LockCommand::Expire { .. } | LockCommand::WaitTimeout { .. } => None,
        }
    }
}

/// Why a lock command failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockError {
    /// The session was never opened, or ended too long ago to be remembered.
    NoSession { session: SessionId },
    /// The session was closed by its client.
    SessionClosed { session: SessionId },
    /// The session's lease ran out and its locks were released.
    SessionExpired { session: SessionId },
    /// The session was opened by another client.
    WrongClient { session: SessionId, owner: u32 },
    /// A release of a lock the session does not hold.
    NotOwner { lock: LockId },
    /// The session already holds the lock `limit` times.
    ReentryLimit { lock: LockId, limit: u32 },
    /// A try-acquire that could not be granted at once.
    WouldBlock { lock: LockId },
    /// The session already waits for `lock`; one waiting request at a time.
    AlreadyWaiting { lock: LockId },
    /// The request was the youngest in this wait-for cycle and was cancelled to break it.
    Deadlock { cycle: Vec<SessionId> },
    /// The leader's wait timeout passed while the request was still waiting.
    TimedOut { lock: LockId },
}

impl LockError {
    /// A short stable name for the error kind (API error codes, metric labels).
    pub fn code(&self) -> &'static str {
        match self {
            LockError::NoSession { .. } => "no_session",
            LockError::SessionClosed { .. } => "session_closed",
            LockError::SessionExpired { .. } => "session_expired",
            LockError::WrongClient { .. } => "wrong_client",
            LockError::NotOwner { .. } => "not_owner",
            LockError::ReentryLimit { .. } => "reentry_limit",
            LockError::WouldBlock { .. } => "would_block",
            LockError::AlreadyWaiting { .. } => "already_waiting",
            LockError::Deadlock { .. } => "deadlock",
            LockError::TimedOut { .. } => "timed_out",
        }
    }
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::NoSession { session } => write!(f, "session {session} does not exist"),
            LockError::SessionClosed { session } => write!(f, "session {session} was closed"),
            LockError::SessionExpired { session } => {
                write!(f, "session {session} expired (its lease ran out)")
            }
            LockError::WrongClient { session, owner } => {
                write!(f, "session {session} belongs to client {owner}")
            }
            LockError::NotOwner { lock } => write!(f, "lock {lock} is not held by this session"),
            LockError::ReentryLimit { lock, limit } => {
                write!(f, "re-entry limit of {limit} reached on lock {lock}")
            }
            LockError::WouldBlock { lock } => {
                write!(f, "lock {lock} cannot be granted without waiting")
            }
            LockError::AlreadyWaiting { lock } => write!(
                f,
                "the session is already waiting for lock {lock} (one waiting request at a time)"
            ),
            LockError::Deadlock { cycle } => {
                write!(f, "deadlock: sessions ")?;
                for s in cycle {
                    write!(f, "{s} -> ")?;
                }
                match cycle.first() {
                    Some(first) => write!(f, "{first} wait for each other"),
                    None => write!(f, "(none) wait for each other"),
                }?;
                write!(f, "; this request was cancelled to break the cycle")
            }
            LockError::TimedOut { lock } => write!(f, "timed out waiting for lock {lock}"),
        }
    }
}

impl std::error::Error for LockError {}

/// What applying one command did; the node turns these into client replies and trace events, the checkers into verdicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockEvent {
    /// A session was opened.
    SessionOpened {
        client: u32,
        seq: u64,
        session: SessionId,
    },
    /// A session was closed; all its holds are gone.
    SessionClosed { session: SessionId },
    /// A session's lease ran out; all its holds are gone.
    SessionExpired { session: SessionId },
    /// A hold was granted (`mode` is the mode now held, `holds` the count after this grant).
    Granted {
        client: u32,
        seq: u64,
        session: SessionId,
        lock: LockId,
        mode: Mode,
        token: u64,
        holds: u32,
    },
    /// The request was queued; a later `Granted` or `Failed` with the same client and seq ends it.
    Waiting {
        client: u32,
        seq: u64,
        session: SessionId,
        lock: LockId,
        mode: Mode,
    },
    /// One hold was given back (`holds` left; 0 = the session no longer holds the lock).
    Released {
        client: u32,
        seq: u64,
        session: SessionId,
        lock: LockId,
        holds: u32,
    },
    /// A request failed (`lock` is None for session commands).
    Failed {
        client: u32,
        seq: u64,
        session: SessionId,
        lock: Option<LockId>,
        error: LockError,
    },
    /// A wait-for cycle, listed from the victim in edge order; the victim's `Failed` follows.
    DeadlockFound {
        cycle: Vec<SessionId>,
        victim: SessionId,
    },
    /// A retried command: the cached outcome follows (none if the seq is older); replayed events change nothing now.
    Duplicate { client: u32, seq: u64 },
}

/// The lock service's replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    reentry_limit: u32,
    /// The last log index applied; session ids and tokens rely on it growing.
    applied: u64,
    sessions: BTreeMap<SessionId, Session>,
    ended: BTreeMap<SessionId, Ended>,
    /// Only locks with holders or waiters: idle locks cost nothing.
    locks: BTreeMap<LockId, LockEntry>,
    /// Kept apart from `locks` because it must outlive idle locks.
    last_tokens: BTreeMap<LockId, u64>,
    replies: BTreeMap<u32, Reply>,
    /// Planted bug `lock.grant_ignores_holders`.
    grant_ignores_holders: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    client: u32,
    ttl_ns: u64,
    held: BTreeSet<LockId>,
    waiting: Option<LockId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Ended {
    Closed,
    Expired,
}

impl Ended {
    fn error(self, session: SessionId) -> LockError {
        match self {
            Ended::Closed => LockError::SessionClosed { session },
            Ended::Expired => LockError::SessionExpired { session },
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LockEntry {
    holders: BTreeMap<SessionId, Hold>,
    /// FIFO, except that upgrades enter ahead of ordinary waiters.
    queue: Vec<Waiter>,
}

impl LockEntry {
    /// Whether `session` could hold the lock in `mode` alongside the other holders.
    fn compatible(&self, session: SessionId, mode: Mode) -> bool {
        self.holders
            .iter()
            .all(|(&s, h)| s == session || h.mode.compatible(mode))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Hold {
    mode: Mode,
    holds: u32,
    token: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Waiter {
    session: SessionId,
    /// Requested mode; Exclusive for an upgrade.
    mode: Mode,
    client: u32,
    seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Reply {
    seq: u64,
    events: Vec<LockEvent>,
}

impl Default for LockState {
    fn default() -> Self {
        Self::new(DEFAULT_REENTRY_LIMIT)
    }
}

impl LockState {
    /// An empty state; a session may hold one lock at most `reentry_limit` (>= 1) times.
    pub fn new(reentry_limit: u32) -> Self {
        assert!(
            reentry_limit >= 1,
            "a re-entry limit of 0 would refuse every grant"
        );
        LockState {
            reentry_limit,
            applied: 0,
            sessions: BTreeMap::new(),
            ended: BTreeMap::new(),
            locks: BTreeMap::new(),
            last_tokens: BTreeMap::new(),
            replies: BTreeMap::new(),
            grant_ignores_holders: false,
        }
    }

    /// Switches on the planted bug `lock.grant_ignores_holders`: a fast path
    /// that grants at once whenever nobody is queued, without looking at
    /// the holders.
    pub fn with_grant_ignoring_holders(mut self) -> Self {
        self.grant_ignores_holders = true;
        self
    }

    /// Applies one committed command at log `index`; returns what happened, in order.
    pub fn apply(&mut self, index: u64, cmd: &LockCommand) -> Vec<LockEvent> {
        // Session ids and tokens are log indices: reusing one would alias them.
        assert!(
            index > self.applied,
            "lock command at index {index} applied after index {}",
            self.applied
        );
        self.applied = index;
        let mut events = Vec::new();
        match *cmd {
            LockCommand::Expire { session } => {
                if self.sessions.contains_key(&session) {
                    self.end_session(index, session, Ended::Expired, &mut events);
                }
                return events;
            }
            LockCommand::WaitTimeout { session, lock, seq } => {
                self.wait_timeout(index, session, lock, seq, &mut events);
                return events;
            }
            _ => {}
        }
        let (client, seq) = cmd.client_seq().expect("client command");
        if let Some(reply) = self.replies.get(&client)
            && seq <= reply.seq
        {
            let mut events = vec![LockEvent::Duplicate { client, seq }];
            if seq == reply.seq {
                events.extend(reply.events.iter().cloned());
            }
            return events;
        }
        match *cmd {
            LockCommand::OpenSession {
                client,
                seq,
                ttl_ns,
            } => {
                let session = index;
                self.sessions.insert(
                    session,
                    Session {
                        client,
                        ttl_ns,
                        held: BTreeSet::new(),
                        waiting: None,
                    },
                );
                events.push(LockEvent::SessionOpened {
                    client,
                    seq,
                    session,
                });
            }
            LockCommand::CloseSession { session, .. } => {
                match self.check_session(client, session) {
                    Ok(()) => self.end_session(index, session, Ended::Closed, &mut events),
                    Err(error) => events.push(LockEvent::Failed {
                        client,
                        seq,
                        session,
                        lock: None,
                        error,
                    }),
                }
            }
            LockCommand::Acquire {
                session,
                lock,
                mode,
                wait,
                ..
            } => {
                let request = Waiter {
                    session,
                    mode,
                    client,
                    seq,
                };
                if let Err(error) = self.acquire(index, lock, request, wait, &mut events) {
                    events.push(LockEvent::Failed {
                        client,
                        seq,
                        session,
                        lock: Some(lock),
                        error,
                    });
                }
            }
            LockCommand::Release { session, lock, .. } => {
                if let Err(error) = self.release(index, client, seq, session, lock, &mut events) {
                    events.push(LockEvent::Failed {
                        client,
                        seq,
                        session,
                        lock: Some(lock),
                        error,
                    });
                }
            }
            LockCommand::Expire { .. } | LockCommand::WaitTimeout { .. } => unreachable!(),
        }
        self.replies.insert(
            client,
            Reply {
                seq,
                events: events.clone(),
            },
        );
        events
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Live sessions and the client that opened each, by session id.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, u32)> {
        self.sessions.iter().map(|(&id, s)| (id, s.client))
    }

    /// The lease length a live session was opened with.
    pub fn session_ttl(&self, session: SessionId) -> Option<u64> {
        self.sessions.get(&session).map(|s| s.ttl_ns)
    }

    /// Locks that have holders or waiters, ascending.
    pub fn locks(&self) -> impl Iterator<Item = LockId> {
        self.locks.keys().copied()
    }

    /// `(session, mode, holds, token)` of each holder of `lock`, by session id.
    pub fn holders(&self, lock: LockId) -> Vec<(SessionId, Mode, u32, u64)> {
        self.locks.get(&lock).map_or_else(Vec::new, |e| {
            e.holders
                .iter()
                .map(|(&s, h)| (s, h.mode, h.holds, h.token))
                .collect()
        })
    }

    /// `(session, requested mode, client, seq)` of each waiter on `lock`, in queue order.
    pub fn waiters(&self, lock: LockId) -> Vec<(SessionId, Mode, u32, u64)> {
        self.locks.get(&lock).map_or_else(Vec::new, |e| {
            e.queue
                .iter()
                .map(|w| (w.session, w.mode, w.client, w.seq))
                .collect()
        })
    }

    /// Wait-for edges `(waiting, waited_for)`, sorted; see `wait_for` for the rule.
    pub fn wait_for_edges(&self) -> Vec<(SessionId, SessionId)> {
        self.wait_for_graph().edges()
    }

    /// `(session, lock, seq)` of every waiting request, by session id.
    pub fn waiting_requests(&self) -> Vec<(SessionId, LockId, u64)> {
        let mut out: Vec<_> = self
            .locks
            .iter()
            .flat_map(|(&lock, e)| e.queue.iter().map(move |w| (w.session, lock, w.seq)))
            .collect();
        out.sort_unstable();
        out
    }

    /// The highest sequence number applied for `client` (0 if none).
    pub fn last_seq(&self, client: u32) -> u64 {
        self.replies.get(&client).map_or(0, |r| r.seq)
    }

    /// The highest fencing token ever issued for `lock` (0 if never granted).
    pub fn last_token(&self, lock: LockId) -> u64 {
        self.last_tokens.get(&lock).copied().unwrap_or(0)
    }

    /// Recomputed from the lock table on demand, so it can never drift from it.
    fn wait_for_graph(&self) -> WaitForGraph {
        let mut edges = Vec::new();
        for entry in self.locks.values().filter(|e| !e.queue.is_empty()) {
            let holders: Vec<_> = entry.holders.iter().map(|(&s, h)| (s, h.mode)).collect();
            let queue: Vec<_> = entry.queue.iter().map(|w| (w.session, w.mode)).collect();
            for (pos, &(waiting, _)) in queue.iter().enumerate() {
                edges.extend(
                    waits_for(&holders, &queue, pos)
                        .into_iter()
                        .map(|to| (waiting, to)),
                );
            }
        }
        WaitForGraph::from_edges(edges)
    }

    fn check_session(&self, client: u32, session: SessionId) -> Result<(), LockError> {
        match self.sessions.get(&session) {
            Some(s) if s.client == client => Ok(()),
            Some(s) => Err(LockError::WrongClient {
                session,
                owner: s.client,
            }),
            None => Err(match self.ended.get(&session) {
                Some(how) => how.error(session),
                None => LockError::NoSession { session },
            }),
        }
    }

    fn acquire(
        &mut self,
        index: u64,
        lock: LockId,
        req: Waiter,
        wait: bool,
        events: &mut Vec<LockEvent>,
    ) -> Result<(), LockError> {
        self.check_session(req.client, req.session)?;
        if let Some(waiting) = self.sessions[&req.session].waiting {
            return Err(LockError::AlreadyWaiting { lock: waiting });
        }
        let limit = self.reentry_limit;
        let entry = self.locks.entry(lock).or_default();
        let held = entry.holders.get(&req.session).copied();
        if let Some(h) = held {
            if h.holds >= limit {
                return Err(LockError::ReentryLimit { lock, limit });
            }
            if h.mode == Mode::Exclusive || req.mode == Mode::Shared {
                let h = entry.holders.get_mut(&req.session).expect("holder");
                h.holds += 1;
                events.push(LockEvent::Granted {
                    client: req.client,
                    seq: req.seq,
                    session: req.session,
                    lock,
                    mode: h.mode,
                    token: h.token,
                    holds: h.holds,
                });
                return Ok(());
            }
        }
        let upgrade = held.is_some();
        // Upgrades skip the queue: they enter at its front anyway.
        let fast_path = self.grant_ignores_holders && entry.queue.is_empty() && !upgrade;
        if (fast_path || entry.compatible(req.session, req.mode))
            && (upgrade || entry.queue.is_empty())
        {
            let granted = self.grant(index, lock, req);
            events.push(granted);
            return Ok(());
        }
        if !wait {
            return Err(LockError::WouldBlock { lock });
        }
        let pos = if upgrade {
            entry
                .queue
                .iter()
                .take_while(|w| entry.holders.contains_key(&w.session))
                .count()
        } else {
            entry.queue.len()
        };
        entry.queue.insert(pos, req);
        self.session_mut(req.session).waiting = Some(lock);
        events.push(LockEvent::Waiting {
            client: req.client,
            seq: req.seq,
            session: req.session,
            lock,
            mode: req.mode,
        });
        self.break_deadlocks(index, req.session, events);
        Ok(())
    }

    fn release(
        &mut self,
        index: u64,
        client: u32,
        seq: u64,
        session: SessionId,
        lock: LockId,
        events: &mut Vec<LockEvent>,
    ) -> Result<(), LockError> {
        self.check_session(client, session)?;
        let entry = self.locks.get_mut(&lock);
        let Some(hold) = entry.and_then(|e| e.holders.get_mut(&session)) else {
            return Err(LockError::NotOwner { lock });
        };
        hold.holds -= 1;
        let holds = hold.holds;
        events.push(LockEvent::Released {
            client,
            seq,
            session,
            lock,
            holds,
        });
        if holds == 0 {
            // A pending upgrade of this session stays queued where it is, now
            // as a plain Exclusive request.
            self.entry_mut(lock).holders.remove(&session);
            self.session_mut(session).held.remove(&lock);
            self.grant_waiters(index, lock, events);
        }
        Ok(())
    }

    /// Closes or expires a live session.
    fn end_session(
        &mut self,
        index: u64,
        session: SessionId,
        how: Ended,
        events: &mut Vec<LockEvent>,
    ) {
        let cancelled = self.remove_wait(session);
        let record = self.sessions.remove(&session).expect("live session");
        self.ended.insert(session, how);
        while self.ended.len() > ENDED_MEMORY {
            self.ended.pop_first();
        }
        events.push(match how {
            Ended::Closed => LockEvent::SessionClosed { session },
            Ended::Expired => LockEvent::SessionExpired { session },
        });
        let mut affected = record.held;
        for lock in &affected {
            self.entry_mut(*lock).holders.remove(&session);
        }
        if let Some((lock, w)) = cancelled {
            self.resolve(
                LockEvent::Failed {
                    client: w.client,
                    seq: w.seq,
                    session,
                    lock: Some(lock),
                    error: how.error(session),
                },
                events,
            );
            affected.insert(lock);
        }
        for lock in affected {
            self.grant_waiters(index, lock, events);
        }
    }

    fn wait_timeout(
        &mut self,
        index: u64,
        session: SessionId,
        lock: LockId,
        seq: u64,
        events: &mut Vec<LockEvent>,
    ) {
        let still_waiting = self
            .locks
            .get(&lock)
            .is_some_and(|e| e.queue.iter().any(|w| w.session == session && w.seq == seq));
        if !still_waiting {
            return;
        }
        let (_, w) = self.remove_wait(session).expect("waiting request");
        self.resolve(
            LockEvent::Failed {
                client: w.client,
                seq,
                session,
                lock: Some(lock),
                error: LockError::TimedOut { lock },
            },
            events,
        );
        self.grant_waiters(index, lock, events);
    }

    /// Fails waiting requests until no cycle goes through `start`, whose
    /// request just started waiting: all new edges touch it, so the graph had
    /// no cycle elsewhere, and removing a waiter or granting adds no edges.
    fn break_deadlocks(&mut self, index: u64, start: SessionId, events: &mut Vec<LockEvent>) {
        while let Some(mut cycle) = self.wait_for_graph().cycle_through(start) {
            let (at, &victim) = cycle
                .iter()
                .enumerate()
                .max_by_key(|&(_, s)| s)
                .expect("cycles are not empty");
            cycle.rotate_left(at);
            events.push(LockEvent::DeadlockFound {
                cycle: cycle.clone(),
                victim,
            });
            // Every session on a cycle has an outgoing edge, so it is waiting.
            let (lock, w) = self.remove_wait(victim).expect("victim is waiting");
            self.resolve(
                LockEvent::Failed {
                    client: w.client,
                    seq: w.seq,
                    session: victim,
                    lock: Some(lock),
                    error: LockError::Deadlock { cycle },
                },
                events,
            );
            self.grant_waiters(index, lock, events);
        }
    }

    /// Grants from the front of `lock`'s queue while compatible; then drops the lock if idle.
    fn grant_waiters(&mut self, index: u64, lock: LockId, events: &mut Vec<LockEvent>) {
        loop {
            let Some(entry) = self.locks.get_mut(&lock) else {
                return;
            };
            let Some(&w) = entry.queue.first() else {
                break;
            };
            if !entry.compatible(w.session, w.mode) {
                break;
            }
            entry.queue.remove(0);
            self.session_mut(w.session).waiting = None;
            let granted = self.grant(index, lock, w);
            self.resolve(granted, events);
        }
        if self
            .locks
            .get(&lock)
            .is_some_and(|e| e.holders.is_empty() && e.queue.is_empty())
        {
            self.locks.remove(&lock);
        }
    }

    /// A new grant or a completed upgrade (not a re-entry): a fresh token.
    fn grant(&mut self, index: u64, lock: LockId, req: Waiter) -> LockEvent {
        let last = self.last_tokens.entry(lock).or_insert(0);
        debug_assert!(
            index > *last || (index == *last && req.mode == Mode::Shared),
            "token {index} for lock {lock} after token {last}"
        );
        *last = index;
        let hold = self
            .locks
            .entry(lock)
            .or_default()
            .holders
            .entry(req.session)
            .and_modify(|h| {
                h.mode = req.mode;
                h.holds += 1;
                h.token = index;
            })
            .or_insert(Hold {
                mode: req.mode,
                holds: 1,
                token: index,
            });
        let (mode, holds) = (hold.mode, hold.holds);
        self.session_mut(req.session).held.insert(lock);
        LockEvent::Granted {
            client: req.client,
            seq: req.seq,
            session: req.session,
            lock,
            mode,
            token: index,
            holds,
        }
    }

    /// Takes `session`'s waiting request out of its queue.
    fn remove_wait(&mut self, session: SessionId) -> Option<(LockId, Waiter)> {
        let lock = self.sessions.get_mut(&session)?.waiting.take()?;
        let queue = &mut self.entry_mut(lock).queue;
        let pos = queue
            .iter()
            .position(|w| w.session == session)
            .expect("a waiting session is queued");
        Some((lock, queue.remove(pos)))
    }

    /// Emits the final outcome of a request that waited, and makes it the
    /// cached reply if that request is still its client's latest.
    fn resolve(&mut self, event: LockEvent, events: &mut Vec<LockEvent>) {
        if let LockEvent::Granted { client, seq, .. } | LockEvent::Failed { client, seq, .. } =
            event
            && let Some(reply) = self.replies.get_mut(&client)
            && reply.seq == seq
        {
            reply.events = vec![event.clone()];
        }
        events.push(event);
    }

    fn session_mut(&mut self, session: SessionId) -> &mut Session {
        self.sessions.get_mut(&session).expect("live session")
    }

    fn entry_mut(&mut self, lock: LockId) -> &mut LockEntry {
        self.locks.get_mut(&lock).expect("active lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockEvent::*;
    use Mode::{Exclusive as X, Shared as S};

    /// Drives a state with consecutive log indices; client `c` opens sessions
    /// and issues every command for them, with its own sequence numbers.
    struct Harness {
        s: LockState,
        index: u64,
        seqs: BTreeMap<u32, u64>,
        owner: BTreeMap<SessionId, u32>,
    }

    impl Harness {
        fn new() -> Self {
            Self::with_limit(DEFAULT_REENTRY_LIMIT)
        }

        fn with_limit(limit: u32) -> Self {
            Harness {
                s: LockState::new(limit),
                index: 0,
                seqs: BTreeMap::new(),
                owner: BTreeMap::new(),
            }
        }

        fn apply(&mut self, cmd: LockCommand) -> Vec<LockEvent> {
            self.index += 1;
            self.s.apply(self.index, &cmd)
        }

        fn next_seq(&mut self, client: u32) -> u64 {
            let seq = self.seqs.entry(client).or_insert(0);
            *seq += 1;
            *seq
        }

        /// Opens a session for a new client numbered after the session count.
        fn open(&mut self) -> SessionId {
            let client = self.owner.len() as u32 + 100;
            let seq = self.next_seq(client);
            let ev = self.apply(LockCommand::OpenSession {
                client,
                seq,
                ttl_ns: 5_000,
            });
            assert_eq!(
                ev,
                vec![SessionOpened {
                    client,
                    seq,
                    session: self.index
                }]
            );
            self.owner.insert(self.index, client);
            self.index
        }

        fn acquire_cmd(
            &mut self,
            session: SessionId,
            lock: LockId,
            mode: Mode,
            wait: bool,
        ) -> LockCommand {
            let client = self.owner[&session];
            LockCommand::Acquire {
                client,
                seq: self.next_seq(client),
                session,
                lock,
                mode,
                wait,
            }
        }

        fn acquire(&mut self, session: SessionId, lock: LockId, mode: Mode) -> Vec<LockEvent> {
            let cmd = self.acquire_cmd(session, lock, mode, true);
            self.apply(cmd)
        }

        fn try_acquire(&mut self, session: SessionId, lock: LockId, mode: Mode) -> Vec<LockEvent> {
            let cmd = self.acquire_cmd(session, lock, mode, false);
            self.apply(cmd)
        }

        fn release_cmd(&mut self, session: SessionId, lock: LockId) -> LockCommand {
            let client = self.owner[&session];
            LockCommand::Release {
                client,
                seq: self.next_seq(client),
                session,
                lock,
            }
        }

        fn release(&mut self, session: SessionId, lock: LockId) -> Vec<LockEvent> {
            let cmd = self.release_cmd(session, lock);
            self.apply(cmd)
        }

        fn close(&mut self, session: SessionId) -> Vec<LockEvent> {
            let client = self.owner[&session];
            let seq = self.next_seq(client);
            self.apply(LockCommand::CloseSession {
                client,
                seq,
                session,
            })
        }

        fn expire(&mut self, session: SessionId) -> Vec<LockEvent> {
            self.apply(LockCommand::Expire { session })
        }

        /// Asserts the acquire was granted at once; returns its token.
        fn must_get(&mut self, session: SessionId, lock: LockId, mode: Mode) -> u64 {
            let ev = self.acquire(session, lock, mode);
            match ev.as_slice() {
                [Granted { token, .. }] => *token,
                other => panic!("expected a grant to {session} on {lock}, got {other:?}"),
            }
        }

        /// Asserts the acquire started waiting and nothing else happened.
        fn must_wait(&mut self, session: SessionId, lock: LockId, mode: Mode) {
            let ev = self.acquire(session, lock, mode);
            assert!(
                matches!(ev.as_slice(), [Waiting { .. }]),
                "expected {session} to wait on {lock}, got {ev:?}"
            );
        }

        fn holders(&self, lock: LockId) -> Vec<(SessionId, Mode)> {
            self.s
                .holders(lock)
                .into_iter()
                .map(|(s, m, _, _)| (s, m))
                .collect()
        }

        fn waiter_ids(&self, lock: LockId) -> Vec<SessionId> {
            self.s.waiters(lock).into_iter().map(|w| w.0).collect()
        }
    }

    /// `(session, lock, mode, token, holds)` of every grant in `ev`.
    fn grants(ev: &[LockEvent]) -> Vec<(SessionId, LockId, Mode, u64, u32)> {
        ev.iter()
            .filter_map(|e| match *e {
                Granted {
                    session,
                    lock,
                    mode,
                    token,
                    holds,
                    ..
                } => Some((session, lock, mode, token, holds)),
                _ => None,
            })
            .collect()
    }

    /// `(session, error)` of every failure in `ev`.
    fn failures(ev: &[LockEvent]) -> Vec<(SessionId, LockError)> {
        ev.iter()
            .filter_map(|e| match e {
                Failed { session, error, .. } => Some((*session, error.clone())),
                _ => None,
            })
            .collect()
    }

    /// `(cycle, victim)` of every deadlock in `ev`.
    fn deadlocks(ev: &[LockEvent]) -> Vec<(Vec<SessionId>, SessionId)> {
        ev.iter()
            .filter_map(|e| match e {
                DeadlockFound { cycle, victim } => Some((cycle.clone(), *victim)),
                _ => None,
            })
            .collect()
    }

    fn no_cycle(s: &LockState) -> bool {
        WaitForGraph::from_edges(s.wait_for_edges())
            .find_cycle()
            .is_none()
    }

    // ---- sessions ----

    #[test]
    fn session_id_is_the_open_entry_index() {
        let mut h = Harness::new();
        h.index = 41;
        let a = h.open();
        assert_eq!(a, 42);
        assert_eq!(h.s.sessions().collect::<Vec<_>>(), vec![(42, 100)]);
        assert_eq!(h.s.session_ttl(42), Some(5_000));
    }

    #[test]
    fn unknown_session_fails_with_no_session() {
        let mut h = Harness::new();
        let ev = h.apply(LockCommand::Acquire {
            client: 7,
            seq: 1,
            session: 99,
            lock: 0,
            mode: X,
            wait: true,
        });
        assert_eq!(
            ev,
            vec![Failed {
                client: 7,
                seq: 1,
                session: 99,
                lock: Some(0),
                error: LockError::NoSession { session: 99 }
            }]
        );
        assert!(
            h.s.locks().next().is_none(),
            "a failed acquire leaves no trace"
        );
    }

    #[test]
    fn closed_session_fails_with_session_closed() {
        let mut h = Harness::new();
        let a = h.open();
        assert_eq!(h.close(a), vec![SessionClosed { session: a }]);
        let ev = h.acquire(a, 0, X);
        assert_eq!(
            failures(&ev),
            vec![(a, LockError::SessionClosed { session: a })]
        );
        let ev = h.close(a);
        assert_eq!(
            failures(&ev),
            vec![(a, LockError::SessionClosed { session: a })]
        );
    }

    #[test]
    fn expired_session_fails_with_session_expired() {
        let mut h = Harness::new();
        let a = h.open();
        assert_eq!(h.expire(a), vec![SessionExpired { session: a }]);
        let ev = h.release(a, 0);
        assert_eq!(
            failures(&ev),
            vec![(a, LockError::SessionExpired { session: a })]
        );
    }

    #[test]
    fn session_of_another_client_is_refused() {
        let mut h = Harness::new();
        let a = h.open();
        let b = h.open();
        h.must_get(a, 0, X);
        let ev = h.apply(LockCommand::Release {
            client: h.owner[&b],
            seq: 9,
            session: a,
            lock: 0,
        });
        assert_eq!(
            failures(&ev),
            vec![(
                a,
                LockError::WrongClient {
                    session: a,
                    owner: h.owner[&a]
                }
            )]
        );
        assert_eq!(h.holders(0), vec![(a, X)]);
    }

    #[test]
    fn ended_sessions_are_forgotten_oldest_first() {
        let mut h = Harness::new();
        let first = h.open();
        h.close(first);
        for _ in 0..ENDED_MEMORY {
            let s = h.open();
            h.close(s);
        }
        let ev = h.acquire(first, 0, X);
        assert_eq!(
            failures(&ev),
            vec![(first, LockError::NoSession { session: first })]
        );
        assert_eq!(h.s.ended.len(), ENDED_MEMORY);
    }

    #[test]
    fn close_session_releases_every_hold_and_grants_waiters() {
        let mut h = Harness::new();
        let a = h.open();
        let b = h.open();
        let c = h.open();
        h.must_get(a, 1, X);
        h.must_get(a, 1, X);
        h.must_get(a, 1, X);
        h.must_get(a, 2, S);
        h.must_wait(b, 1, S);
        h.must_wait(c, 2, X);
        let ev = h.close(a);
        let i = h.index;
        assert_eq!(ev[0], SessionClosed { session: a });
        assert_eq!(grants(&ev), vec![(b, 1, S, i, 1), (c, 2, X, i, 1)]);
        assert_eq!(h.holders(1), vec![(b, S)]);
        assert_eq!(h.holders(2), vec![(c, X)]);
        assert!(h.s.sessions().all(|(s, _)| s != a));
    }

    #[test]
    fn close_session_fails_its_waiting_request_and_unblocks_those_behind() {
        let mut h = Harness::new();
        let a = h.open();
        let b = h.open();
        let c = h.open();
        h.must_get(a, 0, S);
        h.must_wait(b, 0, X);
        h.must_wait(c, 0, S);
        let b_seq = h.seqs[&h.owner[&b]];
        let ev = h.close(b);
        let i = h.index;
        assert_eq!(
            ev,
            vec![
                SessionClosed { session: b },
                Failed {
                    client: h.owner[&b],
                    seq: b_seq,
                    session: b,
                    lock: Some(0),
                    error: LockError::SessionClosed { session: b }
                },
                Granted {
                    client: h.owner[&c],
                    seq: h.seqs[&h.owner[&c]],
                    session: c,
                    lock: 0,
                    mode: S,
                    token: i,
                    holds: 1
                },
            ]
        );
    }

    // ---- modes and fairness ----

    #[test]
    fn exclusive_excludes_everyone() {
        let mut h = Harness::new();
        let a = h.open();
        let b = h.open();
        let c = h.open();
        h.must_get(a, 0, X);
        h.must_wait(b, 0, S);
        assert_eq!(
            failures(&h.try_acquire(c, 0, X)),
            vec![(c, LockError::WouldBlock { lock: 0 })]
        );
        assert_eq!(h.holders(0), vec![(a, X)]);
    }

    #[test]
    fn shared_is_compatible_with_shared() {
        let mut h = Harness::new();
        let a = h.open();
        let b = h.open();
        let ta = h.must_get(a, 0, S);
        let tb = h.must_get(b, 0, S);
        assert_eq!(h.holders(0), vec![(a, S), (b, S)]);
        assert!(tb > ta, "each new grant gets its own entry's index");
    }

    #[test]
    fn exclusive_waits_for_shared_holders() {
        let mut h = Harness::new();
        let a = h.open();
        let b = h.open();
        h.must_get(a, 0, S);
        h.must_wait(b, 0, X);
        assert_eq!(h.s.wait_for_edges(), vec![(b, a)]);
    }

    #[test]
    fn shared_request_behind_a_waiting_exclusive_waits() {
        let mut h = Harness::new();
        let a = h.open();
        let b = h.open();
        let c = h.open();
        h.must_get(a, 0, S);
        h.must_wait(b, 0, X);
        // Compatible with the holder, but granting it would starve b.
        h.must_wait(c, 0, S);
        assert_eq!(h.waiter_ids(0), vec![b, c]);
        assert_eq!(h.s.wait_for_edges(), vec![(b, a), (c, b)]);
    }

    #[test]
    fn release_grants_a_run_of_shared_waiters_together() {
        let mut h = Harness::new();
        let [a, b, c, d, e] = [h.open(), h.open(), h.open(), h.open(), h.open()];
        h.must_get(a, 0, X);
        h.must_wait(b, 0, S);
        h.must_wait(c, 0, S);
        h.must_wait(d, 0, X);
        h.must_wait(e, 0, S);
        let ev = h.release(a, 0);
        let i = h.index;
        assert_eq!(grants(&ev), vec![(b, 0, S, i, 1), (c, 0, S, i, 1)]);
        assert_eq!(h.waiter_ids(0), vec![d, e]);
        assert_eq!(h.s.last_token(0), i);
    }

    #[test]
    fn exclusive_waiter_at_the_front_blocks_shared_waiters_behind_it() {
        let mut h = Harness::new();
        let [a, b, c] = [h.open(), h.open(), h.open()];
        h.must_get(a, 0, X);
        h.must_wait(b, 0, X);
        h.must_wait(c, 0, S);
        let ev = h.release(a, 0);
        assert_eq!(grants(&ev), vec![(b, 0, X, h.index, 1)]);
        assert_eq!(h.waiter_ids(0), vec![c]);
    }

    #[test]
    fn try_acquire_would_block_behind_a_waiter_and_changes_nothing() {
        let mut h = Harness::new();
        let [a, b, c] = [h.open(), h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_wait(b, 0, X);
        let before = h.s.clone();
        let ev = h.try_acquire(c, 0, S);
        assert_eq!(failures(&ev), vec![(c, LockError::WouldBlock { lock: 0 })]);
        assert_eq!(h.s.locks, before.locks);
        assert_eq!(h.s.sessions, before.sessions);
    }

    #[test]
    fn try_acquire_of_a_free_lock_is_granted() {
        let mut h = Harness::new();
        let a = h.open();
        let ev = h.try_acquire(a, 3, X);
        assert_eq!(grants(&ev), vec![(a, 3, X, h.index, 1)]);
    }

    #[test]
    fn second_waiting_request_fails_with_already_waiting() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 0, X);
        h.must_wait(b, 0, X);
        let ev = h.acquire(b, 1, X);
        assert_eq!(
            failures(&ev),
            vec![(b, LockError::AlreadyWaiting { lock: 0 })]
        );
        assert!(h.s.locks().all(|l| l == 0), "lock 1 untouched");
        assert_eq!(h.s.waiting_requests().len(), 1);
    }

    // ---- re-entry and release ----

    #[test]
    fn reentry_keeps_the_token_and_counts_holds() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        let t = h.must_get(a, 0, X);
        h.must_wait(b, 0, X);
        // Re-entry passes the waiter: it would otherwise wait for itself.
        let ev = h.acquire(a, 0, X);
        assert_eq!(grants(&ev), vec![(a, 0, X, t, 2)]);
        assert_eq!(h.s.holders(0), vec![(a, X, 2, t)]);
        assert_eq!(h.s.last_token(0), t);
    }

    #[test]
    fn shared_request_while_holding_exclusive_is_a_reentry() {
        let mut h = Harness::new();
        let a = h.open();
        let t = h.must_get(a, 0, X);
        let ev = h.acquire(a, 0, S);
        assert_eq!(grants(&ev), vec![(a, 0, X, t, 2)]);
    }

    #[test]
    fn reentry_limit_fails_and_changes_nothing() {
        let mut h = Harness::with_limit(3);
        let a = h.open();
        let t = h.must_get(a, 0, S);
        h.must_get(a, 0, S);
        h.must_get(a, 0, S);
        let ev = h.acquire(a, 0, S);
        assert_eq!(
            failures(&ev),
            vec![(a, LockError::ReentryLimit { lock: 0, limit: 3 })]
        );
        assert_eq!(h.s.holders(0), vec![(a, S, 3, t)]);
        // An upgrade would add a hold too.
        let ev = h.acquire(a, 0, X);
        assert_eq!(
            failures(&ev),
            vec![(a, LockError::ReentryLimit { lock: 0, limit: 3 })]
        );
        assert_eq!(h.s.holders(0), vec![(a, S, 3, t)]);
    }

    #[test]
    fn release_removes_one_hold_and_frees_at_zero() {
        let mut h = Harness::new();
        let a = h.open();
        h.must_get(a, 0, X);
        h.must_get(a, 0, X);
        let ev = h.release(a, 0);
        assert!(matches!(ev.as_slice(), [Released { holds: 1, .. }]));
        let ev = h.release(a, 0);
        assert!(matches!(ev.as_slice(), [Released { holds: 0, .. }]));
        assert!(h.s.holders(0).is_empty());
        assert!(h.s.locks().next().is_none());
        let ev = h.release(a, 0);
        assert_eq!(failures(&ev), vec![(a, LockError::NotOwner { lock: 0 })]);
    }

    #[test]
    fn release_by_a_non_owner_changes_nothing() {
        let mut h = Harness::new();
        let [a, b, c] = [h.open(), h.open(), h.open()];
        h.must_get(a, 0, X);
        h.must_wait(c, 0, X);
        let before = h.s.clone();
        let ev = h.release(b, 0);
        assert_eq!(failures(&ev), vec![(b, LockError::NotOwner { lock: 0 })]);
        assert_eq!(h.s.locks, before.locks);
        assert_eq!(h.s.last_tokens, before.last_tokens);
        // Waiting is not holding either.
        let ev = h.release(c, 0);
        assert_eq!(failures(&ev), vec![(c, LockError::NotOwner { lock: 0 })]);
        assert_eq!(h.s.locks, before.locks);
    }

    #[test]
    fn release_to_zero_grants_the_next_waiter_with_the_release_index_as_token() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        let t = h.must_get(a, 0, X);
        h.must_wait(b, 0, X);
        h.index += 10; // other entries in between
        let ev = h.release(a, 0);
        let i = h.index;
        assert!(i > t);
        assert_eq!(
            ev,
            vec![
                Released {
                    client: h.owner[&a],
                    seq: h.seqs[&h.owner[&a]],
                    session: a,
                    lock: 0,
                    holds: 0
                },
                Granted {
                    client: h.owner[&b],
                    seq: h.seqs[&h.owner[&b]],
                    session: b,
                    lock: 0,
                    mode: X,
                    token: i,
                    holds: 1
                },
            ]
        );
        assert_eq!(h.s.last_token(0), i);
    }

    // ---- exactly-once ----

    #[test]
    fn duplicate_acquire_returns_the_same_grant_without_a_new_hold() {
        let mut h = Harness::new();
        let a = h.open();
        let cmd = h.acquire_cmd(a, 0, X, true);
        let first = h.apply(cmd);
        let again = h.apply(cmd);
        let client = h.owner[&a];
        let seq = h.seqs[&client];
        let mut expected = vec![Duplicate { client, seq }];
        expected.extend(first.clone());
        assert_eq!(again, expected);
        assert_eq!(h.s.holders(0), vec![(a, X, 1, h.index - 1)]);
    }

    #[test]
    fn duplicate_release_does_not_release_twice() {
        let mut h = Harness::new();
        let a = h.open();
        h.must_get(a, 0, X);
        h.must_get(a, 0, X);
        let cmd = h.release_cmd(a, 0);
        let first = h.apply(cmd);
        let again = h.apply(cmd);
        assert_eq!(&again[1..], first.as_slice());
        assert_eq!(h.s.holders(0)[0].2, 1);
    }

    #[test]
    fn older_seq_returns_only_the_duplicate_marker() {
        let mut h = Harness::new();
        let a = h.open();
        let old = h.acquire_cmd(a, 0, X, true);
        h.apply(old);
        h.release(a, 0);
        let before = h.s.clone();
        let ev = h.apply(old);
        let LockCommand::Acquire { client, seq, .. } = old else {
            unreachable!()
        };
        assert_eq!(ev, vec![Duplicate { client, seq }]);
        assert_eq!(h.s.locks, before.locks);
    }

    #[test]
    fn duplicate_open_session_does_not_open_twice() {
        let mut h = Harness::new();
        let cmd = LockCommand::OpenSession {
            client: 3,
            seq: 1,
            ttl_ns: 10,
        };
        let first = h.apply(cmd);
        let again = h.apply(cmd);
        assert_eq!(again[0], Duplicate { client: 3, seq: 1 });
        assert_eq!(&again[1..], first.as_slice());
        assert_eq!(h.s.sessions().count(), 1);
    }

    #[test]
    fn retry_of_a_waiting_acquire_after_its_grant_returns_the_grant() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 0, X);
        let cmd = h.acquire_cmd(b, 0, X, true);
        assert!(matches!(h.apply(cmd).as_slice(), [Waiting { .. }]));
        let ev = h.release(a, 0);
        let grant = ev[1].clone();
        assert!(matches!(grant, Granted { session, .. } if session == b));
        let retry = h.apply(cmd);
        assert_eq!(&retry[1..], &[grant]);
        assert_eq!(h.s.holders(0)[0].2, 1);
    }

    #[test]
    fn retry_of_a_timed_out_acquire_returns_the_timeout() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 0, X);
        let cmd = h.acquire_cmd(b, 0, X, true);
        h.apply(cmd);
        let seq = h.seqs[&h.owner[&b]];
        let ev = h.apply(LockCommand::WaitTimeout {
            session: b,
            lock: 0,
            seq,
        });
        assert_eq!(h.apply(cmd)[1..], ev[..]);
    }

    // ---- expiry and wait timeouts ----

    #[test]
    fn expire_releases_and_grants_in_order() {
        let mut h = Harness::new();
        let [a, b, c, d] = [h.open(), h.open(), h.open(), h.open()];
        h.must_get(a, 0, X);
        h.must_get(a, 1, S);
        h.must_wait(c, 1, X);
        h.must_wait(b, 0, S);
        h.must_wait(d, 0, S);
        let ev = h.expire(a);
        let i = h.index;
        assert_eq!(ev[0], SessionExpired { session: a });
        // Locks in ascending order, each queue from its front.
        assert_eq!(
            grants(&ev),
            vec![(b, 0, S, i, 1), (d, 0, S, i, 1), (c, 1, X, i, 1)]
        );
        assert!(h.s.waiting_requests().is_empty());
    }

    #[test]
    fn expire_fails_the_waiting_request_with_session_expired() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 0, X);
        h.must_wait(b, 0, X);
        let ev = h.expire(b);
        assert_eq!(ev[0], SessionExpired { session: b });
        assert_eq!(
            failures(&ev),
            vec![(b, LockError::SessionExpired { session: b })]
        );
        assert!(h.s.waiters(0).is_empty());
    }

    #[test]
    fn expire_of_a_gone_session_is_a_no_op() {
        let mut h = Harness::new();
        let a = h.open();
        h.expire(a);
        let before = h.s.clone();
        assert!(h.expire(a).is_empty());
        assert!(h.expire(12345).is_empty());
        assert_eq!(h.s.sessions, before.sessions);
        assert_eq!(h.s.ended, before.ended);
    }

    #[test]
    fn wait_timeout_fails_the_request_and_grants_those_behind() {
        let mut h = Harness::new();
        let [a, b, c] = [h.open(), h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_wait(b, 0, X);
        h.must_wait(c, 0, S);
        let (session, lock, seq) = h.s.waiting_requests()[0];
        assert_eq!((session, lock), (b, 0));
        let ev = h.apply(LockCommand::WaitTimeout { session, lock, seq });
        assert_eq!(failures(&ev), vec![(b, LockError::TimedOut { lock: 0 })]);
        assert_eq!(grants(&ev), vec![(c, 0, S, h.index, 1)]);
        assert!(h.s.waiting_requests().is_empty());
    }

    #[test]
    fn wait_timeout_of_a_request_no_longer_waiting_is_a_no_op() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 0, X);
        h.must_wait(b, 0, X);
        let (session, lock, seq) = h.s.waiting_requests()[0];
        h.release(a, 0);
        assert!(
            h.apply(LockCommand::WaitTimeout { session, lock, seq })
                .is_empty()
        );
        assert_eq!(h.holders(0), vec![(b, X)]);
        // Nor does it touch a newer request of the same session.
        h.must_wait(a, 0, X);
        let stale = LockCommand::WaitTimeout {
            session: a,
            lock: 0,
            seq: 1,
        };
        assert!(h.apply(stale).is_empty());
        assert_eq!(h.waiter_ids(0), vec![a]);
    }

    // ---- upgrades ----

    #[test]
    fn upgrade_by_the_only_holder_is_immediate_with_a_new_token() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        let t = h.must_get(a, 0, S);
        h.must_wait(b, 0, X);
        let ev = h.acquire(a, 0, X);
        assert_eq!(grants(&ev), vec![(a, 0, X, h.index, 2)]);
        assert!(h.index > t);
    }

    #[test]
    fn upgrade_waits_for_another_shared_holder_then_is_granted_on_its_release() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_get(b, 0, S);
        h.must_wait(a, 0, X);
        assert_eq!(
            h.holders(0),
            vec![(a, S), (b, S)],
            "the shared hold is kept"
        );
        assert_eq!(h.s.wait_for_edges(), vec![(a, b)]);
        let ev = h.release(b, 0);
        assert_eq!(grants(&ev), vec![(a, 0, X, h.index, 2)]);
        assert_eq!(h.s.holders(0), vec![(a, X, 2, h.index)]);
    }

    #[test]
    fn upgrade_goes_ahead_of_ordinary_waiters() {
        let mut h = Harness::new();
        let [a, b, c] = [h.open(), h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_get(b, 0, S);
        h.must_wait(c, 0, X);
        h.must_wait(a, 0, X);
        assert_eq!(h.waiter_ids(0), vec![a, c]);
        let ev = h.release(b, 0);
        assert_eq!(grants(&ev), vec![(a, 0, X, h.index, 2)]);
        assert_eq!(h.waiter_ids(0), vec![c]);
    }

    #[test]
    fn try_upgrade_with_another_holder_would_block() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_get(b, 0, S);
        let ev = h.try_acquire(a, 0, X);
        assert_eq!(failures(&ev), vec![(a, LockError::WouldBlock { lock: 0 })]);
        assert_eq!(h.holders(0), vec![(a, S), (b, S)]);
    }

    #[test]
    fn releasing_the_last_shared_hold_leaves_a_pending_upgrade_as_a_plain_request() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_get(b, 0, S);
        h.must_wait(a, 0, X);
        h.release(a, 0);
        assert_eq!(h.holders(0), vec![(b, S)]);
        assert_eq!(h.waiter_ids(0), vec![a]);
        let ev = h.release(b, 0);
        assert_eq!(grants(&ev), vec![(a, 0, X, h.index, 1)]);
    }

    // ---- deadlocks ----

    #[test]
    fn two_cycle_fails_the_youngest() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 1, X);
        h.must_get(b, 2, X);
        h.must_wait(b, 1, X);
        let ev = h.acquire(a, 2, X);
        assert_eq!(
            ev,
            vec![
                Waiting {
                    client: h.owner[&a],
                    seq: h.seqs[&h.owner[&a]],
                    session: a,
                    lock: 2,
                    mode: X
                },
                DeadlockFound {
                    cycle: vec![b, a],
                    victim: b
                },
                Failed {
                    client: h.owner[&b],
                    seq: h.seqs[&h.owner[&b]],
                    session: b,
                    lock: Some(1),
                    error: LockError::Deadlock { cycle: vec![b, a] }
                },
            ]
        );
        assert_eq!(h.s.wait_for_edges(), vec![(a, b)]);
    }

    #[test]
    fn new_waiter_is_the_victim_when_youngest() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 1, X);
        h.must_get(b, 2, X);
        h.must_wait(a, 2, X);
        let ev = h.acquire(b, 1, X);
        assert_eq!(deadlocks(&ev), vec![(vec![b, a], b)]);
        assert_eq!(
            failures(&ev),
            vec![(b, LockError::Deadlock { cycle: vec![b, a] })]
        );
        assert_eq!(h.waiter_ids(1), Vec::<SessionId>::new());
        assert_eq!(h.waiter_ids(2), vec![a]);
    }

    #[test]
    fn victim_keeps_the_locks_it_holds() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        let tb = h.must_get(b, 2, X);
        h.must_get(b, 3, S);
        h.must_get(a, 1, X);
        h.must_wait(a, 2, X);
        let ev = h.acquire(b, 1, X);
        assert_eq!(deadlocks(&ev), vec![(vec![b, a], b)]);
        assert_eq!(h.s.holders(2), vec![(b, X, 1, tb)]);
        assert_eq!(h.holders(3), vec![(b, S)]);
        // a still waits for b, which must now decide; releasing unblocks a.
        let ev = h.release(b, 2);
        assert_eq!(grants(&ev), vec![(a, 2, X, h.index, 1)]);
    }

    #[test]
    fn three_cycle_is_found_and_listed_from_the_victim() {
        let mut h = Harness::new();
        let [a, b, c] = [h.open(), h.open(), h.open()];
        h.must_get(a, 1, X);
        h.must_get(b, 2, X);
        h.must_get(c, 3, X);
        h.must_wait(a, 2, X); // a -> b
        h.must_wait(c, 1, X); // c -> a
        let ev = h.acquire(b, 3, X); // b -> c closes the cycle
        assert_eq!(deadlocks(&ev), vec![(vec![c, a, b], c)]);
        assert_eq!(
            failures(&ev),
            vec![(
                c,
                LockError::Deadlock {
                    cycle: vec![c, a, b]
                }
            )]
        );
        assert!(no_cycle(&h.s));
        assert_eq!(h.s.wait_for_edges(), vec![(a, b), (b, c)]);
    }

    #[test]
    fn one_wait_closing_two_cycles_breaks_both() {
        let mut h = Harness::new();
        let [x, a, b] = [h.open(), h.open(), h.open()];
        h.must_get(x, 1, X);
        h.must_get(x, 2, X);
        h.must_get(a, 0, S);
        h.must_get(b, 0, S);
        h.must_wait(a, 1, X); // a -> x
        h.must_wait(b, 2, X); // b -> x
        let ev = h.acquire(x, 0, X); // x -> a, x -> b
        assert_eq!(
            deadlocks(&ev),
            vec![(vec![a, x], a), (vec![b, x], b)],
            "two cycles, one victim each"
        );
        assert_eq!(
            failures(&ev),
            vec![
                (a, LockError::Deadlock { cycle: vec![a, x] }),
                (b, LockError::Deadlock { cycle: vec![b, x] })
            ]
        );
        assert_eq!(h.s.wait_for_edges(), vec![(x, a), (x, b)]);
    }

    #[test]
    fn cycles_sharing_the_youngest_session_need_one_victim() {
        let mut h = Harness::new();
        let [x, b, c, a] = [h.open(), h.open(), h.open(), h.open()];
        h.must_get(x, 1, X);
        h.must_get(b, 0, S);
        h.must_get(c, 0, S);
        h.must_wait(b, 1, X); // b -> x
        h.must_wait(c, 1, X); // c -> x, c -> b (earlier conflicting waiter)
        h.must_get(a, 2, X);
        h.must_wait(x, 2, X); // x -> a
        // a -> b and a -> c: cycles a-b-x and a-c-x (and a-c-b-x) share a and x.
        let ev = h.acquire(a, 0, X);
        assert_eq!(deadlocks(&ev), vec![(vec![a, b, x], a)]);
        assert!(no_cycle(&h.s));
        assert_eq!(h.waiter_ids(1), vec![b, c]);
        assert_eq!(h.waiter_ids(2), vec![x]);
    }

    #[test]
    fn first_cycles_victim_breaks_a_cycle_whose_youngest_is_another() {
        let mut h = Harness::new();
        let [x, a, c] = [h.open(), h.open(), h.open()];
        h.must_get(x, 0, S);
        h.must_get(c, 0, S);
        h.must_get(x, 1, X);
        h.must_get(a, 3, X);
        h.must_wait(c, 1, X); // c -> x
        h.must_wait(x, 3, X); // x -> a
        // a -> x and a -> c close a-x-a and a-c-x-a; the search meets a-x
        // first and its victim a also breaks the longer cycle, whose
        // youngest (c) keeps waiting.
        let ev = h.acquire(a, 0, X);
        assert_eq!(deadlocks(&ev), vec![(vec![a, x], a)]);
        assert!(no_cycle(&h.s));
        assert_eq!(h.waiter_ids(1), vec![c]);
    }

    #[test]
    fn cycles_sharing_a_session_each_lose_their_youngest() {
        let mut h = Harness::new();
        let [x, a, b, c] = [h.open(), h.open(), h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_get(x, 1, X);
        h.must_get(x, 2, X);
        h.must_get(b, 3, S);
        h.must_get(c, 3, S);
        h.must_wait(b, 1, X); // b -> x
        h.must_wait(c, 2, X); // c -> x
        h.must_wait(x, 0, X); // x -> a
        // a -> b, a -> c: cycles a-b-x and a-c-x share a and x.
        let ev = h.acquire(a, 3, X);
        assert_eq!(deadlocks(&ev), vec![(vec![b, x, a], b), (vec![c, x, a], c)]);
        assert!(no_cycle(&h.s));
        assert_eq!(h.s.wait_for_edges(), vec![(x, a), (a, b), (a, c)]);
    }

    #[test]
    fn upgrade_against_upgrade_is_a_deadlock() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_get(b, 0, S);
        h.must_wait(a, 0, X);
        let ev = h.acquire(b, 0, X);
        assert_eq!(deadlocks(&ev), vec![(vec![b, a], b)]);
        assert_eq!(h.holders(0), vec![(a, S), (b, S)]);
        assert_eq!(h.waiter_ids(0), vec![a]);
        // b gives up its shared hold: a's upgrade goes through.
        let ev = h.release(b, 0);
        assert_eq!(grants(&ev), vec![(a, 0, X, h.index, 2)]);
    }

    #[test]
    fn shared_holder_waiting_for_an_exclusive_holder_that_waits_for_it_is_a_deadlock() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 1, S);
        h.must_get(b, 2, X);
        h.must_wait(a, 2, S); // a -> b
        let ev = h.acquire(b, 1, X); // b -> a
        assert_eq!(deadlocks(&ev), vec![(vec![b, a], b)]);
    }

    #[test]
    fn deadlock_through_a_fifo_edge_is_found() {
        let mut h = Harness::new();
        let [a, b, c] = [h.open(), h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_get(c, 1, X);
        h.must_wait(b, 0, X); // b -> a
        h.must_wait(c, 0, S); // c -> b: behind b although compatible with a
        let ev = h.acquire(a, 1, X); // a -> c
        assert_eq!(deadlocks(&ev), vec![(vec![c, b, a], c)]);
        // c's removal changes nothing on lock 0's front: b still waits for a.
        assert_eq!(h.waiter_ids(0), vec![b]);
    }

    #[test]
    fn victim_removal_grants_the_waiters_it_blocked() {
        let mut h = Harness::new();
        let [a, c, b] = [h.open(), h.open(), h.open()];
        h.must_get(a, 0, S);
        h.must_get(a, 1, X);
        h.must_get(b, 2, X);
        h.must_wait(b, 0, X); // b -> a
        h.must_wait(c, 0, S); // c -> b
        let ev = h.acquire(a, 2, X); // a -> b closes a-b
        assert_eq!(deadlocks(&ev), vec![(vec![b, a], b)]);
        // With b gone from the queue, c is compatible with a's shared hold.
        assert_eq!(grants(&ev), vec![(c, 0, S, h.index, 1)]);
    }

    #[test]
    fn cycle_broken_by_a_release_before_the_closing_wait_is_not_reported() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 1, X);
        h.must_get(b, 2, X);
        h.must_wait(a, 2, X);
        h.release(b, 2); // a is granted lock 2
        h.must_wait(b, 1, X);
        assert_eq!(h.s.wait_for_edges(), vec![(b, a)]);
    }

    #[test]
    fn cycle_broken_by_an_expiry_before_the_closing_wait_is_not_reported() {
        let mut h = Harness::new();
        let [a, b] = [h.open(), h.open()];
        h.must_get(a, 1, X);
        h.must_get(b, 2, X);
        h.must_wait(a, 2, X);
        h.expire(a);
        h.must_get(b, 1, X);
        assert!(h.s.wait_for_edges().is_empty());
    }

    #[test]
    fn error_messages_say_what_went_wrong() {
        let cases = [
            (
                LockError::NoSession { session: 4 },
                "session 4 does not exist",
            ),
            (
                LockError::SessionClosed { session: 4 },
                "session 4 was closed",
            ),
            (
                LockError::SessionExpired { session: 4 },
                "session 4 expired (its lease ran out)",
            ),
            (
                LockError::WrongClient {
                    session: 4,
                    owner: 2,
                },
                "session 4 belongs to client 2",
            ),
            (
                LockError::NotOwner { lock: 3 },
                "lock 3 is not held by this session",
            ),
            (
                LockError::ReentryLimit { lock: 3, limit: 8 },
                "re-entry limit of 8 reached on lock 3",
            ),
            (
                LockError::WouldBlock { lock: 3 },
                "lock 3 cannot be granted without waiting",
            ),
            (
                LockError::AlreadyWaiting { lock: 3 },
                "the session is already waiting for lock 3 (one waiting request at a time)",
            ),
            (
                LockError::Deadlock {
                    cycle: vec![9, 5, 7],
                },
                "deadlock: sessions 9 -> 5 -> 7 -> 9 wait for each other; \
                 this request was cancelled to break the cycle",
            ),
            (
                LockError::TimedOut { lock: 3 },
                "timed out waiting for lock 3",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }

    // ---- random load ----

    /// A tiny LCG (Knuth's MMIX constants): deterministic and dependency-free.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
            if items.is_empty() {
                None
            } else {
                Some(items[self.below(items.len() as u64) as usize])
            }
        }
    }

    const LOCKS: u32 = 4;
    const CLIENTS: u32 = 5;
    const LIMIT: u32 = 3;

    /// One command drawn from the state: mostly acquires and releases by live
    /// sessions, with retries, stale duplicates, bad sessions, closes,
    /// expiries and wait timeouts mixed in.
    fn random_command(
        rng: &mut Lcg,
        s: &LockState,
        seqs: &mut [u64],
        last: &mut [Option<LockCommand>],
    ) -> LockCommand {
        let live: Vec<(SessionId, u32)> = s.sessions().collect();
        // Mostly act like real clients: a waiting session's client is blocked,
        // and releases come from sessions that hold something.
        let waiting: BTreeSet<SessionId> = s.waiting_requests().iter().map(|w| w.0).collect();
        let idle: Vec<_> = live
            .iter()
            .copied()
            .filter(|(id, _)| !waiting.contains(id))
            .collect();
        let holding: Vec<_> = live
            .iter()
            .copied()
            .filter(|&(id, _)| (0..LOCKS).any(|l| s.holders(l).iter().any(|h| h.0 == id)))
            .collect();
        let mut next = |client: u32| {
            seqs[client as usize] += 1;
            seqs[client as usize]
        };
        let roll = rng.below(100);
        let cmd = if live.len() < 3 || roll < 4 {
            let client = rng.below(CLIENTS as u64) as u32;
            LockCommand::OpenSession {
                client,
                seq: next(client),
                ttl_ns: 1_000,
            }
        } else if roll < 10 {
            // A retry of some client's latest command, or of an older seq.
            let client = rng.below(CLIENTS as u64) as usize;
            let Some(mut cmd) = last[client] else {
                return LockCommand::Expire { session: 0 };
            };
            if roll < 7
                && let LockCommand::Acquire { seq, .. } | LockCommand::Release { seq, .. } =
                    &mut cmd
            {
                *seq = seq.saturating_sub(1);
            }
            return cmd;
        } else if roll < 12 {
            let (session, client) = rng.pick(&live).unwrap();
            LockCommand::CloseSession {
                client,
                seq: next(client),
                session,
            }
        } else if roll < 14 {
            let (session, _) = rng.pick(&live).unwrap();
            return LockCommand::Expire { session };
        } else if roll < 20 {
            match rng.pick(&s.waiting_requests()) {
                Some((session, lock, seq)) => {
                    return LockCommand::WaitTimeout {
                        session,
                        lock,
                        seq: seq + rng.below(3) / 2,
                    };
                }
                None => return LockCommand::Expire { session: 1 },
            }
        } else if roll < 22 {
            // A session that is gone or never was, or someone else's.
            let client = rng.below(CLIENTS as u64) as u32;
            let session = match rng.pick(&live) {
                Some((s, owner)) if owner != client && roll == 20 => s,
                _ => rng.below(200),
            };
            LockCommand::Acquire {
                client,
                seq: next(client),
                session,
                lock: 0,
                mode: Mode::Exclusive,
                wait: true,
            }
        } else if roll < 55 {
            let from = if rng.below(10) > 0 { &holding } else { &live };
            let (session, client) = rng.pick(from).or(rng.pick(&live)).unwrap();
            let held: Vec<LockId> = (0..LOCKS)
                .filter(|&l| s.holders(l).iter().any(|h| h.0 == session))
                .collect();
            let lock = match rng.pick(&held) {
                Some(l) if rng.below(8) > 0 => l,
                _ => rng.below(LOCKS as u64) as u32,
            };
            LockCommand::Release {
                client,
                seq: next(client),
                session,
                lock,
            }
        } else {
            let from = if rng.below(20) > 0 { &idle } else { &live };
            let (session, client) = rng.pick(from).or(rng.pick(&live)).unwrap();
            LockCommand::Acquire {
                client,
                seq: next(client),
                session,
                lock: rng.below(LOCKS as u64) as u32,
                mode: if rng.below(2) == 0 { S } else { X },
                wait: rng.below(8) > 0,
            }
        };
        let (client, _) = cmd.client_seq().unwrap();
        last[client as usize] = Some(cmd);
        cmd
    }

    /// Runs `steps` random commands from `seed`, calling `check(before, after,
    /// index, events)` after each; returns the final state and the log.
    fn drive(
        seed: u64,
        steps: usize,
        mut check: impl FnMut(&LockState, &LockState, u64, &[LockEvent]),
    ) -> (LockState, Vec<(u64, LockCommand, Vec<LockEvent>)>) {
        let mut rng = Lcg(seed);
        let mut s = LockState::new(LIMIT);
        let mut seqs = vec![0; CLIENTS as usize];
        let mut last = vec![None; CLIENTS as usize];
        let mut log = Vec::new();
        let mut index = 0;
        for _ in 0..steps {
            // Gaps stand for other entries (no-ops, other services) in the log.
            index += 1 + rng.below(3) / 2;
            let cmd = random_command(&mut rng, &s, &mut seqs, &mut last);
            let before = s.clone();
            let events = s.apply(index, &cmd);
            check(&before, &s, index, &events);
            log.push((index, cmd, events));
        }
        (s, log)
    }

    fn check_invariants(pre: &LockState, post: &LockState, index: u64, events: &[LockEvent]) {
        if let Some(Duplicate { .. }) = events.first() {
            let mut unchanged = pre.clone();
            unchanged.applied = index;
            assert_eq!(&unchanged, post, "a duplicate changed the state");
            return;
        }
        let live: BTreeSet<SessionId> = post.sessions().map(|(s, _)| s).collect();
        let mut waiting_sessions = BTreeSet::new();
        for lock in post.locks() {
            let holders = post.holders(lock);
            let waiters = post.waiters(lock);
            assert!(
                !holders.is_empty() || !waiters.is_empty(),
                "idle lock {lock} kept"
            );
            for (i, &(s1, m1, holds, token)) in holders.iter().enumerate() {
                assert!(live.contains(&s1), "holder {s1} is not a live session");
                assert!((1..=LIMIT).contains(&holds), "hold count {holds}");
                assert!(token <= post.last_token(lock));
                for &(s2, m2, _, _) in &holders[i + 1..] {
                    assert!(m1.compatible(m2), "{s1} {m1:?} and {s2:?} {m2:?} on {lock}");
                }
            }
            for &(s, _, _, _) in &waiters {
                assert!(live.contains(&s), "waiter {s} is not a live session");
                assert!(waiting_sessions.insert(s), "{s} waits twice");
            }
        }
        assert_eq!(post.waiting_requests().len(), waiting_sessions.len());
        let edges = post.wait_for_edges();
        for s in &waiting_sessions {
            assert!(
                edges.iter().any(|e| e.0 == *s),
                "waiter {s} is blocked by nothing"
            );
        }
        assert_eq!(WaitForGraph::from_edges(edges).find_cycle(), None);
        for lock in 0..LOCKS {
            assert!(post.last_token(lock) >= pre.last_token(lock));
        }
        for e in events {
            match e {
                Granted {
                    session,
                    lock,
                    token,
                    ..
                } => {
                    if *token == index {
                        assert!(
                            index > pre.last_token(*lock),
                            "token {index} not above {}",
                            pre.last_token(*lock)
                        );
                    } else {
                        let was = pre.holders(*lock);
                        assert!(
                            was.iter().any(|h| h.0 == *session && h.3 == *token),
                            "re-entry with a token the session did not hold"
                        );
                    }
                }
                DeadlockFound { cycle, victim } => {
                    assert_eq!(cycle.first(), Some(victim));
                    assert_eq!(cycle.iter().max(), Some(victim));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn invariants_hold_and_tokens_increase_under_random_load() {
        let mut seen = BTreeMap::<&str, usize>::new();
        for seed in 1..=4 {
            drive(seed, 3_000, |pre, post, index, events| {
                check_invariants(pre, post, index, events);
                for e in events {
                    let kind = match e {
                        DeadlockFound { .. } => "deadlock",
                        Granted { holds, token, .. } if *holds > 1 && *token == index => "upgrade",
                        Granted { holds, .. } if *holds > 1 => "re-entry",
                        Failed { error, .. } => match error {
                            LockError::TimedOut { .. } => "timeout",
                            LockError::ReentryLimit { .. } => "re-entry limit",
                            LockError::WouldBlock { .. } => "would block",
                            LockError::NotOwner { .. } => "not owner",
                            LockError::SessionExpired { .. } => "expired",
                            _ => "other failure",
                        },
                        Duplicate { .. } => "duplicate",
                        _ => continue,
                    };
                    *seen.entry(kind).or_default() += 1;
                }
                let batch = events
                    .iter()
                    .filter(|e| matches!(e, Granted { token, mode: S, .. } if *token == index))
                    .count();
                if batch >= 2 {
                    *seen.entry("shared batch").or_default() += 1;
                }
            });
        }
        for kind in [
            "deadlock",
            "upgrade",
            "re-entry",
            "timeout",
            "re-entry limit",
            "would block",
            "not owner",
            "expired",
            "duplicate",
            "shared batch",
        ] {
            assert!(
                seen.get(kind).is_some_and(|&n| n > 0),
                "no {kind} in {seen:?}"
            );
        }
    }

    #[test]
    fn same_commands_give_equal_states_and_events() {
        let (first, log) = drive(7, 2_000, |_, _, _, _| {});
        let (second, log2) = drive(7, 2_000, |_, _, _, _| {});
        assert_eq!(first, second);
        assert_eq!(log, log2);
        let mut replay = LockState::new(LIMIT);
        for (index, cmd, events) in &log {
            assert_eq!(&replay.apply(*index, cmd), events);
        }
        assert_eq!(replay, first);
    }
}
