//! Per-worker HDR latency histograms, readable while the engine runs.
//!
//! Each worker records into a histogram only it touches. Every
//! [`LATENCY_PUBLISH_NS`] it folds that histogram into a shared copy with
//! `try_lock`: if a reader holds the lock, the worker simply tries again later, so
//! the hot path never blocks. A reader locks the shared copies one at a time and
//! merges them. Recording never allocates (the histogram's range is fixed at start).

use std::sync::Arc;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::limits::{LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS};

/// How often a worker publishes its local histogram (at most; checked per batch).
pub const LATENCY_PUBLISH_NS: u64 = 100_000_000;

/// A histogram with the engine's fixed range and precision.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("latency histogram bounds are valid constants")
}

/// The shared half of a worker's histogram (read side).
#[derive(Clone)]
pub struct LatencyShared {
    inner: Arc<Mutex<Histogram<u64>>>,
}

impl Default for LatencyShared {
    fn default() -> Self {
        LatencyShared { inner: Arc::new(Mutex::new(new_histogram())) }
    }
}

impl LatencyShared {
    /// Adds this worker's published values into `into` (blocks only this reader).
    pub fn merge_into(&self, into: &mut Histogram<u64>) {
        let shared = self.inner.lock();
        // Same bounds on both sides: `add` cannot fail or resize.
        into.add(&*shared).expect("histograms share bounds");
    }
}

/// The worker's half: records locally, publishes now and then without blocking.
pub struct LatencyRecorder {
    local: Histogram<u64>,
    shared: LatencyShared,
    /// Engine-clock time of the last publish.
    published_ns: u64,
    /// A run of equal values is recorded once with its count.
    run_value: u64,
    run_count: u64,
}

impl LatencyRecorder {
    pub fn new(shared: LatencyShared) -> Self {
        LatencyRecorder {
            local: new_histogram(),
            shared,
            published_ns: 0,
            run_value: 0,
            run_count: 0,
        }
    }

    /// Records one latency. Messages of one source batch share an ingest time, so
    /// equal consecutive values are common and recorded as one run.
    #[inline(always)]
    pub fn record(&mut self, latency_ns: u64) {
        if latency_ns == self.run_value {
            self.run_count += 1;
        } else {
            self.flush_run();
            self.run_value = latency_ns;
            self.run_count = 1;
        }
    }

    #[inline]
    fn flush_run(&mut self) {
        if self.run_count != 0 {
            let value = self.run_value.clamp(1, LATENCY_NS_MAX);
            self.local.saturating_record_n(value, self.run_count);
            self.run_count = 0;
        }
    }

    /// Publishes if the interval has passed and the shared copy is free.
    #[inline]
    pub fn maybe_publish(&mut self, now_ns: u64) {
        if now_ns.wrapping_sub(self.published_ns) >= LATENCY_PUBLISH_NS {
            self.try_publish(now_ns);
        }
    }

    fn try_publish(&mut self, now_ns: u64) {
        self.flush_run();
        if let Some(mut shared) = self.shared.inner.try_lock() {
            shared.add(&self.local).expect("histograms share bounds");
            drop(shared);
            self.local.reset();
            self.published_ns = now_ns;
        }
    }

    /// Publishes everything, waiting for the lock (shutdown).
    pub fn publish_final(&mut self) {
        self.flush_run();
        let mut shared = self.shared.inner.lock();
        shared.add(&self.local).expect("histograms share bounds");
        drop(shared);
        self.local.reset();
    }
}

/// Percentiles of a histogram, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl LatencySummary {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_publishing_keep_every_value() {
        let shared = LatencyShared::default();
        let mut recorder = LatencyRecorder::new(shared.clone());
        for _ in 0..10 {
            recorder.record(1_000);
        }
        recorder.record(5_000_000);
        recorder.record(0); // clamps to 1 ns, still counted
        recorder.maybe_publish(LATENCY_PUBLISH_NS);
        let mut merged = new_histogram();
        shared.merge_into(&mut merged);
        assert_eq!(merged.len(), 12, "publishing flushes the open run too");
        recorder.record(7);
        recorder.publish_final();
        let mut merged = new_histogram();
        shared.merge_into(&mut merged);
        assert_eq!(merged.len(), 13);
        let summary = LatencySummary::of(&merged);
        assert!(summary.p50 >= 990 && summary.p50 <= 1_010, "{summary:?}");
        assert!(summary.max >= 4_950_000, "{summary:?}");
    }

    #[test]
    fn publish_skips_while_a_reader_holds_the_lock() {
        let shared = LatencyShared::default();
        let mut recorder = LatencyRecorder::new(shared.clone());
        recorder.record(10);
        let guard = shared.inner.lock();
        recorder.maybe_publish(LATENCY_PUBLISH_NS * 2);
        drop(guard);
        let mut merged = new_histogram();
        shared.merge_into(&mut merged);
        assert_eq!(merged.len(), 0, "nothing published while locked");
        recorder.maybe_publish(LATENCY_PUBLISH_NS * 3);
        let mut merged = new_histogram();
        shared.merge_into(&mut merged);
        assert_eq!(merged.len(), 1);
    }
}
