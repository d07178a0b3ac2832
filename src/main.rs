//! The `distsync` command line: parse, call the library, map results to exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use distsync::bugs::CATALOGUE;
use distsync::report::{render_json, render_text};
use distsync::run::{RunOptions, run_scenario};
use distsync::scenario::{Scenario, load_scenario, parse::scenario_to_toml};

/// Exit code for bad input (files, flags).
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for a violated invariant or failed expectation.
const EXIT_FAILED: u8 = 1;

#[derive(Parser)]
#[command(
    name = "distsync",
    version,
    about = "Deterministic simulation testbed for Raft and the services built on it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario file on one seed, checking every invariant after every event.
    #[command(
        after_help = "Examples:\n  distsync run scenarios/leader-crash.toml\n  distsync run scenarios/lossy-network.toml --seed 42 --trace run.jsonl\n  distsync run scenarios/seven-nodes.toml --json\n  distsync run scenarios/leader-crash.toml --bug raft.vote_without_log_check --seed 7\n\nExit codes: 0 all checks held, 1 a violation or failed expectation, 2 bad input."
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
    },
    /// List the planted bugs and what catches each.
    #[command(after_help = "Example:\n  distsync bugs")]
    Bugs,
    /// Measure simulator speed (events per wall-clock second).
    #[command(after_help = "Examples:\n  distsync bench\n  distsync bench --quick")]
    Bench {
        /// Shorter measurements (for smoke tests).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
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
        } => run_command(
            &scenario,
            seed,
            trace,
            json,
            &bugs,
            check_determinism,
            &failures_dir,
        ),
        Command::Bugs => {
            for b in CATALOGUE {
                println!(
                    "{}\n  {}\n  caught by: {}\n",
                    b.name, b.mistake, b.caught_by
                );
            }
            ExitCode::SUCCESS
        }
        Command::Bench { quick } => {
            print!("{}", distsync::bench::report(quick));
            ExitCode::SUCCESS
        }
    }
}

fn bad_input(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_BAD_INPUT)
}

fn run_command(
    path: &Path,
    seed: Option<u64>,
    trace: Option<PathBuf>,
    json: bool,
    bugs: &[String],
    check_determinism: bool,
    failures_dir: &Path,
) -> ExitCode {
    let mut sc: Scenario = match load_scenario(path) {
        Ok(s) => s,
        Err(e) => return bad_input(e),
    };
    for b in bugs {
        if let Err(e) = sc.bugs.enable(b) {
            return bad_input(format!("--bug: {e}"));
        }
    }
    let seed = seed.unwrap_or(sc.seed);
    let sink: Option<Box<dyn std::io::Write>> = match &trace {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Some(Box::new(std::io::BufWriter::new(f))),
            Err(e) => return bad_input(format!("cannot create trace file {}: {e}", p.display())),
        },
        None => None,
    };
    let report = match run_scenario(
        &sc,
        RunOptions {
            seed,
            trace: sink,
            tracing: true,
        },
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: writing the trace failed: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render_json(&report)).unwrap_or_default()
        );
    } else {
        print!("{}", render_text(&report));
    }
    let mut failed = !report.passed();
    if check_determinism {
        match run_scenario(
            &sc,
            RunOptions {
                seed,
                trace: None,
                tracing: true,
            },
        ) {
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
    if !failed {
        return ExitCode::SUCCESS;
    }
    let bug_flags: String = sc
        .bugs
        .enabled_names()
        .iter()
        .map(|b| format!(" --bug {b}"))
        .collect();
    if let Some(f) = &report.violation {
        let nodes: Vec<String> = f
            .violation
            .nodes
            .iter()
            .map(|n| format!("n{}", n + 1))
            .collect();
        eprintln!(
            "VIOLATION: {} at event {} (t = {} ns), nodes {}: {}",
            f.violation.invariant,
            f.seq,
            f.t_ns,
            nodes.join(", "),
            f.violation.detail
        );
    }
    eprintln!(
        "replay: distsync run {} --seed {seed}{bug_flags}",
        path.display()
    );
    match save_failure(&sc, seed, failures_dir) {
        Ok(p) => eprintln!(
            "saved failing scenario: {} (replay: distsync run {})",
            p.display(),
            p.display()
        ),
        Err(e) => eprintln!("could not save the failing scenario: {e}"),
    }
    ExitCode::from(EXIT_FAILED)
}

/// Saves a self-contained scenario (seed and bugs included) that replays this failure.
fn save_failure(sc: &Scenario, seed: u64, dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut saved = sc.clone();
    saved.seed = seed;
    let path = dir.join(format!("{}-{seed}.toml", sc.name));
    std::fs::write(&path, scenario_to_toml(&saved))?;
    Ok(path)
}
