//! File and stdout sinks: newline-delimited payloads, batched per worker, optionally
//! deduplicated, compressed, and written under a timeout.
//!
//! Each worker appends `payload \n` to its own batch buffer (allocated at start) and
//! writes the whole batch to the shared destination under a lock when it is due:
//!
//! - **count**: `flush_records` outputs are buffered;
//! - **bytes**: `flush_bytes` are buffered (a batch that would pass it goes out
//!   first, so one worker batch is never split between two writes);
//! - **linger**: the oldest buffered output is `linger` old, checked per batch and
//!   whenever the worker is idle (every idle wake-up, at least every
//!   [`crate::wait::PARK_US_MAX`] µs). Without a linger time an idle worker writes at
//!   once, so an idle engine holds nothing back; with one, a trickle of messages is
//!   gathered into fewer, larger writes;
//! - the ticket queue is full, and shutdown.
//!
//! One lock and one `write(2)` per batch, not per message. Lines of one worker stay
//! in order, so order per key holds in the output. A batch is acknowledged once its
//! bytes were handed to the OS; with `fsync = true` only after `fsync(2)`.
//!
//! **Dedup** (`dedup = true`): within one batch (the window between two writes) an
//! output whose key equals an earlier output's key supersedes it: the earlier line
//! is dropped, the latest value is written (what a compacted topic or an upsert
//! target keeps). Keyless outputs are never deduplicated. Dropped outputs are
//! acknowledged with their batch and counted (`Counter::Deduplicated`).
//!
//! **Compression** (`compression = "zstd"`, file sink): each write is one complete
//! zstd frame (content size and checksum included). Concatenated frames are a valid
//! zstd stream (`zstd -d` reads it), and because a batch is acknowledged only after
//! its frame is fully written, a reader after a crash decodes every acknowledged
//! record; at most the last, unacknowledged frame is cut short.
//!
//! **Timeout** (default [`WRITE_TIMEOUT_DEFAULT`], 30 s; `timeout = "off"` writes
//! inline): a `write(2)` to a stalled pipe or a hung network file system cannot be
//! cancelled. So the system calls (and the compression) run on a per-worker I/O
//! thread, one batch at a time, while the worker fills the next batch (file output
//! also gains a core on a busy machine); the worker waits for a write only when it
//! needs the thread again, and at most the timeout. The handoff is once per write,
//! not per message: measured, it costs nothing visible (benches/README.md). A write
//! that does not finish in time fails with category `timeout`: the batch stays in
//! flight and the next attempt waits for it again. If the retry policy gives up,
//! [`Sink::abandon`] hands the batch's records to the dead-letter sink (read from
//! the batch, which the blocked thread only reads), releases its tickets and stops
//! waiting for it; should the write finish after all, its records are in both
//! places (at-least-once, never lost). Only one I/O thread exists per worker: while
//! an abandoned write is still blocked, further writes fail by timeout too, and
//! nothing queues up. Without a timeout the write happens inline on the worker
//! thread, as before.
//!
//! Memory per worker: two batches (the second only with a timeout, or after a
//! failure) of `flush_bytes`, plus one [`Span`] (24 bytes) and
//! [`KEY_BYTES_RESERVED`] key bytes per output of `flush_records`. Nothing grows in
//! steady state as long as a worker batch fits one write (`batch_records` within
//! `flush_records` and its bytes within `flush_bytes`); a larger worker batch is
//! still written whole, growing the buffers to the largest batch seen (bounded by
//! the ring and the arena it was read from).
//!
//! A failed write leaves no partial line in a regular file: the file is cut back to
//! its last complete write before the error is reported (stdout cannot be).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::io_thread::{IoHandoff, io_channel};
use super::{PendingTickets, Sink, SinkCounts, SinkError, SinkFactory, Undelivered};
use crate::ack::{Acker, Ticket};
use crate::message::{Message, Meta, Output};
use crate::retry::ErrorCategory;

/// Default outputs per write: 4096 spans are 96 KiB per batch, and at 256 KiB per
/// write a flush by count only happens for outputs under 64 bytes.
pub const FLUSH_RECORDS_DEFAULT: usize = 4096;
/// Most outputs per write the configuration accepts (24 MiB of spans per batch).
pub const FLUSH_RECORDS_MAX: usize = 1 << 20;
/// Largest `flush_bytes` accepted (per worker, per batch; two batches with a timeout).
pub const FLUSH_BYTES_MAX: usize = 1 << 30;
/// Longest linger time accepted: beyond this, data sits unacknowledged for longer
/// than any checkpoint interval worth having.
pub const LINGER_MAX: Duration = Duration::from_secs(60);
/// Default write timeout of file and stdout sinks: far above any healthy write of
/// a batch (256 KiB), short enough that a stalled pipe or file system shows up in
/// the counters and the breaker within a minute instead of hanging silently.
pub const WRITE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Longest write timeout accepted (1 hour).
pub const WRITE_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
/// zstd levels accepted: 1 (fastest, ~500 MB/s per core) to 19 (slowest standard).
pub const ZSTD_LEVEL_MIN: i32 = 1;
/// See [`ZSTD_LEVEL_MIN`].
pub const ZSTD_LEVEL_MAX: i32 = 19;
/// Default zstd level: the fastest, so compression does not become the bottleneck.
pub const ZSTD_LEVEL_DEFAULT: i32 = 1;

/// Key bytes reserved per output at start (a customer id, a UUID): keys longer on
/// average grow the key buffer once, to the largest batch seen.
pub const KEY_BYTES_RESERVED: usize = 16;

const _: () = assert!(FLUSH_RECORDS_DEFAULT <= FLUSH_RECORDS_MAX);
const _: () = assert!(crate::limits::SINK_BUFFER_BYTES_DEFAULT <= FLUSH_BYTES_MAX);
// Offsets into a batch are u32 (see `Span`).
const _: () = assert!(FLUSH_BYTES_MAX <= u32::MAX as usize);

/// Compression of the written bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// One zstd frame per write, at this level.
    Zstd {
        level: i32,
    },
}

/// How a writer batches, deduplicates, compresses and times out. Built by the
/// config module or by hand; checked by [`WriterSettings::validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterSettings {
    /// Write when this many bytes are buffered; also the buffer's initial capacity.
    pub flush_bytes: usize,
    /// Write when this many outputs are buffered.
    pub flush_records: usize,
    /// Write when the oldest buffered output is this old (`None`: write as soon as
    /// the worker is idle).
    pub linger: Option<Duration>,
    /// Keep only the latest output per key within a batch.
    pub dedup: bool,
    pub compression: Compression,
    /// Longest a write may take (`None`: no timeout, write inline on the worker).
    pub timeout: Option<Duration>,
}

impl WriterSettings {
    /// Defaults around a byte threshold: no linger, no dedup, no compression, the
    /// default write timeout ([`WRITE_TIMEOUT_DEFAULT`], on the I/O thread).
    pub fn new(flush_bytes: usize) -> Self {
        WriterSettings {
            flush_bytes,
            flush_records: FLUSH_RECORDS_DEFAULT,
            linger: None,
            dedup: false,
            compression: Compression::None,
            timeout: Some(WRITE_TIMEOUT_DEFAULT),
        }
    }

    /// Bytes one worker's sink allocates at start with these settings: its batch
    /// buffers (two with an I/O thread), their spans, keys and dedup table, and
    /// the compressor's output buffer. For the start-time memory estimate.
    pub fn start_bytes(&self) -> usize {
        let per_batch = self.flush_bytes
            + self.flush_records * (std::mem::size_of::<Span>() + KEY_BYTES_RESERVED)
            + if self.dedup { 4 * (2 * self.flush_records).next_power_of_two() } else { 0 };
        let batches = if self.timeout.is_some() { 2 } else { 1 };
        let compressed = match self.compression {
            Compression::None => 0,
            Compression::Zstd { .. } => zstd::zstd_safe::compress_bound(self.flush_bytes),
        };
        per_batch * batches + compressed
    }

    /// The first setting out of range, as `(setting, message)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        use crate::parse::duration::DisplayDuration as D;
        if !(1..=FLUSH_BYTES_MAX).contains(&self.flush_bytes) {
            return Err(("flush_bytes", format!("must be from 1 byte to {FLUSH_BYTES_MAX} bytes")));
        }
        if !(1..=FLUSH_RECORDS_MAX).contains(&self.flush_records) {
            return Err(("flush_records", format!("must be from 1 to {FLUSH_RECORDS_MAX}")));
        }
        if let Some(linger) = self.linger
            && (linger.is_zero() || linger > LINGER_MAX)
        {
            return Err(("linger", format!("must be more than 0s and at most {}", D(LINGER_MAX))));
        }
        if let Some(timeout) = self.timeout
            && (timeout.is_zero() || timeout > WRITE_TIMEOUT_MAX)
        {
            return Err((
                "timeout",
                format!("must be more than 0s and at most {}", D(WRITE_TIMEOUT_MAX)),
            ));
        }
        if let Compression::Zstd { level } = self.compression
            && !(ZSTD_LEVEL_MIN..=ZSTD_LEVEL_MAX).contains(&level)
        {
            return Err((
                "compression_level",
                format!("zstd level {level} must be from {ZSTD_LEVEL_MIN} to {ZSTD_LEVEL_MAX}"),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for WriterSettings {
    /// One line for `corestream validate`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::parse::duration::DisplayDuration as D;
        write!(
            f,
            "write at {} outputs or {}",
            self.flush_records,
            crate::parse::size::DisplaySize(self.flush_bytes as u64)
        )?;
        match self.linger {
            Some(linger) => write!(f, " or {} old", D(linger))?,
            None => write!(f, " or when idle")?,
        }
        if self.dedup {
            write!(f, ", latest output per key")?;
        }
        if let Compression::Zstd { level } = self.compression {
            write!(f, ", zstd level {level} frame per write")?;
        }
        match self.timeout {
            Some(timeout) => write!(f, ", on an I/O thread with a {} timeout", D(timeout)),
            None => write!(f, ", inline (no timeout)"),
        }
    }
}

/// Where the bytes go.
enum Target {
    /// A file checked but not yet touched: created, truncated or cut back by
    /// [`Target::prepare`] when the first worker opens its sink (see
    /// [`super::output_file`]).
    Pending {
        path: PathBuf,
        append: bool,
        fsync: bool,
    },
    File {
        file: File,
        path: PathBuf,
        fsync: bool,
        /// Bytes of complete writes: a failed write is cut back to this length.
        len: u64,
        /// A regular file (only those can be cut back; not `/dev/...` or a FIFO).
        regular: bool,
    },
    Stdout,
    /// Any writer (a socket, a pipe, a test double).
    Custom {
        name: String,
        writer: Box<dyn Write + Send>,
    },
}

impl Target {
    /// Opens a pending file: appending (after cutting a torn last line off an
    /// uncompressed file) or truncating. Once; later calls do nothing.
    fn prepare(&mut self, compression: Compression) -> Result<(), SinkError> {
        let Target::Pending { path, append, fsync } = self else {
            return Ok(());
        };
        let (append, fsync) = (*append, *fsync);
        let path = std::mem::take(path);
        if append && compression == Compression::None {
            let cut = cut_torn_tail(&path).map_err(|e| {
                SinkError::io(&format!("cannot check the end of {}", path.display()), &e)
            })?;
            if cut > 0 {
                eprintln!(
                    "corestream: cut a torn last line ({cut} bytes) off {}: a previous run \
                     stopped in the middle of a write; its messages are written again",
                    path.display()
                );
            }
        }
        let mut options = OpenOptions::new();
        options.create(true);
        if append {
            options.append(true);
        } else {
            options.write(true).truncate(true);
        }
        let open_error = |e: &std::io::Error| {
            SinkError::io(&format!("cannot open sink file {}", path.display()), e)
        };
        let file = options.open(&path).map_err(|e| open_error(&e))?;
        let metadata = file.metadata().map_err(|e| open_error(&e))?;
        let len = if append { metadata.len() } else { 0 };
        *self = Target::File { file, path, fsync, len, regular: metadata.is_file() };
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Target::Pending { .. } => Err(std::io::Error::other("the sink file was never opened")),
            Target::File { file, path, len, regular, .. } => match file.write_all(bytes) {
                Ok(()) => {
                    *len += bytes.len() as u64;
                    Ok(())
                }
                Err(error) => {
                    // Cut back a partial write so the file holds complete lines (and
                    // complete compression frames) only.
                    if *regular
                        && let Err(cut_error) =
                            file.set_len(*len).and_then(|()| file.seek(SeekFrom::Start(*len)))
                    {
                        // Reported on its own line: folded into the write error, its
                        // text would take part in categorising that error.
                        eprintln!(
                            "corestream: {}: a failed write could not be cut back to {} bytes \
                             ({cut_error}); the file may end with a partial line",
                            path.display(),
                            len
                        );
                    }
                    Err(error)
                }
            },
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Target::Custom { writer, .. } => {
                writer.write_all(bytes)?;
                writer.flush()
            }
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Target::File { file, fsync: true, .. } => file.sync_data(),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::File { path, .. } | Target::Pending { path, .. } => {
                format!("file {}", path.display())
            }
            Target::Stdout => "stdout".to_string(),
            Target::Custom { name, .. } => name.clone(),
        }
    }
}

/// Cuts a torn last line off an uncompressed output file about to be appended to:
/// a crash (kill -9) in the middle of a write can leave part of a line at the end,
/// and the next run would glue its first line onto it. The torn line's batch was
/// never acknowledged, so the resumed run writes it again in full. Returns the bytes
/// cut (0 when the file is absent, empty, not a regular file or ends with `\n`).
pub fn cut_torn_tail(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    // Look before opening: opening a FIFO (or a device) has effects of its own (a
    // reader of the FIFO would see this open and close as a writer come and gone).
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = metadata.len();
    if !metadata.is_file() || len == 0 {
        return Ok(0);
    }
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    // Scan back in blocks for the last newline.
    let mut block = [0u8; 4096];
    let mut end = len;
    loop {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if end == len && chunk.last() == Some(&b'\n') {
            return Ok(0);
        }
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            let keep = start + i as u64 + 1;
            file.set_len(keep)?;
            return Ok(len - keep);
        }
        if start == 0 {
            file.set_len(0)?;
            return Ok(len);
        }
        end = start;
    }
}

/// Factory for file and stdout sinks: opens the destination once, shared by all
/// workers' sinks.
pub struct WriterSinkFactory {
    target: Arc<Mutex<Target>>,
    settings: WriterSettings,
    description: String,
}

impl WriterSinkFactory {
    /// A file sink; `append` keeps existing content (needed to resume after a crash
    /// without losing output), otherwise the file is truncated. Only checked here:
    /// the file is created or truncated when the first worker opens its sink, so a
    /// pipeline that fails to start leaves it as it was.
    pub fn file(
        path: &Path,
        append: bool,
        fsync: bool,
        buffer_bytes: usize,
    ) -> Result<Self, SinkError> {
        super::output_file::check_writable(path, "sink file")?;
        let target = Target::Pending { path: path.to_path_buf(), append, fsync };
        Ok(Self::with_target(target, buffer_bytes))
    }

    /// The standard output.
    pub fn stdout(buffer_bytes: usize) -> Self {
        Self::with_target(Target::Stdout, buffer_bytes)
    }

    /// Any `Write` (a socket, a pipe, a fault-injecting test double), named `name`.
    pub fn writer(name: &str, writer: Box<dyn Write + Send>, buffer_bytes: usize) -> Self {
        Self::with_target(Target::Custom { name: name.to_string(), writer }, buffer_bytes)
    }

    fn with_target(target: Target, buffer_bytes: usize) -> Self {
        let description = target.describe();
        WriterSinkFactory {
            target: Arc::new(Mutex::new(target)),
            settings: WriterSettings::new(buffer_bytes),
            description,
        }
    }

    /// Replaces the batching, dedup, compression and timeout settings.
    pub fn settings(mut self, settings: WriterSettings) -> Result<Self, SinkError> {
        settings.validate().map_err(|(setting, message)| {
            SinkError::new(ErrorCategory::Configuration, format!("sink.{setting}: {message}"))
        })?;
        self.settings = settings;
        Ok(self)
    }

    fn executor(&self) -> Result<Executor, SinkError> {
        let zstd = match self.settings.compression {
            Compression::None => None,
            Compression::Zstd { level } => {
                let setup = |e: std::io::Error| {
                    SinkError::new(ErrorCategory::Configuration, format!("zstd level {level}: {e}"))
                };
                let mut compressor = zstd::bulk::Compressor::new(level).map_err(setup)?;
                compressor
                    .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                    .map_err(setup)?;
                let capacity = zstd::zstd_safe::compress_bound(self.settings.flush_bytes);
                Some((compressor, Vec::with_capacity(capacity)))
            }
        };
        Ok(Executor { target: self.target.clone(), zstd })
    }
}

impl SinkFactory for WriterSinkFactory {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn open(&self, worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
        let settings = self.settings;
        self.target.lock().prepare(settings.compression)?;
        let executor = self.executor()?;
        let (io, spare) = match settings.timeout {
            None => (Io::Inline(executor), None),
            Some(_) => {
                let (handoff, server) = io_channel::<WriteJob>();
                let mut executor = executor;
                let thread = std::thread::Builder::new()
                    .name(format!("corestream-sink-io-{worker}"))
                    .spawn(move || {
                        crate::wait::warm_up_thread();
                        server.serve(|job: &mut WriteJob| {
                            let batch = &job.batch;
                            let result = catch_unwind(AssertUnwindSafe(|| executor.write(batch)));
                            job.result = match result {
                                Ok(result) => result,
                                Err(_) => {
                                    Err(std::io::Error::other("the sink I/O thread panicked"))
                                }
                            };
                        })
                    })
                    .map_err(|e| {
                        SinkError::new(
                            ErrorCategory::Configuration,
                            format!("cannot start the sink I/O thread of worker {worker}: {e}"),
                        )
                    })?;
                (
                    Io::Thread { handoff, thread: Some(thread) },
                    Some(Arc::new(Batch::new(&settings))),
                )
            }
        };
        Ok(Box::new(WriterSink {
            filling: Arc::new(Batch::new(&settings)),
            spare,
            outstanding: None,
            io,
            settings,
            acker,
            description: self.description.clone(),
            counts: SinkCounts::default(),
        }))
    }
}

/// Where one buffered output's line and key are, and where its input came from.
/// 24 bytes. Line `i` is `bytes[span[i-1].line_end .. span[i].line_end]` (its
/// payload and `\n`), its key `keys[span[i-1].key_end .. span[i].key_end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    line_end: u32,
    key_end: u32,
    partition: u32,
    /// False once a later output with the same key superseded it (dedup).
    live: bool,
    position: u64,
}

/// Outputs buffered between two writes, with what is needed to write them or to
/// dead-letter them.
struct Batch {
    /// `payload \n` per buffered output, in order.
    bytes: Vec<u8>,
    spans: Vec<Span>,
    keys: Vec<u8>,
    /// Spans with `live == false`.
    superseded: usize,
    /// Tickets of the worker batches whose outputs are all in here.
    pending: PendingTickets,
    /// When the first output arrived (only tracked with a linger time).
    first_at: Option<Instant>,
    dedup: Option<DedupTable>,
}

impl Batch {
    fn new(settings: &WriterSettings) -> Self {
        Batch {
            bytes: Vec::with_capacity(settings.flush_bytes),
            spans: Vec::with_capacity(settings.flush_records),
            keys: Vec::with_capacity(settings.flush_records * KEY_BYTES_RESERVED),
            superseded: 0,
            pending: PendingTickets::default(),
            first_at: None,
            dedup: settings.dedup.then(|| DedupTable::new(settings.flush_records)),
        }
    }

    fn has_outputs(&self) -> bool {
        !self.spans.is_empty()
    }

    fn reset(&mut self) {
        self.bytes.clear();
        self.spans.clear();
        self.keys.clear();
        self.superseded = 0;
        debug_assert!(self.pending.is_empty(), "reset with tickets still held");
        self.first_at = None;
        if let Some(table) = &mut self.dedup {
            table.clear();
        }
    }

    /// Appends one worker batch. Returns how many buffered outputs it superseded.
    #[inline]
    fn append(&mut self, outputs: &[Output<'_>], inputs: &[Message<'_>]) -> usize {
        let superseded_before = self.superseded;
        for output in outputs {
            self.bytes.extend_from_slice(output.payload);
            self.bytes.push(b'\n');
            self.keys.extend_from_slice(output.key);
            let meta = inputs.get(output.input as usize).map_or(Meta::default(), |m| m.meta);
            let index = self.spans.len();
            self.spans.push(Span {
                line_end: self.bytes.len() as u32,
                key_end: self.keys.len() as u32,
                partition: meta.partition,
                live: true,
                position: meta.position,
            });
            if !output.key.is_empty()
                && let Some(table) = &mut self.dedup
                && let Some(earlier) = table.insert(index, &self.spans, &self.keys)
            {
                self.spans[earlier].live = false;
                self.superseded += 1;
            }
        }
        self.superseded - superseded_before
    }

    /// Removes superseded lines, so the bytes are exactly what is written.
    fn compact(&mut self) {
        if self.superseded == 0 {
            return;
        }
        let (mut line_to, mut key_to, mut line_from, mut key_from) =
            (0usize, 0usize, 0usize, 0usize);
        let mut kept = 0usize;
        for i in 0..self.spans.len() {
            let span = self.spans[i];
            let (line_end, key_end) = (span.line_end as usize, span.key_end as usize);
            if span.live {
                self.bytes.copy_within(line_from..line_end, line_to);
                self.keys.copy_within(key_from..key_end, key_to);
                line_to += line_end - line_from;
                key_to += key_end - key_from;
                self.spans[kept] =
                    Span { line_end: line_to as u32, key_end: key_to as u32, ..span };
                kept += 1;
            }
            line_from = line_end;
            key_from = key_end;
        }
        self.bytes.truncate(line_to);
        self.keys.truncate(key_to);
        self.spans.truncate(kept);
        self.superseded = 0;
    }

    /// Each live output as it would be dead-lettered.
    fn undelivered(&self) -> impl Iterator<Item = Undelivered<'_>> {
        let mut line_start = 0usize;
        let mut key_start = 0usize;
        self.spans.iter().filter_map(move |span| {
            let (line_end, key_end) = (span.line_end as usize, span.key_end as usize);
            let item = Undelivered {
                meta: Meta {
                    partition: span.partition,
                    position: span.position,
                    ..Meta::default()
                },
                key: &self.keys[key_start..key_end],
                payload: &self.bytes[line_start..line_end - 1],
            };
            line_start = line_end;
            key_start = key_end;
            span.live.then_some(item)
        })
    }
}

/// Open-addressing table from key to the span of its latest output, for dedup.
/// Sized at twice `flush_records` (a power of two), allocated once; at half full it
/// stops taking keys (a batch bigger than `flush_records` is then only partly
/// deduplicated, never wrongly).
struct DedupTable {
    /// Span index + 1; 0 = empty.
    slots: Box<[u32]>,
    used: usize,
}

impl DedupTable {
    fn new(flush_records: usize) -> Self {
        let capacity = (2 * flush_records).next_power_of_two();
        DedupTable { slots: vec![0u32; capacity].into_boxed_slice(), used: 0 }
    }

    fn clear(&mut self) {
        if self.used != 0 {
            self.slots.fill(0);
            self.used = 0;
        }
    }

    /// Records span `index` under its key; returns the span it supersedes.
    #[inline]
    fn insert(&mut self, index: usize, spans: &[Span], keys: &[u8]) -> Option<usize> {
        let key_of = |i: usize| {
            let start = if i == 0 { 0 } else { spans[i - 1].key_end as usize };
            &keys[start..spans[i].key_end as usize]
        };
        let key = key_of(index);
        let mask = self.slots.len() - 1;
        let mut at = hash_key(key) as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                if 2 * (self.used + 1) > self.slots.len() {
                    return None; // half full: stop deduplicating this batch
                }
                self.slots[at] = index as u32 + 1;
                self.used += 1;
                return None;
            }
            let earlier = slot as usize - 1;
            if key_of(earlier) == key {
                self.slots[at] = index as u32 + 1;
                return Some(earlier);
            }
            at = (at + 1) & mask;
        }
    }
}

/// FxHash-style key hash (rotate, xor, multiply per 8 bytes): a few instructions
/// per key, good enough spread for a table that compares the keys themselves.
#[inline]
fn hash_key(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    hash = (hash.rotate_left(5) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    hash ^ (hash >> 32)
}

/// Does the writes: compresses a batch (if configured) and writes it to the target.
/// Owned by the worker (inline) or its I/O thread.
struct Executor {
    target: Arc<Mutex<Target>>,
    /// The compressor and its output buffer (capacity `compress_bound(flush_bytes)`).
    zstd: Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>,
}

impl Executor {
    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        let bytes: &[u8] = match &mut self.zstd {
            None => &batch.bytes,
            Some((compressor, out)) => {
                out.clear();
                out.reserve(zstd::zstd_safe::compress_bound(batch.bytes.len()));
                compressor.compress_to_buffer(&batch.bytes, out)?;
                out
            }
        };
        let mut target = self.target.lock();
        target.write_all(bytes)?;
        target.sync()
    }
}

/// A batch on its way through the I/O thread.
struct WriteJob {
    batch: Arc<Batch>,
    result: std::io::Result<()>,
}

enum Io {
    Inline(Executor),
    Thread { handoff: IoHandoff<WriteJob>, thread: Option<std::thread::JoinHandle<()>> },
}

/// The batch handed out for writing and not yet settled.
enum State {
    /// On the I/O thread; wait for it until `deadline`.
    InFlight { deadline: Instant },
    /// The last write failed; the next attempt writes it again.
    Failed(std::io::Error),
    /// Given up on and dead-lettered, but the I/O thread is still blocked in its
    /// write: collected (and its result ignored) when the thread returns.
    Abandoned,
}

struct Outstanding {
    batch: Arc<Batch>,
    /// Its tickets (moved out of the batch, which is read-only while in flight).
    pending: PendingTickets,
    state: State,
}

/// One worker's batching writer.
pub struct WriterSink {
    /// Accepting outputs; held only by this sink (never shared), so `Arc::get_mut`
    /// always succeeds on it.
    filling: Arc<Batch>,
    /// An empty batch to switch to when `filling` is handed out.
    spare: Option<Arc<Batch>>,
    /// At most one batch between hand-out and settlement.
    outstanding: Option<Outstanding>,
    io: Io,
    settings: WriterSettings,
    acker: Acker,
    description: String,
    counts: SinkCounts,
}

fn filling_mut(batch: &mut Arc<Batch>) -> &mut Batch {
    Arc::get_mut(batch).expect("the filling batch is never shared")
}

impl WriterSink {
    /// An I/O error, categorised by its kind, else by the OS's text alone (not the
    /// path, whose words must not decide the category).
    fn io_error(&self, error: &std::io::Error) -> SinkError {
        let mut sink_error = SinkError::io(&format!("write to {}", self.description), error);
        if sink_error.category == ErrorCategory::Unknown {
            sink_error.category = crate::retry::category::categorize_text(&error.to_string());
        }
        sink_error
    }

    fn timeout_error(&self, what: &str) -> SinkError {
        let timeout = self.settings.timeout.unwrap_or_default();
        SinkError::new(
            ErrorCategory::Timeout,
            format!(
                "{what} to {} did not finish within the timeout of {}",
                self.description,
                crate::parse::duration::DisplayDuration(timeout)
            ),
        )
    }

    /// A batch came back from the I/O thread: settle it.
    fn collect(&mut self, job: WriteJob) {
        let WriteJob { batch: returned, result } = job;
        drop(returned); // the worker's own reference is in `outstanding`
        let Some(out) = self.outstanding.take() else {
            debug_assert!(false, "a write came back with nothing outstanding");
            return;
        };
        match (out.state, result) {
            (State::InFlight { .. }, Ok(())) => {
                let mut pending = out.pending;
                pending.release(&self.acker);
                self.recycle(out.batch);
            }
            (State::InFlight { .. }, Err(error)) => {
                self.outstanding = Some(Outstanding {
                    batch: out.batch,
                    pending: out.pending,
                    state: State::Failed(error),
                });
            }
            // Dead-lettered already; a late success means the records are in both places.
            (State::Abandoned, _) => self.recycle(out.batch),
            (State::Failed(error), _) => {
                debug_assert!(false, "a failed batch was in flight");
                self.outstanding = Some(Outstanding { state: State::Failed(error), ..out });
            }
        }
    }

    fn recycle(&mut self, mut batch: Arc<Batch>) {
        match Arc::get_mut(&mut batch) {
            Some(b) => {
                b.reset();
                self.spare = Some(batch);
            }
            None => debug_assert!(false, "a recycled batch is still shared"),
        }
    }

    /// Collects a finished write without waiting.
    #[inline]
    fn poll_io(&mut self) {
        if let Io::Thread { handoff, .. } = &mut self.io
            && let Some(job) = handoff.try_take()
        {
            self.collect(job);
        }
    }

    /// Hands `batch` to the executor. Inline: written now, settled or failed.
    /// Precondition: nothing outstanding.
    fn hand_out(&mut self, mut batch: Arc<Batch>) {
        debug_assert!(self.outstanding.is_none());
        let pending = std::mem::take(&mut filling_mut(&mut batch).pending);
        match &mut self.io {
            Io::Inline(executor) => match executor.write(&batch) {
                Ok(()) => {
                    let mut pending = pending;
                    pending.release(&self.acker);
                    self.recycle(batch);
                }
                Err(error) => {
                    self.outstanding =
                        Some(Outstanding { batch, pending, state: State::Failed(error) })
                }
            },
            Io::Thread { handoff, .. } => {
                let timeout = self.settings.timeout.unwrap_or(WRITE_TIMEOUT_MAX);
                handoff.submit(WriteJob { batch: batch.clone(), result: Ok(()) });
                self.outstanding = Some(Outstanding {
                    batch,
                    pending,
                    state: State::InFlight { deadline: Instant::now() + timeout },
                });
            }
        }
    }

    /// Makes the outstanding batch durable (one write attempt at most), or says why
    /// not. An abandoned batch is not waited for.
    fn settle(&mut self) -> Result<(), SinkError> {
        self.poll_io();
        match &self.outstanding {
            None | Some(Outstanding { state: State::Abandoned, .. }) => return Ok(()),
            Some(Outstanding { state: State::InFlight { .. }, .. }) => {}
            Some(Outstanding { state: State::Failed(_), .. }) => {
                if let Some(out) = self.outstanding.take() {
                    self.hand_out(out.batch_with_pending());
                }
            }
        }
        self.wait_in_flight()?;
        match &self.outstanding {
            Some(Outstanding { state: State::Failed(error), .. }) => Err(self.io_error(error)),
            _ => Ok(()),
        }
    }

    /// Waits for an in-flight write until its deadline. On timeout it stays in
    /// flight, and the next attempt waits up to the timeout again.
    fn wait_in_flight(&mut self) -> Result<(), SinkError> {
        let Some(Outstanding { state: State::InFlight { deadline }, .. }) = &self.outstanding
        else {
            return Ok(());
        };
        let deadline = *deadline;
        let Io::Thread { handoff, .. } = &mut self.io else { return Ok(()) };
        match handoff.wait_until(deadline) {
            Some(job) => {
                self.collect(job);
                Ok(())
            }
            None => {
                let timeout = self.settings.timeout.unwrap_or(WRITE_TIMEOUT_MAX);
                if let Some(Outstanding { state: State::InFlight { deadline }, .. }) =
                    &mut self.outstanding
                {
                    *deadline = Instant::now() + timeout;
                }
                Err(self.timeout_error("a write"))
            }
        }
    }

    /// The I/O thread is free for a new write, or the error saying why not (it is
    /// still blocked in a write given up on earlier).
    fn thread_free(&mut self) -> Result<(), SinkError> {
        if !matches!(self.outstanding, Some(Outstanding { state: State::Abandoned, .. })) {
            return Ok(());
        }
        let timeout = self.settings.timeout.unwrap_or(WRITE_TIMEOUT_MAX);
        if let Io::Thread { handoff, .. } = &mut self.io
            && let Some(job) = handoff.wait_until(Instant::now() + timeout)
        {
            self.collect(job);
            return Ok(());
        }
        Err(self.timeout_error(
            "an earlier write (already dead-lettered) is still blocked; a new write",
        ))
    }

    /// Hands the filling batch out and switches to the spare.
    fn hand_out_filling(&mut self) {
        let mut next = match self.spare.take() {
            Some(spare) => spare,
            // Inline mode keeps no spare until a write first fails (rare path).
            None => Arc::new(Batch::new(&self.settings)),
        };
        std::mem::swap(&mut self.filling, &mut next);
        let mut batch = next;
        filling_mut(&mut batch).compact();
        self.hand_out(batch);
    }

    /// Everything accepted so far: written and settled.
    fn write_everything(&mut self) -> Result<(), SinkError> {
        self.settle()?;
        let filling = filling_mut(&mut self.filling);
        if !filling.has_outputs() {
            // Only tickets of empty worker batches: nothing to write.
            filling.pending.release(&self.acker);
            filling.first_at = None;
            return Ok(());
        }
        self.thread_free()?;
        self.hand_out_filling();
        self.settle()
    }

    fn linger_due(&self, now: Instant) -> bool {
        match (self.settings.linger, self.filling.first_at) {
            (Some(linger), Some(first)) => now.saturating_duration_since(first) >= linger,
            _ => false,
        }
    }

    /// True when no live data is held.
    fn holds_nothing(&self) -> bool {
        let outstanding_live = matches!(
            self.outstanding,
            Some(Outstanding { state: State::InFlight { .. } | State::Failed(_), .. })
        );
        !outstanding_live && !self.filling.has_outputs() && self.filling.pending.is_empty()
    }

    fn shut_down_thread(&mut self) {
        if let Io::Thread { handoff, thread } = &mut self.io {
            handoff.shut_down();
            if let Some(handle) = thread.take() {
                if handoff.is_busy() {
                    // Blocked in a write given up on: let it finish on its own.
                    drop(handle);
                } else if handle.join().is_err() {
                    eprintln!("corestream: {}: the sink I/O thread panicked", self.description);
                }
            }
        }
    }
}

impl Outstanding {
    /// The batch with its tickets put back, ready to be handed out again.
    fn batch_with_pending(self) -> Arc<Batch> {
        let mut batch = self.batch;
        filling_mut(&mut batch).pending = self.pending;
        batch
    }
}

impl Sink for WriterSink {
    #[inline]
    fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
        self.write_batch(outputs, &[], ticket)
    }

    #[inline]
    fn write_batch(
        &mut self,
        outputs: &[Output<'_>],
        inputs: &[Message<'_>],
        ticket: Ticket,
    ) -> Result<(), SinkError> {
        if outputs.is_empty() {
            // Never fails (the resilient wrapper relies on it to hand back tickets):
            // join the filling batch's tickets, or release at once when it holds none
            // (an earlier batch in flight does not matter: acknowledgements may
            // complete out of order, watermarks only move over the settled prefix).
            let filling = filling_mut(&mut self.filling);
            if filling.pending.is_empty() {
                self.acker.done(ticket);
            } else {
                filling.pending.push(ticket);
            }
            return Ok(());
        }
        if let Some(Outstanding { state: State::Failed(_), .. }) = &self.outstanding {
            // The last write failed: try it again before taking anything new.
            self.settle()?;
        }
        let need_bytes: usize = outputs.iter().map(|o| o.payload.len() + 1).sum();
        let need_keys: usize = outputs.iter().map(|o| o.key.len()).sum();
        if self.filling.has_outputs()
            && (self.filling.bytes.len() + need_bytes > self.settings.flush_bytes
                || self.filling.spans.len() + outputs.len() > self.settings.flush_records)
        {
            // Make room: write what is buffered first. A failure here means this
            // batch was not accepted (all or nothing).
            self.settle()?;
            self.thread_free()?;
            self.hand_out_filling();
            if let Some(Outstanding { state: State::Failed(error), .. }) = &self.outstanding {
                return Err(self.io_error(error));
            }
        }
        if self.filling.bytes.len() + need_bytes > u32::MAX as usize
            || self.filling.keys.len() + need_keys > u32::MAX as usize
        {
            return Err(SinkError::new(
                ErrorCategory::MessageTooLarge,
                format!(
                    "a batch of {need_bytes} bytes does not fit a write to {}",
                    self.description
                ),
            ));
        }
        let settings = self.settings;
        let filling = filling_mut(&mut self.filling);
        // One clock read per worker batch, only with a linger time.
        let now = settings.linger.map(|_| Instant::now());
        if filling.first_at.is_none() {
            filling.first_at = now;
        }
        self.counts.deduplicated += filling.append(outputs, inputs) as u64;
        filling.pending.push(ticket);
        let lingered = match (now, settings.linger, filling.first_at) {
            (Some(now), Some(linger), Some(first)) => {
                now.saturating_duration_since(first) >= linger
            }
            _ => false,
        };
        let due = filling.bytes.len() >= settings.flush_bytes
            || filling.spans.len() >= settings.flush_records
            || lingered;
        if due {
            self.poll_io();
            if self.outstanding.is_none() {
                // Accepted already: a failure of this write is reported by the next
                // call, which writes it again first.
                self.hand_out_filling();
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.write_everything()
    }

    fn idle(&mut self) -> Result<bool, SinkError> {
        self.settle()?;
        if self.filling.has_outputs()
            && !self.linger_due(Instant::now())
            && self.settings.linger.is_some()
        {
            return Ok(false);
        }
        self.write_everything()?;
        Ok(self.holds_nothing())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.write_everything()?;
        self.shut_down_thread();
        Ok(())
    }

    fn abandon(&mut self, dead_letter: &mut dyn FnMut(&Undelivered<'_>) -> bool) {
        self.poll_io();
        // The batch handed out (failed, or still blocked in the OS) ...
        if let Some(out) = self.outstanding.take() {
            if let State::Abandoned = out.state {
                self.outstanding = Some(out);
            } else {
                let mut all_sent = true;
                for record in out.batch.undelivered() {
                    all_sent &= dead_letter(&record);
                }
                let mut pending = out.pending;
                if all_sent {
                    pending.release(&self.acker);
                }
                match out.state {
                    State::InFlight { .. } => {
                        self.outstanding = Some(Outstanding {
                            batch: out.batch,
                            pending: PendingTickets::default(),
                            state: State::Abandoned,
                        });
                    }
                    _ => self.recycle(out.batch),
                }
            }
        }
        // ... and the batch being filled: it could only be written after it.
        let filling = filling_mut(&mut self.filling);
        let mut all_sent = true;
        for record in filling.undelivered() {
            all_sent &= dead_letter(&record);
        }
        if all_sent {
            filling.pending.release(&self.acker);
            filling.reset();
        }
    }

    fn take_counts(&mut self) -> SinkCounts {
        std::mem::take(&mut self.counts)
    }
}

impl Drop for WriterSink {
    fn drop(&mut self) {
        self.shut_down_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{AckQueue, Watermarks};

    #[test]
    fn file_sink_writes_lines_and_acknowledges_only_after_writing() {
        let dir = std::env::temp_dir().join(format!("cs-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.ndjson");
        let factory = WriterSinkFactory::file(&path, false, false, 16).unwrap();
        let watermarks = Arc::new(Watermarks::new(1));
        let mut queue = AckQueue::with_capacity(8, watermarks.clone());
        let mut sink = factory.open(0, queue.acker()).unwrap();

        let mut builder = queue.builder();
        builder.note(0, 10);
        let ticket = queue.issue(builder);
        let outputs = [
            Output { payload: b"first", ..Default::default() },
            Output { payload: b"second", ..Default::default() },
        ];
        sink.write(&outputs, ticket).unwrap();
        assert_eq!(queue.poll(), 0, "buffered bytes are not acknowledged");
        sink.flush().unwrap();
        assert_eq!(queue.poll(), 1);
        assert_eq!(watermarks.acknowledged(0), Some(10));

        // A batch longer than the 16-byte buffer is written as one.
        let ticket = queue.issue(queue.builder());
        let long = [Output { payload: b"a line longer than sixteen bytes", ..Default::default() }];
        sink.write(&long, ticket).unwrap();
        sink.close().unwrap();
        assert_eq!(queue.poll(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "first\nsecond\na line longer than sixteen bytes\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_cut_before_appending() {
        let dir = std::env::temp_dir().join(format!("cs-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.ndjson");
        let long_line = "y".repeat(10_000); // the last newline is more than a block back
        for (content, cut, left) in [
            ("a\nb\n".to_string(), 0, "a\nb\n".to_string()),
            ("a\nb\n{\"torn".to_string(), 6, "a\nb\n".to_string()),
            ("no newline at all".to_string(), 17, String::new()),
            (format!("a\n{long_line}"), 10_000, "a\n".to_string()),
            (String::new(), 0, String::new()),
        ] {
            std::fs::write(&path, &content).unwrap();
            assert_eq!(cut_torn_tail(&path).unwrap(), cut, "{content:.20}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), left);
        }
        assert_eq!(cut_torn_tail(&dir.join("absent")).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn opening_a_file_in_a_missing_directory_is_a_clear_error() {
        let err = WriterSinkFactory::file(Path::new("/nonexistent-dir/x/out"), false, false, 64)
            .err()
            .expect("must fail");
        assert!(err.message.contains("/nonexistent-dir/x/out"), "{err}");
    }

    #[test]
    fn dedup_keeps_the_latest_output_per_key_and_compacts() {
        let settings =
            WriterSettings { dedup: true, flush_records: 8, ..WriterSettings::new(1024) };
        let mut batch = Batch::new(&settings);
        let outputs = [
            Output { key: b"a", payload: b"a1", ..Default::default() },
            Output { key: b"b", payload: b"b1", ..Default::default() },
            Output { key: b"", payload: b"none", ..Default::default() },
            Output { key: b"a", payload: b"a2", ..Default::default() },
            Output { key: b"", payload: b"none", ..Default::default() },
        ];
        assert_eq!(batch.append(&outputs, &[]), 1);
        let more = [Output { key: b"b", payload: b"b2", ..Default::default() }];
        assert_eq!(batch.append(&more, &[]), 1);
        let live: Vec<&[u8]> = batch.undelivered().map(|u| u.payload).collect();
        assert_eq!(live, [&b"none"[..], b"a2", b"none", b"b2"]);
        batch.compact();
        assert_eq!(batch.bytes, b"none\na2\nnone\nb2\n");
        let keys: Vec<&[u8]> = batch.undelivered().map(|u| u.key).collect();
        assert_eq!(keys, [&b""[..], b"a", b"", b"b"]);
        batch.reset();
        assert!(batch.dedup.as_ref().unwrap().slots.iter().all(|&s| s == 0));
    }

    #[test]
    fn dedup_table_stops_at_half_full_without_wrong_matches() {
        let mut table = DedupTable::new(2); // 4 slots
        let keys = b"k0k1k2k3";
        let spans: Vec<Span> = (0..4u32)
            .map(|i| Span {
                line_end: 0,
                key_end: 2 * (i + 1),
                partition: 0,
                live: true,
                position: 0,
            })
            .collect();
        assert_eq!(table.insert(0, &spans, keys), None);
        assert_eq!(table.insert(1, &spans, keys), None);
        assert_eq!(table.used, 2);
        assert_eq!(table.insert(2, &spans, keys), None, "full: not recorded");
        assert_eq!(table.used, 2);
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let bad = [
            (WriterSettings { flush_records: 0, ..WriterSettings::new(64) }, "flush_records"),
            (WriterSettings::new(0), "flush_bytes"),
            (WriterSettings { linger: Some(Duration::ZERO), ..WriterSettings::new(64) }, "linger"),
            (
                WriterSettings {
                    timeout: Some(Duration::from_secs(7200)),
                    ..WriterSettings::new(64)
                },
                "timeout",
            ),
            (
                WriterSettings {
                    compression: Compression::Zstd { level: 30 },
                    ..WriterSettings::new(64)
                },
                "compression_level",
            ),
        ];
        for (settings, name) in bad {
            assert_eq!(settings.validate().unwrap_err().0, name);
        }
    }
}
