//! Client histories: invoke/return pairs recorded from the trace, and their
//! linearizability check against the key-value model.

use std::collections::BTreeMap;

use super::linearizability::{
    Counterexample, KvInput, KvModel, KvOutput, Operation, Verdict, check_partitioned,
};
use super::unique_register::{self, Access, Outcome as UniqueOutcome, RegisterOp};
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
    /// Estimated bytes kept: one record per operation.
    pub fn retained_bytes(&self) -> u64 {
        crate::sim::budget::entries::<OpRecord>(self.ops.len())
            + crate::sim::budget::entries::<Option<usize>>(self.open.len())
    }

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
    ///
    /// The generated clients write unique values, so a key's history is
    /// usually decided in O(n log n) by `unique_register::check`, whatever
    /// its concurrency. A key where some value was written twice goes to the
    /// general search under `max_steps`. For a key that fails, the search
    /// is run too, for its counterexample; if it runs out of budget the
    /// counterexample names the broken rule and the operations instead.
    pub fn check_linearizable(&self, max_steps: u64) -> Verdict {
        let mut keys: BTreeMap<u32, Vec<&OpRecord>> = BTreeMap::new();
        for o in &self.ops {
            if o.is_read && o.outcome != Some(Outcome::Ok) {
                continue; // a read that never answered constrains nothing
            }
            keys.entry(o.key).or_default().push(o);
        }
        let mut general = Vec::new();
        for (key, ops) in keys {
            match unique_register::check(&register_ops(&ops)) {
                UniqueOutcome::Linearizable => {}
                UniqueOutcome::NotApplicable => {
                    general.extend(ops.iter().map(|o| (key, kv_op(o))));
                }
                UniqueOutcome::NotLinearizable(conflict) => {
                    let kv = ops.iter().map(|o| (key, kv_op(o))).collect();
                    return match check_partitioned(&KvModel, kv, max_steps) {
                        found @ Verdict::NotLinearizable(_) => found,
                        _ => Verdict::NotLinearizable(Box::new(Counterexample::of_rule(
                            format!("{key:?}"),
                            conflict.rule.to_string(),
                            conflict.ops.iter().map(|&i| (i, kv_op(ops[i]))),
                        ))),
                    };
                }
            }
        }
        check_partitioned(&KvModel, general, max_steps)
    }
}

/// One key's operations as register accesses (answered reads and all writes).
fn register_ops(ops: &[&OpRecord]) -> Vec<RegisterOp> {
    ops.iter()
        .map(|o| {
            let done = o.outcome == Some(Outcome::Ok);
            RegisterOp {
                access: if o.is_read {
                    Access::Read(o.value)
                } else {
                    // A write always carries its value; a missing one reads as
                    // the initial value, which no write can produce.
                    match o.value {
                        Some(v) => Access::Write(v),
                        None => Access::Read(None),
                    }
                },
                call: o.call_ns,
                ret: if done { o.ret_ns } else { None },
            }
        })
        .collect()
}

/// One operation for the key-value model of the general search.
fn kv_op(o: &OpRecord) -> Operation<KvInput, KvOutput> {
    let render = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
    let done = o.outcome == Some(Outcome::Ok);
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
    Operation {
        client: o.client as u64,
        input,
        output,
        call: o.call_ns,
        ret: if done { o.ret_ns } else { None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::linearizability::KvModel;

    /// A small deterministic generator (splitmix64).
    struct Gen(u64);
    impl Gen {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }
    }

    /// A linearizable history of `clients` clients on one key, each running
    /// `rounds` operations back to back, each taking effect at a random
    /// point inside a long interval: heavy concurrency, unique written
    /// values, some writes timing out. Returns the history and, per read,
    /// its position in `ops()` (so tests can tamper with one).
    fn busy_history(clients: usize, rounds: usize) -> History {
        let mut g = Gen(7);
        // (time, client, is_call, is_read, value): built from linearization points.
        let mut events: Vec<(u64, usize, bool, bool, Option<u64>, Outcome)> = Vec::new();
        let mut points = Vec::new();
        for c in 0..clients {
            let mut t = g.below(1_000);
            for r in 0..rounds {
                let call = t + 1;
                let point = call + g.below(5_000);
                let ret = point + g.below(5_000);
                let is_read = g.below(2) == 0;
                let timed_out = !is_read && g.below(20) == 0;
                let value = (!is_read).then_some((c * rounds + r) as u64 + 1);
                points.push((point, c, call, ret, is_read, value, timed_out));
                t = ret;
            }
        }
        points.sort_unstable();
        let mut current: Option<u64> = None;
        for (_, c, call, ret, is_read, value, timed_out) in points {
            if !is_read {
                current = value;
            }
            let outcome = if timed_out {
                Outcome::Unknown
            } else {
                Outcome::Ok
            };
            let seen = if is_read { current } else { value };
            events.push((call, c, true, is_read, value, outcome));
            events.push((ret, c, false, is_read, seen, outcome));
        }
        events.sort_by_key(|e| (e.0, !e.2, e.1));
        let mut h = History::default();
        for (t, client, is_call, is_read, value, outcome) in events {
            let op = if is_read { "get" } else { "put" };
            let ev = if is_call {
                TraceEvent::ClientInvoke {
                    client,
                    op,
                    key: 0,
                    value: if is_read { None } else { value },
                }
            } else {
                TraceEvent::ClientReturn {
                    client,
                    op,
                    key: 0,
                    value,
                    outcome,
                }
            };
            h.observe(t, &ev);
        }
        h
    }

    fn general_search(h: &History, max_steps: u64) -> Verdict {
        let ops = h
            .ops()
            .iter()
            .filter(|o| !o.is_read || o.outcome == Some(Outcome::Ok))
            .map(|o| (o.key, kv_op(o)))
            .collect();
        check_partitioned(&KvModel, ops, max_steps)
    }

    #[test]
    fn a_history_beyond_the_search_budget_is_decided() {
        let h = busy_history(100, 20);
        assert_eq!(h.ops().len(), 2_000);
        // The general search alone (the check before unique values were
        // used) gives up on it under the run's default budget.
        assert_eq!(general_search(&h, 5_000_000), Verdict::Unknown);
        assert_eq!(h.check_linearizable(5_000_000), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_in_a_busy_history_is_caught() {
        let mut h = busy_history(100, 20);
        // The last answered read now returns the first value ever written
        // (acknowledged long before): a stale read.
        let first = h
            .ops()
            .iter()
            .filter(|o| !o.is_read && o.outcome == Some(Outcome::Ok))
            .min_by_key(|o| o.ret_ns)
            .and_then(|o| o.value);
        let last = h
            .ops
            .iter_mut()
            .filter(|o| o.is_read && o.outcome == Some(Outcome::Ok))
            .max_by_key(|o| o.call_ns)
            .expect("reads");
        assert_ne!(last.value, first);
        last.value = first;
        let Verdict::NotLinearizable(cx) = h.check_linearizable(5_000_000) else {
            panic!("a stale read must be caught");
        };
        assert_eq!(cx.partition.as_deref(), Some("0"));
        let text = cx.to_string();
        assert!(text.contains("not linearizable: partition 0"), "{text}");
        // Without budget for the search's counterexample, the verdict stands
        // and the counterexample names the rule and the operations breaking it.
        let Verdict::NotLinearizable(cx) = h.check_linearizable(1) else {
            panic!("the zone check needs no search budget");
        };
        let text = cx.to_string();
        assert!(cx.rule.is_some() && cx.prefix.is_empty(), "{text}");
        assert!(
            text.contains("value had to remain") || text.contains("overlapping intervals"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Get(\"{}\")", first.unwrap())),
            "{text}"
        );
    }

    #[test]
    fn a_repeated_value_goes_to_the_general_search() {
        let mut h = History::default();
        for (t, client, value) in [(0, 0, 5), (10, 1, 5)] {
            let put = |value| TraceEvent::ClientInvoke {
                client,
                op: "put",
                key: 3,
                value,
            };
            h.observe(t, &put(Some(value)));
            h.observe(
                t + 1,
                &TraceEvent::ClientReturn {
                    client,
                    op: "put",
                    key: 3,
                    value: Some(value),
                    outcome: Outcome::Ok,
                },
            );
        }
        assert_eq!(h.check_linearizable(10), Verdict::Linearizable);
        // A budget of one step cannot decide two operations: the search ran.
        assert_eq!(h.check_linearizable(1), Verdict::Unknown);
    }
}
