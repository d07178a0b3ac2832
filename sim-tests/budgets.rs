//! Event and memory budgets: a run that needs more stops with its own
//! verdict and exit code (4), neither a pass nor a violation, and a fuzz
//! sweep counts, saves and goes on past the seeds that do.

use std::path::Path;

use crate::common::distsync;

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"))
        .to_string_lossy()
        .into_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("distsync-budgets-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_run_over_its_event_budget_exits_4_with_its_own_verdict() {
    let file = scenario("leader-crash");
    let (code, _, _) = distsync(&["run", &file]);
    assert_eq!(code, 0, "within the default budgets the run passes");
    let (code, out, err) = distsync(&["run", &file, "--max-events", "1000"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(out.contains("within the event budget"), "{out}");
    assert!(out.contains("BUDGET EXCEEDED"), "{out}");
    assert!(!out.contains("FAILED"), "not a violation: {out}");
    assert!(
        err.contains("replay: distsync run") && err.contains("--max-events 1000"),
        "{err}"
    );
    let (code, json, _) = distsync(&["run", &file, "--max-events", "1000", "--json"]);
    assert_eq!(code, 4);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["passed"], false,
        "a run stopped by its budget never passes"
    );
    assert_eq!(v["budget_exceeded"], "events");
    assert_eq!(v["events"], 1000);
    let verdicts: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["passed", "budget exceeded"]);
    // The HTML report says so too.
    let dir = temp_dir("report");
    let d = dir.to_string_lossy().into_owned();
    let (code, _, _) = distsync(&["run", &file, "--max-events", "1000", "--report", &d]);
    assert_eq!(code, 4);
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(
        page.contains("event budget exceeded"),
        "the page names the budget"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_over_its_memory_budget_exits_4_with_its_own_verdict() {
    let file = scenario("queue-steady");
    let (code, out, err) = distsync(&["run", &file, "--max-memory", "100KiB"]);
    assert_eq!(code, 4, "{out}{err}");
    assert!(out.contains("within the memory budget"), "{out}");
    assert!(err.contains("memory budget exceeded"), "{err}");
    assert!(err.contains("--max-memory 100KiB"), "{err}");
    // The estimate is deterministic: the same run stops at the same event.
    let (_, again, _) = distsync(&["run", &file, "--max-memory", "100KiB"]);
    assert_eq!(out, again);
}

#[test]
fn bad_budget_values_exit_2_with_the_expected_form() {
    let file = scenario("leader-crash");
    for cmd in [
        vec!["run", &file],
        vec!["fuzz", &file, "--seeds", "1"],
        vec!["shrink", &file],
        vec!["bugs", "--hunt"],
    ] {
        for (flag, value, expected) in [
            ("--max-memory", "4GB", "like 512MiB or 4GiB"),
            ("--max-memory", "0", "at least 1 byte"),
            ("--max-events", "0", "at least 1"),
            ("--max-events", "many", "a whole number of events"),
        ] {
            let mut args = cmd.clone();
            args.extend([flag, value]);
            let (code, out, err) = distsync(&args);
            assert_eq!(code, 2, "{args:?}: {out}{err}");
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }
}

#[test]
fn fuzz_counts_and_saves_seeds_over_budget_apart_and_goes_on() {
    let dir = temp_dir("fuzz");
    let d = dir.to_string_lossy().into_owned();
    let file = scenario("leader-crash");
    let args = [
        "fuzz",
        &file,
        "--seeds",
        "3",
        "--jobs",
        "1",
        "--max-events",
        "500",
        "--failures-dir",
        &d,
    ];
    let (code, out, err) = distsync(&args);
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        out.contains("fuzz: 0 passed, 0 failed, 0 inconclusive, 3 budget exceeded"),
        "{out}"
    );
    assert!(out.contains("budget exceeded"), "its own column: {out}");
    let mut saved: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    saved.sort();
    assert_eq!(saved.len(), 3, "every seed over budget is saved: {saved:?}");
    let text = std::fs::read_to_string(&saved[0]).unwrap();
    assert!(
        text.starts_with("# budget exceeded, not a violation: event budget exceeded"),
        "{text}"
    );
    assert!(text.contains("--max-events 500"), "{text}");
    // The saved file replays the same way with the same flag.
    let s = saved[0].to_string_lossy().into_owned();
    assert_eq!(distsync(&["run", &s, "--max-events", "500"]).0, 4);
    let (code, json, _) = distsync(&[&args[..], &["--json"]].concat());
    assert_eq!(code, 4);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["budget_exceeded"], 3);
    assert_eq!(v["passed"], 0);
    assert_eq!(v["sweeps"][0]["budget_exceeded"], 3);
    assert_eq!(v["budget_exceeded_seeds"][0]["budget"], "events");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hunt_names_the_seeds_stopped_by_a_budget() {
    let dir = temp_dir("hunt");
    let d = dir.to_string_lossy().into_owned();
    let args = [
        "bugs",
        "--hunt",
        "kv.ack_by_index",
        "--budget",
        "3",
        "--jobs",
        "1",
        "--max-events",
        "1000",
        "--out-dir",
        &d,
        "--json",
    ];
    let (code, out, err) = distsync(&args);
    // Not found within 3 seeds: the bug escaped, and every seed was stopped
    // by the budget, which the hunt says instead of passing over them.
    assert_eq!(code, 1, "{out}{err}");
    let hunts: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(hunts[0]["seeds_to_find"], serde_json::Value::Null, "{out}");
    assert_eq!(
        hunts[0]["over_budget"],
        serde_json::json!([1, 2, 3]),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
