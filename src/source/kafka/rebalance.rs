//! Rebalances: assignment, revoke (drain, commit, release) and where a returning
//! partition starts.

use std::ffi::c_int;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;

use super::consumer::Rebalance;
use super::{KafkaSource, NO_OFFSET, NO_SLOT, REVOKE_WAIT_MAX};
use crate::kafka::admin;
use crate::kafka::native::{self, KafkaCode, PartitionList};
use crate::source::{Ingest, SourceError};
use crate::sync::atomic::Ordering;

impl KafkaSource {
    /// Carries out a rebalance the callback handed over: updates the slots, then
    /// hands the assignment change to librdkafka.
    pub(super) fn rebalance(
        &mut self,
        rebalance: Rebalance,
        ingest: &mut Ingest,
    ) -> Result<(), SourceError> {
        self.last_lookup = (std::ptr::null(), -1, NO_SLOT);
        let mut rebalance = rebalance;
        if rebalance.assign {
            self.start_where_left_off(&mut rebalance.partitions, ingest);
            self.assigned_partitions(&rebalance.partitions, ingest)?;
        } else {
            self.revoked_partitions(&rebalance.partitions, ingest);
        }
        self.hand_over(&rebalance)?;
        if rebalance.assign && self.memory_paused {
            // A new assignment starts flowing (see `hand_over`) unless intake is
            // paused for memory.
            self.pause_list(&rebalance.partitions, true);
        }
        Ok(())
    }

    /// Newly assigned partitions get a slot (or keep theirs, see below).
    fn assigned_partitions(
        &mut self,
        list: &PartitionList,
        ingest: &Ingest,
    ) -> Result<(), SourceError> {
        self.stats.assignments.fetch_add(1, Ordering::Relaxed);
        for i in 0..list.len() {
            let Some((topic, partition, start, _)) = list.get(i) else { continue };
            let topic = topic.to_owned();
            match self.slot_of_entry(&topic, partition) {
                Some((index, slot)) => {
                    // Back after a revoke. Drained: keep the slot now (every new
                    // offset is past what it pushed) and commit the start once
                    // more if it is our own progress (a refused revoke commit).
                    // Not drained: decide at its first message (`lookup`).
                    let acknowledged =
                        ingest.watermarks().acknowledged(slot).map_or(NO_OFFSET, |a| a as i64);
                    let own_next = self.commit_offset(slot, ingest);
                    let state = &mut self.slots[slot as usize];
                    let drained =
                        state.last_pushed == NO_OFFSET || acknowledged >= state.last_pushed;
                    state.drained_at_assign = drained;
                    state.assigned = true;
                    let entry = &mut self.topics[index].partitions[partition as usize];
                    if drained {
                        if start >= 0 {
                            state.committed = if start == own_next { start - 1 } else { start };
                        }
                        entry.decide_on_first = false;
                        self.assigned.push(slot);
                    } else {
                        entry.decide_on_first = true;
                    }
                }
                None => {
                    let index = self.topic_index(&topic);
                    self.assign_slot(index, partition)?;
                }
            }
        }
        self.recount_workers();
        Ok(())
    }

    /// Revoked partitions: drop what is held, wait until what was pushed is
    /// acknowledged (at most [`REVOKE_WAIT_MAX`]), commit it, release the slots.
    fn revoked_partitions(&mut self, list: &PartitionList, ingest: &mut Ingest) {
        self.stats.revocations.fetch_add(1, Ordering::Relaxed);
        ingest.flush();
        // Revoked slots in the commit list; undecided ones (reassigned, no
        // message yet) only stop being assigned.
        let mut revoked: Vec<u32> = Vec::with_capacity(list.len());
        for i in 0..list.len() {
            let Some((topic, partition, _, _)) = list.get(i) else { continue };
            let Some((_, slot)) = self.slot_of_entry(topic, partition) else { continue };
            if self.assigned.contains(&slot) {
                revoked.push(slot);
            } else {
                self.slots[slot as usize].assigned = false;
            }
        }
        self.drop_held(&revoked);
        // librdkafka keeps an application pause across unassign and assign: a
        // partition paused now would come back paused and never flow again.
        for &slot in &revoked {
            if self.slots[slot as usize].paused {
                self.resume(slot);
            }
        }
        if !self.wait_drained(&revoked, ingest) {
            self.stats.revoke_timeouts.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "corestream: kafka source: revoked partitions not fully acknowledged within {REVOKE_WAIT_MAX:?}; \
                 committing what is acknowledged (the rest will be read again by the next owner)"
            );
        }
        if !self.consumer.assignment_lost() {
            let code = self.commit_slots(&revoked, ingest, true, true);
            if !code.is_ok() {
                eprintln!("corestream: kafka source: commit on revoke failed: {code}");
            }
        }
        for slot in &revoked {
            let state = &mut self.slots[*slot as usize];
            state.assigned = false;
            state.paused = false;
        }
        self.assigned.retain(|s| !revoked.contains(s));
        self.recount_workers();
    }

    /// Tells librdkafka the assignment change is carried out (incremental under
    /// the cooperative protocol, whole under the eager one).
    fn hand_over(&mut self, rebalance: &Rebalance) -> Result<(), SourceError> {
        let list = &rebalance.partitions;
        let cooperative = self.consumer.is_cooperative();
        // SAFETY: valid handle and list.
        let code = unsafe {
            match (cooperative, rebalance.assign) {
                (true, true) => native::take_error(rd::rd_kafka_incremental_assign(
                    self.consumer.client.ptr(),
                    list.as_ptr(),
                )),
                (true, false) => native::take_error(rd::rd_kafka_incremental_unassign(
                    self.consumer.client.ptr(),
                    list.as_ptr(),
                )),
                (false, true) => {
                    KafkaCode(rd::rd_kafka_assign(self.consumer.client.ptr(), list.as_ptr()))
                }
                (false, false) => {
                    KafkaCode(rd::rd_kafka_assign(self.consumer.client.ptr(), std::ptr::null()))
                }
            }
        };
        if !code.is_ok() {
            return Err(SourceError::new(format!(
                "kafka source: cannot {} partitions: {code}",
                if rebalance.assign { "assign" } else { "release" }
            )));
        }
        if rebalance.assign {
            // Clear any application pause left on these partitions (a revoke that
            // was handled while closing, or another library user): a new
            // assignment always starts flowing; corestream pauses again if needed.
            // SAFETY: valid handle and list.
            let code = KafkaCode(unsafe {
                rd::rd_kafka_resume_partitions(self.consumer.client.ptr(), list.as_ptr())
            });
            if !code.is_ok() {
                eprintln!("corestream: kafka source: cannot resume assigned partitions: {code}");
            }
        }
        Ok(())
    }

    /// A partition that comes back to this consumer starts where this consumer's
    /// acknowledged progress ends, unless the group's committed offset is further:
    /// a revoke commit the broker refused (Kafka refuses commits in some rebalance
    /// states; librdkafka's mock cluster in all of them) would otherwise replay
    /// everything since the last accepted commit. Starting at one past our own
    /// acknowledged offset loses nothing: everything before it was delivered.
    pub(super) fn start_where_left_off(&mut self, list: &mut PartitionList, ingest: &Ingest) {
        let mut own: Vec<(usize, i64)> = Vec::new();
        for i in 0..list.len() {
            let Some((topic, partition, _, _)) = list.get(i) else { continue };
            if let Some((_, slot)) = self.slot_of_entry(topic, partition) {
                let next = self.commit_offset(slot, ingest);
                if next != NO_OFFSET {
                    own.push((i, next));
                }
            }
        }
        if own.is_empty() {
            return;
        }
        // The group's committed offsets, filled into `list` (INVALID where none).
        let timeout_ms = admin::METADATA_TIMEOUT.as_millis() as c_int;
        // SAFETY: valid handle and list; librdkafka writes offsets in place.
        let code = KafkaCode(unsafe {
            rd::rd_kafka_committed(self.consumer.client.ptr(), list.as_ptr(), timeout_ms)
        });
        for (i, next) in own {
            let committed =
                if code.is_ok() { list.get(i).map_or(NO_OFFSET, |e| e.2) } else { NO_OFFSET };
            if next > committed {
                list.set_offset(i, next);
            }
        }
    }

    /// Waits until every message pushed from `slots` is acknowledged, at most
    /// [`REVOKE_WAIT_MAX`]. Returns whether they drained.
    pub(super) fn wait_drained(&self, slots: &[u32], ingest: &Ingest) -> bool {
        let deadline = Instant::now() + REVOKE_WAIT_MAX;
        loop {
            let drained = slots.iter().all(|&slot| {
                let last = self.slots[slot as usize].last_pushed;
                last == NO_OFFSET
                    || ingest.watermarks().acknowledged(slot).is_some_and(|a| a as i64 >= last)
            });
            if drained {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
