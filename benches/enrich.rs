//! The orders pipeline with an `enrich` step (customer → segment, from a local
//! `redis-server` this program starts on a free port), beside the orders pipeline
//! alone, in the same run, single-threaded as a worker runs it (batches of 512, one
//! reused arena). Reports msgs/s of each, the cache hit rate, Redis round trips per
//! 1,000 messages, and allocations: per message in batches served entirely from the
//! cache, and per key fetched in batches with misses.
//!
//! Run: `cargo bench --bench enrich -- /tmp/orders.ndjson`
//! (dataset: `python3 benches/data/make_orders.py --count 1000000 --seed 42`).
//! `CORESTREAM_ENRICH_CAPACITY` sets the cache's entries (default 100 000).

mod common;
#[path = "../tests/redis_util/mod.rs"]
mod redis_util;

use std::time::{Duration, Instant};

use bumpalo::Bump;
use common::{Counting, Totals, allocations, output_hash};
use corestream::message::Message;
use corestream::metrics::Counter;
use corestream::metrics::counters::LocalCounts;
use corestream::processor::{Emit, Processor};
use corestream::transform::orders::{ORDERS_STEPS_TOML, orders_pipeline};
use corestream::transform::pipeline::{Pipeline, compile_toml};

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCH: usize = 512;

/// One pass over the dataset; per-batch counts are added to `counts`, and the
/// allocations of batches without a round trip to `hit_allocations`.
struct Pass {
    totals: Totals,
    elapsed: Duration,
    counts: LocalCounts,
    hit_batch_messages: u64,
    hit_batch_allocations: u64,
    miss_batch_allocations: u64,
}

fn pass(pipeline: &mut Pipeline, lines: &[&[u8]]) -> Pass {
    let mut arena = Bump::with_capacity(4 << 20);
    let mut messages: Vec<Message<'_>> = Vec::with_capacity(BATCH);
    let mut p = Pass {
        totals: Totals::default(),
        elapsed: Duration::ZERO,
        counts: LocalCounts::default(),
        hit_batch_messages: 0,
        hit_batch_allocations: 0,
        miss_batch_allocations: 0,
    };
    let start = Instant::now();
    for chunk in lines.chunks(BATCH) {
        let before = allocations();
        arena.reset();
        messages.clear();
        messages.extend(chunk.iter().map(|l| Message { payload: l, ..Default::default() }));
        let mut outputs = bumpalo::collections::Vec::with_capacity_in(BATCH, &arena);
        let mut failures = bumpalo::collections::Vec::with_capacity_in(BATCH, &arena);
        let mut emit = Emit::new(&arena, &mut outputs, &mut failures);
        pipeline.process(&messages, &mut emit);
        let mut batch = LocalCounts::default();
        pipeline.publish_counts(&mut batch);
        let t = &mut p.totals;
        for o in emit.outputs() {
            t.output_bytes += o.payload.len() as u64;
            t.checksum = t.checksum.wrapping_add(output_hash(o.topic.as_bytes(), o.payload));
        }
        t.matched += emit.outputs().len() as u64;
        t.errors += emit.failures().len() as u64;
        t.lines += chunk.len() as u64;
        t.input_bytes += chunk.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
        let allocated = allocations() - before;
        if batch.slots[Counter::EnrichRoundTrips as usize] == 0 {
            p.hit_batch_messages += chunk.len() as u64;
            p.hit_batch_allocations += allocated;
        } else {
            p.miss_batch_allocations += allocated;
        }
        for (sum, n) in p.counts.slots.iter_mut().zip(batch.slots) {
            *sum += n;
        }
    }
    p.elapsed = start.elapsed();
    p
}

fn main() {
    let args = common::args();
    let data = common::load(&args);
    let lines: Vec<&[u8]> =
        data.strip_suffix(b"\n").unwrap_or(&data).split(|&b| b == b'\n').collect();
    let capacity: usize = std::env::var("CORESTREAM_ENRICH_CAPACITY")
        .ok()
        .map(|v| v.parse().expect("CORESTREAM_ENRICH_CAPACITY: a number"))
        .unwrap_or(100_000);

    // Every customer of the dataset has a segment in Redis.
    let redis = redis_util::RedisServer::start("bench");
    let mut customers: Vec<&[u8]> = lines
        .iter()
        .filter_map(|l| {
            let at = memchr::memmem::find(l, b"\"customer\":\"")? + 12;
            let len = memchr::memchr(b'"', &l[at..])?;
            Some(&l[at..at + len])
        })
        .collect();
    customers.sort_unstable();
    customers.dedup();
    let segments = ["gold", "silver", "bronze", "new"];
    let pairs: Vec<(String, String)> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                format!("customer:{}", String::from_utf8_lossy(c)),
                format!(r#"{{"segment":"{}"}}"#, segments[i % 4]),
            )
        })
        .collect();
    for chunk in pairs.chunks(10_000) {
        redis.set_all(chunk);
    }

    // The orders chain with `enrich` after the filter, the segment kept by the map.
    let enrich = format!(
        r#"
[[steps]]
type = "enrich"
key = "customer"
field = "c"
capacity = {capacity}
entry_bytes = 64
[steps.redis]
url = "{}"
prefix = "customer:"
"#,
        redis.url()
    );
    let steps = ORDERS_STEPS_TOML
        .replace("[[steps]]\ntype = \"route\"", &format!("{enrich}\n[[steps]]\ntype = \"route\""))
        .replace("topic = \"topic\" }", "topic = \"topic\", segment = \"c.segment\" }");
    let mut enriched = compile_toml(&steps).expect("the enriched chain compiles").clone();
    let mut plain = orders_pipeline().expect("the reference chain compiles");

    // Warm-up: the plain chain's scratch buffers; the enriched chain starts cold
    // (its first pass includes filling the cache).
    let _ = pass(&mut plain, &lines[..BATCH.min(lines.len())]);
    let a = pass(&mut plain, &lines);
    let b = pass(&mut enriched, &lines);
    let c = |p: &Pass, k: Counter| p.counts.slots[k as usize];
    let (hits, misses) = (c(&b, Counter::StateCacheHits), c(&b, Counter::StateCacheMisses));
    let lookups = hits + misses;
    let rate = |p: &Pass| p.totals.lines as f64 / p.elapsed.as_secs_f64() / 1e6;
    println!(
        "dataset {} lines, {} distinct customers; enrich cache {capacity} entries",
        lines.len(),
        customers.len()
    );
    println!(
        "orders alone:         {:.2} M msgs/s  outputs {}  ({:?})",
        rate(&a),
        a.totals.matched,
        a.elapsed
    );
    println!(
        "orders + enrich:      {:.2} M msgs/s  outputs {}  ({:?})  = {:.2}x the orders alone",
        rate(&b),
        b.totals.matched,
        b.elapsed,
        rate(&b) / rate(&a)
    );
    println!(
        "enrich lookups {lookups} ({:.1}% of the messages reach the step): hit rate {:.1}%, \
         keys fetched {}, round trips {} = {:.2} per 1,000 messages, not found {}, failed {}",
        100.0 * lookups as f64 / lines.len() as f64,
        100.0 * hits as f64 / lookups.max(1) as f64,
        c(&b, Counter::EnrichKeysFetched),
        c(&b, Counter::EnrichRoundTrips),
        1000.0 * c(&b, Counter::EnrichRoundTrips) as f64 / lines.len() as f64,
        c(&b, Counter::EnrichNotFound),
        b.totals.errors,
    );
    println!(
        "allocations: {:.3} per message in the {} messages of batches served from the cache; \
         {:.1} per key fetched in batches with misses",
        b.hit_batch_allocations as f64 / b.hit_batch_messages.max(1) as f64,
        b.hit_batch_messages,
        b.miss_batch_allocations as f64 / c(&b, Counter::EnrichKeysFetched).max(1) as f64,
    );
    println!("orders alone: {} allocations in total", a.hit_batch_allocations);
    assert_eq!(b.totals.errors, a.totals.errors, "enrich fails nothing the orders chain keeps");
    assert_eq!(b.totals.matched, a.totals.matched, "every kept order is enriched and kept");
}
