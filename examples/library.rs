//! Linking corestream as a library: your own `Processor`, built-in source and sink.
//!
//! Run: `cargo run --release --example library`
//!
//! The processor keeps paid orders and wraps each in a small envelope built in the
//! worker's arena (no heap allocation per message), and fails messages that are not
//! JSON objects (they go to the dead-letter path with a reason).

use std::sync::Arc;

use bumpalo::collections::Vec as BumpVec;
use corestream::engine::{Engine, EngineSettings};
use corestream::message::{Message, Output};
use corestream::metrics::Counter;
use corestream::processor::{Emit, Processor};
use corestream::retry::ErrorCategory;
use corestream::sink::null::NullSinkFactory;
use corestream::source::generator::{GeneratorSettings, GeneratorSource};

/// Keeps `"status":"paid"` orders, wrapped as `{"paid":<order>}`.
struct PaidOnly;

impl Processor for PaidOnly {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        for (index, message) in input.iter().enumerate() {
            let index = index as u32;
            if !message.payload.starts_with(b"{") {
                emit.fail(index, ErrorCategory::Serialization, "not a JSON object");
                continue;
            }
            if !contains(message.payload, b"\"status\":\"paid\"") {
                continue; // filtered: counted and acknowledged, not delivered
            }
            let mut payload = BumpVec::with_capacity_in(message.payload.len() + 9, emit.arena());
            payload.extend_from_slice(b"{\"paid\":");
            payload.extend_from_slice(message.payload);
            payload.push(b'}');
            emit.emit(Output {
                input: index,
                topic: "orders.paid",
                key: message.key,
                payload: payload.into_bump_slice(),
                headers: message.headers,
            });
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn main() {
    let source =
        GeneratorSource::new(GeneratorSettings { count: Some(2_000_000), ..Default::default() })
            .expect("valid generator settings");
    let engine = Engine::new(
        EngineSettings::default(),
        Box::new(source),
        Box::new(|_worker| Box::new(PaidOnly)),
        Arc::new(NullSinkFactory),
    );
    let report = engine.run().expect("the run completes");
    let s = &report.snapshot;
    println!(
        "{} messages in {:.2}s: {} paid orders delivered, {} filtered, {} dead-lettered; latency p99 {:?}",
        s.get(Counter::MessagesIn),
        s.elapsed.as_secs_f64(),
        s.get(Counter::Outputs),
        s.get(Counter::Filtered),
        s.get(Counter::DeadLettered),
        std::time::Duration::from_nanos(s.latency.p99)
    );
    assert_eq!(
        s.get(Counter::MessagesIn),
        s.get(Counter::Outputs) + s.get(Counter::Filtered) + s.get(Counter::DeadLettered)
    );
}
