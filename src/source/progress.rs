//! The contiguous settled position of a single-partition source whose messages are
//! spread over several workers (a file read round-robin in runs).
//!
//! Each worker acknowledges its own messages in order (its watermark), but the
//! file's checkpoint must be a position before which *every* line is settled. The
//! source remembers the runs it sent, in file order: `(worker, resume_before, last)`.
//! The checkpoint is the `resume_before` of the oldest run whose worker has not
//! acknowledged its `last` position yet; runs before it are popped. Memory: one
//! entry per run in flight, bounded by [`RUNS_IN_FLIGHT_MAX`].

use std::collections::VecDeque;

use crate::ack::Watermarks;

/// Runs remembered at most (~1.5 MiB). With runs of `batch_records` messages this
/// covers far more than the rings and ticket queues can hold in flight.
pub const RUNS_IN_FLIGHT_MAX: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Run {
    worker: usize,
    /// Position to resume from if this run is the first unsettled one.
    resume_before: u64,
    /// Position of the run's last message.
    last: u64,
}

/// See the module docs.
pub struct Progress {
    runs: VecDeque<Run>,
    /// Position of the last message pushed or skipped (the next run's resume point).
    last_seen: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Progress { runs: VecDeque::with_capacity(RUNS_IN_FLIGHT_MAX), last_seen: 0 }
    }

    /// A message at `position` was written to `worker`'s ring.
    #[inline]
    pub fn pushed(&mut self, worker: usize, position: u64) {
        match self.runs.back_mut() {
            Some(run) if run.worker == worker => run.last = position,
            _ => {
                debug_assert!(!self.is_full(), "check Progress::is_full before pushing");
                self.runs.push_back(Run { worker, resume_before: self.last_seen, last: position });
            }
        }
        self.last_seen = position;
    }

    /// A message at `position` was settled without a worker (dead-lettered at the
    /// source), or reading resumes at `position`.
    #[inline]
    pub fn skipped(&mut self, position: u64) {
        self.last_seen = position;
    }

    /// `(settled, read)`: every message before `settled` is settled; `read` is the
    /// position of the last message seen.
    pub fn settled(&mut self, watermarks: &Watermarks) -> (u64, u64) {
        while let Some(run) = self.runs.front() {
            let acknowledged = watermarks.acknowledged(run.worker as u32);
            if acknowledged.is_some_and(|a| a >= run.last) {
                self.runs.pop_front();
            } else {
                return (run.resume_before, self.last_seen);
            }
        }
        (self.last_seen, self.last_seen)
    }

    /// True when no new run can be remembered: the caller must wait until the
    /// oldest run is acknowledged (see `Ingest::push`). With the default bounds the
    /// rings and ticket queues fill long before this.
    pub fn is_full(&self) -> bool {
        self.runs.len() == RUNS_IN_FLIGHT_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_position_waits_for_the_oldest_unacknowledged_run() {
        let watermarks = Watermarks::new(2);
        let mut progress = Progress::new();
        progress.skipped(100); // resumed at offset 100
        for pos in [110, 120] {
            progress.pushed(0, pos);
        }
        for pos in [130, 140] {
            progress.pushed(1, pos);
        }
        progress.skipped(150); // a rejected line
        progress.pushed(0, 160);
        assert_eq!(progress.settled(&watermarks), (100, 160));
        // Worker 1 acknowledges first: nothing moves (worker 0's run is older).
        watermarks.advance(1, 140);
        assert_eq!(progress.settled(&watermarks), (100, 160));
        // Worker 0 acknowledges its first run: the checkpoint jumps past run 2 too,
        // and past the rejected line, up to worker 0's unacknowledged last run.
        watermarks.advance(0, 120);
        assert_eq!(progress.settled(&watermarks), (150, 160));
        watermarks.advance(0, 160);
        assert_eq!(progress.settled(&watermarks), (160, 160));
    }
}
