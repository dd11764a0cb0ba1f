//! Metrics: sharded counters, HDR latency histograms, the engine clock, and the
//! counting allocator that proves the zero-allocation claim.

pub mod alloc;
pub mod clock;
pub mod counters;
pub mod latency;

pub use counters::{Counter, CounterShard, LocalCounts, ShardedCounters};
pub use latency::{LatencyRecorder, LatencyShared, LatencySummary};
