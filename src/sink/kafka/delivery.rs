//! Delivery reports: acknowledging what was delivered and handling what failed
//! (retry by the policy, dead-letter, fail fast).

use std::ffi::{CStr, c_void};
use std::sync::OnceLock;
use std::time::Instant;

use crossbeam::utils::CachePadded;
use rdkafka::bindings as rd;
use rdkafka::bindings::rd_kafka_resp_err_t as Err;

use super::retry::{RetryBacklog, RetryItem};
use super::{KafkaSinkStats, PARTITION_UNASSIGNED, TAG_RETRY, TAG_WORKER_SHIFT};
use crate::ack::Acker;
use crate::kafka::native::{self, KafkaCode};
use crate::retry::counters::{CounterSink, Outcome, retry_counter_index};
use crate::retry::{Action, ActionTable, ErrorCategory, RetryPolicy, RetryState, SplitMix64};
use crate::sink::SinkError;
use crate::sink::dead_letter::{DeadLetter, DeadLetterRecord, Stage};
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Arc, Mutex};

/// What the delivery callback needs; reached through the producer's opaque.
pub(super) struct Delivery {
    pub(super) ackers: Box<[OnceLock<Acker>]>,
    /// Messages of each worker not yet settled (delivered or dead-lettered).
    pub(super) unsettled: Box<[CachePadded<AtomicU64>]>,
    pub(super) stats: Arc<KafkaSinkStats>,
    pub(super) backlog: Mutex<RetryBacklog>,
    /// Messages in the backlog (read by writers without the lock).
    pub(super) backlog_len: AtomicU64,
    pub(super) policy: RetryPolicy,
    pub(super) actions: ActionTable,
    pub(super) dead_letter: Arc<dyn DeadLetter>,
    /// A fail-fast failure: every later write returns it.
    pub(super) fatal: Mutex<Option<(ErrorCategory, String)>>,
    pub(super) fatal_set: AtomicBool,
}

impl Delivery {
    /// A message of `worker` is settled: release its hold.
    #[inline]
    pub(super) fn settle(&self, worker: usize, slot: u32) {
        if let Some(acker) = self.ackers.get(worker).and_then(OnceLock::get) {
            acker.done_slot(slot);
        }
        if let Some(count) = self.unsettled.get(worker) {
            count.fetch_sub(1, Ordering::Release);
        }
    }

    pub(super) fn set_fatal(&self, category: ErrorCategory, message: String) {
        eprintln!("corestream: kafka sink: {message} ({category}: fail fast)");
        let mut fatal = self.fatal.lock();
        if fatal.is_none() {
            *fatal = Some((category, message));
        }
        self.fatal_set.store(true, Ordering::Release);
    }

    pub(super) fn fatal(&self) -> Option<SinkError> {
        if !self.fatal_set.load(Ordering::Acquire) {
            return None;
        }
        self.fatal
            .lock()
            .as_ref()
            .map(|(category, message)| SinkError::new(*category, message.clone()))
    }

    pub(super) fn count(&self, category: ErrorCategory, outcome: Outcome) {
        self.stats.add(retry_counter_index(category, outcome), 1);
    }

    /// Sends a message to the dead-letter destination and settles it; if that fails
    /// the message stays unsettled and the sink fails (nothing is lost).
    #[cold]
    pub(super) fn dead_letter(&self, worker: usize, slot: u32, record: &DeadLetterRecord<'_>) {
        match self.dead_letter.send(record) {
            Ok(()) => {
                self.count(record.category, Outcome::DeadLettered);
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                self.settle(worker, slot);
            }
            Err(e) => self.set_fatal(
                ErrorCategory::Configuration,
                format!(
                    "a failed message could not be dead-lettered ({e}); it stays unacknowledged"
                ),
            ),
        }
    }

    /// A delivery report with an error (poll thread).
    #[cold]
    pub(super) fn failed(&self, m: &rd::rd_kafka_message_t, tag: usize) {
        let code = KafkaCode(m.err);
        let category = code.category();
        self.stats.failed_deliveries.fetch_add(1, Ordering::Relaxed);
        self.count(category, Outcome::Attempt);
        let now = Instant::now();
        let mut backlog = self.backlog.lock();
        let existing = if tag & TAG_RETRY != 0 { backlog.remove(tag & !TAG_RETRY) } else { None };
        let (worker, slot, mut state) = match &existing {
            Some(item) => (item.worker, item.slot, item.state),
            None => ((tag >> TAG_WORKER_SHIFT) & 0xffff, tag as u32, RetryState::new(now)),
        };
        // SAFETY: the report's message and its topic are valid during the callback.
        let topic = unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(m.rkt)) };
        let reason = format!("delivery to topic {:?} failed: {code}", topic.to_string_lossy());
        let action = self.actions.action(category);
        let delay = match action {
            Action::Retry => {
                let rng = backlog.rng.get_or_insert(SplitMix64::new(0x0072_6574_7279));
                let delay = state.next(&self.policy, now, rng);
                if delay.is_none() {
                    self.count(category, Outcome::GaveUp);
                }
                delay
            }
            Action::DeadLetter => None,
            Action::FailFast => {
                drop(backlog);
                if existing.is_some() {
                    self.backlog_len.fetch_sub(1, Ordering::Relaxed);
                }
                self.set_fatal(category, reason);
                return;
            }
        };
        match delay {
            Some(delay) => {
                let item = match existing {
                    Some(mut item) => {
                        item.due = now + delay;
                        item.state = state;
                        item.in_flight = false;
                        item.category = category;
                        item
                    }
                    None => {
                        self.backlog_len.fetch_add(1, Ordering::Relaxed);
                        // SAFETY: the report's message is valid during the callback.
                        let due = now + delay;
                        unsafe {
                            RetryItem::copy_of(m, topic, (worker, slot), due, state, category)
                        }
                    }
                };
                backlog.insert(item);
            }
            None => {
                drop(backlog);
                if existing.is_some() {
                    self.backlog_len.fetch_sub(1, Ordering::Relaxed);
                }
                // SAFETY: valid message during the callback.
                let (key, payload) =
                    unsafe { (native::bytes(m.key, m.key_len), native::bytes(m.payload, m.len)) };
                let record = DeadLetterRecord {
                    category,
                    stage: Stage::Sink,
                    reason: &reason,
                    attempts: state.attempts(),
                    partition: u32::try_from(m.partition).unwrap_or(u32::MAX),
                    position: 0,
                    key,
                    payload,
                };
                self.dead_letter(worker, slot, &record);
            }
        }
    }
}

/// One message's arguments to `rd_kafka_produceva`.
pub(super) struct Produce<'a> {
    pub(super) rkt: *mut rd::rd_kafka_topic_t,
    pub(super) key: Option<&'a [u8]>,
    pub(super) payload: &'a [u8],
    /// A header list librdkafka takes over on success, or null.
    pub(super) headers: *mut rd::rd_kafka_headers_t,
    pub(super) opaque: usize,
}

impl Produce<'_> {
    /// Sends through `rd_kafka_produceva`; the argument array lives on the stack.
    ///
    /// # Safety
    /// `rk` and `self.rkt` are valid; `self.headers` is null or a list owned by the
    /// caller, taken over by librdkafka only when the result is OK.
    #[inline]
    pub(super) unsafe fn send(&self, rk: *mut rd::rd_kafka_t) -> KafkaCode {
        use rd::rd_kafka_vtype_t as V;
        let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
        let mut args = [vu(V::RD_KAFKA_VTYPE_END, rd::rd_kafka_vu_s__bindgen_ty_1 { i: 0 }); 7];
        let mut n = 0;
        let mut push = |arg| {
            args[n] = arg;
            n += 1;
        };
        push(vu(V::RD_KAFKA_VTYPE_RKT, rd::rd_kafka_vu_s__bindgen_ty_1 { rkt: self.rkt }));
        push(vu(
            V::RD_KAFKA_VTYPE_PARTITION,
            rd::rd_kafka_vu_s__bindgen_ty_1 { i32_: PARTITION_UNASSIGNED },
        ));
        push(vu(
            V::RD_KAFKA_VTYPE_MSGFLAGS,
            rd::rd_kafka_vu_s__bindgen_ty_1 { i: rd::RD_KAFKA_MSG_F_COPY },
        ));
        let memory = |bytes: &[u8]| rd::rd_kafka_vu_s__bindgen_ty_1 {
            mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: bytes.as_ptr() as *mut c_void,
                size: bytes.len(),
            },
        };
        push(vu(V::RD_KAFKA_VTYPE_VALUE, memory(self.payload)));
        if let Some(key) = self.key {
            push(vu(V::RD_KAFKA_VTYPE_KEY, memory(key)));
        }
        push(vu(
            V::RD_KAFKA_VTYPE_OPAQUE,
            rd::rd_kafka_vu_s__bindgen_ty_1 { ptr: self.opaque as *mut c_void },
        ));
        if !self.headers.is_null() {
            push(vu(
                V::RD_KAFKA_VTYPE_HEADERS,
                rd::rd_kafka_vu_s__bindgen_ty_1 { headers: self.headers },
            ));
        }
        // SAFETY: `args[..n]` are initialised arguments whose pointers are valid for
        // the call (per the contract); librdkafka copies key and payload (F_COPY).
        unsafe { native::take_error(rd::rd_kafka_produceva(rk, args.as_ptr(), n)) }
    }
}

/// librdkafka's delivery report callback (poll thread).
pub(super) unsafe extern "C" fn on_delivery(
    _rk: *mut rd::rd_kafka_t,
    message: *const rd::rd_kafka_message_t,
    opaque: *mut c_void,
) {
    // SAFETY: the opaque is the producer's `Delivery`, alive while the client is;
    // the message is valid during the callback.
    let (delivery, m) = unsafe { (&*(opaque as *const Delivery), &*message) };
    let tag = m._private as usize;
    if m.err == Err::RD_KAFKA_RESP_ERR_NO_ERROR {
        delivery.stats.delivered.fetch_add(1, Ordering::Relaxed);
        if tag & TAG_RETRY == 0 {
            delivery.settle((tag >> TAG_WORKER_SHIFT) & 0xffff, tag as u32);
        } else {
            delivery.retry_delivered(tag & !TAG_RETRY);
        }
    } else {
        delivery.failed(m, tag);
    }
}
