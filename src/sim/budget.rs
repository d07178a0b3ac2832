//! A run's budgets: how many events it may simulate and how much memory it
//! may keep, and the verdict when it needs more.
//!
//! Both are deterministic, so a run that exceeds a budget exceeds it again
//! on replay, on any machine: the event budget counts simulated events, and
//! the memory budget is checked against an estimate computed from the
//! lengths of what the world keeps (see `World::retained_bytes`), never
//! against the process's resident memory, which depends on the allocator,
//! the machine and the other threads of a sweep.

use std::fmt;

/// The default event budget: the largest shipped scenario simulates about
/// 95,000 events (queue-steady on its own seed), so 10^8 is over 1,000
/// times that.
pub const DEFAULT_MAX_EVENTS: u64 = 100_000_000;

/// The default memory budget: 4 GiB of estimated retained state; the
/// largest shipped scenario keeps a few MiB.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 4 << 30;

/// The memory estimate is computed at most once every this many events:
/// computing it walks the shards' keyspaces, and a run's state grows by at
/// most a few hundred bytes an event, so checking every 16,384 events
/// overshoots a small budget by at most a few MiB.
pub const MEMORY_CHECK_EVERY: u64 = 1 << 14;

/// Events until the next memory check after an estimate of `estimate`
/// bytes: at least `MEMORY_CHECK_EVERY`, and one event per KiB estimated,
/// so that walking a large state costs a bounded amount per event (a run
/// whose keyspace only grows would otherwise walk it again every 16,384
/// events) while the state can grow by at most about a quarter between
/// two checks.
pub fn memory_check_interval(estimate: u64) -> u64 {
    MEMORY_CHECK_EVERY.max(estimate / 1024)
}

/// The limits one run must stay within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// Most simulated events (message deliveries, timers, timeline steps).
    pub max_events: u64,
    /// Most bytes of retained state, as estimated by `World::retained_bytes`.
    pub max_memory_bytes: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_events: DEFAULT_MAX_EVENTS,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
        }
    }
}

impl RunLimits {
    /// The flags that set these limits, for a replay command; empty for the
    /// defaults.
    pub fn flags(&self) -> String {
        let mut out = String::new();
        if self.max_events != DEFAULT_MAX_EVENTS {
            out += &format!(" --max-events {}", self.max_events);
        }
        if self.max_memory_bytes != DEFAULT_MAX_MEMORY_BYTES {
            out += &format!(" --max-memory {}", format_size(self.max_memory_bytes));
        }
        out
    }
}

/// Which budget a run exceeded, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetExceeded {
    /// The run needed more than `limit` events.
    Events { limit: u64, at_ns: u64 },
    /// The run's estimated state passed `limit` bytes after `events` events.
    Memory {
        limit: u64,
        estimate: u64,
        events: u64,
        at_ns: u64,
    },
}

impl BudgetExceeded {
    /// "events" or "memory": what the tally and `--json` call the budget.
    pub fn kind(&self) -> &'static str {
        match self {
            BudgetExceeded::Events { .. } => "events",
            BudgetExceeded::Memory { .. } => "memory",
        }
    }

    /// The flag that sets the budget exceeded, for a replay command.
    pub fn flag(&self) -> String {
        match *self {
            BudgetExceeded::Events { limit, .. } => format!("--max-events {limit}"),
            BudgetExceeded::Memory { limit, .. } => format!("--max-memory {}", format_size(limit)),
        }
    }

    /// Simulated time when the run stopped.
    pub fn at_ns(&self) -> u64 {
        match *self {
            BudgetExceeded::Events { at_ns, .. } | BudgetExceeded::Memory { at_ns, .. } => at_ns,
        }
    }
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            BudgetExceeded::Events { limit, at_ns } => write!(
                f,
                "event budget exceeded: the run needed more than {limit} events (stopped at t = {at_ns} ns; raise --max-events to go further)"
            ),
            BudgetExceeded::Memory {
                limit,
                estimate,
                events,
                at_ns,
            } => write!(
                f,
                "memory budget exceeded: the run's state was estimated at {:.1} MiB ({estimate} bytes) after {events} events, over the budget of {} (stopped at t = {at_ns} ns; raise --max-memory to go further)",
                estimate as f64 / f64::from(1 << 20),
                format_size(limit)
            ),
        }
    }
}

/// Binary units a size may end with, largest first so "GiB" is not read as "B".
const UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

/// The form a size must take, for error messages.
pub const SIZE_FORM: &str =
    "a whole number of bytes, optionally followed by B, KiB, MiB, GiB or TiB, like 512MiB or 4GiB";

/// Reads a size like `4GiB`, `512MiB`, `100000` (bytes); at least 1 byte.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("expected {SIZE_FORM}, got `{text}`");
    let t = text.trim();
    let (digits, unit) = UNITS
        .iter()
        .find_map(|&(name, mult)| t.strip_suffix(name).map(|d| (d.trim_end(), mult)))
        .unwrap_or((t, 1));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    match n.checked_mul(unit) {
        Some(0) => Err(format!("expected at least 1 byte, got `{text}`")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{text} is more than {} bytes", u64::MAX)),
    }
}

/// A size in the largest binary unit that divides it exactly (`4GiB`,
/// `1536KiB`, `1000B`): what `parse_size` reads back to the same number.
pub fn format_size(bytes: u64) -> String {
    UNITS
        .iter()
        .find(|&&(_, mult)| bytes >= mult && bytes.is_multiple_of(mult))
        .map_or_else(
            || "0B".into(),
            |&(name, mult)| format!("{}{name}", bytes / mult),
        )
}

/// Bytes a collection entry costs beyond its own size (a B-tree node's share
/// of keys, values and child pointers, a heap block's header): a round
/// figure, so the estimate errs towards more memory rather than less.
pub const ENTRY_OVERHEAD: u64 = 16;

/// The estimated bytes of `n` entries of type `T` kept in a collection.
pub fn entries<T>(n: usize) -> u64 {
    (n as u64).saturating_mul(std::mem::size_of::<T>() as u64 + ENTRY_OVERHEAD)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_large_estimate_is_checked_less_often() {
        assert_eq!(memory_check_interval(0), MEMORY_CHECK_EVERY);
        assert_eq!(memory_check_interval(16 << 20), MEMORY_CHECK_EVERY);
        assert_eq!(memory_check_interval(1 << 30), 1 << 20);
    }

    use super::*;

    #[test]
    fn sizes_are_read_in_binary_units_and_bad_ones_say_the_expected_form() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("100000"), Ok(100_000));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("7B"), Ok(7));
        for bad in ["", "GiB", "-1GiB", "1.5GiB", "4GB", "4 gib", "x"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("like 512MiB or 4GiB"), "{bad}: {e}");
        }
        assert!(parse_size("0MiB").unwrap_err().contains("at least 1 byte"));
        assert!(
            parse_size("99999999999TiB")
                .unwrap_err()
                .contains("more than")
        );
        for n in [1, 1000, 1536 << 10, 4 << 30, u64::MAX] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(4 << 30), "4GiB");
    }

    #[test]
    fn only_limits_other_than_the_defaults_become_flags() {
        assert_eq!(RunLimits::default().flags(), "");
        let l = RunLimits {
            max_events: 500,
            max_memory_bytes: 1 << 20,
        };
        assert_eq!(l.flags(), " --max-events 500 --max-memory 1MiB");
    }
}
