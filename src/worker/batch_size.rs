//! Adaptive batch size: records per `read_batch`, steered toward a batch time.
//!
//! From the background CDC document: grow the batch while processing is fast,
//! shrink it when slow, within a minimum and a maximum, aiming at a target batch
//! time. Per batch the worker reports how many records it took and how long the
//! batch took (decode, process, sink); the sizer then
//!
//! - shrinks by 1/8 when the batch took longer than the target (a slow sink, a
//!   retrying sink, an expensive processor: smaller batches keep latency bounded);
//! - grows by 1/8 when it took less than half the target *and* was full (a batch
//!   cut short by an empty ring says nothing about a larger one);
//! - holds in between (the dead band keeps it from oscillating).
//!
//! Steps of 1/8 (at least one record) are the document's ×0.9 / ×1.1 in integer
//! arithmetic. One call per batch, a few instructions, no allocation. The current
//! size is published in the worker's counter shard (`Counter::BatchRecordsCurrent`,
//! a gauge) whenever it changes.

use std::time::Duration;

use crate::limits::BATCH_RECORDS_MAX;

/// Longest batch time target accepted: a batch holds its ring space and its
/// acknowledgement for that long, so more than a second only adds latency.
pub const BATCH_TIME_TARGET_MAX: Duration = Duration::from_secs(1);

/// Adaptive batch settings (`[engine] batch_records_min`, `batch_records_max`,
/// `batch_time_target`); the start size is the engine's `batch_records`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSizing {
    /// Smallest batch, `>= 1`.
    pub records_min: usize,
    /// Largest batch, `<= BATCH_RECORDS_MAX`.
    pub records_max: usize,
    /// Batch time to steer toward, in `(0, BATCH_TIME_TARGET_MAX]`.
    pub time_target: Duration,
}

impl BatchSizing {
    /// Checks the bounds and that `start` (the engine's `batch_records`) lies within
    /// them; the error is `(setting, message)`.
    pub fn validate(&self, start: usize) -> Result<(), (&'static str, String)> {
        use crate::parse::duration::DisplayDuration as D;
        if self.records_min == 0 || self.records_min > self.records_max {
            return Err((
                "batch_records_min",
                format!(
                    "{} must be at least 1 and at most batch_records_max ({})",
                    self.records_min, self.records_max
                ),
            ));
        }
        if self.records_max > BATCH_RECORDS_MAX {
            return Err((
                "batch_records_max",
                format!("{} is above the limit of {BATCH_RECORDS_MAX}", self.records_max),
            ));
        }
        if !(self.records_min..=self.records_max).contains(&start) {
            return Err((
                "batch_records",
                format!(
                    "the starting size {start} is outside batch_records_min..=batch_records_max \
                     ({}..={})",
                    self.records_min, self.records_max
                ),
            ));
        }
        if self.time_target.is_zero() || self.time_target > BATCH_TIME_TARGET_MAX {
            return Err((
                "batch_time_target",
                format!("must be more than 0s and at most {}", D(BATCH_TIME_TARGET_MAX)),
            ));
        }
        Ok(())
    }
}

/// One worker's batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSizer {
    /// Records per batch now, in `min..=max`.
    current: usize,
    min: usize,
    max: usize,
    /// 0 when fixed.
    target_ns: u64,
}

impl BatchSizer {
    /// Always `records`.
    pub fn fixed(records: usize) -> Self {
        BatchSizer { current: records, min: records, max: records, target_ns: 0 }
    }

    /// Starts at `start` and adapts within `sizing` (validated by the caller).
    pub fn adaptive(start: usize, sizing: BatchSizing) -> Self {
        debug_assert!(sizing.validate(start).is_ok());
        let target_ns = u64::try_from(sizing.time_target.as_nanos()).unwrap_or(u64::MAX).max(1);
        BatchSizer {
            current: start.clamp(sizing.records_min, sizing.records_max),
            min: sizing.records_min,
            max: sizing.records_max,
            target_ns,
        }
    }

    /// Records to take in the next batch.
    #[inline(always)]
    pub fn records(&self) -> usize {
        self.current
    }

    /// Whether [`BatchSizer::observe`] does anything (the worker skips the two clock
    /// reads per batch otherwise).
    #[inline(always)]
    pub fn is_adaptive(&self) -> bool {
        self.target_ns != 0
    }

    /// After a batch of `records` that took `elapsed_ns`: adjusts the size. Returns
    /// true when it changed.
    #[inline]
    pub fn observe(&mut self, records: usize, elapsed_ns: u64) -> bool {
        let before = self.current;
        let step = (self.current / 8).max(1);
        if elapsed_ns > self.target_ns {
            self.current = self.current.saturating_sub(step).max(self.min);
        } else if elapsed_ns < self.target_ns / 2 && records >= self.current {
            self.current = (self.current + step).min(self.max);
        }
        debug_assert!((self.min..=self.max).contains(&self.current));
        self.current != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing(min: usize, max: usize, target_us: u64) -> BatchSizing {
        BatchSizing {
            records_min: min,
            records_max: max,
            time_target: Duration::from_micros(target_us),
        }
    }

    #[test]
    fn grows_when_fast_and_full_up_to_the_max() {
        let mut s = BatchSizer::adaptive(64, sizing(16, 100, 1000));
        assert!(s.observe(64, 100_000));
        assert_eq!(s.records(), 72);
        for _ in 0..20 {
            let full = s.records();
            s.observe(full, 100_000);
        }
        assert_eq!(s.records(), 100, "capped at the max");
        assert!(!s.observe(100, 100_000));
    }

    #[test]
    fn a_batch_cut_short_does_not_grow_it() {
        let mut s = BatchSizer::adaptive(64, sizing(16, 100, 1000));
        assert!(!s.observe(10, 1_000));
        assert_eq!(s.records(), 64);
    }

    #[test]
    fn shrinks_when_slow_down_to_the_min_and_holds_in_the_band() {
        let mut s = BatchSizer::adaptive(64, sizing(16, 100, 1000));
        assert!(s.observe(64, 2_000_000));
        assert_eq!(s.records(), 56);
        for _ in 0..40 {
            s.observe(s.records(), 2_000_000);
        }
        assert_eq!(s.records(), 16, "floored at the min");
        // Between half the target and the target: hold.
        assert!(!s.observe(16, 700_000));
        assert_eq!(s.records(), 16);
        // Steps are at least one record.
        let mut tiny = BatchSizer::adaptive(2, sizing(1, 4, 1000));
        assert!(tiny.observe(2, 10));
        assert_eq!(tiny.records(), 3);
    }

    #[test]
    fn fixed_never_changes() {
        let mut s = BatchSizer::fixed(512);
        assert!(!s.is_adaptive());
        assert!(!s.observe(512, 0));
        assert!(!s.observe(512, u64::MAX));
        assert_eq!(s.records(), 512);
    }

    #[test]
    fn validation_names_the_setting() {
        assert_eq!(sizing(0, 10, 1000).validate(5).unwrap_err().0, "batch_records_min");
        assert_eq!(sizing(20, 10, 1000).validate(15).unwrap_err().0, "batch_records_min");
        assert_eq!(
            sizing(1, BATCH_RECORDS_MAX + 1, 1000).validate(5).unwrap_err().0,
            "batch_records_max"
        );
        assert_eq!(sizing(8, 10, 1000).validate(5).unwrap_err().0, "batch_records");
        assert_eq!(sizing(1, 10, 0).validate(5).unwrap_err().0, "batch_time_target");
        assert!(sizing(1, 10, 1000).validate(5).is_ok());
    }
}
