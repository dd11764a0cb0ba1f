//! The generator source: synthetic orders like `shared/bench/make_orders.py`'s,
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
    /// Padding bytes (`x`) sliced per message; the pad field wrapper is in `PAD_OPEN`.
    padding: Box<[u8]>,
    rng: u64,
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
        let bodies = (0..GENERATOR_POOL_BODIES)
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
        Ok(GeneratorSource {
            settings,
            bodies,
            padding: vec![b'x'; settings.message_bytes].into_boxed_slice(),
            rng: settings.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
        })
    }

    /// Pushes message number `id` (1-based).
    #[inline]
    fn push_one(
        &mut self,
        ingest: &mut Ingest,
        id: u64,
        timestamp_ms: i64,
    ) -> Result<(), SourceError> {
        let draw = next_random(&mut self.rng);
        let body = &self.bodies[(draw as usize) % GENERATOR_POOL_BODIES];
        let mut id_digits = itoa::Buffer::new();
        let id_text = id_digits.format(id).as_bytes();
        let mut key_buffer = [0u8; KEY_BYTES];
        let keyed = self.settings.keys > 0;
        if keyed {
            write_key(&mut key_buffer, (draw >> 32) % self.settings.keys);
        }
        let key: &[u8] = if keyed { &key_buffer } else { b"" };
        // {"id":N,"customer":"c-000001",<body>[,"pad":"xxx"]}
        let fixed = HEAD.len()
            + id_text.len()
            + CUSTOMER_OPEN.len()
            + KEY_BYTES
            + CUSTOMER_CLOSE.len()
            + body.len();
        let padded =
            self.settings.message_bytes.saturating_sub(fixed + PAD_OPEN.len() + PAD_CLOSE.len());
        let pad_fits = self.settings.message_bytes >= fixed + PAD_OPEN.len() + PAD_CLOSE.len();
        let customer = if keyed { &key_buffer[..] } else { b"c-000000" };
        let message = Message {
            key,
            payload: HEAD,
            headers: Headers::EMPTY,
            meta: Meta { partition: 0, position: id, timestamp_ms, ingest_ns: 0 },
        };
        let parts: [&[u8]; 8] = if pad_fits {
            [
                id_text,
                CUSTOMER_OPEN,
                customer,
                CUSTOMER_CLOSE,
                body,
                PAD_OPEN,
                &self.padding[..padded],
                PAD_CLOSE,
            ]
        } else {
            [id_text, CUSTOMER_OPEN, customer, CUSTOMER_CLOSE, body, CLOSE, b"", b""]
        };
        ingest.push_parts(&message, &parts).map_err(|e| SourceError::new(e.to_string()))
    }
}

/// Writes `c-NNNNNN` for `n < 1_000_000`.
#[inline(always)]
fn write_key(out: &mut [u8; KEY_BYTES], mut n: u64) {
    out[0] = b'c';
    out[1] = b'-';
    for i in (2..KEY_BYTES).rev() {
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

impl Source for GeneratorSource {
    fn describe(&self) -> String {
        let s = &self.settings;
        format!(
            "generator (count {}, rate {}, keys {}, message_bytes {})",
            s.count.map_or("unlimited".to_string(), |c| c.to_string()),
            s.rate_per_sec.map_or("unlimited".to_string(), |r| format!("{r}/s")),
            s.keys,
            s.message_bytes
        )
    }

    fn run(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        let count = self.settings.count.unwrap_or(u64::MAX);
        let batch = self.settings.batch_records.max(1) as u64;
        let started = Instant::now();
        let mut sent = 0u64;
        while sent < count && !ingest.stop_requested() {
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
