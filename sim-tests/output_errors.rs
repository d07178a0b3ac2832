//! Outputs that cannot be written get exit code 3 and a message saying
//! which; files the tool saves get names that cannot fail or collide; a
//! seed range that would wrap or check nothing is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn distsync_to(stdout: Stdio, args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_distsync"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("binary runs");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn distsync(args: &[&str]) -> Outcome {
    distsync_to(Stdio::piped(), args)
}

/// A fresh directory for one test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("distsync-output-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A path no file can be created at, even by root: /dev/full is not a folder.
const UNWRITABLE_DIR: &str = "/dev/full/distsync";

/// A shipped scenario and seed that fail with a planted bug (docs/fuzzing.md).
const FAILING: [&str; 5] = [
    "scenarios/figure-8.toml",
    "--seed",
    "2",
    "--bug",
    "raft.commit_old_term_by_count",
];

#[test]
fn a_full_stdout_exits_3_with_a_message_in_every_command() {
    let dir = temp_dir("full");
    let script = dir.join("s.steps");
    std::fs::write(&script, "next\nnext\n").unwrap();
    let failures = dir.join("failures");
    let page = dir.join("page");
    let commands: Vec<Vec<&str>> = vec![
        vec!["run", "scenarios/leader-crash.toml"],
        vec!["run", "scenarios/leader-crash.toml", "--json"],
        vec![
            "fuzz",
            "scenarios/leader-crash.toml",
            "--seeds",
            "2",
            "--failures-dir",
            failures.to_str().unwrap(),
        ],
        vec!["bench", "--quick"],
        vec!["bugs"],
        vec!["bugs", "--json"],
        vec![
            "step",
            "scenarios/leader-crash.toml",
            "--script",
            script.to_str().unwrap(),
        ],
        vec![
            "report",
            "scenarios/leader-crash.toml",
            "-o",
            page.to_str().unwrap(),
        ],
    ];
    for args in commands {
        let full = std::fs::File::create("/dev/full").unwrap();
        let o = distsync_to(Stdio::from(full), &args);
        assert_eq!(o.code, 3, "{args:?}: {}", o.stderr);
        assert!(
            o.stderr
                .contains("error: cannot write to standard output: No space left on device"),
            "{args:?}: {}",
            o.stderr
        );
        assert!(!o.stderr.contains("panicked"), "{args:?}: {}", o.stderr);
    }
}

#[test]
fn a_closed_pipe_still_stops_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = distsync_to(Stdio::from(writer), &["run", "scenarios/leader-crash.toml"]);
    assert_eq!(o.code, 141, "{}", o.stderr);
    assert_eq!(o.stderr, "");
}

#[test]
fn a_trace_that_cannot_be_written_exits_3_after_the_summary() {
    let o = distsync(&["run", "scenarios/leader-crash.toml", "--trace", "/dev/full"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stdout.contains("trace digest:"), "{}", o.stdout);
    assert!(
        o.stderr.contains("writing the trace to /dev/full failed")
            && o.stderr.contains("the file is incomplete"),
        "{}",
        o.stderr
    );
    let o = distsync(&[
        "run",
        "scenarios/leader-crash.toml",
        "--trace",
        "/dev/full/trace.jsonl",
    ]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(
        o.stderr.contains("cannot create trace file"),
        "{}",
        o.stderr
    );
}

#[test]
fn a_failing_run_that_cannot_save_its_scenario_or_report_exits_3() {
    let mut args = vec!["run"];
    args.extend(FAILING);
    args.extend(["--failures-dir", UNWRITABLE_DIR]);
    let o = distsync(&args);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stderr.contains("VIOLATION"), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("could not save the failing scenario in /dev/full/distsync"),
        "{}",
        o.stderr
    );
    let o = distsync(&[
        "run",
        "scenarios/leader-crash.toml",
        "--report",
        UNWRITABLE_DIR,
    ]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    let o = distsync(&[
        "report",
        "scenarios/leader-crash.toml",
        "-o",
        UNWRITABLE_DIR,
    ]);
    assert_eq!(o.code, 3, "{}", o.stderr);
}

#[test]
fn shrink_that_cannot_write_its_result_exits_3() {
    let dir = temp_dir("shrink");
    let failures = dir.join("failures");
    let mut args = vec!["run"];
    args.extend(FAILING);
    args.extend(["--failures-dir", failures.to_str().unwrap()]);
    let o = distsync(&args);
    assert_eq!(o.code, 1, "{}", o.stderr);
    let saved = failures.join("figure-8-2.toml");
    // A folder where the result would go: the write fails even for root.
    std::fs::create_dir_all(failures.join("figure-8-2.min.toml")).unwrap();
    let o = distsync(&["shrink", saved.to_str().unwrap(), "--max-runs", "3"]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(o.stderr.contains("cannot write"), "{}", o.stderr);
}

#[test]
fn fuzz_and_hunts_refuse_a_folder_they_cannot_write_before_they_start() {
    let o = distsync(&[
        "fuzz",
        "scenarios/figure-8.toml",
        "--seeds",
        "3",
        "--bug",
        "raft.commit_old_term_by_count",
        "--failures-dir",
        UNWRITABLE_DIR,
    ]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(
        o.stderr.contains("cannot write in /dev/full/distsync"),
        "{}",
        o.stderr
    );
    assert!(!o.stdout.contains("fuzz:"), "no seed runs: {}", o.stdout);
    let o = distsync(&[
        "fuzz",
        "scenarios/leader-crash.toml",
        "--seeds",
        "1",
        "--report",
        UNWRITABLE_DIR,
    ]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    let o = distsync(&[
        "bugs",
        "--hunt",
        "raft.commit_old_term_by_count",
        "--out-dir",
        UNWRITABLE_DIR,
    ]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    assert!(
        o.stderr.contains("cannot write in /dev/full/distsync"),
        "{}",
        o.stderr
    );
    assert_eq!(o.stdout, "", "no hunt runs");
}

#[test]
fn a_failure_the_sweep_cannot_save_is_reported_with_why() {
    use distsync::explore::fuzz::{Budget, FuzzOptions, fuzz};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FAILING[0]);
    let mut template = distsync::scenario::load_scenario(&path).unwrap();
    template.bugs.enable(FAILING[4]).unwrap();
    let opts = FuzzOptions {
        budget: Budget::Seeds { first: 2, count: 1 },
        jobs: 1,
        shard: (0, 1),
        determinism_every: 0,
        failures_dir: Some(UNWRITABLE_DIR.into()),
        stop_at_first_failure: false,
        limits: distsync::run::RunLimits::default(),
        extreme: false,
    };
    let sweep = fuzz(std::slice::from_ref(&template), &opts, &|_, _| {}).remove(0);
    let r = &sweep.results[0];
    assert!(r.failure.is_some(), "seed 2 fails");
    assert_eq!(r.file, None);
    let why = r.save_error.as_deref().expect("the save error is kept");
    assert!(why.contains("cannot save in /dev/full/distsync"), "{why}");
}

#[test]
fn two_templates_with_one_name_are_refused() {
    let dir = temp_dir("dup");
    let copy = dir.join("other.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/leader-crash.toml"),
        &copy,
    )
    .unwrap();
    let o = distsync(&[
        "fuzz",
        "scenarios/leader-crash.toml",
        copy.to_str().unwrap(),
        "--seeds",
        "1",
        "--failures-dir",
        dir.join("failures").to_str().unwrap(),
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "scenarios/leader-crash.toml and {} are both named `leader-crash`",
            copy.display()
        )),
        "{}",
        o.stderr
    );
}

#[test]
fn a_long_name_still_saves_its_failure_under_a_short_file_name() {
    let dir = temp_dir("long-name");
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(FAILING[0])).unwrap();
    let name = "x".repeat(300);
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("name = ") {
                format!("name = \"{name}\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let file = dir.join("long.toml");
    std::fs::write(&file, text).unwrap();
    let failures = dir.join("failures");
    let mut args = vec!["run", file.to_str().unwrap()];
    args.extend(&FAILING[1..]);
    args.extend(["--failures-dir", failures.to_str().unwrap()]);
    let o = distsync(&args);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("saved failing scenario"), "{}", o.stderr);
    let saved: Vec<PathBuf> = std::fs::read_dir(&failures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let file_name = saved[0].file_name().unwrap().to_str().unwrap();
    assert!(file_name.len() < 100, "{file_name}");
    let again = distsync(&["run", saved[0].to_str().unwrap()]);
    assert_eq!(again.code, 1, "the saved file replays: {}", again.stderr);
}

#[test]
fn seed_ranges_that_wrap_or_check_nothing_are_refused() {
    let o = distsync(&[
        "fuzz",
        "scenarios/leader-crash.toml",
        "--first-seed",
        "18446744073709551615",
        "--seeds",
        "2",
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("expected --first-seed between 0 and 18446744073709551614"),
        "{}",
        o.stderr
    );
    let o = distsync(&["fuzz", "scenarios/leader-crash.toml", "--seeds", "0"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("--seeds 0 would check nothing"),
        "{}",
        o.stderr
    );
    let o = distsync(&["bugs", "--hunt", "--budget", "0"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    let dir = temp_dir("last-seed");
    let o = distsync(&[
        "fuzz",
        "scenarios/leader-crash.toml",
        "--first-seed",
        "18446744073709551615",
        "--seeds",
        "1",
        "--json",
        "--failures-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(o.code == 0 || o.code == 1, "{}", o.stderr);
    assert!(o.stdout.contains("\"seeds\": 1"), "{}", o.stdout);
}
