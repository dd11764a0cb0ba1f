//! Deliveries that failed for good and wait for a retry by the policy: the
//! backlog, and its re-sends from the poll thread.

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::bindings::rd_kafka_resp_err_t as Err;

use super::delivery::{Delivery, Produce};
use super::{POLL_WAIT_MS, TAG_RETRY};
use crate::kafka::native;
use crate::retry::counters::Outcome;
use crate::retry::{ErrorCategory, RetryState, SplitMix64};
use crate::sync::atomic::Ordering;

/// A message waiting for (or in) a retry, copied out of librdkafka.
pub(super) struct RetryItem {
    pub(super) worker: usize,
    pub(super) slot: u32,
    pub(super) due: Instant,
    pub(super) state: RetryState,
    pub(super) category: ErrorCategory,
    pub(super) in_flight: bool,
    pub(super) topic: CString,
    pub(super) key: Option<Vec<u8>>,
    pub(super) payload: Vec<u8>,
    /// A copy of the message's headers (a C object), or null.
    pub(super) headers: *mut rd::rd_kafka_headers_t,
}

impl RetryItem {
    /// Copies a failed message out of librdkafka (key, payload, headers) to wait
    /// for its retry (cold: a failed delivery may allocate).
    ///
    /// # Safety
    /// `m` is a valid message (a delivery report's, during the callback).
    pub(super) unsafe fn copy_of(
        m: &rd::rd_kafka_message_t,
        topic: &CStr,
        (worker, slot): (usize, u32),
        due: Instant,
        state: RetryState,
        category: ErrorCategory,
    ) -> RetryItem {
        // SAFETY: valid message; key and payload live as long as it.
        let (key, payload) =
            unsafe { (native::bytes(m.key, m.key_len), native::bytes(m.payload, m.len)) };
        let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: valid message; the list is copied, the original stays its.
        let headers = unsafe {
            if rd::rd_kafka_message_headers(m, &mut headers) == Err::RD_KAFKA_RESP_ERR_NO_ERROR
                && !headers.is_null()
            {
                rd::rd_kafka_headers_copy(headers)
            } else {
                std::ptr::null_mut()
            }
        };
        RetryItem {
            worker,
            slot,
            due,
            state,
            category,
            in_flight: false,
            topic: topic.to_owned(),
            key: (!m.key.is_null()).then(|| key.to_vec()),
            payload: payload.to_vec(),
            headers,
        }
    }
}

impl Drop for RetryItem {
    fn drop(&mut self) {
        if !self.headers.is_null() {
            // SAFETY: the copy is ours; produce takes copies of it, never this one.
            unsafe { rd::rd_kafka_headers_destroy(self.headers) }
        }
    }
}

/// Messages between a failed delivery and their retry's outcome.
#[derive(Default)]
pub(super) struct RetryBacklog {
    pub(super) items: Vec<Option<RetryItem>>,
    pub(super) free: Vec<usize>,
    pub(super) rng: Option<SplitMix64>,
}

// SAFETY: the header pointers are owned copies, only touched under the backlog's lock.
unsafe impl Send for RetryBacklog {}

impl RetryBacklog {
    pub(super) fn insert(&mut self, item: RetryItem) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.items[index] = Some(item);
                index
            }
            None => {
                self.items.push(Some(item));
                self.items.len() - 1
            }
        }
    }

    pub(super) fn remove(&mut self, index: usize) -> Option<RetryItem> {
        let item = self.items.get_mut(index)?.take();
        if item.is_some() {
            self.free.push(index);
        }
        item
    }
}

impl Delivery {
    /// A retried message was delivered (poll thread).
    #[cold]
    pub(super) fn retry_delivered(&self, index: usize) {
        let item = self.backlog.lock().remove(index);
        if let Some(item) = item {
            self.backlog_len.fetch_sub(1, Ordering::Relaxed);
            self.count(item.category, Outcome::Success);
            self.settle(item.worker, item.slot);
        }
    }

    /// Re-sends the retries that are due (poll thread).
    #[cold]
    pub(super) fn send_due_retries(&self, rk: *mut rd::rd_kafka_t) {
        let now = Instant::now();
        let mut backlog = self.backlog.lock();
        for index in 0..backlog.items.len() {
            let Some(item) = backlog.items[index].as_mut() else { continue };
            if item.in_flight || item.due > now {
                continue;
            }
            // SAFETY: valid handle and NUL-terminated name; the handle is released
            // below (librdkafka keeps its own reference while messages use it).
            let rkt =
                unsafe { rd::rd_kafka_topic_new(rk, item.topic.as_ptr(), std::ptr::null_mut()) };
            if rkt.is_null() {
                continue;
            }
            let headers =
                // SAFETY: our own copy; produce takes ownership of this new copy on success.
                if item.headers.is_null() { std::ptr::null_mut() } else { unsafe { rd::rd_kafka_headers_copy(item.headers) } };
            let message = Produce {
                rkt,
                key: item.key.as_deref(),
                payload: &item.payload,
                headers,
                opaque: TAG_RETRY | index,
            };
            // SAFETY: valid handle; `message` borrows live data (copied by librdkafka).
            let code = unsafe { message.send(rk) };
            // SAFETY: releases our reference to the topic handle.
            unsafe { rd::rd_kafka_topic_destroy(rkt) };
            if code.is_ok() {
                item.in_flight = true;
                self.stats.produced.fetch_add(1, Ordering::Relaxed);
            } else {
                if !headers.is_null() {
                    // SAFETY: not taken by librdkafka on failure.
                    unsafe { rd::rd_kafka_headers_destroy(headers) };
                }
                // QUEUE_FULL or a local error: try again on the next round.
                item.due = now + Duration::from_millis(POLL_WAIT_MS as u64);
            }
        }
    }
}
