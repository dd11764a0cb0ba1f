//! File and stdin sources: newline-delimited messages, streamed through a fixed
//! buffer (any file size, constant memory).
//!
//! A message is one line without its `\n` (a trailing `\r` is dropped too). Its
//! position is the byte offset just past the line's newline, so "acknowledged up to
//! position P" means "resume reading at byte P". The file source writes that
//! position to its checkpoint file every `checkpoint_interval` and at shutdown, and
//! on start resumes from it: a clean shutdown loses nothing, a crash replays at most
//! the lines between the checkpoint and what had been read (counted as `replayed`).
//!
//! Lines longer than `record_bytes_max` are dead-lettered with their position
//! (a line longer than the read buffer too: its first bytes are kept in the
//! dead-letter record and the rest is skipped), and reading goes on.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Ingest, Source, SourceError};
use crate::ack::checkpoint::{self, Checkpoint};
use crate::limits::SOURCE_READ_BYTES;
use crate::message::{Headers, Message, Meta};
use crate::metrics::{Counter, clock};
use crate::retry::ErrorCategory;

/// Bytes of an over-long line kept in its dead-letter record.
pub const LONG_LINE_PREFIX_BYTES: usize = 256;

/// Default time between checkpoint writes: the replay window after a crash is at
/// most this much input (plus what is in flight), at one small fsync per interval.
pub const CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);

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
    /// Positions at or below this were read before a crash (replayed on resume).
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
    fn new(record_bytes_max: usize, offset: u64) -> Self {
        // Room for one maximal line plus a full read, so a legal line always fits.
        let size = record_bytes_max.saturating_add(SOURCE_READ_BYTES);
        LineReader {
            buffer: vec![0u8; size].into_boxed_slice(),
            record_bytes_max,
            offset,
            filled: 0,
            long_line: None,
            replay_until: 0,
        }
    }

    /// Reads until end of input or a stop request; `tick` runs after every read.
    fn pump(
        &mut self,
        reader: &mut dyn Read,
        ingest: &mut Ingest,
        tick: &mut dyn FnMut(&mut Ingest) -> Result<(), SourceError>,
        wait_readable: Option<&dyn Fn() -> bool>,
    ) -> Result<Pumped, SourceError> {
        loop {
            if ingest.stop_requested() {
                ingest.flush();
                return Ok(Pumped::Stopped);
            }
            if let Some(wait) = wait_readable
                && !wait()
            {
                // Nothing to read yet: publish what is staged and check for a stop.
                ingest.flush();
                tick(ingest)?;
                continue;
            }
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
                tick(ingest)?;
                return Ok(Pumped::EndOfInput);
            }
            self.split_lines(self.filled + n, ingest)?;
            ingest.flush();
            tick(ingest)?;
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
    /// The last checkpoint written (or loaded).
    checkpoint: Option<Checkpoint>,
}

impl FileSource {
    /// Checks that the file can be opened now, so a typo fails before anything starts.
    pub fn new(
        path: &Path,
        checkpoint_path: Option<&Path>,
        checkpoint_interval: Duration,
        record_bytes_max: usize,
    ) -> Result<Self, SourceError> {
        File::open(path).map_err(|e| {
            SourceError::new(format!("cannot open input file {}: {e}", path.display()))
        })?;
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
            checkpoint,
        })
    }

    /// Where reading starts (the checkpoint's position, or 0).
    pub fn start_position(&self) -> u64 {
        self.checkpoint.map_or(0, |c| c.position)
    }

    fn store_checkpoint(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        let (Some(path), Some((position, read))) = (&self.checkpoint_path, ingest.settled()) else {
            return Ok(());
        };
        let next = Checkpoint { position, read: read.max(position) };
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
        let mut reader = LineReader::new(self.record_bytes_max, start);
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
        let mut last_checkpoint = Instant::now();
        let interval = self.checkpoint_interval;
        let mut tick = |ingest: &mut Ingest| -> Result<(), SourceError> {
            if last_checkpoint.elapsed() >= interval {
                last_checkpoint = Instant::now();
                self.store_checkpoint(ingest)?;
            }
            Ok(())
        };
        reader.pump(&mut file, ingest, &mut tick, None)?;
        Ok(())
    }

    fn finish(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        self.store_checkpoint(ingest)
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
        let mut reader = LineReader::new(self.record_bytes_max, 0);
        let mut stdin = io::stdin().lock();
        // A blocking read on an idle terminal or pipe would not notice a stop
        // request: wait for input with a timeout first.
        reader.pump(
            &mut stdin,
            ingest,
            &mut |_| Ok(()),
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
        let mut reader = LineReader::new(self.record_bytes_max, 0);
        reader.pump(&mut self.reader, ingest, &mut |_| Ok(()), None)?;
        Ok(())
    }
}
