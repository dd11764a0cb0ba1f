//! A librdkafka message as an engine message: borrowed view, headers, release.

use std::ffi::{CStr, c_char, c_void};
use std::ptr::NonNull;

use rdkafka::bindings as rd;
use rdkafka::bindings::rd_kafka_resp_err_t as Err;

use crate::kafka::native;
use crate::message::{Headers, Message, Meta};
use crate::metrics::clock;

/// Releases a message back to librdkafka.
#[inline]
pub(super) fn destroy(message: NonNull<rd::rd_kafka_message_t>) {
    // SAFETY: each message is destroyed exactly once, by its single owner.
    unsafe { rd::rd_kafka_message_destroy(message.as_ptr()) }
}

/// A borrowed view of a librdkafka message as an engine message.
///
/// # Safety
/// `m` is a valid, not yet destroyed message; the view must not outlive it.
#[inline]
pub(super) unsafe fn view<'a>(
    m: &'a rd::rd_kafka_message_t,
    slot: u32,
    headers: &'a [u8],
) -> Message<'a> {
    let mut timestamp_type = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    // SAFETY: valid message per the contract.
    let timestamp_ms = unsafe { rd::rd_kafka_message_timestamp(m, &mut timestamp_type) };
    Message {
        // SAFETY: key and payload are valid for the message's life (or null).
        key: unsafe { native::bytes(m.key, m.key_len) },
        payload: unsafe { native::bytes(m.payload, m.len) },
        headers: Headers::from_encoded(headers),
        meta: Meta {
            partition: slot,
            position: m.offset.max(0) as u64,
            timestamp_ms: if timestamp_ms >= 0 { timestamp_ms } else { clock::unix_ms() },
            ingest_ns: 0,
        },
    }
}

/// Re-encodes a message's headers into `out`; returns the encoded length.
#[inline]
pub(super) fn encode_headers(
    m: &rd::rd_kafka_message_t,
    out: &mut [u8],
) -> Result<usize, &'static str> {
    let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: valid message; the header list belongs to it (not to be destroyed).
    let code = unsafe { rd::rd_kafka_message_headers(m, &mut headers) };
    if code != Err::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
        return Ok(0);
    }
    let mut index = 0usize;
    let iter = std::iter::from_fn(|| {
        let mut name: *const c_char = std::ptr::null();
        let mut value: *const c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: valid header list; the returned pointers live as long as it.
        let code = unsafe {
            rd::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
        };
        if code != Err::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        index += 1;
        // SAFETY: name is NUL-terminated; value points to `size` bytes or is null.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = (!value.is_null()).then(|| unsafe { native::bytes(value, size) });
        Some((name, value))
    });
    Headers::encode(iter, out).map_err(|_| "headers exceed the 65534-byte header block of a record")
}
