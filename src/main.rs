//! The `distsync` command line: parse, call the library, map results to exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use distsync::bugs::CATALOGUE;
use distsync::explore::fuzz::{Budget, FuzzOptions, fuzz};
use distsync::explore::hunt::hunt;
use distsync::explore::shrink::shrink;
use distsync::report::{
    Format, Page, bench_summary, bugs_summary, fuzz_summary, hunt_summary, page_summary,
    pages_table, run_summary, shrink_summary,
};
use distsync::run::{RunLimits, RunOptions, run_scenario, run_scenario_before_exit};
use distsync::scenario::parse::{parse_duration, parse_scenario};
use distsync::scenario::shipped::SHIPPED;
use distsync::scenario::{Scenario, load_scenario, parse::scenario_to_toml};
use distsync::sim::budget::{
    DEFAULT_MAX_EVENTS, DEFAULT_MAX_MEMORY_BYTES, format_size, parse_size,
};
use distsync::trace::MemorySink;

/// Exit code for a violated invariant or failed expectation.
const EXIT_FAILED: u8 = 1;
/// Exit code for bad input (files, flags).
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for an output that could not be written (standard output, a
/// trace, a report, a saved failure): what the command promised to write is
/// missing or incomplete, which matters more than the run's own verdict,
/// so it wins over `EXIT_FAILED`.
const EXIT_IO: u8 = 3;
/// Exit code for a run stopped by its event or memory budget (`--max-events`,
/// `--max-memory`) before its end, with no violation found until then: not
/// a pass (the run was not checked to its end) and not a violation. A
/// violation wins over it in a sweep, an output error over both.
const EXIT_BUDGET: u8 = 4;

/// The exit codes as every command's --help states them.
const EXIT_CODES_HELP: &str = "Exit codes: 0 done (no check failed), 1 a violation or failed expectation, 2 bad input, 3 an output could not be written (standard output, a trace, a report or a saved failure), 4 a run was stopped by its event or memory budget (--max-events, --max-memory) before its end.";

/// The budgets of every run a command makes.
#[derive(clap::Args, Clone, Copy, Debug)]
struct BudgetFlags {
    /// Stop a run after this many simulated events and report "budget
    /// exceeded" (exit 4) instead of a verdict [default: 100000000].
    #[arg(long, value_name = "N", value_parser = parse_max_events)]
    max_events: Option<u64>,
    /// Stop a run whose estimated state (event queue, histories, Raft logs,
    /// Redis keyspaces and append-only files; deterministic, not the
    /// process's memory) passes SIZE, like 512MiB or 4GiB, and report
    /// "budget exceeded" (exit 4) [default: 4GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_max_memory)]
    max_memory: Option<u64>,
}

impl BudgetFlags {
    fn limits(self) -> RunLimits {
        RunLimits {
            max_events: self.max_events.unwrap_or(DEFAULT_MAX_EVENTS),
            max_memory_bytes: self.max_memory.unwrap_or(DEFAULT_MAX_MEMORY_BYTES),
        }
    }
}

fn parse_max_events(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of events, at least 1 (the default is {DEFAULT_MAX_EVENTS}), got `{text}`"
        )),
    }
}

fn parse_max_memory(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|e| {
        format!(
            "{e} (the default is {})",
            format_size(DEFAULT_MAX_MEMORY_BYTES)
        )
    })
}

#[derive(Parser)]
#[command(
    name = "distsync",
    version,
    about = "Deterministic simulation testbed for Raft and the services built on it",
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a self-contained HTML report of a run: Lamport diagram, Raft roles, faults, verdicts, cache lines.
    #[command(
        after_help = "Examples:\n  distsync report scenarios/leader-crash.toml -o reports/leader-crash\n  distsync report scenarios/figure-8.toml --seed 2 --bug raft.commit_old_term_by_count -o reports/figure-8\n  distsync report run.jsonl -o reports/from-trace    # a trace written by `run --trace`\n  distsync report n1.jsonl n2.jsonl n3.jsonl -o reports/cluster    # real nodes' traces (`node --trace`), merged by time\n\nWrites DIR/index.html (no network needed to view it) and prints its size; --json prints that as JSON. Traces are also checked by the Raft checker (its verdict shows in the `run` column). Exit codes: 0 written (whatever a scenario run's verdict), 1 the traces break a Raft safety property (the page is still written), 2 bad input, 3 the page could not be written."
    )]
    Report {
        /// Traces to draw (JSON lines: names ending in .jsonl or .json, any case; several are merged by time), or else one scenario file (TOML) to run.
        #[arg(required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// Seed (default: the scenario's `seed`); scenarios only.
        #[arg(long)]
        seed: Option<u64>,
        /// Switch on a planted bug (repeatable); scenarios only.
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<String>,
        /// Directory to write index.html into (created if missing).
        #[arg(short = 'o', long = "out", value_name = "DIR")]
        out: PathBuf,
        /// Say what was written as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Step through a run one event at a time, showing what each event changed.
    #[command(
        after_help = "Examples:\n  distsync step scenarios/leader-crash.toml\n  distsync step scenarios/cache-bus-walkthrough.toml --script walkthrough.steps\n  distsync step scenarios/figure-8.toml --bug raft.commit_old_term_by_count --seed 3\n\nCommands (one per line in a script; # starts a comment):\n  next | n, continue [N] | c [N], until T | u T, break kind K | break node X | break clear,\n  back, show [X] | s [X], help | h, quit | q\n\nExit codes: 0 done, 2 bad input (the scenario, a flag, or a script line, with file:line),\n3 standard output could not be written."
    )]
    Step {
        /// Scenario file (TOML; see docs/scenarios.md).
        scenario: PathBuf,
        /// Seed (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Switch on a planted bug (repeatable; see `distsync bugs`).
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<String>,
        /// Read the commands from this file instead of the terminal, and
        /// print each one before what it shows.
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
    },
    /// Run one scenario file on one seed, checking every invariant after every event.
    #[command(
        after_help = "Examples:\n  distsync run scenarios/leader-crash.toml\n  distsync run scenarios/lossy-network.toml --seed 42 --trace run.jsonl\n  distsync run scenarios/seven-nodes.toml --json\n  distsync run scenarios/leader-crash.toml --bug raft.vote_without_log_check --seed 7\n\nExit codes: 0 no check failed (an inconclusive one does not fail), 1 a violation or failed expectation,\n2 bad input, 3 an output could not be written (standard output, the trace, the report or the saved\nfailure; the run's verdict is still printed), 4 the run was stopped by its event or memory budget\n(--max-events, --max-memory) before its end: not a violation, not a pass."
    )]
    Run {
        /// Scenario file (TOML; see docs/scenarios.md).
        scenario: PathBuf,
        /// Seed (default: the scenario's `seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// Write the trace (JSON lines, docs/trace.md) to this file.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Print the summary as JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Switch on a planted bug (repeatable; see `distsync bugs`).
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<String>,
        /// Run twice and fail if the two trace digests differ.
        #[arg(long)]
        check_determinism: bool,
        /// Where a failing run saves its self-contained scenario.
        #[arg(long, value_name = "DIR", default_value = "reports/failures")]
        failures_dir: PathBuf,
        /// Also write the run's HTML report to DIR/index.html (see `distsync report`).
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        #[command(flatten)]
        budgets: BudgetFlags,
    },
    /// Swarm-fuzz scenarios: each seed adds its own mix of faults, every checker on.
    #[command(
        after_help = "Examples:\n  distsync fuzz                                   # every shipped scenario, 100 seeds each\n  distsync fuzz scenarios/leader-crash.toml --seeds 5000\n  distsync fuzz --time 10m --jobs 2\n  distsync fuzz --seeds 100000 --shard 3/8        # the third of eight machines\n  distsync fuzz --bug raft.vote_before_persist\n  distsync fuzz --seeds 50 --json | python3 -m json.tool\n\nEvery seed's verdict is independent of --jobs and --shard. A failing seed is saved as a\nself-contained scenario under --failures-dir and its replay command printed.\nAn inconclusive seed (a check out of search budget) is counted apart and not saved.\nA seed stopped by its event or memory budget (--max-events, --max-memory: the per-seed watchdog) is\ncounted apart as \"budget exceeded\", saved with a note, and the sweep goes on.\nExit codes: 0 no failure, 1 failures found, 2 bad input, 3 an output could not be written (standard\noutput, --failures-dir or --report, checked before the sweep starts and again as failures are saved),\n4 no failure but some seeds exceeded their budget."
    )]
    Fuzz {
        /// Scenario files to use as templates (default: every shipped scenario).
        scenarios: Vec<PathBuf>,
        /// Seeds per scenario.
        #[arg(long, conflicts_with = "time")]
        seeds: Option<u64>,
        /// Wall-clock budget for the whole sweep, like "90s" or "10m" (split evenly over scenarios).
        #[arg(long, value_parser = parse_wall_time)]
        time: Option<std::time::Duration>,
        /// First seed.
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Worker threads (default: one per core).
        #[arg(long, value_parser = parse_jobs)]
        jobs: Option<usize>,
        /// Run only shard I of N (1-based), e.g. 2/4: seed positions p with p % N == I-1.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(u64, u64)>,
        /// Switch on a planted bug (repeatable).
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<String>,
        /// Rerun every K-th seed and compare trace digests (0 = never).
        #[arg(long, default_value_t = 16)]
        determinism_every: u64,
        /// Where failing seeds are saved.
        #[arg(long, value_name = "DIR", default_value = "reports/failures")]
        failures_dir: PathBuf,
        /// Also write an HTML report (see `distsync report`) of each failing
        /// seed, the first 10 of them, to DIR/SCENARIO-SEED/index.html.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Print the summary as JSON instead of tables (progress and notes go to stderr).
        #[arg(long)]
        json: bool,
        /// Also draw parameters at their allowed limits: clocks drifting by
        /// 100,000 ppm, the shortest and longest cache timeouts, the smallest
        /// rates, the most locks (see docs/fuzzing.md).
        #[arg(long)]
        extreme: bool,
        #[command(flatten)]
        budgets: BudgetFlags,
    },
    /// Shrink a failing scenario to the smallest one that fails the same way.
    #[command(
        after_help = "Example:\n  distsync shrink reports/failures/leader-crash-4711.toml\n\nWrites FILE.min.toml next to FILE (leader-crash-4711.min.toml) and prints sizes before and after.\nExit codes: 0 shrunk, 2 bad input or a scenario that does not fail (one stopped by its budget does\nnot fail), 3 FILE.min.toml or standard output could not be written."
    )]
    Shrink {
        /// A scenario that fails on its own seed (e.g. one saved by run or fuzz).
        file: PathBuf,
        /// At most this many candidate runs.
        #[arg(long, default_value_t = 400)]
        max_runs: u64,
        /// Print the summary as JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Every candidate runs within these budgets.
        #[command(flatten)]
        budgets: BudgetFlags,
    },
    /// List the planted bugs, or hunt them: fuzz with the bug on until caught, then shrink.
    #[command(
        after_help = "Examples:\n  distsync bugs\n  distsync bugs --hunt\n  distsync bugs --hunt raft.vote_before_persist\n  distsync bugs --json\n\nExit codes: 0 listed, or every hunted bug found; 1 a bug escaped its budget; 2 bad input; 3 an output\ncould not be written (standard output, or --out-dir, checked before the first hunt)."
    )]
    Bugs {
        /// Hunt every bug, or just NAME.
        #[arg(long, value_name = "NAME", num_args = 0..=1)]
        hunt: Option<Option<String>>,
        /// Seeds per hunt (default: each bug's own budget).
        #[arg(long)]
        budget: Option<u64>,
        /// Worker threads (default: one per core).
        #[arg(long, value_parser = parse_jobs)]
        jobs: Option<usize>,
        /// Where the shrunk scenarios are written.
        #[arg(long, value_name = "DIR", default_value = "reports/hunts")]
        out_dir: PathBuf,
        /// Print the catalogue or the hunts as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Every hunted seed and shrink candidate runs within these budgets
        /// (a seed that exceeds one is not a catch).
        #[command(flatten)]
        budgets: BudgetFlags,
    },
    /// Run one real node of a cluster: Raft over TCP, an on-disk log, the HTTP API (feature real-network).
    #[cfg(all(feature = "real-network", not(madsim)))]
    #[command(
        after_help = "Every flag also reads the environment variable of the same name (see env.example and docs/deploy.md).\n\nExamples:\n  distsync node --node-id n1 --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 \\\n    --http-peers n1=127.0.0.1:8001,n2=127.0.0.1:8002,n3=127.0.0.1:8003 --data-dir data/n1\n  NODE_ID=n2 PEERS=... HTTP_PEERS=... DATA_DIR=data/n2 distsync node\n\nExit codes: 0 stopped by SIGTERM or Ctrl-C, 1 failed while running (a port taken, a disk error), 2 bad configuration or a data directory that refuses to start (a corrupt record, named with its file and byte offset)."
    )]
    Node {
        #[command(flatten)]
        flags: distsync::real::config::NodeFlags,
        /// Append the node's trace (JSON lines, docs/trace.md) to FILE; merge the nodes' traces with `distsync report`.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
    },
    /// Talk to a running cluster's HTTP API: put, get, delete, health, leader, log (feature real-network).
    #[cfg(feature = "real-network")]
    #[command(
        after_help = "Examples:\n  distsync client --url http://127.0.0.1:8001 put 7 42\n  distsync client --url http://127.0.0.1:8002 get 7     # redirected to the leader\n  distsync client health\n\nPrints the answer's JSON. Exit codes: 0 done, 1 the cluster answered an error (a missing key included), 2 bad input, 5 no answer (unreachable, or still no leader at --timeout)."
    )]
    Client {
        #[command(flatten)]
        args: distsync::real::client_cmd::ClientArgs,
    },
    /// Measure simulator speed (per wall-clock and per CPU second).
    #[command(
        after_help = "Examples:\n  distsync bench\n  distsync bench --quick --json\n\nExit codes: 0 measured, 3 standard output could not be written."
    )]
    Bench {
        /// Shorter measurements (for smoke tests).
        #[arg(long)]
        quick: bool,
        /// Print the measurements as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// `print!` panics when standard output cannot be written. Two causes, one
/// answer each, so that no command reports a crash (exit 101) for them:
/// `distsync bugs | head` closes the pipe before everything is printed, and
/// the answer is to stop quietly, as a program killed by SIGPIPE does
/// (status 141); any other failure (`> /dev/full`) is an output that
/// could not be written: say so and exit `EXIT_IO`.
fn exit_cleanly_when_stdout_fails() {
    let report_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if let Some(reason) = message.strip_prefix("failed printing to stdout: ") {
            if reason.contains("Broken pipe") {
                std::process::exit(141);
            }
            eprintln!("error: cannot write to standard output: {reason}");
            std::process::exit(i32::from(EXIT_IO));
        }
        report_panic(info);
    }));
}

// A queue run allocates small byte strings for every Redis command it
// models; mimalloc serves them about a third faster than the system
// allocator (queue-steady, CPU time), for a few tens of MB more peak RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay`: its position in `mi_option_e` in
/// include/mimalloc.h (the same in mimalloc 2.x and 3.x); the Rust
/// bindings name no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Never hand freed pages back to the OS during a run: one process runs
    // many worlds (bench, fuzz, shrink), and a world freed then rebuilt
    // would otherwise fault in and zero its memory again (measured: the
    // bench's Raft run took 43 ms instead of 23 ms). Peak RSS is unchanged.
    // SAFETY: sets a process-wide option before any thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    exit_cleanly_when_stdout_fails();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            scenario,
            seed,
            trace,
            json,
            bugs,
            check_determinism,
            failures_dir,
            report,
            budgets,
        } => run_command(
            &scenario,
            seed,
            trace,
            json,
            &bugs,
            check_determinism,
            &failures_dir,
            report.as_deref(),
            budgets.limits(),
        ),
        Command::Fuzz {
            scenarios,
            seeds,
            time,
            first_seed,
            jobs,
            shard,
            bugs,
            determinism_every,
            failures_dir,
            report,
            json,
            extreme,
            budgets: budget_flags,
        } => {
            let budget = match time {
                Some(t) => Budget::Time {
                    first: first_seed,
                    per_scenario: t / scenarios.len().max(if scenarios.is_empty() {
                        SHIPPED.len()
                    } else {
                        1
                    }) as u32,
                },
                None => Budget::Seeds {
                    first: first_seed,
                    count: seeds.unwrap_or(100),
                },
            };
            let opts = FuzzOptions {
                budget,
                jobs: jobs.unwrap_or_else(default_jobs),
                shard: shard.unwrap_or((0, 1)),
                determinism_every,
                failures_dir: Some(failures_dir),
                stop_at_first_failure: false,
                limits: budget_flags.limits(),
                extreme,
            };
            fuzz_command(
                &scenarios,
                &bugs,
                &opts,
                time.is_some(),
                report.as_deref(),
                Format::json_if(json),
            )
        }
        Command::Shrink {
            file,
            max_runs,
            json,
            budgets,
        } => shrink_command(&file, max_runs, budgets.limits(), Format::json_if(json)),
        Command::Report {
            inputs,
            seed,
            bugs,
            out,
            json,
        } => report_command(&inputs, seed, &bugs, &out, Format::json_if(json)),
        Command::Step {
            scenario,
            seed,
            bugs,
            script,
        } => step_command(&scenario, seed, &bugs, script.as_deref()),
        Command::Bugs {
            hunt: None, json, ..
        } => {
            print!("{}", bugs_summary(CATALOGUE, Format::json_if(json)));
            ExitCode::SUCCESS
        }
        Command::Bugs {
            hunt: Some(name),
            budget,
            jobs,
            out_dir,
            json,
            budgets: budget_flags,
        } => hunt_command(
            name.as_deref(),
            budget,
            jobs.unwrap_or_else(default_jobs),
            &out_dir,
            budget_flags.limits(),
            Format::json_if(json),
        ),
        Command::Bench { quick, json } => {
            let measured = distsync::bench::measure(quick);
            print!("{}", bench_summary(&measured, Format::json_if(json)));
            ExitCode::SUCCESS
        }
        #[cfg(all(feature = "real-network", not(madsim)))]
        Command::Node { flags, trace } => {
            ExitCode::from(distsync::real::node_cmd::run_node(&flags, trace.as_deref()))
        }
        #[cfg(feature = "real-network")]
        Command::Client { args } => ExitCode::from(distsync::real::client_cmd::run_client(&args)),
    }
}

/// A trace written both to memory (for the report) and, optionally, a file.
struct Tee {
    memory: MemorySink,
    file: Option<Box<dyn std::io::Write>>,
}

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.memory.write_all(buf)?;
        if let Some(f) = self.file.as_mut() {
            f.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

/// Writes a run's HTML report to `dir/index.html`.
fn write_report(
    dir: &Path,
    title: &str,
    seed: u64,
    lines: &[String],
    report: &distsync::run::RunReport,
) -> Result<Page, String> {
    use distsync::report::html::{PageInfo, render_page};
    let page = render_page(
        &PageInfo {
            title,
            seed: Some(seed),
            report: Some(report),
        },
        lines,
    );
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file = dir.join("index.html");
    std::fs::write(&file, &page).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(Page::new(&file, page.len(), lines.len(), Some(report)))
}

/// Prints what a command wrote beside its summary: after the tables on
/// stdout, or on stderr under --json, so that stdout stays one JSON document.
fn note(format: Format, text: &str) {
    match format {
        Format::Tables => print!("{text}"),
        Format::Json => eprint!("{text}"),
    }
}

fn report_command(
    inputs: &[PathBuf],
    seed: Option<u64>,
    bugs: &[String],
    out: &Path,
    format: Format,
) -> ExitCode {
    use distsync::report::html::{PageInfo, render_page};
    let traces = inputs
        .iter()
        .filter(|p| distsync::input::is_trace_file(p))
        .count();
    if traces != inputs.len() && inputs.len() > 1 {
        return bad_input(
            "several inputs must all be traces (.jsonl or .json); a scenario file goes alone",
        );
    }
    let mut trace_check = None;
    let (title, seed, lines, report) = if traces > 0 {
        if seed.is_some() || !bugs.is_empty() {
            return bad_input("--seed and --bug apply to scenarios, not to a trace file");
        }
        let (lines, values) = match read_traces(inputs) {
            Ok(l) => l,
            Err(e) => return bad_input(e),
        };
        // A line drawn fine may still lack a field the checker needs (a
        // hand-written trace): the page is still worth writing, unchecked.
        match distsync::check::raft_trace::check_raft_lines(&values) {
            Ok(v) => trace_check = Some(v),
            Err(e) => note(format, &format!("Raft check not run: {e}\n")),
        }
        let names: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        (names.join(" + "), None, lines, None)
    } else {
        let sc = match load_with_bugs(&inputs[0], bugs) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let seed = seed.unwrap_or(sc.seed);
        let (report, lines) = match run_keeping_trace(&sc, seed) {
            Ok(r) => r,
            // Only the in-memory trace could fail here, and it does not.
            Err(e) => return output_error(e),
        };
        (sc.name.clone(), Some(seed), lines, Some(report))
    };
    let page = render_page(
        &PageInfo {
            title: &title,
            seed,
            report: report.as_ref(),
        },
        &lines,
    );
    if let Err(e) = std::fs::create_dir_all(out) {
        return output_error(format!("cannot create {}: {e}", out.display()));
    }
    let file = out.join("index.html");
    if let Err(e) = std::fs::write(&file, &page) {
        return output_error(format!("cannot write {}: {e}", file.display()));
    }
    let mut written = Page::new(&file, page.len(), lines.len(), report.as_ref());
    let mut broken = false;
    if let Some(v) = &trace_check {
        written = written.with_trace_check(v);
        broken = v.violation.is_some();
    }
    print!("{}", page_summary(&written, format));
    if broken {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Reads trace files and merges them (`distsync::trace_merge`): the lines
/// as text and as JSON.
fn read_traces(inputs: &[PathBuf]) -> Result<(Vec<String>, Vec<serde_json::Value>), String> {
    let mut traces = Vec::new();
    for input in inputs {
        let text = distsync::input::read_text(input)?;
        traces.push((input.display().to_string(), text));
    }
    distsync::trace_merge::merge(&traces)
}

fn step_command(
    path: &Path,
    seed: Option<u64>,
    bugs: &[String],
    script: Option<&Path>,
) -> ExitCode {
    use distsync::step::{Stepper, parse_command};
    use std::io::{BufRead, Write};
    let sc = match load_with_bugs(path, bugs) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let seed = seed.unwrap_or(sc.seed);
    if let Some(file) = script {
        let text = match distsync::input::read_text(file) {
            Ok(t) => t,
            Err(e) => return bad_input(e),
        };
        return match distsync::step::run_script(&sc, seed, &text, &file.display().to_string()) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => bad_input(e),
        };
    }
    let mut stepper = Stepper::new(&sc, seed);
    print!("{}", distsync::step::banner(&sc, seed));
    println!("type `help` for the commands");
    let stdin = std::io::stdin();
    loop {
        print!("step> ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_command(line) {
            Ok(c) => {
                let (out, go_on) = stepper.execute(&c);
                print!("{out}");
                if !go_on {
                    break;
                }
            }
            Err(e) => println!("{e}"),
        }
    }
    ExitCode::SUCCESS
}

/// A scenario file with the named planted bugs switched on, or the exit
/// code for bad input (already reported).
fn load_with_bugs(path: &Path, bugs: &[String]) -> Result<Scenario, ExitCode> {
    let mut sc = load_scenario(path).map_err(bad_input)?;
    for b in bugs {
        sc.bugs
            .enable(b)
            .map_err(|e| bad_input(format!("--bug: {e}")))?;
    }
    Ok(sc)
}

fn bad_input(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_BAD_INPUT)
}

/// Reports an output that could not be written.
fn output_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_IO)
}

/// The first error writing a trace file, shared with the writer.
#[derive(Clone, Default)]
struct TraceError(std::rc::Rc<std::cell::RefCell<Option<std::io::Error>>>);

impl TraceError {
    fn take(&self) -> Option<std::io::Error> {
        self.0.borrow_mut().take()
    }
}

/// A trace file whose first write error is kept for the end instead of
/// stopping the run, so that a full disk still gets the run's verdict
/// printed and the exit code says the trace is incomplete.
struct KeepGoing<W> {
    file: W,
    error: TraceError,
}

impl<W: std::io::Write> KeepGoing<W> {
    fn keep(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            self.error.0.borrow_mut().get_or_insert(e);
        }
    }
    fn failed(&self) -> bool {
        self.error.0.borrow().is_some()
    }
}

impl<W: std::io::Write> std::io::Write for KeepGoing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.failed() {
            let written = self.file.write_all(buf);
            self.keep(written);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.failed() {
            let flushed = self.file.flush();
            self.keep(flushed);
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn run_command(
    path: &Path,
    seed: Option<u64>,
    trace: Option<PathBuf>,
    json: bool,
    bugs: &[String],
    check_determinism: bool,
    failures_dir: &Path,
    report_dir: Option<&Path>,
    limits: RunLimits,
) -> ExitCode {
    let sc = match load_with_bugs(path, bugs) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let seed = seed.unwrap_or(sc.seed);
    let trace_error = TraceError::default();
    let file: Option<Box<dyn std::io::Write>> = match &trace {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some(Box::new(KeepGoing {
                file: std::io::BufWriter::new(f),
                error: trace_error.clone(),
            })),
            Err(e) => {
                return output_error(format!("cannot create trace file {}: {e}", p.display()));
            }
        },
        None => None,
    };
    // The report needs the trace too: keep a copy in memory.
    let memory = MemorySink::default();
    let sink: Option<Box<dyn std::io::Write>> = match (file, report_dir) {
        (file, Some(_)) => Some(Box::new(Tee {
            memory: memory.clone(),
            file,
        })),
        (file, None) => file,
    };
    // The last run of the process need not free its world.
    let first_run = if check_determinism {
        run_scenario
    } else {
        run_scenario_before_exit
    };
    let report = match first_run(
        &sc,
        RunOptions {
            trace: sink,
            ..RunOptions::new(seed).with_limits(limits)
        },
    ) {
        Ok(r) => r,
        // Only the in-memory copy could fail here, and it does not.
        Err(e) => return output_error(format!("writing the trace failed: {e}")),
    };
    let format = Format::json_if(json);
    print!("{}", run_summary(&report, format));
    // Say what could not be written, but still report a failing run and
    // save its scenario.
    let mut output_failed = false;
    if let (Some(p), Some(e)) = (&trace, trace_error.take()) {
        eprintln!(
            "error: writing the trace to {} failed: {e}; the file is incomplete",
            p.display()
        );
        output_failed = true;
    }
    if let Some(dir) = report_dir {
        let lines = memory.take_lines();
        match write_report(dir, &sc.name, seed, &lines, &report) {
            Ok(page) => note(format, &pages_table(&[page])),
            Err(e) => {
                eprintln!("error: {e}");
                output_failed = true;
            }
        }
    }
    // A run stopped by its budget did not pass, but did not fail either.
    let mut failed = report.failure_signature().is_some();
    if check_determinism {
        match run_scenario_before_exit(&sc, RunOptions::new(seed).with_limits(limits)) {
            Ok(again) if again.digest == report.digest => eprintln!(
                "determinism: second run gave the same digest {}",
                again.digest_hex()
            ),
            Ok(again) => {
                eprintln!(
                    "determinism: FAILED: digests differ ({} then {})",
                    report.digest_hex(),
                    again.digest_hex()
                );
                failed = true;
            }
            Err(e) => {
                eprintln!("determinism: second run failed: {e}");
                failed = true;
            }
        }
    }
    let bug_flags: String = sc
        .bugs
        .enabled_names()
        .iter()
        .map(|b| format!(" --bug {b}"))
        .chain([limits.flags()])
        .collect();
    if let (false, Some(b)) = (failed, report.budget_exceeded) {
        eprintln!("BUDGET EXCEEDED (not a violation): {b}");
        eprintln!(
            "replay: distsync run {} --seed {seed}{bug_flags}",
            path.display()
        );
        return ExitCode::from(if output_failed { EXIT_IO } else { EXIT_BUDGET });
    }
    if !failed {
        return if output_failed {
            ExitCode::from(EXIT_IO)
        } else {
            ExitCode::SUCCESS
        };
    }
    if let Some(f) = &report.violation {
        let nodes: Vec<String> = f
            .violation
            .nodes
            .iter()
            .map(|n| format!("n{}", n + 1))
            .collect();
        eprintln!(
            "VIOLATION: {} at event {} (t = {} ns){}: {}",
            f.violation.invariant,
            f.seq,
            f.t_ns,
            if nodes.is_empty() {
                String::new()
            } else {
                format!(", nodes {}", nodes.join(", "))
            },
            f.violation.detail
        );
    }
    eprintln!(
        "replay: distsync run {} --seed {seed}{bug_flags}",
        path.display()
    );
    let mut saved = sc.clone();
    saved.seed = seed;
    match distsync::explore::save_failure(&saved, failures_dir) {
        Ok(p) => eprintln!(
            "saved failing scenario: {} (replay: distsync run {})",
            p.display(),
            p.display()
        ),
        Err(e) => {
            eprintln!(
                "error: could not save the failing scenario in {}: {e}",
                failures_dir.display()
            );
            output_failed = true;
        }
    }
    ExitCode::from(if output_failed { EXIT_IO } else { EXIT_FAILED })
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of worker threads, at least 1, got `{text}`"
        )),
    }
}

fn parse_wall_time(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text).map(std::time::Duration::from_nanos)
}

fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("expected I/N with 1 <= I <= N, like 2/4, got `{text}`");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i - 1, n))
}

fn fuzz_command(
    paths: &[PathBuf],
    bugs: &[String],
    opts: &FuzzOptions,
    timed: bool,
    report_dir: Option<&Path>,
    format: Format,
) -> ExitCode {
    if let Err(e) = opts.check() {
        return bad_input(e);
    }
    // Each template with the file it came from.
    let mut templates = Vec::new();
    let mut sources = Vec::new();
    if paths.is_empty() {
        for (name, text) in SHIPPED {
            let source = format!("scenarios/{name}.toml");
            match parse_scenario(text, &source) {
                Ok(s) => templates.push(s),
                Err(e) => return bad_input(e),
            }
            sources.push(source);
        }
    }
    for p in paths {
        match load_scenario(p) {
            Ok(s) => templates.push(s),
            Err(e) => return bad_input(e),
        }
        sources.push(p.display().to_string());
    }
    // Failures are saved as NAME-SEED.toml and reported by name: two
    // templates with one name would overwrite each other's files.
    for (i, t) in templates.iter().enumerate() {
        if let Some(j) = templates[..i].iter().position(|u| u.name == t.name) {
            return bad_input(format!(
                "{} and {} are both named `{}`: the templates of one sweep need different names, \
                 since failing seeds are saved as NAME-SEED.toml",
                sources[j], sources[i], t.name
            ));
        }
    }
    // Learn now, not after the last seed, that nothing could be saved.
    for dir in opts
        .failures_dir
        .iter()
        .map(PathBuf::as_path)
        .chain(report_dir)
    {
        if let Err(e) = distsync::explore::check_writable(dir) {
            return output_error(format!("cannot write in {}: {e}", dir.display()));
        }
    }
    for t in &mut templates {
        for b in bugs {
            if let Err(e) = t.bugs.enable(b) {
                return bad_input(format!("--bug: {e}"));
            }
        }
    }
    let total = match opts.budget {
        Budget::Seeds { count, .. } => count.div_ceil(opts.shard.1) * templates.len() as u64,
        Budget::Time { .. } => 0,
    };
    let bar = if timed {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::new(total)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} seeds  {per_sec}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let failures = std::sync::atomic::AtomicU64::new(0);
    let on_seed = |name: &str, r: &distsync::explore::fuzz::SeedResult| {
        if r.failure.is_some() {
            let n = failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            bar.println(format!(
                "failure: {name} seed {}: {}",
                r.seed,
                r.failure.as_deref().unwrap_or("")
            ));
            bar.set_message(format!("{n} failures"));
        } else if let Some(b) = &r.budget_exceeded {
            bar.println(format!(
                "budget exceeded: {name} seed {}: the {} budget stopped it",
                r.seed,
                b.kind()
            ));
        }
        bar.inc(1);
    };
    let sweeps = fuzz(&templates, opts, &on_seed);
    bar.finish_and_clear();
    print!("{}", fuzz_summary(&sweeps, opts.jobs, format));
    let seeds: usize = sweeps.iter().map(|s| s.results.len()).sum();
    let failed: usize = sweeps.iter().map(|s| s.failures().count()).sum();
    let inconclusive: usize = sweeps.iter().map(|s| s.inconclusive()).sum();
    let over_budget: usize = sweeps.iter().map(|s| s.budget_exceeded().count()).sum();
    let mut output_failed = false;
    for (s, r) in sweeps
        .iter()
        .flat_map(|s| s.results.iter().map(move |r| (s, r)))
    {
        if let Some(e) = &r.save_error {
            eprintln!("error: {} seed {} not saved: {e}", s.scenario, r.seed);
            output_failed = true;
        }
    }
    if let Some(dir) = report_dir {
        output_failed |= !report_failures(&sweeps, dir, format);
    }
    if format == Format::Tables {
        // The plain closing line CI systems read as a test tally.
        println!(
            "fuzz: {} passed, {failed} failed, {inconclusive} inconclusive, {over_budget} budget exceeded",
            seeds - failed - inconclusive - over_budget
        );
    }
    if output_failed {
        ExitCode::from(EXIT_IO)
    } else if failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else if over_budget > 0 {
        ExitCode::from(EXIT_BUDGET)
    } else {
        ExitCode::SUCCESS
    }
}

/// Most reports `fuzz --report` writes: a buggy build can fail thousands
/// of seeds, and the first few show the bug as well as all of them.
const MAX_FUZZ_REPORTS: usize = 10;

/// Writes the HTML report of each failing seed (the first
/// `MAX_FUZZ_REPORTS`), replaying the scenario file the sweep saved for it.
/// False when one could not be written (each is said on stderr).
fn report_failures(
    sweeps: &[distsync::explore::fuzz::SweepSummary],
    dir: &Path,
    format: Format,
) -> bool {
    let saved: Vec<(&str, u64, &Path)> = sweeps
        .iter()
        .flat_map(|s| {
            s.failures()
                .filter_map(|f| Some((s.scenario.as_str(), f.seed, f.file.as_deref()?)))
        })
        .collect();
    let mut pages = Vec::new();
    let mut all_written = true;
    for &(name, seed, file) in saved.iter().take(MAX_FUZZ_REPORTS) {
        let written = load_scenario(file)
            .map_err(|e| e.to_string())
            .and_then(|sc| {
                let (report, lines) = run_keeping_trace(&sc, sc.seed)?;
                write_report(
                    &dir.join(format!("{}-{seed}", distsync::explore::file_stem(name))),
                    &sc.name,
                    sc.seed,
                    &lines,
                    &report,
                )
            });
        match written {
            Ok(page) => pages.push(page),
            Err(e) => {
                eprintln!("error: report for {name} seed {seed} not written: {e}");
                all_written = false;
            }
        }
    }
    if !pages.is_empty() {
        note(format, &pages_table(&pages));
    }
    if saved.len() > MAX_FUZZ_REPORTS {
        note(
            format,
            &format!(
                "reports written for the first {MAX_FUZZ_REPORTS} of {} failing seeds; `distsync report FILE` draws any other\n",
                saved.len()
            ),
        );
    }
    all_written
}

/// Runs a scenario keeping its trace lines in memory (for a report).
fn run_keeping_trace(
    sc: &Scenario,
    seed: u64,
) -> Result<(distsync::run::RunReport, Vec<String>), String> {
    let sink = MemorySink::default();
    let report = run_scenario(sc, RunOptions::new(seed).with_trace(Box::new(sink.clone())))
        .map_err(|e| format!("the run failed: {e}"))?;
    Ok((report, sink.take_lines()))
}

fn shrink_command(file: &Path, max_runs: u64, limits: RunLimits, format: Format) -> ExitCode {
    let sc = match load_scenario(file) {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    // Learn before the candidate runs that the result could not be saved.
    let out = file.with_extension("min.toml");
    let folder = out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Err(e) = distsync::explore::check_writable(folder.unwrap_or(Path::new("."))) {
        return output_error(format!("cannot write {}: {e}", out.display()));
    }
    let shrunk = match shrink(&sc, max_runs, limits) {
        Ok(s) => s,
        Err(e) => return bad_input(format!("{}: {e}", file.display())),
    };
    if let Err(e) = std::fs::write(&out, scenario_to_toml(&shrunk.minimal)) {
        return output_error(format!("cannot write {}: {e}", out.display()));
    }
    print!("{}", shrink_summary(&shrunk, &out, format));
    ExitCode::SUCCESS
}

fn hunt_command(
    name: Option<&str>,
    budget: Option<u64>,
    jobs: usize,
    out_dir: &Path,
    limits: RunLimits,
    format: Format,
) -> ExitCode {
    let bugs: Vec<_> = CATALOGUE
        .iter()
        .filter(|b| name.is_none_or(|n| n == b.name))
        .collect();
    if bugs.is_empty() {
        let known: Vec<&str> = CATALOGUE.iter().map(|b| b.name).collect();
        return bad_input(format!(
            "--hunt: unknown planted bug `{}`; expected one of: {}",
            name.unwrap_or(""),
            known.join(", ")
        ));
    }
    if budget == Some(0) {
        return bad_input("--budget 0 would hunt nothing: expected at least 1 seed");
    }
    // Learn now, not after the hunts, that the scenarios could not be saved.
    if let Err(e) = distsync::explore::check_writable(out_dir) {
        return output_error(format!("cannot write in {}: {e}", out_dir.display()));
    }
    let mut hunts = Vec::new();
    let mut output_failed = false;
    for b in bugs {
        let h = hunt(b, budget.unwrap_or(b.budget), jobs, 400, limits);
        if let Some(s) = &h.shrunk {
            let saved = std::fs::create_dir_all(out_dir).and_then(|_| {
                let p = out_dir.join(format!("{}.min.toml", b.name));
                std::fs::write(&p, scenario_to_toml(&s.minimal)).map(|_| p)
            });
            match saved {
                Ok(p) => eprintln!(
                    "{}: smallest failing scenario: distsync run {}",
                    b.name,
                    p.display()
                ),
                Err(e) => {
                    eprintln!(
                        "error: {}: cannot save the shrunk scenario in {}: {e}",
                        b.name,
                        out_dir.display()
                    );
                    output_failed = true;
                }
            }
        }
        hunts.push(h);
    }
    print!("{}", hunt_summary(&hunts, format));
    if output_failed {
        ExitCode::from(EXIT_IO)
    } else if hunts.iter().all(|h| h.found.is_some()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}
