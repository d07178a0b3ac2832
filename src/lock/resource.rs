//! The protected resource: a storage service that lock holders write to.
//!
//! It accepts a write only with a fencing token at least as high as the
//! highest it has accepted for that lock, which is what makes a lock safe
//! when its holder is paused or partitioned past its lease (Kleppmann, "How
//! to do distributed locking", 2016). The planted bug `lock.no_fencing`
//! turns the check off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::LockId;
use crate::env::Env;
use crate::node::Msg;
use crate::trace::{NodeId, TraceEvent};

/// Whether a write opens or closes the writer's critical section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Begin,
    End,
}

/// The resource's state.
#[derive(Clone, Debug, Default)]
pub struct Resource {
    highest: BTreeMap<LockId, u64>,
    check_tokens: bool,
    accepted: u64,
    rejected: u64,
}

impl Resource {
    /// A resource; `check_tokens` false only for the planted bug.
    pub fn new(check_tokens: bool) -> Self {
        Resource {
            check_tokens,
            ..Default::default()
        }
    }

    /// Writes accepted and rejected so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.accepted, self.rejected)
    }

    /// Handles a write; answers with whether it was accepted.
    pub fn on_message(&mut self, env: &mut impl Env, from: NodeId, msg: Msg) {
        let Msg::ResourceWrite {
            client,
            lock,
            token,
            phase,
        } = msg
        else {
            return;
        };
        let highest = self.highest.entry(lock).or_insert(0);
        let accepted = !self.check_tokens || token >= *highest;
        if accepted {
            *highest = (*highest).max(token);
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
        let begin = phase == Phase::Begin;
        env.trace(TraceEvent::ResourceWrite {
            client,
            lock,
            token,
            begin,
            accepted,
        });
        env.send(
            from,
            Msg::ResourceAck {
                lock,
                token,
                accepted,
            },
        );
    }
}
