//! Instruction counts of the failure-handling success path: what the resilient
//! wrapper adds to a sink write (against the bare null sink), what the batching
//! writer costs per message (plain and with dedup), and one adaptive batch-size
//! step. Each benchmark checks its answer after the measured call.
//!
//! Hard limits (Callgrind Ir; DHAT total blocks = 0) are in the code; measured
//! figures are in benches/README.md.
//! Run: `cargo bench --no-default-features --bench failure`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use corestream::ack::{AckQueue, Watermarks};
use corestream::message::{Message, Meta, Output};
use corestream::metrics::ShardedCounters;
use corestream::sink::dead_letter::LogDeadLetter;
use corestream::sink::null::NullSinkFactory;
use corestream::sink::writer::{WriterSettings, WriterSinkFactory};
use corestream::sink::{Resilience, ResilientSinkFactory, Sink, SinkFactory};
use corestream::worker::{BatchSizer, BatchSizing};
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

const BATCH: usize = 512;
static PAYLOAD: [u8; 100] = [b'p'; 100];
/// 64 distinct keys: with dedup, most outputs of a batch supersede an earlier one.
static KEYS: [[u8; 8]; 64] = {
    let mut keys = [*b"c-000000"; 64];
    let mut i = 0;
    while i < 64 {
        keys[i][6] = b'0' + (i / 10) as u8;
        keys[i][7] = b'0' + (i % 10) as u8;
        i += 1;
    }
    keys
};

/// A sink, its ticket queue, and one batch of 512 outputs of 100 bytes.
struct Setup {
    sink: Box<dyn Sink>,
    queue: AckQueue,
    inputs: Vec<Message<'static>>,
    outputs: Vec<Output<'static>>,
}

fn setup(sink: fn(&AckQueue) -> Box<dyn Sink>) -> Setup {
    let queue = AckQueue::with_capacity(8, Arc::new(Watermarks::new(1)));
    let sink = sink(&queue);
    let inputs: Vec<Message<'static>> = (0..BATCH)
        .map(|i| Message {
            key: &KEYS[i % 64],
            payload: &PAYLOAD,
            meta: Meta { position: i as u64, ..Meta::default() },
            ..Default::default()
        })
        .collect();
    let outputs = inputs
        .iter()
        .enumerate()
        .map(|(i, m)| Output {
            input: i as u32,
            key: m.key,
            payload: m.payload,
            ..Default::default()
        })
        .collect();
    let mut s = Setup { sink, queue, inputs, outputs };
    // Warm-up batch: first touches of buffers, then everything acknowledged.
    let ticket = s.queue.issue(s.queue.builder());
    s.sink.write_batch(&s.outputs, &s.inputs, ticket).expect("warm-up write");
    s.sink.flush().expect("warm-up flush");
    assert_eq!(s.queue.poll(), 1);
    s
}

fn null_sink(queue: &AckQueue) -> Box<dyn Sink> {
    NullSinkFactory.open(0, queue.acker()).expect("null sink")
}

fn resilient_null_sink(queue: &AckQueue) -> Box<dyn Sink> {
    ResilientSinkFactory::new(
        Arc::new(NullSinkFactory),
        Resilience::default(),
        Arc::new(LogDeadLetter::default()),
        Arc::new(ShardedCounters::new(1)),
    )
    .expect("factory")
    .open(0, queue.acker())
    .expect("resilient sink")
}

fn writer_sink(queue: &AckQueue) -> Box<dyn Sink> {
    WriterSinkFactory::writer("io::sink", Box::new(std::io::sink()), 1 << 20)
        .open(0, queue.acker())
        .expect("writer")
}

fn writer_dedup_sink(queue: &AckQueue) -> Box<dyn Sink> {
    WriterSinkFactory::writer("io::sink", Box::new(std::io::sink()), 1 << 20)
        .settings(WriterSettings { dedup: true, ..WriterSettings::new(1 << 20) })
        .expect("settings")
        .open(0, queue.acker())
        .expect("writer")
}

// One `write_batch` of 512 outputs. null: the engine's cheapest sink, bare and
// inside the resilient wrapper (the difference is the wrapper's cost per batch).
// writer: the file/stdout sink's append into its batch buffer (no write(2) in the
// measured call); per message: the reported Ir / 512.
#[library_benchmark]
#[bench::null(args = (null_sink), setup = setup, config = no_alloc_and_at_most(1_800))]
#[bench::resilient_null(args = (resilient_null_sink), setup = setup, config = no_alloc_and_at_most(1_900))]
#[bench::writer(args = (writer_sink), setup = setup, config = no_alloc_and_at_most(BATCH as u64 * 170))]
#[bench::writer_dedup(args = (writer_dedup_sink), setup = setup, config = no_alloc_and_at_most(BATCH as u64 * 450))]
fn write_batch_512(mut s: Setup) -> Setup {
    let ticket = s.queue.issue(s.queue.builder());
    s.sink.write_batch(black_box(&s.outputs), &s.inputs, ticket).expect("write");
    assert!(s.queue.in_flight() <= 1);
    s
}

// One adaptive batch-size step (the worker calls it once per batch).
#[library_benchmark]
#[bench::grow(setup = setup_sizer, config = no_alloc_and_at_most(40))]
fn batch_sizer_observe(mut sizer: BatchSizer) -> BatchSizer {
    assert!(sizer.observe(black_box(512), black_box(10_000)));
    assert_eq!(sizer.records(), 576);
    sizer
}

fn setup_sizer() -> BatchSizer {
    BatchSizer::adaptive(
        512,
        BatchSizing { records_min: 64, records_max: 4096, time_target: Duration::from_millis(1) },
    )
}

library_benchmark_group!(name = failure; benchmarks = write_batch_512, batch_sizer_observe);
main!(library_benchmark_groups = failure);
