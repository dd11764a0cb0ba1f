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
//! thread.
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

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::io_thread::{IoHandoff, io_channel};
use super::{PendingTickets, Sink, SinkCounts, SinkError, SinkFactory, Undelivered};
use crate::ack::{Acker, Ticket};
use crate::message::{Message, Output};
use crate::retry::ErrorCategory;

mod batch;
mod settings;
mod target;

use batch::Batch;
pub use settings::*;
use target::Target;
pub use target::cut_torn_tail;

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
    use super::batch::{DedupTable, Span};
    use super::*;
    use crate::ack::{AckQueue, Watermarks};
    use std::time::Duration;

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
