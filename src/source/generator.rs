//! The generator source: synthetic orders like `benches/data/make_orders.py`'s,
//! with a count, a rate limit, a key cardinality and a message size.
//!
//! At start it renders a pool of order bodies (region, status, amount, currency,
//! ... drawn with the reference dataset's weights). Per message it only picks a body
//! and a customer with a cheap xorshift, and gathers the head
//! `{"id":<n>,"customer":"<key>",`, the body and the padding straight into the ring
//! (no intermediate buffer, no allocation).
//! The customer is also the message key, so `keys` is the key cardinality and
//! messages of one customer keep their order through the engine.

use std::time::{Duration, Instant};

use super::pressure::MEMORY_SAMPLE_INTERVAL;
use super::{Ingest, Source, SourceError};
use crate::message::{Headers, Message, Meta};
use crate::metrics::clock;

/// Bodies rendered at start; messages cycle through them pseudo-randomly.
pub const GENERATOR_POOL_BODIES: usize = 1024;
/// Smallest message size the generator can honour exactly; smaller requests get
/// the compact body unpadded (the bench reports the real mean size).
pub const GENERATOR_MESSAGE_BYTES_MIN: usize = 64;
/// Largest message size (the generator pads with one static buffer of this size).
pub const GENERATOR_MESSAGE_BYTES_MAX: usize = 1 << 20;

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneratorSettings {
    /// Messages to generate; `None` runs until stopped.
    pub count: Option<u64>,
    /// Messages per second at most; `None` as fast as the engine takes them.
    pub rate_per_sec: Option<u64>,
    /// Distinct keys (customers); 0 generates keyless messages (round-robin).
    pub keys: u64,
    /// Target payload size in bytes.
    pub message_bytes: usize,
    /// Seed of the pseudo-random choices (same seed, same messages).
    pub seed: u64,
    /// Messages per source batch (one ring publish and one clock read each).
    pub batch_records: usize,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        GeneratorSettings {
            count: Some(1_000_000),
            rate_per_sec: None,
            keys: 50_000,
            message_bytes: 200,
            seed: 42,
            batch_records: crate::limits::BATCH_RECORDS_DEFAULT,
        }
    }
}

/// See the module docs.
pub struct GeneratorSource {
    settings: GeneratorSettings,
    /// Rendered bodies, each `"region":...,"currency":"EUR"` without braces.
    bodies: Vec<Box<[u8]>>,
    /// The same bodies followed by `,"pad":"`.
    padded_bodies: Vec<Box<[u8]>>,
    /// `xxx...x"}`: a padded message ends with the last `pad + 2` bytes of it.
    tail: Box<[u8]>,
    rng: u64,
    /// The next message id, as text.
    id_text: DecimalCounter,
}

const HEAD: &[u8] = b"{\"id\":";
const CUSTOMER_OPEN: &[u8] = b",\"customer\":\"";
const CUSTOMER_CLOSE: &[u8] = b"\",";
const PAD_OPEN: &[u8] = b",\"pad\":\"";
const PAD_CLOSE: &[u8] = b"\"}";
const CLOSE: &[u8] = b"}";
/// Bytes of a customer key `c-NNNNNN`.
const KEY_BYTES: usize = 8;

const REGIONS: [(&str, f64); 6] = [
    ("eu-west", 0.22),
    ("eu-central", 0.12),
    ("us-east", 0.28),
    ("us-west", 0.14),
    ("ap-south", 0.14),
    ("ap-southeast", 0.10),
];
const STATUSES: [(&str, f64); 4] =
    [("paid", 0.45), ("pending", 0.27), ("failed", 0.16), ("refunded", 0.12)];
const CURRENCIES: [(&str, f64); 4] = [("EUR", 0.35), ("USD", 0.40), ("GBP", 0.12), ("INR", 0.13)];
const CHANNELS: [(&str, f64); 5] =
    [("web", 0.40), ("ios", 0.22), ("android", 0.25), ("pos", 0.08), ("partner", 0.05)];

/// xorshift64*: a few instructions per draw, good enough for synthetic data.
#[inline(always)]
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn unit(state: &mut u64) -> f64 {
    (next_random(state) >> 11) as f64 / (1u64 << 53) as f64
}

fn pick<'a>(state: &mut u64, table: &[(&'a str, f64)]) -> &'a str {
    let mut r = unit(state) * table.iter().map(|(_, w)| w).sum::<f64>();
    for (value, weight) in table {
        if r < *weight {
            return value;
        }
        r -= weight;
    }
    table[table.len() - 1].0
}

impl GeneratorSource {
    pub fn new(settings: GeneratorSettings) -> Result<Self, SourceError> {
        if settings.message_bytes > GENERATOR_MESSAGE_BYTES_MAX {
            return Err(SourceError::new(format!(
                "generator message_bytes {} exceeds the maximum {GENERATOR_MESSAGE_BYTES_MAX}",
                settings.message_bytes
            )));
        }
        if settings.rate_per_sec == Some(0) {
            return Err(SourceError::new(
                "generator rate_per_sec must be at least 1 (omit it for no limit)",
            ));
        }
        if settings.keys > 1_000_000 {
            return Err(SourceError::new(format!(
                "generator keys {} exceeds 1000000 (keys are c-000000 .. c-999999)",
                settings.keys
            )));
        }
        let full = settings.message_bytes >= 180;
        let mut rng = settings.seed | 1;
        let mut ts_ms: u64 = 1_735_689_600_000;
        let bodies: Vec<Box<[u8]>> = (0..GENERATOR_POOL_BODIES)
            .map(|_| {
                ts_ms += next_random(&mut rng) % 21;
                let region = pick(&mut rng, &REGIONS);
                let status = pick(&mut rng, &STATUSES);
                let cents = if unit(&mut rng) < 0.55 {
                    10_001 + next_random(&mut rng) % 89_999
                } else {
                    100 + next_random(&mut rng) % 9_901
                };
                let currency = pick(&mut rng, &CURRENCIES);
                let body = if full {
                    let items = 1 + next_random(&mut rng) % 12;
                    let channel = pick(&mut rng, &CHANNELS);
                    format!(
                        "\"ts\":{ts_ms},\"region\":\"{region}\",\"status\":\"{status}\",\"amount\":{}.{:02},\
                         \"currency\":\"{currency}\",\"items\":{items},\"channel\":\"{channel}\"",
                        cents / 100,
                        cents % 100
                    )
                } else {
                    format!(
                        "\"region\":\"{region}\",\"status\":\"{status}\",\"amount\":{}.{:02},\"currency\":\"{currency}\"",
                        cents / 100,
                        cents % 100
                    )
                };
                body.into_bytes().into_boxed_slice()
            })
            .collect();
        let padded_bodies =
            bodies.iter().map(|b| [&b[..], PAD_OPEN].concat().into_boxed_slice()).collect();
        let mut tail = vec![b'x'; settings.message_bytes];
        tail.extend_from_slice(PAD_CLOSE);
        Ok(GeneratorSource {
            settings,
            bodies,
            padded_bodies,
            tail: tail.into_boxed_slice(),
            rng: settings.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            id_text: DecimalCounter::new(1),
        })
    }

    /// Pushes message number `id` (1-based).
    ///
    /// The payload is gathered from three pieces: a prefix built on the stack
    /// (`{"id":N,"customer":"c-NNNNNN",`), a pooled body, and a padding tail sliced
    /// from one static buffer, so the ring write copies three runs.
    #[inline]
    fn push_one(
        &mut self,
        ingest: &mut Ingest,
        id: u64,
        timestamp_ms: i64,
    ) -> Result<(), SourceError> {
        let draw = next_random(&mut self.rng);
        let pick = (draw as usize) % GENERATOR_POOL_BODIES;
        let keyed = self.settings.keys > 0;
        let mut prefix = [0u8; PREFIX_BYTES_MAX];
        let mut at = 0;
        put(&mut prefix, &mut at, HEAD);
        debug_assert!({
            let mut expected = [0u8; 20];
            let len = write_decimal(&mut expected, id);
            self.id_text.as_bytes() == &expected[..len]
        });
        let digits = self.id_text.as_bytes();
        prefix[at..at + digits.len()].copy_from_slice(digits);
        at += digits.len();
        self.id_text.increment();
        put(&mut prefix, &mut at, CUSTOMER_OPEN);
        let key_at = at;
        let customer = if keyed { (draw >> 32) % self.settings.keys } else { 0 };
        write_key(
            (&mut prefix[at..at + KEY_BYTES]).try_into().unwrap_or(&mut [0; KEY_BYTES]),
            customer,
        );
        at += KEY_BYTES;
        put(&mut prefix, &mut at, CUSTOMER_CLOSE);
        // {"id":N,"customer":"c-000001",<body>,"pad":"xxx"}  or  ...<body>}
        let padded_body = &self.padded_bodies[pick];
        let fixed = at + padded_body.len() + PAD_CLOSE.len();
        let (body, tail): (&[u8], &[u8]) = match self.settings.message_bytes.checked_sub(fixed) {
            Some(pad) => (padded_body, &self.tail[self.tail.len() - pad - PAD_CLOSE.len()..]),
            None => (&self.bodies[pick], CLOSE),
        };
        let message = Message {
            key: if keyed { &prefix[key_at..key_at + KEY_BYTES] } else { b"" },
            payload: &prefix[..at],
            headers: Headers::EMPTY,
            meta: Meta { partition: 0, position: id, timestamp_ms, ingest_ns: 0 },
        };
        ingest.push_parts(&message, &[body, tail]).map_err(|e| SourceError::new(e.to_string()))
    }
}

/// Longest prefix: `{"id":` + 20 digits + `,"customer":"` + 8 + `",`.
const PREFIX_BYTES_MAX: usize = 6 + 20 + 13 + KEY_BYTES + 2;

#[inline(always)]
fn put(out: &mut [u8; PREFIX_BYTES_MAX], at: &mut usize, bytes: &'static [u8]) {
    out[*at..*at + bytes.len()].copy_from_slice(bytes);
    *at += bytes.len();
}

/// A decimal number kept as text and incremented in place: sequential ids cost a
/// digit or two of work instead of a division per digit.
struct DecimalCounter {
    /// Right-aligned digits; `digits[start..]` is the number.
    digits: [u8; 20],
    start: usize,
}

impl DecimalCounter {
    fn new(n: u64) -> Self {
        let mut digits = [b'0'; 20];
        let mut scratch = [0u8; 20];
        let len = write_decimal(&mut scratch, n);
        digits[20 - len..].copy_from_slice(&scratch[..len]);
        DecimalCounter { digits, start: 20 - len }
    }

    #[inline(always)]
    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }

    #[inline(always)]
    fn increment(&mut self) {
        let mut i = self.digits.len();
        while i > 0 {
            i -= 1;
            if self.digits[i] == b'9' {
                self.digits[i] = b'0';
            } else {
                self.digits[i] += 1;
                self.start = self.start.min(i);
                return;
            }
        }
        // Wrapped past 20 digits: cannot happen for u64 ids below 10^20.
        *self = DecimalCounter::new(0);
    }
}

/// Writes `n` in decimal at the start of `out` (at least 20 bytes); returns the length.
#[inline(always)]
fn write_decimal(out: &mut [u8], mut n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - i;
    out[..len].copy_from_slice(&digits[i..]);
    len
}

/// "00" .. "99": two digits per division when writing keys.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes `c-NNNNNN` for `n < 1_000_000`.
#[inline(always)]
fn write_key(out: &mut [u8; KEY_BYTES], mut n: u64) {
    out[0] = b'c';
    out[1] = b'-';
    for i in [6usize, 4, 2] {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
}

impl Source for GeneratorSource {
    fn describe(&self) -> String {
        let s = &self.settings;
        format!(
            "generator (count {}, rate {}, keys {}, message_bytes {}: padded up to it, never \
             below an order's fields, ~100-130 bytes)",
            s.count.map_or("unlimited".to_string(), |c| c.to_string()),
            s.rate_per_sec.map_or("unlimited".to_string(), |r| format!("{r}/s")),
            s.keys,
            s.message_bytes
        )
    }

    fn run(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        let count = self.settings.count.unwrap_or(u64::MAX);
        let batch = self.settings.batch_records.max(1) as u64;
        let mut started = Instant::now();
        let mut sent = 0u64;
        while sent < count && !ingest.stop_requested() {
            if ingest.memory_paused() {
                // Intake paused for memory (see `source::pressure`); the time paused
                // does not count against the rate schedule (no burst afterwards).
                std::thread::sleep(MEMORY_SAMPLE_INTERVAL);
                started += MEMORY_SAMPLE_INTERVAL;
                continue;
            }
            let timestamp_ms = clock::unix_ms();
            let end = (sent + batch).min(count);
            for id in sent + 1..=end {
                self.push_one(ingest, id, timestamp_ms)?;
            }
            sent = end;
            ingest.flush();
            if let Some(rate) = self.settings.rate_per_sec {
                // Sleep until the schedule catches up (at most 50 ms at a time, so a
                // stop request is seen promptly).
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                let elapsed = started.elapsed();
                if due > elapsed {
                    std::thread::sleep((due - elapsed).min(Duration::from_millis(50)));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_customer_ids() {
        let mut key = [0u8; KEY_BYTES];
        write_key(&mut key, 42);
        assert_eq!(&key, b"c-000042");
        write_key(&mut key, 999_999);
        assert_eq!(&key, b"c-999999");
    }

    #[test]
    fn decimal_counter_carries() {
        let mut c = DecimalCounter::new(98);
        for expected in ["98", "99", "100", "101"] {
            assert_eq!(c.as_bytes(), expected.as_bytes());
            c.increment();
        }
        let mut c = DecimalCounter::new(9_999_999);
        c.increment();
        assert_eq!(c.as_bytes(), b"10000000");
    }

    #[test]
    fn decimal_digits() {
        let mut out = [0u8; 20];
        assert_eq!(write_decimal(&mut out, 0), 1);
        assert_eq!(&out[..1], b"0");
        assert_eq!(write_decimal(&mut out, u64::MAX), 20);
        assert_eq!(&out[..20], b"18446744073709551615");
    }

    #[test]
    fn settings_are_validated() {
        let too_big = GeneratorSettings {
            message_bytes: GENERATOR_MESSAGE_BYTES_MAX + 1,
            ..Default::default()
        };
        assert!(GeneratorSource::new(too_big).err().unwrap().message.contains("message_bytes"));
        let zero_rate = GeneratorSettings { rate_per_sec: Some(0), ..Default::default() };
        assert!(GeneratorSource::new(zero_rate).err().unwrap().message.contains("rate_per_sec"));
    }
}
