//! Where a message waits: a single-producer single-consumer ring of variable-length
//! records in one fixed byte buffer.
//!
//! # Contract
//! - **Allocated once.** [`ring`] allocates the buffer; pushing and popping never
//!   allocate. Capacity is a power of two between [`RING_BYTES_MIN`] and
//!   [`RING_BYTES_MAX`].
//! - **Wait-free.** Every operation finishes in a bounded number of steps; "full" and
//!   "empty" are results, not waits. Waiting is the caller's choice, through the
//!   cells exposed for [`crate::wait`].
//! - **Nothing overwritten, nothing truncated.** A record that does not fit now is
//!   [`PushError::Full`]; a record that can never fit (more than half the ring) is
//!   [`PushError::TooLarge`], which the caller routes (count it, dead-letter it).
//! - **Batches.** [`Producer::write`] stages records and [`Producer::commit`]
//!   publishes them with one release store; [`Consumer::read_batch`] reads many and
//!   releases them with one store when the batch is dropped. One index publish per
//!   batch is what makes a ring fast (4-8x over one at a time, see benches/README.md).
//!
//! # Layout
//! Records are [`frame`]s laid end to end; a frame never wraps: when it does not fit
//! before the end of the buffer, a pad marker fills the rest and the frame starts at
//! offset 0. Indices (`head`, `tail`) count bytes since creation and never wrap in
//! practice (2^64 bytes); the buffer offset is `index & mask`.
//!
//! ```
//! use corestream::message::{Message, Meta};
//! use corestream::ring::ring;
//!
//! let (mut producer, mut consumer) = ring(4096).unwrap();
//! for i in 0..3u64 {
//!     let meta = Meta { position: i, ..Meta::default() };
//!     producer.write(&Message { key: b"k", payload: b"hello", meta, ..Default::default() }).unwrap();
//! }
//! producer.commit(); // one publish for the three records
//!
//! let batch = consumer.read_batch(16);
//! let positions: Vec<u64> = batch.iter().map(|m| m.meta.position).collect();
//! assert_eq!(positions, [0, 1, 2]);
//! drop(batch); // releases the space with one store
//! assert!(consumer.read_batch(16).is_empty());
//! ```

pub mod frame;

use std::cell::Cell;

use crossbeam::utils::CachePadded;

use crate::limits::{RECORD_HEADER_BYTES, RING_BYTES_MAX, RING_BYTES_MIN};
use crate::message::Message;
use crate::sync::Arc;
use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::wait::{WaitCell, Waited, Waiter};

use frame::{FrameError, PAD_MARKER};

/// Why a ring could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The capacity is not a power of two within the allowed range.
    BadCapacity { capacity_bytes: usize },
    /// The allocator could not give the ring's buffer.
    OutOfMemory { capacity_bytes: usize },
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            RingError::BadCapacity { capacity_bytes } => write!(
                f,
                "ring capacity {capacity_bytes} bytes must be a power of two between \
                 {RING_BYTES_MIN} and {RING_BYTES_MAX}"
            ),
            RingError::OutOfMemory { capacity_bytes } => {
                write!(f, "cannot allocate a ring of {capacity_bytes} bytes: out of memory")
            }
        }
    }
}

impl std::error::Error for RingError {}

/// Why a record was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// Not enough free space now; commit, wait for the consumer and try again.
    Full,
    /// The record can never fit this ring (or breaks a frame limit).
    TooLarge(FrameError),
    /// The consumer is gone; nothing will read this ring again.
    Closed,
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Full => f.write_str("ring full"),
            PushError::TooLarge(e) => e.fmt(f),
            PushError::Closed => f.write_str("ring consumer closed"),
        }
    }
}

impl std::error::Error for PushError {}

/// State shared by the two ends, grouped by the thread that writes it.
struct Shared {
    buffer: crate::sync::ByteCells,
    /// `capacity - 1`; capacity is a power of two.
    mask: usize,
    /// Largest frame accepted: half the ring, so wrap padding never blocks a record.
    frame_bytes_max: usize,
    /// Written by the consumer only: bytes released. `head <= tail`.
    head: CachePadded<AtomicUsize>,
    /// Written by the producer only: bytes published. `tail - head <= capacity`.
    tail: CachePadded<AtomicUsize>,
    /// The consumer parks here when the ring is empty; the producer notifies it.
    data_waiter: CachePadded<WaitCell>,
    /// The producer parks here when the ring is full; the consumer notifies it.
    space_waiter: CachePadded<WaitCell>,
    producer_closed: AtomicBool,
    consumer_closed: AtomicBool,
}

impl Shared {
    #[inline(always)]
    fn capacity(&self) -> usize {
        self.mask + 1
    }
}

/// Creates a ring of `capacity_bytes` (a power of two) and returns its two ends.
pub fn ring(capacity_bytes: usize) -> Result<(Producer, Consumer), RingError> {
    if !capacity_bytes.is_power_of_two()
        || !(RING_BYTES_MIN..=RING_BYTES_MAX).contains(&capacity_bytes)
    {
        return Err(RingError::BadCapacity { capacity_bytes });
    }
    ring_unchecked(capacity_bytes).ok_or(RingError::OutOfMemory { capacity_bytes })
}

/// Like [`ring`] without the minimum size, for loom models (which need tiny rings).
#[doc(hidden)]
pub fn ring_for_model(capacity_bytes: usize) -> (Producer, Consumer) {
    assert!(capacity_bytes.is_power_of_two() && capacity_bytes >= 2 * RECORD_HEADER_BYTES);
    ring_unchecked(capacity_bytes).expect("a model's ring is small")
}

/// `None` when the buffer cannot be allocated.
fn ring_unchecked(capacity_bytes: usize) -> Option<(Producer, Consumer)> {
    let shared = Arc::new(Shared {
        // Page-aligned: the buffer's page offsets are then known (see the memcpy note
        // in benches/README.md) and no frame straddles a page needlessly.
        buffer: crate::sync::ByteCells::try_new(capacity_bytes, 4096)?,
        mask: capacity_bytes - 1,
        frame_bytes_max: capacity_bytes / 2,
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        data_waiter: CachePadded::new(WaitCell::new()),
        space_waiter: CachePadded::new(WaitCell::new()),
        producer_closed: AtomicBool::new(false),
        consumer_closed: AtomicBool::new(false),
    });
    let producer = Producer {
        shared: shared.clone(),
        tail: 0,
        tail_published: 0,
        head_cached: 0,
        records_staged: 0,
    };
    let consumer = Consumer { shared, head: 0, tail_cached: 0 };
    Some((producer, consumer))
}

/// The writing end. Owned by one thread at a time (`Send`, not `Sync`).
pub struct Producer {
    shared: Arc<Shared>,
    /// Next byte to write. `tail_published <= tail <= head_cached + capacity`.
    tail: usize,
    /// The last value stored to `shared.tail`.
    tail_published: usize,
    /// The consumer's head as last read; may be stale (too small), never too large.
    head_cached: usize,
    /// Records written since the last commit.
    records_staged: usize,
}

/// A read-only view of a ring's fill, for observers on other threads (the observe
/// server). Holds the ring's shared state alive; reads two indices, writes nothing.
#[derive(Clone)]
pub struct RingFill {
    shared: Arc<Shared>,
}

impl RingFill {
    /// Bytes published and not yet released (records waiting or being read,
    /// with their headers and wrap padding). A lower bound of nothing: both ends move
    /// on while it is read, but it never exceeds the capacity.
    pub fn used_bytes(&self) -> usize {
        // Head first: `tail` only grows and `head <= tail` always, so a tail loaded
        // after the head is at least that head.
        let head = self.shared.head.load(Ordering::Acquire);
        let tail = self.shared.tail.load(Ordering::Acquire);
        let used = tail.saturating_sub(head);
        debug_assert!(used <= self.shared.capacity());
        used.min(self.shared.capacity())
    }

    /// Ring capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }
}

impl Producer {
    /// Ring capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// A view of this ring's fill for another thread.
    pub fn fill(&self) -> RingFill {
        RingFill { shared: self.shared.clone() }
    }

    /// Largest frame this ring accepts (header and padding included).
    pub fn frame_bytes_max(&self) -> usize {
        self.shared.frame_bytes_max
    }

    /// Records written but not yet published.
    pub fn staged(&self) -> usize {
        self.records_staged
    }

    /// Writes one record without publishing it; [`Producer::commit`] publishes every
    /// staged record at once. On `Full`, commit before waiting (the consumer cannot
    /// free space for records it cannot see).
    #[inline]
    pub fn write(&mut self, message: &Message<'_>) -> Result<(), PushError> {
        self.write_parts(message, &[])
    }

    /// Like [`Producer::write`], with the payload gathered from `message.payload`
    /// followed by each of `more_payload` (no intermediate buffer: the generator
    /// builds payloads this way). The record's payload is the concatenation.
    #[inline]
    pub fn write_parts(
        &mut self,
        message: &Message<'_>,
        more_payload: &[&[u8]],
    ) -> Result<(), PushError> {
        let extra: usize = more_payload.iter().map(|p| p.len()).sum();
        let payload_bytes = message.payload.len() + extra;
        let len =
            frame::frame_len_for(message.key.len(), message.headers.encoded().len(), payload_bytes)
                .map_err(PushError::TooLarge)?;
        if len > self.shared.frame_bytes_max {
            return Err(PushError::TooLarge(FrameError::TooLarge {
                frame_bytes: len,
                frame_bytes_max: self.shared.frame_bytes_max,
            }));
        }
        let capacity = self.shared.capacity();
        let mut offset = self.tail & self.shared.mask;
        let to_end = capacity - offset;
        let pad = if len <= to_end { 0 } else { to_end };
        if self.tail + pad + len - self.head_cached > capacity {
            self.head_cached = self.shared.head.load(Ordering::Acquire);
            debug_assert!(self.head_cached <= self.tail);
            if self.tail + pad + len - self.head_cached > capacity {
                if self.shared.consumer_closed.load(Ordering::Acquire) {
                    return Err(PushError::Closed);
                }
                return Err(PushError::Full);
            }
        }
        let buffer = &self.shared.buffer;
        if pad != 0 {
            debug_assert!(pad >= 4);
            // SAFETY: [tail, tail + pad) is free (checked against head above) and
            // unpublished, so only this thread touches it; offset + 4 <= capacity.
            unsafe { buffer.write(offset, &PAD_MARKER.to_le_bytes()) };
            self.tail += pad;
            offset = 0;
        }
        // SAFETY: [offset, offset + len) lies in the buffer (len <= to_end, or offset
        // is 0 after padding and len <= capacity / 2) and in the free, unpublished
        // region [tail, head + capacity), which only the producer touches. The parts
        // written add up to `len` minus alignment padding.
        unsafe {
            buffer.write(offset, &frame::encode_header_for(message, payload_bytes));
            let mut at = offset + RECORD_HEADER_BYTES;
            if !message.key.is_empty() {
                buffer.write(at, message.key);
                at += message.key.len();
            }
            let headers = message.headers.encoded();
            if !headers.is_empty() {
                buffer.write(at, headers);
                at += headers.len();
            }
            buffer.write(at, message.payload);
            at += message.payload.len();
            for part in more_payload {
                buffer.write(at, part);
                at += part.len();
            }
            debug_assert!(at <= offset + len);
        }
        self.tail += len;
        self.records_staged += 1;
        Ok(())
    }

    /// Publishes every staged record with one release store and wakes the consumer
    /// if it is parked. Returns the number of records published.
    #[inline]
    pub fn commit(&mut self) -> usize {
        if self.tail == self.tail_published {
            return 0;
        }
        self.shared.tail.store(self.tail, Ordering::Release);
        self.tail_published = self.tail;
        self.shared.data_waiter.notify();
        std::mem::take(&mut self.records_staged)
    }

    /// Writes and publishes one record.
    #[inline]
    pub fn push(&mut self, message: &Message<'_>) -> Result<(), PushError> {
        self.write(message)?;
        self.commit();
        Ok(())
    }

    /// True when a frame of `frame_bytes` would fit now (refreshing the cached head).
    pub fn has_space(&mut self, frame_bytes: usize) -> bool {
        let capacity = self.shared.capacity();
        let to_end = capacity - (self.tail & self.shared.mask);
        let need = if frame_bytes <= to_end { frame_bytes } else { to_end + frame_bytes };
        self.head_cached = self.shared.head.load(Ordering::Acquire);
        self.tail + need - self.head_cached <= capacity
    }

    /// True once the consumer has been dropped.
    pub fn is_consumer_closed(&self) -> bool {
        self.shared.consumer_closed.load(Ordering::Acquire)
    }

    /// Takes one step of `waiter` waiting until a frame of `frame_bytes` fits.
    /// Commits staged records first. Returns true when there is space.
    pub fn wait_for_space(&mut self, frame_bytes: usize, waiter: &mut Waiter) -> bool {
        self.commit();
        if self.has_space(frame_bytes) || self.is_consumer_closed() {
            return true;
        }
        let shared = &*self.shared;
        let capacity = shared.capacity();
        let to_end = capacity - (self.tail & shared.mask);
        let need = if frame_bytes <= to_end { frame_bytes } else { to_end + frame_bytes };
        let tail = self.tail;
        let waited = waiter.wait(&shared.space_waiter, || {
            tail + need - shared.head.load(Ordering::Acquire) <= capacity
                || shared.consumer_closed.load(Ordering::Acquire)
        });
        debug_assert!(matches!(waited, Waited::Spun | Waited::Yielded | Waited::Parked));
        self.has_space(frame_bytes)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.commit();
        self.shared.producer_closed.store(true, Ordering::Release);
        self.shared.data_waiter.notify();
    }
}

/// The reading end. Owned by one thread at a time (`Send`, not `Sync`).
pub struct Consumer {
    shared: Arc<Shared>,
    /// Next byte to read. `head <= tail_cached`.
    head: usize,
    /// The producer's tail as last read; may be stale (too small), never too large.
    tail_cached: usize,
}

impl Consumer {
    /// Ring capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Starts a batch of at most `records_max` records from what is published now.
    /// The batch borrows the consumer; dropping it (or [`ReadBatch::release`])
    /// releases the records actually read, with one store.
    #[inline]
    pub fn read_batch(&mut self, records_max: usize) -> ReadBatch<'_> {
        // The producer's tail is read only when the records known so far run out
        // (here, or once more in `peek` when the batch reaches them): with a backlog
        // the consumer does not touch the line the producer writes on every publish.
        if self.tail_cached == self.head {
            self.tail_cached = self.shared.tail.load(Ordering::Acquire);
        }
        let start = self.head;
        let end = self.tail_cached;
        ReadBatch {
            consumer: self,
            start,
            cursor: Cell::new(start),
            end: Cell::new(end),
            tail_reloaded: Cell::new(false),
            records_left: Cell::new(records_max),
            records_read: Cell::new(0),
            peeked_end: Cell::new(usize::MAX),
        }
    }

    /// True when nothing is published beyond what this consumer has read.
    pub fn is_empty(&mut self) -> bool {
        if self.tail_cached == self.head {
            self.tail_cached = self.shared.tail.load(Ordering::Acquire);
        }
        self.tail_cached == self.head
    }

    /// True when the producer is gone and every record has been read.
    pub fn is_finished(&mut self) -> bool {
        if !self.shared.producer_closed.load(Ordering::Acquire) {
            return false;
        }
        // The producer's last tail store happens before its close flag store.
        self.tail_cached = self.shared.tail.load(Ordering::Acquire);
        self.tail_cached == self.head
    }

    /// Bytes published and not yet released (a queue-depth gauge).
    pub fn bytes_queued(&self) -> usize {
        self.shared.tail.load(Ordering::Acquire) - self.head
    }

    /// Takes one step of `waiter` waiting for data (or the producer closing).
    pub fn wait_for_data(&mut self, waiter: &mut Waiter) -> bool {
        if !self.is_empty() {
            return true;
        }
        let shared = &*self.shared;
        let head = self.head;
        waiter.wait(&shared.data_waiter, || {
            shared.tail.load(Ordering::Acquire) != head
                || shared.producer_closed.load(Ordering::Acquire)
        });
        !self.is_empty()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shared.consumer_closed.store(true, Ordering::Release);
        self.shared.space_waiter.notify();
    }
}

/// Records read from a ring in one go; released when dropped.
///
/// Records are read lazily in ring order with [`ReadBatch::peek`] /
/// [`ReadBatch::advance`] or [`ReadBatch::iter`]; only records actually read are
/// released, so a caller may stop early (the rest stays for the next batch).
pub struct ReadBatch<'c> {
    consumer: &'c mut Consumer,
    /// Head when the batch started.
    start: usize,
    /// Next byte to read; `start <= cursor <= end`.
    cursor: Cell<usize>,
    /// Published tail as last read (the batch may read it once more when it
    /// reaches it).
    end: Cell<usize>,
    /// True once `end` was refreshed during this batch.
    tail_reloaded: Cell<bool>,
    records_left: Cell<usize>,
    records_read: Cell<usize>,
    /// End of the record returned by the last `peek`, or `usize::MAX`.
    peeked_end: Cell<usize>,
}

impl<'c> ReadBatch<'c> {
    /// True when the batch has no record at all (nothing published).
    pub fn is_empty(&self) -> bool {
        self.start == self.end.get()
    }

    /// Records read (advanced past) so far.
    pub fn records_read(&self) -> usize {
        self.records_read.get()
    }

    /// The next record, without consuming it.
    #[inline]
    pub fn peek(&self) -> Option<Message<'_>> {
        if self.records_left.get() == 0 {
            return None;
        }
        let shared = &*self.consumer.shared;
        let mut cursor = self.cursor.get();
        loop {
            if cursor == self.end.get() {
                if self.tail_reloaded.replace(true) {
                    return None;
                }
                let tail = shared.tail.load(Ordering::Acquire);
                self.end.set(tail);
                if cursor == tail {
                    return None;
                }
            }
            let offset = cursor & shared.mask;
            // SAFETY: [cursor, end) was published by the producer's release store of
            // `tail`, read with acquire; it is not rewritten until `head` passes it,
            // which happens only when this batch is released. Every frame starts with
            // at least 8 bytes (a pad marker is followed by padding to an 8-byte
            // boundary, and a full header is 40).
            let first = unsafe { shared.buffer.slice(offset, 8) };
            let word0 = u64::from_le_bytes(first.try_into().unwrap_or_default());
            if word0 as u32 == PAD_MARKER {
                // The rest of the buffer is padding: the next frame starts at 0.
                cursor += shared.capacity() - offset;
                self.cursor.set(cursor);
                continue;
            }
            let len = frame::frame_len_from(
                word0 as u32,
                ((word0 >> 32) & 0xffff) as usize,
                (word0 >> 48) as usize,
            );
            debug_assert!(offset + len <= shared.capacity(), "frames never wrap");
            debug_assert!(cursor + len <= self.end.get());
            self.peeked_end.set(cursor + len);
            // SAFETY: as above; the producer wrote `len` contiguous bytes here.
            let bytes = unsafe { shared.buffer.slice(offset, len) };
            return Some(frame::decode_trusted(bytes));
        }
    }

    /// Consumes the record returned by the last [`ReadBatch::peek`].
    #[inline]
    pub fn advance(&self) {
        let end = self.peeked_end.replace(usize::MAX);
        assert!(end != usize::MAX, "ReadBatch::advance without a peeked record");
        self.cursor.set(end);
        self.records_left.set(self.records_left.get() - 1);
        self.records_read.set(self.records_read.get() + 1);
    }

    /// The next record, consumed.
    #[inline]
    pub fn next_record(&self) -> Option<Message<'_>> {
        let message = self.peek()?;
        self.advance();
        Some(message)
    }

    /// Iterates (and consumes) the records of this batch.
    pub fn iter(&self) -> BatchIter<'_, 'c> {
        BatchIter { batch: self }
    }

    /// Releases the records read so far (same as dropping the batch).
    pub fn release(self) {}
}

impl Drop for ReadBatch<'_> {
    #[inline]
    fn drop(&mut self) {
        self.consumer.tail_cached = self.end.get();
        let cursor = self.cursor.get();
        if cursor == self.start {
            return;
        }
        let shared = &*self.consumer.shared;
        let capacity = shared.capacity();
        // Tell loom the reads of [start, cursor) are over (no-op in std builds).
        let (mut at, mut left) = (self.start, cursor - self.start);
        while left > 0 {
            let offset = at & shared.mask;
            let run = left.min(capacity - offset);
            shared.buffer.done_reading(offset, run);
            at += run;
            left -= run;
        }
        self.consumer.head = cursor;
        shared.head.store(cursor, Ordering::Release);
        shared.space_waiter.notify();
    }
}

/// Iterator over a [`ReadBatch`]; each item is consumed as it is returned.
pub struct BatchIter<'b, 'c> {
    batch: &'b ReadBatch<'c>,
}

impl<'b> Iterator for BatchIter<'b, '_> {
    type Item = Message<'b>;

    #[inline]
    fn next(&mut self) -> Option<Message<'b>> {
        self.batch.next_record()
    }
}

#[cfg(all(test, not(corestream_loom)))]
mod tests;
