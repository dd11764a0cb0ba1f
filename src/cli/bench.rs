//! `corestream bench`: generator (or a file) -> processor -> null, measured.
//!
//! Reports messages/s, MB/s, ingest->sink latency percentiles, allocations per
//! message and a per-worker breakdown; `--json` prints one object instead.
//! Allocations are counted by the binary's counting global allocator over the
//! steady-state window (from 10% to 90% of the messages), so start-up allocations
//! (rings, arenas, threads) are excluded, as the zero-allocation test does.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use super::report::{Progress, human, human_ns};
use super::{EXIT_CONFIG, EXIT_IO, EXIT_OK, EXIT_RUNTIME};
use crate::engine::{Engine, EngineSettings, ProcessorFactory};
use crate::metrics::Counter;
use crate::metrics::alloc;
use crate::processor::PassThrough;
use crate::sink::null::NullSinkFactory;
use crate::source::Source;
use crate::source::file::FileSource;
use crate::source::generator::{GeneratorSettings, GeneratorSource};
use crate::worker::{Pinned, Placement};

/// Processors the bench can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchProcessor {
    /// Every message passes unchanged: measures the engine itself.
    Passthrough,
    /// The reference "orders" pipeline (filter, route, map).
    Orders,
}

#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Messages to generate (ignored with --input).
    #[arg(long, default_value_t = 20_000_000)]
    pub messages: u64,
    /// Generated payload size in bytes: messages are padded up to it, and are never
    /// shorter than an order's fields (~100-130 bytes); the result reports the mean.
    #[arg(long, default_value_t = 100)]
    pub message_bytes: usize,
    /// Records per batch (ring publish and worker batch).
    #[arg(long, default_value_t = crate::limits::BATCH_RECORDS_DEFAULT)]
    pub batch: usize,
    /// Distinct keys (0: keyless, round-robin).
    #[arg(long, default_value_t = 50_000)]
    pub keys: u64,
    /// Ring size per worker, in bytes (power of two).
    #[arg(long, default_value_t = crate::limits::RING_BYTES_DEFAULT)]
    pub ring_bytes: usize,
    /// Processor to run.
    #[arg(long, value_enum, default_value_t = BenchProcessor::Passthrough)]
    pub processor: BenchProcessor,
    /// Read this newline-delimited file instead of generating messages.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Do not pin workers to cores.
    #[arg(long)]
    pub unpinned: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write the outputs to this file (the file sink) instead of the null sink.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// With --output: the write timeout (default 30s; writes run on a per-worker
    /// I/O thread).
    #[arg(long, value_parser = parse_duration_arg, requires = "output", conflicts_with = "sink_inline")]
    pub sink_timeout: Option<Duration>,
    /// With --output: write inline on the worker thread, without a timeout.
    #[arg(long, requires = "output")]
    pub sink_inline: bool,
    /// Adapt each worker's batch size toward this batch time ("1ms").
    #[arg(long, value_parser = parse_duration_arg)]
    pub batch_time_target: Option<Duration>,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    crate::parse::duration::parse_duration(text)
        .map_err(|e| format!("{}\n{}", e.reason, e.caret(text)))
}

/// Figures of one bench run.
#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    pub messages: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    pub bytes_per_sec: f64,
    pub message_bytes_mean: f64,
    /// `null` when the counting allocator is not installed.
    pub allocations_per_message: Option<f64>,
    /// "steady_state" (10%..90% of the run) or "whole_run" (too short to sample).
    pub allocation_window: &'static str,
    pub latency_ns: crate::metrics::LatencySummary,
    pub workers: usize,
    pub per_worker: Vec<WorkerFigures>,
    pub outputs: u64,
    pub filtered: u64,
    pub dead_lettered: u64,
    pub processor: String,
    pub source: String,
    /// "null", or "file PATH" with --output.
    pub sink: String,
    pub batch_records: usize,
    /// True when every worker ended up pinned to a core (not merely requested).
    pub pinned: bool,
    /// Workers that ended up pinned.
    pub pinned_workers: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct WorkerFigures {
    pub worker: usize,
    pub messages: u64,
    pub share: f64,
    /// Records per batch at the end (adaptive batch size, or the fixed size).
    pub batch_records: u64,
    /// Whether this worker actually runs pinned to a core.
    pub pinned: bool,
    /// The core it is pinned to.
    pub core: Option<usize>,
    /// The pinning outcome: "core", "not_requested", "refused" (by the OS),
    /// "too_few_cores" (more workers than cores), "unknown" (no report).
    pub pinning: &'static str,
}

fn processors(kind: BenchProcessor) -> Result<ProcessorFactory, String> {
    match kind {
        BenchProcessor::Passthrough => Ok(Box::new(|_| Box::new(PassThrough))),
        BenchProcessor::Orders => {
            let pipeline = crate::transform::orders_processor().map_err(|e| e.to_string())?;
            Ok(Box::new(move |_| Box::new(pipeline.clone())))
        }
    }
}

/// (messages processed, allocations so far) at one instant.
type Sample = (u64, u64);

pub fn run(args: &BenchArgs) -> i32 {
    let (settings, source) = match setup(args) {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    let source_name = source.describe();
    let processors = match processors(args.processor) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("corestream bench: {e}");
            return EXIT_CONFIG;
        }
    };
    // The steady-state window is measured in messages for the generator and in
    // input bytes for a file (its length is known up front).
    let expected = match &args.input {
        None => Some((Counter::MessagesIn, args.messages)),
        Some(path) => std::fs::metadata(path).ok().map(|m| (Counter::BytesIn, m.len())),
    };
    let started = Instant::now();
    let allocations_at_start = alloc::allocations();
    let sink = match sink(args) {
        Ok(sink) => sink,
        Err(code) => return code,
    };
    let mut engine = Engine::new(settings, source, processors, sink);
    if let Some(target) = args.batch_time_target {
        engine = engine.batch_sizing(crate::worker::BatchSizing {
            records_min: (args.batch / 8).max(1),
            records_max: args.batch.saturating_mul(8).min(crate::limits::BATCH_RECORDS_MAX),
            time_target: target,
        });
    }
    let running = match engine.start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corestream bench: {e}");
            return EXIT_RUNTIME;
        }
    };
    let window = watch(&running, args, settings.workers, expected);
    let allocations_at_end = alloc::allocations();
    let report = match running.join() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corestream bench: {e}");
            return EXIT_RUNTIME;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let allocations = (allocations_at_start, allocations_at_end, window);
    let result = figures(args, &settings, &report, seconds, allocations, source_name);
    if args.json {
        match serde_json::to_string(&result) {
            Ok(json) => out!("{json}"),
            Err(e) => {
                eprintln!("corestream bench: cannot encode the result: {e}");
                return EXIT_RUNTIME;
            }
        }
    } else {
        print_text(&result);
    }
    EXIT_OK
}

/// The figures of a finished run: rates, allocations per message (steady-state
/// window when measured, else the whole run), latency, per-worker shares.
fn figures(
    args: &BenchArgs,
    settings: &EngineSettings,
    report: &crate::engine::Report,
    seconds: f64,
    (allocations_at_start, allocations_at_end, window): (
        u64,
        u64,
        (Option<Sample>, Option<Sample>),
    ),
    source_name: String,
) -> BenchResult {
    let s = &report.snapshot;
    let messages = s.get(Counter::MessagesIn);
    let (allocations_per_message, allocation_window) = match window {
        _ if !alloc::is_installed() => (None, "not_measured"),
        (Some((m0, a0)), Some((m1, a1))) if m1 > m0 => {
            (Some((a1 - a0) as f64 / (m1 - m0) as f64), "steady_state")
        }
        _ => (
            Some((allocations_at_end - allocations_at_start) as f64 / messages.max(1) as f64),
            "whole_run",
        ),
    };
    BenchResult {
        messages,
        seconds,
        msgs_per_sec: messages as f64 / seconds,
        bytes_per_sec: s.get(Counter::BytesIn) as f64 / seconds,
        message_bytes_mean: s.get(Counter::BytesIn) as f64 / messages.max(1) as f64,
        allocations_per_message,
        allocation_window,
        latency_ns: s.latency,
        workers: settings.workers,
        per_worker: s
            .per_worker
            .iter()
            .enumerate()
            .map(|(worker, w)| {
                let pinned = report.workers.iter().find(|r| r.index == worker).map(|r| r.pinned);
                WorkerFigures {
                    worker,
                    messages: w[Counter::MessagesIn as usize],
                    share: w[Counter::MessagesIn as usize] as f64 / messages.max(1) as f64,
                    batch_records: w[Counter::BatchRecordsCurrent as usize],
                    pinned: pinned.is_some_and(Pinned::is_pinned),
                    core: pinned.and_then(Pinned::core),
                    pinning: pinned.map_or("unknown", Pinned::name),
                }
            })
            .collect(),
        outputs: s.get(Counter::Outputs),
        filtered: s.get(Counter::Filtered),
        dead_lettered: s.get(Counter::DeadLettered),
        processor: format!("{:?}", args.processor).to_lowercase(),
        source: source_name,
        sink: match &args.output {
            None => "null".to_string(),
            Some(path) if args.sink_inline => format!("file {} (inline)", path.display()),
            Some(path) => format!(
                "file {} (I/O thread, timeout {})",
                path.display(),
                crate::parse::duration::DisplayDuration(
                    args.sink_timeout.unwrap_or(crate::sink::writer::WRITE_TIMEOUT_DEFAULT)
                )
            ),
        },
        batch_records: settings.batch_records,
        pinned: report.workers.len() == settings.workers
            && report.workers.iter().all(|r| r.pinned.is_pinned()),
        pinned_workers: report.workers.iter().filter(|r| r.pinned.is_pinned()).count(),
    }
}

/// The engine settings and the source of a bench run (a generator, or `--input`);
/// `Err` is the exit code, after the error is printed.
fn setup(args: &BenchArgs) -> Result<(EngineSettings, Box<dyn Source>), i32> {
    let settings = EngineSettings {
        workers: args.workers,
        ring_bytes: args.ring_bytes,
        batch_records: args.batch,
        placement: if args.unpinned { Placement::Unpinned } else { Placement::PinPerCore },
        record_bytes_max: (args.ring_bytes / 4).min(crate::limits::RECORD_BYTES_MAX_DEFAULT),
        ..EngineSettings::default()
    };
    if let Err(e) = settings.validate() {
        // The flag that sets each engine setting.
        let flag = match e.setting {
            "batch_records" => "batch",
            other => other,
        };
        eprintln!(
            "corestream bench: --{}: {} (hint: {})",
            flag.replace('_', "-"),
            e.message,
            e.hint
        );
        return Err(EXIT_CONFIG);
    }
    if args.input.is_none() && args.messages == 0 {
        eprintln!("corestream bench: --messages: must be at least 1 (nothing to measure)");
        return Err(EXIT_CONFIG);
    }
    let source: Box<dyn Source> = match &args.input {
        Some(path) => {
            match FileSource::new(path, None, Duration::from_secs(1), settings.record_bytes_max) {
                Ok(s) => Box::new(s),
                Err(e) => {
                    eprintln!("corestream bench: {e}");
                    return Err(EXIT_IO);
                }
            }
        }
        None => match GeneratorSource::new(GeneratorSettings {
            count: Some(args.messages),
            rate_per_sec: None,
            keys: args.keys,
            message_bytes: args.message_bytes,
            seed: 42,
            batch_records: args.batch,
        }) {
            Ok(s) => Box::new(s),
            Err(e) => {
                eprintln!("corestream bench: {e}");
                return Err(EXIT_CONFIG);
            }
        },
    };
    Ok((settings, source))
}

/// The sink of a bench run: null, or `--output` (a file sink with the I/O-thread
/// settings of the flags); `Err` is the exit code.
fn sink(args: &BenchArgs) -> Result<Arc<dyn crate::sink::SinkFactory>, i32> {
    Ok(match &args.output {
        None => Arc::new(NullSinkFactory),
        Some(path) => {
            let mut writer =
                crate::sink::writer::WriterSettings::new(crate::limits::SINK_BUFFER_BYTES_DEFAULT);
            if let Some(timeout) = args.sink_timeout {
                writer.timeout = Some(timeout);
            }
            if args.sink_inline {
                writer.timeout = None;
            }
            match crate::sink::writer::WriterSinkFactory::file(
                path,
                false,
                false,
                crate::limits::SINK_BUFFER_BYTES_DEFAULT,
            )
            .and_then(|f| f.settings(writer))
            {
                Ok(f) => Arc::new(f),
                Err(e) => {
                    eprintln!("corestream bench: {e}");
                    return Err(EXIT_IO);
                }
            }
        }
    })
}

/// Waits for the run to end, printing progress; returns the steady-state allocation
/// window: (messages, allocations) at 10% and at 90% of `expected`.
fn watch(
    running: &crate::engine::RunningEngine,
    args: &BenchArgs,
    workers: usize,
    expected: Option<(Counter, u64)>,
) -> (Option<Sample>, Option<Sample>) {
    let live = !args.json && std::io::stderr().is_terminal();
    let mut progress = Progress::new(live.then_some(Duration::from_secs(1)));
    if args.batch_time_target.is_some() {
        progress = progress.with_batch_sizes(workers);
    }
    let mut window: (Option<Sample>, Option<Sample>) = (None, None);
    while !running.is_finished() {
        std::thread::sleep(Duration::from_micros(500));
        if let Some((counter, total)) = expected {
            let done = running.metrics().counters().sum(counter);
            if window.0.is_none() && done >= total / 10 {
                window.0 = Some((done, alloc::allocations()));
            } else if window.0.is_some() && window.1.is_none() && done >= total / 10 * 9 {
                window.1 = Some((done, alloc::allocations()));
            }
        }
        progress.tick(running.metrics());
    }
    progress.finish();
    window
}

fn print_text(r: &BenchResult) {
    out!(
        "corestream bench: {} -> {} -> {}, {} worker(s), batch {}",
        r.source,
        r.processor,
        r.sink,
        r.workers,
        r.batch_records
    );
    out!(
        "  {} messages in {:.3}s: {} msgs/s, {}B/s (mean {:.0} B/message)",
        r.messages,
        r.seconds,
        human(r.msgs_per_sec),
        human(r.bytes_per_sec),
        r.message_bytes_mean
    );
    out!(
        "  latency ingest->sink: p50 {}  p99 {}  p99.9 {}  max {}",
        human_ns(r.latency_ns.p50),
        human_ns(r.latency_ns.p99),
        human_ns(r.latency_ns.p999),
        human_ns(r.latency_ns.max)
    );
    match r.allocations_per_message {
        Some(a) => out!("  allocations per message: {a:.4} ({})", r.allocation_window),
        None => {
            out!("  allocations per message: not measured (counting allocator not installed)")
        }
    }
    out!("  outputs {}  filtered {}  dead-lettered {}", r.outputs, r.filtered, r.dead_lettered);
    for w in &r.per_worker {
        let placement = match w.core {
            Some(core) => format!("pinned to core {core}"),
            None => format!("unpinned ({})", w.pinning.replace('_', " ")),
        };
        out!(
            "  worker {}: {} messages ({:.1}%), batch size now {}, {placement}",
            w.worker,
            w.messages,
            w.share * 100.0,
            w.batch_records
        );
    }
}
