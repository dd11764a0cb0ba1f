//! Human-readable progress and summaries for the command line.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::engine::{Metrics, Snapshot};
use crate::metrics::Counter;

/// Live progress on stderr, one line rewritten in place.
pub struct Progress {
    interval: Option<Duration>,
    last: Instant,
    last_messages: u64,
    printed: bool,
}

impl Progress {
    pub fn new(interval: Option<Duration>) -> Self {
        Progress { interval, last: Instant::now(), last_messages: 0, printed: false }
    }

    /// Prints a progress line if the interval passed. Reads counters only (no
    /// histogram merge), so it costs the workers nothing.
    pub fn tick(&mut self, metrics: &Metrics) {
        let Some(interval) = self.interval else { return };
        let elapsed = self.last.elapsed();
        if elapsed < interval {
            return;
        }
        let counters = metrics.counters();
        let messages = counters.sum(Counter::MessagesIn);
        let rate = (messages - self.last_messages) as f64 / elapsed.as_secs_f64();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{messages:>12} messages  {:>10}/s  out {:>12}  filtered {:>10}  dead-lettered {:>8}   ",
            human(rate),
            counters.sum(Counter::Outputs),
            counters.sum(Counter::Filtered),
            counters.sum(Counter::DeadLettered),
        );
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

/// The end-of-run summary.
pub fn summary(s: &Snapshot, workers: usize) -> String {
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
    ) + &sink_failures(s)
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
