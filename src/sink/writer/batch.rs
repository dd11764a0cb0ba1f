//! One worker's buffered outputs between two writes: the bytes, where each line and
//! key is, the tickets they hold, and the per-batch dedup table.

use std::time::Instant;

use super::settings::{KEY_BYTES_RESERVED, WriterSettings};
use crate::message::{Message, Meta, Output};
use crate::sink::{PendingTickets, Undelivered};

/// Where one buffered output's line and key are, and where its input came from.
/// 24 bytes. Line `i` is `bytes[span[i-1].line_end .. span[i].line_end]` (its
/// payload and `\n`), its key `keys[span[i-1].key_end .. span[i].key_end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) line_end: u32,
    pub(super) key_end: u32,
    pub(super) partition: u32,
    /// False once a later output with the same key superseded it (dedup).
    pub(super) live: bool,
    pub(super) position: u64,
}

/// Outputs buffered between two writes, with what is needed to write them or to
/// dead-letter them.
pub(super) struct Batch {
    /// `payload \n` per buffered output, in order.
    pub(super) bytes: Vec<u8>,
    pub(super) spans: Vec<Span>,
    pub(super) keys: Vec<u8>,
    /// Spans with `live == false`.
    pub(super) superseded: usize,
    /// Tickets of the worker batches whose outputs are all in here.
    pub(super) pending: PendingTickets,
    /// When the first output arrived (only tracked with a linger time).
    pub(super) first_at: Option<Instant>,
    pub(super) dedup: Option<DedupTable>,
}

impl Batch {
    pub(super) fn new(settings: &WriterSettings) -> Self {
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

    pub(super) fn has_outputs(&self) -> bool {
        !self.spans.is_empty()
    }

    pub(super) fn reset(&mut self) {
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
    pub(super) fn append(&mut self, outputs: &[Output<'_>], inputs: &[Message<'_>]) -> usize {
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
    pub(super) fn compact(&mut self) {
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
    pub(super) fn undelivered(&self) -> impl Iterator<Item = Undelivered<'_>> {
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
pub(super) struct DedupTable {
    /// Span index + 1; 0 = empty.
    pub(super) slots: Box<[u32]>,
    pub(super) used: usize,
}

impl DedupTable {
    pub(super) fn new(flush_records: usize) -> Self {
        let capacity = (2 * flush_records).next_power_of_two();
        DedupTable { slots: vec![0u32; capacity].into_boxed_slice(), used: 0 }
    }

    pub(super) fn clear(&mut self) {
        if self.used != 0 {
            self.slots.fill(0);
            self.used = 0;
        }
    }

    /// Records span `index` under its key; returns the span it supersedes.
    #[inline]
    pub(super) fn insert(&mut self, index: usize, spans: &[Span], keys: &[u8]) -> Option<usize> {
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
pub(super) fn hash_key(key: &[u8]) -> u64 {
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
