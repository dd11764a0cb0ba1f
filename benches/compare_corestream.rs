//! The "orders" pipeline through corestream's compiled chain, single-threaded: the
//! whole file in memory, split into lines, `Processor::process` on batches of 512 with
//! one reused arena (as a worker runs it). Reports msgs/s, MB/s, allocations per
//! message (steady state: 0), and the output checksum the `compare_*` programs share.
//!
//! Run: `cargo bench --no-default-features --bench compare_corestream -- /tmp/orders.ndjson`

mod common;

use std::time::Instant;

use bumpalo::Bump;
use common::{Counting, Totals, allocations, output_hash};
use corestream::message::Message;
use corestream::processor::{Emit, Processor};
use corestream::transform::orders::orders_pipeline;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Messages per batch (the worker's default).
const BATCH: usize = 512;

fn run_batch<'d>(
    pipeline: &mut corestream::transform::pipeline::Pipeline,
    chunk: &[&'d [u8]],
    messages: &mut Vec<Message<'d>>,
    arena: &mut Bump,
    totals: &mut Totals,
) {
    arena.reset();
    messages.clear();
    messages.extend(chunk.iter().map(|l| Message { payload: l, ..Default::default() }));
    let mut outputs = bumpalo::collections::Vec::with_capacity_in(BATCH, &*arena);
    let mut failures = bumpalo::collections::Vec::with_capacity_in(BATCH, &*arena);
    let mut emit = Emit::new(arena, &mut outputs, &mut failures);
    pipeline.process(messages, &mut emit);
    for o in emit.outputs() {
        totals.output_bytes += o.payload.len() as u64;
        totals.checksum = totals.checksum.wrapping_add(output_hash(o.topic.as_bytes(), o.payload));
    }
    totals.matched += emit.outputs().len() as u64;
    totals.errors += emit.failures().len() as u64;
    totals.lines += chunk.len() as u64;
    totals.input_bytes += chunk.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
}

fn main() {
    let args = common::args();
    let data = common::load(&args);
    let lines: Vec<&[u8]> =
        data.strip_suffix(b"\n").unwrap_or(&data).split(|&b| b == b'\n').collect();
    let mut pipeline = orders_pipeline().expect("the reference pipeline compiles");
    let mut arena = Bump::with_capacity(4 << 20);
    let mut messages: Vec<Message<'_>> = Vec::with_capacity(BATCH);
    let mut totals = Totals::default();
    // One warm-up batch grows the scratch buffers to their steady size.
    let mut warm = Totals::default();
    run_batch(
        &mut pipeline,
        &lines[..BATCH.min(lines.len())],
        &mut messages,
        &mut arena,
        &mut warm,
    );
    let allocations_before = allocations();
    let start = Instant::now();
    for chunk in lines.chunks(BATCH) {
        run_batch(&mut pipeline, chunk, &mut messages, &mut arena, &mut totals);
    }
    let elapsed = start.elapsed();
    common::report("corestream (1 thread)", &totals, elapsed, allocations() - allocations_before);
}
