//! Retry counters: one counter per (error category, outcome), and a typed event that
//! writes exactly one of them.
//!
//! The layout is fixed at compile time: [`RETRY_COUNTERS`] slots, slot
//! [`retry_counter_index`]`(category, outcome)`. The slots live in the engine's
//! sharded per-worker counters (single writer per shard, read by summing); until that
//! module is wired in, anything implementing [`CounterSink`] receives the writes.

use super::category::ErrorCategory;

/// What happened to a message (or sink write) in the retry path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Outcome {
    /// An attempt failed with this category (each failed attempt counts once).
    Attempt = 0,
    /// A retried message was finally delivered.
    Success = 1,
    /// The policy's budget ran out (the message then goes to the dead-letter sink).
    GaveUp = 2,
    /// The message was written to the dead-letter sink.
    DeadLettered = 3,
}

impl Outcome {
    /// Number of outcomes.
    pub const COUNT: usize = 4;

    /// All outcomes, in counter order.
    pub const ALL: [Outcome; Self::COUNT] =
        [Outcome::Attempt, Outcome::Success, Outcome::GaveUp, Outcome::DeadLettered];

    /// Stable snake_case name for metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Attempt => "attempt",
            Outcome::Success => "success",
            Outcome::GaveUp => "gave_up",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Counter slots used by retry events: one per (category, outcome). 36 × 8 bytes per
/// worker shard.
pub const RETRY_COUNTERS: usize = ErrorCategory::COUNT * Outcome::COUNT;

/// The slot of `(category, outcome)`: category-major, so one category's outcomes are
/// adjacent.
#[inline(always)]
pub const fn retry_counter_index(category: ErrorCategory, outcome: Outcome) -> usize {
    category as usize * Outcome::COUNT + outcome as usize
}

/// The `(category, outcome)` of a slot, for labelling metrics; `None` out of range.
pub const fn retry_counter_labels(index: usize) -> Option<(ErrorCategory, Outcome)> {
    if index >= RETRY_COUNTERS {
        return None;
    }
    Some((ErrorCategory::ALL[index / Outcome::COUNT], Outcome::ALL[index % Outcome::COUNT]))
}

const _: () = assert!(
    retry_counter_index(ErrorCategory::ALL[ErrorCategory::COUNT - 1], Outcome::DeadLettered)
        == RETRY_COUNTERS - 1
);

/// Where counter writes go: the engine's per-worker counter shard. `add` is called by
/// the shard's single writer (the worker thread), so an implementation needs no
/// read-modify-write atomic — a relaxed load and store suffice.
pub trait CounterSink {
    fn add(&self, index: usize, n: u64);
}

/// A retry event: the category of the failure and what happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryEvent {
    pub category: ErrorCategory,
    pub outcome: Outcome,
}

impl RetryEvent {
    pub const fn new(category: ErrorCategory, outcome: Outcome) -> Self {
        RetryEvent { category, outcome }
    }

    /// Counts the event: exactly one counter write, at
    /// [`retry_counter_index`]`(category, outcome)`.
    #[inline]
    pub fn record(&self, counters: &impl CounterSink) {
        counters.add(retry_counter_index(self.category, self.outcome), 1);
    }

    /// Counts `n` occurrences at once (`n` messages dead-lettered together): still
    /// one counter write.
    #[inline]
    pub fn record_n(&self, counters: &impl CounterSink, n: u64) {
        counters.add(retry_counter_index(self.category, self.outcome), n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A single-writer slot array that also counts how many writes it received.
    struct Slots {
        values: [Cell<u64>; RETRY_COUNTERS],
        writes: Cell<u64>,
    }

    impl Slots {
        fn new() -> Self {
            Slots { values: std::array::from_fn(|_| Cell::new(0)), writes: Cell::new(0) }
        }
    }

    impl CounterSink for Slots {
        fn add(&self, index: usize, n: u64) {
            let slot = &self.values[index];
            slot.set(slot.get() + n);
            self.writes.set(self.writes.get() + 1);
        }
    }

    #[test]
    fn every_pair_has_its_own_slot() {
        let mut seen = [false; RETRY_COUNTERS];
        for category in ErrorCategory::ALL {
            for outcome in Outcome::ALL {
                let index = retry_counter_index(category, outcome);
                assert!(!seen[index], "slot {index} used twice");
                seen[index] = true;
                assert_eq!(retry_counter_labels(index), Some((category, outcome)));
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(retry_counter_labels(RETRY_COUNTERS), None);
    }

    #[test]
    fn record_writes_exactly_one_counter() {
        let slots = Slots::new();
        RetryEvent::new(ErrorCategory::Network, Outcome::Attempt).record(&slots);
        RetryEvent::new(ErrorCategory::Network, Outcome::Attempt).record(&slots);
        RetryEvent::new(ErrorCategory::Timeout, Outcome::GaveUp).record(&slots);
        assert_eq!(slots.writes.get(), 3);
        let network_attempts = retry_counter_index(ErrorCategory::Network, Outcome::Attempt);
        let timeout_gave_up = retry_counter_index(ErrorCategory::Timeout, Outcome::GaveUp);
        for (index, slot) in slots.values.iter().enumerate() {
            let expected = match index {
                i if i == network_attempts => 2,
                i if i == timeout_gave_up => 1,
                _ => 0,
            };
            assert_eq!(slot.get(), expected, "slot {index}");
        }
    }
}
