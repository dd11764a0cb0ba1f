//! Instruction counts of per-worker state (src/state/): a cache hit, a miss that
//! inserts and evicts (for each eviction policy), and the `dedup` step on a repeat
//! and on a new key through the compiled chain.
//!
//! Every benchmark has a DHAT limit of 0 heap blocks: the cache is allocated in
//! `setup` (as at engine start) and each setup checks the answer first. Hard limits
//! are ~1.5-2x the measured figures (in benches/README.md).
//! Run: `cargo bench --no-default-features --bench state`.

use std::hint::black_box;

use bumpalo::Bump;
use corestream::message::Message;
use corestream::state::{Cache, CacheSettings, Clock, Eviction, Inserted, ManualClock};
use corestream::transform::json::{PATHS_MAX, Slot};
use corestream::transform::pipeline::{Outcome, Pipeline, compile_toml};
use gungraun::{
    Callgrind, Dhat, DhatMetric, EventKind, LibraryBenchmarkConfig, library_benchmark,
    library_benchmark_group, main,
};

fn no_alloc_and_at_most(instructions: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, instructions)]))
        .tool(Dhat::default().hard_limits([(DhatMetric::TotalBlocks, 0)]));
    config
}

/// Entries in the benchmarked caches: full, so every new key evicts.
const ENTRIES: usize = 4096;
const KEY: &[u8] = b"c-004211";
const VALUE: &[u8] = br#"{"segment":"gold"}"#;

fn key_of(i: usize) -> [u8; 8] {
    let mut k = *b"c-000000";
    let digits = format!("{:06}", i % 1_000_000);
    k[2..].copy_from_slice(digits.as_bytes());
    k
}

/// A full cache holding KEY; `fresh` is a key not in it.
fn setup_full(eviction: Eviction) -> Box<(Cache, [u8; 8])> {
    let settings =
        CacheSettings { entries_max: ENTRIES, entry_bytes_max: 64, eviction, ttl_ms: Some(60_000) };
    let mut cache = Cache::new(settings).unwrap();
    for i in 0..ENTRIES - 1 {
        cache.insert(&key_of(i), VALUE, 0);
    }
    cache.insert(KEY, VALUE, 0);
    assert_eq!(cache.len(), ENTRIES);
    assert_eq!(cache.get(KEY, 1), Some(VALUE));
    let fresh = key_of(ENTRIES + 17);
    assert!(!cache.contains(&fresh, 1));
    Box::new((cache, fresh))
}

#[library_benchmark]
#[bench::lru(args = (Eviction::Lru), setup = setup_full, config = no_alloc_and_at_most(500))]
#[bench::lfu(args = (Eviction::Lfu), setup = setup_full, config = no_alloc_and_at_most(500))]
#[bench::ttl(args = (Eviction::Ttl), setup = setup_full, config = no_alloc_and_at_most(500))]
fn cache_hit(mut state: Box<(Cache, [u8; 8])>) -> Box<(Cache, [u8; 8])> {
    let hit = state.0.get(black_box(KEY), 2).map(<[u8]>::len);
    black_box(hit);
    state
}

#[library_benchmark]
#[bench::lru(args = (Eviction::Lru), setup = setup_full, config = no_alloc_and_at_most(850))]
#[bench::lfu(args = (Eviction::Lfu), setup = setup_full, config = no_alloc_and_at_most(850))]
#[bench::ttl(args = (Eviction::Ttl), setup = setup_full, config = no_alloc_and_at_most(850))]
fn cache_miss_insert_evict(mut state: Box<(Cache, [u8; 8])>) -> Box<(Cache, [u8; 8])> {
    let (cache, fresh) = &mut *state;
    let miss = cache.get(black_box(fresh), 2).is_none();
    let inserted = cache.insert(black_box(fresh), VALUE, 2);
    black_box((miss, inserted == Inserted::Evicted));
    state
}

struct DedupState {
    chain: Pipeline,
    arena: &'static Bump,
    slots: [Slot<'static>; PATHS_MAX],
    message: Message<'static>,
}

const REPEAT: &[u8] = br#"{"id":100729,"status":"paid"}"#;
const NEW: &[u8] = br#"{"id":999999,"status":"paid"}"#;

/// A chain whose window is full (4096 ids, REPEAT among them): a new key evicts.
fn filled_chain(arena: &'static Bump, slots: &mut [Slot<'static>; PATHS_MAX]) -> Pipeline {
    let mut compiled = compile_toml(
        "[[steps]]\ntype = \"dedup\"\nkey = \"id\"\nwindow = \"10m\"\ncapacity = 4096\n",
    )
    .unwrap();
    compiled.set_clock(Clock::Manual(ManualClock::new(1_000)));
    let mut chain = compiled.clone(); // as a worker gets it: the cache allocated
    chain.read_clock();
    for id in 0..4096u64 {
        let p: &'static [u8] =
            Box::leak(format!(r#"{{"id":{}}}"#, 100_000 + id).into_bytes().into_boxed_slice());
        let m = Message { payload: p, ..Default::default() };
        assert!(matches!(chain.run(&m, slots, arena), Outcome::Emit { .. }));
    }
    chain
}

fn setup_dedup(payload: &'static [u8]) -> Box<DedupState> {
    let arena: &'static Bump = Box::leak(Box::new(Bump::with_capacity(1 << 16)));
    let mut slots = [Slot::Missing; PATHS_MAX];
    let message = Message { payload, ..Default::default() };
    // The answer, on an identical chain (deciding mutates the window).
    let mut check = filled_chain(arena, &mut slots);
    let outcome = check.run(&message, &mut slots, arena);
    if payload == REPEAT {
        assert_eq!(outcome, Outcome::Filtered);
    } else {
        assert!(matches!(outcome, Outcome::Emit { .. }), "{outcome:?}");
    }
    let chain = filled_chain(arena, &mut slots);
    Box::new(DedupState { chain, arena, slots, message })
}

#[library_benchmark]
#[bench::repeat(args = (REPEAT), setup = setup_dedup, config = no_alloc_and_at_most(2_000))]
#[bench::new_key(args = (NEW), setup = setup_dedup, config = no_alloc_and_at_most(2_500))]
fn dedup_message(mut state: Box<DedupState>) -> Box<DedupState> {
    let s = &mut *state;
    let outcome = s.chain.run(black_box(&s.message), &mut s.slots, s.arena);
    black_box(outcome);
    state
}

library_benchmark_group!(
    name = state,
    benchmarks = [cache_hit, cache_miss_insert_evict, dedup_message]
);

main!(library_benchmark_groups = state);
