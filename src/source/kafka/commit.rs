//! Offset commits: what is settled, by count, by time, when idle and on revoke.

use std::time::Instant;

use rdkafka::bindings::rd_kafka_resp_err_t as Err;

use super::{COMMIT_ANSWER_WAIT_MAX, KafkaSource, NO_OFFSET};
use crate::kafka::native::{KafkaCode, PartitionList};
use crate::source::Ingest;
use crate::sync::atomic::Ordering;

impl KafkaSource {
    /// The offset to commit for `slot`: one past the acknowledged watermark, or past
    /// a trailing message dead-lettered at the source once everything before it is
    /// acknowledged.
    #[inline]
    pub(super) fn commit_offset(&self, slot: u32, ingest: &Ingest) -> i64 {
        let state = &self.slots[slot as usize];
        let acknowledged = ingest.watermarks().acknowledged(slot).map_or(NO_OFFSET, |a| a as i64);
        let mut next = if acknowledged == NO_OFFSET { NO_OFFSET } else { acknowledged + 1 };
        if state.last_rejected > state.last_pushed && acknowledged >= state.last_pushed {
            next = next.max(state.last_rejected + 1);
        }
        next
    }

    /// Commits every slot of `slots` whose offset moved (all of them when `force`).
    /// Returns the commit's result (OK when there was nothing to commit).
    pub(super) fn commit_slots(
        &mut self,
        slots: &[u32],
        ingest: &Ingest,
        sync: bool,
        force: bool,
    ) -> KafkaCode {
        let mut list: Option<PartitionList> = None;
        for &slot in slots {
            let next = self.commit_offset(slot, ingest);
            let state = self.slots[slot as usize];
            if next == NO_OFFSET || (next <= state.committed && !force) {
                continue;
            }
            list.get_or_insert_with(|| PartitionList::with_capacity(slots.len())).add(
                &self.topics[state.topic as usize].name,
                state.partition,
                next,
            );
            self.slots[slot as usize].committed = next.max(state.committed);
        }
        let Some(list) = list else { return KafkaCode::OK };
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        if !sync {
            // Served by our own poll, so never before this store.
            self.consumer.callbacks.commit_answered.store(false, Ordering::Relaxed);
            self.commit_in_flight = true;
        }
        let code = self.consumer.commit(&list, sync);
        if !sync && !code.is_ok() {
            // Refused at once: no answer will come, so do not wait for one.
            self.commit_in_flight = false;
        }
        if !code.is_ok() && code.0 != Err::RD_KAFKA_RESP_ERR__NO_OFFSET {
            self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
            self.consumer.callbacks.commit_failed.store(true, Ordering::Release);
            return code;
        }
        KafkaCode::OK
    }

    /// Commits asynchronously what is settled: once `commit_every_messages`
    /// messages are settled past the last commit, once `commit_interval` has passed
    /// with something new, and whenever the consumer goes idle. At most one
    /// asynchronous commit is out at a time (a later one carries the newer offsets
    /// anyway), so a slow broker sees one commit per round trip, not a queue of
    /// them; [`COMMIT_ANSWER_WAIT_MAX`] bounds that wait should an answer be lost.
    #[inline]
    pub(super) fn maybe_commit(&mut self, ingest: &Ingest, idle: bool) {
        if self.assigned.is_empty() {
            return;
        }
        if self.commit_in_flight {
            if self.consumer.callbacks.commit_answered.load(Ordering::Relaxed) {
                self.commit_in_flight = false;
            } else if self.last_commit.elapsed() < COMMIT_ANSWER_WAIT_MAX {
                return;
            }
        }
        // The settled count is only computed (one watermark load per assigned
        // partition) once enough messages were pushed for it to reach the bound.
        // A partition's first commit is due as soon as it has settled messages, so
        // a crash early in a run (right after the group join) replays little.
        let first = self.awaiting_first_commit
            && self.messages_since_commit > 0
            && self.settled_uncommitted(ingest) == u64::MAX;
        let due = idle
            || first
            || self.last_commit.elapsed() >= self.spec.commit_interval
            || (self.messages_since_commit >= self.spec.commit_every_messages
                && self.settled_uncommitted(ingest) >= self.spec.commit_every_messages);
        if !due {
            return;
        }
        let force = self.consumer.callbacks.commit_failed.swap(false, Ordering::AcqRel);
        let assigned = std::mem::take(&mut self.assigned);
        let code = self.commit_slots(&assigned, ingest, false, force);
        self.assigned = assigned;
        if !code.is_ok() {
            eprintln!("corestream: kafka source: offset commit failed: {code} (will resend)");
        }
        self.messages_since_commit = 0;
        self.last_commit = Instant::now();
        self.awaiting_first_commit =
            self.assigned.iter().any(|&slot| self.slots[slot as usize].committed == NO_OFFSET);
    }

    /// Whether some assigned partition has pushed messages past its last commit
    /// (checked only before an idle poll: one load per assigned partition).
    pub(super) fn pushed_uncommitted(&self) -> bool {
        self.assigned.iter().any(|&slot| {
            let state = &self.slots[slot as usize];
            state.last_pushed != NO_OFFSET && state.last_pushed >= state.committed
        })
    }

    /// Messages settled (acknowledged or dead-lettered) past the last commit, over
    /// the assigned partitions; `u64::MAX` when a partition has settled messages and
    /// was never committed (its first commit is due at once).
    fn settled_uncommitted(&self, ingest: &Ingest) -> u64 {
        let mut settled = 0u64;
        for &slot in &self.assigned {
            let next = self.commit_offset(slot, ingest);
            let committed = self.slots[slot as usize].committed;
            if next == NO_OFFSET {
                continue;
            }
            if committed == NO_OFFSET {
                return u64::MAX;
            }
            settled += next.saturating_sub(committed).max(0) as u64;
        }
        settled
    }
}
