//! Instruction-count gates for the engine's hot paths (gungraun, run under
//! valgrind): ring push+pop per record (one at a time and batched), one wait-table
//! step, one counter increment, and the worker loop's per-message cost.
//!
//! Each benchmark checks its answer in `setup` or after the measured call, and has a
//! hard cap in the code (Callgrind `Ir`; DHAT total blocks = 0 where the path must
//! not allocate), so a regression fails `cargo bench` on a fresh clone. Measured
//! figures and the command are in benches/README.md.
//! Run: `cargo bench --no-default-features --bench engine`.

use std::hint::black_box;

use corestream::message::{Message, Meta};
use corestream::metrics::{Counter, CounterShard};
use corestream::processor::PassThrough;
use corestream::ring::{Consumer, Producer, ring};
use corestream::wait::{WaitCell, WaitStep, Waiter};
use corestream::worker::Harness;
use gungraun::{
    Callgrind, Dhat, DhatMetric, EventKind, LibraryBenchmarkConfig, library_benchmark,
    library_benchmark_group, main,
};

/// Callgrind cap plus "no heap block at all".
fn no_alloc_and_at_most(instructions: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, instructions)]))
        .tool(Dhat::default().hard_limits([(DhatMetric::TotalBlocks, 0)]));
    config
}

const PAYLOAD_64: [u8; 64] = [b'x'; 64];

fn record(payload: &[u8], position: u64) -> Message<'_> {
    Message { payload, meta: Meta { position, ..Meta::default() }, ..Default::default() }
}

/// A fresh ring with one record pushed and popped, so first-touch costs are out of
/// the measurement.
fn warm_ring() -> (Producer, Consumer) {
    let (mut producer, mut consumer) = ring(1 << 16).expect("ring");
    producer.push(&record(&PAYLOAD_64, 0)).expect("push");
    let batch = consumer.read_batch(1);
    assert_eq!(batch.next_record().map(|m| m.meta.position), Some(0));
    drop(batch);
    (producer, consumer)
}

// Push one record and pop it (two index publishes).
#[library_benchmark]
#[bench::payload_8(args = (8), setup = setup_single, config = no_alloc_and_at_most(560))]
#[bench::payload_64(args = (64), setup = setup_single, config = no_alloc_and_at_most(560))]
fn ring_push_pop_single((mut producer, mut consumer, len): (Producer, Consumer, usize)) -> u64 {
    producer.push(&record(&PAYLOAD_64[..len], 7)).expect("push");
    let batch = consumer.read_batch(1);
    let position =
        batch.next_record().map_or(u64::MAX, |m| m.meta.position + m.payload.len() as u64);
    drop(batch);
    assert_eq!(position, 7 + len as u64);
    black_box(position)
}

fn setup_single(len: usize) -> (Producer, Consumer, usize) {
    let (p, c) = warm_ring();
    (p, c, len)
}

// 64 records written, published once, read as one batch, released once.
// Per record: the reported Ir / 64.
#[library_benchmark]
#[bench::payload_8_x64(args = (8), setup = setup_single, config = no_alloc_and_at_most(64 * 125))]
#[bench::payload_64_x64(args = (64), setup = setup_single, config = no_alloc_and_at_most(64 * 125))]
fn ring_push_pop_batched_64((mut producer, mut consumer, len): (Producer, Consumer, usize)) -> u64 {
    for i in 0..64 {
        producer.write(&record(&PAYLOAD_64[..len], i)).expect("write");
    }
    producer.commit();
    let batch = consumer.read_batch(64);
    let mut sum = 0u64;
    for m in batch.iter() {
        sum += m.meta.position + m.payload.len() as u64;
    }
    drop(batch);
    assert_eq!(sum, (0..64).sum::<u64>() + 64 * len as u64);
    black_box(sum)
}

static SPIN_ONE: [WaitStep; 1] = [WaitStep::Spin { iterations: 1 }];

// One step of a wait table (a spin step: the table lookup and the step itself).
#[library_benchmark]
#[bench::spin_step(setup = setup_waiter, config = no_alloc_and_at_most(60))]
fn wait_table_step((mut waiter, cell): (Waiter, WaitCell)) -> Waiter {
    black_box(waiter.wait(&cell, || false));
    waiter
}

fn setup_waiter() -> (Waiter, WaitCell) {
    let waiter = Waiter::new(&SPIN_ONE);
    assert_eq!(waiter.next_step(), WaitStep::Spin { iterations: 1 });
    (waiter, WaitCell::new())
}

// One sharded counter increment (single-writer load + store).
#[library_benchmark]
#[bench::increment(setup = setup_shard, config = no_alloc_and_at_most(30))]
fn counter_increment(shard: Box<CounterShard>) -> Box<CounterShard> {
    shard.add(black_box(Counter::MessagesIn), black_box(1));
    assert_eq!(shard.get_slot(Counter::MessagesIn as usize), 1);
    shard
}

fn setup_shard() -> Box<CounterShard> {
    Box::new(CounterShard::default())
}

// The worker loop on one batch of 512 pass-through messages of 100 bytes: decode
// into the arena, process, null sink, latency record, counters, release. Per
// message: the reported Ir / 512.
#[library_benchmark]
#[bench::passthrough_512(setup = setup_worker, config = no_alloc_and_at_most(512 * 200))]
fn worker_batch_per_message(mut harness: Harness) -> Harness {
    let processed = harness.run_batch();
    assert_eq!(processed, 512);
    harness
}

fn setup_worker() -> Harness {
    let (mut harness, mut producer) = Harness::new(Box::new(PassThrough), 1 << 20, 512);
    let payload = [b'p'; 100];
    // Warm-up batch: first touches of the arena, histogram and ring pages.
    for round in 0..2u64 {
        for i in 0..512 {
            producer.write(&record(&payload, round * 512 + i)).expect("write");
        }
        producer.commit();
        if round == 0 {
            assert_eq!(harness.run_batch(), 512);
        }
    }
    // The producer may be dropped: the ring stays readable until drained.
    drop(producer);
    assert_eq!(harness.messages(), 512);
    harness
}

library_benchmark_group!(
    name = engine;
    benchmarks = ring_push_pop_single, ring_push_pop_batched_64, wait_table_step, counter_increment,
        worker_batch_per_message
);
main!(library_benchmark_groups = engine);
