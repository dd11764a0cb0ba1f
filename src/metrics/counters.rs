//! Sharded counters: one cache-padded shard per writing thread, read by summing.
//!
//! Each shard has exactly one writer (a worker, or the source thread), so an
//! increment is a relaxed load and a relaxed store, no read-modify-write and no
//! contended cache line. Workers go further and keep plain local counts during a
//! batch, publishing them once per batch (tokio's worker metrics do the same).
//! Readers sum the shards at any time without stopping the writers; a sum is a
//! consistent lower bound (each slot only grows).

use crossbeam::utils::CachePadded;

use crate::retry::ErrorCategory;
use crate::sync::atomic::{AtomicU64, Ordering};

/// What the engine counts. The discriminant is the slot index in a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Messages the source put into a ring.
    Ingested = 0,
    /// Payload bytes the source put into a ring.
    IngestedBytes,
    /// Input records the source could not put into a ring (too large, ...); each
    /// is dead-lettered (or counted here only when no dead-letter sink exists).
    SourceRejected,
    /// Inputs taken in: messages a worker took from its ring, plus inputs the
    /// source refused (`SourceRejected`, on the source's shard). Every input is
    /// counted here once.
    MessagesIn,
    /// Payload bytes a worker took from its ring.
    BytesIn,
    /// Inputs the processor emitted nothing for and did not fail (filtered out).
    Filtered,
    /// Inputs the processor failed (malformed, missing field, ...).
    ProcessorFailed,
    /// Outputs handed to the sink.
    Outputs,
    /// Output payload bytes handed to the sink.
    OutputBytes,
    /// Messages written to the dead-letter sink (from any stage).
    DeadLettered,
    /// Batches processed.
    Batches,
    /// Batches acknowledged by the sink (their positions are checkpointable).
    BatchesAcked,
    /// Sink writes that failed and were retried.
    SinkRetries,
    /// Times a worker found its ticket queue full and waited for acknowledgements.
    AckWaits,
    /// Messages read again after a restart from a checkpoint (possible duplicates:
    /// they may have reached the sink before the crash).
    Replayed,
    /// Outputs the sink stage dead-lettered after its retry policy gave up, or at
    /// once for a category whose action is `dead_letter` (also in `DeadLettered`;
    /// per category in the retry outcome slots).
    SinkDeadLettered,
    /// Outputs a sink dropped because a later output with the same key arrived in
    /// the same flush window (`dedup = true`); acknowledged like delivered ones.
    Deduplicated,
    /// Times a sink's circuit breaker opened.
    BreakerOpened,
    /// Gauge, not a sum: 1 while the worker's sink breaker is open or half-open
    /// (summed: the workers whose breaker is not closed). Makes `/ready` 503.
    BreakerOpen,
    /// A processor broke its contract (an output or failure naming no input of
    /// its batch, a failure for an input it emitted); see `worker::Core`.
    ProcessorBugs,
    /// Gauge, not a sum: the worker's current records per batch (adaptive batch
    /// size, or the fixed `batch_records`). Read it per worker.
    BatchRecordsCurrent,

    // ---- per-worker state (src/state/): caches and the `dedup` step ----
    /// State cache lookups that found a live entry (dedup: a repeat).
    StateCacheHits,
    /// State cache lookups that found nothing or an expired entry.
    StateCacheMisses,
    /// Entries stored in a state cache (new or replaced).
    StateCacheInsertions,
    /// Live entries a full state cache removed to make room (dedup: a key forgotten
    /// before its window ended, so its next repeat passes).
    StateCacheEvictions,
    /// Entries removed because their TTL had passed.
    StateCacheExpirations,
    /// Inserts refused: key + value longer than the cache's `entry_bytes`.
    StateCacheRefused,
    /// Inputs a `dedup` step dropped as repeats (also in `Filtered`).
    FilteredDedup,

    // ---- the `enrich` step (src/state/enrich.rs) ----
    /// Distinct keys an `enrich` step asked Redis for (its cache misses per batch).
    EnrichKeysFetched,
    /// Round trips to Redis (one per batch with misses, plus retries).
    EnrichRoundTrips,
    /// Round trips that failed (each one retried or given up).
    EnrichErrors,
    /// Inputs whose key Redis does not have (before the miss policy).
    EnrichNotFound,
    /// Inputs an `enrich` step dropped by `on_miss = "drop"` (also in `Filtered`).
    FilteredEnrich,
    /// Times an `enrich` step's circuit breaker opened.
    EnrichBreakerOpened,

    // ---- intake (src/source/, the source thread's shard) ----
    /// Times the source found a worker's ring full and waited for room.
    SourceRingFullWaits,
    /// Times intake paused because resident memory reached `memory_limit`.
    IntakePauses,
    /// Microseconds intake spent paused for memory (ended pauses; the current one
    /// is added when it ends).
    IntakePausedMicros,
    /// Gauge, not a sum: 1 while intake is paused for memory.
    IntakePaused,

    // ---- waits (src/wait/): steps a worker took on its empty ring ----
    /// Spin steps of the wait table (a few ns to a few µs each).
    WaitSpins,
    /// Yield steps (`sched_yield`).
    WaitYields,
    /// Park steps (slept until woken or a timeout).
    WaitParks,
}

/// Number of engine counters.
pub const ENGINE_COUNTERS: usize = Counter::WaitParks as usize + 1;

/// Names of the engine counters, in slot order (metrics and JSON keys).
pub const COUNTER_NAMES: [&str; ENGINE_COUNTERS] = [
    "ingested",
    "ingested_bytes",
    "source_rejected",
    "messages_in",
    "bytes_in",
    "filtered",
    "processor_failed",
    "outputs",
    "output_bytes",
    "dead_lettered",
    "batches",
    "batches_acked",
    "sink_retries",
    "ack_waits",
    "replayed",
    "sink_dead_lettered",
    "deduplicated",
    "breaker_opened",
    "breaker_open",
    "processor_bugs",
    "batch_records_current",
    // per-worker state
    "state_cache_hits",
    "state_cache_misses",
    "state_cache_insertions",
    "state_cache_evictions",
    "state_cache_expirations",
    "state_cache_refused",
    "filtered_dedup",
    "enrich_keys_fetched",
    "enrich_round_trips",
    "enrich_errors",
    "enrich_not_found",
    "filtered_enrich",
    "enrich_breaker_opened",
    // intake
    "source_ring_full_waits",
    "intake_pauses",
    "intake_paused_micros",
    "intake_paused",
    // waits
    "wait_spins",
    "wait_yields",
    "wait_parks",
];

/// Failure outcomes counted per error category (retry and dead-letter accounting).
pub const OUTCOMES_PER_CATEGORY: usize = 4;

/// First slot of the per-category block: `CATEGORY_BASE + category * 4 + outcome`.
pub const CATEGORY_BASE: usize = ENGINE_COUNTERS;

/// Slots per shard: engine counters, then per-category outcome counters.
pub const SHARD_SLOTS: usize = CATEGORY_BASE + ErrorCategory::COUNT * OUTCOMES_PER_CATEGORY;

const _: () = assert!(COUNTER_NAMES.len() == ENGINE_COUNTERS);
// The retry module's (category, outcome) layout is exactly this block.
const _: () = assert!(crate::retry::counters::RETRY_COUNTERS == SHARD_SLOTS - CATEGORY_BASE);
const _: () = assert!(crate::retry::counters::Outcome::COUNT == OUTCOMES_PER_CATEGORY);
// A shard is a few cache lines; keep it small so summing all shards stays cheap.
const _: () = assert!(SHARD_SLOTS * 8 <= 1024);

/// One writer's counters.
pub struct CounterShard {
    slots: [AtomicU64; SHARD_SLOTS],
}

impl Default for CounterShard {
    fn default() -> Self {
        CounterShard { slots: std::array::from_fn(|_| AtomicU64::new(0)) }
    }
}

impl CounterShard {
    /// Adds `n` to `slot`. Only the shard's single writer may call this.
    #[inline(always)]
    pub fn add_slot(&self, slot: usize, n: u64) {
        let cell = &self.slots[slot];
        // Single writer: load + store is enough and avoids a locked RMW.
        cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds `n` to an engine counter.
    #[inline(always)]
    pub fn add(&self, counter: Counter, n: u64) {
        self.add_slot(counter as usize, n);
    }

    /// Sets a gauge slot (such as [`Counter::BatchRecordsCurrent`]). Only the
    /// shard's single writer may call this.
    #[inline(always)]
    pub fn set_slot(&self, slot: usize, value: u64) {
        self.slots[slot].store(value, Ordering::Relaxed);
    }

    /// Reads one slot.
    #[inline]
    pub fn get_slot(&self, slot: usize) -> u64 {
        self.slots[slot].load(Ordering::Relaxed)
    }
}

/// All shards of an engine: `workers` worker shards plus one for the source thread.
pub struct ShardedCounters {
    shards: Box<[CachePadded<CounterShard>]>,
}

impl ShardedCounters {
    /// `shards` writers, each owning one shard.
    pub fn new(shards: usize) -> Self {
        ShardedCounters {
            shards: (0..shards).map(|_| CachePadded::new(CounterShard::default())).collect(),
        }
    }

    /// The shard of writer `index`.
    #[inline]
    pub fn shard(&self, index: usize) -> &CounterShard {
        &self.shards[index]
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Sum of `slot` over all shards.
    pub fn sum_slot(&self, slot: usize) -> u64 {
        self.shards.iter().map(|s| s.get_slot(slot)).fold(0u64, u64::wrapping_add)
    }

    /// Sum of an engine counter over all shards.
    pub fn sum(&self, counter: Counter) -> u64 {
        self.sum_slot(counter as usize)
    }

    /// Sums every slot into `out` without allocating.
    pub fn sum_all(&self, out: &mut [u64; SHARD_SLOTS]) {
        out.fill(0);
        for shard in self.shards.iter() {
            for (slot, total) in out.iter_mut().enumerate() {
                *total = total.wrapping_add(shard.get_slot(slot));
            }
        }
    }
}

/// Retry events land in the per-category block of the worker's own shard: one
/// single-writer counter write per event (see [`crate::retry::counters`]).
impl crate::retry::counters::CounterSink for CounterShard {
    #[inline(always)]
    fn add(&self, index: usize, n: u64) {
        debug_assert!(index < crate::retry::counters::RETRY_COUNTERS);
        self.add_slot(CATEGORY_BASE + index, n);
    }
}

/// Plain per-batch counts a worker accumulates and publishes once per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalCounts {
    pub slots: [u64; ENGINE_COUNTERS],
}

impl Default for LocalCounts {
    fn default() -> Self {
        LocalCounts { slots: [0; ENGINE_COUNTERS] }
    }
}

impl LocalCounts {
    #[inline(always)]
    pub fn add(&mut self, counter: Counter, n: u64) {
        self.slots[counter as usize] += n;
    }

    /// Adds the non-zero counts to `shard` and clears them.
    #[inline]
    pub fn publish(&mut self, shard: &CounterShard) {
        for (slot, count) in self.slots.iter_mut().enumerate() {
            if *count != 0 {
                shard.add_slot(slot, *count);
                *count = 0;
            }
        }
    }
}

#[cfg(all(test, not(corestream_loom)))]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_and_local_counts_publish_once() {
        let counters = ShardedCounters::new(3);
        counters.shard(0).add(Counter::MessagesIn, 5);
        counters.shard(2).add(Counter::MessagesIn, 7);
        counters.shard(1).add_slot(CATEGORY_BASE + 3, 2);
        assert_eq!(counters.sum(Counter::MessagesIn), 12);
        assert_eq!(counters.sum_slot(CATEGORY_BASE + 3), 2);
        let mut local = LocalCounts::default();
        local.add(Counter::Filtered, 4);
        local.add(Counter::Filtered, 1);
        local.publish(counters.shard(1));
        assert_eq!(local, LocalCounts::default());
        assert_eq!(counters.sum(Counter::Filtered), 5);
        let mut all = [0u64; SHARD_SLOTS];
        counters.sum_all(&mut all);
        assert_eq!(all[Counter::MessagesIn as usize], 12);
        assert_eq!(all[Counter::Filtered as usize], 5);
    }

    #[test]
    fn counter_names_line_up_with_slots() {
        assert_eq!(COUNTER_NAMES[Counter::Ingested as usize], "ingested");
        assert_eq!(COUNTER_NAMES[Counter::AckWaits as usize], "ack_waits");
        assert_eq!(COUNTER_NAMES[Counter::DeadLettered as usize], "dead_lettered");
        assert_eq!(COUNTER_NAMES[Counter::BatchRecordsCurrent as usize], "batch_records_current");
    }

    #[test]
    fn retry_events_land_in_the_category_block() {
        use crate::retry::counters::{Outcome, RetryEvent, retry_counter_index};
        let shard = CounterShard::default();
        RetryEvent::new(ErrorCategory::Timeout, Outcome::GaveUp).record(&shard);
        let slot = CATEGORY_BASE + retry_counter_index(ErrorCategory::Timeout, Outcome::GaveUp);
        assert_eq!(shard.get_slot(slot), 1);
        let total: u64 = (0..SHARD_SLOTS).map(|s| shard.get_slot(s)).sum();
        assert_eq!(total, 1, "exactly one slot written");
        shard.set_slot(Counter::BatchRecordsCurrent as usize, 64);
        shard.set_slot(Counter::BatchRecordsCurrent as usize, 48);
        assert_eq!(shard.get_slot(Counter::BatchRecordsCurrent as usize), 48, "a gauge is set");
    }
}
