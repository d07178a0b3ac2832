//! The offline linearizability checker against labelled histories.
//!
//! The Jepsen etcd and key-value histories (from porcupine's test data) live
//! beside the development checkout in `../shared/testdata/linearizability`; they
//! are never copied into the project, so tests needing them skip when absent.
//! The small hand-written histories in `sim-tests/histories/` always run.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use distsync::check::history_formats::{parse_jepsen_register_log, parse_kv_history};
use distsync::check::linearizability::{
    KvInput, KvModel, KvOutput, Model, Operation, RegisterInput, RegisterModel, RegisterOutput,
    Verdict, check, check_partitioned,
};

/// Generous: the hardest labelled history (etcd_002) needs about 2 million steps.
const MAX_STEPS: u64 = 10_000_000;

fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/linearizability"
    ));
    if dir.is_dir() {
        Some(dir.to_path_buf())
    } else {
        eprintln!(
            "skipping: {} not found; it exists only beside the project's development checkout",
            dir.display()
        );
        None
    }
}

fn histories_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sim-tests/histories")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn register_ops(path: &Path) -> Vec<Operation<RegisterInput, RegisterOutput>> {
    parse_jepsen_register_log(&read(path))
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn kv_ops(path: &Path) -> Vec<(String, Operation<KvInput, KvOutput>)> {
    parse_kv_history(&read(path)).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn is_linearizable(verdict: &Verdict, what: &str) -> bool {
    match verdict {
        Verdict::Linearizable => true,
        Verdict::NotLinearizable(_) => false,
        Verdict::Unknown => panic!("{what}: search budget exhausted (Unknown)"),
    }
}

/// Files in `dir` whose names end with `suffix`, sorted by name.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

#[test]
fn jepsen_etcd_histories_match_labels() {
    let Some(data) = shared_data() else { return };
    let jepsen = data.join("jepsen");
    let labels: Vec<(u32, bool)> = read(&jepsen.join("expected.txt"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            let n = parts.next().and_then(|n| n.parse().ok());
            let label = match parts.next() {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            };
            match (n, label) {
                (Some(n), Some(label)) => (n, label),
                _ => panic!("expected.txt: expected `N true|false`, found {l:?}"),
            }
        })
        .collect();
    assert_eq!(labels.len(), 102, "expected 102 labels in expected.txt");

    let mut slowest = (Duration::ZERO, String::new());
    let mut total = Duration::ZERO;
    let mut mismatches = Vec::new();
    for (n, expected) in &labels {
        let path = jepsen.join(format!("etcd_{n:03}.log"));
        let ops = register_ops(&path);
        let start = Instant::now();
        let verdict = check(&RegisterModel, &ops, MAX_STEPS);
        let took = start.elapsed();
        total += took;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            took < Duration::from_secs(5),
            "{name} took {took:?}; the checker should need far less"
        );
        if took > slowest.0 {
            slowest = (took, name.clone());
        }
        if is_linearizable(&verdict, &name) != *expected {
            mismatches.push(format!("{name}: expected {expected}, got {verdict:?}"));
        }
    }
    eprintln!(
        "etcd: {} labelled files checked in {total:?}; slowest {} in {:?}",
        labels.len(),
        slowest.1,
        slowest.0
    );
    assert!(
        mismatches.is_empty(),
        "label mismatches:\n{}",
        mismatches.join("\n")
    );

    // 095 has no label (the file is empty); it only has to run without panicking.
    let unlabelled = jepsen.join("etcd_095.log");
    let verdict = check(&RegisterModel, &register_ops(&unlabelled), MAX_STEPS);
    eprintln!("etcd_095.log (unlabelled): {verdict:?}");
    assert!(!labels.iter().any(|(n, _)| *n == 95));
}

#[test]
fn kv_histories_ok_and_bad() {
    let Some(data) = shared_data() else { return };
    let kv = data.join("kv");
    let ok = files_ending(&kv, "-ok.txt");
    let bad = files_ending(&kv, "-bad.txt");
    assert_eq!(
        (ok.len(), bad.len()),
        (3, 3),
        "expected c01, c10 and c50 ok/bad files"
    );
    for (files, expected) in [(&ok, true), (&bad, false)] {
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let ops = kv_ops(path);
            let start = Instant::now();
            let verdict = check_partitioned(&KvModel, ops, MAX_STEPS);
            let took = start.elapsed();
            eprintln!(
                "{name}: {} in {took:?}",
                if expected { "ok" } else { "bad" }
            );
            if let Verdict::NotLinearizable(cx) = &verdict {
                assert!(
                    cx.partition.is_some(),
                    "partitioned counterexample names its key"
                );
            }
            assert_eq!(
                is_linearizable(&verdict, &name),
                expected,
                "{name}: {verdict:?}"
            );
            assert!(took < Duration::from_secs(5), "{name} took {took:?}");
        }
    }
}

/// Each hand-written history and its verdict; the name says why.
const HAND_WRITTEN: &[(&str, bool)] = &[
    ("register-stale-read-bad.log", false),
    ("register-concurrent-writes-either-order-ok.log", true),
    ("register-info-write-observed-ok.log", true),
    ("register-info-write-never-observed-ok.log", true),
    ("register-read-unwritten-value-bad.log", false),
    ("register-cas-wrong-old-bad.log", false),
    ("register-cas-failed-on-match-bad.log", false),
    ("register-pending-cas-explains-read-ok.log", true),
    ("kv-lost-append-bad.edn", false),
    ("kv-concurrent-appends-either-order-ok.edn", true),
    ("kv-info-put-observed-ok.edn", true),
    ("kv-stale-get-on-one-key-bad.edn", false),
];

fn check_file(path: &Path) -> Verdict {
    if path.extension().is_some_and(|e| e == "edn") {
        check_partitioned(&KvModel, kv_ops(path), MAX_STEPS)
    } else {
        check(&RegisterModel, &register_ops(path), MAX_STEPS)
    }
}

#[test]
fn hand_written_histories() {
    let dir = histories_dir();
    let mut on_disk: Vec<String> = fs::read_dir(&dir)
        .expect("sim-tests/histories exists")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = HAND_WRITTEN.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every history file is listed with its verdict"
    );

    for (name, expected) in HAND_WRITTEN {
        let verdict = check_file(&dir.join(name));
        if let Verdict::NotLinearizable(cx) = &verdict {
            eprintln!("{name}:\n{cx}");
        }
        assert_eq!(
            is_linearizable(&verdict, name),
            *expected,
            "{name}: {verdict:?}"
        );
    }
}

#[test]
fn counterexample_explains_the_violation() {
    let dir = histories_dir();
    let Verdict::NotLinearizable(cx) = check_file(&dir.join("kv-stale-get-on-one-key-bad.edn"))
    else {
        panic!("expected a violation");
    };
    assert_eq!(cx.partition.as_deref(), Some("\"b\""));
    // The put of "2" (lines 5-6) is the longest prefix; the stale get (lines 9-10) cannot follow it.
    assert_eq!(cx.prefix.len(), 1);
    assert_eq!(cx.prefix[0].input, "Put(\"2\")");
    assert_eq!(cx.state, "\"2\"");
    assert_eq!(cx.stuck.len(), 1);
    assert_eq!((cx.stuck[0].call, cx.stuck[0].ret), (9, Some(10)));
    assert_eq!(cx.blocking, cx.stuck[0]);
    let text = cx.to_string();
    assert!(text.contains("partition \"b\""), "{text}");
    assert!(text.contains("Get(\"\")"), "{text}");

    let Verdict::NotLinearizable(cx) = check_file(&dir.join("register-cas-wrong-old-bad.log"))
    else {
        panic!("expected a violation");
    };
    assert_eq!(cx.partition, None);
    assert_eq!(cx.state, "Some(1)");
    assert_eq!(cx.stuck[0].input, "Cas(2, 5)");
}

#[test]
fn verdicts_and_counterexamples_are_deterministic() {
    let Some(data) = shared_data() else { return };
    let ops = register_ops(&data.join("jepsen/etcd_000.log"));
    let first = check(&RegisterModel, &ops, MAX_STEPS);
    assert!(matches!(first, Verdict::NotLinearizable(_)));
    for _ in 0..3 {
        assert_eq!(check(&RegisterModel, &ops, MAX_STEPS), first);
    }
    if let Verdict::NotLinearizable(cx) = &first {
        eprintln!("etcd_000.log:\n{cx}");
    }
}

#[test]
fn empty_and_pending_only_histories_are_linearizable() {
    let none: Vec<Operation<RegisterInput, RegisterOutput>> = Vec::new();
    assert_eq!(check(&RegisterModel, &none, 0), Verdict::Linearizable);
    assert_eq!(
        check_partitioned::<KvModel, String>(&KvModel, Vec::new(), 0),
        Verdict::Linearizable
    );

    let pending = |client, input, call| Operation {
        client,
        input,
        output: RegisterOutput::Unknown,
        call,
        ret: None,
    };
    let ops = vec![
        pending(0, RegisterInput::Write(1), 1),
        pending(1, RegisterInput::Cas(1, 2), 1),
        pending(2, RegisterInput::Read, 2),
        pending(3, RegisterInput::Cas(7, 8), 3),
    ];
    assert_eq!(
        check(&RegisterModel, &ops, MAX_STEPS),
        Verdict::Linearizable
    );

    // Many pending writes must not make the search explode.
    let many: Vec<_> = (0..200)
        .map(|i| pending(i, RegisterInput::Write(i as i64), i))
        .collect();
    assert_eq!(check(&RegisterModel, &many, 100_000), Verdict::Linearizable);

    // A return earlier than the call is tolerated (treated as equal), not a panic.
    let backwards = vec![Operation {
        client: 0,
        input: RegisterInput::Read,
        output: RegisterOutput::ReadOk(None),
        call: 10,
        ret: Some(3),
    }];
    assert_eq!(check(&RegisterModel, &backwards, 10), Verdict::Linearizable);
}

#[test]
fn equal_timestamps_count_as_concurrent() {
    // The write returns at 5 and the read is called at 5: concurrent, so the read
    // may be linearized before the write and see nil.
    let ops = vec![
        Operation {
            client: 0,
            input: RegisterInput::Write(1),
            output: RegisterOutput::WriteOk,
            call: 0,
            ret: Some(5),
        },
        Operation {
            client: 1,
            input: RegisterInput::Read,
            output: RegisterOutput::ReadOk(None),
            call: 5,
            ret: Some(9),
        },
    ];
    assert_eq!(check(&RegisterModel, &ops, 100), Verdict::Linearizable);
    let mut later = ops.clone();
    later[1].call = 6;
    assert!(matches!(
        check(&RegisterModel, &later, 100),
        Verdict::NotLinearizable(_)
    ));
}

#[test]
fn exhausted_budget_is_unknown() {
    let Some(data) = shared_data() else { return };
    let ops = register_ops(&data.join("jepsen/etcd_000.log"));
    assert_eq!(check(&RegisterModel, &ops, 10), Verdict::Unknown);
    let kv = kv_ops(&data.join("kv/c10-ok.txt"));
    assert_eq!(check_partitioned(&KvModel, kv, 10), Verdict::Unknown);
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let e = parse_jepsen_register_log("INFO  jepsen.util - 0\t:invoke\t:cas\t[1]\n").unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.message.contains("[OLD NEW]"), "{e}");
    let e = parse_jepsen_register_log("INFO  jepsen.util - 0\t:ok\t:read\t1\n").unwrap_err();
    assert!(e.message.contains("no preceding :invoke"), "{e}");
    // Non-op lines, even from jepsen.util, are skipped.
    let ops = parse_jepsen_register_log(
        "INFO  jepsen.util - Relative time begins now\nINFO  jepsen.util - :nemesis\t:info\t:start\tnil\nsomething else\n",
    )
    .unwrap();
    assert!(ops.is_empty());

    let e = parse_kv_history("ok\n{:process 0, :type :invoke}\n").unwrap_err();
    assert_eq!(e.line, 1);
    let e = parse_kv_history("{:process 0, :type :invoke, :f :get, :key \"k\", :value nil}\n{:process 0, :type :ok, :f :get, :key \"k\", :value \"unterminated}\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("closing a string"), "{e}");
    let e = parse_kv_history("{:process 0, :type :invoke, :f :cas, :key \"k\", :value nil}")
        .unwrap_err();
    assert!(e.message.contains(":get, :put or :append"), "{e}");
}

/// A model with the real KvModel's effects, but whose get accepts any value.
struct AnyGetKvModel;

impl Model for AnyGetKvModel {
    type State = String;
    type Input = KvInput;
    type Output = KvOutput;
    fn init(&self) -> String {
        KvModel.init()
    }
    fn step(&self, state: &String, input: &KvInput, output: &KvOutput) -> Option<String> {
        match (input, output) {
            (KvInput::Get, _) => Some(state.clone()),
            _ => KvModel.step(state, input, output),
        }
    }
}

#[test]
fn planted_bugs_are_caught_and_depend_on_the_model() {
    let Some(data) = shared_data() else { return };

    // Planted bug in the history: one read of a linearizable history reports a
    // value that was never written. The checker must now reject it.
    let mut kv = kv_ops(&data.join("kv/c10-ok.txt"));
    assert!(check_partitioned(&KvModel, kv.clone(), MAX_STEPS) == Verdict::Linearizable);
    let (key, op) = kv
        .iter_mut()
        .find(|(_, op)| matches!(&op.output, KvOutput::Get(v) if !v.is_empty()))
        .expect("a non-empty get");
    let KvOutput::Get(v) = &mut op.output else {
        unreachable!()
    };
    v.push_str(" planted");
    let key = format!("{key:?}");
    let Verdict::NotLinearizable(cx) = check_partitioned(&KvModel, kv, MAX_STEPS) else {
        panic!("the planted stale read was not caught");
    };
    assert_eq!(cx.partition, Some(key));

    let two = data.join("jepsen/etcd_002.log"); // labelled true
    let mut reg = register_ops(&two);
    assert_eq!(
        check(&RegisterModel, &reg, MAX_STEPS),
        Verdict::Linearizable
    );
    // The first read: a violation near the end of this file would be found only
    // after an exhaustive search of its many pending writes (seconds, not ms).
    let read = reg
        .iter_mut()
        .find(|op| matches!(op.output, RegisterOutput::ReadOk(Some(_))))
        .expect("a read");
    read.output = RegisterOutput::ReadOk(Some(99));
    assert!(matches!(
        check(&RegisterModel, &reg, MAX_STEPS),
        Verdict::NotLinearizable(_)
    ));

    // Planted bug in the model: with gets unchecked, every bad history passes,
    // so the kv verdicts above really depend on the model's get semantics.
    for path in files_ending(&data.join("kv"), "-bad.txt") {
        assert_eq!(
            check_partitioned(&AnyGetKvModel, kv_ops(&path), MAX_STEPS),
            Verdict::Linearizable,
            "{}",
            path.display()
        );
    }
}

use crate::common::distsync;

/// A search that runs out of budget is inconclusive, not a violation: the
/// run exits 0 and says so in the tables and in `--json`; the fuzzer counts
/// it apart and saves nothing.
#[test]
fn an_exhausted_search_is_inconclusive_and_exits_0() {
    let dir = std::env::temp_dir().join(format!("distsync-inconclusive-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    // The lock history always goes to the general search; one step per lock
    // cannot decide it.
    let text =
        read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/lock-leader-crash.toml"))
            .replace("[expect]\n", "[expect]\nlinearizability_steps = 1\n");
    assert!(text.contains("linearizability_steps = 1"));
    let file = dir.join("lock-budget.toml");
    fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap();
    let failures = dir.join("failures");
    let failures = failures.to_str().unwrap();

    let (code, out, err) = distsync(&["run", file, "--failures-dir", failures]);
    assert_eq!(code, 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.contains("lock history linearizable"))
        .unwrap_or_else(|| panic!("no lock history row:\n{out}"));
    assert!(row.contains("inconclusive"), "{row}");
    assert!(out.contains("note: 1 check was inconclusive"), "{out}");

    let (code, out, _) = distsync(&["run", file, "--json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(j["passed"], true);
    assert_eq!(j["inconclusive"], 1);
    let verdicts: Vec<(&str, &str)> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["verdict"].as_str().unwrap()))
        .collect();
    assert!(
        verdicts.contains(&("lock history linearizable", "inconclusive")),
        "{verdicts:?}"
    );
    assert!(
        verdicts
            .iter()
            .all(|(n, v)| *v == "passed" || *n == "lock history linearizable"),
        "{verdicts:?}"
    );

    let (code, out, err) = distsync(&[
        "fuzz",
        file,
        "--seeds",
        "2",
        "--jobs",
        "1",
        "--failures-dir",
        failures,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("fuzz: 0 passed, 0 failed, 2 inconclusive"),
        "{out}"
    );
    assert!(
        !Path::new(failures).exists(),
        "an inconclusive seed is not saved"
    );
    fs::remove_dir_all(&dir).ok();
}
