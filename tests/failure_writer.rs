//! The file/stdout writer under failure and with its batching options: a write that
//! hangs past the timeout (then finishes, or never does), flush on count, bytes and
//! linger, dedup per key, and zstd frames a reader can decode after a crash.

mod failure_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use corestream::ack::{AckQueue, Watermarks};
use corestream::engine::Engine;
use corestream::message::{Message, Meta, Output};
use corestream::metrics::Counter;
use corestream::processor::PassThrough;
use corestream::retry::ErrorCategory;
use corestream::retry::counters::Outcome;
use corestream::sink::SinkFactory;
use corestream::sink::writer::{Compression, WriterSettings, WriterSinkFactory};

use failure_support::{
    Delivered, GatedWriter, MemoryDeadLetter, assert_settled_exactly_once, generator, resilience,
    settings,
};

const COUNT: u64 = 3_000;

fn timed_writer(gate: &GatedWriter) -> WriterSinkFactory {
    WriterSinkFactory::writer("gated writer", Box::new(gate.clone()), 16 << 10)
        .settings(WriterSettings {
            timeout: Some(Duration::from_millis(50)),
            ..WriterSettings::new(16 << 10)
        })
        .unwrap()
}

/// The generator's payloads start with `{"id":N,`: N is the position.
fn delivered_lines(bytes: &[u8]) -> Vec<Delivered> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| {
            let id = line.strip_prefix("{\"id\":").unwrap().split(',').next().unwrap();
            let key = line.split("\"customer\":\"").nth(1).unwrap().split('"').next().unwrap();
            Delivered { position: id.parse().unwrap(), key: key.as_bytes().to_vec() }
        })
        .collect()
}

#[test]
fn a_write_hanging_past_the_timeout_that_then_finishes_is_delivered_once() {
    let gate = GatedWriter::new(false);
    let dead = Arc::new(MemoryDeadLetter::default());
    let running = Engine::new(
        settings(1),
        generator(COUNT, 30),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(timed_writer(&gate)),
    )
    .dead_letter(dead.clone())
    .resilience(resilience(10_000, 1_000_000))
    .start()
    .unwrap();
    // Release the write only once the worker has seen it time out at least once:
    // the outcome does not depend on how long anything took.
    let timeouts = corestream::metrics::counters::CATEGORY_BASE
        + corestream::retry::counters::retry_counter_index(
            ErrorCategory::Timeout,
            Outcome::Attempt,
        );
    while running.metrics().counters().sum_slot(timeouts) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    gate.open();
    let report = running.join().unwrap();
    let delivered = delivered_lines(&gate.written.lock().unwrap());
    assert_settled_exactly_once(COUNT, &delivered, &dead.0.lock().unwrap());
    let s = &report.snapshot;
    assert!(s.retry(ErrorCategory::Timeout, Outcome::Attempt) >= 1);
    assert_eq!(s.retry(ErrorCategory::Timeout, Outcome::Success), 1, "the in-doubt write landed");
    assert_eq!(s.get(Counter::SinkDeadLettered), 0);
    assert_eq!(s.get(Counter::Batches), s.get(Counter::BatchesAcked));
}

#[test]
fn a_write_that_never_returns_is_dead_lettered_and_the_engine_still_finishes() {
    let gate = GatedWriter::new(true);
    let dead = Arc::new(MemoryDeadLetter::default());
    let report = Engine::new(
        settings(1),
        generator(COUNT, 30),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(timed_writer(&gate)),
    )
    .dead_letter(dead.clone())
    .resilience(resilience(2, 1_000_000))
    .run()
    .expect("a hung sink does not hang the engine");
    // Only now does the blocked write return (with an error): nothing it held lands.
    gate.open();
    let delivered = delivered_lines(&gate.written.lock().unwrap());
    let dead = dead.0.lock().unwrap().clone();
    assert!(!dead.is_empty());
    assert_settled_exactly_once(COUNT, &delivered, &dead);
    assert!(dead.iter().all(|d| d.category == ErrorCategory::Timeout), "{:?}", dead[0]);
    assert!(
        dead[0].reason.contains("did not finish within the timeout of 50ms"),
        "{}",
        dead[0].reason
    );
    let s = &report.snapshot;
    assert_eq!(s.get(Counter::SinkDeadLettered), dead.len() as u64);
    assert_eq!(s.retry(ErrorCategory::Timeout, Outcome::DeadLettered), dead.len() as u64);
    assert_eq!(s.get(Counter::Batches), s.get(Counter::BatchesAcked), "all acknowledged");
}

/// A sink opened on its own, with a ticket queue to watch acknowledgements.
struct Bench {
    sink: Box<dyn corestream::sink::Sink>,
    queue: AckQueue,
}

impl Bench {
    fn new(factory: &WriterSinkFactory) -> Self {
        let queue = AckQueue::with_capacity(64, Arc::new(Watermarks::new(1)));
        Bench { sink: factory.open(0, queue.acker()).unwrap(), queue }
    }

    /// Writes one worker batch of `payloads` (keyed `keys[i]`, positions `first..`).
    fn write(&mut self, first: u64, keys: &[&'static [u8]], payloads: &[&'static [u8]]) {
        let inputs: Vec<Message<'static>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Message {
                payload: p,
                meta: Meta { position: first + i as u64, ..Meta::default() },
                ..Default::default()
            })
            .collect();
        let outputs: Vec<Output<'static>> = payloads
            .iter()
            .zip(keys)
            .enumerate()
            .map(|(i, (p, k))| Output { input: i as u32, key: k, payload: p, ..Default::default() })
            .collect();
        let ticket = self.queue.issue(self.queue.builder());
        self.sink.write_batch(&outputs, &inputs, ticket).unwrap();
    }
}

/// Batching is checked inline (no I/O thread), so a write has happened by the time
/// `write_batch` returns and the assertions do not race with a thread.
fn inline(settings: WriterSettings) -> WriterSettings {
    WriterSettings { timeout: None, ..settings }
}

fn gated_open() -> GatedWriter {
    let gate = GatedWriter::new(false);
    gate.open();
    gate
}

#[test]
fn flush_on_count_bytes_and_linger() {
    // Count: 3 outputs per write. A worker batch is never split: one that would
    // pass the count sends what is buffered first.
    let gate = gated_open();
    let factory = WriterSinkFactory::writer("w", Box::new(gate.clone()), 1 << 20)
        .settings(inline(WriterSettings { flush_records: 3, ..WriterSettings::new(1 << 20) }))
        .unwrap();
    let mut b = Bench::new(&factory);
    b.write(0, &[b"", b""], &[b"a", b"b"]);
    assert!(gate.written.lock().unwrap().is_empty());
    assert_eq!(b.queue.poll(), 0);
    b.write(2, &[b"", b""], &[b"c", b"d"]); // 2 + 2 > 3: "a", "b" go out first
    assert_eq!(&*gate.written.lock().unwrap(), b"a\nb\n");
    assert_eq!(b.queue.poll(), 1);
    b.write(4, &[b""], &[b"e"]); // 2 + 1 = 3: reaches the count, written
    assert_eq!(&*gate.written.lock().unwrap(), b"a\nb\nc\nd\ne\n");
    assert_eq!(b.queue.poll(), 2);

    // Bytes: 8-byte threshold; a batch that would pass it sends the buffer first.
    let gate = gated_open();
    let factory = WriterSinkFactory::writer("w", Box::new(gate.clone()), 8)
        .settings(inline(WriterSettings::new(8)))
        .unwrap();
    let mut b = Bench::new(&factory);
    b.write(0, &[b""], &[b"abc"]); // 4 bytes
    b.write(1, &[b""], &[b"defgh"]); // 4 + 6 > 8: "abc\n" goes out first
    assert_eq!(&*gate.written.lock().unwrap(), b"abc\n");
    assert_eq!(b.queue.poll(), 1);
    b.sink.flush().unwrap();
    assert_eq!(&*gate.written.lock().unwrap(), b"abc\ndefgh\n");

    // Linger: an idle sink keeps a young batch, then writes it once it is old.
    let gate = gated_open();
    let factory = WriterSinkFactory::writer("w", Box::new(gate.clone()), 1 << 20)
        .settings(WriterSettings {
            linger: Some(Duration::from_secs(60)),
            ..WriterSettings::new(1 << 20)
        })
        .unwrap();
    let mut b = Bench::new(&factory);
    b.write(0, &[b""], &[b"young"]);
    assert!(!b.sink.idle().unwrap(), "held: younger than the linger time");
    assert!(gate.written.lock().unwrap().is_empty());
    b.sink.flush().unwrap(); // a full ticket queue or shutdown still forces it
    assert_eq!(&*gate.written.lock().unwrap(), b"young\n");

    let gate = gated_open();
    let factory = WriterSinkFactory::writer("w", Box::new(gate.clone()), 1 << 20)
        .settings(WriterSettings {
            linger: Some(Duration::from_millis(1)),
            ..WriterSettings::new(1 << 20)
        })
        .unwrap();
    let mut b = Bench::new(&factory);
    b.write(0, &[b""], &[b"old"]);
    let written_at = Instant::now();
    while written_at.elapsed() < Duration::from_millis(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(b.sink.idle().unwrap(), "older than the linger time: written");
    assert_eq!(&*gate.written.lock().unwrap(), b"old\n");
    assert_eq!(b.queue.poll(), 1);
}

#[test]
fn dedup_writes_the_latest_output_per_key_and_counts_the_rest() {
    let gate = gated_open();
    let factory = WriterSinkFactory::writer("w", Box::new(gate.clone()), 1 << 20)
        .settings(WriterSettings { dedup: true, ..WriterSettings::new(1 << 20) })
        .unwrap();
    let mut b = Bench::new(&factory);
    b.write(0, &[b"k1", b"k2", b"k1"], &[b"k1=1", b"k2=1", b"k1=2"]);
    b.write(3, &[b"k2", b"", b""], &[b"k2=2", b"keyless", b"keyless"]);
    b.sink.flush().unwrap();
    assert_eq!(&*gate.written.lock().unwrap(), b"k1=2\nk2=2\nkeyless\nkeyless\n");
    assert_eq!(b.sink.take_counts().deduplicated, 2);
    assert_eq!(b.queue.poll(), 2, "superseded outputs are acknowledged with their batch");
    // The window is one write: the same key in the next write is kept.
    b.write(6, &[b"k1"], &[b"k1=3"]);
    b.sink.flush().unwrap();
    assert!(gate.written.lock().unwrap().ends_with(b"k1=3\n"));
}

#[test]
fn zstd_frames_decode_to_every_acknowledged_record_after_a_crash() {
    let dir = std::env::temp_dir().join(format!("corestream-zstd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.ndjson.zst");
    let factory = WriterSinkFactory::file(&path, false, false, 64)
        .unwrap()
        .settings(WriterSettings {
            compression: Compression::Zstd { level: 3 },
            ..WriterSettings::new(64)
        })
        .unwrap();
    let mut b = Bench::new(&factory);
    let lines: [&'static [u8]; 6] = [
        b"{\"n\":1,\"text\":\"a fairly repetitive line\"}",
        b"{\"n\":2,\"text\":\"a fairly repetitive line\"}",
        b"{\"n\":3}",
        b"{\"n\":4,\"text\":\"a fairly repetitive line\"}",
        b"{\"n\":5}",
        b"{\"n\":6}",
    ];
    for (i, line) in lines.iter().enumerate() {
        b.write(i as u64, &[b""], &[line]);
    }
    b.sink.flush().unwrap();
    assert_eq!(b.queue.poll(), 6, "all acknowledged once written");
    // The process dies without closing the sink, in the middle of a write that was
    // never acknowledged: half its frame reached the file.
    std::mem::forget(b.sink);
    let mut bytes = std::fs::read(&path).unwrap();
    let frames_end = bytes.len();
    let torn = zstd::bulk::compress(b"{\"n\":7,\"unacknowledged\":true}\n", 3).unwrap();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    // A reader decodes frame by frame and stops at the torn one.
    let mut decoded = Vec::new();
    let mut rest = &bytes[..];
    let mut frames = 0;
    while !rest.is_empty() {
        let Ok(size) = zstd::zstd_safe::find_frame_compressed_size(rest) else { break };
        if size > rest.len() {
            break;
        }
        decoded.extend(
            zstd::bulk::decompress(&rest[..size], 1 << 20).expect("a complete frame decodes"),
        );
        rest = &rest[size..];
        frames += 1;
    }
    assert!(frames >= 2, "one frame per write ({frames})");
    let expected: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
    assert_eq!(decoded, expected);
    // The standard decoder reads the concatenated complete frames as one stream.
    let whole = zstd::stream::decode_all(&bytes[..frames_end]).unwrap();
    assert_eq!(whole, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}
