//! How one record is laid out in a ring: a fixed 40-byte header, then key, headers
//! and payload, padded to 8 bytes.
//!
//! ```text
//! offset  field           type   meaning
//!  0      payload_len     u32    payload bytes; PAD_MARKER = "skip to ring start"
//!  4      key_len         u16    key bytes (<= KEY_BYTES_MAX)
//!  6      headers_len     u16    encoded header bytes (<= HEADERS_BYTES_MAX)
//!  8      partition       u32    source partition
//! 12      flags           u32    reserved, 0
//! 16      position        u64    source position (for acknowledgements)
//! 24      timestamp_ms    i64    message timestamp
//! 32      ingest_ns       u64    engine clock when the source accepted it
//! 40      key | headers | payload | zero padding to a multiple of 8
//! ```
//!
//! All integers are little-endian. The producer writes a frame only where it fits
//! contiguously; when the bytes left before the end of the buffer are too few, it
//! writes a 4-byte `PAD_MARKER` there and continues at offset 0. Because frames are
//! 8-aligned and the ring size is a multiple of 8, at least 8 bytes are left whenever
//! a marker is needed.

use crate::limits::{HEADERS_BYTES_MAX, KEY_BYTES_MAX, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES};
use crate::message::{Headers, Message, Meta};

/// `payload_len` value that marks the rest of the buffer as padding.
pub const PAD_MARKER: u32 = u32::MAX;

/// Largest payload a frame can describe (`PAD_MARKER` is reserved).
pub const PAYLOAD_BYTES_MAX: usize = (u32::MAX - 1) as usize;

/// A record that cannot be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Key longer than [`KEY_BYTES_MAX`].
    KeyTooLong { key_bytes: usize },
    /// Encoded headers longer than [`HEADERS_BYTES_MAX`].
    HeadersTooLong { headers_bytes: usize },
    /// The whole frame is larger than the limit it is checked against.
    TooLarge { frame_bytes: usize, frame_bytes_max: usize },
    /// Decoding: fewer bytes than the header or the lengths it announces.
    Truncated { needed_bytes: usize, available_bytes: usize },
    /// Decoding: reserved flags were not zero.
    BadFlags { flags: u32 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FrameError::KeyTooLong { key_bytes } => {
                write!(f, "key of {key_bytes} bytes exceeds the {KEY_BYTES_MAX}-byte limit")
            }
            FrameError::HeadersTooLong { headers_bytes } => write!(
                f,
                "headers of {headers_bytes} bytes exceed the {HEADERS_BYTES_MAX}-byte limit"
            ),
            FrameError::TooLarge { frame_bytes, frame_bytes_max } => write!(
                f,
                "record of {frame_bytes} bytes exceeds the {frame_bytes_max}-byte record limit"
            ),
            FrameError::Truncated { needed_bytes, available_bytes } => {
                write!(f, "frame needs {needed_bytes} bytes, {available_bytes} available")
            }
            FrameError::BadFlags { flags } => write!(f, "reserved frame flags {flags:#x} set"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Rounds `bytes` up to the frame alignment.
#[inline(always)]
pub const fn align_up(bytes: usize) -> usize {
    (bytes + RECORD_ALIGN_BYTES - 1) & !(RECORD_ALIGN_BYTES - 1)
}

/// Total bytes the frame of `message` takes, or why it cannot be framed.
#[inline]
pub fn frame_len(message: &Message<'_>) -> Result<usize, FrameError> {
    frame_len_for(message.key.len(), message.headers.encoded().len(), message.payload.len())
}

/// Total bytes of a frame with these lengths, or why it cannot be framed.
#[inline]
pub fn frame_len_for(
    key_bytes: usize,
    headers_bytes: usize,
    payload_bytes: usize,
) -> Result<usize, FrameError> {
    if key_bytes > KEY_BYTES_MAX {
        return Err(FrameError::KeyTooLong { key_bytes });
    }
    if headers_bytes > HEADERS_BYTES_MAX {
        return Err(FrameError::HeadersTooLong { headers_bytes });
    }
    if payload_bytes > PAYLOAD_BYTES_MAX {
        let frame_bytes = RECORD_HEADER_BYTES + key_bytes + headers_bytes + payload_bytes;
        return Err(FrameError::TooLarge { frame_bytes, frame_bytes_max: PAYLOAD_BYTES_MAX });
    }
    Ok(align_up(RECORD_HEADER_BYTES + key_bytes + headers_bytes + payload_bytes))
}

/// The fixed header of `message`, ready to be copied in front of its bytes.
/// The caller has checked the lengths with [`frame_len`].
#[inline(always)]
pub fn encode_header(message: &Message<'_>) -> [u8; RECORD_HEADER_BYTES] {
    encode_header_for(message, message.payload.len())
}

/// The header of `message` with a payload of `payload_bytes` (the payload may be
/// written in parts).
#[inline(always)]
pub fn encode_header_for(message: &Message<'_>, payload_bytes: usize) -> [u8; RECORD_HEADER_BYTES] {
    let mut header = [0u8; RECORD_HEADER_BYTES];
    for (chunk, word) in header.chunks_exact_mut(8).zip(header_words(message, payload_bytes)) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    header
}

/// The header as five words, to be stored little-endian at offsets 0, 8, .. 32.
#[inline(always)]
pub fn header_words(message: &Message<'_>, payload_bytes: usize) -> [u64; RECORD_HEADER_BYTES / 8] {
    debug_assert!(message.key.len() <= KEY_BYTES_MAX);
    debug_assert!(message.headers.encoded().len() <= HEADERS_BYTES_MAX);
    debug_assert!(payload_bytes <= PAYLOAD_BYTES_MAX);
    let word0 = payload_bytes as u64
        | (message.key.len() as u64) << 32
        | (message.headers.encoded().len() as u64) << 48;
    [
        word0,
        u64::from(message.meta.partition), // flags (high half) reserved zero
        message.meta.position,
        message.meta.timestamp_ms as u64,
        message.meta.ingest_ns,
    ]
}

/// Lengths read from a header: `(payload, key, headers)` bytes.
#[inline(always)]
pub fn header_lengths(header: &[u8]) -> (u32, usize, usize) {
    debug_assert!(header.len() >= 8);
    let payload = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let key = u16::from_le_bytes([header[4], header[5]]) as usize;
    let headers = u16::from_le_bytes([header[6], header[7]]) as usize;
    (payload, key, headers)
}

/// Frame bytes given the header's lengths (never called on a pad marker).
#[inline(always)]
pub const fn frame_len_from(payload: u32, key: usize, headers: usize) -> usize {
    align_up(RECORD_HEADER_BYTES + key + headers + payload as usize)
}

/// Reads a frame the ring wrote itself: lengths were checked when it was written.
/// `frame` must hold exactly the frame's bytes (from [`frame_len_from`]).
#[inline(always)]
pub fn decode_trusted(frame: &[u8]) -> Message<'_> {
    let Some((header, body)) = frame.split_first_chunk::<RECORD_HEADER_BYTES>() else {
        return Message::default();
    };
    let word =
        |i: usize| u64::from_le_bytes(header[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let word0 = word(0);
    let payload_len = (word0 & 0xffff_ffff) as usize;
    let key_len = ((word0 >> 32) & 0xffff) as usize;
    let headers_len = (word0 >> 48) as usize;
    let meta = Meta {
        partition: word(1) as u32,
        position: word(2),
        timestamp_ms: word(3) as i64,
        ingest_ns: word(4),
    };
    debug_assert!(key_len + headers_len + payload_len <= body.len(), "trusted frame is complete");
    let (key, rest) = body.split_at(key_len.min(body.len()));
    let (headers, rest) = rest.split_at(headers_len.min(rest.len()));
    let payload = &rest[..payload_len.min(rest.len())];
    Message { key, payload, headers: Headers::from_encoded(headers), meta }
}

/// Writes the frame of `message` into `out` (which must be at least
/// `frame_len(message)` bytes) and returns the bytes used. Used by tests, fuzzing and
/// tools; the ring writes the same layout piecewise.
pub fn encode(message: &Message<'_>, out: &mut [u8]) -> Result<usize, FrameError> {
    let len = frame_len(message)?;
    if out.len() < len {
        return Err(FrameError::Truncated { needed_bytes: len, available_bytes: out.len() });
    }
    out[..RECORD_HEADER_BYTES].copy_from_slice(&encode_header(message));
    let mut at = RECORD_HEADER_BYTES;
    for part in [message.key, message.headers.encoded(), message.payload] {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    out[at..len].fill(0);
    Ok(len)
}

/// Reads one frame from untrusted bytes (a file, a fuzzer): every length is checked.
/// Returns the message and the frame's length. A pad marker decodes as `Ok(None)`.
pub fn decode(bytes: &[u8]) -> Result<Option<(Message<'_>, usize)>, FrameError> {
    if bytes.len() < 4 {
        return Err(FrameError::Truncated { needed_bytes: 4, available_bytes: bytes.len() });
    }
    if u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) == PAD_MARKER {
        return Ok(None);
    }
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(FrameError::Truncated {
            needed_bytes: RECORD_HEADER_BYTES,
            available_bytes: bytes.len(),
        });
    }
    let flags = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if flags != 0 {
        return Err(FrameError::BadFlags { flags });
    }
    let (payload, key, headers) = header_lengths(bytes);
    if key > KEY_BYTES_MAX {
        return Err(FrameError::KeyTooLong { key_bytes: key });
    }
    if headers > HEADERS_BYTES_MAX {
        return Err(FrameError::HeadersTooLong { headers_bytes: headers });
    }
    let len = frame_len_from(payload, key, headers);
    if bytes.len() < len {
        return Err(FrameError::Truncated { needed_bytes: len, available_bytes: bytes.len() });
    }
    Ok(Some((decode_trusted(&bytes[..len]), len)))
}

/// Fuzz invariant for the record framing (shared by `fuzz/` and the corpus replay
/// test): decoding arbitrary bytes never panics; whatever decodes re-encodes to the
/// same bytes; and a message built from the input round-trips exactly.
#[doc(hidden)]
pub fn fuzz_check_frame(data: &[u8]) {
    if let Ok(Some((message, len))) = decode(data) {
        let mut again = vec![0u8; len];
        let n = encode(&message, &mut again).expect("a decoded frame re-encodes");
        assert_eq!(n, len);
        // Padding bytes in the input may be non-zero; everything else must match.
        let used = RECORD_HEADER_BYTES
            + message.key.len()
            + message.headers.encoded().len()
            + message.payload.len();
        assert_eq!(&again[..used], &data[..used], "re-encoding changed the frame");
    }
    // Build a message from the input itself and round-trip it.
    let split = |n: usize| data.len().min(n);
    let key_len = split(data.first().copied().unwrap_or(0) as usize);
    let (key, rest) = data.split_at(key_len);
    let meta = Meta {
        partition: data.len() as u32,
        position: u64::from(key_len as u32) << 7 | 3,
        timestamp_ms: -(data.len() as i64),
        ingest_ns: u64::MAX - data.len() as u64,
    };
    let message = Message { key, payload: rest, headers: Headers::EMPTY, meta };
    let len = frame_len(&message).expect("small inputs frame");
    let mut frame = vec![0xAAu8; len + 3];
    assert_eq!(encode(&message, &mut frame).unwrap(), len);
    assert_eq!(len % RECORD_ALIGN_BYTES, 0);
    let (back, back_len) = decode(&frame).unwrap().expect("not a pad marker");
    assert_eq!(back_len, len);
    assert_eq!(back.key, message.key);
    assert_eq!(back.payload, message.payload);
    assert_eq!(back.meta, message.meta);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_with_key_headers_and_meta() {
        let headers_src: [(&[u8], Option<&[u8]>); 1] = [(b"h", Some(b"v"))];
        let mut hbuf = [0u8; 16];
        let hn = Headers::encode(headers_src, &mut hbuf).unwrap();
        let message = Message {
            key: b"customer-7",
            payload: b"{\"id\":1}",
            headers: Headers::from_encoded(&hbuf[..hn]),
            meta: Meta { partition: 3, position: 99, timestamp_ms: -5, ingest_ns: 12345 },
        };
        let mut out = [0xFFu8; 128];
        let len = encode(&message, &mut out).unwrap();
        assert_eq!(len, align_up(40 + 10 + hn + 8));
        let (back, back_len) = decode(&out).unwrap().unwrap();
        assert_eq!(back_len, len);
        assert_eq!(back.key, message.key);
        assert_eq!(back.payload, message.payload);
        assert_eq!(back.headers, message.headers);
        assert_eq!(back.meta, message.meta);
    }

    #[test]
    fn decode_rejects_truncated_and_flagged_frames() {
        let message = Message { payload: b"abc", ..Default::default() };
        let mut out = [0u8; 64];
        let len = encode(&message, &mut out).unwrap();
        assert!(matches!(decode(&out[..len - 1]), Err(FrameError::Truncated { .. })));
        assert!(matches!(decode(&out[..10]), Err(FrameError::Truncated { .. })));
        out[12] = 1;
        assert_eq!(decode(&out[..len]), Err(FrameError::BadFlags { flags: 1 }));
        assert_eq!(decode(&PAD_MARKER.to_le_bytes()), Ok(None));
    }

    #[test]
    fn frame_len_refuses_long_keys() {
        let key = vec![0u8; KEY_BYTES_MAX + 1];
        let message = Message { key: &key, ..Default::default() };
        assert_eq!(
            frame_len(&message),
            Err(FrameError::KeyTooLong { key_bytes: KEY_BYTES_MAX + 1 })
        );
    }

    #[test]
    fn fuzz_check_accepts_assorted_inputs() {
        for input in [&b""[..], b"\x05hello world", &[0xFF; 64], &[0u8; 40]] {
            fuzz_check_frame(input);
        }
    }
}
