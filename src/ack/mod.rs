//! How acknowledgements flow back: tickets per batch, watermarks per partition.
//!
//! ```text
//! worker: batch #s of inputs ──► sink.write(outputs, Ticket s) ──► ... durable ...
//!            │ notes (partition, last position) per batch      Acker::done(s)
//!            ▼                                                      │
//!         AckQueue (worker-owned, in batch order) ◄── pending == 0 ─┘
//!            │ oldest batches complete in order
//!            ▼
//!         Watermarks[partition] = last acknowledged position + 1
//!            │ read by the source
//!            ▼
//!         checkpoint (file position) / offset commit (Kafka)
//! ```
//!
//! A ticket's `pending` count starts at 1 (the sink's hold on the batch). A sink
//! that finishes synchronously (file, stdout, null) releases it when the batch is
//! durable in its sense (written to the OS); an asynchronous sink (Kafka) adds one
//! per message it sends and releases each from its delivery callback. Inputs that
//! were filtered or dead-lettered belong to their batch's ticket too, so every
//! position is acknowledged exactly when everything before it is settled.
//!
//! Batches may complete out of order (Kafka deliveries), but the watermark only
//! moves over the *prefix* of completed batches, so a checkpoint never skips an
//! unacknowledged message: after a crash, replay starts at or before the first
//! message not yet settled (at-least-once).

pub mod checkpoint;

use crate::limits::TICKETS_IN_FLIGHT_MAX;
use crate::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Most partitions one ticket records. A batch that would touch more partitions is
/// cut short by the worker (the rest goes into the next batch).
pub const TICKET_PARTITIONS_MAX: usize = 8;

/// Most source partitions an engine tracks (Kafka partitions of all subscribed
/// topics, numbered densely by the source). 32 KiB of watermarks.
pub const PARTITIONS_MAX: usize = 4096;

/// The last acknowledged position per partition, written by the partition's worker
/// (a partition belongs to exactly one worker), read by the source.
pub struct Watermarks {
    /// `position + 1` of the last acknowledged message; 0 when none yet.
    slots: Box<[AtomicU64]>,
}

impl Watermarks {
    pub fn new(partitions: usize) -> Self {
        assert!(partitions <= PARTITIONS_MAX, "more partitions than PARTITIONS_MAX");
        Watermarks { slots: (0..partitions).map(|_| AtomicU64::new(0)).collect() }
    }

    pub fn partitions(&self) -> usize {
        self.slots.len()
    }

    /// Records that everything in `partition` up to and including `position` is
    /// settled. Called only by the partition's worker; positions only grow.
    #[inline]
    pub fn advance(&self, partition: u32, position: u64) {
        let slot = &self.slots[partition as usize];
        debug_assert!(slot.load(Ordering::Relaxed) <= position + 1, "watermark moved back");
        slot.store(position + 1, Ordering::Release);
    }

    /// The last acknowledged position of `partition`, if any.
    #[inline]
    pub fn acknowledged(&self, partition: u32) -> Option<u64> {
        match self.slots.get(partition as usize)?.load(Ordering::Acquire) {
            0 => None,
            next => Some(next - 1),
        }
    }
}

/// One in-flight batch's completion count, shared by the worker and the sink.
struct TicketSlot {
    /// Holds still outstanding (1 for the sink's batch hold + messages in flight).
    pending: AtomicU32,
}

/// The completion side of a worker's tickets; sinks hold a clone.
#[derive(Clone)]
pub struct Acker {
    slots: Arc<[TicketSlot]>,
}

/// A batch's ticket: which slot to release. Plain data, `Copy`, no allocation; an
/// asynchronous sink can carry `Ticket::slot` through a callback as a `usize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// Slot index in the worker's ticket table (`seq % capacity`).
    pub slot: u32,
    /// The batch's sequence number in its worker (for ordering checks).
    pub seq: u64,
}

impl Acker {
    /// Adds `n` outstanding holds (an async sink, before sending `n` messages).
    #[inline]
    pub fn hold(&self, ticket: Ticket, n: u32) {
        self.slots[ticket.slot as usize].pending.fetch_add(n, Ordering::Relaxed);
    }

    /// Releases one hold. The batch is acknowledged when the last hold is released.
    #[inline]
    pub fn done(&self, ticket: Ticket) {
        self.done_slot(ticket.slot);
    }

    /// Releases one hold on every ticket from `first` to `last` (same worker,
    /// consecutive sequence numbers), as a buffering sink does on flush.
    #[inline]
    pub fn done_range(&self, first: Ticket, last: Ticket) {
        debug_assert!(first.seq <= last.seq);
        let capacity = self.slots.len() as u64;
        for seq in first.seq..=last.seq {
            self.done_slot((seq % capacity) as u32);
        }
    }

    /// As [`Acker::done`], from a slot index carried through a callback.
    #[inline]
    pub fn done_slot(&self, slot: u32) {
        let before = self.slots[slot as usize].pending.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "ticket released more often than held");
    }
}

/// Positions a batch covers, per partition (worker-local).
#[derive(Clone, Copy, Debug, Default)]
struct TicketPositions {
    len: u8,
    partitions: [u32; TICKET_PARTITIONS_MAX],
    positions: [u64; TICKET_PARTITIONS_MAX],
}

/// The positions of the batch being built; see [`AckQueue::builder`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TicketBuilder {
    positions: TicketPositions,
}

impl TicketBuilder {
    /// Notes that the batch contains `position` of `partition`. Returns false (and
    /// notes nothing) when the batch already spans [`TICKET_PARTITIONS_MAX`]
    /// partitions and this is a new one: the caller ends the batch before it.
    #[inline]
    pub fn note(&mut self, partition: u32, position: u64) -> bool {
        let p = &mut self.positions;
        let len = p.len as usize;
        // Most batches have one partition: check the last one first.
        if len > 0 && p.partitions[len - 1] == partition {
            p.positions[len - 1] = position;
            return true;
        }
        if let Some(i) = p.partitions[..len].iter().position(|&q| q == partition) {
            p.positions[i] = position;
            return true;
        }
        if len == TICKET_PARTITIONS_MAX {
            return false;
        }
        p.partitions[len] = partition;
        p.positions[len] = position;
        p.len += 1;
        true
    }

    /// True when nothing was noted.
    pub fn is_empty(&self) -> bool {
        self.positions.len == 0
    }
}

/// A worker's tickets in batch order. Owned by the worker thread.
pub struct AckQueue {
    acker: Acker,
    /// Worker-local copy of each in-flight ticket's positions, indexed like slots.
    positions: Box<[TicketPositions]>,
    /// Oldest batch not yet acknowledged.
    head_seq: u64,
    /// Next batch number. `head_seq <= next_seq <= head_seq + capacity`.
    next_seq: u64,
    watermarks: Arc<Watermarks>,
}

impl AckQueue {
    /// A queue of [`TICKETS_IN_FLIGHT_MAX`] tickets advancing `watermarks`.
    pub fn new(watermarks: Arc<Watermarks>) -> Self {
        Self::with_capacity(TICKETS_IN_FLIGHT_MAX, watermarks)
    }

    /// A queue with a given capacity (tests and models use small ones).
    pub fn with_capacity(capacity: usize, watermarks: Arc<Watermarks>) -> Self {
        assert!(capacity > 0 && capacity <= u32::MAX as usize);
        let slots: Arc<[TicketSlot]> =
            (0..capacity).map(|_| TicketSlot { pending: AtomicU32::new(0) }).collect();
        AckQueue {
            acker: Acker { slots },
            positions: vec![TicketPositions::default(); capacity].into_boxed_slice(),
            head_seq: 0,
            next_seq: 0,
            watermarks,
        }
    }

    /// The completion handle to give to sinks.
    pub fn acker(&self) -> Acker {
        self.acker.clone()
    }

    fn capacity(&self) -> u64 {
        self.positions.len() as u64
    }

    /// Batches handed out and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.next_seq - self.head_seq
    }

    /// True when another ticket can be issued (else: `poll` and wait).
    pub fn has_room(&self) -> bool {
        self.in_flight() < self.capacity()
    }

    /// A builder for the next batch's positions.
    #[inline]
    pub fn builder(&self) -> TicketBuilder {
        TicketBuilder::default()
    }

    /// Issues the ticket for a batch; the sink's batch hold is already counted.
    /// Panics if there is no room (check [`AckQueue::has_room`]): that would
    /// overwrite a batch still in flight.
    #[inline]
    pub fn issue(&mut self, builder: TicketBuilder) -> Ticket {
        assert!(self.has_room(), "AckQueue::issue without room");
        let seq = self.next_seq;
        let slot = (seq % self.capacity()) as u32;
        self.positions[slot as usize] = builder.positions;
        let previous = self.acker.slots[slot as usize].pending.swap(1, Ordering::Relaxed);
        debug_assert_eq!(previous, 0, "slot reused while in flight");
        self.next_seq += 1;
        Ticket { slot, seq }
    }

    /// Moves the watermarks over every leading acknowledged batch. Returns how many
    /// batches were acknowledged.
    #[inline]
    pub fn poll(&mut self) -> u64 {
        let start = self.head_seq;
        while self.head_seq < self.next_seq {
            let slot = (self.head_seq % self.capacity()) as usize;
            // Acquire: everything the sink did before releasing is visible.
            if self.acker.slots[slot].pending.load(Ordering::Acquire) != 0 {
                break;
            }
            let p = &self.positions[slot];
            for i in 0..p.len as usize {
                self.watermarks.advance(p.partitions[i], p.positions[i]);
            }
            self.head_seq += 1;
        }
        self.head_seq - start
    }
}

#[cfg(all(test, not(corestream_loom)))]
mod tests {
    use super::*;

    #[test]
    fn watermark_moves_only_over_the_acknowledged_prefix() {
        let watermarks = Arc::new(Watermarks::new(4));
        let mut queue = AckQueue::with_capacity(4, watermarks.clone());
        let acker = queue.acker();
        let mut tickets = Vec::new();
        for batch in 0..3u64 {
            let mut b = queue.builder();
            assert!(b.note(1, batch * 10 + 9));
            tickets.push(queue.issue(b));
        }
        // Batch 1 completes first: nothing moves yet.
        acker.done(tickets[1]);
        assert_eq!(queue.poll(), 0);
        assert_eq!(watermarks.acknowledged(1), None);
        // Batch 0 completes: batches 0 and 1 are acknowledged, in order.
        acker.done(tickets[0]);
        assert_eq!(queue.poll(), 2);
        assert_eq!(watermarks.acknowledged(1), Some(19));
        // An async sink adds holds per message; the batch waits for all of them.
        acker.hold(tickets[2], 2);
        acker.done(tickets[2]);
        acker.done(tickets[2]);
        assert_eq!(queue.poll(), 0);
        acker.done(tickets[2]);
        assert_eq!(queue.poll(), 1);
        assert_eq!(watermarks.acknowledged(1), Some(29));
        assert_eq!(queue.in_flight(), 0);
    }

    #[test]
    fn queue_refuses_more_than_capacity_in_flight() {
        let mut queue = AckQueue::with_capacity(2, Arc::new(Watermarks::new(1)));
        let a = queue.issue(queue.builder());
        queue.issue(queue.builder());
        assert!(!queue.has_room());
        queue.acker().done(a);
        queue.poll();
        assert!(queue.has_room());
        let c = queue.issue(queue.builder());
        assert_eq!(c.slot, 0, "slots are reused in order");
    }

    #[test]
    fn builder_tracks_partitions_up_to_the_limit() {
        let mut b = TicketBuilder::default();
        assert!(b.is_empty());
        for p in 0..TICKET_PARTITIONS_MAX as u32 {
            assert!(b.note(p, 1));
        }
        assert!(b.note(3, 7), "a known partition is always accepted");
        assert!(!b.note(99, 1), "a new partition past the limit is refused");
        assert_eq!(b.positions.positions[3], 7);
    }
}
