//! Offset commits: what is settled, by count, by time, when idle and on revoke.

use std::time::Instant;

use rdkafka::bindings::rd_kafka_resp_err_t as Err;

use super::{KafkaSource, NO_OFFSET};
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
        let code = self.consumer.commit(&list, sync);
        if !code.is_ok() && code.0 != Err::RD_KAFKA_RESP_ERR__NO_OFFSET {
            self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
            self.consumer.callbacks.commit_failed.store(true, Ordering::Release);
            return code;
        }
        KafkaCode::OK
    }

    /// Commits asynchronously when the count or the interval is reached, or when
    /// idle with something new.
    #[inline]
    pub(super) fn maybe_commit(&mut self, ingest: &Ingest, idle: bool) {
        let due = idle
            || self.messages_since_commit >= self.spec.commit_every_messages
            || self.last_commit.elapsed() >= self.spec.commit_interval;
        if !due || self.assigned.is_empty() {
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
    }
}
