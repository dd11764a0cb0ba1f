//! Proof that the compiled chain allocates nothing per message in steady state: a
//! counting global allocator around batches of the orders pipeline (paid, filtered,
//! escaped and malformed lines) after one warm-up batch.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use bumpalo::Bump;
use corestream::message::Message;
use corestream::processor::{Emit, Processor};
use corestream::transform::orders::orders_pipeline;

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
const BATCHES: usize = 20;

#[test]
fn orders_pipeline_allocates_nothing_per_message_after_warm_up() {
    let lines: Vec<&[u8]> = vec![
        br#"{"id":1,"region":"eu-west","customer":"c-000001","status":"paid","amount":150.25,"currency":"EUR","tags":["gift"]}"#,
        br#"{"id":2,"region":"us\u002deast","customer":"c\u002d000002","status":"p\u0061id","amount":999.99,"currency":"USD","address":{"city":"Z\u00fcrich","zip":"8001"},"note":"caf\u00e9 \ud83d\ude00"}"#,
        br#"{"id":3,"region":"ap-south","customer":"c-000003","status":"pending","amount":12.5,"currency":"INR"}"#,
        br#"{"id":4,"region":"ap-south","customer":"c-000003","status":"paid","amount":1e999,"currency":"INR"}"#,
        br#"{"id":5,"region":"ap-south""#,
        b"garbage",
        b"",
    ];
    let input: Vec<Message<'_>> = lines
        .iter()
        .cycle()
        .take(512)
        .map(|l| Message { payload: l, ..Default::default() })
        .collect();
    let mut pipeline = orders_pipeline().unwrap();
    let mut arena = Bump::with_capacity(1 << 20);
    let mut run = |arena: &mut Bump| -> (usize, usize) {
        arena.reset();
        let mut outputs = bumpalo::collections::Vec::with_capacity_in(512, &*arena);
        let mut failures = bumpalo::collections::Vec::with_capacity_in(512, &*arena);
        let mut emit = Emit::new(arena, &mut outputs, &mut failures);
        pipeline.process(&input, &mut emit);
        (emit.outputs().len(), emit.failures().len())
    };
    let warm = run(&mut arena);
    assert!(warm.0 > 0 && warm.1 > 0, "the batch has outputs and failures: {warm:?}");
    // The counter sees this thread's allocations (the proof is not vacuous).
    MEASURING.with(|m| m.set(true));
    let probe = ALLOCATIONS.load(Ordering::SeqCst);
    drop(std::hint::black_box(Box::new(7u64)));
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), probe + 1);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut results = [(0, 0); BATCHES];
    for r in &mut results {
        *r = run(&mut arena);
    }
    MEASURING.with(|m| m.set(false));
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    assert!(results.iter().all(|r| *r == warm), "{results:?}");
    assert_eq!(allocations, 0, "{allocations} heap allocations in {} messages", BATCHES * 512);
}
