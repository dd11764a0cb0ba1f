//! Partition slots: each assigned (topic, partition) gets a dense slot id, the
//! watermark index the workers advance and the key of `slot % workers` routing.

use std::ffi::{CStr, CString};

use rdkafka::bindings as rd;

use super::{KafkaSource, NO_OFFSET, NO_SLOT};
use crate::ack::PARTITIONS_MAX;
use crate::source::SourceError;

/// Per-slot state, owned by the source thread.
#[derive(Clone, Copy, Debug)]
pub(super) struct SlotState {
    /// Index into `topics`, and the Kafka partition, of this slot.
    pub(super) topic: u32,
    pub(super) partition: i32,
    /// Ever handed out (slots are not reused by another partition).
    pub(super) used: bool,
    /// Currently assigned to this consumer.
    pub(super) assigned: bool,
    /// Offset of the last message written into a ring; `NO_OFFSET` if none.
    pub(super) last_pushed: i64,
    /// Offset of the last message dead-lettered at the source; `NO_OFFSET` if none.
    pub(super) last_rejected: i64,
    /// Next offset as last committed (or known committed); `NO_OFFSET` if none.
    pub(super) committed: i64,
    /// Messages of this slot in the held list.
    pub(super) held: u32,
    /// Paused because its worker's ring was full.
    pub(super) paused: bool,
    /// On reassignment: everything pushed from the previous assignment was
    /// acknowledged (read by `slot_for_first_message`).
    pub(super) drained_at_assign: bool,
    /// The retry pass in which this slot's ring was found full.
    pub(super) blocked_pass: u32,
}

impl Default for SlotState {
    fn default() -> Self {
        SlotState {
            topic: 0,
            partition: 0,
            used: false,
            assigned: false,
            last_pushed: NO_OFFSET,
            last_rejected: NO_OFFSET,
            committed: NO_OFFSET,
            held: 0,
            paused: false,
            drained_at_assign: false,
            blocked_pass: 0,
        }
    }
}

/// One Kafka partition as seen by this consumer.
#[derive(Clone, Copy, Debug)]
pub(super) struct PartitionEntry {
    pub(super) slot: u32,
    /// Reassigned after a revoke: decide at its first message whether the old slot
    /// can be kept (see `slot_for_first_message`).
    pub(super) decide_on_first: bool,
}

/// One subscribed topic: its name (for partition lists) and its partitions' slots.
pub(super) struct TopicEntry {
    pub(super) name: CString,
    /// The `rd_kafka_topic_t` last seen on a message of this topic (compared only).
    pub(super) handle: *const rd::rd_kafka_topic_t,
    pub(super) partitions: Vec<PartitionEntry>,
}

impl KafkaSource {
    /// The slot of a message's partition: a cached compare in the common case.
    #[inline]
    pub(super) fn slot_of(
        &mut self,
        rkt: *const rd::rd_kafka_topic_t,
        partition: i32,
        offset: i64,
    ) -> Result<u32, SourceError> {
        let (cached_rkt, cached_partition, cached_slot) = self.last_lookup;
        if cached_rkt == rkt && cached_partition == partition {
            return Ok(cached_slot);
        }
        let slot = self.lookup(rkt, partition, offset)?;
        self.last_lookup = (rkt, partition, slot);
        Ok(slot)
    }

    #[cold]
    pub(super) fn lookup(
        &mut self,
        rkt: *const rd::rd_kafka_topic_t,
        partition: i32,
        offset: i64,
    ) -> Result<u32, SourceError> {
        let index = match self.topics.iter().position(|t| t.handle == rkt) {
            Some(i) => i,
            None => {
                // SAFETY: a message's topic handle is valid while the message is.
                let name = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(rkt)) };
                let i = self.topic_index(name);
                self.topics[i].handle = rkt;
                i
            }
        };
        let p = usize::try_from(partition)
            .map_err(|_| SourceError::new("librdkafka returned a negative partition"))?;
        let entry = self.topics[index].partitions.get(p).copied();
        match entry {
            Some(e) if e.slot != NO_SLOT && !e.decide_on_first => Ok(e.slot),
            Some(e) if e.slot != NO_SLOT => {
                let slot = self.slot_for_first_message(e.slot, offset)?;
                self.topics[index].partitions[p] = PartitionEntry { slot, decide_on_first: false };
                Ok(slot)
            }
            // A message for a partition never assigned (cannot happen with a group
            // subscription): give it a slot rather than lose it.
            _ => self.assign_slot(index, partition),
        }
    }

    /// A partition came back after a revoke. Keep its old slot if everything pushed
    /// from it is acknowledged and this message is past it (the watermark then keeps
    /// growing); else give it a fresh slot on the same worker, so old in-flight
    /// acknowledgements can never move the new watermark backwards.
    /// The slot joins the commit list only now, so an offset from its previous
    /// assignment is never committed over the group's newer one.
    pub(super) fn slot_for_first_message(
        &mut self,
        old: u32,
        offset: i64,
    ) -> Result<u32, SourceError> {
        let state = self.slots[old as usize];
        if state.last_pushed == NO_OFFSET || (state.drained_at_assign && offset > state.last_pushed)
        {
            // The partition starts at `offset` (the group's committed offset or, if
            // further, our own acknowledged progress): commit it once more, so a
            // start past a refused commit reaches the group without new traffic.
            self.slots[old as usize].committed = offset - 1;
            self.assigned.push(old);
            self.recount_workers();
            return Ok(old);
        }
        let fresh = self.free_slot(Some(old as usize % self.workers.max(1)))?;
        let (topic, partition) = (state.topic, state.partition);
        self.slots[fresh as usize] = SlotState {
            topic,
            partition,
            used: true,
            assigned: true,
            committed: offset,
            ..SlotState::default()
        };
        self.slots[old as usize].assigned = false;
        self.assigned.push(fresh);
        self.recount_workers();
        Ok(fresh)
    }

    pub(super) fn topic_index(&mut self, name: &CStr) -> usize {
        if let Some(i) = self.topics.iter().position(|t| t.name.as_c_str() == name) {
            return i;
        }
        self.topics.push(TopicEntry {
            name: name.to_owned(),
            handle: std::ptr::null(),
            partitions: Vec::new(),
        });
        self.topics.len() - 1
    }

    /// A slot never handed out, preferring one on worker `residue`.
    pub(super) fn free_slot(&self, residue: Option<usize>) -> Result<u32, SourceError> {
        let workers = self.workers.max(1);
        let found = residue
            .and_then(|r| (r..PARTITIONS_MAX).step_by(workers).find(|&s| !self.slots[s].used))
            .or_else(|| (0..PARTITIONS_MAX).find(|&s| !self.slots[s].used));
        found.map(|s| s as u32).ok_or_else(|| {
            SourceError::new(format!(
                "more than {PARTITIONS_MAX} partition slots used (partitions assigned, plus partitions \
                 reassigned while their old messages were still in flight); restart the process"
            ))
        })
    }

    /// Gives (topic, partition) a fresh slot and marks it assigned.
    pub(super) fn assign_slot(&mut self, topic: usize, partition: i32) -> Result<u32, SourceError> {
        let slot = self.free_slot(None)?;
        self.slots[slot as usize] = SlotState {
            topic: topic as u32,
            partition,
            used: true,
            assigned: true,
            ..SlotState::default()
        };
        let p = partition as usize;
        let partitions = &mut self.topics[topic].partitions;
        if partitions.len() <= p {
            partitions.resize(p + 1, PartitionEntry { slot: NO_SLOT, decide_on_first: false });
        }
        partitions[p] = PartitionEntry { slot, decide_on_first: false };
        self.awaiting_first_commit = true;
        self.assigned.push(slot);
        self.recount_workers();
        Ok(slot)
    }

    pub(super) fn slot_of_entry(&self, topic: &CStr, partition: i32) -> Option<(usize, u32)> {
        let index = self.topics.iter().position(|t| t.name.as_c_str() == topic)?;
        let entry = self.topics[index].partitions.get(usize::try_from(partition).ok()?)?;
        (entry.slot != NO_SLOT).then_some((index, entry.slot))
    }
}
