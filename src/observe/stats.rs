//! `/stats`: one JSON document about the running engine.
//!
//! Schema (`"schema": "corestream.stats"`, `"version": 1`; a field is only ever
//! added within a version, never renamed or removed; counts are integers since the
//! engine started, rates are per second, durations in seconds):
//!
//! ```text
//! schema, version, phase ("starting" | "running" | "draining" | "finished"),
//! ready (bool), uptime_seconds
//! batch:        records_configured, adaptive (null | {records_min, records_max,
//!               time_target_seconds}), records_current (per worker), batches,
//!               batches_acked, records_per_batch_mean
//! concurrency:  workers, workers_running, cores_available, placement
//!               ("pin_per_core" | "unpinned"), pinning_plan [{worker, plan
//!               ("core" | "not_requested" | "too_few_cores" | "refused"), core}]
//!               (the plan at start; whether the OS accepted it is in the run's summary)
//! memory:       resident_bytes, virtual_bytes (null off Linux), ring_bytes_per_worker,
//!               ring_bytes_total, arena_bytes_initial_per_worker, memory_limit_bytes
//!               and memory_resume_bytes (the pause and resume marks of
//!               `engine.memory_limit`; null when it is off)
//! performance:  windows [{window ("1s" | "10s" | "60s" | "since_start"), seconds,
//!               messages_in, messages_out, input_bytes, output_bytes, dead_lettered
//!               (all per second), latency_ingest_to_sink_seconds {count, p50, p90,
//!               p99, p999, max}}]; a window appears once the sampler (one sample a
//!               second) holds that much history; workers publish latencies every
//!               100 ms, so a window's latencies are those published within it
//! backpressure: ring_capacity_bytes, ring_used_bytes (per worker, now),
//!               ring_fill_ratio_max (the fullest ring), queued_messages (in the
//!               rings), ack_waits (a worker waited for sink acknowledgements with its
//!               ticket queue full), ack_waits_per_second (since start),
//!               source_ring_full_waits (the source found a ring full and waited, or
//!               held a Kafka message), intake_paused (bool: paused for memory now),
//!               intake_pauses, intake_paused_seconds (ended pauses)
//! errors:       source_rejected, processor_failed, sink_dead_lettered, sink_retries,
//!               breaker_opened, breakers_open (workers whose breaker is open or
//!               half-open now), dead_lettered, by_category {category: {attempt,
//!               success, gave_up, dead_lettered}} (categories with any count only)
//! sources:      [{description, messages, bytes, rejected, replayed}]
//! sinks:        [{description, messages, bytes, deduplicated, dead_lettered, retries}]
//! workers:      [{worker, messages_in, messages_out, filtered, processor_failed,
//!               dead_lettered, input_bytes, output_bytes, batches, batch_records,
//!               wait_steps {spin, yield, park} (wait-table steps on its empty ring),
//!               state {cache_hits, cache_misses, cache_insertions, cache_evictions,
//!               cache_expirations, cache_refused, filtered_dedup, enrich_keys_fetched,
//!               enrich_round_trips, enrich_errors, enrich_not_found, filtered_enrich,
//!               enrich_breaker_opened}}]
//! state:        the same counts summed over the workers, cache_hit_ratio, and
//!               redis_pools [{url, connections, idle, active, max, created, failed,
//!               waits, round_trips, round_trip_failures, health_checks,
//!               health_check_failures}] (one per enrich step)
//!               (hits / (hits + misses), null before any lookup)
//! ```

use std::collections::VecDeque;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::{Attached, Sample};
use crate::engine::Phase;
use crate::metrics::counters::{CATEGORY_BASE, SHARD_SLOTS};
use crate::metrics::{Counter, LatencySummary};
use crate::retry::ErrorCategory;
use crate::retry::counters::{Outcome, retry_counter_index};
use crate::source::pressure::MemoryMarks;
use crate::worker::Placement;
use crate::worker::pin::{Plan, available_cores, plan};

/// The schema version; bump it when a field changes meaning or goes away.
pub const STATS_VERSION: u64 = 1;

/// Windows: name and samples back (one sample per second).
const WINDOWS: [(&str, usize); 3] = [("1s", 1), ("10s", 10), ("60s", 60)];

// The longest window fits in the sampler's history.
const _: () = assert!(WINDOWS[WINDOWS.len() - 1].1 < super::RATE_SAMPLES);

/// Percentiles of a latency histogram (ns) in seconds.
fn latency_json(histogram: &Histogram<u64>) -> Value {
    let summary = LatencySummary::of(histogram);
    let seconds = |ns: u64| ns as f64 / 1e9;
    let p90 = if histogram.is_empty() { 0 } else { histogram.value_at_quantile(0.90) };
    json!({
        "count": summary.count,
        "p50": seconds(summary.p50),
        "p90": seconds(p90),
        "p99": seconds(summary.p99),
        "p999": seconds(summary.p999),
        "max": seconds(summary.max),
    })
}

/// The document, from the metrics now and the sampler's history (newest last).
pub fn document(attached: &Attached, samples: &VecDeque<Sample>) -> Value {
    let metrics = &attached.metrics;
    let snapshot = metrics.snapshot();
    let get = |c: Counter| snapshot.get(c);
    let settings = metrics.settings();
    let phase = metrics.phase();
    let uptime = snapshot.elapsed.as_secs_f64().max(1e-9);

    let batches = get(Counter::Batches);
    let batch = json!({
        "records_configured": settings.batch_records,
        "adaptive": metrics.batch_sizing().map(|s| json!({
            "records_min": s.records_min,
            "records_max": s.records_max,
            "time_target_seconds": s.time_target.as_secs_f64(),
        })),
        "records_current": snapshot.batch_records_current(),
        "batches": batches,
        "batches_acked": get(Counter::BatchesAcked),
        "records_per_batch_mean": if batches == 0 { 0.0 } else {
            get(Counter::MessagesIn).saturating_sub(get(Counter::SourceRejected)) as f64 / batches as f64
        },
    });

    let cores = available_cores();
    let pinning_plan: Vec<Value> = (0..settings.workers)
        .map(|worker| match plan(worker, settings.workers, cores, settings.placement) {
            Plan::Pin(core) => json!({"worker": worker, "plan": "core", "core": core}),
            Plan::Unpinned(why) => json!({"worker": worker, "plan": why.name(), "core": null}),
        })
        .collect();
    let concurrency = json!({
        "workers": settings.workers,
        "workers_running": metrics.workers_running(),
        "cores_available": cores,
        "placement": match settings.placement {
            Placement::PinPerCore => "pin_per_core",
            Placement::Unpinned => "unpinned",
        },
        "pinning_plan": pinning_plan,
    });

    let process = super::process::ProcessMemory::read();
    let memory = json!({
        "resident_bytes": process.map(|m| m.resident_bytes),
        "virtual_bytes": process.map(|m| m.virtual_bytes),
        "ring_bytes_per_worker": settings.ring_bytes,
        "ring_bytes_total": settings.ring_bytes * settings.workers,
        "arena_bytes_initial_per_worker": settings.arena_bytes,
        "memory_limit_bytes": settings.memory_limit,
        "memory_resume_bytes": settings.memory_limit.map(|l| MemoryMarks::of(l).low),
    });

    let window = |name: &str,
                  seconds: f64,
                  from: &[u64; SHARD_SLOTS],
                  to: &[u64; SHARD_SLOTS],
                  latency: &Histogram<u64>| {
        let per_second =
            |c: Counter| to[c as usize].saturating_sub(from[c as usize]) as f64 / seconds.max(1e-9);
        json!({
            "window": name,
            "seconds": seconds,
            "messages_in": per_second(Counter::MessagesIn),
            "messages_out": per_second(Counter::Outputs),
            "input_bytes": per_second(Counter::BytesIn),
            "output_bytes": per_second(Counter::OutputBytes),
            "dead_lettered": per_second(Counter::DeadLettered),
            "latency_ingest_to_sink_seconds": latency_json(latency),
        })
    };
    let mut windows = Vec::new();
    if let Some(newest) = samples.back() {
        for (name, back) in WINDOWS {
            let Some(index) = samples.len().checked_sub(1 + back) else { break };
            let old = &samples[index];
            let mut latency = newest.latency.clone();
            // Samples are cumulative, so the older one is contained in the newer.
            if latency.subtract(&old.latency).is_err() {
                latency.reset();
            }
            let seconds = newest.at.duration_since(old.at).as_secs_f64();
            windows.push(window(name, seconds, &old.totals, &newest.totals, &latency));
        }
    }
    let histogram = metrics.latency_histogram();
    windows.push(window("since_start", uptime, &[0; SHARD_SLOTS], &snapshot.totals, &histogram));
    let performance = json!({ "windows": windows });

    let ring_used_bytes: Vec<usize> = metrics.ring_used_bytes().collect();
    let ring_fill_max = ring_used_bytes.iter().copied().max().unwrap_or(0) as f64
        / settings.ring_bytes.max(1) as f64;
    let backpressure = json!({
        "ring_capacity_bytes": settings.ring_bytes,
        "ring_used_bytes": ring_used_bytes,
        "ring_fill_ratio_max": ring_fill_max,
        "queued_messages": get(Counter::Ingested).saturating_sub(
            get(Counter::MessagesIn).saturating_sub(get(Counter::SourceRejected))),
        "ack_waits": get(Counter::AckWaits),
        "ack_waits_per_second": get(Counter::AckWaits) as f64 / uptime,
        "source_ring_full_waits": get(Counter::SourceRingFullWaits),
        "intake_paused": get(Counter::IntakePaused) != 0,
        "intake_pauses": get(Counter::IntakePauses),
        "intake_paused_seconds": get(Counter::IntakePausedMicros) as f64 / 1e6,
    });

    let mut by_category = Map::new();
    for category in ErrorCategory::ALL {
        let count = |o: Outcome| snapshot.totals[CATEGORY_BASE + retry_counter_index(category, o)];
        if Outcome::ALL.iter().any(|&o| count(o) != 0) {
            let outcomes: Map<String, Value> =
                Outcome::ALL.iter().map(|&o| (o.name().to_string(), json!(count(o)))).collect();
            by_category.insert(category.name().to_string(), Value::Object(outcomes));
        }
    }
    let errors = json!({
        "source_rejected": get(Counter::SourceRejected),
        "processor_failed": get(Counter::ProcessorFailed),
        "sink_dead_lettered": get(Counter::SinkDeadLettered),
        "sink_retries": get(Counter::SinkRetries),
        "breaker_opened": get(Counter::BreakerOpened),
        "breakers_open": get(Counter::BreakerOpen),
        "dead_lettered": get(Counter::DeadLettered),
        "by_category": by_category,
    });

    let sources = json!([{
        "description": attached.source,
        "messages": get(Counter::Ingested),
        "bytes": get(Counter::IngestedBytes),
        "rejected": get(Counter::SourceRejected),
        "replayed": get(Counter::Replayed),
    }]);
    let sinks = json!([{
        "description": attached.sink,
        "messages": get(Counter::Outputs),
        "bytes": get(Counter::OutputBytes),
        "deduplicated": get(Counter::Deduplicated),
        "dead_lettered": get(Counter::SinkDeadLettered),
        "retries": get(Counter::SinkRetries),
    }]);
    let mut state = state_json(get);
    let (hits, misses) = (get(Counter::StateCacheHits), get(Counter::StateCacheMisses));
    state["cache_hit_ratio"] =
        if hits + misses == 0 { Value::Null } else { json!(hits as f64 / (hits + misses) as f64) };
    state["redis_pools"] = redis_pools_json();
    let workers: Vec<Value> = snapshot
        .per_worker
        .iter()
        .enumerate()
        .map(|(worker, w)| {
            let c = |counter: Counter| w[counter as usize];
            json!({
                "worker": worker,
                "messages_in": c(Counter::MessagesIn),
                "messages_out": c(Counter::Outputs),
                "filtered": c(Counter::Filtered),
                "processor_failed": c(Counter::ProcessorFailed),
                "dead_lettered": c(Counter::DeadLettered),
                "input_bytes": c(Counter::BytesIn),
                "output_bytes": c(Counter::OutputBytes),
                "batches": c(Counter::Batches),
                "batch_records": c(Counter::BatchRecordsCurrent),
                "wait_steps": {
                    "spin": c(Counter::WaitSpins),
                    "yield": c(Counter::WaitYields),
                    "park": c(Counter::WaitParks),
                },
                "state": state_json(c),
            })
        })
        .collect();

    json!({
        "schema": "corestream.stats",
        "version": STATS_VERSION,
        "phase": phase.name(),
        "ready": phase == Phase::Running,
        "uptime_seconds": snapshot.elapsed.as_secs_f64(),
        "batch": batch,
        "concurrency": concurrency,
        "memory": memory,
        "performance": performance,
        "backpressure": backpressure,
        "errors": errors,
        "sources": sources,
        "sinks": sinks,
        "workers": workers,
        "state": state,
    })
}

// ---- per-worker state (src/state/) ----

/// The state counts of one worker or of all, read through `c`.
fn state_json(c: impl Fn(Counter) -> u64) -> Value {
    json!({
        "cache_hits": c(Counter::StateCacheHits),
        "cache_misses": c(Counter::StateCacheMisses),
        "cache_insertions": c(Counter::StateCacheInsertions),
        "cache_evictions": c(Counter::StateCacheEvictions),
        "cache_expirations": c(Counter::StateCacheExpirations),
        "cache_refused": c(Counter::StateCacheRefused),
        "filtered_dedup": c(Counter::FilteredDedup),
        "enrich_keys_fetched": c(Counter::EnrichKeysFetched),
        "enrich_round_trips": c(Counter::EnrichRoundTrips),
        "enrich_errors": c(Counter::EnrichErrors),
        "enrich_not_found": c(Counter::EnrichNotFound),
        "filtered_enrich": c(Counter::FilteredEnrich),
        "enrich_breaker_opened": c(Counter::EnrichBreakerOpened),
    })
}

/// The `enrich` steps' Redis pools (process-wide, one per step).
fn redis_pools_json() -> Value {
    Value::Array(
        crate::state::redis::pools()
            .iter()
            .map(|p| {
                json!({
                    "url": p.url,
                    "connections": p.connections,
                    "idle": p.idle,
                    "active": p.active(),
                    "max": p.max,
                    "created": p.created,
                    "failed": p.failed,
                    "waits": p.waits,
                    "round_trips": p.round_trips,
                    "round_trip_failures": p.round_trip_failures,
                    "health_checks": p.health_checks,
                    "health_check_failures": p.health_check_failures,
                })
            })
            .collect(),
    )
}
