//! Reads remembered until the next event.
//!
//! Every change a client can see appends an event in its own transaction, and
//! `Store::latest_event` is the newest committed event id, whichever process committed it.
//! So a value read from the store when the newest event was `n` is still what the store holds
//! as long as the newest event is `n`: a status polled between two events is answered from
//! memory instead of the database (on SQLite with no I/O at all, on PostgreSQL with one
//! indexed row instead of a transaction of several queries). (The id is read *before* the
//! store, so a value is never filed under a newer id than the one it was read at.)

use std::{collections::HashMap, sync::Mutex};
use uuid::Uuid;

/// Values keyed by ingestion id, each valid only at the event id it was read at. Bounded by a
/// total weight (what an entry costs to keep, e.g. its IDs); when full, the whole memo is
/// dropped and refills on demand.
pub struct Memo<V> {
    entries: Mutex<Entries<V>>,
    capacity: usize,
}

struct Entries<V> {
    map: HashMap<Uuid, (u64, V)>,
    weight: usize,
}

impl<V: Clone> Memo<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                weight: 0,
            }),
            capacity,
        }
    }

    /// The value remembered for `id` if it was read while the feed stood at `seen`.
    pub fn get(&self, id: &Uuid, seen: u64) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .map
            .get(id)
            .filter(|(at, _)| *at == seen)
            .map(|(_, v)| v.clone())
    }

    /// Remember `value`, read after the feed was seen at `seen`. Entries heavier than a tenth
    /// of the capacity are not kept (they would soon push everything else out).
    pub fn put(&self, id: Uuid, seen: u64, value: V, weight: usize) {
        let weight = weight.max(1);
        if weight > self.capacity / 10 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.weight + weight > self.capacity {
            entries.map.clear();
            entries.weight = 0;
        }
        // A replaced entry's weight stays counted until the next clear: bounded, and simpler
        // than weighing every value twice.
        entries.weight += weight;
        entries.map.insert(id, (seen, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_only_answered_at_the_event_it_was_read_at() {
        let memo = Memo::new(100);
        let id = Uuid::now_v7();
        memo.put(id, 7, "seven", 1);
        assert_eq!(memo.get(&id, 7), Some("seven"));
        assert_eq!(memo.get(&id, 8), None, "a newer event makes it stale");
        assert_eq!(memo.get(&Uuid::now_v7(), 7), None);
    }

    #[test]
    fn a_full_memo_starts_over_and_heavy_values_are_not_kept() {
        let memo = Memo::new(100);
        let first = Uuid::now_v7();
        memo.put(first, 1, 'a', 10);
        let heavy = Uuid::now_v7();
        memo.put(heavy, 1, 'h', 11);
        assert_eq!(memo.get(&heavy, 1), None, "over a tenth of the capacity");
        for _ in 0..10 {
            memo.put(Uuid::now_v7(), 1, 'x', 10);
        }
        assert_eq!(
            memo.get(&first, 1),
            None,
            "the memo was full and started over"
        );
    }
}
