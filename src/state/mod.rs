//! Per-worker state: a fixed-capacity cache ([`cache`]), the `dedup` step built on
//! it ([`dedup`]), the `enrich` step ([`enrich`]: Redis lookups through the cache,
//! over a pooled connection, [`redis`]), and the clock they read.
//!
//! Keys route to workers (key hash or Kafka partition), so each worker owns its own
//! shard of state and nothing here is shared or locked. Everything is allocated when
//! the engine starts (the processor of each worker is cloned from the compiled
//! chain, and a clone allocates its own storage); per message, lookups and inserts
//! allocate nothing. Counts are plain fields the worker publishes once per batch
//! into its counter shard ([`StateCounts::publish`]).

pub mod cache;
pub mod dedup;
pub mod enrich;
pub mod redis;

use crate::metrics::Counter;
use crate::metrics::counters::LocalCounts;
use crate::sync::Arc;
use crate::sync::atomic::{AtomicU64, Ordering};

pub use cache::{Cache, CacheCounts, CacheSettings, Eviction, Inserted};
pub use dedup::{Dedup, DedupSettings};

/// Where state reads "now", in milliseconds. Read once per batch (cold relative to
/// the per-message path), never per message.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The engine's monotonic clock ([`crate::metrics::clock::now_ns`]).
    #[default]
    Engine,
    /// A clock tests set by hand (shared by every clone of the chain).
    Manual(ManualClock),
}

impl Clock {
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::Engine => crate::metrics::clock::now_ns() / 1_000_000,
            Clock::Manual(m) => m.now_ms(),
        }
    }
}

/// A hand-driven clock for tests: time moves only when told to.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(now_ms)))
    }
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set_ms(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }
    pub fn advance_ms(&self, ms: u64) {
        self.set_ms(self.now_ms() + ms);
    }
}

/// What a worker's state did since the last publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub cache: CacheCounts,
    /// Inputs a `dedup` step dropped as repeats (also counted as filtered).
    pub dedup_dropped: u64,
    /// What `enrich` steps counted (their caches are in `cache`).
    pub enrich: enrich::EnrichCounts,
}

impl StateCounts {
    /// Adds `other` to these counts.
    #[inline]
    pub fn add(&mut self, other: &StateCounts) {
        let (a, b) = (&mut self.cache, &other.cache);
        a.hits += b.hits;
        a.misses += b.misses;
        a.insertions += b.insertions;
        a.evictions += b.evictions;
        a.expirations += b.expirations;
        a.refused += b.refused;
        self.dedup_dropped += other.dedup_dropped;
        self.enrich.add(&other.enrich);
    }

    /// Moves the counts into the worker's per-batch counts (once per batch).
    #[inline]
    pub fn publish(&mut self, local: &mut LocalCounts) {
        let c = &self.cache;
        local.add(Counter::StateCacheHits, c.hits);
        local.add(Counter::StateCacheMisses, c.misses);
        local.add(Counter::StateCacheInsertions, c.insertions);
        local.add(Counter::StateCacheEvictions, c.evictions);
        local.add(Counter::StateCacheExpirations, c.expirations);
        local.add(Counter::StateCacheRefused, c.refused);
        local.add(Counter::FilteredDedup, self.dedup_dropped);
        let e = &self.enrich;
        local.add(Counter::EnrichKeysFetched, e.keys_fetched);
        local.add(Counter::EnrichRoundTrips, e.round_trips);
        local.add(Counter::EnrichErrors, e.errors);
        local.add(Counter::EnrichNotFound, e.not_found);
        local.add(Counter::FilteredEnrich, e.dropped);
        local.add(Counter::EnrichBreakerOpened, e.breaker_opened);
        *self = StateCounts::default();
    }
}
