//! The message as a worker sees it: borrowed views into the ring and the arena.
//!
//! Nothing here owns memory. A [`Message`] borrows its key, payload and headers from
//! the worker's ring (valid until the batch is released); an [`Output`] borrows from
//! the ring or from the worker's bump arena (valid until the arena is reset). Both are
//! `Copy` and two or three words wide, so building a batch of them costs no heap.

/// Where a message came from and when; enough to acknowledge it and to time it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Source partition: the Kafka partition, or 0 for a file/stdin/generator source.
    pub partition: u32,
    /// Source position used for acknowledgements: the Kafka offset, the byte offset
    /// just past the line in a file, or the sequence number of a generated message.
    /// Positions increase strictly within a partition.
    pub position: u64,
    /// The message's own timestamp in epoch milliseconds (Kafka timestamp, or the
    /// time the source read it when the source has none).
    pub timestamp_ms: i64,
    /// Engine-clock nanoseconds when the source put the message into the ring; the
    /// start of the ingest → sink latency. See [`crate::metrics::clock`].
    pub ingest_ns: u64,
}

/// Headers of one message, in the ring's compact encoding (see [`Headers::encode`]).
///
/// Layout per header: `key_len: u16 LE`, `value_len: u16 LE` (`u16::MAX` means a
/// null value), the key bytes, the value bytes. The whole block is at most
/// [`crate::limits::HEADERS_BYTES_MAX`] bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    encoded: &'a [u8],
}

/// A `value_len` that marks a header whose value is null (Kafka allows it).
const HEADER_VALUE_NULL: u16 = u16::MAX;
/// Bytes of the per-header prefix: key length and value length.
pub const HEADER_PREFIX_BYTES: usize = 4;

/// A header could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderEncodeError {
    /// A key or value is longer than `u16::MAX - 1` bytes.
    FieldTooLong,
    /// The encoded block would not fit the destination.
    NoSpace,
}

impl<'a> Headers<'a> {
    /// No headers.
    pub const EMPTY: Headers<'static> = Headers { encoded: &[] };

    /// Wraps an encoded block. A malformed block is not unsafe: iteration stops at the
    /// first header that does not fit.
    pub fn from_encoded(encoded: &'a [u8]) -> Self {
        Headers { encoded }
    }

    /// The encoded bytes, as stored in the ring.
    pub fn encoded(&self) -> &'a [u8] {
        self.encoded
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Iterates `(key, value)` pairs in order; a null value is `None`.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.encoded }
    }

    /// The value of the first header named `key` (`Some(None)` for a null value).
    pub fn get(&self, key: &[u8]) -> Option<Option<&'a [u8]>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Bytes needed to encode these headers.
    pub fn encoded_len<'h, I>(headers: I) -> usize
    where
        I: IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    {
        headers
            .into_iter()
            .map(|(k, v)| HEADER_PREFIX_BYTES + k.len() + v.map_or(0, <[u8]>::len))
            .sum()
    }

    /// Encodes `headers` into `out`, returning the bytes written.
    pub fn encode<'h, I>(headers: I, out: &mut [u8]) -> Result<usize, HeaderEncodeError>
    where
        I: IntoIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    {
        let mut at = 0usize;
        for (key, value) in headers {
            let value_bytes = value.unwrap_or(&[]);
            if key.len() >= HEADER_VALUE_NULL as usize
                || value_bytes.len() >= HEADER_VALUE_NULL as usize
            {
                return Err(HeaderEncodeError::FieldTooLong);
            }
            let need = HEADER_PREFIX_BYTES + key.len() + value_bytes.len();
            let dest = out.get_mut(at..at + need).ok_or(HeaderEncodeError::NoSpace)?;
            let value_len =
                if value.is_some() { value_bytes.len() as u16 } else { HEADER_VALUE_NULL };
            dest[0..2].copy_from_slice(&(key.len() as u16).to_le_bytes());
            dest[2..4].copy_from_slice(&value_len.to_le_bytes());
            dest[4..4 + key.len()].copy_from_slice(key);
            dest[4 + key.len()..].copy_from_slice(value_bytes);
            at += need;
        }
        Ok(at)
    }
}

/// Iterator over [`Headers`].
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < HEADER_PREFIX_BYTES {
            return None;
        }
        let key_len = u16::from_le_bytes([self.rest[0], self.rest[1]]) as usize;
        let value_raw = u16::from_le_bytes([self.rest[2], self.rest[3]]);
        let value_len = if value_raw == HEADER_VALUE_NULL { 0 } else { value_raw as usize };
        let body = &self.rest[HEADER_PREFIX_BYTES..];
        if body.len() < key_len + value_len {
            self.rest = &[];
            return None;
        }
        let key = &body[..key_len];
        let value = &body[key_len..key_len + value_len];
        self.rest = &body[key_len + value_len..];
        Some((key, if value_raw == HEADER_VALUE_NULL { None } else { Some(value) }))
    }
}

/// One input message, borrowed from the worker's ring for the length of a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message<'a> {
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub headers: Headers<'a>,
    pub meta: Meta,
}

/// One output of a processor, handed to the sink. Borrowed from the ring (pass-through)
/// or from the worker's arena (rewritten); valid until the arena is reset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Output<'a> {
    /// Index of the input message in its batch, so the sink's acknowledgement and any
    /// dead-lettering can be traced back to the input.
    pub input: u32,
    /// Destination topic; empty means the sink's configured default.
    pub topic: &'a str,
    pub key: &'a [u8],
    pub payload: &'a [u8],
    pub headers: Headers<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_with_null_value() {
        let input: [(&[u8], Option<&[u8]>); 3] =
            [(b"trace", Some(b"abc")), (b"empty", Some(b"")), (b"null", None)];
        let mut buf = [0u8; 64];
        let n = Headers::encode(input, &mut buf).unwrap();
        assert_eq!(n, Headers::encoded_len(input));
        let headers = Headers::from_encoded(&buf[..n]);
        let back: Vec<_> = headers.iter().collect();
        assert_eq!(back, input.to_vec());
        assert_eq!(headers.get(b"null"), Some(None));
        assert_eq!(headers.get(b"trace"), Some(Some(&b"abc"[..])));
        assert_eq!(headers.get(b"missing"), None);
    }

    #[test]
    fn headers_encode_refuses_short_buffer_and_long_fields() {
        let mut buf = [0u8; 6];
        let one: [(&[u8], Option<&[u8]>); 1] = [(b"key", Some(b"value"))];
        assert_eq!(Headers::encode(one, &mut buf), Err(HeaderEncodeError::NoSpace));
        let long = vec![0u8; u16::MAX as usize];
        let bad: [(&[u8], Option<&[u8]>); 1] = [(&long, None)];
        let mut big = vec![0u8; 1 << 17];
        assert_eq!(Headers::encode(bad, &mut big), Err(HeaderEncodeError::FieldTooLong));
    }

    #[test]
    fn truncated_header_block_stops_iteration() {
        let mut buf = [0u8; 32];
        let one: [(&[u8], Option<&[u8]>); 1] = [(b"key", Some(b"value"))];
        let n = Headers::encode(one, &mut buf).unwrap();
        assert_eq!(Headers::from_encoded(&buf[..n - 1]).iter().count(), 0);
    }
}
