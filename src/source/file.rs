//! File and stdin sources: newline-delimited messages, streamed through a fixed
//! buffer (any file size, constant memory).
//!
//! A message is one line without its `\n` (a trailing `\r` is dropped too). Its
//! position is the byte offset just past the line's newline, so "acknowledged up to
//! position P" means "resume reading at byte P". The file source writes that
//! position to its checkpoint file every `checkpoint_interval` and at shutdown, and
//! on start resumes from it: a clean shutdown loses nothing and replays nothing.
//!
//! **After a crash** (kill -9) the lines after the checkpoint's position are read
//! again; the sink may already have written some of them before the crash, so they
//! appear twice. To count them, the checkpoint also holds a *read limit* (`read`),
//! written ahead: the source never hands a worker a line past the limit of a
//! checkpoint already on disk; before a read could reach past it, it writes a new
//! checkpoint with a limit further ahead ([`READ_AHEAD_MIN_BYTES`] at least, twice
//! the bytes read in the last interval, [`READ_AHEAD_MAX_BYTES`] at most; one is
//! written before the first read). So every line a crashed run can have delivered
//! lies between the checkpoint's position and its read limit, and `replayed`
//! counts exactly the lines re-read in that window: every duplicate in the output
//! is one of them (duplicates <= replayed). The difference is the lines the crashed
//! run had read or reserved but not yet written; the exact number of duplicates
//! depends on what the sink wrote, which the source cannot know. A restarted run
//! keeps the crashed run's limit in its own checkpoints (so a second crash still
//! counts the first one's duplicates) until it reaches the end of the file.
//!
//! Lines longer than `record_bytes_max` are dead-lettered with their position
//! (a line longer than the read buffer too: its first bytes are kept in the
//! dead-letter record and the rest is skipped), and reading goes on.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::pressure::MEMORY_SAMPLE_INTERVAL;
use super::{Ingest, Source, SourceError};
use crate::ack::checkpoint::{self, Checkpoint};
use crate::limits::SOURCE_READ_BYTES;
use crate::message::{Headers, Message, Meta};
use crate::metrics::{Counter, clock};
use crate::retry::ErrorCategory;

/// Bytes of an over-long line kept in its dead-letter record.
pub const LONG_LINE_PREFIX_BYTES: usize = 256;

/// Default time between checkpoint writes. After a crash the duplicates are at most
/// what the sink wrote since the last checkpoint (about one interval of input plus
/// what was in flight); the counted replay window also spans the read-ahead (about
/// two intervals more). One small fsync per interval once the read-ahead fits the
/// input rate, a few more while it grows.
pub const CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);

/// Least read-ahead a checkpoint reserves past what the next read can reach (one
/// read's worth): small, so that `replayed` stays close to the duplicates; a faster
/// input soon reserves more (see [`FileSource`]).
pub const READ_AHEAD_MIN_BYTES: u64 = SOURCE_READ_BYTES as u64;
/// Most read-ahead a checkpoint reserves: bounds how far `replayed` can exceed the
/// duplicates after a crash (a faster input writes checkpoints more often).
pub const READ_AHEAD_MAX_BYTES: u64 = 1 << 30;

/// Reads lines from any reader into an [`Ingest`].
struct LineReader {
    buffer: Box<[u8]>,
    record_bytes_max: usize,
    /// Source offset of `buffer[0]`.
    offset: u64,
    /// Bytes of a partial line at the start of the buffer.
    filled: usize,
    /// Set while skipping the rest of a line longer than the buffer.
    long_line: Option<LongLine>,
    /// Lines at or below this position are inside an earlier run's read limit
    /// (counted as replayed).
    replay_until: u64,
}

struct LongLine {
    start: u64,
    prefix: [u8; LONG_LINE_PREFIX_BYTES],
    prefix_len: usize,
}

/// Why [`LineReader::pump`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pumped {
    EndOfInput,
    Stopped,
}

impl LineReader {
    /// Allocates the read buffer: room for one maximal line plus a full read, so a
    /// legal line always fits. A buffer the machine cannot give is an error (the
    /// engine starts nothing), not an abort.
    fn new(record_bytes_max: usize, offset: u64) -> Result<Self, SourceError> {
        let size = record_bytes_max.saturating_add(SOURCE_READ_BYTES);
        let mut buffer = Vec::new();
        buffer.try_reserve_exact(size).map_err(|_| {
            SourceError::new(format!(
                "cannot allocate the {size}-byte read buffer (record_bytes_max + {SOURCE_READ_BYTES}): \
                 out of memory; lower engine.record_bytes_max"
            ))
        })?;
        buffer.resize(size, 0);
        Ok(LineReader {
            buffer: buffer.into_boxed_slice(),
            record_bytes_max,
            offset,
            filled: 0,
            long_line: None,
            replay_until: 0,
        })
    }

    /// The furthest position a line from the next read can have: lines end within
    /// the buffer, which starts at `offset`.
    fn reach(&self) -> u64 {
        self.offset + self.buffer.len() as u64
    }

    /// Reads until end of input or a stop request; `tick` runs before every read,
    /// with [`LineReader::reach`] (what was read before is published by then).
    fn pump(
        &mut self,
        reader: &mut dyn Read,
        ingest: &mut Ingest,
        tick: &mut dyn FnMut(&mut Ingest, u64) -> Result<(), SourceError>,
        wait_readable: Option<&dyn Fn() -> bool>,
    ) -> Result<Pumped, SourceError> {
        loop {
            if ingest.stop_requested() {
                ingest.flush();
                return Ok(Pumped::Stopped);
            }
            if ingest.memory_paused() {
                // Intake paused for memory (see `source::pressure`): read nothing,
                // keep checkpointing what the workers settle.
                tick(ingest, self.reach())?;
                std::thread::sleep(MEMORY_SAMPLE_INTERVAL);
                continue;
            }
            if let Some(wait) = wait_readable
                && !wait()
            {
                // Nothing to read yet: publish what is staged and check for a stop.
                ingest.flush();
                tick(ingest, self.reach())?;
                continue;
            }
            tick(ingest, self.reach())?;
            let n = match reader.read(&mut self.buffer[self.filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(SourceError::new(format!(
                        "read failed at byte {}: {e}",
                        self.offset
                    )));
                }
            };
            if n == 0 {
                self.finish_input(ingest)?;
                ingest.flush();
                return Ok(Pumped::EndOfInput);
            }
            self.split_lines(self.filled + n, ingest)?;
            ingest.flush();
        }
    }

    /// Pushes every complete line in `buffer[..end]` and keeps the partial rest.
    fn split_lines(&mut self, end: usize, ingest: &mut Ingest) -> Result<(), SourceError> {
        let timestamp_ms = clock::unix_ms();
        let mut line_start = 0usize;
        let search_from = self.filled;
        for newline in memchr::memchr_iter(b'\n', &self.buffer[search_from..end]) {
            let newline = search_from + newline;
            let position = self.offset + newline as u64 + 1;
            if let Some(long) = self.long_line.take() {
                reject_long_line(ingest, &long, position, self.record_bytes_max)?;
            } else {
                let line = strip_cr(&self.buffer[line_start..newline]);
                push_line(ingest, line, position, timestamp_ms, self.replay_until)?;
            }
            line_start = newline + 1;
        }
        let rest = end - line_start;
        if self.long_line.is_some() {
            // Still inside an over-long line: drop what was read of it.
            self.offset += end as u64;
            self.filled = 0;
        } else if rest > self.record_bytes_max {
            let prefix_len = rest.min(LONG_LINE_PREFIX_BYTES);
            let mut long = LongLine {
                start: self.offset + line_start as u64,
                prefix: [0; LONG_LINE_PREFIX_BYTES],
                prefix_len,
            };
            long.prefix[..prefix_len]
                .copy_from_slice(&self.buffer[line_start..line_start + prefix_len]);
            self.long_line = Some(long);
            self.offset += end as u64;
            self.filled = 0;
        } else {
            self.buffer.copy_within(line_start..end, 0);
            self.offset += line_start as u64;
            self.filled = rest;
        }
        Ok(())
    }

    /// End of input: a last line without a newline is still a message.
    fn finish_input(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        let end_position = self.offset + self.filled as u64;
        if let Some(long) = self.long_line.take() {
            reject_long_line(ingest, &long, end_position + 1, self.record_bytes_max)?;
        } else if self.filled > 0 {
            let line = strip_cr(&self.buffer[..self.filled]);
            push_line(ingest, line, end_position, clock::unix_ms(), self.replay_until)?;
            self.offset = end_position;
            self.filled = 0;
        }
        Ok(())
    }
}

#[inline]
fn strip_cr(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r'] => rest,
        _ => line,
    }
}

#[inline]
fn push_line(
    ingest: &mut Ingest,
    line: &[u8],
    position: u64,
    timestamp_ms: i64,
    replay_until: u64,
) -> Result<(), SourceError> {
    let message = Message {
        key: &[],
        payload: line,
        headers: Headers::EMPTY,
        meta: Meta { partition: 0, position, timestamp_ms, ingest_ns: 0 },
    };
    if position <= replay_until {
        ingest.count(Counter::Replayed, 1);
    }
    ingest.push(&message).map_err(|e| SourceError::new(e.to_string()))
}

#[cold]
fn reject_long_line(
    ingest: &mut Ingest,
    long: &LongLine,
    end_position: u64,
    record_bytes_max: usize,
) -> Result<(), SourceError> {
    let reason = format!(
        "line of {} bytes at byte {} exceeds record_bytes_max {} (this record keeps its first {} bytes)",
        end_position.saturating_sub(1 + long.start),
        long.start,
        record_bytes_max,
        long.prefix_len
    );
    let message = Message {
        payload: &long.prefix[..long.prefix_len],
        meta: Meta { position: end_position, ..Meta::default() },
        ..Default::default()
    };
    ingest
        .reject(&message, ErrorCategory::MessageTooLarge, &reason)
        .map_err(|e| SourceError::new(e.to_string()))
}

/// A newline-delimited file, resumable from a checkpoint file.
pub struct FileSource {
    path: PathBuf,
    checkpoint_path: Option<PathBuf>,
    checkpoint_interval: Duration,
    record_bytes_max: usize,
    /// The read buffer, allocated by [`FileSource::new`] so that a start without
    /// the memory for it fails before any output is touched.
    reader: Option<LineReader>,
    /// The last checkpoint written (or loaded); its `read` is the read limit on disk.
    checkpoint: Option<Checkpoint>,
    /// The read limit of the loaded checkpoint: kept in every checkpoint this run
    /// writes, so that a second crash still counts what the first one may have
    /// delivered.
    inherited_limit: u64,
    /// Bytes reserved past the reach of a read when the read limit is extended:
    /// twice what the last interval read, so that normally one checkpoint write per
    /// interval suffices; doubled whenever reading reaches the limit sooner.
    read_ahead: u64,
    /// Reach at the last checkpoint written because the interval was due.
    reach_at_interval: u64,
}

impl FileSource {
    /// Checks that the file can be opened now, so a typo fails before anything starts.
    pub fn new(
        path: &Path,
        checkpoint_path: Option<&Path>,
        checkpoint_interval: Duration,
        record_bytes_max: usize,
    ) -> Result<Self, SourceError> {
        let cannot = |reason: &dyn std::fmt::Display| {
            SourceError::new(format!("cannot open input file {}: {reason}", path.display()))
        };
        let file = File::open(path).map_err(|e| cannot(&e))?;
        // A directory opens on Linux and fails only at the first read.
        if file.metadata().map_err(|e| cannot(&e))?.is_dir() {
            return Err(cannot(&"it is a directory"));
        }
        let checkpoint = match checkpoint_path {
            Some(p) => {
                checkpoint::load(p).map_err(|e| SourceError::new(format!("checkpoint: {e}")))?
            }
            None => None,
        };
        Ok(FileSource {
            path: path.to_path_buf(),
            checkpoint_path: checkpoint_path.map(Path::to_path_buf),
            checkpoint_interval,
            record_bytes_max,
            reader: Some(LineReader::new(record_bytes_max, 0)?),
            checkpoint,
            inherited_limit: checkpoint.map_or(0, |c| c.read),
            read_ahead: READ_AHEAD_MIN_BYTES,
            reach_at_interval: 0,
        })
    }

    /// Where reading starts (the checkpoint's position, or 0).
    pub fn start_position(&self) -> u64 {
        self.checkpoint.map_or(0, |c| c.position)
    }

    /// The read limit on disk: no line past it may be handed to a worker.
    fn read_limit(&self) -> u64 {
        self.checkpoint.map_or(0, |c| c.read)
    }

    /// Runs before every read whose lines can reach `reach`: writes a checkpoint
    /// when the interval is `due`, and always when `reach` is past the read limit
    /// on disk (write-ahead: the new limit is durable before the read).
    fn before_read(
        &mut self,
        ingest: &mut Ingest,
        reach: u64,
        due: bool,
    ) -> Result<(), SourceError> {
        if due {
            // Twice what the last interval read: the next one normally fits.
            let read = reach.saturating_sub(self.reach_at_interval);
            self.read_ahead =
                read.saturating_mul(2).clamp(READ_AHEAD_MIN_BYTES, READ_AHEAD_MAX_BYTES);
            self.reach_at_interval = reach;
        } else if reach > self.read_limit() {
            // Reading reached the limit within the interval: reserve more.
            self.read_ahead = self.read_ahead.saturating_mul(2).min(READ_AHEAD_MAX_BYTES);
        } else {
            return Ok(());
        }
        self.store_checkpoint(ingest, reach.saturating_add(self.read_ahead))
    }

    /// Writes the settled position with read limit `limit` (raised to what was
    /// read, and to the inherited limit).
    fn store_checkpoint(&mut self, ingest: &mut Ingest, limit: u64) -> Result<(), SourceError> {
        let (Some(path), Some((position, read))) = (&self.checkpoint_path, ingest.settled()) else {
            return Ok(());
        };
        let read = read.max(position).max(limit).max(self.inherited_limit);
        let next = Checkpoint { position, read };
        if self.checkpoint != Some(next) {
            checkpoint::store(path, next).map_err(|e| {
                SourceError::new(format!("cannot write checkpoint {}: {e}", path.display()))
            })?;
            self.checkpoint = Some(next);
        }
        Ok(())
    }
}

impl Source for FileSource {
    fn tracks_progress(&self) -> bool {
        self.checkpoint_path.is_some()
    }

    fn describe(&self) -> String {
        match &self.checkpoint_path {
            Some(c) => format!("file {} (checkpoint {})", self.path.display(), c.display()),
            None => format!("file {}", self.path.display()),
        }
    }

    fn run(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        let mut file = File::open(&self.path).map_err(|e| {
            SourceError::new(format!("cannot open input file {}: {e}", self.path.display()))
        })?;
        let start = self.start_position();
        let length = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if start > length {
            return Err(SourceError::new(format!(
                "checkpoint position {start} is past the end of {} ({length} bytes): the file was replaced? \
                 delete the checkpoint to start over",
                self.path.display()
            )));
        }
        file.seek(SeekFrom::Start(start)).map_err(|e| {
            SourceError::new(format!("cannot seek {} to {start}: {e}", self.path.display()))
        })?;
        ingest.resume_from(start);
        let mut reader = match self.reader.take() {
            Some(reader) => reader,
            None => LineReader::new(self.record_bytes_max, 0)?,
        };
        reader.offset = start;
        if let Some(c) = self.checkpoint {
            reader.replay_until = c.read;
            if c.read > c.position {
                eprintln!(
                    "corestream: resuming {} at byte {} (lines up to byte {} may be delivered again)",
                    self.path.display(),
                    c.position,
                    c.read
                );
            }
        }
        if self.checkpoint_path.is_none() {
            reader.pump(&mut file, ingest, &mut |_, _| Ok(()), None)?;
            return Ok(());
        }
        self.reach_at_interval = start;
        // `None`: the first read is preceded by a checkpoint (its read limit).
        let mut last_checkpoint: Option<Instant> = None;
        let interval = self.checkpoint_interval;
        let mut tick = |ingest: &mut Ingest, reach: u64| -> Result<(), SourceError> {
            let due = last_checkpoint.is_none_or(|at| at.elapsed() >= interval);
            if due {
                last_checkpoint = Some(Instant::now());
            }
            self.before_read(ingest, reach, due)
        };
        if reader.pump(&mut file, ingest, &mut tick, None)? == Pumped::EndOfInput {
            // Every line an earlier run can have read has been read again.
            self.inherited_limit = 0;
        }
        Ok(())
    }

    fn finish(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        // Nothing more is read: the limit is what was read (or inherited).
        self.store_checkpoint(ingest, 0)
    }
}

/// How long a stdin read waits for input before checking for a stop request.
pub const STDIN_POLL_MS: i32 = 100;

/// True when `fd` has input (or end of file, or an error to report) within
/// `timeout_ms`.
fn wait_readable(fd: i32, timeout_ms: i32) -> bool {
    let mut poll_fd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: `poll_fd` is a valid, exclusively borrowed pollfd array of length 1.
    let ready = unsafe { libc::poll(&mut poll_fd, 1, timeout_ms) };
    // On error (EINTR by a signal, ...) report "readable" so the read surfaces it.
    ready != 0
}

/// Standard input, line by line (no checkpoint: stdin cannot be re-read).
pub struct StdinSource {
    record_bytes_max: usize,
}

impl StdinSource {
    pub fn new(record_bytes_max: usize) -> Self {
        StdinSource { record_bytes_max }
    }
}

impl Source for StdinSource {
    fn describe(&self) -> String {
        "stdin".to_string()
    }

    fn run(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        let mut reader = LineReader::new(self.record_bytes_max, 0)?;
        let mut stdin = io::stdin().lock();
        // A blocking read on an idle terminal or pipe would not notice a stop
        // request: wait for input with a timeout first.
        reader.pump(
            &mut stdin,
            ingest,
            &mut |_, _| Ok(()),
            Some(&|| wait_readable(0, STDIN_POLL_MS)),
        )?;
        Ok(())
    }
}

/// Any reader as a source (tests, embedding): lines from `reader`.
pub struct ReaderSource<R: Read + Send> {
    reader: R,
    record_bytes_max: usize,
    name: String,
}

impl<R: Read + Send> ReaderSource<R> {
    pub fn new(reader: R, record_bytes_max: usize, name: impl Into<String>) -> Self {
        ReaderSource { reader, record_bytes_max, name: name.into() }
    }
}

impl<R: Read + Send> Source for ReaderSource<R> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn run(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        let mut reader = LineReader::new(self.record_bytes_max, 0)?;
        reader.pump(&mut self.reader, ingest, &mut |_, _| Ok(()), None)?;
        Ok(())
    }
}
