//! A hand-optimised single-threaded "orders" pipeline: the whole file in memory, each
//! line deserialised by serde_json into a struct of borrowed strings (`Cow`, borrowed
//! unless the string has an escape), the filter and route in plain Rust, the output
//! written with `write!` into two reused buffers. No tree, no per-message `String`
//! except for escaped strings. Same outputs as corestream's (compare the checksum).
//!
//! Run: `cargo bench --no-default-features --bench compare_serde_struct -- /tmp/orders.ndjson`

mod common;

use std::borrow::Cow;
use std::io::Write;
use std::time::Instant;

use common::{Counting, Totals, allocations, output_hash};
use serde::Deserialize;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Deserialize)]
struct Order<'a> {
    id: u64,
    #[serde(borrow)]
    region: Cow<'a, str>,
    #[serde(borrow)]
    customer: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    amount: f64,
    #[serde(borrow)]
    currency: Cow<'a, str>,
}

/// Writes `s` as a JSON string exactly as serde_json does.
fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn main() {
    let args = common::args();
    let data = common::load(&args);
    let mut totals = Totals::default();
    let mut topic: Vec<u8> = Vec::with_capacity(256);
    let mut payload: Vec<u8> = Vec::with_capacity(1024);
    let allocations_before = allocations();
    let start = Instant::now();
    for line in data.strip_suffix(b"\n").unwrap_or(&data).split(|&b| b == b'\n') {
        totals.lines += 1;
        totals.input_bytes += line.len() as u64 + 1;
        let order: Order<'_> = match serde_json::from_slice(line) {
            Ok(o) => o,
            Err(_) => {
                totals.errors += 1;
                continue;
            }
        };
        if !(order.status == "paid" && order.amount > 100.0) {
            continue;
        }
        topic.clear();
        write!(topic, "orders.{}.{}", order.region, order.currency).expect("Vec write");
        payload.clear();
        write!(payload, r#"{{"id":{},"customer":"#, order.id).expect("Vec write");
        json_str(&mut payload, &order.customer);
        write!(payload, r#","amount_cents":{},"region":"#, (order.amount * 100.0).round() as i64)
            .expect("Vec write");
        json_str(&mut payload, &order.region);
        payload.extend_from_slice(br#","topic":"#);
        json_str(&mut payload, std::str::from_utf8(&topic).expect("topic is UTF-8"));
        payload.push(b'}');
        totals.matched += 1;
        totals.output_bytes += payload.len() as u64;
        totals.checksum = totals.checksum.wrapping_add(output_hash(&topic, &payload));
    }
    let elapsed = start.elapsed();
    common::report(
        "serde_json struct (1 thread)",
        &totals,
        elapsed,
        allocations() - allocations_before,
    );
}
