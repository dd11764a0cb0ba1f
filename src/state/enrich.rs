//! The `enrich` step: looks a key up in Redis, through a per-worker cache, and merges
//! the value into the message.
//!
//! ```toml
//! [[processor]]
//! type = "enrich"
//! key = "customer"                  # an expression over the message
//! field = "customer_info"           # where the value goes; absent: merged into the top level
//! on_miss = "pass"                  # no such key in Redis: pass | drop | dead_letter | default
//! default = '{"segment": "unknown"}'  # the value used by on_miss = "default"
//! capacity = 100000                 # cache entries per worker (default 100 000)
//! entry_bytes = 256                 # key + value of one entry, bytes (default 256)
//! eviction = "lru"                  # lru | lfu | ttl (default lru)
//! ttl = "60s"                       # how long a looked-up value (or its absence) is reused
//! [processor.redis]
//! url = "redis://127.0.0.1:6379/0"
//! prefix = "customer:"              # prepended to the key (default none)
//! value = "json"                    # json (GET: a JSON value) | string (GET: text) | hash (HGETALL)
//! pool_min = 1                      # connections kept open (default 1)
//! pool_max = 4                      # connections at most (default: the number of workers)
//! connect_timeout = "1s"
//! timeout = "1s"                    # one round trip's reads and writes
//! idle_timeout = "5m"
//! health_check_interval = "10s"     # PING on an idle connection
//! startup = "fail"                  # Redis unreachable at start: fail | wait (by [retry])
//! ```
//!
//! Per batch (the worker's, in ring order): every message that reaches the step has
//! its key computed and looked up in the worker's cache; the keys that miss are
//! deduplicated and fetched together in **one round trip** (`MGET`, or a pipeline of
//! `HGETALL`), the answers (values and absences) stored in the cache, and the batch
//! goes on. The round trip blocks only this worker; other workers keep running.
//! Steps after `enrich` read the enriched payload (the merged payload is scanned
//! again, once per message).
//!
//! Merging: the payload must be a JSON object. With `field`, `"field": value` is
//! appended as the object's last member; without it the value must be an object and
//! its members are appended. The payload's own bytes are kept, so a member the
//! payload already has appears twice, the enrichment last: readers that keep the
//! last value (serde_json, corestream's own steps) see the enrichment. A `map` step
//! after `enrich` builds a clean object.
//!
//! Values: `json` values must be valid JSON (an object when merged into the top
//! level); `string` values become a JSON string (UTF-8 required); `hash` values
//! become an object of string fields. A value that is not valid JSON, not UTF-8, of
//! the wrong type, or longer than the cache entry (`entry_bytes` minus the key)
//! fails the message with the reason (dead-lettered); processing goes on. A key
//! expression that yields null or an empty text, or a key longer than
//! [`KEY_BYTES_MAX`] or than `entry_bytes`, fails the message the same way.
//!
//! Redis failures: a round trip that fails (connection refused or lost, timeout) is
//! retried by the pipeline's `[retry]` delay table on a fresh connection; every failed
//! round trip counts towards the step's circuit breaker (one per worker, with the
//! pipeline's breaker settings, `[sink] breaker_failures` and `breaker_cool_down`). When the policy gives up, or while the breaker
//! is open, the batch's misses fail with category `network` and the reason: they go
//! to the dead-letter destination, or, without one, the run stops and they stay
//! unacknowledged (read again from the checkpoint or committed offset). A message is
//! never passed on as if it had been enriched. Cache hits are served while Redis is
//! away; after the cool-down one batch probes Redis and the step recovers by itself.

use std::time::{Duration, Instant};

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;
use serde::Deserialize;
use toml::Spanned;

use super::cache::{Cache, CacheCounts, CacheSettings, Eviction, Inserted};
use super::redis::{Fetch, FetchReply, Link, RedisSettings};
use crate::retry::ErrorCategory;
use crate::retry::breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker};
use crate::retry::{RetryPolicy, RetryState, SplitMix64};
use std::sync::Arc;

/// Default cache entries per worker.
pub const CAPACITY_DEFAULT: usize = 100_000;
/// Default key + value bytes of one cache entry.
pub const ENTRY_BYTES_DEFAULT: usize = 256;
/// Default eviction.
pub const EVICTION_DEFAULT: Eviction = Eviction::Lru;
/// Default time a looked-up value (or absence) is reused.
pub const TTL_DEFAULT: Duration = Duration::from_secs(60);
/// Longest Redis key (prefix included). Redis allows 512 MB; a key this long is a
/// mistake in the key expression, reported rather than sent.
pub const KEY_BYTES_MAX: usize = 1024;

/// `[processor.redis]` as written (the step owns its configuration; `config/` only
/// reads it). Checked by [`compile_redis`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStepConfig {
    pub url: Spanned<String>,
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub value: Option<Spanned<String>>,
    #[serde(default)]
    pub pool_min: Option<Spanned<i64>>,
    #[serde(default)]
    pub pool_max: Option<Spanned<i64>>,
    #[serde(default)]
    pub connect_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub health_check_interval: Option<Spanned<String>>,
    #[serde(default)]
    pub startup: Option<Spanned<String>>,
}

/// What happens to a message whose key Redis does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMiss {
    /// Passed on unchanged (counted in `enrich_not_found`).
    Pass,
    /// Dropped: counted as filtered (and `filtered_enrich`).
    Drop,
    /// Failed with the reason: dead-lettered.
    DeadLetter,
    /// Merged with the step's `default` value.
    Default,
}

impl OnMiss {
    pub const NAMES: [&'static str; 4] = ["pass", "drop", "dead_letter", "default"];

    pub fn from_name(name: &str) -> Option<OnMiss> {
        match name {
            "pass" => Some(OnMiss::Pass),
            "drop" => Some(OnMiss::Drop),
            "dead_letter" => Some(OnMiss::DeadLetter),
            "default" => Some(OnMiss::Default),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// How a Redis value becomes JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Json,
    String,
    Hash,
}

impl ValueKind {
    pub const NAMES: [&'static str; 3] = ["json", "string", "hash"];

    pub fn from_name(name: &str) -> Option<ValueKind> {
        match name {
            "json" => Some(ValueKind::Json),
            "string" => Some(ValueKind::String),
            "hash" => Some(ValueKind::Hash),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    fn fetch(self) -> Fetch {
        match self {
            ValueKind::Json | ValueKind::String => Fetch::Strings,
            ValueKind::Hash => Fetch::Hashes,
        }
    }
}

/// A compiled `enrich` step's settings (checked; nothing connected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrichSettings {
    pub redis: RedisSettings,
    pub prefix: Box<[u8]>,
    pub value: ValueKind,
    /// The member the value goes into; `None`: the top level.
    pub field: Option<String>,
    pub on_miss: OnMiss,
    /// `on_miss = "default"`: the value merged instead (valid JSON, an object at the
    /// top level).
    pub default: Option<Box<[u8]>>,
    pub cache: CacheSettings,
}

impl EnrichSettings {
    pub fn new(redis: RedisSettings) -> Self {
        EnrichSettings {
            redis,
            prefix: Box::default(),
            value: ValueKind::Json,
            field: None,
            on_miss: OnMiss::Pass,
            default: None,
            cache: CacheSettings {
                entries_max: CAPACITY_DEFAULT,
                entry_bytes_max: ENTRY_BYTES_DEFAULT,
                eviction: EVICTION_DEFAULT,
                ttl_ms: Some(TTL_DEFAULT.as_millis() as u64),
            },
        }
    }
}

/// What the step counted since the last publish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnrichCounts {
    /// Keys looked up in Redis (distinct misses of a batch).
    pub keys_fetched: u64,
    /// Round trips to Redis, retries included.
    pub round_trips: u64,
    /// Round trips that failed.
    pub errors: u64,
    /// Messages whose key Redis does not have (before the miss policy).
    pub not_found: u64,
    /// Messages dropped by `on_miss = "drop"`.
    pub dropped: u64,
    /// Times the step's breaker opened.
    pub breaker_opened: u64,
}

impl EnrichCounts {
    pub fn add(&mut self, o: &EnrichCounts) {
        self.keys_fetched += o.keys_fetched;
        self.round_trips += o.round_trips;
        self.errors += o.errors;
        self.not_found += o.not_found;
        self.dropped += o.dropped;
        self.breaker_opened += o.breaker_opened;
    }
}

/// One message's lookup result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The value as JSON (in the arena).
    Found(&'a [u8]),
    /// Redis has no such key.
    NotFound,
    /// The message fails: category and reason.
    Failed(ErrorCategory, &'a str),
}

/// One worker's `enrich` step: settings, the shared Redis link, its own cache and
/// breaker. Cloning allocates a fresh cache (one per worker).
pub struct Enrich {
    settings: Arc<EnrichSettings>,
    link: Arc<Link>,
    cache: Option<Cache>,
    /// `"field":`, escaped, written before the value (empty at the top level).
    member: Box<[u8]>,
    policy: RetryPolicy,
    breaker: CircuitBreaker,
    workers: usize,
    rng: SplitMix64,
    counts: EnrichCounts,
}

impl std::fmt::Debug for Enrich {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrich").field("settings", &self.settings).finish()
    }
}

impl Clone for Enrich {
    fn clone(&self) -> Self {
        let mut e = Enrich {
            settings: self.settings.clone(),
            link: self.link.clone(),
            cache: None,
            member: self.member.clone(),
            policy: self.policy.clone(),
            breaker: CircuitBreaker::new(self.breaker_config()).expect("validated breaker"),
            workers: self.workers,
            rng: {
                let mut seed = self.rng;
                SplitMix64::new(seed.next_u64())
            },
            counts: EnrichCounts::default(),
        };
        e.cache = Some(Cache::new(e.settings.cache).expect("settings validated by Enrich::new"));
        e
    }
}

impl Enrich {
    /// Checks the settings and makes the (unconnected) link; allocates no cache.
    pub fn new(settings: EnrichSettings) -> Result<Enrich, String> {
        settings.cache.validate()?;
        let mut member = Vec::new();
        if let Some(f) = &settings.field {
            crate::transform::value::write_json_str(&mut member, f);
            member.push(b':');
        }
        let link = Link::new(settings.redis.clone())?;
        let policy = RetryPolicy::build(&crate::retry::policy::PolicyParams::default())
            .map_err(|e| e.to_string())?;
        Ok(Enrich {
            settings: Arc::new(settings),
            link,
            cache: None,
            member: member.into(),
            policy,
            breaker: CircuitBreaker::new(BreakerConfig::default()).map_err(|e| e.to_string())?,
            workers: 1,
            rng: SplitMix64::new(0x0e1c_4a11),
            counts: EnrichCounts::default(),
        })
    }

    fn breaker_config(&self) -> BreakerConfig {
        self.breaker.config()
    }

    pub fn settings(&self) -> &EnrichSettings {
        &self.settings
    }

    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Sets the retry policy, breaker and worker count the engine runs with (cold,
    /// before the workers' clones are made).
    pub fn set_runtime(&mut self, policy: RetryPolicy, breaker: BreakerConfig, workers: usize) {
        self.policy = policy;
        self.breaker = CircuitBreaker::new(breaker).expect("breaker validated by [retry]");
        self.workers = workers.max(1);
    }

    /// The cache and step counts since the last call, zeroed (once per batch).
    pub fn take_counts(&mut self) -> (CacheCounts, EnrichCounts) {
        let cache = self.cache.as_mut().map(Cache::take_counts).unwrap_or_default();
        (cache, std::mem::take(&mut self.counts))
    }

    /// Counts a message `on_miss = "drop"` dropped.
    #[inline]
    pub fn count_dropped(&mut self) {
        self.counts.dropped += 1;
    }

    fn cache(&mut self) -> &mut Cache {
        // A compiled step is cloned per worker before it runs; a step used directly
        // (tests, `corestream test`) allocates its cache at first use.
        if self.cache.is_none() {
            self.cache = Some(Cache::new(self.settings.cache).expect("validated"));
        }
        self.cache.as_mut().expect("just made")
    }

    /// The longest key this step accepts (prefix included).
    pub fn key_bytes_max(&self) -> usize {
        KEY_BYTES_MAX.min(self.settings.cache.entry_bytes_max.saturating_sub(1)).max(1)
    }

    /// The Redis key of a message: the prefix and the key text, in the arena (hot).
    #[inline]
    pub fn redis_key<'a>(&self, key: &[u8], arena: &'a Bump) -> Result<&'a [u8], &'static str> {
        if key.is_empty() {
            return Err("is empty");
        }
        let prefix = &self.settings.prefix;
        if prefix.len() + key.len() > self.key_bytes_max() {
            return Err("is longer than the longest key (entry_bytes and 1024 bytes)");
        }
        let out = arena.alloc_slice_fill_copy(prefix.len() + key.len(), 0u8);
        out[..prefix.len()].copy_from_slice(prefix);
        out[prefix.len()..].copy_from_slice(key);
        Ok(out)
    }

    /// Looks up the keys of a batch: `keys[i]` is message `i`'s Redis key, `None` for
    /// a message that does not reach the step. Hits come from the cache (no
    /// allocation); the distinct misses go to Redis in one round trip (retried by
    /// the policy) and are cached. `out[i]` is `None` exactly where `keys[i]` is.
    pub fn lookup<'a>(
        &mut self,
        keys: &[Option<&'a [u8]>],
        now_ms: u64,
        arena: &'a Bump,
    ) -> BumpVec<'a, Option<Lookup<'a>>> {
        let mut out = BumpVec::with_capacity_in(keys.len(), arena);
        let mut misses: BumpVec<'a, u32> = BumpVec::new_in(arena);
        {
            let cache = self.cache();
            for (i, key) in keys.iter().enumerate() {
                let Some(key) = key else {
                    out.push(None);
                    continue;
                };
                out.push(match cache.get(key, now_ms) {
                    Some([]) => Some(Lookup::NotFound),
                    Some(value) => Some(Lookup::Found(arena.alloc_slice_copy(value))),
                    None => {
                        misses.push(i as u32);
                        None
                    }
                });
            }
        }
        if misses.is_empty() {
            return self.count_not_found(out);
        }
        self.fetch_misses(keys, &misses, &mut out, now_ms, arena);
        self.count_not_found(out)
    }

    fn count_not_found<'a>(
        &mut self,
        out: BumpVec<'a, Option<Lookup<'a>>>,
    ) -> BumpVec<'a, Option<Lookup<'a>>> {
        self.counts.not_found +=
            out.iter().filter(|l| matches!(l, Some(Lookup::NotFound))).count() as u64;
        out
    }

    /// The cold half of [`Enrich::lookup`]: one round trip for the batch's misses.
    #[cold]
    fn fetch_misses<'a>(
        &mut self,
        keys: &[Option<&'a [u8]>],
        misses: &BumpVec<'a, u32>,
        out: &mut BumpVec<'a, Option<Lookup<'a>>>,
        now_ms: u64,
        arena: &'a Bump,
    ) {
        let key_of = |i: u32| keys[i as usize].expect("a miss has a key");
        let mut sorted: BumpVec<'a, u32> = BumpVec::from_iter_in(misses.iter().copied(), arena);
        sorted.sort_unstable_by(|&a, &b| key_of(a).cmp(key_of(b)));
        let mut distinct: BumpVec<'a, &'a [u8]> = BumpVec::new_in(arena);
        for &i in &sorted {
            if distinct.last() != Some(&key_of(i)) {
                distinct.push(key_of(i));
            }
        }
        self.counts.keys_fetched += distinct.len() as u64;
        let replies = match self.fetch_with_retry(&distinct) {
            Ok(r) => r,
            Err(reason) => {
                let reason: &'a str = arena.alloc_str(&reason);
                for &i in misses {
                    out[i as usize] = Some(Lookup::Failed(ErrorCategory::Network, reason));
                }
                return;
            }
        };
        // One answer per distinct key, applied to every message with that key.
        let mut next = 0usize;
        for (key, reply) in distinct.iter().zip(replies) {
            let answer: Lookup<'a> = match self.to_json(reply) {
                Ok(None) => {
                    self.cache().insert(key, &[], now_ms);
                    Lookup::NotFound
                }
                Ok(Some(json)) => match self.cache().insert(key, &json, now_ms) {
                    Inserted::Refused => Lookup::Failed(
                        ErrorCategory::MessageTooLarge,
                        bumpalo::format!(in arena,
                            "the Redis value of `{}` is {} bytes; with the key it does not fit entry_bytes = {}",
                            String::from_utf8_lossy(key), json.len(), self.settings.cache.entry_bytes_max)
                        .into_bump_str(),
                    ),
                    _ => Lookup::Found(arena.alloc_slice_copy(&json)),
                },
                Err(why) => Lookup::Failed(
                    ErrorCategory::Serialization,
                    bumpalo::format!(in arena, "the Redis value of `{}` {why}",
                        String::from_utf8_lossy(key))
                    .into_bump_str(),
                ),
            };
            while next < sorted.len() && key_of(sorted[next]) == *key {
                out[sorted[next] as usize] = Some(answer);
                next += 1;
            }
        }
    }

    /// One round trip, retried by the policy; the breaker is asked first and told
    /// after. The error text is the message's reason.
    fn fetch_with_retry(&mut self, keys: &[&[u8]]) -> Result<Vec<FetchReply>, String> {
        let started = Instant::now();
        match self.breaker.admit(started) {
            Admission::Allowed | Admission::Probe => {}
            Admission::Rejected { retry_in } => {
                return Err(format!(
                    "Redis at {} is failing: the circuit breaker is open (next probe in {:?})",
                    self.link.settings().url_redacted(),
                    retry_in
                ));
            }
            Admission::ProbeInFlight => {
                return Err("Redis is failing: the circuit breaker is open".into());
            }
        }
        let mut state = RetryState::new(started);
        loop {
            self.counts.round_trips += 1;
            match self.link.fetch(self.settings.value.fetch(), self.workers, keys) {
                Ok(replies) => {
                    self.breaker.on_success();
                    return Ok(replies);
                }
                Err(e) => {
                    self.counts.errors += 1;
                    let was_open = matches!(self.breaker.state(), BreakerState::Open { .. });
                    self.breaker.on_failure(Instant::now());
                    if matches!(self.breaker.state(), BreakerState::Open { .. }) {
                        if !was_open {
                            self.counts.breaker_opened += 1;
                        }
                        return Err(format!(
                            "{e}; the circuit breaker opened after {} attempts",
                            state.attempts()
                        ));
                    }
                    match state.next(&self.policy, Instant::now(), &mut self.rng) {
                        Some(delay) => std::thread::sleep(delay),
                        None => {
                            return Err(format!(
                                "{e}; gave up after {} attempts in {:?} (the [retry] policy)",
                                state.attempts(),
                                started.elapsed()
                            ));
                        }
                    }
                }
            }
        }
    }

    /// A Redis reply as the JSON to merge: `None` for an absent key; the error says
    /// what is wrong with the value (cold: misses only).
    fn to_json(&self, reply: FetchReply) -> Result<Option<Vec<u8>>, String> {
        let top_level = self.settings.field.is_none();
        match (self.settings.value, reply) {
            (_, FetchReply::String(None)) => Ok(None),
            (_, FetchReply::Hash(pairs)) if pairs.is_empty() => Ok(None),
            (ValueKind::Json, FetchReply::String(Some(bytes))) => {
                check_json(&bytes, top_level).map(|t| Some(t.to_vec()))
            }
            (ValueKind::String, FetchReply::String(Some(bytes))) => {
                let text = std::str::from_utf8(&bytes).map_err(|_| "is not UTF-8".to_string())?;
                if top_level {
                    return Err("is a string, which cannot be merged into the top level \
                                (set `field`)"
                        .into());
                }
                let mut out = Vec::with_capacity(text.len() + 2);
                crate::transform::value::write_json_str(&mut out, text);
                Ok(Some(out))
            }
            (ValueKind::Hash, FetchReply::Hash(pairs)) => {
                let mut out = vec![b'{'];
                for (n, (k, v)) in pairs.iter().enumerate() {
                    let (Ok(k), Ok(v)) = (std::str::from_utf8(k), std::str::from_utf8(v)) else {
                        return Err("has a field that is not UTF-8".into());
                    };
                    if n > 0 {
                        out.push(b',');
                    }
                    crate::transform::value::write_json_str(&mut out, k);
                    out.push(b':');
                    crate::transform::value::write_json_str(&mut out, v);
                }
                out.push(b'}');
                Ok(Some(out))
            }
            (kind, _) => Err(format!("is not the {} value the step reads", kind.name())),
        }
    }

    /// The payload with `value` merged in (hot for hits: one copy into the arena).
    #[inline]
    pub fn merge<'a>(
        &self,
        payload: &[u8],
        value: &[u8],
        arena: &'a Bump,
    ) -> Result<&'a [u8], &'static str> {
        merge_into(payload, &self.member, value, arena)
    }
}

/// Checks that `bytes` is one JSON value (an object when `object` is set) and
/// returns it without surrounding whitespace (cold).
pub fn check_json(bytes: &[u8], object: bool) -> Result<&[u8], String> {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(format!("is not valid JSON ({e})"));
    }
    let t = bytes.trim_ascii();
    if object && t.first() != Some(&b'{') {
        return Err("is not a JSON object, which the top level needs (or set `field`)".into());
    }
    Ok(t)
}

/// `payload` (a JSON object) with `member` + `value` appended, or with the members of
/// `value` (an object) appended when `member` is empty. Hot: bounded scans of the
/// ends, one allocation in the arena.
#[inline]
pub fn merge_into<'a>(
    payload: &[u8],
    member: &[u8],
    value: &[u8],
    arena: &'a Bump,
) -> Result<&'a [u8], &'static str> {
    let p = payload.trim_ascii();
    if p.len() < 2 || p[0] != b'{' || p[p.len() - 1] != b'}' {
        return Err("the payload is not a JSON object");
    }
    let body = p[1..p.len() - 1].trim_ascii();
    let add: &[u8] = if member.is_empty() {
        // The value's members, without its braces (checked an object when fetched).
        let v = value.trim_ascii();
        v.get(1..v.len().saturating_sub(1)).unwrap_or(&[]).trim_ascii()
    } else {
        value
    };
    if add.is_empty() {
        return Ok(arena.alloc_slice_copy(payload));
    }
    let comma = usize::from(!body.is_empty());
    let len = 2 + body.len() + comma + member.len() + add.len();
    let out = arena.alloc_slice_fill_copy(len, 0u8);
    out[0] = b'{';
    let mut at = 1;
    for part in [body, if comma == 1 { b"," } else { b"" }, member, add] {
        out[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    out[at] = b'}';
    debug_assert_eq!(at + 1, len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_appends_a_member_or_the_value_members() {
        let arena = Bump::new();
        let m = |p: &str, member: &str, v: &str| {
            merge_into(p.as_bytes(), member.as_bytes(), v.as_bytes(), &arena)
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
        };
        assert_eq!(m(r#"{"a":1}"#, r#""c":"#, r#"{"s":"g"}"#).unwrap(), r#"{"a":1,"c":{"s":"g"}}"#);
        assert_eq!(m(" { } ", r#""c":"#, "2").unwrap(), r#"{"c":2}"#);
        assert_eq!(
            m(r#"{"a":1}"#, "", r#" {"s":"g","t":1} "#).unwrap(),
            r#"{"a":1,"s":"g","t":1}"#
        );
        assert_eq!(m(r#"{"a":1}"#, "", "{ }").unwrap(), r#"{"a":1}"#);
        assert_eq!(m("[1]", "", "{}"), Err("the payload is not a JSON object"));
        // The result is what serde_json reads, the enrichment winning a clash.
        let merged = m(r#"{"a":1,"s":"old"}"#, "", r#"{"s":"new"}"#).unwrap();
        let v: serde_json::Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(v["s"], "new");
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn values_are_checked() {
        assert!(check_json(b"{\"a\":1}", true).is_ok());
        assert!(check_json(b"[1]", true).unwrap_err().contains("not a JSON object"));
        assert_eq!(check_json(b" [1] ", false).unwrap(), b"[1]");
        assert!(check_json(b"{oops", false).unwrap_err().contains("not valid JSON"));
    }
}
