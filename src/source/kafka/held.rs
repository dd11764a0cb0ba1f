//! Held messages and pauses: what happens when a worker's ring is full.

use std::ptr::NonNull;

use rdkafka::bindings as rd;

use super::{HELD_MESSAGES_MAX, KafkaSource, NO_OFFSET, destroy};
use crate::kafka::native::{KafkaCode, PartitionList};
use crate::source::{Ingest, Pushed, SourceError};
use crate::sync::atomic::Ordering;

/// A message kept back because its worker's ring was full.
#[derive(Clone, Copy)]
pub(super) struct Held {
    pub(super) message: NonNull<rd::rd_kafka_message_t>,
    pub(super) slot: u32,
}

impl KafkaSource {
    pub(super) fn hold(&mut self, message: NonNull<rd::rd_kafka_message_t>, slot: u32) {
        debug_assert!(self.held.len() < HELD_MESSAGES_MAX);
        self.held.push(Held { message, slot });
        self.slots[slot as usize].held += 1;
    }

    /// Pushes held messages in order; a partition whose ring is still full is
    /// skipped for the rest of the pass. Returns whether anything moved.
    pub(super) fn retry_held(&mut self, ingest: &mut Ingest) -> Result<bool, SourceError> {
        self.pass = self.pass.wrapping_add(1).max(1);
        let pass = self.pass;
        let mut kept = 0usize;
        let mut moved = false;
        for i in 0..self.held.len() {
            let held = self.held[i];
            if self.slots[held.slot as usize].blocked_pass == pass {
                self.held[kept] = held;
                kept += 1;
                continue;
            }
            // SAFETY: held messages are valid until destroyed.
            let m = unsafe { held.message.as_ref() };
            match self.push(m, held.slot, ingest)? {
                Pushed::Full { .. } => {
                    self.slots[held.slot as usize].blocked_pass = pass;
                    self.held[kept] = held;
                    kept += 1;
                    self.maybe_pause(held.slot);
                }
                Pushed::Written | Pushed::Rejected => {
                    destroy(held.message);
                    moved = true;
                    let state = &mut self.slots[held.slot as usize];
                    state.held -= 1;
                    if state.held == 0 && state.paused {
                        if self.memory_paused {
                            // Stays paused for memory; resumed with the others.
                            state.paused = false;
                        } else {
                            self.resume(held.slot);
                        }
                    }
                }
            }
        }
        self.held.truncate(kept);
        Ok(moved)
    }

    /// A one-entry partition list of `slot` (C allocation only).
    pub(super) fn list_of(&self, slot: u32) -> PartitionList {
        let state = &self.slots[slot as usize];
        let mut list = PartitionList::with_capacity(1);
        list.add(&self.topics[state.topic as usize].name, state.partition, NO_OFFSET);
        list
    }

    /// Pauses `slot` (its worker's ring is full) when that lets other partitions
    /// flow: some other worker with partitions has room. When every worker is full,
    /// pausing would only make librdkafka drop and refetch what it prefetched;
    /// instead the held list fills and the source waits for the rings to drain.
    pub(super) fn maybe_pause(&mut self, slot: u32) {
        if self.slots[slot as usize].paused {
            return;
        }
        let worker = slot as usize % self.workers;
        let others_have_room = (0..self.workers)
            .any(|w| w != worker && !self.worker_full[w] && self.worker_partitions[w] > 0);
        if others_have_room {
            self.pause(slot);
        }
    }

    /// Recounts the assigned partitions per worker (after an assignment change).
    pub(super) fn recount_workers(&mut self) {
        self.worker_partitions.iter_mut().for_each(|n| *n = 0);
        for &slot in &self.assigned {
            self.worker_partitions[slot as usize % self.workers] += 1;
        }
    }

    pub(super) fn pause(&mut self, slot: u32) {
        let list = self.list_of(slot);
        // SAFETY: valid handle and list.
        let code = KafkaCode(unsafe {
            rd::rd_kafka_pause_partitions(self.consumer.client.ptr(), list.as_ptr())
        });
        if !code.is_ok() {
            eprintln!("corestream: kafka source: cannot pause a partition: {code}");
        }
        self.slots[slot as usize].paused = true;
        self.stats.pauses.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn resume(&mut self, slot: u32) {
        let list = self.list_of(slot);
        // SAFETY: valid handle and list.
        let code = KafkaCode(unsafe {
            rd::rd_kafka_resume_partitions(self.consumer.client.ptr(), list.as_ptr())
        });
        if !code.is_ok() {
            eprintln!("corestream: kafka source: cannot resume a partition: {code}");
        }
        self.slots[slot as usize].paused = false;
        self.stats.resumes.fetch_add(1, Ordering::Relaxed);
    }

    /// Pauses (`true`) or resumes every partition librdkafka assigned to this
    /// consumer, for memory pressure ([`crate::source::pressure`]). Polling goes
    /// on while paused, so rebalances are served and the consumer stays in its
    /// group; librdkafka drops what it prefetched for the paused partitions (memory
    /// released) and refetches from the next offset on resume. A partition also
    /// paused for its full ring stays paused until its held messages are in.
    pub(super) fn pause_for_memory(&mut self, pause: bool) {
        self.memory_paused = pause;
        let assignment = match self.consumer.assignment() {
            Ok(list) => list,
            Err(code) => {
                eprintln!("corestream: kafka source: cannot read the assignment: {code}");
                return;
            }
        };
        let list = if pause {
            self.stats.memory_pauses.fetch_add(1, Ordering::Relaxed);
            assignment
        } else {
            let mut list = PartitionList::with_capacity(assignment.len());
            for i in 0..assignment.len() {
                let Some((topic, partition, _, _)) = assignment.get(i) else { continue };
                let ring_full = self
                    .slot_of_entry(topic, partition)
                    .is_some_and(|(_, slot)| self.slots[slot as usize].paused);
                if !ring_full {
                    list.add(topic, partition, NO_OFFSET);
                }
            }
            list
        };
        self.pause_list(&list, pause);
    }

    /// Pauses or resumes the partitions of `list` (a rebalance's new assignment
    /// while intake is paused for memory, or the whole assignment).
    pub(super) fn pause_list(&self, list: &PartitionList, pause: bool) {
        if list.is_empty() {
            return;
        }
        // SAFETY: valid handle and list.
        let code = KafkaCode(unsafe {
            if pause {
                rd::rd_kafka_pause_partitions(self.consumer.client.ptr(), list.as_ptr())
            } else {
                rd::rd_kafka_resume_partitions(self.consumer.client.ptr(), list.as_ptr())
            }
        });
        if !code.is_ok() {
            let what = if pause { "pause" } else { "resume" };
            eprintln!("corestream: kafka source: cannot {what} partitions for memory: {code}");
        }
    }

    /// Drops held messages of `slots` (they were never pushed; the next owner, or
    /// this consumer after a reassignment, reads them again).
    pub(super) fn drop_held(&mut self, slots: &[u32]) {
        let mut kept = 0;
        for i in 0..self.held.len() {
            let held = self.held[i];
            if slots.contains(&held.slot) {
                destroy(held.message);
                self.slots[held.slot as usize].held -= 1;
            } else {
                self.held[kept] = held;
                kept += 1;
            }
        }
        self.held.truncate(kept);
    }

    pub(super) fn destroy_held(&mut self) {
        for held in self.held.drain(..) {
            destroy(held.message);
        }
    }
}
