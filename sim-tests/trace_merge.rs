//! `distsync report` over several traces: merged by time, and checked by the
//! Raft checker, as a real cluster's per-node traces are.

use std::path::PathBuf;

use crate::common::distsync;

/// A scratch directory for this test, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Splits a simulated run's trace into one file per node (what each real
/// node writes of itself), with times shifted as a system clock would.
fn per_node_traces(dir: &std::path::Path, trace: &str) -> Vec<String> {
    let mut files: Vec<(String, Vec<String>)> = Vec::new();
    for line in trace.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(node) = v["node"]
            .as_str()
            .filter(|n| n.starts_with('n'))
            .map(str::to_owned)
        else {
            continue;
        };
        v["t"] = serde_json::Value::from(v["t"].as_u64().unwrap() + 1_800_000_000_000_000_000);
        match files.iter_mut().find(|(n, _)| *n == node) {
            Some((_, lines)) => lines.push(v.to_string()),
            None => files.push((node, vec![v.to_string()])),
        }
    }
    files
        .into_iter()
        .map(|(node, lines)| {
            let path = dir.join(format!("{node}.jsonl"));
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn per_node_traces_merge_and_pass_or_fail_the_raft_checker() {
    let dir = Scratch(std::env::temp_dir().join(format!("distsync-merge-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let run_trace = dir.0.join("run.jsonl");
    let (code, _, err) = distsync(&[
        "run",
        "scenarios/leader-crash.toml",
        "--trace",
        run_trace.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let trace = std::fs::read_to_string(&run_trace).unwrap();
    let files = per_node_traces(&dir.0, &trace);
    assert!(files.len() >= 3);
    let out = dir.0.join("report");
    let mut args = vec!["report"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["-o", out.to_str().unwrap(), "--json"]);
    let (code, stdout, err) = distsync(&args);
    assert_eq!(code, 0, "{stdout}{err}");
    let page: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(page["passed"], true, "{stdout}");

    // One node applying a different entry at some index breaks State
    // Machine Safety: the merged check must say so, and exit 1.
    let victim = &files[1];
    let text = std::fs::read_to_string(victim).unwrap();
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if !changed && v["kind"] == "raft.apply" {
                v["digest"] = serde_json::Value::from(v["digest"].as_u64().unwrap() ^ 1);
                changed = true;
            }
            v.to_string()
        })
        .collect();
    assert!(changed, "the node applied something");
    std::fs::write(victim, lines.join("\n") + "\n").unwrap();
    let (code, stdout, err) = distsync(&args);
    assert_eq!(code, 1, "{stdout}{err}");
    let page: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(page["passed"], false);
    assert!(
        page["failure"]
            .as_str()
            .unwrap()
            .contains("State Machine Safety"),
        "{stdout}"
    );
}

#[test]
fn several_inputs_must_all_be_traces() {
    let (code, _, err) = distsync(&[
        "report",
        "a.jsonl",
        "scenarios/leader-crash.toml",
        "-o",
        "/tmp/distsync-report-mixed",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("must all be traces"), "{err}");
}
