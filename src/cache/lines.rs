//! A node's cache lines, with least-recently-used eviction.
//!
//! A MESI cache controller keeps its valid lines here. The set is bounded:
//! it never holds more than `capacity` lines, and inserting a new line into
//! a full set is a bug the caller avoids by first evicting the line
//! `victim_for` names. Only valid lines are kept; a line that becomes
//! `Invalid` leaves the set.
//!
//! Recency is a logical stamp from a counter that only grows, so the order is
//! a function of the operations alone: no clock is read and nothing iterates
//! a hash map. Lines are kept by key, and a second map from stamp to key
//! gives the least recently used line; every operation is O(log n).

use std::collections::BTreeMap;

use super::mesi::State;

/// Key of a cached item (the cache caches u32 key indexes).
pub type Key = u32;

/// One cached line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub state: State,
    pub value: u64,
}

/// A node's cache: at most `capacity` valid lines; least recently used goes first.
#[derive(Clone, Debug)]
pub struct Lines {
    capacity: usize,
    /// Valid lines by key, each with its recency stamp.
    lines: BTreeMap<Key, (Line, u64)>,
    /// Recency stamp -> key, one entry per line; the first is the least
    /// recently used.
    recency: BTreeMap<u64, Key>,
    /// The stamp the next use gets; never reused, not even after `clear`.
    next_stamp: u64,
}

impl Lines {
    /// An empty cache of at most `capacity` lines (at least 1).
    pub fn new(capacity: usize) -> Self {
        assert!(capacity >= 1, "a cache holds at least one line");
        Lines {
            capacity,
            lines: BTreeMap::new(),
            recency: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    /// The most lines the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Valid lines held.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// No line is held.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The line for `key` if valid (state != Invalid), without touching recency.
    pub fn peek(&self, key: Key) -> Option<Line> {
        self.lines.get(&key).map(|&(line, _)| line)
    }

    /// The line for `key` if valid, marking it most recently used.
    pub fn touch(&mut self, key: Key) -> Option<Line> {
        let stamp = self.stamp();
        let (line, old) = self.lines.get_mut(&key)?;
        let old = std::mem::replace(old, stamp);
        let line = *line;
        let removed = self.recency.remove(&old);
        assert_eq!(removed, Some(key));
        self.recency.insert(stamp, key);
        self.check();
        Some(line)
    }

    /// The line that must be evicted before `key` can be inserted (the LRU
    /// line), if the cache is full and `key` is absent. Does not remove it.
    pub fn victim_for(&self, key: Key) -> Option<(Key, Line)> {
        if self.lines.len() < self.capacity || self.lines.contains_key(&key) {
            return None;
        }
        let (_, &victim) = self.recency.first_key_value()?;
        let &(line, _) = &self.lines[&victim];
        Some((victim, line))
    }

    /// Inserts or updates `key` as most recently used. Panics (assert) if
    /// inserting a new key into a full cache: callers evict the victim
    /// first. A line put as `Invalid` is not kept: any line for `key` is
    /// removed instead, and recency is not touched.
    pub fn put(&mut self, key: Key, line: Line) {
        if line.state == State::Invalid {
            self.remove(key);
            return;
        }
        let stamp = self.stamp();
        match self.lines.get_mut(&key) {
            Some(entry) => {
                let (_, old) = std::mem::replace(entry, (line, stamp));
                let removed = self.recency.remove(&old);
                assert_eq!(removed, Some(key));
            }
            None => {
                assert!(
                    self.lines.len() < self.capacity,
                    "cache full ({} lines): evict key {:?} before inserting key {key}",
                    self.capacity,
                    self.recency.first_key_value().map(|(_, &k)| k),
                );
                self.lines.insert(key, (line, stamp));
            }
        }
        self.recency.insert(stamp, key);
        self.check();
    }

    /// Changes the state (and value) of a present line without touching
    /// recency (snoops, invalidations). Setting `Invalid` removes the line.
    /// Returns the old line; does nothing and returns `None` if `key` is
    /// absent.
    pub fn set(&mut self, key: Key, state: State, value: u64) -> Option<Line> {
        if state == State::Invalid {
            return self.remove(key);
        }
        let (line, _) = self.lines.get_mut(&key)?;
        Some(std::mem::replace(line, Line { state, value }))
    }

    /// Removes a line (eviction or invalidation), returning it.
    pub fn remove(&mut self, key: Key) -> Option<Line> {
        let (line, stamp) = self.lines.remove(&key)?;
        let removed = self.recency.remove(&stamp);
        assert_eq!(removed, Some(key));
        self.check();
        Some(line)
    }

    /// Every valid line, in key order (for state dumps and checkers).
    pub fn iter(&self) -> impl Iterator<Item = (Key, Line)> + '_ {
        self.lines.iter().map(|(&key, &(line, _))| (key, line))
    }

    /// Empties the cache (a crash).
    pub fn clear(&mut self) {
        self.lines.clear();
        self.recency.clear();
        self.check();
    }

    /// A fresh recency stamp, later than every earlier one.
    fn stamp(&mut self) -> u64 {
        let stamp = self.next_stamp;
        self.next_stamp = stamp.checked_add(1).expect("recency stamps exhausted");
        stamp
    }

    /// The bound holds and the two maps are the same size (O(1), so every
    /// operation can afford it).
    fn check(&self) {
        assert!(self.lines.len() <= self.capacity);
        assert_eq!(self.lines.len(), self.recency.len());
    }

    /// Every invariant, in O(n): the recency index maps each line's stamp to
    /// its key, stamps are below the next one, and no line is Invalid.
    #[cfg(test)]
    fn check_all(&self) {
        self.check();
        for (&stamp, key) in &self.recency {
            assert!(stamp < self.next_stamp);
            assert_eq!(self.lines[key].1, stamp);
        }
        assert!(
            self.lines
                .values()
                .all(|(line, _)| line.state != State::Invalid)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(state: State, value: u64) -> Line {
        Line { state, value }
    }

    fn e(value: u64) -> Line {
        line(State::Exclusive, value)
    }

    /// Keys from least to most recently used.
    fn lru_order(lines: &Lines) -> Vec<Key> {
        lines.check_all();
        lines.recency.values().copied().collect()
    }

    /// The key `victim_for` names for an absent key in a full cache.
    fn victim(lines: &Lines) -> Option<Key> {
        lines.victim_for(Key::MAX).map(|(key, _)| key)
    }

    #[test]
    fn empty_cache() {
        let lines = Lines::new(3);
        assert_eq!(lines.capacity(), 3);
        assert_eq!(lines.len(), 0);
        assert!(lines.is_empty());
        assert_eq!(lines.peek(1), None);
        assert_eq!(lines.victim_for(1), None);
        assert_eq!(lines.iter().count(), 0);
    }

    #[test]
    #[should_panic(expected = "at least one line")]
    fn zero_capacity_panics() {
        Lines::new(0);
    }

    #[test]
    fn put_order_is_lru_order() {
        let mut lines = Lines::new(3);
        lines.put(5, e(50));
        lines.put(1, e(10));
        lines.put(3, e(30));
        assert_eq!(lru_order(&lines), vec![5, 1, 3]);
        assert_eq!(victim(&lines), Some(5));
        assert_eq!(lines.len(), 3);
        assert!(!lines.is_empty());
    }

    #[test]
    fn touch_refreshes_recency() {
        let mut lines = Lines::new(3);
        lines.put(1, e(10));
        lines.put(2, e(20));
        lines.put(3, e(30));
        assert_eq!(lines.touch(1), Some(e(10)));
        assert_eq!(lru_order(&lines), vec![2, 3, 1]);
        assert_eq!(victim(&lines), Some(2));
        assert_eq!(lines.touch(2), Some(e(20)));
        assert_eq!(victim(&lines), Some(3));
        assert_eq!(lines.touch(9), None);
        assert_eq!(lru_order(&lines), vec![3, 1, 2]);
    }

    #[test]
    fn peek_does_not_refresh_recency() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        lines.put(2, e(20));
        assert_eq!(lines.peek(1), Some(e(10)));
        assert_eq!(lines.peek(3), None);
        assert_eq!(victim(&lines), Some(1));
        assert_eq!(lru_order(&lines), vec![1, 2]);
    }

    #[test]
    fn set_changes_line_without_refreshing_recency() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        lines.put(2, e(20));
        assert_eq!(lines.set(1, State::Shared, 11), Some(e(10)));
        assert_eq!(lines.peek(1), Some(line(State::Shared, 11)));
        assert_eq!(victim(&lines), Some(1));
        assert_eq!(lru_order(&lines), vec![1, 2]);
    }

    #[test]
    fn set_absent_key_does_nothing() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        assert_eq!(lines.set(2, State::Modified, 7), None);
        assert_eq!(lines.set(2, State::Invalid, 7), None);
        assert_eq!(lines.peek(2), None);
        assert_eq!(lines.len(), 1);
    }

    #[test]
    fn put_existing_key_updates_and_refreshes() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        lines.put(2, e(20));
        lines.put(1, line(State::Modified, 12));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines.peek(1), Some(line(State::Modified, 12)));
        assert_eq!(lru_order(&lines), vec![2, 1]);
    }

    #[test]
    fn victim_for_when_not_full() {
        let mut lines = Lines::new(3);
        lines.put(1, e(10));
        lines.put(2, e(20));
        assert_eq!(lines.victim_for(3), None);
        assert_eq!(lines.victim_for(1), None);
    }

    #[test]
    fn victim_for_when_full_names_lru_without_removing_it() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        lines.put(2, line(State::Shared, 20));
        lines.touch(1);
        assert_eq!(lines.victim_for(3), Some((2, line(State::Shared, 20))));
        assert_eq!(lines.victim_for(3), Some((2, line(State::Shared, 20))));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines.peek(2), Some(line(State::Shared, 20)));
    }

    #[test]
    fn victim_for_present_key_is_none_even_when_full() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        lines.put(2, e(20));
        assert_eq!(lines.victim_for(1), None);
        assert_eq!(lines.victim_for(2), None);
        // Updating a present key in a full cache needs no eviction.
        lines.put(1, e(11));
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn evicting_the_victim_makes_room() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        lines.put(2, e(20));
        let (key, old) = lines.victim_for(3).unwrap();
        assert_eq!(lines.remove(key), Some(old));
        lines.put(3, e(30));
        assert_eq!(lru_order(&lines), vec![2, 3]);
    }

    #[test]
    #[should_panic(expected = "cache full")]
    fn put_new_key_into_full_cache_panics() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        lines.put(2, e(20));
        lines.put(3, e(30));
    }

    #[test]
    fn set_invalid_removes_line() {
        let mut lines = Lines::new(2);
        lines.put(1, line(State::Modified, 10));
        lines.put(2, e(20));
        assert_eq!(
            lines.set(1, State::Invalid, 0),
            Some(line(State::Modified, 10))
        );
        assert_eq!(lines.peek(1), None);
        assert_eq!(lines.touch(1), None);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines.victim_for(3), None);
        assert_eq!(lines.iter().collect::<Vec<_>>(), vec![(2, e(20))]);
    }

    #[test]
    fn put_invalid_removes_line() {
        let mut lines = Lines::new(1);
        lines.put(1, e(10));
        lines.put(1, line(State::Invalid, 11));
        assert!(lines.is_empty());
        // An Invalid line is never inserted, so a full cache does not panic.
        lines.put(2, e(20));
        lines.put(3, line(State::Invalid, 30));
        assert_eq!(lines.iter().collect::<Vec<_>>(), vec![(2, e(20))]);
    }

    #[test]
    fn remove_returns_line() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        assert_eq!(lines.remove(1), Some(e(10)));
        assert_eq!(lines.remove(1), None);
        assert!(lines.is_empty());
    }

    #[test]
    fn iter_is_in_key_order() {
        let mut lines = Lines::new(4);
        lines.put(30, e(3));
        lines.put(10, line(State::Shared, 1));
        lines.put(40, line(State::Modified, 4));
        lines.put(20, e(2));
        lines.touch(10);
        let all: Vec<_> = lines.iter().collect();
        assert_eq!(
            all,
            vec![
                (10, line(State::Shared, 1)),
                (20, e(2)),
                (30, e(3)),
                (40, line(State::Modified, 4)),
            ]
        );
    }

    #[test]
    fn clear_empties_cache() {
        let mut lines = Lines::new(2);
        lines.put(1, e(10));
        lines.put(2, e(20));
        lines.clear();
        assert!(lines.is_empty());
        assert_eq!(lines.peek(1), None);
        assert_eq!(lines.victim_for(3), None);
        assert_eq!(lines.iter().count(), 0);
        lines.put(3, e(30));
        lines.put(1, e(11));
        assert_eq!(lru_order(&lines), vec![3, 1]);
        assert_eq!(lines.capacity(), 2);
    }

    /// xorshift64: a fixed-seed generator for the model test.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The reference: a Vec of lines, least recently used first.
    struct Model {
        capacity: usize,
        lines: Vec<(Key, Line)>,
    }

    impl Model {
        fn position(&self, key: Key) -> Option<usize> {
            self.lines.iter().position(|&(k, _)| k == key)
        }

        fn peek(&self, key: Key) -> Option<Line> {
            self.position(key).map(|i| self.lines[i].1)
        }

        fn touch(&mut self, key: Key) -> Option<Line> {
            let i = self.position(key)?;
            let entry = self.lines.remove(i);
            self.lines.push(entry);
            Some(entry.1)
        }

        fn victim_for(&self, key: Key) -> Option<(Key, Line)> {
            if self.lines.len() < self.capacity || self.position(key).is_some() {
                return None;
            }
            self.lines.first().copied()
        }

        fn put(&mut self, key: Key, line: Line) {
            if line.state == State::Invalid {
                self.remove(key);
                return;
            }
            if let Some(i) = self.position(key) {
                self.lines.remove(i);
            }
            assert!(self.lines.len() < self.capacity);
            self.lines.push((key, line));
        }

        fn set(&mut self, key: Key, state: State, value: u64) -> Option<Line> {
            let i = self.position(key)?;
            let old = self.lines[i].1;
            if state == State::Invalid {
                self.lines.remove(i);
            } else {
                self.lines[i].1 = Line { state, value };
            }
            Some(old)
        }

        fn remove(&mut self, key: Key) -> Option<Line> {
            let i = self.position(key)?;
            Some(self.lines.remove(i).1)
        }

        fn iter(&self) -> Vec<(Key, Line)> {
            let mut all = self.lines.clone();
            all.sort_by_key(|&(key, _)| key);
            all
        }
    }

    fn random_state(rng: &mut XorShift) -> State {
        match rng.below(4) {
            0 => State::Modified,
            1 => State::Exclusive,
            2 => State::Shared,
            _ => State::Invalid,
        }
    }

    #[test]
    fn matches_vec_model_on_random_operations() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for capacity in [1, 2, 3, 5, 8] {
            let mut lines = Lines::new(capacity);
            let mut model = Model {
                capacity,
                lines: Vec::new(),
            };
            // A key space a little larger than the cache, so it fills and evicts.
            let keys = capacity as u64 * 2 + 1;
            for step in 0..10_000 {
                let key = rng.below(keys) as Key;
                match rng.below(100) {
                    0..15 => assert_eq!(lines.peek(key), model.peek(key), "step {step}"),
                    15..35 => assert_eq!(lines.touch(key), model.touch(key), "step {step}"),
                    35..45 => {
                        assert_eq!(lines.victim_for(key), model.victim_for(key), "step {step}")
                    }
                    45..75 => {
                        // A controller's fill: evict the victim, then insert.
                        let victim = lines.victim_for(key);
                        assert_eq!(victim, model.victim_for(key), "step {step}");
                        if let Some((victim, _)) = victim {
                            assert_eq!(lines.remove(victim), model.remove(victim));
                        }
                        let line = Line {
                            state: random_state(&mut rng),
                            value: rng.next(),
                        };
                        lines.put(key, line);
                        model.put(key, line);
                    }
                    75..88 => {
                        let state = random_state(&mut rng);
                        let value = rng.next();
                        assert_eq!(
                            lines.set(key, state, value),
                            model.set(key, state, value),
                            "step {step}"
                        );
                    }
                    88..99 => assert_eq!(lines.remove(key), model.remove(key), "step {step}"),
                    _ => {
                        lines.clear();
                        model.lines.clear();
                    }
                }
                assert_eq!(lines.len(), model.lines.len(), "step {step}");
                assert_eq!(lines.is_empty(), model.lines.is_empty());
                assert_eq!(
                    lines.iter().collect::<Vec<_>>(),
                    model.iter(),
                    "step {step}"
                );
                assert_eq!(
                    lru_order(&lines),
                    model.lines.iter().map(|&(key, _)| key).collect::<Vec<_>>(),
                    "step {step}"
                );
            }
        }
    }
}
