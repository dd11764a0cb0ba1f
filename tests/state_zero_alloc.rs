//! Proof that the `dedup` step allocates nothing per message in steady state (a
//! counting global allocator around batches that hit, miss, evict and expire), and
//! that the `enrich` step allocates nothing at a 100% cache hit rate (a real Redis
//! fills the cache during the warm-up; the measured batches ask it nothing).

mod redis_util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use bumpalo::Bump;
use corestream::message::Message;
use corestream::metrics::Counter;
use corestream::metrics::counters::LocalCounts;
use corestream::processor::{Emit, Processor};
use corestream::state::{Clock, ManualClock};
use corestream::transform::pipeline::compile_toml;

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Only the measuring thread counts: libtest's own threads allocate at will.
    static MEASURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if MEASURING.with(std::cell::Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Batches measured after the warm-up.
const BATCHES: usize = 50;

/// A dedup window over 20 hot ids and 300 cold ones in a cache of 128 entries, with the clock moving
/// 400 ms per batch against a 1 s window: every path runs inside the measured window
/// (hits, misses, inserts, evictions, expirations, a failed key).
#[test]
fn dedup_allocates_nothing_per_message_after_warm_up() {
    let config = r#"
[[steps]]
type = "schema"
fields = { id = "any?" }
[[steps]]
type = "dedup"
key = "id"
window = "1s"
capacity = 128
eviction = "lru"
[[steps]]
type = "route"
topic = "ids.${id}"
"#;
    let clock = ManualClock::new(0);
    let mut compiled = compile_toml(config).unwrap();
    compiled.set_clock(Clock::Manual(clock.clone()));
    let mut chain = compiled.clone();
    let lines: Vec<Vec<u8>> = (0..512u64)
        .map(|i| match i % 97 {
            0 => br#"{"other":1}"#.to_vec(),
            1 => format!(r#"{{"id":"s-{}"}}"#, (i * 7919) % 300).into_bytes(),
            _ if i % 2 == 0 => format!(r#"{{"id":{}}}"#, i % 20).into_bytes(),
            _ => format!(r#"{{"id":{}}}"#, 1000 + (i * 7919) % 300).into_bytes(),
        })
        .collect();
    let input: Vec<Message<'_>> =
        lines.iter().map(|l| Message { payload: l, ..Default::default() }).collect();
    let mut arena = Bump::with_capacity(1 << 20);
    let mut local = LocalCounts::default();
    let mut run = |arena: &mut Bump, local: &mut LocalCounts| -> (usize, usize) {
        arena.reset();
        clock.advance_ms(400);
        let mut outputs = bumpalo::collections::Vec::with_capacity_in(512, &*arena);
        let mut failures = bumpalo::collections::Vec::with_capacity_in(512, &*arena);
        let mut emit = Emit::new(arena, &mut outputs, &mut failures);
        chain.process(&input, &mut emit);
        chain.publish_counts(local);
        (emit.outputs().len(), emit.failures().len())
    };
    let warm = run(&mut arena, &mut local);
    assert!(warm.0 > 0 && warm.1 > 0, "outputs and failures: {warm:?}");
    local = LocalCounts::default();
    MEASURING.with(|m| m.set(true));
    let probe = ALLOCATIONS.load(Ordering::SeqCst);
    drop(std::hint::black_box(Box::new(7u64)));
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), probe + 1);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut emitted = 0;
    for _ in 0..BATCHES {
        emitted += run(&mut arena, &mut local).0;
    }
    MEASURING.with(|m| m.set(false));
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    let get = |c: Counter| local.slots[c as usize];
    for c in [
        Counter::StateCacheHits,
        Counter::StateCacheMisses,
        Counter::StateCacheEvictions,
        Counter::StateCacheExpirations,
        Counter::FilteredDedup,
    ] {
        assert!(get(c) > 0, "{c:?} ran inside the window: {local:?}");
    }
    assert!(emitted > 0);
    assert_eq!(allocations, 0, "{allocations} heap allocations in {} messages", BATCHES * 512);
}

#[test]
fn enrich_at_a_full_hit_rate_allocates_nothing_per_message() {
    let redis = redis_util::RedisServer::start("zero-alloc");
    let pairs: Vec<(String, String)> =
        (0..100).map(|i| (format!("c:{i}"), format!(r#"{{"segment":"s{}"}}"#, i % 5))).collect();
    redis.set_all(&pairs);
    let config = format!(
        r#"
[[steps]]
type = "enrich"
key = "customer"
field = "c"
[steps.redis]
url = "{}"
prefix = "c:"
health_check_interval = "1h"
[[steps]]
type = "filter"
expr = 'c.segment != "s0"'
"#,
        redis.url()
    );
    let mut chain = compile_toml(&config).unwrap().clone();
    let lines: Vec<Vec<u8>> = (0..512u64)
        .map(|i| format!(r#"{{"id":{i},"customer":{}}}"#, (i * i) % 100).into_bytes())
        .collect();
    let input: Vec<Message<'_>> =
        lines.iter().map(|l| Message { payload: l, ..Default::default() }).collect();
    let mut arena = Bump::with_capacity(1 << 20);
    let mut local = LocalCounts::default();
    let mut run = |arena: &mut Bump, local: &mut LocalCounts| -> usize {
        arena.reset();
        let mut outputs = bumpalo::collections::Vec::with_capacity_in(512, &*arena);
        let mut failures = bumpalo::collections::Vec::with_capacity_in(512, &*arena);
        let mut emit = Emit::new(arena, &mut outputs, &mut failures);
        chain.process(&input, &mut emit);
        chain.publish_counts(local);
        assert!(emit.failures().is_empty(), "{:?}", emit.failures());
        emit.outputs().len()
    };
    assert!(run(&mut arena, &mut local) > 0);
    assert_eq!(local.slots[Counter::EnrichRoundTrips as usize], 1, "the warm-up filled the cache");
    local = LocalCounts::default();
    MEASURING.with(|m| m.set(true));
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut emitted = 0;
    for _ in 0..BATCHES {
        emitted += run(&mut arena, &mut local);
    }
    MEASURING.with(|m| m.set(false));
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    assert_eq!(local.slots[Counter::StateCacheHits as usize], (BATCHES * 512) as u64);
    assert_eq!(local.slots[Counter::EnrichRoundTrips as usize], 0);
    assert!(emitted > 0 && emitted < BATCHES * 512, "the filter read the enrichment");
    assert_eq!(allocations, 0, "{allocations} heap allocations in {} messages", BATCHES * 512);
}
