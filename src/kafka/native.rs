//! Thin owners of librdkafka's C objects: a configuration, a client handle, a
//! partition list, an error. Everything the data path calls goes through these, so
//! the per-message path makes no Rust allocation: librdkafka's own allocations (its
//! message structs, payload copies, header lists) use the C allocator.
//!
//! Why not rdkafka's high-level types on the data path: `BaseConsumer::poll` wraps
//! every message in an `Arc`, and `BaseProducer::send` builds a `CString` of the topic
//! per message. Here the consumer reads batches with `rd_kafka_consume_batch_queue`
//! and the producer sends with `rd_kafka_produceva` into cached topic handles; the
//! rdkafka crate is still used for everything off the data path (admin, metadata,
//! the mock cluster in tests).
//!
//! Error codes: librdkafka's codes are read as rdkafka-sys's `rd_kafka_resp_err_t`
//! enum, generated from the same vendored librdkafka (2.12.1), as the rdkafka crate
//! itself does.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr::NonNull;

use rdkafka::bindings as rd;
use rdkafka::types::RDKafkaErrorCode;

use crate::retry::ErrorCategory;
use crate::retry::category::categorize_kafka;

/// Bytes of the buffer librdkafka writes configuration and creation errors into.
const ERROR_TEXT_BYTES: usize = 512;

/// A librdkafka error code with its category and text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KafkaCode(pub rd::rd_kafka_resp_err_t);

impl KafkaCode {
    pub const OK: KafkaCode = KafkaCode(rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);

    #[inline]
    pub fn is_ok(self) -> bool {
        self == Self::OK
    }

    /// The rdkafka error code (for categorising and matching).
    pub fn code(self) -> RDKafkaErrorCode {
        RDKafkaErrorCode::from(self.0)
    }

    /// The failure-handling category of this code (codes decide, not text).
    pub fn category(self) -> ErrorCategory {
        categorize_kafka(self.code())
    }

    /// librdkafka's static description of the code; no allocation.
    pub fn text(self) -> &'static str {
        // SAFETY: rd_kafka_err2str returns a pointer to a static, NUL-terminated
        // string for every code (unknown codes get a static "Err-N?" text).
        let text = unsafe { CStr::from_ptr(rd::rd_kafka_err2str(self.0)) };
        text.to_str().unwrap_or("(librdkafka error text is not UTF-8)")
    }
}

impl std::fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", self.text(), self.code())
    }
}

/// Takes ownership of an `rd_kafka_error_t` (null means success), returning its code
/// and destroying it.
///
/// # Safety
/// `error` is null or a valid error object that nobody else destroys.
pub unsafe fn take_error(error: *mut rd::rd_kafka_error_t) -> KafkaCode {
    if error.is_null() {
        return KafkaCode::OK;
    }
    // SAFETY: non-null and valid per the contract; destroyed exactly once here.
    unsafe {
        let code = rd::rd_kafka_error_code(error);
        rd::rd_kafka_error_destroy(error);
        KafkaCode(code)
    }
}

/// A librdkafka configuration being built. Setting a property validates its name and
/// value at once, offline (this is what `corestream validate` relies on).
pub struct NativeConf {
    ptr: NonNull<rd::rd_kafka_conf_t>,
}

// SAFETY: a configuration object is plain data owned by one `NativeConf`; librdkafka
// does not tie it to a thread.
unsafe impl Send for NativeConf {}

impl NativeConf {
    pub fn new() -> Self {
        // SAFETY: rd_kafka_conf_new has no preconditions and never returns null
        // (it aborts on out-of-memory like the rest of librdkafka).
        let ptr = unsafe { rd::rd_kafka_conf_new() };
        NativeConf { ptr: NonNull::new(ptr).expect("rd_kafka_conf_new returned null") }
    }

    /// Sets `key` to `value`; the error is librdkafka's own explanation.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let key_c =
            CString::new(key).map_err(|_| "a property name cannot contain NUL".to_string())?;
        let value_c =
            CString::new(value).map_err(|_| "a property value cannot contain NUL".to_string())?;
        let mut error = [0 as c_char; ERROR_TEXT_BYTES];
        // SAFETY: the pointers are valid NUL-terminated strings and a writable buffer
        // of the size passed; librdkafka copies what it keeps.
        let result = unsafe {
            rd::rd_kafka_conf_set(
                self.ptr.as_ptr(),
                key_c.as_ptr(),
                value_c.as_ptr(),
                error.as_mut_ptr(),
                error.len(),
            )
        };
        match result {
            rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK => Ok(()),
            _ => Err(error_text(&error)),
        }
    }

    /// The raw pointer, for installing callbacks.
    pub fn as_ptr(&mut self) -> *mut rd::rd_kafka_conf_t {
        self.ptr.as_ptr()
    }
}

impl Default for NativeConf {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NativeConf {
    fn drop(&mut self) {
        // SAFETY: we own the configuration (ownership moves to rd_kafka_new only on
        // success, where `NativeClient::new` forgets this value).
        unsafe { rd::rd_kafka_conf_destroy(self.ptr.as_ptr()) }
    }
}

fn error_text(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An `rd_kafka_t` handle (producer or consumer), destroyed on drop.
pub struct NativeClient {
    ptr: NonNull<rd::rd_kafka_t>,
}

// SAFETY: librdkafka documents every rd_kafka_t operation used here as thread-safe.
unsafe impl Send for NativeClient {}
// SAFETY: as above.
unsafe impl Sync for NativeClient {}

impl NativeClient {
    /// Creates a client from `conf` (consumed).
    ///
    /// # Safety
    /// Any opaque pointer installed in `conf` must stay valid, and any callback
    /// installed must stay sound to call, until this client is dropped.
    pub unsafe fn new(kind: rd::rd_kafka_type_t, conf: NativeConf) -> Result<Self, String> {
        let mut error = [0 as c_char; ERROR_TEXT_BYTES];
        let conf = std::mem::ManuallyDrop::new(conf);
        // SAFETY: conf is valid; rd_kafka_new takes ownership of it on success only.
        let ptr =
            unsafe { rd::rd_kafka_new(kind, conf.ptr.as_ptr(), error.as_mut_ptr(), error.len()) };
        match NonNull::new(ptr) {
            Some(ptr) => Ok(NativeClient { ptr }),
            None => {
                // Creation failed: the configuration is still ours to destroy.
                drop(std::mem::ManuallyDrop::into_inner(conf));
                Err(error_text(&error))
            }
        }
    }

    #[inline]
    pub fn ptr(&self) -> *mut rd::rd_kafka_t {
        self.ptr.as_ptr()
    }

    /// The client's fatal error, if it has one (idempotence or transaction state
    /// lost; the client is unusable).
    pub fn fatal_error(&self) -> Option<String> {
        let mut error = [0 as c_char; ERROR_TEXT_BYTES];
        // SAFETY: valid handle and buffer.
        let code = unsafe { rd::rd_kafka_fatal_error(self.ptr(), error.as_mut_ptr(), error.len()) };
        let code = KafkaCode(code);
        (!code.is_ok()).then(|| format!("{}: {}", code, error_text(&error)))
    }
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        // SAFETY: we own the handle; every queue and topic handle derived from it
        // was released by its owner first (see the owners' drop order).
        unsafe { rd::rd_kafka_destroy(self.ptr.as_ptr()) }
    }
}

/// A partition list owned by Rust (created, or copied from a callback argument).
pub struct PartitionList {
    ptr: NonNull<rd::rd_kafka_topic_partition_list_t>,
}

// SAFETY: an owned partition list is plain data; no thread affinity.
unsafe impl Send for PartitionList {}

impl PartitionList {
    /// An empty list with room for `capacity` entries (a C allocation).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = i32::try_from(capacity).unwrap_or(i32::MAX);
        // SAFETY: no preconditions; never null (librdkafka aborts on OOM).
        let ptr = unsafe { rd::rd_kafka_topic_partition_list_new(capacity) };
        PartitionList {
            ptr: NonNull::new(ptr).expect("rd_kafka_topic_partition_list_new returned null"),
        }
    }

    /// A copy of a list librdkafka lends us (in a callback).
    ///
    /// # Safety
    /// `list` points to a valid partition list for the duration of the call.
    pub unsafe fn copy_of(list: *const rd::rd_kafka_topic_partition_list_t) -> Self {
        // SAFETY: valid per the contract; the copy is ours.
        let ptr = unsafe { rd::rd_kafka_topic_partition_list_copy(list) };
        PartitionList {
            ptr: NonNull::new(ptr).expect("rd_kafka_topic_partition_list_copy returned null"),
        }
    }

    /// Takes ownership of a list librdkafka allocated for us (`rd_kafka_assignment`).
    ///
    /// # Safety
    /// `list` is a valid, non-null partition list nobody else destroys.
    pub unsafe fn from_owned(list: NonNull<rd::rd_kafka_topic_partition_list_t>) -> Self {
        PartitionList { ptr: list }
    }

    /// Appends `topic`/`partition` with `offset`.
    pub fn add(&mut self, topic: &CStr, partition: i32, offset: i64) {
        // SAFETY: valid list and NUL-terminated topic; librdkafka copies the name.
        unsafe {
            let entry =
                rd::rd_kafka_topic_partition_list_add(self.ptr.as_ptr(), topic.as_ptr(), partition);
            (*entry).offset = offset;
        }
    }

    /// Sets the offset of entry `index` (ignored past the end).
    pub fn set_offset(&mut self, index: usize, offset: i64) {
        if index < self.len() {
            // SAFETY: index < cnt, so the element exists and is ours to write.
            unsafe { (*(*self.ptr.as_ptr()).elems.add(index)).offset = offset };
        }
    }

    pub fn len(&self) -> usize {
        // SAFETY: valid list.
        unsafe { (*self.ptr.as_ptr()).cnt.max(0) as usize }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `index`: topic, partition, offset, error.
    pub fn get(&self, index: usize) -> Option<(&CStr, i32, i64, KafkaCode)> {
        if index >= self.len() {
            return None;
        }
        // SAFETY: index < cnt, so the element exists; its topic is a valid
        // NUL-terminated string owned by the list, borrowed for `&self`.
        unsafe {
            let entry = &*(*self.ptr.as_ptr()).elems.add(index);
            Some((CStr::from_ptr(entry.topic), entry.partition, entry.offset, KafkaCode(entry.err)))
        }
    }

    pub fn as_ptr(&self) -> *mut rd::rd_kafka_topic_partition_list_t {
        self.ptr.as_ptr()
    }
}

impl Drop for PartitionList {
    fn drop(&mut self) {
        // SAFETY: we own the list.
        unsafe { rd::rd_kafka_topic_partition_list_destroy(self.ptr.as_ptr()) }
    }
}

/// Reads a C string that librdkafka lends for the duration of a call.
///
/// # Safety
/// `text` is null or a valid NUL-terminated string for the returned lifetime.
pub unsafe fn borrowed_text<'a>(text: *const c_char) -> &'a str {
    if text.is_null() {
        return "";
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(text) }.to_str().unwrap_or("(not UTF-8)")
}

/// A byte slice from a pointer and length that may be null/zero (Kafka null key or
/// null value).
///
/// # Safety
/// When `ptr` is non-null it points to `len` readable bytes valid for `'a`.
#[inline]
pub unsafe fn bytes<'a>(ptr: *const c_void, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: per the contract.
        unsafe { std::slice::from_raw_parts(ptr as *const u8, len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_validates_names_and_values_offline() {
        let mut conf = NativeConf::new();
        assert!(conf.set("linger.ms", "5").is_ok());
        let unknown = conf.set("linger.mss", "5").unwrap_err();
        assert!(unknown.contains("No such configuration property"), "{unknown}");
        let bad = conf.set("linger.ms", "soon").unwrap_err();
        // librdkafka names the canonical property (linger.ms is an alias).
        assert!(bad.contains("Invalid value"), "{bad}");
    }

    #[test]
    fn partition_list_round_trips() {
        let mut list = PartitionList::with_capacity(2);
        let topic = CString::new("orders").unwrap();
        list.add(&topic, 3, 42);
        assert_eq!(list.len(), 1);
        let (name, partition, offset, code) = list.get(0).unwrap();
        assert_eq!((name.to_str().unwrap(), partition, offset), ("orders", 3, 42));
        assert!(code.is_ok());
        assert!(list.get(1).is_none());
    }

    #[test]
    fn codes_have_text_and_category() {
        let code = KafkaCode(rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL);
        assert_eq!(code.category(), ErrorCategory::Throttled);
        assert!(code.text().to_ascii_lowercase().contains("queue full"), "{}", code.text());
        assert!(KafkaCode::OK.is_ok());
    }
}
