//! The MESI cache-coherence protocol (the Illinois protocol) as a pure
//! transition table, for caches that snoop one bus on which the arbiter
//! serialises every transaction in a single total order.
//!
//! Two functions are the whole protocol:
//!
//! - [`on_processor`]: what a cache does when its own processor reads,
//!   writes or evicts a line (rows P1 to P12 of `docs/mesi.md`);
//! - [`on_snoop`]: how a cache reacts to a transaction that another cache
//!   put on the bus (rows S1 to S16).
//!
//! Nothing here does I/O, keeps state or knows about addresses: a
//! controller holds each line's [`State`], calls these functions, and
//! carries out the result. Every match arm is one row of the table and its
//! comment names the row.
//!
//! Three choices the textbooks leave open are fixed here:
//!
//! - **`hit` on a write in S.** The line already holds the data, so the
//!   write is a hit (`hit == true`), but the cache must still issue
//!   `BusUpgr` to invalidate the other copies before writing. That row (P7)
//!   is the only one where `hit` is true and `bus` is `Some`.
//! - **Evictions.** Evicting M issues a `Flush` that writes the line back
//!   to memory (`bus == Some(Flush)` and `write_back == true`): the
//!   write-back is a bus transaction ordered like any other. Evicting E or S
//!   is silent. An eviction is not an access, so its `hit` is always false.
//! - **Impossible combinations.** Some (state, transaction) pairs cannot
//!   occur while the protocol holds: [`is_possible`] says which, and
//!   [`on_snoop`] answers them with `Invalid`, no shared signal and no
//!   flush. A checker calls [`is_possible`] to flag them; this module never
//!   panics.

use serde::{Deserialize, Serialize};

use BusOp::{BusRd, BusRdX, BusUpgr, Flush};
use ProcessorOp::{Evict, Read, Write};
use State::{Exclusive as E, Invalid as I, Modified as M, Shared as S};

/// A cache line's MESI state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    /// The only valid copy, and dirty: memory is stale.
    Modified,
    /// The only cached copy, and clean: memory is up to date.
    Exclusive,
    /// A clean copy that other caches may hold too.
    Shared,
    /// No usable copy.
    Invalid,
}

impl State {
    /// Every state, in the order M, E, S, I.
    pub const ALL: [State; 4] = [M, E, S, I];

    /// The state's letter: 'M', 'E', 'S' or 'I'.
    pub fn letter(self) -> char {
        match self {
            M => 'M',
            E => 'E',
            S => 'S',
            I => 'I',
        }
    }

    /// The state's name in traces: "M", "E", "S" or "I".
    pub fn name(self) -> &'static str {
        match self {
            M => "M",
            E => "E",
            S => "S",
            I => "I",
        }
    }
}

/// What the local processor does to a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessorOp {
    /// PrRd: the processor loads from the line.
    Read,
    /// PrWr: the processor stores to the line.
    Write,
    /// The cache drops the line (to make room for another).
    Evict,
}

impl ProcessorOp {
    /// Every processor operation, in the order PrRd, PrWr, Evict.
    pub const ALL: [ProcessorOp; 3] = [Read, Write, Evict];

    /// The operation's name in traces: "PrRd", "PrWr" or "Evict".
    pub fn name(self) -> &'static str {
        match self {
            Read => "PrRd",
            Write => "PrWr",
            Evict => "Evict",
        }
    }
}

/// Bus transactions (serialised by the bus arbiter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusOp {
    /// Read the line, to share it.
    BusRd,
    /// Read the line, to own it: every other copy is invalidated.
    BusRdX,
    /// Own a line already held in S: every other copy is invalidated, and
    /// no data moves.
    BusUpgr,
    /// Put a dirty line on the bus; memory takes it.
    Flush,
}

impl BusOp {
    /// Every bus transaction, in the order BusRd, BusRdX, BusUpgr, Flush.
    pub const ALL: [BusOp; 4] = [BusRd, BusRdX, BusUpgr, Flush];

    /// The transaction's name in traces: "BusRd", "BusRdX", "BusUpgr" or
    /// "Flush".
    pub fn name(self) -> &'static str {
        match self {
            BusRd => "BusRd",
            BusRdX => "BusRdX",
            BusUpgr => "BusUpgr",
            Flush => "Flush",
        }
    }
}

/// The local side of a processor operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalStep {
    /// The bus transaction to issue first, if any.
    pub bus: Option<BusOp>,
    /// The line's next state: known up front, except for a read miss (PrRd
    /// in I), which waits for the bus result (the shared signal).
    pub next: Next,
    /// True when the old contents must be written back to memory (evicting
    /// M, whose `Flush` carries them).
    pub write_back: bool,
    /// True when the line already holds the data the processor needs (a
    /// read or write in M, E or S), even if ownership still takes a bus
    /// transaction (PrWr in S). False on a miss, and on every eviction.
    pub hit: bool,
}

/// A line's next state after a processor operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The next state, whatever the bus says.
    Known(State),
    /// E if no other cache asserted `shared`, else S.
    ExclusiveUnlessShared,
}

impl Next {
    /// The next state, given whether any other cache asserted the shared
    /// signal during this operation's bus transaction (false if there was
    /// none).
    pub fn resolve(self, shared: bool) -> State {
        match self {
            Next::Known(state) => state,
            Next::ExclusiveUnlessShared if shared => S,
            Next::ExclusiveUnlessShared => E,
        }
    }
}

/// The local side of processor operation `op` on a line in `state`.
pub fn on_processor(state: State, op: ProcessorOp) -> LocalStep {
    match (op, state) {
        // P1: PrRd in M: hit, no bus, stays M.
        (Read, M) => LocalStep {
            bus: None,
            next: Next::Known(M),
            write_back: false,
            hit: true,
        },
        // P2: PrRd in E: hit, no bus, stays E.
        (Read, E) => LocalStep {
            bus: None,
            next: Next::Known(E),
            write_back: false,
            hit: true,
        },
        // P3: PrRd in S: hit, no bus, stays S.
        (Read, S) => LocalStep {
            bus: None,
            next: Next::Known(S),
            write_back: false,
            hit: true,
        },
        // P4: PrRd in I: miss, BusRd; E if no other cache asserts shared,
        // else S.
        (Read, I) => LocalStep {
            bus: Some(BusRd),
            next: Next::ExclusiveUnlessShared,
            write_back: false,
            hit: false,
        },
        // P5: PrWr in M: hit, no bus, stays M.
        (Write, M) => LocalStep {
            bus: None,
            next: Next::Known(M),
            write_back: false,
            hit: true,
        },
        // P6: PrWr in E: hit, no bus, goes to M (the silent upgrade).
        (Write, E) => LocalStep {
            bus: None,
            next: Next::Known(M),
            write_back: false,
            hit: true,
        },
        // P7: PrWr in S: hit (the data is here), BusUpgr to invalidate the
        // other copies, goes to M.
        (Write, S) => LocalStep {
            bus: Some(BusUpgr),
            next: Next::Known(M),
            write_back: false,
            hit: true,
        },
        // P8: PrWr in I: miss, BusRdX, goes to M.
        (Write, I) => LocalStep {
            bus: Some(BusRdX),
            next: Next::Known(M),
            write_back: false,
            hit: false,
        },
        // P9: Evict in M: Flush, writing the line back to memory; goes to I.
        (Evict, M) => LocalStep {
            bus: Some(Flush),
            next: Next::Known(I),
            write_back: true,
            hit: false,
        },
        // P10: Evict in E: silent (memory is up to date), goes to I.
        (Evict, E) => LocalStep {
            bus: None,
            next: Next::Known(I),
            write_back: false,
            hit: false,
        },
        // P11: Evict in S: silent (memory is up to date), goes to I.
        (Evict, S) => LocalStep {
            bus: None,
            next: Next::Known(I),
            write_back: false,
            hit: false,
        },
        // P12: Evict in I: nothing to do.
        (Evict, I) => LocalStep {
            bus: None,
            next: Next::Known(I),
            write_back: false,
            hit: false,
        },
    }
}

/// A snooping cache's reaction to another cache's bus transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnoopStep {
    /// The line's next state in the snooping cache.
    pub next: State,
    /// This cache asserts the shared signal (it holds a valid copy). Only a
    /// `BusRd` asks for the signal, so it is false for every other
    /// transaction.
    pub shared: bool,
    /// This cache supplies its dirty data with a Flush (writing it back to
    /// memory too) before the requester proceeds.
    pub flush: bool,
}

/// What [`on_snoop`] answers for a pair that [`is_possible`] rules out.
const IMPOSSIBLE: SnoopStep = SnoopStep {
    next: I,
    shared: false,
    flush: false,
};

/// Whether a cache holding a line in `state` can see another cache issue
/// `bus` for that line while the protocol holds (at most one cache in M or
/// E, and then no other valid copy).
///
/// Two kinds of pair are impossible: `BusUpgr` seen in M or E (the issuer
/// holds the line in S, so no other cache owns it), and `Flush` seen in M,
/// E or S (only the one cache in M flushes, so every other copy is I).
/// [`on_snoop`] answers an impossible pair with `Invalid`, no shared signal
/// and no flush; a checker flags it.
pub fn is_possible(state: State, bus: BusOp) -> bool {
    !matches!((bus, state), (BusUpgr, M | E) | (Flush, M | E | S))
}

/// The reaction of a cache holding a line in `state` to transaction `bus`,
/// issued for that line by another cache. See [`is_possible`] for the pairs
/// that cannot occur.
pub fn on_snoop(state: State, bus: BusOp) -> SnoopStep {
    match (bus, state) {
        // S1: BusRd seen in M: flush (supply the data, memory updated),
        // assert shared, go to S.
        (BusRd, M) => SnoopStep {
            next: S,
            shared: true,
            flush: true,
        },
        // S2: BusRd seen in E: assert shared, go to S; memory supplies.
        (BusRd, E) => SnoopStep {
            next: S,
            shared: true,
            flush: false,
        },
        // S3: BusRd seen in S: assert shared, stay S.
        (BusRd, S) => SnoopStep {
            next: S,
            shared: true,
            flush: false,
        },
        // S4: BusRd seen in I: nothing.
        (BusRd, I) => SnoopStep {
            next: I,
            shared: false,
            flush: false,
        },
        // S5: BusRdX seen in M: flush (supply the data, memory updated),
        // go to I.
        (BusRdX, M) => SnoopStep {
            next: I,
            shared: false,
            flush: true,
        },
        // S6: BusRdX seen in E: go to I.
        (BusRdX, E) => SnoopStep {
            next: I,
            shared: false,
            flush: false,
        },
        // S7: BusRdX seen in S: go to I.
        (BusRdX, S) => SnoopStep {
            next: I,
            shared: false,
            flush: false,
        },
        // S8: BusRdX seen in I: nothing.
        (BusRdX, I) => SnoopStep {
            next: I,
            shared: false,
            flush: false,
        },
        // S9: BusUpgr seen in M: impossible (the issuer holds S).
        (BusUpgr, M) => IMPOSSIBLE,
        // S10: BusUpgr seen in E: impossible (the issuer holds S).
        (BusUpgr, E) => IMPOSSIBLE,
        // S11: BusUpgr seen in S: go to I.
        (BusUpgr, S) => SnoopStep {
            next: I,
            shared: false,
            flush: false,
        },
        // S12: BusUpgr seen in I: nothing.
        (BusUpgr, I) => SnoopStep {
            next: I,
            shared: false,
            flush: false,
        },
        // S13: Flush seen in M: impossible (only the one M flushes).
        (Flush, M) => IMPOSSIBLE,
        // S14: Flush seen in E: impossible (only the one M flushes).
        (Flush, E) => IMPOSSIBLE,
        // S15: Flush seen in S: impossible (only the one M flushes).
        (Flush, S) => IMPOSSIBLE,
        // S16: Flush seen in I: nothing (a data transfer to memory).
        (Flush, I) => SnoopStep {
            next: I,
            shared: false,
            flush: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- Processor side: one test per row, P1 to P12. ---

    fn local(bus: Option<BusOp>, next: Next, write_back: bool, hit: bool) -> LocalStep {
        LocalStep {
            bus,
            next,
            write_back,
            hit,
        }
    }

    #[test]
    fn prrd_in_m_hits_and_stays_m() {
        assert_eq!(
            on_processor(M, Read),
            local(None, Next::Known(M), false, true)
        );
    }

    #[test]
    fn prrd_in_e_hits_and_stays_e() {
        assert_eq!(
            on_processor(E, Read),
            local(None, Next::Known(E), false, true)
        );
    }

    #[test]
    fn prrd_in_s_hits_and_stays_s() {
        assert_eq!(
            on_processor(S, Read),
            local(None, Next::Known(S), false, true)
        );
    }

    #[test]
    fn prrd_in_i_with_no_sharers_goes_to_e() {
        let step = on_processor(I, Read);
        assert_eq!(
            step,
            local(Some(BusRd), Next::ExclusiveUnlessShared, false, false)
        );
        assert_eq!(step.next.resolve(false), E);
    }

    #[test]
    fn prrd_in_i_with_a_sharer_goes_to_s() {
        let step = on_processor(I, Read);
        assert_eq!(
            step,
            local(Some(BusRd), Next::ExclusiveUnlessShared, false, false)
        );
        assert_eq!(step.next.resolve(true), S);
    }

    #[test]
    fn prwr_in_m_hits_and_stays_m() {
        assert_eq!(
            on_processor(M, Write),
            local(None, Next::Known(M), false, true)
        );
    }

    #[test]
    fn prwr_in_e_hits_silently_and_goes_to_m() {
        assert_eq!(
            on_processor(E, Write),
            local(None, Next::Known(M), false, true)
        );
    }

    #[test]
    fn prwr_in_s_hits_issues_busupgr_and_goes_to_m() {
        assert_eq!(
            on_processor(S, Write),
            local(Some(BusUpgr), Next::Known(M), false, true)
        );
    }

    #[test]
    fn prwr_in_i_misses_issues_busrdx_and_goes_to_m() {
        assert_eq!(
            on_processor(I, Write),
            local(Some(BusRdX), Next::Known(M), false, false)
        );
    }

    #[test]
    fn evict_in_m_flushes_writes_back_and_goes_to_i() {
        assert_eq!(
            on_processor(M, Evict),
            local(Some(Flush), Next::Known(I), true, false)
        );
    }

    #[test]
    fn evict_in_e_is_silent_and_goes_to_i() {
        assert_eq!(
            on_processor(E, Evict),
            local(None, Next::Known(I), false, false)
        );
    }

    #[test]
    fn evict_in_s_is_silent_and_goes_to_i() {
        assert_eq!(
            on_processor(S, Evict),
            local(None, Next::Known(I), false, false)
        );
    }

    #[test]
    fn evict_in_i_does_nothing() {
        assert_eq!(
            on_processor(I, Evict),
            local(None, Next::Known(I), false, false)
        );
    }

    #[test]
    fn next_known_ignores_the_shared_signal() {
        for state in State::ALL {
            assert_eq!(Next::Known(state).resolve(false), state);
            assert_eq!(Next::Known(state).resolve(true), state);
        }
    }

    // --- Snoop side: one test per row, S1 to S16. ---

    fn snoop(next: State, shared: bool, flush: bool) -> SnoopStep {
        SnoopStep {
            next,
            shared,
            flush,
        }
    }

    fn assert_impossible(state: State, bus: BusOp) {
        assert!(!is_possible(state, bus));
        assert_eq!(on_snoop(state, bus), snoop(I, false, false));
    }

    #[test]
    fn busrd_snooped_in_m_flushes_and_goes_to_s() {
        assert!(is_possible(M, BusRd));
        assert_eq!(on_snoop(M, BusRd), snoop(S, true, true));
    }

    #[test]
    fn busrd_snooped_in_e_asserts_shared_and_goes_to_s() {
        assert!(is_possible(E, BusRd));
        assert_eq!(on_snoop(E, BusRd), snoop(S, true, false));
    }

    #[test]
    fn busrd_snooped_in_s_asserts_shared_and_stays_s() {
        assert!(is_possible(S, BusRd));
        assert_eq!(on_snoop(S, BusRd), snoop(S, true, false));
    }

    #[test]
    fn busrd_snooped_in_i_does_nothing() {
        assert!(is_possible(I, BusRd));
        assert_eq!(on_snoop(I, BusRd), snoop(I, false, false));
    }

    #[test]
    fn busrdx_snooped_in_m_flushes_and_goes_to_i() {
        assert!(is_possible(M, BusRdX));
        assert_eq!(on_snoop(M, BusRdX), snoop(I, false, true));
    }

    #[test]
    fn busrdx_snooped_in_e_goes_to_i() {
        assert!(is_possible(E, BusRdX));
        assert_eq!(on_snoop(E, BusRdX), snoop(I, false, false));
    }

    #[test]
    fn busrdx_snooped_in_s_goes_to_i() {
        assert!(is_possible(S, BusRdX));
        assert_eq!(on_snoop(S, BusRdX), snoop(I, false, false));
    }

    #[test]
    fn busrdx_snooped_in_i_does_nothing() {
        assert!(is_possible(I, BusRdX));
        assert_eq!(on_snoop(I, BusRdX), snoop(I, false, false));
    }

    #[test]
    fn busupgr_snooped_in_m_is_impossible() {
        assert_impossible(M, BusUpgr);
    }

    #[test]
    fn busupgr_snooped_in_e_is_impossible() {
        assert_impossible(E, BusUpgr);
    }

    #[test]
    fn busupgr_snooped_in_s_goes_to_i() {
        assert!(is_possible(S, BusUpgr));
        assert_eq!(on_snoop(S, BusUpgr), snoop(I, false, false));
    }

    #[test]
    fn busupgr_snooped_in_i_does_nothing() {
        assert!(is_possible(I, BusUpgr));
        assert_eq!(on_snoop(I, BusUpgr), snoop(I, false, false));
    }

    #[test]
    fn flush_snooped_in_m_is_impossible() {
        assert_impossible(M, Flush);
    }

    #[test]
    fn flush_snooped_in_e_is_impossible() {
        assert_impossible(E, Flush);
    }

    #[test]
    fn flush_snooped_in_s_is_impossible() {
        assert_impossible(S, Flush);
    }

    #[test]
    fn flush_snooped_in_i_does_nothing() {
        assert!(is_possible(I, Flush));
        assert_eq!(on_snoop(I, Flush), snoop(I, false, false));
    }

    // --- Both tables again, written as data: every row pinned once more. ---

    const X: Next = Next::ExclusiveUnlessShared;

    /// (op, state, bus, next, write_back, hit), in row order P1 to P12.
    #[rustfmt::skip]
    const PROCESSOR_TABLE: [(ProcessorOp, State, Option<BusOp>, Next, bool, bool); 12] = [
        (Read,  M, None,          Next::Known(M), false, true),  // P1
        (Read,  E, None,          Next::Known(E), false, true),  // P2
        (Read,  S, None,          Next::Known(S), false, true),  // P3
        (Read,  I, Some(BusRd),   X,              false, false), // P4
        (Write, M, None,          Next::Known(M), false, true),  // P5
        (Write, E, None,          Next::Known(M), false, true),  // P6
        (Write, S, Some(BusUpgr), Next::Known(M), false, true),  // P7
        (Write, I, Some(BusRdX),  Next::Known(M), false, false), // P8
        (Evict, M, Some(Flush),   Next::Known(I), true,  false), // P9
        (Evict, E, None,          Next::Known(I), false, false), // P10
        (Evict, S, None,          Next::Known(I), false, false), // P11
        (Evict, I, None,          Next::Known(I), false, false), // P12
    ];

    /// (bus, state, possible, next, shared, flush), in row order S1 to S16.
    #[rustfmt::skip]
    const SNOOP_TABLE: [(BusOp, State, bool, State, bool, bool); 16] = [
        (BusRd,   M, true,  S, true,  true),  // S1
        (BusRd,   E, true,  S, true,  false), // S2
        (BusRd,   S, true,  S, true,  false), // S3
        (BusRd,   I, true,  I, false, false), // S4
        (BusRdX,  M, true,  I, false, true),  // S5
        (BusRdX,  E, true,  I, false, false), // S6
        (BusRdX,  S, true,  I, false, false), // S7
        (BusRdX,  I, true,  I, false, false), // S8
        (BusUpgr, M, false, I, false, false), // S9
        (BusUpgr, E, false, I, false, false), // S10
        (BusUpgr, S, true,  I, false, false), // S11
        (BusUpgr, I, true,  I, false, false), // S12
        (Flush,   M, false, I, false, false), // S13
        (Flush,   E, false, I, false, false), // S14
        (Flush,   S, false, I, false, false), // S15
        (Flush,   I, true,  I, false, false), // S16
    ];

    #[test]
    fn every_processor_row_matches_the_table() {
        for op in ProcessorOp::ALL {
            for state in State::ALL {
                let rows: Vec<_> = PROCESSOR_TABLE
                    .iter()
                    .filter(|row| row.0 == op && row.1 == state)
                    .collect();
                assert_eq!(rows.len(), 1, "{} in {}", op.name(), state.name());
                let &(_, _, bus, next, write_back, hit) = rows[0];
                assert_eq!(
                    on_processor(state, op),
                    local(bus, next, write_back, hit),
                    "{} in {}",
                    op.name(),
                    state.name()
                );
            }
        }
    }

    #[test]
    fn every_snoop_row_matches_the_table() {
        for bus in BusOp::ALL {
            for state in State::ALL {
                let rows: Vec<_> = SNOOP_TABLE
                    .iter()
                    .filter(|row| row.0 == bus && row.1 == state)
                    .collect();
                assert_eq!(rows.len(), 1, "{} in {}", bus.name(), state.name());
                let &(_, _, possible, next, shared, flush) = rows[0];
                let context = format!("{} seen in {}", bus.name(), state.name());
                assert_eq!(is_possible(state, bus), possible, "{context}");
                assert_eq!(
                    on_snoop(state, bus),
                    snoop(next, shared, flush),
                    "{context}"
                );
            }
        }
    }

    #[test]
    fn letters_and_names() {
        let letters: String = State::ALL.iter().map(|s| s.letter()).collect();
        assert_eq!(letters, "MESI");
        let names: Vec<_> = State::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["M", "E", "S", "I"]);
        let ops: Vec<_> = ProcessorOp::ALL.iter().map(|op| op.name()).collect();
        assert_eq!(ops, ["PrRd", "PrWr", "Evict"]);
        let buses: Vec<_> = BusOp::ALL.iter().map(|b| b.name()).collect();
        assert_eq!(buses, ["BusRd", "BusRdX", "BusUpgr", "Flush"]);
    }

    // --- Walkthroughs: several caches on one bus, using only the table. ---

    /// One line held by a few caches on a snooping bus, and whether memory
    /// holds its latest value.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    struct Bus {
        caches: Vec<State>,
        memory_fresh: bool,
    }

    /// What one processor operation put on the bus.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        bus: Option<BusOp>,
        shared: bool,
        flushed: bool,
    }

    impl Bus {
        fn new(caches: usize) -> Bus {
            Bus {
                caches: vec![I; caches],
                memory_fresh: true,
            }
        }

        /// The caches' states as letters, cache 1 first: "SSI".
        fn letters(&self) -> String {
            self.caches.iter().map(|s| s.letter()).collect()
        }

        /// Applies `op` at `cache` (numbered from 0): issues its bus
        /// transaction to every other cache's `on_snoop`, ORs their shared
        /// signals, resolves the requester's next state, then asserts the
        /// invariants.
        fn apply(&mut self, cache: usize, op: ProcessorOp) -> Seen {
            let step = on_processor(self.caches[cache], op);
            let (mut shared, mut flushed) = (false, false);
            if let Some(bus) = step.bus {
                for (other, state) in self.caches.iter_mut().enumerate() {
                    if other == cache {
                        continue;
                    }
                    assert!(
                        is_possible(*state, bus),
                        "cache {} in {} sees {}",
                        other + 1,
                        state.name(),
                        bus.name()
                    );
                    let reaction = on_snoop(*state, bus);
                    shared |= reaction.shared;
                    flushed |= reaction.flush;
                    *state = reaction.next;
                }
            }
            if flushed || step.write_back {
                self.memory_fresh = true;
            }
            if op == Write {
                self.memory_fresh = false;
            }
            self.caches[cache] = step.next.resolve(shared);
            self.assert_invariants();
            Seen {
                bus: step.bus,
                shared,
                flushed,
            }
        }

        /// Single writer: at most one cache in M or E, and then no cache in
        /// S. Memory is stale exactly when some cache is in M.
        fn assert_invariants(&self) {
            let owners = self.caches.iter().filter(|&&s| s == M || s == E).count();
            let sharers = self.caches.iter().filter(|&&s| s == S).count();
            assert!(
                owners <= 1 && (owners == 0 || sharers == 0),
                "single writer broken: {}",
                self.letters()
            );
            assert_eq!(
                self.memory_fresh,
                !self.caches.contains(&M),
                "memory freshness wrong: {}",
                self.letters()
            );
        }
    }

    fn seen(bus: Option<BusOp>, shared: bool, flushed: bool) -> Seen {
        Seen {
            bus,
            shared,
            flushed,
        }
    }

    #[test]
    fn walkthrough_read_miss_with_no_sharers_loads_e() {
        let mut bus = Bus::new(3);
        assert_eq!(bus.apply(0, Read), seen(Some(BusRd), false, false));
        assert_eq!(bus.letters(), "EII");
        assert!(bus.memory_fresh);
        // A second read is a hit and stays off the bus.
        assert_eq!(bus.apply(0, Read), seen(None, false, false));
        assert_eq!(bus.letters(), "EII");
    }

    #[test]
    fn walkthrough_second_reader_brings_both_to_s() {
        let mut bus = Bus::new(3);
        assert_eq!(bus.apply(0, Read), seen(Some(BusRd), false, false));
        assert_eq!(bus.letters(), "EII");
        assert_eq!(bus.apply(1, Read), seen(Some(BusRd), true, false));
        assert_eq!(bus.letters(), "SSI");
        assert_eq!(bus.apply(2, Read), seen(Some(BusRd), true, false));
        assert_eq!(bus.letters(), "SSS");
        assert!(bus.memory_fresh);
    }

    #[test]
    fn walkthrough_write_on_s_invalidates_the_others() {
        let mut bus = Bus::new(3);
        bus.apply(0, Read);
        bus.apply(1, Read);
        bus.apply(2, Read);
        assert_eq!(bus.letters(), "SSS");
        assert_eq!(bus.apply(1, Write), seen(Some(BusUpgr), false, false));
        assert_eq!(bus.letters(), "IMI");
        assert!(!bus.memory_fresh);
    }

    #[test]
    fn walkthrough_write_on_e_is_silent() {
        let mut bus = Bus::new(3);
        assert_eq!(bus.apply(0, Read), seen(Some(BusRd), false, false));
        assert_eq!(bus.letters(), "EII");
        assert_eq!(bus.apply(0, Write), seen(None, false, false));
        assert_eq!(bus.letters(), "MII");
        assert!(!bus.memory_fresh);
    }

    #[test]
    fn walkthrough_remote_read_of_m_flushes_and_both_end_in_s() {
        let mut bus = Bus::new(3);
        assert_eq!(bus.apply(0, Write), seen(Some(BusRdX), false, false));
        assert_eq!(bus.letters(), "MII");
        assert!(!bus.memory_fresh);
        assert_eq!(bus.apply(1, Read), seen(Some(BusRd), true, true));
        assert_eq!(bus.letters(), "SSI");
        assert!(bus.memory_fresh);
    }

    #[test]
    fn walkthrough_evicting_m_writes_back() {
        let mut bus = Bus::new(3);
        bus.apply(0, Read);
        assert_eq!(bus.apply(0, Write), seen(None, false, false));
        assert_eq!(bus.letters(), "MII");
        assert!(!bus.memory_fresh);
        assert_eq!(bus.apply(0, Evict), seen(Some(Flush), false, false));
        assert_eq!(bus.letters(), "III");
        assert!(bus.memory_fresh);
        // The next reader gets the written value from memory, alone: E.
        assert_eq!(bus.apply(1, Read), seen(Some(BusRd), false, false));
        assert_eq!(bus.letters(), "IEI");
    }

    /// Every state three caches can reach from all-I, by any sequence of
    /// operations, keeps the invariants and meets only possible pairs
    /// (`apply` asserts both).
    #[test]
    fn every_reachable_state_of_three_caches_keeps_a_single_writer() {
        let mut reached = std::collections::BTreeSet::new();
        let mut todo = vec![Bus::new(3)];
        while let Some(bus) = todo.pop() {
            if !reached.insert(bus.clone()) {
                continue;
            }
            for cache in 0..3 {
                for op in ProcessorOp::ALL {
                    let mut next = bus.clone();
                    next.apply(cache, op);
                    todo.push(next);
                }
            }
        }
        // III; one E or M (3 + 3); S in a non-empty subset of caches (7).
        assert_eq!(reached.len(), 1 + 3 + 3 + 7);
    }

    /// `is_possible` is exactly the set of pairs that a requester and a
    /// snooper in compatible states (I with anything, or S with S) can
    /// meet on the bus.
    #[test]
    fn is_possible_matches_the_compatible_pairs() {
        let compatible = |a: State, b: State| a == I || b == I || (a == S && b == S);
        for bus in BusOp::ALL {
            for snooper in State::ALL {
                let met = State::ALL.iter().any(|&requester| {
                    compatible(requester, snooper)
                        && ProcessorOp::ALL
                            .iter()
                            .any(|&op| on_processor(requester, op).bus == Some(bus))
                });
                assert_eq!(
                    is_possible(snooper, bus),
                    met,
                    "{} seen in {}",
                    bus.name(),
                    snooper.name()
                );
            }
        }
    }
}
