//! Dead-letter records to a Kafka topic, synchronously.

use std::ffi::c_void;
use std::ptr::NonNull;

use rdkafka::bindings as rd;

use super::DEAD_LETTER_WAIT;
use super::delivery::Produce;
use super::producer::TopicHandles;
use crate::kafka::native::NativeClient;
use crate::kafka::{KafkaClientSpec, native_conf};
use crate::retry::ErrorCategory;
use crate::sink::SinkError;
use crate::sink::dead_letter::{DeadLetter, DeadLetterRecord};
use crate::sync::Mutex;
use crate::sync::atomic::{AtomicU64, Ordering};

/// Dead-letter records to a Kafka topic, synchronously (see the module docs).
pub struct KafkaDeadLetter {
    topic: String,
    brokers: String,
    inner: Mutex<DeadLetterProducer>,
}

pub(super) struct DeadLetterProducer {
    pub(super) rkt: NonNull<rd::rd_kafka_topic_t>,
    pub(super) client: NativeClient,
    /// Where the delivery callback writes the last record's result (`i64::MIN`:
    /// none yet). Boxed: its address is the message opaque.
    pub(super) status: Box<AtomicU64>,
}

// SAFETY: only used under the mutex; the topic handle is thread-safe.
unsafe impl Send for DeadLetterProducer {}

impl Drop for DeadLetterProducer {
    fn drop(&mut self) {
        // SAFETY: our topic reference, released before the client is destroyed.
        unsafe { rd::rd_kafka_topic_destroy(self.rkt.as_ptr()) };
    }
}

/// Status values of a dead-letter record (the code is stored as `code + OFFSET`).
const STATUS_PENDING: u64 = u64::MAX;
const STATUS_CODE_OFFSET: i64 = 1 << 20;

unsafe extern "C" fn on_dead_letter_delivery(
    _rk: *mut rd::rd_kafka_t,
    message: *const rd::rd_kafka_message_t,
    _opaque: *mut c_void,
) {
    // SAFETY: valid message; its opaque is the `status` cell of the producer that
    // is flushing under its lock (alive until the flush returns).
    unsafe {
        let m = &*message;
        let status = &*(m._private as *const AtomicU64);
        status.store((m.err as i64 + STATUS_CODE_OFFSET) as u64, Ordering::Release);
    }
}

impl KafkaDeadLetter {
    /// A producer for `topic` (which must exist: checked by the caller).
    pub fn new(spec: &KafkaClientSpec, topic: &str) -> Result<Self, SinkError> {
        let setup = |e: String| SinkError::new(ErrorCategory::Configuration, e);
        let mut conf = native_conf(spec, &[("linger.ms", "0")], &[]).map_err(setup)?;
        // SAFETY: a plain function pointer; no opaque needed.
        unsafe { rd::rd_kafka_conf_set_dr_msg_cb(conf.as_ptr(), Some(on_dead_letter_delivery)) };
        // SAFETY: the callback only dereferences per-message opaques (see above).
        let client = unsafe { NativeClient::new(rd::rd_kafka_type_t::RD_KAFKA_PRODUCER, conf) }
            .map_err(|e| setup(format!("cannot create the dead-letter producer: {e}")))?;
        let rkt = TopicHandles::create(client.ptr(), topic)?;
        Ok(KafkaDeadLetter {
            topic: topic.to_string(),
            brokers: spec.brokers.clone(),
            inner: Mutex::new(DeadLetterProducer {
                rkt,
                client,
                status: Box::new(AtomicU64::new(STATUS_PENDING)),
            }),
        })
    }
}

impl DeadLetter for KafkaDeadLetter {
    fn send(&self, record: &DeadLetterRecord<'_>) -> Result<(), SinkError> {
        let inner = self.inner.lock();
        inner.status.store(STATUS_PENDING, Ordering::Release);
        let attempts = record.attempts.to_string();
        let partition = record.partition.to_string();
        let position = record.position.to_string();
        let fields: [(&str, &[u8]); 6] = [
            ("corestream.category", record.category.name().as_bytes()),
            ("corestream.stage", record.stage.name().as_bytes()),
            ("corestream.reason", record.reason.as_bytes()),
            ("corestream.attempts", attempts.as_bytes()),
            ("corestream.partition", partition.as_bytes()),
            ("corestream.position", position.as_bytes()),
        ];
        // SAFETY: a new list we own until produce takes it.
        let headers = unsafe { rd::rd_kafka_headers_new(fields.len()) };
        for (name, value) in fields {
            // SAFETY: valid list; lengths given; copied.
            unsafe {
                rd::rd_kafka_header_add(
                    headers,
                    name.as_ptr() as *const _,
                    name.len() as isize,
                    value.as_ptr() as *const c_void,
                    value.len() as isize,
                )
            };
        }
        let message = Produce {
            rkt: inner.rkt.as_ptr(),
            key: (!record.key.is_empty()).then_some(record.key),
            payload: record.payload,
            headers,
            opaque: &*inner.status as *const AtomicU64 as usize,
        };
        let rk = inner.client.ptr();
        // SAFETY: valid handles; the opaque cell outlives the flush below.
        let code = unsafe { message.send(rk) };
        if !code.is_ok() {
            // SAFETY: not taken by librdkafka on failure.
            unsafe { rd::rd_kafka_headers_destroy(headers) };
            return Err(SinkError::new(
                code.category(),
                format!("dead-letter topic {:?}: {code}", self.topic),
            ));
        }
        // SAFETY: valid handle; serves the delivery report.
        unsafe { rd::rd_kafka_flush(rk, DEAD_LETTER_WAIT.as_millis() as i32) };
        match inner.status.load(Ordering::Acquire) {
            STATUS_PENDING => Err(SinkError::new(
                ErrorCategory::Timeout,
                format!(
                    "dead-letter topic {:?}: not delivered within {DEAD_LETTER_WAIT:?}",
                    self.topic
                ),
            )),
            status => {
                let raw = status as i64 - STATUS_CODE_OFFSET;
                if raw == 0 {
                    Ok(())
                } else {
                    Err(SinkError::new(
                        ErrorCategory::Unknown,
                        format!(
                            "dead-letter topic {:?}: delivery failed with librdkafka error {raw}",
                            self.topic
                        ),
                    ))
                }
            }
        }
    }

    fn describe(&self) -> String {
        format!("kafka topic {:?} on {}", self.topic, self.brokers)
    }
}
