//! The leader's clock-based duties for the lock service: session leases and
//! wait timeouts.
//!
//! Neither lives in the replicated state (it has no clock). The leader keeps
//! them on its own local clock and proposes `Expire` or `WaitTimeout` when one
//! runs out; the log decides. A new leader restarts every lease and every wait
//! with its full length before expiring anything, so neither clock skew nor a
//! change of leader frees a live client's lock early: a lease can only end
//! after some leader went a whole TTL without hearing from the client.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{LockCommand, LockEvent, LockId, LockState, SessionId};

/// Volatile leader state; empty on followers.
#[derive(Clone, Debug, Default)]
pub struct LeaseKeeper {
    /// Local time of each session's last sign of life.
    renewed: BTreeMap<SessionId, u64>,
    /// Waiting requests (session, lock, seq) and their local deadlines.
    waits: BTreeMap<(SessionId, LockId, u64), u64>,
    /// Already proposed, so not proposed again while the entry commits.
    proposed: BTreeSet<LockCommandKey>,
    wait_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LockCommandKey {
    Expire(SessionId),
    WaitTimeout(SessionId, LockId, u64),
}

impl LeaseKeeper {
    /// Every acquire waits at most `wait_ns` in a queue.
    pub fn new(wait_ns: u64) -> Self {
        LeaseKeeper {
            wait_ns,
            ..Default::default()
        }
    }

    /// Taking office at local time `now`: every lease and wait starts afresh.
    pub fn take_office(&mut self, now: u64, locks: &LockState) {
        self.renewed = locks.sessions().map(|(s, _)| (s, now)).collect();
        self.waits = locks
            .waiting_requests()
            .into_iter()
            .map(|k| (k, now + self.wait_ns))
            .collect();
        self.proposed.clear();
    }

    /// Leaving office: nothing to track.
    pub fn leave_office(&mut self) {
        self.renewed.clear();
        self.waits.clear();
        self.proposed.clear();
    }

    /// A keep-alive from the session's client.
    pub fn renew(&mut self, session: SessionId, now: u64) {
        if let Some(t) = self.renewed.get_mut(&session) {
            *t = now;
        }
    }

    /// Tracks what an applied command did.
    pub fn observe(&mut self, ev: &LockEvent, now: u64) {
        match ev {
            LockEvent::SessionOpened { session, .. } => {
                self.renewed.insert(*session, now);
            }
            LockEvent::SessionClosed { session } | LockEvent::SessionExpired { session } => {
                self.renewed.remove(session);
                self.waits.retain(|k, _| k.0 != *session);
            }
            LockEvent::Waiting {
                session, lock, seq, ..
            } => {
                self.waits
                    .entry((*session, *lock, *seq))
                    .or_insert(now + self.wait_ns);
            }
            LockEvent::Granted {
                session, lock, seq, ..
            } => {
                self.waits.remove(&(*session, *lock, *seq));
            }
            LockEvent::Failed {
                session,
                lock: Some(lock),
                seq,
                ..
            } => {
                self.waits.remove(&(*session, *lock, *seq));
            }
            _ => {}
        }
    }

    /// Commands to propose now: expiries of sessions silent for a whole TTL
    /// and timeouts of waits past their deadline, each proposed once.
    pub fn due(&mut self, now: u64, locks: &LockState) -> Vec<LockCommand> {
        let mut out = Vec::new();
        for (&session, &renewed) in &self.renewed {
            let ttl = locks.session_ttl(session).unwrap_or(0);
            if now.saturating_sub(renewed) > ttl
                && self.proposed.insert(LockCommandKey::Expire(session))
            {
                out.push(LockCommand::Expire { session });
            }
        }
        for (&(session, lock, seq), &deadline) in &self.waits {
            if now >= deadline
                && self
                    .proposed
                    .insert(LockCommandKey::WaitTimeout(session, lock, seq))
            {
                out.push(LockCommand::WaitTimeout { session, lock, seq });
            }
        }
        out
    }

    /// True if the session is known to this leader.
    pub fn knows(&self, session: SessionId) -> bool {
        self.renewed.contains_key(&session)
    }
}
