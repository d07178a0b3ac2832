//! A polynomial-time linearizability check for one read/write register
//! whose writes all write different values.
//!
//! When every written value is unique, each read names the one write it
//! observed (its *dictating* write; a read of the initial value is dictated
//! by a virtual write that completes before anything else is called). The
//! general search of `linearizability.rs` is then unnecessary: Gibbons and
//! Korach ("Testing shared memories", SIAM J. Comput. 26(4), 1997) show the
//! problem is polynomial with such a read mapping, and the *zone*
//! characterisation used here (Gibbons & Korach; restated by Golab, Li and
//! Shah, "Analyzing consistency properties for fun and profit", PODC 2011)
//! decides it in O(n log n):
//!
//! - A write and the reads it dictates form a *cluster*. Let `lo` be the
//!   earliest return in the cluster and `hi` its latest call. If `lo < hi`
//!   the cluster has a *forward zone* `[lo, hi]`: its value must be the
//!   register's value throughout that interval. Otherwise all of its
//!   operations overlap, and it has a *backward zone* `[hi, lo]`, an interval
//!   in which the write and all its reads can take effect together.
//! - The history is linearizable iff (1) every read's value was written (or
//!   is the initial value) and no read returns before its write is called,
//!   (2) no two forward zones overlap, and (3) no backward zone lies inside a
//!   forward zone.
//!
//! Timestamps follow the convention of `linearizability.rs`: an operation
//! returning at `t` and another called at `t` are concurrent. Each call at
//! `t` becomes the point `2t`, each return `2t + 1` (after shifting by one
//! to make room for the virtual initial write), so every comparison above is
//! between a call and a return and never ties. An operation that never
//! returned (outcome unknown) returns at +infinity: it may take effect at
//! any time after its call, or never, exactly as in the general search.

use std::collections::BTreeMap;
use std::fmt;

/// What an operation did to the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Wrote this value.
    Write(u64),
    /// Read this value (None: the initial value, never written).
    Read(Option<u64>),
}

/// One operation of a register history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterOp {
    pub access: Access,
    /// Time of the call.
    pub call: u64,
    /// Time of the return, or None if the operation never returned (only
    /// writes may: a read without an answer constrains nothing).
    pub ret: Option<u64>,
}

/// The outcome of the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Some linearization exists.
    Linearizable,
    /// None exists; the conflict says why.
    NotLinearizable(Conflict),
    /// The check does not apply: a value was written twice, or a read
    /// without an answer was given. The general search has to decide.
    NotApplicable,
}

/// Why a unique-value history is not linearizable: a rule and the
/// operations (positions in the slice given to `check`) that break it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub rule: Rule,
    /// The operations involved, in the order the rule names them.
    pub ops: Vec<usize>,
}

/// The broken condition of the zone characterisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// A read returned a value no operation wrote. `ops`: the read.
    NeverWritten,
    /// A read returned before the write of its value was called. `ops`:
    /// the read, then the write.
    ReadBeforeWrite,
    /// Two values each had to be the register's value over overlapping
    /// intervals. `ops`: for each value, the operation that closes the
    /// earlier end of its interval (a return) and the one that opens the
    /// later end (a call); a missing write (the initial value) is left out.
    ForwardZonesOverlap,
    /// A write and its reads all fall strictly inside an interval in
    /// which another value had to stay. `ops`: the enclosing value's two
    /// operations, then the enclosed write.
    BackwardZoneInsideForward,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::NeverWritten => "a read returned a value that no operation wrote",
            Rule::ReadBeforeWrite => "a read returned before the write of its value was called",
            Rule::ForwardZonesOverlap => {
                "two values each had to be the register's value over overlapping intervals \
                 (a read returned each value while a later operation still had to see it)"
            }
            Rule::BackwardZoneInsideForward => {
                "a write and all its reads lie strictly inside an interval over which \
                 another value had to remain the register's value"
            }
        })
    }
}

/// One cluster's zone: from the earliest return to the latest call (or
/// the other way round for a backward zone), with the operations at each end.
#[derive(Clone, Copy, Debug)]
struct Zone {
    /// Earliest return point and the operation (None: the virtual initial write).
    lo: (u128, Option<usize>),
    /// Latest call point and its operation.
    hi: (u128, Option<usize>),
    /// The cluster's write (None: the initial value).
    write: Option<usize>,
}

/// The virtual initial write: called at point 0, returned at point 1.
const INITIAL_CALL: u128 = 0;
const INITIAL_RET: u128 = 1;

fn call_point(t: u64) -> u128 {
    2 * (u128::from(t) + 1)
}

fn ret_point(op: &RegisterOp) -> u128 {
    match op.ret {
        Some(t) => 2 * (u128::from(t.max(op.call)) + 1) + 1,
        None => u128::MAX,
    }
}

/// Checks one register's history (initially unwritten) in O(n log n).
pub fn check(ops: &[RegisterOp]) -> Outcome {
    // The dictating write of each value; a second write of a value means the
    // read mapping is ambiguous and this check does not apply.
    let mut writer: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        match op.access {
            Access::Write(v) => {
                if writer.insert(v, i).is_some() {
                    return Outcome::NotApplicable;
                }
            }
            Access::Read(_) if op.ret.is_none() => return Outcome::NotApplicable,
            Access::Read(_) => {}
        }
    }
    // Zones indexed by value, the initial value first: `None` sorts first.
    let mut zones: BTreeMap<Option<u64>, Zone> = BTreeMap::new();
    for (&v, &w) in &writer {
        let op = &ops[w];
        zones.insert(
            Some(v),
            Zone {
                lo: (ret_point(op), Some(w)),
                hi: (call_point(op.call), Some(w)),
                write: Some(w),
            },
        );
    }
    for (i, op) in ops.iter().enumerate() {
        let Access::Read(v) = op.access else { continue };
        let zone = match v {
            Some(value) => match zones.get_mut(&Some(value)) {
                Some(z) => z,
                None => {
                    return Outcome::NotLinearizable(Conflict {
                        rule: Rule::NeverWritten,
                        ops: vec![i],
                    });
                }
            },
            None => zones.entry(None).or_insert(Zone {
                lo: (INITIAL_RET, None),
                hi: (INITIAL_CALL, None),
                write: None,
            }),
        };
        let (call, ret) = (call_point(op.call), ret_point(op));
        if let Some(w) = zone.write
            && ret < call_point(ops[w].call)
        {
            return Outcome::NotLinearizable(Conflict {
                rule: Rule::ReadBeforeWrite,
                ops: vec![i, w],
            });
        }
        if ret < zone.lo.0 {
            zone.lo = (ret, Some(i));
        }
        if call > zone.hi.0 {
            zone.hi = (call, Some(i));
        }
    }
    let (mut forward, backward): (Vec<Zone>, Vec<Zone>) =
        zones.into_values().partition(|z| z.lo.0 < z.hi.0);
    // (2) Sorted by start, a forward zone overlaps an earlier one iff it
    // starts before the furthest end so far (each starts before it ends).
    forward.sort_by_key(|z| z.lo.0);
    let mut furthest: Option<&Zone> = None;
    for z in &forward {
        if let Some(f) = furthest
            && z.lo.0 < f.hi.0
        {
            let mut involved = ends(f);
            involved.extend(ends(z));
            return Outcome::NotLinearizable(Conflict {
                rule: Rule::ForwardZonesOverlap,
                ops: involved,
            });
        }
        if furthest.is_none_or(|f| z.hi.0 > f.hi.0) {
            furthest = Some(z);
        }
    }
    // (3) The forward zones are now disjoint and sorted, so the only one
    // that can contain a backward zone is the last one starting before it.
    for b in &backward {
        let (start, end) = (b.hi.0, b.lo.0);
        let before = forward.partition_point(|f| f.lo.0 < start);
        if let Some(f) = before.checked_sub(1).map(|k| &forward[k])
            && end < f.hi.0
        {
            let mut involved = ends(f);
            involved.extend(b.write);
            return Outcome::NotLinearizable(Conflict {
                rule: Rule::BackwardZoneInsideForward,
                ops: involved,
            });
        }
    }
    Outcome::Linearizable
}

/// The operations at a forward zone's two ends (the initial write left out).
fn ends(z: &Zone) -> Vec<usize> {
    z.lo.1.into_iter().chain(z.hi.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::linearizability::{
        Operation, RegisterInput, RegisterModel, RegisterOutput, Verdict, check as wgl,
    };

    fn w(v: u64, call: u64, ret: u64) -> RegisterOp {
        RegisterOp {
            access: Access::Write(v),
            call,
            ret: Some(ret),
        }
    }

    fn r(v: Option<u64>, call: u64, ret: u64) -> RegisterOp {
        RegisterOp {
            access: Access::Read(v),
            call,
            ret: Some(ret),
        }
    }

    fn rule(ops: &[RegisterOp]) -> Option<Rule> {
        match check(ops) {
            Outcome::Linearizable => None,
            Outcome::NotLinearizable(c) => Some(c.rule),
            Outcome::NotApplicable => panic!("unique values: the check applies"),
        }
    }

    #[test]
    fn sequential_and_concurrent_histories_pass() {
        assert_eq!(rule(&[]), None);
        assert_eq!(rule(&[r(None, 0, 1), w(1, 2, 3), r(Some(1), 4, 5)]), None);
        // Concurrent writes, reads in either order.
        assert_eq!(
            rule(&[
                w(1, 0, 10),
                w(2, 0, 10),
                r(Some(2), 11, 12),
                r(Some(2), 13, 14)
            ]),
            None
        );
        // Touching intervals are concurrent: a read called as the write returns.
        assert_eq!(rule(&[w(1, 0, 5), r(None, 5, 6)]), None);
        // A write that never returned may take effect late, or never.
        let pending = RegisterOp {
            access: Access::Write(1),
            call: 0,
            ret: None,
        };
        assert_eq!(rule(&[pending, r(None, 5, 6), r(Some(1), 7, 8)]), None);
        assert_eq!(rule(&[pending, r(None, 5, 6)]), None);
    }

    #[test]
    fn each_rule_is_caught() {
        assert_eq!(rule(&[r(Some(9), 0, 1)]), Some(Rule::NeverWritten));
        assert_eq!(
            rule(&[r(Some(1), 0, 1), w(1, 2, 3)]),
            Some(Rule::ReadBeforeWrite)
        );
        // Stale read: 1 is read after 2 was read (both forward zones).
        assert_eq!(
            rule(&[w(1, 0, 1), w(2, 2, 3), r(Some(2), 4, 5), r(Some(1), 6, 7)]),
            Some(Rule::ForwardZonesOverlap)
        );
        // A read of the initial value after a completed write.
        assert_eq!(
            rule(&[w(1, 0, 1), r(None, 2, 3)]),
            Some(Rule::BackwardZoneInsideForward)
        );
        // Write 2 completes strictly between a read of 1 and a later read of 1.
        assert_eq!(
            rule(&[w(1, 0, 1), r(Some(1), 2, 3), w(2, 4, 5), r(Some(1), 6, 7)]),
            Some(Rule::BackwardZoneInsideForward)
        );
    }

    #[test]
    fn a_repeated_value_or_an_unanswered_read_is_left_to_the_search() {
        assert_eq!(check(&[w(1, 0, 1), w(1, 2, 3)]), Outcome::NotApplicable);
        let unanswered = RegisterOp {
            access: Access::Read(None),
            call: 0,
            ret: None,
        };
        assert_eq!(check(&[unanswered]), Outcome::NotApplicable);
    }

    /// A small deterministic generator (splitmix64).
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random small histories: the zone check must agree with the exhaustive
    /// search on every one, linearizable or not (both kinds occur often).
    #[test]
    fn agrees_with_the_general_search() {
        let mut g = Gen(13);
        let (mut yes, mut no) = (0, 0);
        for _ in 0..20_000 {
            let n = 1 + g.below(7) as usize;
            let mut ops = Vec::new();
            let mut written = 0u64;
            for _ in 0..n {
                let call = g.below(12);
                let ret = (g.below(8) > 0).then(|| call + g.below(6));
                if g.below(2) == 0 {
                    written += 1;
                    ops.push(RegisterOp {
                        access: Access::Write(written),
                        call,
                        ret,
                    });
                } else {
                    // Mostly values that exist, sometimes the initial one.
                    let v = g.below(written + 2);
                    let v = (v > 0).then_some(v.min(written.max(1)));
                    ops.push(RegisterOp {
                        access: Access::Read(v),
                        call,
                        ret: Some(ret.unwrap_or(call + 1)),
                    });
                }
            }
            let general: Vec<Operation<RegisterInput, RegisterOutput>> = ops
                .iter()
                .map(|o| match o.access {
                    Access::Write(v) => Operation {
                        client: 0,
                        input: RegisterInput::Write(v as i64),
                        output: if o.ret.is_some() {
                            RegisterOutput::WriteOk
                        } else {
                            RegisterOutput::Unknown
                        },
                        call: o.call,
                        ret: o.ret,
                    },
                    Access::Read(v) => Operation {
                        client: 0,
                        input: RegisterInput::Read,
                        output: RegisterOutput::ReadOk(v.map(|v| v as i64)),
                        call: o.call,
                        ret: o.ret,
                    },
                })
                .collect();
            let expected = match wgl(&RegisterModel, &general, 1_000_000) {
                Verdict::Linearizable => true,
                Verdict::NotLinearizable(_) => false,
                Verdict::Unknown => panic!("tiny history exhausted the search"),
            };
            let got = match check(&ops) {
                Outcome::Linearizable => true,
                Outcome::NotLinearizable(_) => false,
                Outcome::NotApplicable => panic!("unique values by construction"),
            };
            assert_eq!(got, expected, "{ops:?}");
            if expected { yes += 1 } else { no += 1 }
        }
        assert!(yes > 2_000 && no > 2_000, "{yes} linearizable, {no} not");
    }
}
