//! Linking corestream as a library: compile the reference "orders" pipeline (or a step
//! list of your own) and run it over an NDJSON file in batches, with one reused arena.
//!
//!     cargo run --release --no-default-features --example orders_pipeline -- /tmp/orders.ndjson
//!
//! Prints the compiled pipeline, then the kept / filtered / failed counts and the first
//! few outputs and failures.

use bumpalo::Bump;
use corestream::message::Message;
use corestream::processor::{Emit, Processor};
use corestream::transform::orders::orders_pipeline;

/// Messages per batch (the worker's default).
const BATCH: usize = 512;
/// Outputs and failures printed as samples.
const SAMPLES: usize = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "/tmp/orders.ndjson".into());
    let data = std::fs::read(&path)?;
    let mut pipeline = orders_pipeline()?;
    println!("{pipeline}");
    let lines: Vec<&[u8]> =
        data.strip_suffix(b"\n").unwrap_or(&data).split(|&b| b == b'\n').collect();
    let mut arena = Bump::with_capacity(4 << 20);
    let (mut kept, mut failed, mut shown_out, mut shown_err) = (0usize, 0usize, 0usize, 0usize);
    for (batch, chunk) in lines.chunks(BATCH).enumerate() {
        arena.reset();
        let input: Vec<Message<'_>> =
            chunk.iter().map(|l| Message { payload: l, ..Default::default() }).collect();
        let mut outputs = bumpalo::collections::Vec::new_in(&arena);
        let mut failures = bumpalo::collections::Vec::new_in(&arena);
        let mut emit = Emit::new(&arena, &mut outputs, &mut failures);
        pipeline.process(&input, &mut emit);
        for o in emit.outputs().iter().take(SAMPLES.saturating_sub(shown_out)) {
            println!("{} <- {}", o.topic, String::from_utf8_lossy(o.payload));
            shown_out += 1;
        }
        for f in emit.failures().iter().take(SAMPLES.saturating_sub(shown_err)) {
            println!(
                "line {}: {} ({})",
                batch * BATCH + f.input as usize + 1,
                f.reason,
                f.category.name()
            );
            shown_err += 1;
        }
        kept += emit.outputs().len();
        failed += emit.failures().len();
    }
    println!(
        "lines={} kept={kept} filtered={} failed={failed}",
        lines.len(),
        lines.len() - kept - failed
    );
    Ok(())
}
