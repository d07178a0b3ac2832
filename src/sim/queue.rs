//! The event queue: earliest time first, ties in insertion order.

//!
//! The heap holds only compact keys: a `u128` packing the time, the insertion
//! sequence and the index of the event's slot in a slab. Sifting moves 16
//! bytes, whatever the size of an event; the event itself is written once
//! into its slot and read once when it is popped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Bits of a key that hold the slab slot: up to 16.7 million pending events.
const SLOT_BITS: u32 = 24;
/// Bits of a key that hold the insertion sequence: 2^40 events a run.
const SEQ_BITS: u32 = 64 - SLOT_BITS;

/// A priority queue of events keyed by (time, insertion sequence).
#[derive(Clone)]
pub struct EventQueue<E> {
    /// Min-heap of `time << 64 | seq << SLOT_BITS | slot`.
    heap: BinaryHeap<Reverse<u128>>,
    /// Events by slot; `None` for a free slot.
    slab: Vec<Option<E>>,
    /// Free slots, reused last-freed first.
    free: Vec<u32>,
    next_seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::with_capacity(1024),
            slab: Vec::with_capacity(1024),
            free: Vec::new(),
            next_seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `event` at `at_ns`.
    #[inline]
    pub fn push(&mut self, at_ns: u64, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        assert!(seq < 1 << SEQ_BITS, "more than 2^40 events in one run");
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(event);
                slot
            }
            None => {
                let slot = self.slab.len() as u32;
                assert!(slot < 1 << SLOT_BITS, "more than 2^24 pending events");
                self.slab.push(Some(event));
                slot
            }
        };
        let key = (at_ns as u128) << 64 | (seq << SLOT_BITS | slot as u64) as u128;
        self.heap.push(Reverse(key));
    }

    /// Removes and returns the earliest event.
    #[inline]
    pub fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse(key) = self.heap.pop()?;
        let slot = (key as u64 & ((1 << SLOT_BITS) - 1)) as u32;
        let event = self.slab[slot as usize]
            .take()
            .expect("a queued key names a full slot");
        self.free.push(slot);
        Some(((key >> 64) as u64, event))
    }

    /// When the earliest event is due, without removing it.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(key)| (key >> 64) as u64)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Estimated bytes held: a key per pending event, and the slab's slots
    /// (which never shrink: the most events ever pending at once).
    pub fn retained_bytes(&self) -> u64 {
        let slot = std::mem::size_of::<Option<E>>() as u64;
        self.heap.len() as u64 * 16 + self.slab.len() as u64 * slot + self.free.len() as u64 * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_then_insertion() {
        let mut q = EventQueue::default();
        q.push(5, "c");
        q.push(1, "a");
        q.push(5, "d");
        q.push(1, "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    #[test]
    fn reused_slots_keep_time_and_insertion_order() {
        // Against a reference model: the pending events in a list, the
        // earliest (then first inserted) taken out at each pop. Pushes and
        // pops interleave so that slots are freed and reused while events
        // with equal times are pending.
        let mut q = EventQueue::default();
        let mut model: Vec<(u64, u64)> = Vec::new();
        let mut next = 0u64;
        for round in 0u64..200 {
            for i in 0..4 {
                let at = round / 3 + (i * 7 + round) % 5;
                q.push(at, next);
                model.push((at, next));
                next += 1;
            }
            for _ in 0..3 + round % 2 {
                let (k, _) = model.iter().enumerate().min_by_key(|(_, e)| **e).unwrap();
                let want = model.remove(k);
                assert_eq!(q.pop(), Some(want));
                assert_eq!(q.len(), model.len());
            }
        }
        assert!(q.slab.len() < 120, "slots are reused: {}", q.slab.len());
        model.sort();
        let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, model);
        assert!(q.is_empty());
    }
}
