//! The librdkafka consumer handle and its callbacks (rebalance, commit, error).

use std::ffi::{CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::bindings::rd_kafka_resp_err_t as Err;

use super::{
    ASSIGNMENT_STRATEGY_DEFAULT, ERROR_LOG_EVERY, ERROR_LOG_FIRST, FETCH_QUEUE_BACKOFF_MS_DEFAULT,
    FETCH_WAIT_MAX_MS_DEFAULT,
};
use crate::kafka::native::{self, KafkaCode, NativeClient, PartitionList};
use crate::kafka::{KafkaSourceSpec, native_conf};
use crate::sync::Mutex;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the librdkafka callbacks hand to the source thread. Reached through the
/// client's opaque pointer; the callbacks only touch these fields.
pub(super) struct Callbacks {
    /// A rebalance the source thread has to carry out (the callback yields the
    /// poll so that it is handled before any further message).
    pub(super) pending: Mutex<Option<Rebalance>>,
    /// Set once the source is closing: rebalances are then carried out inside the
    /// callback (there is nothing left to drain or commit).
    pub(super) closing: AtomicBool,
    /// An asynchronous commit failed: the next commit resends every partition.
    pub(super) commit_failed: AtomicBool,
    /// A commit's answer arrived (success or failure) since the last one was sent.
    pub(super) commit_answered: AtomicBool,
    pub(super) commit_failures: AtomicU64,
    pub(super) errors: AtomicU64,
}

pub(super) struct Rebalance {
    pub(super) assign: bool,
    pub(super) partitions: PartitionList,
}

/// The consumer handle, its queue and the callbacks' state, torn down in order.
pub(super) struct Consumer {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Dropped before `callbacks` (declaration order): librdkafka calls nothing
    /// after `rd_kafka_destroy` returns.
    pub(super) client: NativeClient,
    pub(super) callbacks: Box<Callbacks>,
    closed: bool,
    cooperative: Option<bool>,
}

// SAFETY: the queue pointer is only used by the thread that owns the `Consumer`
// (the source thread); the client is thread-safe and the callbacks' state is Sync.
unsafe impl Send for Consumer {}

impl Consumer {
    pub(super) fn new(spec: &KafkaSourceSpec) -> Result<Self, String> {
        let queued = spec.queued_max_messages_kbytes.to_string();
        let mut conf = native_conf(
            &spec.client,
            &[
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS_DEFAULT),
                ("fetch.wait.max.ms", FETCH_WAIT_MAX_MS_DEFAULT),
                ("partition.assignment.strategy", ASSIGNMENT_STRATEGY_DEFAULT),
            ],
            &[
                ("group.id", &spec.group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("queued.max.messages.kbytes", &queued),
            ],
        )?;
        let callbacks = Box::new(Callbacks {
            pending: Mutex::new(None),
            closing: AtomicBool::new(false),
            commit_failed: AtomicBool::new(false),
            commit_answered: AtomicBool::new(false),
            commit_failures: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        // SAFETY: the opaque points into a Box owned by the Consumer, which drops
        // the client (and with it every callback) before the Box; the callbacks
        // only read it through a shared reference.
        unsafe {
            rd::rd_kafka_conf_set_opaque(
                conf.as_ptr(),
                &*callbacks as *const Callbacks as *mut c_void,
            );
            rd::rd_kafka_conf_set_rebalance_cb(conf.as_ptr(), Some(on_rebalance));
            rd::rd_kafka_conf_set_offset_commit_cb(conf.as_ptr(), Some(on_commit));
            rd::rd_kafka_conf_set_error_cb(conf.as_ptr(), Some(on_error));
        }
        // SAFETY: the opaque and callbacks stay valid for the client's life (above).
        let client = unsafe { NativeClient::new(rd::rd_kafka_type_t::RD_KAFKA_CONSUMER, conf) }
            .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        // SAFETY: valid consumer handle. Redirecting the main queue makes the poll
        // serve rebalance, commit and error callbacks too.
        let queue = unsafe {
            rd::rd_kafka_poll_set_consumer(client.ptr());
            rd::rd_kafka_queue_get_consumer(client.ptr())
        };
        let queue = NonNull::new(queue).ok_or("librdkafka gave no consumer queue")?;
        Ok(Consumer { queue, client, callbacks, closed: false, cooperative: None })
    }

    pub(super) fn subscribe(&self, topics: &[String]) -> Result<(), String> {
        let mut list = PartitionList::with_capacity(topics.len());
        for topic in topics {
            let name =
                CString::new(topic.as_str()).map_err(|_| "a topic name cannot contain NUL")?;
            list.add(&name, -1, rd::RD_KAFKA_OFFSET_INVALID as i64);
        }
        // SAFETY: valid handle and list; librdkafka copies the list.
        let code = KafkaCode(unsafe { rd::rd_kafka_subscribe(self.client.ptr(), list.as_ptr()) });
        if code.is_ok() { Ok(()) } else { Err(format!("cannot subscribe to {topics:?}: {code}")) }
    }

    /// Takes up to `out.len()` messages, waiting at most `timeout` for the first one
    /// when `wait_for_one` (then only one is taken, so the wait ends at once).
    #[inline]
    pub(super) fn poll(&self, out: &mut [*mut rd::rd_kafka_message_t], timeout: Duration) -> usize {
        let (timeout_ms, size) = if timeout.is_zero() {
            (0, out.len())
        } else {
            (timeout.as_millis().min(i32::MAX as u128) as c_int, 1)
        };
        // SAFETY: `out` has room for `size` pointers; the queue is valid. Returned
        // messages are owned by the caller until rd_kafka_message_destroy.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout_ms,
                out.as_mut_ptr(),
                size,
            )
        };
        // A negative count is an error on the queue itself (never for a valid queue).
        n.max(0) as usize
    }

    pub(super) fn is_cooperative(&mut self) -> bool {
        if let Some(c) = self.cooperative {
            return c;
        }
        // SAFETY: valid handle; a static string.
        let protocol =
            unsafe { native::borrowed_text(rd::rd_kafka_rebalance_protocol(self.client.ptr())) };
        let cooperative = protocol == "COOPERATIVE";
        if protocol != "NONE" {
            self.cooperative = Some(cooperative);
        }
        cooperative
    }

    pub(super) fn take_pending(&self) -> Option<Rebalance> {
        self.callbacks.pending.lock().take()
    }

    pub(super) fn commit(&self, list: &PartitionList, sync: bool) -> KafkaCode {
        // SAFETY: valid handle and list; librdkafka copies the list.
        KafkaCode(unsafe {
            rd::rd_kafka_commit(self.client.ptr(), list.as_ptr(), c_int::from(!sync))
        })
    }

    /// The partitions librdkafka has assigned to this consumer now (a copy).
    pub(super) fn assignment(&self) -> Result<PartitionList, KafkaCode> {
        let mut list = std::ptr::null_mut();
        // SAFETY: valid handle; on success `list` is a new list we own.
        let code = KafkaCode(unsafe { rd::rd_kafka_assignment(self.client.ptr(), &mut list) });
        if !code.is_ok() {
            return Err(code);
        }
        let list = NonNull::new(list).ok_or(code)?;
        // SAFETY: a new list, owned by nobody else.
        Ok(unsafe { PartitionList::from_owned(list) })
    }

    pub(super) fn assignment_lost(&self) -> bool {
        // SAFETY: valid handle.
        unsafe { rd::rd_kafka_assignment_lost(self.client.ptr()) != 0 }
    }

    pub(super) fn close(&mut self) -> KafkaCode {
        if self.closed {
            return KafkaCode::OK;
        }
        self.closed = true;
        self.callbacks.closing.store(true, Ordering::Release);
        // SAFETY: valid handle; serves the final revoke through `on_rebalance`,
        // which acts at once now that `closing` is set.
        KafkaCode(unsafe { rd::rd_kafka_consumer_close(self.client.ptr()) })
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let code = self.close();
        if !code.is_ok() {
            eprintln!("corestream: kafka source: consumer close: {code}");
        }
        // SAFETY: the queue reference is ours; destroyed before the client.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Carries out a rebalance at once (closing, or nothing to coordinate).
///
/// # Safety
/// `rk` is a valid consumer handle; `partitions` is valid or null.
unsafe fn apply_rebalance(
    rk: *mut rd::rd_kafka_t,
    assign: bool,
    partitions: *const rd::rd_kafka_topic_partition_list_t,
) -> KafkaCode {
    // SAFETY: per the contract; the protocol string is static.
    unsafe {
        let cooperative =
            native::borrowed_text(rd::rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
        match (cooperative, assign) {
            (true, true) => native::take_error(rd::rd_kafka_incremental_assign(rk, partitions)),
            (true, false) => native::take_error(rd::rd_kafka_incremental_unassign(rk, partitions)),
            (false, true) => KafkaCode(rd::rd_kafka_assign(rk, partitions)),
            (false, false) => KafkaCode(rd::rd_kafka_assign(rk, std::ptr::null())),
        }
    }
}

/// librdkafka's rebalance callback (served inside the source's poll).
unsafe extern "C" fn on_rebalance(
    rk: *mut rd::rd_kafka_t,
    err: rd::rd_kafka_resp_err_t,
    partitions: *mut rd::rd_kafka_topic_partition_list_t,
    opaque: *mut c_void,
) {
    // SAFETY: the opaque is the consumer's `Callbacks`, alive while the client is.
    let callbacks = unsafe { &*(opaque as *const Callbacks) };
    let assign = err == Err::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
    if err != Err::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
        && err != Err::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
    {
        eprintln!(
            "corestream: kafka source: rebalance error {}; releasing the assignment",
            KafkaCode(err)
        );
    }
    if callbacks.closing.load(Ordering::Acquire) {
        // SAFETY: valid handle and list for the duration of the callback.
        let code = unsafe { apply_rebalance(rk, assign, partitions) };
        if !code.is_ok() {
            eprintln!("corestream: kafka source: rebalance while closing: {code}");
        }
        return;
    }
    // SAFETY: `partitions` is valid for the duration of the callback; we copy it.
    let copy = unsafe { PartitionList::copy_of(partitions) };
    let previous = callbacks.pending.lock().replace(Rebalance { assign, partitions: copy });
    debug_assert!(previous.is_none(), "a rebalance was left unhandled");
    // SAFETY: valid handle; makes the current poll return so the source thread
    // carries out the rebalance before touching any further message.
    unsafe { rd::rd_kafka_yield(rk) };
}

/// librdkafka's offset-commit callback.
unsafe extern "C" fn on_commit(
    _rk: *mut rd::rd_kafka_t,
    err: rd::rd_kafka_resp_err_t,
    _offsets: *mut rd::rd_kafka_topic_partition_list_t,
    opaque: *mut c_void,
) {
    // SAFETY: as in `on_rebalance`.
    let callbacks = unsafe { &*(opaque as *const Callbacks) };
    callbacks.commit_answered.store(true, Ordering::Relaxed);
    // "No offset" is not a failure: nothing new was committed.
    if err != Err::RD_KAFKA_RESP_ERR_NO_ERROR && err != Err::RD_KAFKA_RESP_ERR__NO_OFFSET {
        let n = callbacks.commit_failures.fetch_add(1, Ordering::Relaxed);
        callbacks.commit_failed.store(true, Ordering::Release);
        if n < ERROR_LOG_FIRST || n % ERROR_LOG_EVERY == 0 {
            eprintln!(
                "corestream: kafka source: offset commit failed: {} (will resend)",
                KafkaCode(err)
            );
        }
    }
}

/// librdkafka's error callback (client-wide errors: brokers down, ...).
unsafe extern "C" fn on_error(
    _rk: *mut rd::rd_kafka_t,
    err: c_int,
    reason: *const c_char,
    opaque: *mut c_void,
) {
    // SAFETY: as in `on_rebalance`; `reason` is valid for the call.
    let (callbacks, reason) =
        unsafe { (&*(opaque as *const Callbacks), native::borrowed_text(reason)) };
    let n = callbacks.errors.fetch_add(1, Ordering::Relaxed);
    if n < ERROR_LOG_FIRST || n % ERROR_LOG_EVERY == 0 {
        eprintln!("corestream: kafka source: error {err}: {reason}");
    }
}
