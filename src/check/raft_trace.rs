//! The Raft checker over traces read back from files: the nodes' own traces
//! of a real cluster (`distsync node --trace`), merged by time. The rules
//! are `RaftChecker`'s, fed the same events the simulator feeds it online;
//! without the nodes' stable storage at hand, the rules that compare with it
//! are skipped, as for any bare event stream.

use serde_json::Value;

use super::raft_safety::{RaftChecker, Violation};
use crate::trace::{NodeId, Role, TraceEvent};

/// What a check of traces found.
#[derive(Debug)]
pub struct TraceVerdict {
    /// Raft events checked.
    pub events: usize,
    /// Nodes seen.
    pub nodes: usize,
    /// The first broken invariant, with the 1-based position of its line in
    /// the merged trace.
    pub violation: Option<(usize, Violation)>,
}

/// `n3` is node 2.
fn node_id(v: &Value) -> Option<NodeId> {
    let n: usize = v.as_str()?.strip_prefix('n')?.parse().ok()?;
    n.checked_sub(1)
}

fn role(v: &Value) -> Option<Role> {
    Some(match v.as_str()? {
        "follower" => Role::Follower,
        "precandidate" => Role::PreCandidate,
        "candidate" => Role::Candidate,
        "leader" => Role::Leader,
        _ => return None,
    })
}

/// A trace line's Raft event and its node; `Ok(None)` for lines of other
/// kinds or of other endpoints; `Err` for a Raft line missing a field.
pub fn raft_event(line: &Value) -> Result<Option<(NodeId, TraceEvent)>, String> {
    let Some(kind) = line["kind"].as_str().filter(|k| k.starts_with("raft.")) else {
        return Ok(None);
    };
    let Some(node) = node_id(&line["node"]) else {
        return Ok(None);
    };
    let u = |name: &str| {
        line[name]
            .as_u64()
            .ok_or_else(|| format!("{kind} line without a numeric \"{name}\""))
    };
    let ev = match kind {
        "raft.role" => TraceEvent::RaftRole {
            term: u("term")?,
            role: role(&line["role"]).ok_or_else(|| format!("{kind}: unknown role"))?,
        },
        "raft.vote" => TraceEvent::RaftVote {
            term: u("term")?,
            candidate: node_id(&line["candidate"])
                .ok_or_else(|| format!("{kind}: candidate is not a node name"))?,
            last_index: u("last_index")?,
            last_term: u("last_term")?,
        },
        "raft.append" => TraceEvent::RaftAppend {
            index: u("index")?,
            term: u("term")?,
            digest: u("digest")?,
        },
        "raft.apply" => TraceEvent::RaftApply {
            index: u("index")?,
            term: u("term")?,
            digest: u("digest")?,
        },
        "raft.truncate" => TraceEvent::RaftTruncate { from: u("from")? },
        "raft.commit" => TraceEvent::RaftCommit { index: u("index")? },
        "raft.snapshot" => TraceEvent::RaftSnapshot {
            index: u("index")?,
            term: u("term")?,
        },
        "raft.recover" => TraceEvent::RaftRecover {
            term: u("term")?,
            voted_for: node_id(&line["voted_for"]),
            last_index: u("last_index")?,
            last_term: u("last_term")?,
            snapshot_index: u("snapshot_index")?,
        },
        _ => return Ok(None),
    };
    Ok(Some((node, ev)))
}

/// Checks the Raft events of `lines` (already in time order) against the
/// Raft paper's safety properties, as the simulator's online checker does.
pub fn check_raft_lines(lines: &[Value]) -> Result<TraceVerdict, String> {
    let mut events = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(e) = raft_event(line).map_err(|e| format!("line {}: {e}", i + 1))? {
            events.push((i, e));
        }
    }
    let nodes = events.iter().map(|(_, (n, _))| n + 1).max().unwrap_or(0);
    let mut checker = RaftChecker::new(nodes);
    for (i, (node, ev)) in &events {
        if let TraceEvent::RaftRecover {
            last_index,
            snapshot_index,
            ..
        } = *ev
        {
            checker.on_restart_in_trace(*node, last_index, snapshot_index);
        }
        if let Err(v) = checker.observe(*node, ev, None) {
            return Ok(TraceVerdict {
                events: events.len(),
                nodes,
                violation: Some((i + 1, v)),
            });
        }
    }
    Ok(TraceVerdict {
        events: events.len(),
        nodes,
        violation: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role_line(node: &str, term: u64, role: &str) -> Value {
        json!({"seq": 0, "t": 1, "node": node, "kind": "raft.role", "term": term, "role": role})
    }

    #[test]
    fn one_leader_per_term_passes_and_two_are_caught() {
        let good = [
            role_line("n1", 1, "candidate"),
            role_line("n1", 1, "leader"),
            role_line("n2", 2, "candidate"),
            role_line("n2", 2, "leader"),
        ];
        let v = check_raft_lines(&good).unwrap();
        assert!(v.violation.is_none(), "{:?}", v.violation);
        assert_eq!((v.events, v.nodes), (4, 2));
        let bad = [role_line("n1", 3, "leader"), role_line("n3", 3, "leader")];
        let v = check_raft_lines(&bad).unwrap();
        let (line, violation) = v.violation.expect("two leaders in term 3");
        assert_eq!(line, 2);
        assert!(
            violation.invariant.contains("Election"),
            "{}",
            violation.invariant
        );
    }

    #[test]
    fn a_committed_entry_that_differs_between_nodes_is_caught() {
        let line = |node: &str, kind: &str, digest: u64| json!({"t": 1, "node": node, "kind": kind, "index": 1, "term": 1, "digest": digest});
        // Both append before the leader commits, then each applies.
        let run = |a: u64, b: u64| {
            let lines = vec![
                role_line("n1", 1, "leader"),
                line("n1", "raft.append", a),
                line("n2", "raft.append", b),
                line("n1", "raft.commit", a),
                line("n1", "raft.apply", a),
                line("n2", "raft.commit", b),
                line("n2", "raft.apply", b),
            ];
            check_raft_lines(&lines).unwrap()
        };
        let v = run(10, 10);
        assert!(v.violation.is_none(), "{:?}", v.violation);
        let (_, violation) = run(10, 11)
            .violation
            .expect("two entries at one committed index");
        assert!(!violation.invariant.is_empty());
    }

    #[test]
    fn a_restart_applies_its_log_again_from_the_snapshot() {
        let mut lines = vec![role_line("n1", 1, "leader")];
        let at = |node: &str, kind: &str| json!({"t": 1, "node": node, "kind": kind, "index": 1, "term": 1, "digest": 5});
        for kind in ["raft.append", "raft.commit", "raft.apply"] {
            lines.push(at("n1", kind));
        }
        let recover = json!({"t": 2, "node": "n1", "kind": "raft.recover", "term": 1, "voted_for": "n1", "last_index": 1, "last_term": 1, "snapshot_index": 0});
        lines.push(recover.clone());
        lines.push(at("n1", "raft.commit"));
        lines.push(at("n1", "raft.apply"));
        let v = check_raft_lines(&lines).unwrap();
        assert!(v.violation.is_none(), "{:?}", v.violation);
        // Without the restart, applying entry 1 twice is a violation.
        lines.retain(|l| *l != recover);
        assert!(check_raft_lines(&lines).unwrap().violation.is_some());
    }

    #[test]
    fn malformed_raft_lines_are_errors_and_other_lines_are_skipped() {
        let bad = json!({"t": 1, "node": "n1", "kind": "raft.commit"});
        assert!(check_raft_lines(&[bad]).unwrap_err().contains("line 1"));
        let other = json!({"t": 1, "node": "net", "kind": "fault.partition"});
        assert_eq!(check_raft_lines(&[other]).unwrap().events, 0);
    }
}
