//! Bad input gets exit code 2 and a located message; no input makes it panic.

use std::path::Path;
use std::process::Command;

use distsync::scenario::parse_scenario;

use crate::common::{run, shipped_scenarios};

fn distsync(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_distsync"))
        .args(args)
        .output()
        .expect("binary runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn write_temp(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("distsync-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

const BASE: &str = "name = \"t\"\ndescription = \"d\"\nnodes = 3\nduration = \"5s\"\n";

#[test]
fn malformed_files_exit_2_with_file_line_col() {
    let cases: &[(&str, String, &str)] = &[
        ("unknown-key.toml", format!("{BASE}nodez = 3\n"), ":5:1"),
        (
            "bad-duration.toml",
            BASE.replace("\"5s\"", "\"5 parsecs\""),
            ":4:12",
        ),
        (
            "unknown-node.toml",
            format!("{BASE}[[step]]\nat = \"1s\"\ncrash = \"n7\"\n"),
            ":7:9",
        ),
        (
            "late-step.toml",
            format!("{BASE}[[step]]\nat = \"9s\"\nheal = true\n"),
            ":6:6",
        ),
        (
            "restart-up-node.toml",
            format!("{BASE}[[step]]\nat = \"1s\"\nrestart = \"n2\"\n"),
            ":7:",
        ),
        (
            "bad-probability.toml",
            format!("{BASE}[network]\nloss = 1.5\n"),
            ":6:8",
        ),
        ("not-toml.toml", "this is = = not toml".to_string(), ":1:"),
        ("empty.toml", String::new(), "name"),
    ];
    for (name, text, at) in cases {
        let path = write_temp(name, text);
        let (code, out) = distsync(&["run", &path]);
        assert_eq!(code, 2, "{name}: expected exit 2, got {code}: {out}");
        assert!(
            out.contains(&path),
            "{name}: message must name the file: {out}"
        );
        assert!(
            out.contains(at),
            "{name}: message must point at {at}: {out}"
        );
        assert!(!out.contains("panicked"), "{name}: {out}");
    }
}

#[test]
fn bad_flags_and_missing_files_exit_2() {
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/initial-election.toml");
    let good = good.to_str().unwrap();
    for args in [
        vec!["run", "/nonexistent/nowhere.toml"],
        vec!["run", good, "--seed", "minus-one"],
        vec!["run", good, "--bug", "raft.no_such_bug"],
        vec!["run"],
        vec!["frobnicate"],
        vec!["fuzz", "--shard", "3/2"],
        vec!["fuzz", "--shard", "x"],
        vec!["fuzz", "--jobs", "0"],
        vec!["fuzz", "--seeds", "5", "--time", "1s"],
        vec!["fuzz", "--time", "5 parsecs"],
        vec!["fuzz", "/nonexistent/nowhere.toml"],
        vec!["fuzz", "--bug", "raft.no_such_bug", "--seeds", "1"],
        vec!["shrink", good],
        vec!["shrink", "/nonexistent/nowhere.toml"],
        vec!["bugs", "--hunt", "raft.no_such_bug"],
    ] {
        let (code, out) = distsync(&args);
        assert_eq!(code, 2, "{args:?}: expected exit 2, got {code}: {out}");
        assert!(!out.contains("panicked"), "{args:?}: {out}");
    }
}

#[test]
fn a_passing_run_exits_0_and_a_caught_bug_exits_1_with_a_replay_line() {
    let dir = std::env::temp_dir().join(format!("distsync-failures-{}", std::process::id()));
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/flapping-partitions.toml");
    let good = good.to_str().unwrap();
    let (code, out) = distsync(&["run", good]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("trace digest:"), "{out}");
    let mut caught = false;
    for seed in 1..=60 {
        let seed = seed.to_string();
        let (code, out) = distsync(&[
            "run",
            good,
            "--seed",
            &seed,
            "--bug",
            "raft.no_truncate_on_conflict",
            "--failures-dir",
            dir.to_str().unwrap(),
        ]);
        if code == 1 {
            assert!(
                out.contains("VIOLATION: Truncate before overwrite"),
                "{out}"
            );
            assert!(
                out.contains(&format!(
                    "replay: distsync run {good} --seed {seed} --bug raft.no_truncate_on_conflict"
                )),
                "{out}"
            );
            let saved = dir.join(format!("flapping-partitions-{seed}.toml"));
            // The saved file replays the same failure on its own.
            let (again, out2) = distsync(&["run", saved.to_str().unwrap()]);
            assert_eq!(again, 1, "{out2}");
            let digest = |o: &str| {
                o.lines()
                    .find(|l| l.starts_with("trace digest"))
                    .map(str::to_string)
            };
            assert_eq!(digest(&out), digest(&out2));
            caught = true;
            break;
        }
        assert_eq!(code, 0, "{out}");
    }
    assert!(
        caught,
        "no seed in 1..=60 caught the planted bug through the CLI"
    );
}

/// Small deterministic mutations of every shipped file: parse must not
/// panic, and whatever still parses must run without panicking.
#[test]
fn mutated_scenarios_never_panic() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let replacements = [
        "0",
        "-1",
        "1.5",
        "\"\"",
        "\"0s\"",
        "\"n9\"",
        "[]",
        "[[\"n1\"]]",
        "true",
        "99999999999999999999",
        "\"leader\"",
        "nan",
    ];
    let mut ran = 0;
    for (path, _) in shipped_scenarios() {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for _ in 0..40 {
            let mut m: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            let i = (next() % m.len() as u64) as usize;
            match next() % 4 {
                0 => {
                    m.remove(i);
                }
                1 => m.insert(i, m[i].clone()),
                _ => {
                    if let Some(eq) = m[i].find(" = ") {
                        let r = replacements[(next() % replacements.len() as u64) as usize];
                        m[i] = format!("{}{}", &m[i][..eq + 3], r);
                    }
                }
            }
            let mutated = m.join("\n");
            let result = std::panic::catch_unwind(|| parse_scenario(&mutated, "mutated.toml"));
            let parsed = result.unwrap_or_else(|_| {
                panic!(
                    "parse panicked on a mutation of {}:\n{mutated}",
                    path.display()
                )
            });
            if let Ok(mut sc) = parsed {
                sc.duration_ns = sc.duration_ns.min(3_000_000_000);
                sc.timeline.retain(|s| s.at_ns <= sc.duration_ns);
                sc.workload.stop_ns = sc.workload.stop_ns.min(sc.duration_ns);
                sc.workload.start_ns = sc.workload.start_ns.min(sc.workload.stop_ns);
                let outcome = std::panic::catch_unwind(|| run(&sc, 1).passed());
                assert!(
                    outcome.is_ok(),
                    "a mutation of {} that parsed made the simulator panic:\n{mutated}",
                    path.display()
                );
                ran += 1;
            }
        }
    }
    println!("{ran} mutated scenarios parsed and ran");
}

#[test]
fn step_scripts_and_report_inputs_say_where_they_are_wrong() {
    let script = write_temp("bad.steps", "next\n# a comment\njump 3\n");
    let (code, err) = distsync(&["step", "scenarios/leader-crash.toml", "--script", &script]);
    assert_eq!(code, 2);
    assert!(err.contains(":3:1: unknown command `jump 3`"), "{err}");
    let (code, err) = distsync(&["step", "scenarios/leader-crash.toml", "--bug", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown planted bug `nope`"), "{err}");
    let good = "{\"seq\":0,\"t\":5,\"node\":\"n1\",\"kind\":\"raft.role\"}";
    for second in ["not json", "[1, 2]", "{\"seq\":1,\"t\":6}"] {
        let trace = write_temp("bad.jsonl", &format!("{good}\n{second}\n"));
        let (code, err) = distsync(&["report", &trace, "-o", "/tmp/distsync-report-bad"]);
        assert_eq!(code, 2, "{second}");
        assert!(
            err.contains(":2:1: expected a trace line, a JSON object with \"t\" and \"kind\""),
            "{err}"
        );
    }
    let trace = write_temp("bad.jsonl", "not json\n");
    let (code, err) = distsync(&[
        "report",
        &trace,
        "--seed",
        "3",
        "-o",
        "/tmp/distsync-report-bad",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("apply to scenarios"), "{err}");
}

/// A 300-line trace of queue batches claiming billions of messages each
/// once made `report` keep 30 million messages (1.5 GB, many seconds); the
/// report now follows at most a fixed total and says where it stopped.
#[test]
fn a_trace_of_huge_queue_batches_gives_a_page_that_says_where_it_stopped() {
    let mut text = String::new();
    for i in 0..300u64 {
        text += &format!(
            "{{\"t\":{},\"node\":\"s1\",\"kind\":\"queue.stored\",\"partition\":{},\"producer\":{i},\"first_seq\":1000000,\"stored\":4000000000,\"duplicate\":0}}\n",
            i * 1000,
            i % 8
        );
        text += &format!(
            "{{\"t\":{},\"node\":\"p1\",\"kind\":\"queue.send\",\"producer\":{i},\"partition\":0,\"first_seq\":1000000,\"count\":4000000000}}\n",
            i * 1000
        );
    }
    text += "{\"t\":400000,\"node\":\"w1\",\"kind\":\"queue.received\",\"producer\":0,\"message_seq\":1000000}\n";
    let trace = write_temp("huge-batches.jsonl", &text);
    let out = std::env::temp_dir().join(format!("distsync-huge-batches-{}", std::process::id()));
    let (code, msg) = distsync(&["report", &trace, "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{msg}");
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        page.contains("\"cut_at_ns\":20000"),
        "the depth chart stops"
    );
    assert!(
        page.contains("only those sent before 20000 ns"),
        "the latencies say which messages they cover"
    );
}

/// Values the parser once accepted and the run then hung on or ran out of
/// memory with: each is refused, at its place, with the range allowed.
#[test]
fn values_no_run_can_use_exit_2_with_the_allowed_range() {
    let cache = format!("{BASE}[redis]\nshards = 1\n[cache]\n");
    let cases: &[(&str, String, &str)] = &[
        (
            "tiny-cache-timeout.toml",
            format!("{cache}timeout = \"4ns\"\n"),
            ":8:11: cache.timeout must be between 1us and 1h, got 4ns",
        ),
        (
            "huge-lock-count.toml",
            format!("{BASE}[lock_clients]\nlocks = 4294967295\n"),
            ":6:9: lock_clients.locks must be between 1 and 100000, got 4294967295",
        ),
        (
            "tiny-cache-rate.toml",
            format!("{cache}[cache_clients]\nrate = 1e-11\n"),
            ":9:8: cache_clients.rate must be between 0.001 and 100000 ops per second per node, got 1e-11",
        ),
    ];
    for (name, text, want) in cases {
        let path = write_temp(name, text);
        let (code, out) = distsync(&["run", &path]);
        assert_eq!(code, 2, "{name}: expected exit 2, got {code}: {out}");
        assert!(out.contains(&format!("{path}{want}")), "{name}: {out}");
    }
}

/// A crash ends a pause, so the run would skip this resume: the file is
/// refused, at the resume.
#[test]
fn a_resume_after_a_crash_ended_the_pause_is_refused_where_it_is() {
    let mut text = BASE.to_string();
    for (at, action) in [("1s", "pause"), ("2s", "crash"), ("3s", "resume")] {
        text += &format!("[[step]]\nat = \"{at}\"\n{action} = \"n2\"\n");
    }
    let path = write_temp("pause-crash-resume.toml", &text);
    let (code, out) = distsync(&["run", &path]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "{path}:13:10: n2 is not paused at 3s: the step at line 8 crashed it, and a crash ends a pause"
        )),
        "{out}"
    );
}

/// A byte that is not UTF-8 is reported at its line and column, in a
/// scenario, a trace or a stepper script; a trace is told by its name in
/// any case (`.JSONL`, `.json`), not read as a scenario.
#[test]
fn bad_bytes_are_located_and_traces_are_told_by_name_in_any_case() {
    let dir = std::env::temp_dir().join(format!("distsync-bad-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_string_lossy().into_owned()
    };
    let not_utf8 = "not UTF-8 text: the byte here is not valid UTF-8";
    let scenario = file("bad.toml", &[BASE.as_bytes(), b"# caf\xe9\n"].concat());
    let (code, out) = distsync(&["run", &scenario]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("{scenario}:5:6: {not_utf8}")),
        "{out}"
    );
    let good = "{\"seq\":0,\"t\":5,\"node\":\"n1\",\"kind\":\"raft.role\"}\n";
    let trace = file("bad.jsonl", &[good.as_bytes(), b"{\"t\xff\n"].concat());
    let (code, out) = distsync(&["report", &trace, "-o", "/tmp/distsync-report-bad"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("{trace}:2:4: {not_utf8}")), "{out}");
    let script = file("bad.steps", b"next\n\xc3\n");
    let (code, out) = distsync(&["step", "scenarios/leader-crash.toml", "--script", &script]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("{script}:2:1: {not_utf8}")), "{out}");
    for name in ["RUN.JSONL", "run.Json"] {
        let trace = file(name, good.as_bytes());
        let out_dir = dir.join(format!("report-{name}"));
        let (code, out) = distsync(&["report", &trace, "-o", &out_dir.to_string_lossy()]);
        assert_eq!(code, 0, "{name}: {out}");
    }
}
