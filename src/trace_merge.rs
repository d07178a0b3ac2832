//! Several traces as one: a real cluster's nodes each write their own
//! (`distsync node --trace`), and the checkers and the report read one
//! sequence. Lines are merged by time, a stable sort, so one trace's lines
//! keep their order; `seq` is renumbered across the merge and times count
//! from the first event (a real node stamps its lines with the system
//! clock, nanoseconds since 1970).

use serde_json::Value;

/// Merges `traces`, each given as (name for errors, text): the lines as
/// text and as JSON, in merged order. A single trace already counting from
/// zero is returned as it is. A line that is not a JSON object with a `t`
/// and a `kind` is refused, located by name and line number.
pub fn merge(traces: &[(String, String)]) -> Result<(Vec<String>, Vec<Value>), String> {
    let mut all: Vec<(u64, String, Value)> = Vec::new();
    for (name, text) in traces {
        for (i, l) in text.lines().enumerate() {
            let line = serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v["kind"].is_string() && v["t"].is_u64());
            let Some(v) = line else {
                return Err(format!(
                    "{name}:{}:1: expected a trace line, a JSON object with \"t\" and \"kind\" (docs/trace.md)",
                    i + 1
                ));
            };
            all.push((v["t"].as_u64().unwrap_or(0), l.to_owned(), v));
        }
    }
    let origin = all.iter().map(|(t, ..)| *t).min().unwrap_or(0);
    if traces.len() > 1 || origin > 0 {
        all.sort_by_key(|(t, ..)| *t);
        for (seq, (t, text, v)) in all.iter_mut().enumerate() {
            v["seq"] = Value::from(seq as u64);
            v["t"] = Value::from(*t - origin);
            *text = v.to_string();
        }
    }
    Ok(all.into_iter().map(|(_, text, v)| (text, v)).unzip())
}
