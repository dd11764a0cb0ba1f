//! `/metrics`: the Prometheus text exposition format (version 0.0.4), written by
//! hand (see the module doc of [`super`] for why not `prometheus-client`).
//!
//! Families (every counter ends in `_total`, units last):
//! - totals over the whole engine, no labels: [`TOTALS`] (`corestream_messages_in_total`,
//!   `corestream_output_bytes_total`, ...). Once drained, messages in equals
//!   messages out plus filtered plus dead-lettered, exactly, for a processor that
//!   emits at most one output per input.
//! - the same per worker, label `worker="0"...`: [`PER_WORKER`]
//!   (`corestream_worker_messages_in_total`, ...). Inputs refused at the source are
//!   counted on the source thread, so they are in the totals only.
//! - `corestream_sink_failures_total{category, outcome}`: sink failures by error
//!   category and what became of them (attempt, success, gave_up, dead_lettered).
//! - gauges: `corestream_worker_batch_records{worker}` (current batch size),
//!   `corestream_worker_ring_used_bytes{worker}`, `corestream_ring_capacity_bytes`,
//!   `corestream_queued_messages` (in the rings), `corestream_workers`, `corestream_workers_running`, `corestream_ready`,
//!   `corestream_uptime_seconds`, `process_resident_memory_bytes`,
//!   `process_virtual_memory_bytes`.
//! - `corestream_latency_seconds`: a histogram of ingest → sink acceptance, buckets
//!   [`LATENCY_BUCKETS_NS`] (1 µs to 10 s), built at scrape time from the merged HDR
//!   histograms. A value counts in a bucket when the whole HDR bucket it was recorded
//!   in lies at or below the bound (2 significant digits: within 1 %); `_sum` uses
//!   each HDR bucket's median.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::engine::{Metrics, Phase};
use crate::metrics::Counter;
use crate::metrics::counters::{CATEGORY_BASE, SHARD_SLOTS};
use crate::retry::counters::{RETRY_COUNTERS, retry_counter_labels};
use crate::source::pressure::MemoryMarks;
use crate::state::redis::PoolSnapshot;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Engine-wide counters: (counter, family name, help).
pub const TOTALS: [(Counter, &str, &str); 20] = [
    (
        Counter::Ingested,
        "corestream_messages_ingested_total",
        "Messages the source put into a ring.",
    ),
    (
        Counter::MessagesIn,
        "corestream_messages_in_total",
        "Inputs taken in: messages workers took from their rings plus inputs refused at the source.",
    ),
    (Counter::Outputs, "corestream_messages_out_total", "Outputs handed to the sink."),
    (
        Counter::Filtered,
        "corestream_messages_filtered_total",
        "Inputs the processor deliberately emitted nothing for.",
    ),
    (
        Counter::DeadLettered,
        "corestream_messages_dead_lettered_total",
        "Messages written to the dead-letter sink, from any stage.",
    ),
    (
        Counter::SourceRejected,
        "corestream_messages_source_rejected_total",
        "Input records the source could not put into a ring (too large); dead-lettered.",
    ),
    (
        Counter::ProcessorFailed,
        "corestream_messages_processor_failed_total",
        "Inputs the processor failed (malformed, missing field); dead-lettered.",
    ),
    (
        Counter::SinkDeadLettered,
        "corestream_messages_sink_dead_lettered_total",
        "Outputs the sink stage dead-lettered after its retry policy gave up.",
    ),
    (
        Counter::Deduplicated,
        "corestream_messages_deduplicated_total",
        "Outputs a sink dropped for a later output with the same key in one flush.",
    ),
    (
        Counter::Replayed,
        "corestream_messages_replayed_total",
        "Messages read again after a restart from a checkpoint (possible duplicates).",
    ),
    (
        Counter::IngestedBytes,
        "corestream_ingested_bytes_total",
        "Payload bytes the source put into a ring.",
    ),
    (
        Counter::BytesIn,
        "corestream_input_bytes_total",
        "Payload bytes workers took from their rings.",
    ),
    (
        Counter::OutputBytes,
        "corestream_output_bytes_total",
        "Output payload bytes handed to the sink.",
    ),
    (Counter::Batches, "corestream_batches_total", "Batches processed."),
    (
        Counter::BatchesAcked,
        "corestream_batches_acked_total",
        "Batches the sink acknowledged (checkpointable).",
    ),
    (
        Counter::AckWaits,
        "corestream_ack_waits_total",
        "Times a worker waited for acknowledgements with its ticket queue full.",
    ),
    (
        Counter::SinkRetries,
        "corestream_sink_retries_total",
        "Sink writes that failed and were retried.",
    ),
    (
        Counter::BreakerOpened,
        "corestream_breaker_opened_total",
        "Times a sink circuit breaker opened.",
    ),
    (
        Counter::SourceRingFullWaits,
        "corestream_source_ring_full_waits_total",
        "Times the source found a worker's ring full and waited (or held a Kafka message).",
    ),
    (
        Counter::IntakePauses,
        "corestream_intake_pauses_total",
        "Times intake paused because resident memory reached engine.memory_limit.",
    ),
];

/// Per-worker counters: (counter, family name, help).
pub const PER_WORKER: [(Counter, &str, &str); 10] = [
    (
        Counter::MessagesIn,
        "corestream_worker_messages_in_total",
        "Messages a worker took from its ring.",
    ),
    (
        Counter::Outputs,
        "corestream_worker_messages_out_total",
        "Outputs a worker handed to its sink.",
    ),
    (
        Counter::Filtered,
        "corestream_worker_messages_filtered_total",
        "Inputs a worker's processor filtered out.",
    ),
    (
        Counter::ProcessorFailed,
        "corestream_worker_messages_processor_failed_total",
        "Inputs a worker's processor failed.",
    ),
    (
        Counter::DeadLettered,
        "corestream_worker_messages_dead_lettered_total",
        "Messages a worker wrote to the dead-letter sink.",
    ),
    (
        Counter::BytesIn,
        "corestream_worker_input_bytes_total",
        "Payload bytes a worker took from its ring.",
    ),
    (
        Counter::OutputBytes,
        "corestream_worker_output_bytes_total",
        "Output bytes a worker handed to its sink.",
    ),
    (Counter::Batches, "corestream_worker_batches_total", "Batches a worker processed."),
    (
        Counter::SinkRetries,
        "corestream_worker_sink_retries_total",
        "A worker's sink writes retried.",
    ),
    (
        Counter::AckWaits,
        "corestream_worker_ack_waits_total",
        "Times a worker waited for acknowledgements.",
    ),
];

// ---- per-worker state (src/state/) ----

/// State counters (caches of `dedup`/`enrich` steps), per worker and in total:
/// (counter, family name without the `corestream_` / `corestream_worker_` prefix, help).
pub const STATE: [(Counter, &str, &str); 13] = [
    (
        Counter::StateCacheHits,
        "state_cache_hits_total",
        "State cache lookups that found a live entry.",
    ),
    (
        Counter::StateCacheMisses,
        "state_cache_misses_total",
        "State cache lookups that found nothing or an expired entry.",
    ),
    (
        Counter::StateCacheInsertions,
        "state_cache_insertions_total",
        "Entries stored in state caches (new or replaced).",
    ),
    (
        Counter::StateCacheEvictions,
        "state_cache_evictions_total",
        "Live entries full state caches removed to make room (dedup: keys forgotten before their window ended).",
    ),
    (
        Counter::StateCacheExpirations,
        "state_cache_expirations_total",
        "State cache entries removed because their TTL had passed.",
    ),
    (
        Counter::StateCacheRefused,
        "state_cache_refused_total",
        "State cache inserts refused: key and value longer than entry_bytes.",
    ),
    (
        Counter::FilteredDedup,
        "messages_filtered_dedup_total",
        "Inputs a dedup step dropped as repeats within its window (also in filtered).",
    ),
    (
        Counter::EnrichKeysFetched,
        "enrich_keys_fetched_total",
        "Distinct keys enrich steps asked Redis for (their cache misses, per batch).",
    ),
    (
        Counter::EnrichRoundTrips,
        "enrich_round_trips_total",
        "Round trips enrich steps made to Redis (one per batch with misses, plus retries).",
    ),
    (
        Counter::EnrichErrors,
        "enrich_errors_total",
        "Round trips to Redis that failed (retried or given up).",
    ),
    (
        Counter::EnrichNotFound,
        "enrich_not_found_total",
        "Inputs whose key Redis does not have (before the miss policy).",
    ),
    (
        Counter::FilteredEnrich,
        "messages_filtered_enrich_total",
        "Inputs an enrich step dropped by on_miss = \"drop\" (also in filtered).",
    ),
    (
        Counter::EnrichBreakerOpened,
        "enrich_breaker_opened_total",
        "Times an enrich step's circuit breaker opened.",
    ),
];

/// Redis pool figures of the `enrich` steps: (family, type, help, value of a snapshot).
type PoolFigure = (&'static str, &'static str, &'static str, fn(&PoolSnapshot) -> u64);
pub const REDIS_POOL: [PoolFigure; 9] = [
    (
        "corestream_redis_pool_connections",
        "gauge",
        "Connections open (checked out or idle).",
        |p| u64::from(p.connections),
    ),
    ("corestream_redis_pool_idle_connections", "gauge", "Connections idle in the pool.", |p| {
        u64::from(p.idle)
    }),
    ("corestream_redis_pool_active_connections", "gauge", "Connections checked out now.", |p| {
        u64::from(p.active())
    }),
    ("corestream_redis_pool_max_connections", "gauge", "The pool's size at most.", |p| {
        u64::from(p.max)
    }),
    ("corestream_redis_pool_created_total", "counter", "Connections opened.", |p| p.created),
    ("corestream_redis_pool_failed_total", "counter", "Connection attempts that failed.", |p| {
        p.failed
    }),
    (
        "corestream_redis_pool_waits_total",
        "counter",
        "Checkouts that found no idle connection and waited.",
        |p| p.waits,
    ),
    ("corestream_redis_health_checks_total", "counter", "Health checks (PING) sent.", |p| {
        p.health_checks
    }),
    (
        "corestream_redis_health_check_failures_total",
        "counter",
        "Health checks that failed.",
        |p| p.health_check_failures,
    ),
];

/// Latency histogram bucket bounds, ns: 1, 2.5 and 5 per decade from 1 µs to 10 s.
pub const LATENCY_BUCKETS_NS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

const _: () = assert!(LATENCY_BUCKETS_NS[0] == 1_000);
const _: () = assert!(LATENCY_BUCKETS_NS[LATENCY_BUCKETS_NS.len() - 1] == 10_000_000_000);
// Every bound lies within the HDR histograms' range, so none is clipped.
const _: () =
    assert!(LATENCY_BUCKETS_NS[LATENCY_BUCKETS_NS.len() - 1] <= crate::limits::LATENCY_NS_MAX);

/// Cumulative bucket counts, total count and sum (seconds) of a histogram.
pub struct LatencyBuckets {
    pub cumulative: [u64; LATENCY_BUCKETS_NS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencyBuckets {
    pub fn of(histogram: &Histogram<u64>) -> LatencyBuckets {
        let mut buckets = LatencyBuckets {
            cumulative: [0; LATENCY_BUCKETS_NS.len()],
            count: 0,
            sum_seconds: 0.0,
        };
        let mut sum_ns = 0f64;
        for value in histogram.iter_recorded() {
            let count = value.count_at_value();
            let highest = histogram.highest_equivalent(value.value_iterated_to());
            // The first bound that holds the whole HDR bucket; later ones are cumulative.
            if let Some(first) = LATENCY_BUCKETS_NS.iter().position(|&bound| highest <= bound) {
                for slot in &mut buckets.cumulative[first..] {
                    *slot += count;
                }
            }
            buckets.count += count;
            sum_ns += histogram.median_equivalent(value.value_iterated_to()) as f64 * count as f64;
        }
        buckets.sum_seconds = sum_ns / 1e9;
        buckets
    }
}

/// Writes the families, one `# HELP` and `# TYPE` each.
struct Text {
    out: String,
}

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                if index != 0 {
                    self.out.push(',');
                }
                // Label values are ours (numbers and snake_case names): no escaping needed.
                debug_assert!(!value.contains(['"', '\\', '\n']));
                let _ = write!(self.out, "{label}=\"{value}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The whole exposition for `metrics`, read now.
pub fn exposition(metrics: &Metrics) -> String {
    let snapshot = metrics.snapshot();
    let histogram = metrics.latency_histogram();
    render(metrics, &snapshot.totals, &snapshot.per_worker, &histogram)
}

fn render(
    metrics: &Metrics,
    totals: &[u64; SHARD_SLOTS],
    per_worker: &[[u64; crate::metrics::counters::ENGINE_COUNTERS]],
    histogram: &Histogram<u64>,
) -> String {
    let mut text = Text { out: String::with_capacity(16 * 1024) };
    for (counter, name, help) in TOTALS {
        text.family(name, "counter", help);
        text.sample(name, &[], totals[counter as usize]);
    }
    let names: Vec<String> = (0..per_worker.len()).map(|w| w.to_string()).collect();
    for (counter, name, help) in PER_WORKER {
        text.family(name, "counter", help);
        for (worker, counts) in per_worker.iter().enumerate() {
            text.sample(name, &[("worker", &names[worker])], counts[counter as usize]);
        }
    }
    for (counter, suffix, help) in STATE {
        let total = format!("corestream_{suffix}");
        text.family(&total, "counter", help);
        text.sample(&total, &[], totals[counter as usize]);
        let worker_name = format!("corestream_worker_{suffix}");
        text.family(&worker_name, "counter", help);
        for (worker, counts) in per_worker.iter().enumerate() {
            text.sample(&worker_name, &[("worker", &names[worker])], counts[counter as usize]);
        }
    }
    let pools = crate::state::redis::pools();
    if !pools.is_empty() {
        let ids: Vec<String> = (0..pools.len()).map(|i| i.to_string()).collect();
        for (name, kind, help, value) in REDIS_POOL {
            text.family(name, kind, help);
            for (i, pool) in pools.iter().enumerate() {
                text.sample(name, &[("pool", &ids[i]), ("url", &pool.url)], value(pool));
            }
        }
    }
    let name = "corestream_sink_failures_total";
    text.family(name, "counter", "Sink failures by error category and what became of them.");
    for index in 0..RETRY_COUNTERS {
        let (category, outcome) = retry_counter_labels(index).expect("index in range");
        text.sample(
            name,
            &[("category", category.name()), ("outcome", outcome.name())],
            totals[CATEGORY_BASE + index],
        );
    }
    let name = "corestream_worker_batch_records";
    text.family(name, "gauge", "A worker's current records per batch (adaptive or fixed).");
    for (worker, counts) in per_worker.iter().enumerate() {
        text.sample(
            name,
            &[("worker", &names[worker])],
            counts[Counter::BatchRecordsCurrent as usize],
        );
    }
    let name = "corestream_worker_breaker_open";
    text.family(name, "gauge", "1 while a worker's sink circuit breaker is open or half-open.");
    for (worker, counts) in per_worker.iter().enumerate() {
        text.sample(name, &[("worker", &names[worker])], counts[Counter::BreakerOpen as usize]);
    }
    let name = "corestream_worker_ring_used_bytes";
    text.family(name, "gauge", "Bytes waiting in a worker's ring (records, headers, padding).");
    for (worker, used) in metrics.ring_used_bytes().enumerate() {
        text.sample(name, &[("worker", &names[worker])], used);
    }
    let queued = totals[Counter::Ingested as usize].saturating_sub(
        totals[Counter::MessagesIn as usize]
            .saturating_sub(totals[Counter::SourceRejected as usize]),
    );
    let name = "corestream_worker_wait_steps_total";
    text.family(name, "counter", "Wait-table steps a worker took on its empty ring, by kind.");
    for (worker, counts) in per_worker.iter().enumerate() {
        for (kind, counter) in [
            ("spin", Counter::WaitSpins),
            ("yield", Counter::WaitYields),
            ("park", Counter::WaitParks),
        ] {
            text.sample(
                name,
                &[("worker", &names[worker]), ("step", kind)],
                counts[counter as usize],
            );
        }
    }
    let name = "corestream_intake_paused_seconds_total";
    text.family(name, "counter", "Seconds intake spent paused for memory (ended pauses).");
    text.sample(name, &[], totals[Counter::IntakePausedMicros as usize] as f64 / 1e6);
    if let Some(limit) = metrics.settings().memory_limit {
        let name = "corestream_memory_limit_bytes";
        text.family(name, "gauge", "engine.memory_limit: intake pauses at this resident memory.");
        text.sample(name, &[], limit);
        let name = "corestream_memory_resume_bytes";
        text.family(name, "gauge", "Intake paused for memory resumes at this resident memory.");
        text.sample(name, &[], MemoryMarks::of(limit).low);
    }
    let gauges: [(&str, &str, f64); 7] = [
        (
            "corestream_intake_paused",
            "1 while intake is paused because resident memory reached engine.memory_limit.",
            totals[Counter::IntakePaused as usize] as f64,
        ),
        (
            "corestream_ring_capacity_bytes",
            "Bytes of each worker's ring.",
            metrics.settings().ring_bytes as f64,
        ),
        (
            "corestream_queued_messages",
            "Messages in the rings: put in by the source, not yet taken by a worker.",
            queued as f64,
        ),
        ("corestream_workers", "Worker threads configured.", metrics.settings().workers as f64),
        (
            "corestream_workers_running",
            "Worker threads still running.",
            metrics.workers_running() as f64,
        ),
        (
            "corestream_ready",
            "1 while the engine runs with its source reading and every worker up, else 0.",
            if metrics.phase() == Phase::Running { 1.0 } else { 0.0 },
        ),
        (
            "corestream_uptime_seconds",
            "Seconds since the engine started.",
            metrics.uptime().as_secs_f64(),
        ),
    ];
    for (name, help, value) in gauges {
        text.family(name, "gauge", help);
        text.sample(name, &[], value);
    }
    if let Some(memory) = super::process::ProcessMemory::read() {
        text.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        text.sample("process_resident_memory_bytes", &[], memory.resident_bytes);
        text.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        text.sample("process_virtual_memory_bytes", &[], memory.virtual_bytes);
    }
    let name = "corestream_latency_seconds";
    text.family(
        name,
        "histogram",
        "Latency from ingest (the source stamping a batch) to sink acceptance.",
    );
    let buckets = LatencyBuckets::of(histogram);
    let bucket = format!("{name}_bucket");
    for (bound, cumulative) in LATENCY_BUCKETS_NS.iter().zip(buckets.cumulative) {
        let le = (*bound as f64 / 1e9).to_string();
        text.sample(&bucket, &[("le", &le)], cumulative);
    }
    text.sample(&bucket, &[("le", "+Inf")], buckets.count);
    text.sample(&format!("{name}_sum"), &[], buckets.sum_seconds);
    text.sample(&format!("{name}_count"), &[], buckets.count);
    text.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::latency::new_histogram;

    #[test]
    fn buckets_are_cumulative_and_end_in_the_count() {
        let mut h = new_histogram();
        h.record_n(500, 3).unwrap(); // below 1 µs
        h.record_n(2_000, 2).unwrap(); // 1 µs < v <= 2.5 µs
        h.record_n(20_000_000_000, 1).unwrap(); // above 10 s: only in +Inf
        let b = LatencyBuckets::of(&h);
        assert_eq!(b.count, 6);
        assert_eq!(b.cumulative[0], 3, "le=1e-6");
        assert_eq!(b.cumulative[1], 5, "le=2.5e-6");
        assert_eq!(b.cumulative[LATENCY_BUCKETS_NS.len() - 1], 5, "le=10: not the 20 s one");
        assert!(b.cumulative.windows(2).all(|w| w[0] <= w[1]));
        let expected = (3.0 * 500.0 + 2.0 * 2_000.0 + 20e9) / 1e9;
        assert!(
            (b.sum_seconds - expected).abs() / expected < 0.01,
            "{} vs {expected}",
            b.sum_seconds
        );
    }
}
