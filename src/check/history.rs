//! Client histories: invoke/return pairs recorded from the trace, and their
//! linearizability check against the key-value model.

use super::linearizability::{KvInput, KvModel, KvOutput, Operation, Verdict, check_partitioned};
use crate::trace::{Outcome, TraceEvent};

/// One client operation as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    pub client: usize,
    pub key: u32,
    pub is_read: bool,
    /// The value written, or the value read (None = key absent).
    pub value: Option<u64>,
    pub call_ns: u64,
    /// None while pending or when the outcome is unknown.
    pub ret_ns: Option<u64>,
    pub outcome: Option<Outcome>,
}

/// Every client operation of a run.
#[derive(Clone, Debug, Default)]
pub struct History {
    ops: Vec<OpRecord>,
    open: Vec<Option<usize>>,
}

impl History {
    /// Records client events; ignores everything else.
    pub fn observe(&mut self, t_ns: u64, ev: &TraceEvent) {
        match *ev {
            TraceEvent::ClientInvoke {
                client,
                op,
                key,
                value,
            } => {
                if self.open.len() <= client {
                    self.open.resize(client + 1, None);
                }
                self.open[client] = Some(self.ops.len());
                self.ops.push(OpRecord {
                    client,
                    key,
                    is_read: op == "get",
                    value,
                    call_ns: t_ns,
                    ret_ns: None,
                    outcome: None,
                });
            }
            TraceEvent::ClientReturn {
                client,
                value,
                outcome,
                ..
            } => {
                if let Some(i) = self.open.get_mut(client).and_then(Option::take) {
                    let r = &mut self.ops[i];
                    r.outcome = Some(outcome);
                    if outcome == Outcome::Ok {
                        r.ret_ns = Some(t_ns);
                        r.value = value;
                    }
                }
            }
            _ => {}
        }
    }

    /// All operations in invocation order.
    pub fn ops(&self) -> &[OpRecord] {
        &self.ops
    }

    /// Operations that got a definite answer.
    pub fn completed(&self) -> u64 {
        self.ops
            .iter()
            .filter(|o| o.outcome == Some(Outcome::Ok))
            .count() as u64
    }

    /// Writes acknowledged to their client: (client, key, value).
    pub fn acked_writes(&self) -> impl Iterator<Item = &OpRecord> {
        self.ops
            .iter()
            .filter(|o| !o.is_read && o.outcome == Some(Outcome::Ok))
    }

    /// Checks the history for linearizability, one key at a time.
    pub fn check_linearizable(&self, max_steps: u64) -> Verdict {
        let render = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
        let mut ops = Vec::with_capacity(self.ops.len());
        for o in &self.ops {
            let done = o.outcome == Some(Outcome::Ok);
            if o.is_read && !done {
                continue; // a read that never answered constrains nothing
            }
            let input = if o.is_read {
                KvInput::Get
            } else {
                KvInput::Put(render(o.value))
            };
            let output = match (o.is_read, done) {
                (true, _) => KvOutput::Get(render(o.value)),
                (false, true) => KvOutput::Ok,
                (false, false) => KvOutput::Unknown,
            };
            let op = Operation {
                client: o.client as u64,
                input,
                output,
                call: o.call_ns,
                ret: if done { o.ret_ns } else { None },
            };
            ops.push((o.key, op));
        }
        check_partitioned(&KvModel, ops, max_steps)
    }
}
