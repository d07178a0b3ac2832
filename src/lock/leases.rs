//! The leader's clock-based duties for the lock service: session leases and
//! wait timeouts.
//!
//! Neither lives in the replicated state (it has no clock). The leader keeps
//! them on its own monotonic clock and proposes `Expire` or `WaitTimeout` when one
//! runs out; the log decides. A new leader restarts every lease and every wait
//! with its full length before expiring anything, so neither clock skew nor a
//! change of leader frees a live client's lock early: a lease can only end
//! after some leader went a whole TTL without hearing from the client.
//!
//! Why the monotonic clock: a lease and a wait timeout are durations, and a
//! step of the wall clock (an operator or NTP setting it) must neither end a
//! lease early nor keep a dead client's lock for as long as the step. The
//! monotonic clock still drifts with the node's rate, which is what the TTL
//! margin is for. Fencing tokens are log indices and need no clock at all.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{LockCommand, LockEvent, LockId, LockState, SessionId};

/// Volatile leader state; empty on followers.
#[derive(Clone, Debug, Default)]
pub struct LeaseKeeper {
    /// Monotonic time of each session's last sign of life.
    renewed: BTreeMap<SessionId, u64>,
    /// Waiting requests (session, lock, seq) and their monotonic deadlines.
    waits: BTreeMap<(SessionId, LockId, u64), u64>,
    /// Already proposed, so not proposed again while the entry commits.
    proposed: BTreeSet<LockCommandKey>,
    wait_ns: u64,
    /// Monotonic time this node applied each session's opening (kept on every
    /// node; only the planted bug uses it).
    opened_at: BTreeMap<SessionId, u64>,
    /// Planted bug `lock.expire_by_local_clock`.
    no_restart: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LockCommandKey {
    Expire(SessionId),
    WaitTimeout(SessionId, LockId, u64),
}

impl LeaseKeeper {
    /// Every acquire waits at most `wait_ns` in a queue; `no_restart` is the
    /// planted bug `lock.expire_by_local_clock`.
    pub fn new(wait_ns: u64, no_restart: bool) -> Self {
        LeaseKeeper {
            wait_ns,
            no_restart,
            ..Default::default()
        }
    }

    /// Notes when this node applied a session's opening (any role).
    pub fn note_opened(&mut self, session: SessionId, now: u64) {
        self.opened_at.insert(session, now);
    }

    /// Taking office at monotonic time `now`: every lease and wait starts afresh.
    /// (The planted bug instead dates each lease from when this node saw the
    /// session open, on its own clock, as if nobody had renewed it since.)
    pub fn take_office(&mut self, now: u64, locks: &LockState) {
        let start = |s: SessionId| {
            if self.no_restart {
                self.opened_at.get(&s).copied().unwrap_or(now)
            } else {
                now
            }
        };
        self.renewed = locks.sessions().map(|(s, _)| (s, start(s))).collect();
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

    /// A keep-alive from the session's client; false if the session is
    /// unknown or its expiry is already proposed (renewing it then would
    /// promise a lease that is about to end).
    pub fn renew(&mut self, session: SessionId, now: u64) -> bool {
        if self.proposed.contains(&LockCommandKey::Expire(session)) {
            return false;
        }
        match self.renewed.get_mut(&session) {
            Some(t) => {
                *t = now;
                true
            }
            None => false,
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
}
