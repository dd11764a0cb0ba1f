//! The zero-allocation claim, proved: after warm-up, a million messages and more go
//! through the engine without a single heap allocation anywhere in the process.
//!
//! A counting global allocator counts every allocation of every thread. The test
//! thread polls the engine's counters (allocation-free) and reads the allocation
//! count at two points of the run, at least 1M messages apart. While `/metrics` and
//! `/stats` are scraped in a loop, the same holds: the observe server's threads and
//! the scraping thread allocate per request and leave the count
//! (`metrics::alloc::leave_current_thread_uncounted`); the source, the workers and
//! the sinks still count. A `memory_limit` is set (far above what is used), so the
//! source's resident-memory samples count too.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use corestream::engine::{Engine, EngineSettings, RunningEngine};
use corestream::message::{Message, Output};
use corestream::metrics::Counter;
use corestream::metrics::alloc::{CountingAllocator, allocations};
use corestream::processor::{Emit, PassThrough, Processor};
use corestream::sink::null::NullSinkFactory;
use corestream::sink::writer::WriterSinkFactory;
use corestream::source::file::FileSource;
use corestream::source::generator::{GeneratorSettings, GeneratorSource};
use corestream::worker::Placement;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// The allocator counts the whole process: the tests of this file take turns so
/// one test's setup (writing its input file) cannot count in another's window.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const WARM_UP_MESSAGES: u64 = 300_000;
const MEASURED_MESSAGES: u64 = 1_200_000;

fn settings() -> EngineSettings {
    EngineSettings {
        workers: 2,
        placement: Placement::Unpinned,
        ring_bytes: 1 << 20,
        record_bytes_max: 64 << 10,
        // Never reached: the source samples its resident memory every 10 ms, and
        // that counts in the window too.
        memory_limit: Some(64 << 30),
        ..EngineSettings::default()
    }
}

/// Allocations made while the engine processed `MEASURED_MESSAGES` messages after
/// `WARM_UP_MESSAGES` of warm-up. Polls without allocating.
fn allocations_in_steady_state(engine: &RunningEngine) -> (u64, u64) {
    let counters = engine.metrics().counters();
    let wait_for = |n: u64| {
        while counters.sum(Counter::MessagesIn) < n {
            assert!(!engine.is_finished(), "engine ended before {n} messages");
            std::thread::sleep(Duration::from_micros(200));
        }
        counters.sum(Counter::MessagesIn)
    };
    let start_messages = wait_for(WARM_UP_MESSAGES);
    let start = allocations();
    let end_messages = wait_for(start_messages + MEASURED_MESSAGES);
    let end = allocations();
    (end - start, end_messages - start_messages)
}

#[test]
fn generator_to_processor_to_null_allocates_nothing_per_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let source = GeneratorSource::new(GeneratorSettings {
        count: Some(6_000_000),
        keys: 10_000,
        message_bytes: 200,
        ..Default::default()
    })
    .unwrap();
    let engine = Engine::new(
        settings(),
        Box::new(source),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(NullSinkFactory),
    )
    .start()
    .unwrap();
    let (allocated, messages) = allocations_in_steady_state(&engine);
    let report = engine.join().unwrap();
    assert!(messages >= MEASURED_MESSAGES);
    assert_eq!(allocated, 0, "{allocated} allocations during {messages} messages");
    assert_eq!(report.snapshot.get(Counter::MessagesIn), 6_000_000);
}

/// Rewrites each line into the arena (upper-cases it): exercises arena reuse.
struct Upper;

impl Processor for Upper {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        let arena = emit.arena();
        for (i, m) in input.iter().enumerate() {
            let payload = arena.alloc_slice_copy(m.payload);
            payload.make_ascii_uppercase();
            emit.emit(Output { input: i as u32, payload, ..Default::default() });
        }
    }
}

#[test]
fn file_to_processor_to_file_allocates_nothing_per_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("corestream-zero-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.ndjson");
    let lines = 3_000_000u64;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..lines {
            writeln!(f, "{{\"id\":{i},\"status\":\"paid\",\"amount\":{}.25}}", i % 1000).unwrap();
        }
    }
    let output = dir.join("out.ndjson");
    let source = FileSource::new(&input, None, Duration::from_secs(1), 64 << 10).unwrap();
    let sink = WriterSinkFactory::file(&output, false, false, 256 << 10).unwrap();
    let engine =
        Engine::new(settings(), Box::new(source), Box::new(|_| Box::new(Upper)), Arc::new(sink))
            .start()
            .unwrap();
    let (allocated, messages) = allocations_in_steady_state(&engine);
    let report = engine.join().unwrap();
    assert_eq!(allocated, 0, "{allocated} allocations during {messages} messages");
    assert_eq!(report.snapshot.get(Counter::Outputs), lines);
    let written = std::fs::metadata(&output).unwrap().len();
    assert_eq!(written, std::fs::metadata(&input).unwrap().len(), "every byte written back");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// GETs `path` and returns the status code (allocates; run it uncounted).
fn scrape(address: std::net::SocketAddr, path: &str) -> u16 {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn generator_to_null_allocates_nothing_per_message_while_metrics_are_scraped() {
    use corestream::observe::{Attached, ObserveServer, ObserveSettings};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = ObserveServer::start(&ObserveSettings {
        address: "127.0.0.1:0".parse().unwrap(),
        ..ObserveSettings::default()
    })
    .unwrap();
    let source = GeneratorSource::new(GeneratorSettings {
        count: None,
        keys: 10_000,
        message_bytes: 200,
        ..Default::default()
    })
    .unwrap();
    let engine = Engine::new(
        settings(),
        Box::new(source),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(NullSinkFactory),
    )
    .start()
    .unwrap();
    server.attach(Attached {
        metrics: engine.metrics().clone(),
        source: "generator".into(),
        sink: "null".into(),
    });
    let scrapes = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let address = server.address();
    let scraper = {
        let (scrapes, done) = (scrapes.clone(), done.clone());
        std::thread::spawn(move || {
            corestream::metrics::alloc::leave_current_thread_uncounted();
            while !done.load(Ordering::Relaxed) {
                assert_eq!(scrape(address, "/metrics"), 200);
                assert_eq!(scrape(address, "/stats"), 200);
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The window spans at least MEASURED_MESSAGES messages and 20 scrapes of both.
    let counters = engine.metrics().counters();
    let wait_for = |messages: u64, scraped: u64| {
        while counters.sum(Counter::MessagesIn) < messages
            || scrapes.load(Ordering::Relaxed) < scraped
        {
            assert!(!engine.is_finished(), "engine ended early");
            std::thread::sleep(Duration::from_micros(200));
        }
        (counters.sum(Counter::MessagesIn), scrapes.load(Ordering::Relaxed))
    };
    let (start_messages, start_scrapes) = wait_for(WARM_UP_MESSAGES, 1);
    let start = allocations();
    let (end_messages, end_scrapes) =
        wait_for(start_messages + MEASURED_MESSAGES, start_scrapes + 20);
    let end = allocations();
    done.store(true, Ordering::Relaxed);
    scraper.join().unwrap();
    engine.stop();
    engine.join().unwrap();
    let (allocated, messages) = (end - start, end_messages - start_messages);
    assert!(end_scrapes - start_scrapes >= 20);
    assert_eq!(
        allocated,
        0,
        "{allocated} allocations during {messages} messages and {} scrapes",
        end_scrapes - start_scrapes
    );
}
