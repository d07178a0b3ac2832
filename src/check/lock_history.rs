//! Lock histories checked against a sequential lock: the offline check that
//! every answer a lock client got could have come from one lock service
//! taking requests one at a time, each at some instant between its call and
//! its return.
//!
//! Per lock (the model partitions by lock), the state is who holds it, how,
//! and the last fencing token. Session expiries, which no client asks for,
//! enter the history as operations at the instant the first node applied them.

use std::collections::BTreeMap;

use super::linearizability::{Model, Operation, Verdict, check_partitioned};
use crate::lock::{LockId, Mode, SessionId};

/// What a client asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockInput {
    Acquire {
        session: SessionId,
        mode: Mode,
    },
    Release {
        session: SessionId,
    },
    /// The session ended (closed by its client, or expired): its holds are gone.
    End {
        session: SessionId,
    },
}

/// What it was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockOutput {
    Granted {
        token: u64,
    },
    Released,
    /// Refused; nothing changed.
    Failed,
    Done,
    /// No answer came (a release abandoned when the session was lost): it
    /// may or may not have happened.
    Unknown,
}

/// One operation on one lock, times in simulated ns (`ret` None: no answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockOp {
    pub client: u32,
    pub lock: LockId,
    pub input: LockInput,
    pub output: LockOutput,
    pub call_ns: u64,
    pub ret_ns: Option<u64>,
}

/// The sequential lock, one lock at a time.
pub struct LockModel;

/// Holders (session -> mode, holds, token) and the last token issued.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct LockModelState {
    holders: BTreeMap<SessionId, (Mode, u32, u64)>,
    last_token: u64,
}

impl LockModelState {
    /// Gives back one hold of `session`; false if it held none.
    fn release_one(&mut self, session: SessionId) -> bool {
        let Some((mode, holds, token)) = self.holders.get(&session).copied() else {
            return false;
        };
        if holds > 1 {
            self.holders.insert(session, (mode, holds - 1, token));
        } else {
            self.holders.remove(&session);
        }
        true
    }
}

impl Model for LockModel {
    type State = LockModelState;
    type Input = LockInput;
    type Output = LockOutput;

    fn init(&self) -> LockModelState {
        LockModelState::default()
    }

    fn step(
        &self,
        s: &LockModelState,
        input: &LockInput,
        output: &LockOutput,
    ) -> Option<LockModelState> {
        let mut next = s.clone();
        match (*input, *output) {
            (LockInput::Acquire { .. }, LockOutput::Failed) => Some(next),
            (LockInput::Acquire { session, mode }, LockOutput::Granted { token }) => {
                let others_ok = s
                    .holders
                    .iter()
                    .all(|(&o, &(m, _, _))| o == session || m.compatible(mode));
                match s.holders.get(&session).copied() {
                    // Re-entry (same or weaker mode): same token, one more hold.
                    Some((held, holds, t)) if held == Mode::Exclusive || mode == Mode::Shared => {
                        (token == t).then(|| {
                            next.holders.insert(session, (held, holds + 1, t));
                            next
                        })
                    }
                    // Upgrade: alone, with a new, higher token.
                    Some((_, holds, _)) => (others_ok && token > s.last_token).then(|| {
                        next.holders
                            .insert(session, (Mode::Exclusive, holds + 1, token));
                        next.last_token = token;
                        next
                    }),
                    // A new grant: compatible, and a token no lower than any before
                    // (shared holders granted by one entry share it).
                    None => {
                        let fresh =
                            token > s.last_token || (token == s.last_token && mode == Mode::Shared);
                        (others_ok && fresh).then(|| {
                            next.holders.insert(session, (mode, 1, token));
                            next.last_token = token;
                            next
                        })
                    }
                }
            }
            (LockInput::Release { session }, LockOutput::Released) => {
                next.release_one(session).then_some(next)
            }
            // An unanswered release took effect if the lock was held.
            (LockInput::Release { session }, LockOutput::Unknown) => {
                next.release_one(session);
                Some(next)
            }
            // A refused release is one of a lock the session did not hold.
            (LockInput::Release { session }, LockOutput::Failed) => {
                (!s.holders.contains_key(&session)).then_some(next)
            }
            (LockInput::End { session }, LockOutput::Done) => {
                next.holders.remove(&session);
                Some(next)
            }
            _ => None,
        }
    }
}

/// Checks client lock operations plus session ends (`ends`: session and the
/// instant it ended) against the sequential lock, one lock at a time.
pub fn check_lock_history(ops: &[LockOp], ends: &[(SessionId, u64)], max_steps: u64) -> Verdict {
    let locks: std::collections::BTreeSet<LockId> = ops.iter().map(|o| o.lock).collect();
    let mut all = Vec::new();
    for o in ops {
        // An acquire that never got an answer may or may not have taken the
        // lock; if it did, the lock stayed held until its session ended, so
        // leaving it out cannot hide a conflict between answered operations.
        if o.ret_ns.is_none() && matches!(o.input, LockInput::Acquire { .. }) {
            continue;
        }
        all.push((
            o.lock,
            Operation {
                client: o.client as u64,
                input: o.input,
                output: o.output,
                call: o.call_ns,
                ret: o.ret_ns,
            },
        ));
    }
    for &(session, at) in ends {
        for &lock in &locks {
            let op = Operation {
                client: u64::MAX - session,
                input: LockInput::End { session },
                output: LockOutput::Done,
                call: at,
                ret: Some(at),
            };
            all.push((lock, op));
        }
    }
    check_partitioned(&LockModel, all, max_steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, input: LockInput, output: LockOutput, call: u64, ret: u64) -> LockOp {
        LockOp {
            client,
            lock: 0,
            input,
            output,
            call_ns: call,
            ret_ns: Some(ret),
        }
    }

    fn acquire(session: u64, mode: Mode) -> LockInput {
        LockInput::Acquire { session, mode }
    }

    #[test]
    fn exclusive_holders_one_after_another_are_linearizable() {
        let h = [
            op(
                0,
                acquire(1, Mode::Exclusive),
                LockOutput::Granted { token: 5 },
                0,
                10,
            ),
            op(
                0,
                LockInput::Release { session: 1 },
                LockOutput::Released,
                20,
                30,
            ),
            op(
                1,
                acquire(2, Mode::Exclusive),
                LockOutput::Granted { token: 9 },
                15,
                40,
            ),
        ];
        assert!(matches!(
            check_lock_history(&h, &[], 100_000),
            Verdict::Linearizable
        ));
    }

    #[test]
    fn two_exclusive_holders_at_once_are_not() {
        let h = [
            op(
                0,
                acquire(1, Mode::Exclusive),
                LockOutput::Granted { token: 5 },
                0,
                10,
            ),
            op(
                1,
                acquire(2, Mode::Exclusive),
                LockOutput::Granted { token: 9 },
                20,
                30,
            ),
            op(
                0,
                LockInput::Release { session: 1 },
                LockOutput::Released,
                40,
                50,
            ),
        ];
        assert!(matches!(
            check_lock_history(&h, &[], 100_000),
            Verdict::NotLinearizable(_)
        ));
    }

    #[test]
    fn an_expiry_frees_the_lock_and_a_token_may_not_go_back() {
        let h = [
            op(
                0,
                acquire(1, Mode::Exclusive),
                LockOutput::Granted { token: 5 },
                0,
                10,
            ),
            op(
                1,
                acquire(2, Mode::Exclusive),
                LockOutput::Granted { token: 9 },
                20,
                30,
            ),
        ];
        assert!(matches!(
            check_lock_history(&h, &[(1, 15)], 100_000),
            Verdict::Linearizable
        ));
        let back = [
            op(
                0,
                acquire(1, Mode::Exclusive),
                LockOutput::Granted { token: 5 },
                0,
                10,
            ),
            op(
                1,
                acquire(2, Mode::Exclusive),
                LockOutput::Granted { token: 4 },
                20,
                30,
            ),
        ];
        assert!(matches!(
            check_lock_history(&back, &[(1, 15)], 100_000),
            Verdict::NotLinearizable(_)
        ));
    }

    #[test]
    fn shared_holders_coexist_and_reentry_keeps_the_token() {
        let h = [
            op(
                0,
                acquire(1, Mode::Shared),
                LockOutput::Granted { token: 5 },
                0,
                10,
            ),
            op(
                1,
                acquire(2, Mode::Shared),
                LockOutput::Granted { token: 6 },
                0,
                10,
            ),
            op(
                0,
                acquire(1, Mode::Shared),
                LockOutput::Granted { token: 5 },
                20,
                30,
            ),
        ];
        assert!(matches!(
            check_lock_history(&h, &[], 100_000),
            Verdict::Linearizable
        ));
        let wrong = [
            op(
                0,
                acquire(1, Mode::Shared),
                LockOutput::Granted { token: 5 },
                0,
                10,
            ),
            op(
                0,
                acquire(1, Mode::Shared),
                LockOutput::Granted { token: 7 },
                20,
                30,
            ),
        ];
        assert!(matches!(
            check_lock_history(&wrong, &[], 100_000),
            Verdict::NotLinearizable(_)
        ));
    }

    #[test]
    fn releasing_a_lock_not_held_must_fail() {
        let h = [op(
            0,
            LockInput::Release { session: 1 },
            LockOutput::Released,
            0,
            10,
        )];
        assert!(matches!(
            check_lock_history(&h, &[], 100_000),
            Verdict::NotLinearizable(_)
        ));
    }
}
