//! The common hand-written "orders" pipeline: a reader thread reads lines and sends
//! them over a bounded crossbeam channel to 2 worker threads; each worker parses the
//! line into a `serde_json::Value`, filters, and builds the topic and the payload with
//! `format!`. Outputs go to a null sink (counted and checksummed). Same outputs as
//! corestream's (compare the checksum).
//!
//! Run: `cargo bench --no-default-features --bench compare_channel_value -- /tmp/orders.ndjson`

mod common;

use std::io::BufRead;
use std::time::Instant;

use common::{Counting, Totals, allocations, output_hash};
use serde_json::Value;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Worker threads (the machine has 2 cores).
const WORKERS: usize = 2;
/// Lines in flight between the reader and the workers.
const CHANNEL_CAPACITY: usize = 4096;

fn process(line: &str, totals: &mut Totals) {
    totals.lines += 1;
    totals.input_bytes += line.len() as u64 + 1;
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(_) => {
            totals.errors += 1;
            return;
        }
    };
    let fields = (
        v.get("id").and_then(Value::as_u64),
        v.get("region").and_then(Value::as_str),
        v.get("customer").and_then(Value::as_str),
        v.get("status").and_then(Value::as_str),
        v.get("amount").and_then(Value::as_f64),
        v.get("currency").and_then(Value::as_str),
    );
    let (Some(id), Some(region), Some(customer), Some(status), Some(amount), Some(currency)) =
        fields
    else {
        totals.errors += 1;
        return;
    };
    if !(status == "paid" && amount > 100.0) {
        return;
    }
    let topic = format!("orders.{region}.{currency}");
    let payload = format!(
        r#"{{"id":{id},"customer":{},"amount_cents":{},"region":{},"topic":{}}}"#,
        Value::from(customer),
        (amount * 100.0).round() as i64,
        Value::from(region),
        Value::from(topic.as_str()),
    );
    totals.matched += 1;
    totals.output_bytes += payload.len() as u64;
    totals.checksum =
        totals.checksum.wrapping_add(output_hash(topic.as_bytes(), payload.as_bytes()));
}

fn main() {
    let args = common::args();
    let path = args.path.clone();
    let limit = args.lines;
    // The file is read once up front into the page cache so that both programs start
    // from memory-speed reads.
    drop(common::load(&args));
    let allocations_before = allocations();
    let start = Instant::now();
    let (tx, rx) = crossbeam::channel::bounded::<String>(CHANNEL_CAPACITY);
    let reader = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("dataset opens");
        for line in std::io::BufReader::with_capacity(1 << 20, file).lines().take(limit) {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let rx = rx.clone();
            std::thread::spawn(move || {
                let mut totals = Totals::default();
                for line in rx {
                    process(&line, &mut totals);
                }
                totals
            })
        })
        .collect();
    drop(rx);
    reader.join().expect("reader thread");
    let mut totals = Totals::default();
    for w in workers {
        totals.add(&w.join().expect("worker thread"));
    }
    let elapsed = start.elapsed();
    common::report(
        "reader + crossbeam + Value + format! (2 workers)",
        &totals,
        elapsed,
        allocations() - allocations_before,
    );
}
