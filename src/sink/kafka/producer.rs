//! The producer shared by all workers, its poll thread and the per-worker cache
//! of topic handles.

use std::ffi::CString;
use std::ptr::NonNull;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::bindings as rd;

use super::delivery::Delivery;
use super::{POLL_WAIT_MS, SHUTDOWN_FLUSH_MS, TOPIC_HANDLES_MAX};
use crate::kafka::native::{KafkaCode, NativeClient};
use crate::retry::ErrorCategory;
use crate::sink::SinkError;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Arc, Mutex};

/// The producer client and the state its callbacks reach.
pub(super) struct ProducerCore {
    /// Dropped first (declaration order): no callback runs after this.
    pub(super) client: NativeClient,
    pub(super) delivery: Box<Delivery>,
}

/// The shared producer: stops and joins its poll thread when the last user goes.
pub(super) struct ProducerHandle {
    pub(super) core: Arc<ProducerCore>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: Mutex<Option<JoinHandle<()>>>,
    /// Bound of a flush (librdkafka's message timeout + the retry budget + slack).
    pub(super) flush_wait_max: Duration,
}

impl Drop for ProducerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.lock().take()
            && thread.join().is_err()
        {
            eprintln!("corestream: kafka sink: the producer's poll thread panicked");
        }
    }
}

pub(super) fn poll_loop(core: Arc<ProducerCore>, stop: Arc<AtomicBool>) {
    let rk = core.client.ptr();
    while !stop.load(Ordering::Acquire) {
        // SAFETY: valid handle; serves delivery reports through `on_delivery`.
        unsafe { rd::rd_kafka_poll(rk, POLL_WAIT_MS) };
        if core.delivery.backlog_len.load(Ordering::Relaxed) > 0 {
            core.delivery.send_due_retries(rk);
        }
    }
    // SAFETY: valid handle; waits for (and serves) the last delivery reports.
    let code = KafkaCode(unsafe { rd::rd_kafka_flush(rk, SHUTDOWN_FLUSH_MS) });
    if !code.is_ok() {
        eprintln!("corestream: kafka sink: messages still undelivered at shutdown: {code}");
    }
}

/// A worker's cache of topic handles: the default topic plus up to
/// [`TOPIC_HANDLES_MAX`] routed topics.
pub(super) struct TopicHandles {
    pub(super) rk: *mut rd::rd_kafka_t,
    pub(super) default: NonNull<rd::rd_kafka_topic_t>,
    pub(super) entries: Vec<(Box<str>, NonNull<rd::rd_kafka_topic_t>)>,
    pub(super) last: usize,
    pub(super) evict_next: usize,
}

impl TopicHandles {
    pub(super) fn new(rk: *mut rd::rd_kafka_t, default: &str) -> Result<Self, SinkError> {
        let default = Self::create(rk, default)?;
        Ok(TopicHandles {
            rk,
            default,
            entries: Vec::with_capacity(TOPIC_HANDLES_MAX),
            last: 0,
            evict_next: 0,
        })
    }

    pub(super) fn create(
        rk: *mut rd::rd_kafka_t,
        topic: &str,
    ) -> Result<NonNull<rd::rd_kafka_topic_t>, SinkError> {
        let name = CString::new(topic).map_err(|_| {
            SinkError::new(ErrorCategory::Serialization, format!("topic {topic:?} contains NUL"))
        })?;
        // SAFETY: valid handle and name; the returned reference is released on drop.
        let rkt = unsafe { rd::rd_kafka_topic_new(rk, name.as_ptr(), std::ptr::null_mut()) };
        NonNull::new(rkt).ok_or_else(|| {
            SinkError::new(
                ErrorCategory::Configuration,
                format!("librdkafka refused topic {topic:?}"),
            )
        })
    }

    /// The handle of `topic` ("" = the default). A hit costs one string compare.
    #[inline]
    pub(super) fn get(&mut self, topic: &str) -> Option<NonNull<rd::rd_kafka_topic_t>> {
        if topic.is_empty() {
            return Some(self.default);
        }
        if let Some((name, rkt)) = self.entries.get(self.last)
            && **name == *topic
        {
            return Some(*rkt);
        }
        let index = self.entries.iter().position(|(name, _)| **name == *topic)?;
        self.last = index;
        Some(self.entries[index].1)
    }

    /// Adds `topic` (a cache miss: allocates its name once).
    #[cold]
    pub(super) fn insert(
        &mut self,
        topic: &str,
    ) -> Result<NonNull<rd::rd_kafka_topic_t>, SinkError> {
        let rkt = Self::create(self.rk, topic)?;
        if self.entries.len() < TOPIC_HANDLES_MAX {
            self.entries.push((topic.into(), rkt));
            self.last = self.entries.len() - 1;
        } else {
            let index = self.evict_next;
            self.evict_next = (self.evict_next + 1) % TOPIC_HANDLES_MAX;
            // SAFETY: our reference; librdkafka keeps its own for queued messages.
            unsafe { rd::rd_kafka_topic_destroy(self.entries[index].1.as_ptr()) };
            self.entries[index] = (topic.into(), rkt);
            self.last = index;
        }
        Ok(rkt)
    }
}

impl Drop for TopicHandles {
    fn drop(&mut self) {
        // SAFETY: our references, released once; the client outlives this cache
        // (the sink holds the producer handle).
        unsafe {
            rd::rd_kafka_topic_destroy(self.default.as_ptr());
            for (_, rkt) in &self.entries {
                rd::rd_kafka_topic_destroy(rkt.as_ptr());
            }
        }
    }
}
