//! Stepping through a run one simulator event at a time: `distsync step`.
//!
//! A run is deterministic, so the stepper never undoes anything: `back`
//! replays the run to the event before, from the nearest of the copies of
//! the world it keeps as it goes (see `Checkpoints`), so that going back
//! costs at most a few thousand events however long the run is. After each
//! event it prints the trace lines the event
//! wrote and the state that changed: each Raft node's role, term, vote and
//! log (committed part before the `|`), the lock table as applied, each
//! cached key's MESI state on each node, and the queue's messages on each
//! shard by partition: ready, in flight, dead-lettered. Commands come from
//! a terminal or, with `--script`, from a file, so docs and tests can print
//! the same views.

use std::collections::BTreeMap;

use crate::queue::functions::{MessageId, Partition, Place};
use crate::queue::placement::{Placement, Route};
use crate::scenario::Scenario;
use crate::scenario::parse::parse_duration;
use crate::sim::world::World;
use crate::trace::{MemorySink, Subject, Tracer};

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
    /// Go to the event before the last one applied, replaying from the
    /// nearest kept copy of the world.
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
  back                     go to the event before the last one (replayed from a copy of the run
                           kept every 1,024 events or so, not from the start)
  show [X] | s [X]         show node X's state (or queue shard X's), or everything
  help | h                 this list
  quit | q                 leave";

/// Accepts a trace kind or the start of one (`raft.role`, `cache.`).
fn check_kind(k: &str) -> Result<(), String> {
    if crate::trace::KINDS.iter().any(|known| known.starts_with(k)) {
        return Ok(());
    }
    let mut families: Vec<&str> = crate::trace::KINDS
        .iter()
        .filter_map(|known| known.split_once('.').map(|(family, _)| family))
        .collect();
    families.sort_unstable();
    families.dedup();
    let prefixes: Vec<String> = families.iter().map(|f| format!("{f}.")).collect();
    Err(format!(
        "break kind: no trace kind is or starts with `{k}`; kinds start with {} (like raft.role, or cache. for all of a family)",
        prefixes.join(" ")
    ))
}

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
        ["break" | "b", "kind", k] => {
            check_kind(k).map(|()| Command::Break(Break::Kind((*k).to_string())))
        }
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
/// anything runs, against this scenario too (a breakpoint on a node it
/// lacks); a bad one is an error naming `name:line:1`.
pub fn run_script(sc: &Scenario, seed: u64, text: &str, name: &str) -> Result<String, String> {
    let mut stepper = Stepper::new(sc, seed);
    let mut commands = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let c = parse_command(line)
            .and_then(|c| stepper.check(&c).map(|()| c))
            .map_err(|e| format!("{name}:{}:1: {e}", i + 1))?;
        commands.push((line, c));
    }
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

/// The last event applied: its number, time and trace lines.
type Last = Option<(u64, u64, Vec<String>)>;

/// A run being stepped.
pub struct Stepper {
    sc: Scenario,
    seed: u64,
    world: World,
    sink: MemorySink,
    /// Events applied so far.
    done: u64,
    last: Last,
    breaks: Vec<Break>,
    checkpoints: Checkpoints,
    /// Events applied again by `back` so far, from a checkpoint or the
    /// start, to reach the event it goes back to.
    replayed: u64,
}

/// Events between two checkpoints at the finest spacing.
pub const STRIDE: u64 = 1024;
/// Checkpoints kept at each spacing.
pub const PER_LEVEL: u64 = 4;
/// Most checkpoints kept, whatever the run's length.
pub const MAX_CHECKPOINTS: usize = 64;
/// Most bytes all checkpoints together may keep, as estimated by
/// `World::retained_bytes` (the world's own estimate of its state).
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 30;

/// Copies of the world at events behind the current one, to go back to.
///
/// A copy is taken every `STRIDE` events applied, and the copies are
/// thinned as the run moves on: of the events within `STRIDE * PER_LEVEL`
/// of the current one, every `STRIDE`-th keeps its copy; of the next
/// `2 * STRIDE * PER_LEVEL` before those, every `2 * STRIDE`-th; then every
/// `4 * STRIDE`-th over twice that again, and so on. So `PER_LEVEL` or so
/// copies per level, a level per doubling of the run's length: about 44
/// for a million events, 60 for the event budget's 10^8. Never more than
/// `MAX_CHECKPOINTS`, nor more than `MAX_CHECKPOINT_BYTES` estimated
/// bytes: past either, the oldest copies go first.
///
/// Going back one event replays at most `STRIDE` events from the copy
/// just behind it (the copies nearest the current event are the densest),
/// and the replay takes the copies it passes, so that going back again
/// stays as cheap. A copy's tracer writes nowhere (see `Tracer::detached`):
/// a world restored from one is given the stepper's sink back.
#[derive(Default)]
struct Checkpoints {
    /// By the number of events applied to reach it.
    kept: BTreeMap<u64, Checkpoint>,
    /// The estimated bytes of all of them.
    bytes: u64,
}

/// The run after some event: the world, and the event that reached it.
struct Checkpoint {
    world: World,
    last: Last,
    bytes: u64,
}

/// The spacing of the checkpoints kept `distance` events behind the
/// current one: `STRIDE` for the nearest `STRIDE * PER_LEVEL`, doubling
/// for each level further. Level k spans the distances from
/// `STRIDE * PER_LEVEL * (2^k - 1)` to `STRIDE * PER_LEVEL * (2^(k+1) - 1)`.
fn spacing(distance: u64) -> u64 {
    let level = (distance / (STRIDE * PER_LEVEL) + 1).ilog2();
    STRIDE.saturating_mul(1u64.checked_shl(level).unwrap_or(u64::MAX))
}

/// Whether the checkpoint after event `e` is kept once the run is at
/// event `now`: `e` must be a multiple of the spacing for its distance.
fn kept_at(e: u64, now: u64) -> bool {
    now.checked_sub(e)
        .is_some_and(|d| e.is_multiple_of(spacing(d)))
}

impl Checkpoints {
    fn add(&mut self, done: u64, world: &World, last: &Last) {
        let world = world.clone();
        let bytes = world.retained_bytes();
        let last = last.clone();
        if let Some(old) = self.kept.insert(done, Checkpoint { world, last, bytes }) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
        self.thin(done);
    }

    /// Keeps the checkpoints the run at event `now` wants, within the limits.
    fn thin(&mut self, now: u64) {
        let mut freed = 0;
        self.kept.retain(|&e, c| {
            let keep = kept_at(e, now);
            if !keep {
                freed += c.bytes;
            }
            keep
        });
        self.bytes -= freed;
        while self.kept.len() > MAX_CHECKPOINTS
            || (self.bytes > MAX_CHECKPOINT_BYTES && self.kept.len() > 1)
        {
            let (_, oldest) = self.kept.pop_first().expect("more than one kept");
            self.bytes -= oldest.bytes;
        }
    }

    /// The nearest checkpoint at or before event `target`.
    fn at_or_before(&self, target: u64) -> Option<(u64, &Checkpoint)> {
        self.kept.range(..=target).next_back().map(|(&e, c)| (e, c))
    }
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
            checkpoints: Checkpoints::default(),
            replayed: 0,
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

    /// Events `back` applied again so far to reach the events it went
    /// back to.
    pub fn replayed(&self) -> u64 {
        self.replayed
    }

    /// The trace digest so far: the same at an event however it was
    /// reached, going forward or back.
    pub fn digest(&self) -> u64 {
        self.world.obs.tracer.digest()
    }

    /// Checks what only this scenario can tell: that a breakpoint's node
    /// is one of its endpoints (a misspelt one would never stop), and that
    /// `show` names one of its nodes or queue shards.
    pub fn check(&self, cmd: &Command) -> Result<(), String> {
        if let Command::Show(Some(x)) = cmd {
            return self.check_shown(x);
        }
        let Command::Break(Break::Node(x)) = cmd else {
            return Ok(());
        };
        let names = self.endpoint_names();
        if names.contains(x) {
            return Ok(());
        }
        Err(format!(
            "break node: no `{x}` in this scenario; it has {}",
            describe_names(&names)
        ))
    }

    /// `show X`: X must be a node (`n1`..`nN`) or, with a queue, a shard.
    fn check_shown(&self, x: &str) -> Result<(), String> {
        if self.node_index(x).is_some() || self.shard_index(x).is_some() {
            return Ok(());
        }
        let shards = match self.queue_shards() {
            0 => String::new(),
            n => format!(" and queue shards s1..s{n}"),
        };
        Err(format!(
            "show: no node `{x}`: this scenario has n1..n{}{shards}",
            self.sc.nodes
        ))
    }

    /// Every name the trace's `node` field can take in this scenario.
    fn endpoint_names(&self) -> Vec<String> {
        self.world
            .subjects()
            .into_iter()
            .map(subject_name)
            .collect()
    }

    /// Runs one command, returning what to print, and whether to go on.
    /// A command this scenario cannot take (see `check`) prints why.
    pub fn execute(&mut self, cmd: &Command) -> (String, bool) {
        let mut out = String::new();
        if let Err(e) = self.check(cmd) {
            out += &e;
            out.push('\n');
            return (out, true);
        }
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
                // The same breakpoint twice would only be listed twice.
                if self.breaks.contains(b) {
                    out += "already set; ";
                } else {
                    self.breaks.push(b.clone());
                }
                out += &format!("breakpoints: {}\n", self.describe_breaks());
            }
            Command::ClearBreaks => {
                self.breaks.clear();
                out += "breakpoints: none\n";
            }
            Command::Back => {
                self.back_to(self.done.saturating_sub(1));
                self.show_last(&mut out);
                out += &self.render_all();
            }
            Command::Show(None) => out += &self.render_all(),
            Command::Show(Some(x)) => match (self.node_index(x), self.shard_index(x)) {
                (Some(i), _) => out += &self.render_node(i),
                (None, Some(j)) => {
                    let placement = self.most_applied_node().map(|(_, _, n)| n.placement());
                    out += &self.shard_line(j, placement, &mut Counts::default());
                    out.push('\n');
                }
                // `check` refused any other name before this ran.
                (None, None) => {}
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
        if self.done.is_multiple_of(STRIDE) {
            self.checkpoints.add(self.done, &self.world, &self.last);
        }
        true
    }

    /// Puts the run back at event `target` (before the current one):
    /// restores the nearest checkpoint at or before it, or starts the run
    /// again when there is none, and applies the events from there. What
    /// it then shows is what going forward to `target` showed.
    fn back_to(&mut self, target: u64) {
        match self.checkpoints.at_or_before(target) {
            Some((e, c)) => {
                self.world = c.world.clone();
                self.last = c.last.clone();
                self.done = e;
                self.world
                    .obs
                    .tracer
                    .set_sink(Some(Box::new(self.sink.clone())));
            }
            None => {
                let fresh = Stepper::new(&self.sc, self.seed);
                self.world = fresh.world;
                self.sink = fresh.sink;
                self.last = fresh.last;
                self.done = 0;
            }
        }
        // Copies after the target are of events no longer applied.
        self.checkpoints.thin(self.done);
        while self.done < target && self.advance() {
            self.replayed += 1;
        }
        self.checkpoints.thin(self.done);
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
        if before.queue != after.queue {
            changed.extend(after.queue.iter().map(|l| format!("  {l}")));
        }
        if !changed.is_empty() {
            out.push_str("changed:\n");
            for c in changed {
                out.push_str(&c);
                out.push('\n');
            }
        }
    }

    /// How many queue shards the queue view shows (0 without a queue).
    fn queue_shards(&self) -> usize {
        let layout = self.world.queue_layout();
        if layout.producers + layout.consumers == 0 {
            0
        } else {
            layout.shards
        }
    }

    /// A queue shard's index from its name (`s2` is 1).
    fn shard_index(&self, name: &str) -> Option<usize> {
        let j: usize = name.strip_prefix('s')?.parse().ok()?;
        (1..=self.queue_shards()).contains(&j).then(|| j - 1)
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
        for l in v.locks.iter().chain(&v.caches).chain(&v.queue) {
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
            queue: self.queue_lines(),
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

    /// The running node that applied the most (the first such), with its
    /// applied index: the best-informed view of replicated state.
    fn most_applied_node(&self) -> Option<(u64, usize, &crate::node::Node)> {
        (0..self.sc.nodes)
            .filter(|&i| !self.world.is_crashed(i))
            .filter_map(|i| self.world.node(i).map(|n| (n.raft().applied_index(), i, n)))
            .max_by_key(|&(applied, i, _)| (applied, std::cmp::Reverse(i)))
    }

    /// The lock table as applied by the node that applied the most.
    fn lock_lines(&self) -> Vec<String> {
        let Some((applied, i, node)) = self.most_applied_node() else {
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

    /// The queue as the shards' stores hold it: a header with the ring
    /// epoch and totals, then per shard the partitions the placement gives
    /// it and, for each partition holding anything, its ready, in-flight
    /// and dead-lettered messages. Partitions are numbered as the trace's
    /// `partition` field numbers them. Empty when the scenario has no queue.
    fn queue_lines(&self) -> Vec<String> {
        let layout = self.world.queue_layout();
        if self.queue_shards() == 0 {
            // Shards without producers or consumers are the caches' memory.
            return Vec::new();
        }
        // Ownership as the best-informed node applied it; shards are the
        // truth for messages, the replicated placement for who owns what.
        let placement = self.most_applied_node().map(|(_, _, n)| n.placement());
        let mut total = Counts::default();
        let shards: Vec<String> = (0..layout.shards)
            .map(|j| self.shard_line(j, placement, &mut total))
            .collect();
        let epoch = placement.map_or(String::new(), |p| format!("ring epoch {}, ", p.epoch()));
        // A crashed shard's keyspace is gone until it restarts: say the
        // total leaves it out rather than let it look drained.
        let crashed: Vec<String> = (0..layout.shards)
            .filter(|&j| self.world.shard_crashed(j))
            .map(|j| format!("s{}", j + 1))
            .collect();
        let uncounted = if crashed.is_empty() {
            String::new()
        } else {
            format!(" (not counting crashed {})", crashed.join(" "))
        };
        let mut out = vec![format!("queue  {epoch}total {}{uncounted}", total.text())];
        out.extend(shards);
        out
    }

    /// One shard: `s1 owns p0 p3: p0 ready 2 inflight 1 | total ...`.
    fn shard_line(&self, j: usize, placement: Option<&Placement>, total: &mut Counts) -> String {
        let owns = placement.map_or(String::new(), |p| format!(" {}", ownership(p, j as u32)));
        let head = format!("  s{}{owns}: ", j + 1);
        if self.world.shard_crashed(j) {
            return head + "crashed";
        }
        let paused = if self
            .world
            .is_paused(self.world.queue_layout().shard_base + j)
        {
            " (paused)"
        } else {
            ""
        };
        let partitions = count_by_partition(&self.world.shard_messages(j).unwrap_or_default());
        if partitions.is_empty() {
            return format!("{head}empty{paused}");
        }
        let mut shard = Counts::default();
        let listed: Vec<String> = partitions
            .iter()
            .map(|(part, c)| {
                shard.add(c);
                format!("p{part} {}", c.brief())
            })
            .collect();
        total.add(&shard);
        format!(
            "{head}{} | total {}{paused}",
            listed.join(", "),
            shard.text()
        )
    }
}

/// Messages on a shard or partition, by where they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    ready: usize,
    inflight: usize,
    dead: usize,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.ready += other.ready;
        self.inflight += other.inflight;
        self.dead += other.dead;
    }

    fn text(&self) -> String {
        format!(
            "ready {} inflight {} dead {}",
            self.ready, self.inflight, self.dead
        )
    }

    /// Like `text`, but without dead letters when there are none.
    fn brief(&self) -> String {
        let mut out = format!("ready {} inflight {}", self.ready, self.inflight);
        if self.dead > 0 {
            out += &format!(" dead {}", self.dead);
        }
        out
    }
}

/// Each partition's counts, for partitions holding anything.
fn count_by_partition(
    messages: &BTreeMap<(Partition, MessageId), Place>,
) -> BTreeMap<Partition, Counts> {
    let mut out: BTreeMap<Partition, Counts> = BTreeMap::new();
    for (&(part, _), place) in messages {
        let c = out.entry(part).or_default();
        match place {
            Place::Ready => c.ready += 1,
            Place::InFlight => c.inflight += 1,
            Place::Dead => c.dead += 1,
        }
    }
    out
}

/// What the placement gives `shard`: `owns p0 p3`, partitions in transit
/// as `p2->s4` (leaving) or `p2<-s1` (arriving); a shard with none is
/// `off the ring` or, on it, `owns nothing`.
fn ownership(p: &Placement, shard: u32) -> String {
    let moves: BTreeMap<Partition, _> = p.moves().collect();
    let mut parts = Vec::new();
    for part in 0..p.partitions() {
        match (p.route(part), moves.get(&part)) {
            (Some(Route::Shard(s)), _) if s == shard => parts.push(format!("p{part}")),
            (Some(Route::Moving), Some(m)) if m.from == shard => {
                parts.push(format!("p{part}->s{}", m.to + 1));
            }
            (Some(Route::Moving), Some(m)) if m.to == shard => {
                parts.push(format!("p{part}<-s{}", m.from + 1));
            }
            _ => {}
        }
    }
    if !parts.is_empty() {
        format!("owns {}", parts.join(" "))
    } else if p.shards().contains(&shard) {
        "owns nothing".to_string()
    } else {
        "off the ring".to_string()
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
    queue: Vec<String>,
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

/// An endpoint's name as the trace writes it in the `node` field.
fn subject_name(s: Subject) -> String {
    match s {
        Subject::Node(i) => format!("n{}", i + 1),
        Subject::Client(i) => format!("c{}", i + 1),
        Subject::Net => "net".to_string(),
        Subject::Resource => "resource".to_string(),
        Subject::Shard(i) => format!("s{}", i + 1),
        Subject::Producer(i) => format!("p{}", i + 1),
        Subject::Consumer(i) => format!("w{}", i + 1),
    }
}

/// Names in order, runs of one letter and consecutive numbers shortened:
/// `n1..n3, c1..c4, resource, net`.
fn describe_names(names: &[String]) -> String {
    let split = |n: &str| {
        let at = n.find(|c: char| c.is_ascii_digit())?;
        Some((n[..at].to_string(), n[at..].parse::<usize>().ok()?))
    };
    // Each run: its letters, first and last number (or a plain name).
    let mut runs: Vec<(String, Option<(usize, usize)>)> = Vec::new();
    for name in names {
        match (split(name), runs.last_mut()) {
            (Some((letters, i)), Some((last, Some((_, end)))))
                if *last == letters && *end + 1 == i =>
            {
                *end = i;
            }
            (Some((letters, i)), _) => runs.push((letters, Some((i, i)))),
            (None, _) => runs.push((name.clone(), None)),
        }
    }
    let shown: Vec<String> = runs
        .iter()
        .map(|(letters, span)| match span {
            None => letters.clone(),
            Some((a, b)) if a == b => format!("{letters}{a}"),
            Some((a, b)) => format!("{letters}{a}..{letters}{b}"),
        })
        .collect();
    shown.join(", ")
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

    fn scenario(name: &str) -> Scenario {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        crate::scenario::load_scenario(&dir.join(format!("{name}.toml"))).unwrap()
    }

    #[test]
    fn break_kind_takes_a_known_kind_or_the_start_of_one() {
        for k in ["raft.role", "cache.", "raft", "queue.consumer_crash", "r"] {
            assert_eq!(
                parse_command(&format!("break kind {k}")),
                Ok(Command::Break(Break::Kind(k.into()))),
                "{k}"
            );
        }
        for k in ["rafts", "raft.roles", "queue.popped", "Raft."] {
            let e = parse_command(&format!("b kind {k}")).unwrap_err();
            assert!(e.contains(&format!("`{k}`")), "{e}");
            assert!(
                e.contains("cache. client. fault. lock. net. queue. raft. resource."),
                "{e}"
            );
        }
    }

    #[test]
    fn break_node_takes_only_this_scenarios_endpoints() {
        let mut st = Stepper::new(&scenario("queue-steady"), 1);
        for x in ["n1", "n3", "s3", "p1", "w3", "net"] {
            assert_eq!(
                st.check(&Command::Break(Break::Node(x.into()))),
                Ok(()),
                "{x}"
            );
        }
        let e = st
            .check(&Command::Break(Break::Node("n4".into())))
            .unwrap_err();
        assert!(
            e.ends_with("it has n1..n3, s1..s3, p1..p3, w1..w3, net"),
            "{e}"
        );
        // At the prompt the stepper says why and keeps no such breakpoint.
        let (shown, go_on) = st.execute(&Command::Break(Break::Node("s9".into())));
        assert!(go_on && shown.starts_with("break node: no `s9`"), "{shown}");
        assert_eq!(st.describe_breaks(), "none");
        let locks = Stepper::new(&scenario("lock-contention"), 1);
        assert_eq!(
            locks.check(&Command::Break(Break::Node("resource".into()))),
            Ok(())
        );
        assert!(
            locks
                .check(&Command::Break(Break::Node("s1".into())))
                .is_err()
        );
    }

    #[test]
    fn a_script_with_a_bad_breakpoint_says_where_and_runs_nothing() {
        let sc = scenario("leader-crash");
        let e = run_script(&sc, 1, "next\nbreak node s1\n", "x.steps").unwrap_err();
        assert!(e.starts_with("x.steps:2:1: break node: no `s1`"), "{e}");
        let e = run_script(&sc, 1, "# kinds\nb kind raft.rolee\n", "x.steps").unwrap_err();
        assert!(e.starts_with("x.steps:2:1: break kind:"), "{e}");
    }

    #[test]
    fn show_takes_only_this_scenarios_nodes_and_shards() {
        let sc = scenario("leader-crash");
        let e = run_script(&sc, 1, "next\nshow n5\nshow n6\n", "x.steps").unwrap_err();
        assert_eq!(
            e,
            "x.steps:3:1: show: no node `n6`: this scenario has n1..n5"
        );
        let queue = Stepper::new(&scenario("queue-steady"), 1);
        assert_eq!(queue.check(&Command::Show(Some("s3".into()))), Ok(()));
        assert_eq!(
            queue.check(&Command::Show(Some("s4".into()))),
            Err("show: no node `s4`: this scenario has n1..n3 and queue shards s1..s3".into())
        );
    }

    #[test]
    fn a_breakpoint_set_twice_is_kept_once() {
        let mut st = Stepper::new(&scenario("leader-crash"), 1);
        let b = Command::Break(Break::Kind("raft.role".into()));
        assert_eq!(st.execute(&b).0, "breakpoints: kind raft.role\n");
        assert_eq!(
            st.execute(&b).0,
            "already set; breakpoints: kind raft.role\n"
        );
    }

    #[test]
    fn names_shorten_to_runs() {
        let names: Vec<String> = ["n1", "n2", "n3", "c1", "c3", "resource", "s1", "net"]
            .map(String::from)
            .to_vec();
        assert_eq!(describe_names(&names), "n1..n3, c1, c3, resource, s1, net");
    }

    /// Sums a line's `ready N inflight N dead N` totals.
    fn total(line: &str) -> usize {
        let words: Vec<&str> = line.rsplit("total ").next().unwrap().split(' ').collect();
        words
            .chunks(2)
            .map(|w| w[1].parse::<usize>().unwrap())
            .sum()
    }

    #[test]
    fn the_queue_view_counts_each_shards_partitions() {
        let mut st = Stepper::new(&scenario("queue-steady"), 1);
        st.execute(&Command::Continue(Some(200)));
        let queue = st.views().queue;
        assert_eq!(
            queue.len(),
            1 + 3,
            "a header and a line per shard: {queue:#?}"
        );
        assert!(
            queue[0].starts_with("queue  ring epoch 0, total ready "),
            "{queue:#?}"
        );
        assert!(
            total(&queue[0]) > 0,
            "messages are in the queue: {queue:#?}"
        );
        let per_shard: usize = queue[1..]
            .iter()
            .filter(|l| l.contains(" | total "))
            .map(|l| total(l))
            .sum();
        assert_eq!(per_shard, total(&queue[0]), "{queue:#?}");
        assert!(
            queue[1..]
                .iter()
                .any(|l| l.contains(" ready ") && l.contains(" inflight ")),
            "{queue:#?}"
        );
        let (shown, _) = st.execute(&Command::Show(None));
        assert!(shown.contains(&queue[1]), "{shown}");
    }

    #[test]
    fn a_crashed_shard_shows_as_crashed() {
        let mut st = Stepper::new(&scenario("queue-shard-crash-always"), 1);
        st.execute(&Command::Break(Break::Kind("fault.crash".into())));
        st.execute(&Command::Continue(None));
        let queue = st.views().queue;
        assert!(
            queue[2].starts_with("  s2 ") && queue[2].ends_with(": crashed"),
            "{queue:#?}"
        );
        assert!(
            queue[0].ends_with("(not counting crashed s2)"),
            "{queue:#?}"
        );
    }

    #[test]
    fn show_takes_a_queue_shard_too() {
        let mut st = Stepper::new(&scenario("queue-steady"), 1);
        st.execute(&Command::Continue(Some(300)));
        let (out, _) = st.execute(&Command::Show(Some("s2".into())));
        assert!(out.starts_with("  s2 owns "), "{out}");
        let (out, _) = st.execute(&Command::Show(Some("s4".into())));
        assert!(out.contains("queue shards s1..s3"), "{out}");
    }

    #[test]
    fn only_a_scenario_with_a_queue_has_a_queue_view() {
        // The cache scenario has a shard too: it is the caches' memory.
        for name in ["leader-crash", "lock-contention", "cache-bus-walkthrough"] {
            let mut st = Stepper::new(&scenario(name), 1);
            st.execute(&Command::Continue(Some(500)));
            assert!(st.views().queue.is_empty(), "{name}");
        }
    }

    /// The trace digest and event count of a run of `sc` on `seed` to its
    /// end, with nobody looking.
    fn unwatched_run(sc: &Scenario, seed: u64) -> (u64, u64) {
        let mut world = World::new(sc, seed, Tracer::new(sc.nodes, None));
        while world.step() {}
        (world.obs.tracer.digest(), world.obs.tracer.events())
    }

    #[test]
    fn looking_at_the_views_never_changes_the_run() {
        for name in ["queue-shard-crash-everysec", "queue-add-shard"] {
            let sc = scenario(name);
            let mut st = Stepper::new(&sc, 2);
            // Every view at every event for a while, then now and then.
            for _ in 0..2000 {
                st.execute(&Command::Next);
            }
            while st.world.next_event_time().is_some() {
                let before = st.events();
                st.execute(&Command::Continue(Some(97)));
                st.execute(&Command::Show(None));
                if st.events() == before {
                    break;
                }
            }
            let watched = (st.world.obs.tracer.digest(), st.world.obs.tracer.events());
            assert_eq!(watched, unwatched_run(&sc, 2), "{name}");
        }
    }

    /// What the stepper shows at its current event, as `back` prints it,
    /// with the trace's digest and length there.
    fn seen(st: &Stepper) -> (u64, String, u64, u64) {
        let mut shown = String::new();
        st.show_last(&mut shown);
        shown += &st.render_all();
        (
            st.events(),
            shown,
            st.digest(),
            st.world.obs.tracer.events(),
        )
    }

    #[test]
    fn going_back_replays_at_most_a_stride_and_shows_what_going_forward_showed() {
        let sc = scenario("queue-steady");
        // Going forward: what each of the last 51 events shows.
        let mut forward = Stepper::new(&sc, 1);
        let mut ahead = Stepper::new(&sc, 1);
        ahead.execute(&Command::Continue(None));
        let end = ahead.events();
        assert!(
            end > 90_000,
            "queue-steady is the longest shipped run: {end}"
        );
        let mut shown = BTreeMap::new();
        while forward.advance() {
            if forward.events() + 51 > end {
                shown.insert(forward.events(), seen(&forward));
            }
        }
        // Going back 50 times from the end, as a script would.
        let mut st = ahead;
        for i in 1..=50 {
            let before = st.replayed();
            let (out, go_on) = st.execute(&Command::Back);
            assert!(go_on);
            let replayed = st.replayed() - before;
            assert!(
                replayed < STRIDE,
                "back #{i} replayed {replayed} events (from the start: {})",
                end - i
            );
            let here = seen(&st);
            assert_eq!(here.0, end - i);
            assert_eq!(here, shown[&(end - i)], "back #{i}");
            assert_eq!(out, here.1);
        }
        assert!(st.replayed() < 50 * STRIDE, "{}", st.replayed());
        // Forward again from there: the run goes on as it did.
        st.execute(&Command::Continue(None));
        assert_eq!(
            seen(&st),
            seen(&{
                let mut again = Stepper::new(&sc, 1);
                again.execute(&Command::Continue(None));
                again
            })
        );
    }

    #[test]
    fn going_far_back_restores_every_kind_of_state() {
        for name in [
            "queue-add-shard",
            "lock-contention",
            "cache-dir-crash",
            "crash-restart-all",
        ] {
            let sc = scenario(name);
            let mut forward = Stepper::new(&sc, 2);
            let targets: Vec<u64> = (0..).map(|k| k * 1_999 + 7).take(12).collect();
            let mut shown = BTreeMap::new();
            loop {
                if targets.contains(&forward.events()) {
                    shown.insert(forward.events(), seen(&forward));
                }
                if !forward.advance() {
                    break;
                }
            }
            let mut st = forward;
            let end = st.events();
            for &t in targets.iter().rev().filter(|&&t| t < end) {
                let before = st.replayed();
                let from = st.events();
                st.back_to(t);
                assert_eq!(seen(&st), shown[&t], "{name} back to {t}");
                // From a copy at most twice the spacing kept that far
                // back from the furthest event (the start counts as one).
                let replayed = st.replayed() - before;
                assert!(
                    replayed < 2 * spacing(end - t),
                    "{name} from {from} to {t}: {replayed}"
                );
                assert!(
                    st.checkpoints.kept.keys().all(|&e| kept_at(e, t)),
                    "{name} at {t}"
                );
            }
        }
    }

    #[test]
    fn the_checkpoints_stay_few_however_long_the_run() {
        let kept = |now: u64| {
            (STRIDE..=now)
                .step_by(STRIDE as usize)
                .filter(|&e| kept_at(e, now))
                .count()
        };
        // The event budget's 10^8 events keep fewer than the most allowed.
        assert!(
            kept(100_000_000) <= MAX_CHECKPOINTS,
            "{}",
            kept(100_000_000)
        );
        assert_eq!(kept(95_002), 18);
        // The copies nearest the current event are STRIDE apart.
        let now = 1_000_000;
        let near: Vec<u64> = (now - STRIDE * PER_LEVEL..=now)
            .filter(|e| e.is_multiple_of(STRIDE))
            .collect();
        assert!(near.iter().all(|&e| kept_at(e, now)), "{near:?}");
        // Those up to three times further back, 2 * STRIDE apart.
        let (k, s2) = (STRIDE * PER_LEVEL, 2 * STRIDE);
        for e in (now - 3 * k + 1..=now - k).filter(|e| e.is_multiple_of(STRIDE)) {
            assert_eq!(kept_at(e, now), e.is_multiple_of(s2), "{e}");
        }
        // And the stepper holds what the rule keeps, with their sizes.
        let mut st = Stepper::new(&scenario("queue-steady"), 1);
        st.execute(&Command::Continue(None));
        let cp = &st.checkpoints;
        assert_eq!(cp.kept.len(), kept(st.events()));
        assert_eq!(cp.bytes, cp.kept.values().map(|c| c.bytes).sum::<u64>());
        assert!(cp.bytes < MAX_CHECKPOINT_BYTES / 8, "{}", cp.bytes);
    }

    /// The value of `"field":"..."` in a trace line.
    fn field<'a>(line: &'a str, name: &str) -> &'a str {
        let open = format!("\"{name}\":\"");
        let rest = &line[line.find(&open).unwrap() + open.len()..];
        &rest[..rest.find('"').unwrap()]
    }

    #[test]
    fn every_traced_kind_and_node_is_known() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        assert!(paths.len() > 40, "the shipped scenarios are there");
        for path in paths {
            let sc = crate::scenario::load_scenario(&path).unwrap();
            let sink = MemorySink::default();
            let mut world = World::new(
                &sc,
                sc.seed,
                Tracer::new(sc.nodes, Some(Box::new(sink.clone()))),
            );
            let names: Vec<String> = world.subjects().into_iter().map(subject_name).collect();
            let mut more = true;
            while more {
                for _ in 0..10_000 {
                    more = world.step();
                    if !more {
                        break;
                    }
                }
                for line in sink.take_lines() {
                    let kind = field(&line, "kind");
                    assert!(
                        crate::trace::KINDS.contains(&kind),
                        "{}: {line}",
                        path.display()
                    );
                    let node = field(&line, "node").to_string();
                    assert!(names.contains(&node), "{}: {line}", path.display());
                }
            }
        }
    }
}
