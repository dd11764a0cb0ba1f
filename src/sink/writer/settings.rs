//! File and stdout sink settings: batching thresholds, dedup, compression, the write
//! timeout, their limits, and the memory they take per worker.

use std::time::Duration;

use super::batch::Span;

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
