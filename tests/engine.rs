//! End-to-end runs of the engine through its library API.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use corestream::engine::{Engine, EngineSettings};
use corestream::message::Message;
use corestream::metrics::Counter;
use corestream::processor::{Emit, PassThrough, Processor};
use corestream::retry::ErrorCategory;
use corestream::sink::dead_letter::FileDeadLetter;
use corestream::sink::null::NullSinkFactory;
use corestream::sink::writer::WriterSinkFactory;
use corestream::source::file::FileSource;
use corestream::source::generator::{GeneratorSettings, GeneratorSource};
use corestream::worker::Placement;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corestream-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings(workers: usize) -> EngineSettings {
    EngineSettings {
        workers,
        ring_bytes: 1 << 16,
        batch_records: 64,
        placement: Placement::Unpinned,
        arena_bytes: 1 << 16,
        record_bytes_max: 1024,
        ..EngineSettings::default()
    }
}

#[test]
fn generator_to_null_counts_every_message() {
    let source = GeneratorSource::new(GeneratorSettings {
        count: Some(200_000),
        keys: 1000,
        message_bytes: 120,
        batch_records: 64,
        ..Default::default()
    })
    .unwrap();
    let report = Engine::new(
        settings(2),
        Box::new(source),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(NullSinkFactory),
    )
    .run()
    .unwrap();
    let s = &report.snapshot;
    assert_eq!(s.get(Counter::Ingested), 200_000);
    assert_eq!(s.get(Counter::MessagesIn), 200_000);
    assert_eq!(s.get(Counter::Outputs), 200_000);
    assert_eq!(s.get(Counter::Filtered), 0);
    assert_eq!(s.get(Counter::Batches), s.get(Counter::BatchesAcked), "every batch acknowledged");
    assert_eq!(s.latency.count, 200_000, "one latency sample per message");
    let per_worker: u64 = s.per_worker.iter().map(|w| w[Counter::MessagesIn as usize]).sum();
    assert_eq!(per_worker, 200_000);
    assert!(
        s.per_worker.iter().all(|w| w[Counter::MessagesIn as usize] > 0),
        "both workers got keys"
    );
}

/// Checks that each key's messages arrive in generation order (ids increase).
struct OrderCheck {
    last_id: HashMap<Vec<u8>, u64>,
    violations: Arc<std::sync::atomic::AtomicU64>,
}

impl Processor for OrderCheck {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        for (i, m) in input.iter().enumerate() {
            let id = m.meta.position;
            let last = self.last_id.entry(m.key.to_vec()).or_insert(0);
            if id <= *last {
                self.violations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            *last = id;
            emit.pass(i as u32, m);
        }
    }
}

#[test]
fn order_per_key_holds_across_workers() {
    let violations = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let v = violations.clone();
    let source = GeneratorSource::new(GeneratorSettings {
        count: Some(100_000),
        keys: 50,
        message_bytes: 100,
        batch_records: 32,
        ..Default::default()
    })
    .unwrap();
    let report = Engine::new(
        settings(2),
        Box::new(source),
        Box::new(move |_| Box::new(OrderCheck { last_id: HashMap::new(), violations: v.clone() })),
        Arc::new(NullSinkFactory),
    )
    .run()
    .unwrap();
    assert_eq!(report.snapshot.get(Counter::MessagesIn), 100_000);
    assert_eq!(
        violations.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a key's messages were reordered"
    );
}

/// Drops lines containing "drop", fails lines containing "bad".
struct DropAndFail;

impl Processor for DropAndFail {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        for (i, m) in input.iter().enumerate() {
            if m.payload.windows(3).any(|w| w == b"bad") {
                emit.fail(i as u32, ErrorCategory::Serialization, "line says bad");
            } else if !m.payload.windows(4).any(|w| w == b"drop") {
                emit.pass(i as u32, m);
            }
        }
    }
}

#[test]
fn file_to_file_delivers_filters_and_dead_letters_every_line() {
    let dir = temp_dir("file");
    let input = dir.join("in.ndjson");
    let mut expected = Vec::new();
    {
        let mut f = std::fs::File::create(&input).unwrap();
        for i in 0..50_000 {
            let line = match i % 10 {
                3 => format!("line {i} drop"),
                7 => format!("line {i} bad"),
                _ => format!("line {i}"),
            };
            if i % 10 != 3 && i % 10 != 7 {
                expected.push(line.clone());
            }
            writeln!(f, "{line}").unwrap();
        }
        // One line longer than record_bytes_max (1024): dead-lettered at the source.
        writeln!(f, "{}", "x".repeat(5000)).unwrap();
        write!(f, "last line without newline").unwrap();
        expected.push("last line without newline".into());
    }
    let output = dir.join("out.ndjson");
    let dlq = dir.join("dlq.ndjson");
    let checkpoint = dir.join("in.ckpt");
    let source =
        FileSource::new(&input, Some(&checkpoint), std::time::Duration::from_millis(10), 1024)
            .unwrap();
    let sink = WriterSinkFactory::file(&output, false, false, 4096).unwrap();
    let report = Engine::new(
        settings(2),
        Box::new(source),
        Box::new(|_| Box::new(DropAndFail)),
        Arc::new(sink),
    )
    .dead_letter(Arc::new(FileDeadLetter::open(&dlq).unwrap()))
    .run()
    .unwrap();
    let s = &report.snapshot;
    assert_eq!(s.get(Counter::Ingested), 50_001);
    assert_eq!(s.get(Counter::SourceRejected), 1);
    // Every input counted in once: the 50,001 put into rings and the refused line.
    assert_eq!(s.get(Counter::MessagesIn), 50_002);
    assert_eq!(s.get(Counter::Filtered), 5_000);
    assert_eq!(s.get(Counter::ProcessorFailed), 5_000);
    assert_eq!(s.get(Counter::DeadLettered), 5_001);
    assert_eq!(s.get(Counter::Outputs) as usize, expected.len());

    let mut got: Vec<String> =
        std::fs::read_to_string(&output).unwrap().lines().map(String::from).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "output is exactly the kept lines");
    let dead = std::fs::read_to_string(&dlq).unwrap();
    assert_eq!(dead.lines().count(), 5_001);
    assert!(dead.contains("\"category\":\"message_too_large\""));
    let file_len = std::fs::metadata(&input).unwrap().len();
    let ckpt = corestream::ack::checkpoint::load(&checkpoint).unwrap().unwrap();
    assert_eq!(ckpt.position, file_len, "final checkpoint covers the whole file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn impossible_settings_are_refused_before_starting() {
    let mut s = settings(0);
    let err = s.validate().unwrap_err();
    assert_eq!(err.setting, "workers");
    s = settings(1);
    s.ring_bytes = 4096;
    s.record_bytes_max = 4096;
    let err = s.validate().unwrap_err();
    assert_eq!(err.setting, "ring_bytes");
    assert!(err.hint.contains("at least"), "{err}");
}

/// Collects every payload (for checking the generator's output).
/// (key, payload) pairs seen by the processor.
type Seen = Arc<std::sync::Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

struct Collect(Seen);

impl Processor for Collect {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        let mut seen = self.0.lock().unwrap();
        for (i, m) in input.iter().enumerate() {
            seen.push((m.key.to_vec(), m.payload.to_vec()));
            emit.pass(i as u32, m);
        }
    }
}

#[test]
fn generator_writes_valid_orders_of_the_requested_size_keyed_by_customer() {
    for (message_bytes, keys) in [(100usize, 10u64), (200, 50_000), (1000, 0)] {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let source = GeneratorSource::new(GeneratorSettings {
            count: Some(20_000),
            keys,
            message_bytes,
            batch_records: 64,
            ..Default::default()
        })
        .unwrap();
        Engine::new(
            settings(2),
            Box::new(source),
            Box::new(move |_| Box::new(Collect(s2.clone()))),
            Arc::new(NullSinkFactory),
        )
        .run()
        .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 20_000);
        let mut ids = std::collections::HashSet::new();
        for (key, payload) in seen.iter() {
            let order: serde_json::Value = serde_json::from_slice(payload).expect("valid JSON");
            assert!(ids.insert(order["id"].as_u64().unwrap()), "ids are unique");
            for field in ["region", "status", "currency"] {
                assert!(order[field].is_string(), "{field} in {order}");
            }
            assert!(order["amount"].is_f64());
            if keys > 0 {
                assert_eq!(
                    order["customer"].as_str().unwrap().as_bytes(),
                    &key[..],
                    "key is the customer"
                );
            } else {
                assert!(key.is_empty());
            }
            if message_bytes >= 200 {
                assert_eq!(payload.len(), message_bytes, "padded to the requested size");
            }
        }
    }
}

/// Breaks the processor contract in every batch: passes input 0, fails input 0
/// again (already emitted), emits an output naming an input outside the batch, and
/// leaves every other input without a decision.
struct BrokenContract;

impl Processor for BrokenContract {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        emit.pass(0, &input[0]);
        emit.fail(0, ErrorCategory::Serialization, "contradicts the pass");
        emit.emit(corestream::message::Output {
            input: input.len() as u32 + 7,
            payload: b"names no input",
            ..Default::default()
        });
    }

    fn name(&self) -> &str {
        "broken_contract"
    }
}

#[test]
fn a_processor_bug_is_counted_and_its_inputs_dead_lettered_not_filtered() {
    let dir = temp_dir("processor-bug");
    let dlq = dir.join("dlq.ndjson");
    let source = GeneratorSource::new(GeneratorSettings {
        count: Some(10_000),
        keys: 100,
        message_bytes: 64,
        batch_records: 64,
        ..Default::default()
    })
    .unwrap();
    let result = Engine::new(
        settings(1),
        Box::new(source),
        Box::new(|_| Box::new(BrokenContract)),
        Arc::new(NullSinkFactory),
    )
    .dead_letter(Arc::new(FileDeadLetter::open(&dlq).unwrap()))
    .run();
    if cfg!(debug_assertions) {
        // Asserted in debug builds: the worker stops at the first broken batch.
        assert!(result.is_err(), "a debug build asserts the contract");
        return;
    }
    let s = result.unwrap().snapshot;
    let batches = s.get(Counter::Batches);
    assert_eq!(s.get(Counter::MessagesIn), 10_000);
    assert_eq!(s.get(Counter::ProcessorBugs), 2 * batches, "two bugs per batch");
    assert_eq!(s.get(Counter::Filtered), 0, "a bug is never called filtered");
    assert_eq!(s.get(Counter::Outputs), batches, "the out-of-range output is dropped");
    assert_eq!(s.get(Counter::DeadLettered), 10_000 - batches);
    let dead = std::fs::read_to_string(&dlq).unwrap();
    assert_eq!(dead.lines().count() as u64, 10_000 - batches);
    assert!(dead.contains("processor bug"), "{:.200}", dead);
}
