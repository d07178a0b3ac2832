//! Stepping through a run one simulator event at a time: `distsync step`.
//!
//! A run is deterministic, so the stepper never undoes anything: `back`
//! starts the same scenario on the same seed again and replays it to the
//! event before. After each event it prints the trace lines the event
//! wrote and the state that changed: each Raft node's role, term, vote and
//! log (committed part before the `|`), the lock table as applied, and each
//! cached key's MESI state on each node. Commands come from a terminal or,
//! with `--script`, from a file, so docs and tests can print the same views.

use std::collections::BTreeMap;

use crate::scenario::Scenario;
use crate::scenario::parse::parse_duration;
use crate::sim::world::World;
use crate::trace::{MemorySink, Tracer};

/// What stops `continue` and `until` early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Break {
    /// An event that writes a trace line of this kind (or kind prefix,
    /// like `cache.`).
    Kind(String),
    /// An event that writes a trace line about this node (`n2`, `s1`).
    Node(String),
}

/// One stepper command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Apply the next event and show it.
    Next,
    /// Apply events until a breakpoint, the run's end, or `n` events.
    Continue(Option<u64>),
    /// Apply events until simulated time reaches this (ns).
    Until(u64),
    /// Add a breakpoint.
    Break(Break),
    /// Remove every breakpoint.
    ClearBreaks,
    /// Re-run to the event before the last one applied.
    Back,
    /// Show one node's state, or every node's.
    Show(Option<String>),
    Help,
    Quit,
}

/// The commands, as `help` prints them.
pub const HELP: &str = "\
commands:
  next | n                 apply the next event; show it and what changed
  continue [N] | c [N]     apply events until a breakpoint, the end, or N events
  until T | u T            apply events until simulated time T (like 1.5s, 800ms)
  break kind K | b kind K  stop at an event writing a trace line of kind K (or prefix, like cache.)
  break node X | b node X  stop at an event writing a trace line about node X (n2, s1)
  break clear              remove every breakpoint
  back                     re-run to the event before the last one
  show [X] | s [X]         show node X's state, or everything
  help | h                 this list
  quit | q                 leave";

/// Parses one command line (words separated by spaces).
pub fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let count = |w: &str| {
        w.parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("expected a positive number of events, got `{w}`"))
    };
    match words.as_slice() {
        ["next" | "n"] => Ok(Command::Next),
        ["continue" | "c"] => Ok(Command::Continue(None)),
        ["continue" | "c", n] => Ok(Command::Continue(Some(count(n)?))),
        ["until" | "u", t] => parse_duration(t)
            .map(Command::Until)
            .map_err(|e| format!("until: {e}")),
        ["break" | "b", "kind", k] => Ok(Command::Break(Break::Kind((*k).to_string()))),
        ["break" | "b", "node", n] => Ok(Command::Break(Break::Node((*n).to_string()))),
        ["break" | "b", "clear"] => Ok(Command::ClearBreaks),
        ["back"] => Ok(Command::Back),
        ["show" | "s"] => Ok(Command::Show(None)),
        ["show" | "s", x] => Ok(Command::Show(Some((*x).to_string()))),
        ["help" | "h"] => Ok(Command::Help),
        ["quit" | "q"] => Ok(Command::Quit),
        [] => Err("empty command".to_string()),
        _ => Err(format!(
            "unknown command `{line}`; type `help` for the list"
        )),
    }
}

/// The first lines a stepping session prints: what runs, on which seed.
pub fn banner(sc: &Scenario, seed: u64) -> String {
    let bugs = sc.bugs.enabled_names();
    format!(
        "stepping {} on seed {seed}{}: {} nodes, {} simulated\n",
        sc.name,
        if bugs.is_empty() {
            String::new()
        } else {
            format!(" with {}", bugs.join(", "))
        },
        sc.nodes,
        time(sc.duration_ns)
    )
}

/// Runs a script (one command per line, `#` starts a comment) and returns
/// what a scripted `distsync step` prints: the banner, then each command
/// after `> ` followed by what it shows. Every line is checked before
/// anything runs; a bad one is an error naming `name:line:1`.
pub fn run_script(sc: &Scenario, seed: u64, text: &str, name: &str) -> Result<String, String> {
    let mut commands = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let c = parse_command(line).map_err(|e| format!("{name}:{}:1: {e}", i + 1))?;
        commands.push((line, c));
    }
    let mut stepper = Stepper::new(sc, seed);
    let mut out = banner(sc, seed);
    for (line, c) in commands {
        let (shown, go_on) = stepper.execute(&c);
        out += &format!("> {line}\n{shown}");
        if !go_on {
            break;
        }
    }
    Ok(out)
}

/// A run being stepped.
pub struct Stepper {
    sc: Scenario,
    seed: u64,
    world: World,
    sink: MemorySink,
    /// Events applied so far.
    done: u64,
    /// The last event applied: its number, time and trace lines.
    last: Option<(u64, u64, Vec<String>)>,
    breaks: Vec<Break>,
}

impl Stepper {
    /// A run of `sc` on `seed`, before its first event.
    pub fn new(sc: &Scenario, seed: u64) -> Self {
        let sink = MemorySink::default();
        let world = World::new(
            sc,
            seed,
            Tracer::new(sc.nodes, Some(Box::new(sink.clone()))),
        );
        let mut s = Stepper {
            sc: sc.clone(),
            seed,
            world,
            sink,
            done: 0,
            last: None,
            breaks: Vec::new(),
        };
        // Starting the nodes writes trace lines of its own (event 0).
        let lines = s.take_lines();
        if !lines.is_empty() {
            s.last = Some((0, 0, lines));
        }
        s
    }

    /// Events applied so far.
    pub fn events(&self) -> u64 {
        self.done
    }

    /// Runs one command, returning what to print, and whether to go on.
    pub fn execute(&mut self, cmd: &Command) -> (String, bool) {
        let mut out = String::new();
        match cmd {
            Command::Next => {
                let before = self.views();
                if self.advance() {
                    self.show_last(&mut out);
                    self.show_changes(&before, &mut out);
                } else {
                    self.show_end(&mut out);
                }
            }
            Command::Continue(limit) => {
                let before = self.views();
                let start = self.done;
                let stop = self.run_while(|s| limit.is_none_or(|n| s.done - start < n));
                self.show_batch(start, stop, &before, &mut out);
            }
            Command::Until(t) => {
                if self.world.now_ns() >= *t && self.done > 0 {
                    out += &format!("already at {}\n", time(self.world.now_ns()));
                    return (out, true);
                }
                let before = self.views();
                let start = self.done;
                // Events due after T stay unapplied: the state shown is T's.
                let mut stop =
                    self.run_while(|s| s.world.next_event_time().is_some_and(|next| next <= *t));
                if stop == Stop::Limit && self.world.next_event_time().is_none() {
                    stop = Stop::End;
                }
                self.show_batch(start, stop, &before, &mut out);
            }
            Command::Break(b) => {
                self.breaks.push(b.clone());
                out += &format!("breakpoints: {}\n", self.describe_breaks());
            }
            Command::ClearBreaks => {
                self.breaks.clear();
                out += "breakpoints: none\n";
            }
            Command::Back => {
                let target = self.done.saturating_sub(1);
                let breaks = std::mem::take(&mut self.breaks);
                *self = Stepper::new(&self.sc, self.seed);
                self.breaks = breaks;
                while self.done < target && self.advance() {}
                self.show_last(&mut out);
                out += &self.render_all();
            }
            Command::Show(None) => out += &self.render_all(),
            Command::Show(Some(x)) => match self.node_index(x) {
                Some(i) => out += &self.render_node(i),
                None => {
                    out += &format!("no node `{x}`: this scenario has n1..n{}\n", self.sc.nodes)
                }
            },
            Command::Help => {
                out += HELP;
                out.push('\n');
            }
            Command::Quit => return (out, false),
        }
        (out, true)
    }

    /// Applies events while `more` holds, stopping early at a breakpoint
    /// or the run's end.
    fn run_while(&mut self, more: impl Fn(&Self) -> bool) -> Stop {
        while more(self) {
            if !self.advance() {
                return Stop::End;
            }
            if self.at_break() {
                return Stop::Break;
            }
        }
        Stop::Limit
    }

    /// Applies one event; false once the run is over.
    fn advance(&mut self) -> bool {
        if !self.world.step() {
            return false;
        }
        self.done += 1;
        let lines = self.take_lines();
        self.last = Some((self.done, self.world.now_ns(), lines));
        true
    }

    fn take_lines(&mut self) -> Vec<String> {
        self.sink.take_lines()
    }

    fn at_break(&self) -> bool {
        let Some((_, _, lines)) = &self.last else {
            return false;
        };
        lines.iter().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            self.breaks.iter().any(|b| match b {
                Break::Kind(k) => v["kind"]
                    .as_str()
                    .is_some_and(|kind| kind.starts_with(k.as_str())),
                Break::Node(n) => v["node"].as_str() == Some(n.as_str()),
            })
        })
    }

    fn describe_breaks(&self) -> String {
        if self.breaks.is_empty() {
            return "none".to_string();
        }
        self.breaks
            .iter()
            .map(|b| match b {
                Break::Kind(k) => format!("kind {k}"),
                Break::Node(n) => format!("node {n}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn show_last(&self, out: &mut String) {
        match &self.last {
            Some((n, t, lines)) => {
                // The trace's own numbers (`seq`), which `run` and the
                // report quote, beside the stepper's event count.
                let seq = |l: &String| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["seq"].as_u64())
                };
                let seqs = match (lines.first().and_then(seq), lines.last().and_then(seq)) {
                    (Some(a), Some(b)) if a == b => format!(", trace event {a}"),
                    (Some(a), Some(b)) => format!(", trace events {a}-{b}"),
                    _ => String::new(),
                };
                out.push_str(&format!("#{n} at {}{seqs}\n", time(*t)));
                if lines.is_empty() {
                    out.push_str("  (nothing traced)\n");
                }
                for l in lines {
                    out.push_str(&format!("  {}\n", condense(l)));
                }
            }
            None => out.push_str("before the first event\n"),
        }
        if let Some(f) = &self.world.obs.violation {
            out.push_str(&format!(
                "VIOLATION {}: {}\n",
                f.violation.invariant, f.violation.detail
            ));
        }
    }

    fn show_end(&self, out: &mut String) {
        if let Some(f) = &self.world.obs.violation {
            out.push_str(&format!(
                "the run stopped at #{} on a violation of {}: {}\n",
                self.done, f.violation.invariant, f.violation.detail
            ));
        } else {
            out.push_str(&format!(
                "the run is over: {} event{}, {} simulated\n",
                self.done,
                if self.done == 1 { "" } else { "s" },
                time(self.world.now_ns())
            ));
        }
    }

    fn show_batch(&self, start: u64, stop: Stop, before: &Views, out: &mut String) {
        let ran = self.done - start;
        let at = self.last.as_ref().map_or(0, |&(_, t, _)| t);
        out.push_str(&format!(
            "ran {ran} event{} to #{} at {}{}\n",
            if ran == 1 { "" } else { "s" },
            self.done,
            time(at),
            if stop == Stop::Break {
                " (breakpoint)"
            } else {
                ""
            }
        ));
        if stop == Stop::Break || (ran > 0 && self.world.obs.violation.is_some()) {
            self.show_last(out);
        } else if stop == Stop::End {
            self.show_end(out);
        }
        self.show_changes(before, out);
    }

    fn show_changes(&self, before: &Views, out: &mut String) {
        let after = self.views();
        let mut changed = Vec::new();
        for (i, (b, a)) in before.nodes.iter().zip(&after.nodes).enumerate() {
            if b != a {
                changed.push(format!("  n{:<3}{a}", i + 1));
            }
        }
        if before.locks != after.locks {
            changed.extend(after.locks.iter().map(|l| format!("  {l}")));
        }
        if before.caches != after.caches {
            changed.extend(after.caches.iter().map(|l| format!("  {l}")));
        }
        if !changed.is_empty() {
            out.push_str("changed:\n");
            for c in changed {
                out.push_str(&c);
                out.push('\n');
            }
        }
    }

    fn node_index(&self, name: &str) -> Option<usize> {
        let i: usize = name.strip_prefix('n')?.parse().ok()?;
        (1..=self.sc.nodes).contains(&i).then(|| i - 1)
    }

    fn render_node(&self, i: usize) -> String {
        let v = self.views();
        let mut out = format!("  n{:<3}{}\n", i + 1, v.nodes[i]);
        if let Some(node) = self.world.node(i)
            && let Some(c) = node.cache()
        {
            let lines: Vec<String> = c
                .lines()
                .map(|(k, l)| format!("{k}:{}", l.state.letter()))
                .collect();
            out += &format!(
                "       cache {}\n",
                if lines.is_empty() {
                    "empty".to_string()
                } else {
                    lines.join(" ")
                }
            );
        }
        out
    }

    fn render_all(&self) -> String {
        let v = self.views();
        let mut out = format!("state at #{} ({}):\n", self.done, time(self.world.now_ns()));
        for (i, n) in v.nodes.iter().enumerate() {
            out += &format!("  n{:<3}{n}\n", i + 1);
        }
        for l in v.locks.iter().chain(&v.caches) {
            out += &format!("  {l}\n");
        }
        out
    }

    /// Every view, one line each, to print and to compare.
    fn views(&self) -> Views {
        let nodes = (0..self.sc.nodes).map(|i| self.raft_line(i)).collect();
        Views {
            nodes,
            locks: self.lock_lines(),
            caches: self.cache_lines(),
        }
    }

    fn raft_line(&self, i: usize) -> String {
        if self.world.is_crashed(i) {
            return "crashed".to_string();
        }
        let Some(node) = self.world.node(i) else {
            return "down".to_string();
        };
        let r = node.raft();
        let role = r.role().name();
        let paused = if self.world.is_paused(i) {
            " (paused)"
        } else {
            ""
        };
        let vote = r
            .voted_for()
            .map_or("-".to_string(), |v| format!("n{}", v + 1));
        format!(
            "{role:<9} term {:<3} vote {vote:<4} log {}  commit {} applied {}{paused}",
            r.term(),
            log_text(r),
            r.commit_index(),
            r.applied_index()
        )
    }

    /// The lock table as applied by the node that applied the most.
    fn lock_lines(&self) -> Vec<String> {
        let best = (0..self.sc.nodes)
            .filter(|&i| !self.world.is_crashed(i))
            .filter_map(|i| self.world.node(i).map(|n| (n.raft().applied_index(), i, n)))
            .max_by_key(|&(applied, i, _)| (applied, std::cmp::Reverse(i)));
        let Some((applied, i, node)) = best else {
            return Vec::new();
        };
        let state = node.locks();
        if state.locks().next().is_none() {
            // Say the table emptied, in a run that takes locks at all.
            return if self.sc.lock_load.clients > 0 {
                vec!["locks: none held or waited for".to_string()]
            } else {
                Vec::new()
            };
        }
        let mut out = vec![format!("locks as applied by n{} (index {applied}):", i + 1)];
        for lock in state.locks() {
            let who = |v: Vec<(u64, crate::lock::state::Mode, u32, u64)>| {
                v.iter()
                    .map(|(s, m, _, _)| format!("s{s} {m:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let holders = who(state.holders(lock));
            let waiters = who(state.waiters(lock));
            out.push(format!(
                "  lock {lock}: held by [{holders}] waiting [{waiters}] last token {}",
                state.last_token(lock)
            ));
        }
        let edges = state.wait_for_edges();
        if !edges.is_empty() {
            let e: Vec<String> = edges.iter().map(|(a, b)| format!("s{a}->s{b}")).collect();
            out.push(format!("  wait-for: {}", e.join(" ")));
        }
        out
    }

    /// Each cached key's state on each node (I where absent).
    fn cache_lines(&self) -> Vec<String> {
        if !self.sc.cache.enabled {
            return Vec::new();
        }
        let mut keys: BTreeMap<u32, Vec<char>> = BTreeMap::new();
        for i in 0..self.sc.nodes {
            let Some(c) = self.world.node(i).and_then(|n| n.cache()) else {
                continue;
            };
            for (k, l) in c.lines() {
                keys.entry(k).or_insert_with(|| vec!['I'; self.sc.nodes])[i] = l.state.letter();
            }
        }
        let header: Vec<String> = (1..=self.sc.nodes).map(|i| format!("n{i}")).collect();
        let mut out = vec![format!("cache  key  {}", header.join(" "))];
        const SHOWN: usize = 16;
        for (k, states) in keys.iter().take(SHOWN) {
            let cells: Vec<String> = states.iter().map(|s| format!("{s:<2}")).collect();
            out.push(format!("       {k:<4} {}", cells.join(" ").trim_end()));
        }
        if keys.len() > SHOWN {
            out.push(format!(
                "       ... {} more keys cached",
                keys.len() - SHOWN
            ));
        }
        if keys.is_empty() {
            out.push("       (no line cached)".to_string());
        }
        out
    }
}

/// Why a batch of events stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Its count or time was reached.
    Limit,
    Break,
    /// The run is over.
    End,
}

/// The lines every view prints, compared to find what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Views {
    nodes: Vec<String>,
    locks: Vec<String>,
    caches: Vec<String>,
}

/// Most log entries shown; older ones are summarised.
const LOG_SHOWN: u64 = 8;

/// A Raft log as `index:term` entries, `|` after the last committed one.
fn log_text(r: &crate::raft::Raft) -> String {
    let (last, commit, snap) = (r.last_index(), r.commit_index(), r.snapshot_index());
    if last == 0 {
        return "[]".to_string();
    }
    let first = (snap + 1).max(last.saturating_sub(LOG_SHOWN - 1)).max(1);
    let mut out = String::from("[");
    if first > 1 {
        out += &format!("..{}", first - 1);
        // The bar stays visible when the commit point is in the hidden part.
        if commit < first {
            out += " |";
        }
        if first <= last {
            out.push(' ');
        }
    }
    for i in first..=last {
        let t = r.term_at(i).map_or("?".to_string(), |t| t.to_string());
        out += &format!("{i}:{t}");
        if i == commit && i < last {
            out += " |";
        }
        if i < last {
            out.push(' ');
        }
    }
    if commit == last && first <= last {
        out += " |";
    }
    out.push(']');
    out
}

/// Simulated time as seconds with microsecond precision.
fn time(ns: u64) -> String {
    format!(
        "{}.{:06}s",
        ns / 1_000_000_000,
        (ns % 1_000_000_000) / 1_000
    )
}

/// A trace line without its sequence number and time, fields in the
/// trace's own order: `node kind k=v ...`.
fn condense(line: &str) -> String {
    let Ok(Fields(fields)) = serde_json::from_str::<Fields>(line) else {
        return line.to_string();
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let mut out = format!("{:<4} {}", get("node"), get("kind"));
    for (k, v) in &fields {
        if matches!(k.as_str(), "seq" | "t" | "node" | "kind") {
            continue;
        }
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out += &format!(" {k}={v}");
    }
    out
}

/// A JSON object's fields in the order written (serde_json's own map
/// sorts them).
struct Fields(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_bad_ones_say_what_was_expected() {
        assert_eq!(parse_command("n"), Ok(Command::Next));
        assert_eq!(parse_command("continue 5"), Ok(Command::Continue(Some(5))));
        assert_eq!(parse_command("c"), Ok(Command::Continue(None)));
        assert_eq!(
            parse_command("until 1.5s"),
            Ok(Command::Until(1_500_000_000))
        );
        assert_eq!(
            parse_command("break kind cache."),
            Ok(Command::Break(Break::Kind("cache.".into())))
        );
        assert_eq!(
            parse_command("b node n2"),
            Ok(Command::Break(Break::Node("n2".into())))
        );
        assert_eq!(
            parse_command("show n3"),
            Ok(Command::Show(Some("n3".into())))
        );
        assert!(
            parse_command("continue 0")
                .unwrap_err()
                .contains("positive number")
        );
        assert!(
            parse_command("until soon")
                .unwrap_err()
                .starts_with("until:")
        );
        assert!(parse_command("jump").unwrap_err().contains("help"));
    }

    #[test]
    fn a_trace_line_keeps_its_field_order() {
        let line = r#"{"seq":7,"t":5,"node":"n1","kind":"cache.transition","key":1,"from":"I","to":"E","cause":"PrRd"}"#;
        assert_eq!(
            condense(line),
            "n1   cache.transition key=1 from=I to=E cause=PrRd"
        );
    }

    #[test]
    fn times_print_in_seconds_with_microseconds() {
        assert_eq!(time(1_500_000_000), "1.500000s");
    }
}
