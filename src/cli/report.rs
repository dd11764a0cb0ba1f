//! Human-readable progress and summaries for the command line.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::engine::{Metrics, Snapshot};
use crate::metrics::{Counter, ShardedCounters};
use crate::worker::BatchSizing;

/// Live progress on stderr, one line rewritten in place.
pub struct Progress {
    interval: Option<Duration>,
    last: Instant,
    last_messages: u64,
    printed: bool,
    /// Workers whose current batch size is shown (adaptive batch size only).
    batch_size_workers: Option<usize>,
}

/// When the first progress line is printed (later ones follow the interval).
const FIRST_PROGRESS: Duration = Duration::from_millis(100);

impl Progress {
    pub fn new(interval: Option<Duration>) -> Self {
        Progress {
            interval,
            last: Instant::now(),
            last_messages: 0,
            printed: false,
            batch_size_workers: None,
        }
    }

    /// Also shows the current batch size of the first `workers` workers (for an
    /// adaptive batch size; a fixed one never changes).
    pub fn with_batch_sizes(mut self, workers: usize) -> Self {
        self.batch_size_workers = Some(workers);
        self
    }

    /// Prints a progress line if the interval passed. Reads counters only (no
    /// histogram merge), so it costs the workers nothing.
    pub fn tick(&mut self, metrics: &Metrics) {
        let Some(interval) = self.interval else { return };
        let elapsed = self.last.elapsed();
        // The first line comes after 100 ms, so a short run shows progress too.
        let due = if self.printed { interval } else { interval.min(FIRST_PROGRESS) };
        if elapsed < due {
            return;
        }
        let counters = metrics.counters();
        let messages = counters.sum(Counter::MessagesIn);
        let rate = (messages - self.last_messages) as f64 / elapsed.as_secs_f64();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{messages:>12} messages  {:>10}/s  out {:>12}  filtered {:>10}  dead-lettered {:>8}",
            human(rate),
            counters.sum(Counter::Outputs),
            counters.sum(Counter::Filtered),
            counters.sum(Counter::DeadLettered),
        );
        if let Some(range) =
            self.batch_size_workers.and_then(|workers| batch_size_range(counters, workers))
        {
            let _ = write!(err, "  batch {}", DisplayRange(range));
        }
        let _ = write!(err, "   ");
        let _ = err.flush();
        self.printed = true;
        self.last = Instant::now();
        self.last_messages = messages;
    }

    /// Ends the progress line.
    pub fn finish(&mut self) {
        if self.printed {
            eprintln!();
        }
    }
}

/// Smallest and largest current batch size over the first `workers` shards; `None`
/// when there are none.
fn batch_size_range(counters: &ShardedCounters, workers: usize) -> Option<(u64, u64)> {
    (0..workers.min(counters.shards()))
        .map(|w| counters.shard(w).get_slot(Counter::BatchRecordsCurrent as usize))
        .fold(None, |range, size| match range {
            None => Some((size, size)),
            Some((lo, hi)) => Some((lo.min(size), hi.max(size))),
        })
}

/// "512", or "448..512" when the workers differ.
struct DisplayRange((u64, u64));

impl std::fmt::Display for DisplayRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (lo, hi) = self.0;
        if lo == hi { write!(f, "{lo}") } else { write!(f, "{lo}..{hi}") }
    }
}

/// "1.23M" style.
pub fn human(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.2}G", v / 1e9),
        v if v >= 1e6 => format!("{:.2}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// Nanoseconds as a short duration.
pub fn human_ns(ns: u64) -> String {
    match ns {
        n if n >= 1_000_000_000 => format!("{:.2}s", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}ms", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}us", n as f64 / 1e3),
        n => format!("{n}ns"),
    }
}

/// The end-of-run summary; with an adaptive batch size (`batch_sizing`), each
/// worker's current batch size too.
pub fn summary(s: &Snapshot, workers: usize, batch_sizing: Option<&BatchSizing>) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let messages = s.get(Counter::MessagesIn);
    format!(
        "corestream: done in {:.2}s with {workers} worker(s)\n  \
         messages in {messages} ({}/s, {}B/s)  out {}  filtered {}  dead-lettered {} (source {}, processor {})  replayed {}\n  \
         latency ingest->sink p50 {}  p99 {}  p99.9 {}  max {}",
        secs,
        human(messages as f64 / secs),
        human(s.get(Counter::BytesIn) as f64 / secs),
        s.get(Counter::Outputs),
        s.get(Counter::Filtered),
        s.get(Counter::DeadLettered),
        s.get(Counter::SourceRejected),
        s.get(Counter::ProcessorFailed),
        s.get(Counter::Replayed),
        human_ns(s.latency.p50),
        human_ns(s.latency.p99),
        human_ns(s.latency.p999),
        human_ns(s.latency.max),
    ) + &batch_sizes(s, batch_sizing)
        + &sink_failures(s)
        + &processor_bugs(s)
        + &state_line(s)
        + &intake_line(s)
}

/// Memory-pressure pauses for the summary: empty when intake never paused.
fn intake_line(s: &Snapshot) -> String {
    let pauses = s.get(Counter::IntakePauses);
    if pauses == 0 {
        return String::new();
    }
    format!(
        "\n  intake paused for memory {pauses} time(s), {:.2}s in all (engine.memory_limit)",
        s.get(Counter::IntakePausedMicros) as f64 / 1e6
    )
}

/// Per-worker state for the summary (src/state/): empty when no state step ran.
fn state_line(s: &Snapshot) -> String {
    let (hits, misses) = (s.get(Counter::StateCacheHits), s.get(Counter::StateCacheMisses));
    if hits + misses + s.get(Counter::StateCacheInsertions) == 0 {
        return String::new();
    }
    let ratio = if hits + misses == 0 { 0.0 } else { 100.0 * hits as f64 / (hits + misses) as f64 };
    format!(
        "\n  state cache hits {hits}  misses {misses} ({ratio:.1}% hits)  insertions {}  evictions {}  \
         expirations {}  refused {}  dedup dropped {}",
        s.get(Counter::StateCacheInsertions),
        s.get(Counter::StateCacheEvictions),
        s.get(Counter::StateCacheExpirations),
        s.get(Counter::StateCacheRefused),
        s.get(Counter::FilteredDedup),
    ) + &enrich_line(s)
}

/// The `enrich` steps for the summary: empty when none asked Redis anything. Pool
/// figures are shown for pools still open (a finished engine has closed its own;
/// `/stats` and `/metrics` show them while it runs).
fn enrich_line(s: &Snapshot) -> String {
    let asked = s.get(Counter::EnrichRoundTrips) + s.get(Counter::EnrichErrors);
    if asked == 0 {
        return String::new();
    }
    let pools = crate::state::redis::pools();
    let mut line = format!(
        "\n  enrich: keys fetched {} in {} round trips ({} failed, breaker opened {})  not found {}  dropped {}",
        s.get(Counter::EnrichKeysFetched),
        s.get(Counter::EnrichRoundTrips),
        s.get(Counter::EnrichErrors),
        s.get(Counter::EnrichBreakerOpened),
        s.get(Counter::EnrichNotFound),
        s.get(Counter::FilteredEnrich),
    );
    for p in pools {
        line += &format!(
            "\n  redis {}: connections {} (idle {}, max {})  created {}  failed {}  waits {}  health checks {} ({} failed)",
            p.url,
            p.connections,
            p.idle,
            p.max,
            p.created,
            p.failed,
            p.waits,
            p.health_checks,
            p.health_check_failures
        );
    }
    line
}

/// A processor that broke its contract, for the summary: empty when none did.
fn processor_bugs(s: &Snapshot) -> String {
    match s.get(Counter::ProcessorBugs) {
        0 => String::new(),
        n => format!(
            "\n  processor bugs {n}: outputs or failures naming no input of their batch, or \
             deciding an input twice (see the log; unsettled inputs were dead-lettered)"
        ),
    }
}

/// The adaptive batch size line for the summary: empty when the size is fixed.
fn batch_sizes(s: &Snapshot, batch_sizing: Option<&BatchSizing>) -> String {
    let Some(sizing) = batch_sizing else { return String::new() };
    let sizes: Vec<String> = s
        .batch_records_current()
        .iter()
        .enumerate()
        .map(|(worker, size)| format!("worker {worker} {size}"))
        .collect();
    format!(
        "\n  batch size now (adaptive {}..={} toward {}): {}",
        sizing.records_min,
        sizing.records_max,
        crate::parse::duration::DisplayDuration(sizing.time_target),
        sizes.join("  ")
    )
}

/// Sink failure lines for the summary: empty when the sink never failed.
fn sink_failures(s: &Snapshot) -> String {
    use crate::retry::ErrorCategory;
    use crate::retry::counters::Outcome;
    let mut out = String::new();
    for category in ErrorCategory::ALL {
        let counts = Outcome::ALL.map(|o| s.retry(category, o));
        if counts.iter().any(|&n| n != 0) {
            let parts: Vec<String> =
                Outcome::ALL.iter().zip(counts).map(|(o, n)| format!("{} {n}", o.name())).collect();
            out.push_str(&format!("\n  sink {}: {}", category.name(), parts.join("  ")));
        }
    }
    let (dead, dedup, opened) = (
        s.get(Counter::SinkDeadLettered),
        s.get(Counter::Deduplicated),
        s.get(Counter::BreakerOpened),
    );
    if dead + dedup + opened + s.get(Counter::SinkRetries) != 0 {
        out.push_str(&format!(
            "\n  sink retries {}  dead-lettered {dead}  deduplicated {dedup}  breaker opened {opened}",
            s.get(Counter::SinkRetries)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::counters::{ENGINE_COUNTERS, SHARD_SLOTS};

    fn snapshot(batch_sizes: &[u64]) -> Snapshot {
        let per_worker: Vec<[u64; ENGINE_COUNTERS]> = batch_sizes
            .iter()
            .map(|&size| {
                let mut w = [0; ENGINE_COUNTERS];
                w[Counter::BatchRecordsCurrent as usize] = size;
                w
            })
            .collect();
        let mut totals = [0; SHARD_SLOTS];
        totals[Counter::MessagesIn as usize] = 1000;
        Snapshot {
            elapsed: Duration::from_secs(1),
            totals,
            per_worker,
            latency: Default::default(),
        }
    }

    #[test]
    fn summary_shows_each_workers_batch_size_when_adaptive() {
        let sizing = BatchSizing {
            records_min: 64,
            records_max: 4096,
            time_target: Duration::from_millis(1),
        };
        let text = summary(&snapshot(&[576, 448]), 2, Some(&sizing));
        let line = text.lines().find(|l| l.contains("batch size")).expect(&text);
        assert_eq!(
            line,
            "  batch size now (adaptive 64..=4096 toward 1ms): worker 0 576  worker 1 448"
        );
    }

    #[test]
    fn summary_has_no_batch_size_line_when_fixed() {
        let text = summary(&snapshot(&[512, 512]), 2, None);
        assert!(!text.contains("batch size"), "{text}");
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn live_batch_size_is_the_range_over_the_workers() {
        let counters = ShardedCounters::new(3); // two workers and the source
        let slot = Counter::BatchRecordsCurrent as usize;
        counters.shard(0).set_slot(slot, 512);
        counters.shard(1).set_slot(slot, 512);
        counters.shard(2).set_slot(slot, 9999); // the source's shard is not a worker
        assert_eq!(batch_size_range(&counters, 2), Some((512, 512)));
        assert_eq!(DisplayRange((512, 512)).to_string(), "512");
        counters.shard(1).set_slot(slot, 448);
        assert_eq!(batch_size_range(&counters, 2), Some((448, 512)));
        assert_eq!(DisplayRange((448, 512)).to_string(), "448..512");
        assert_eq!(batch_size_range(&counters, 0), None);
    }
}
