//! The `dedup` step: drops a message whose key was seen within a window.
//!
//! ```toml
//! [[processor]]
//! type = "dedup"
//! key = "id"              # an expression over the message (a field, `key`, a header, ...)
//! window = "10m"          # a repeat within this time of the first sighting is dropped
//! capacity = 100000       # keys remembered per worker (default 100 000)
//! entry_bytes = 64        # longest key, bytes (default 64)
//! eviction = "ttl"        # when more keys arrive within a window than fit: ttl | lru | lfu
//! ```
//!
//! Semantics: the first message with a key passes and starts the key's window; every
//! message with that key until `window` later is dropped (counted as `filtered` and
//! as `filtered_dedup`); the first one after it passes and starts a new window. The
//! window is not extended by repeats, so a key passes at most once per window. The
//! time is the worker's clock, read once per batch (processing time, not the
//! message's timestamp).
//!
//! Bounds and overflow: each worker remembers at most `capacity` keys (memory:
//! `capacity × (entry_bytes + 40)` bytes plus the index, allocated at start). When a
//! window holds more distinct keys than that, a new key takes the place of one still
//! in its window (with the default `ttl` eviction, the one seen longest ago, whose
//! window ends soonest): that key's next repeat passes. Overflow therefore lets
//! duplicates through rather than dropping unique messages or blocking; each such
//! early removal is counted in `state_cache_evictions` (a non-zero count means the
//! capacity is below rate × window). A key longer than `entry_bytes`, or a key
//! expression that yields null (a missing field), fails the message with its reason
//! (dead-lettered), never passes it silently.
//!
//! Scope: state is per worker. A repeat is caught when it reaches the same worker,
//! which holds when the dedup key is a function of the routing key (the message key
//! or the Kafka partition), or with one worker. State lives in memory: after a
//! restart the window starts empty (replayed messages pass again).

use super::cache::{Cache, CacheCounts, CacheSettings, Eviction, Inserted};

/// Default keys remembered per worker.
pub const CAPACITY_DEFAULT: usize = 100_000;
/// Default longest key, bytes.
pub const ENTRY_BYTES_DEFAULT: usize = 64;
/// Default eviction: the key whose window ends first.
pub const EVICTION_DEFAULT: Eviction = Eviction::Ttl;

/// A `dedup` step's settings: the cache's, with `ttl_ms` the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupSettings {
    pub cache: CacheSettings,
}

impl DedupSettings {
    pub fn new(window_ms: u64) -> Self {
        DedupSettings {
            cache: CacheSettings {
                entries_max: CAPACITY_DEFAULT,
                entry_bytes_max: ENTRY_BYTES_DEFAULT,
                eviction: EVICTION_DEFAULT,
                ttl_ms: Some(window_ms),
            },
        }
    }
}

/// Why a key could not be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupError {
    /// Longer than `entry_bytes`.
    KeyTooLong,
}

/// One worker's dedup window. Cloning allocates a fresh, empty cache (that is how
/// each worker gets its own at engine start); the compiled original allocates on
/// first use.
#[derive(Debug)]
pub struct Dedup {
    settings: DedupSettings,
    cache: Option<Cache>,
    dropped: u64,
}

impl Clone for Dedup {
    fn clone(&self) -> Self {
        Dedup::allocated(self.settings)
    }
}

impl Dedup {
    /// Checks the settings without allocating the cache (compile time, `validate`).
    pub fn new(settings: DedupSettings) -> Result<Dedup, String> {
        settings.cache.validate()?;
        Ok(Dedup { settings, cache: None, dropped: 0 })
    }

    fn allocated(settings: DedupSettings) -> Dedup {
        let cache = Cache::new(settings.cache).expect("settings validated by Dedup::new");
        Dedup { settings, cache: Some(cache), dropped: 0 }
    }

    pub fn settings(&self) -> &DedupSettings {
        &self.settings
    }

    /// True when `key` was seen within the window before `now_ms` (drop the message);
    /// otherwise records it and returns false. Hot path: no allocation once the
    /// cache exists.
    #[inline]
    pub fn is_repeat(&mut self, key: &[u8], now_ms: u64) -> Result<bool, DedupError> {
        let cache = match &mut self.cache {
            Some(c) => c,
            None => self.cache.insert(first_use(self.settings)),
        };
        if cache.get(key, now_ms).is_some() {
            self.dropped += 1;
            return Ok(true);
        }
        match cache.insert(key, &[], now_ms) {
            Inserted::Refused => Err(DedupError::KeyTooLong),
            _ => Ok(false),
        }
    }

    /// Cache counts and repeats dropped since the last call, zeroed.
    #[inline]
    pub fn take_counts(&mut self) -> (CacheCounts, u64) {
        let cache = self.cache.as_mut().map(Cache::take_counts).unwrap_or_default();
        (cache, std::mem::take(&mut self.dropped))
    }
}

#[cold]
fn first_use(settings: DedupSettings) -> Cache {
    Cache::new(settings.cache).expect("settings validated by Dedup::new")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_within_the_window_is_dropped_once_per_window() {
        let mut d = Dedup::new(DedupSettings::new(100)).unwrap();
        assert_eq!(d.is_repeat(b"a", 0), Ok(false));
        assert_eq!(d.is_repeat(b"a", 50), Ok(true));
        assert_eq!(d.is_repeat(b"b", 60), Ok(false));
        assert_eq!(d.is_repeat(b"a", 99), Ok(true), "repeats do not extend the window");
        assert_eq!(d.is_repeat(b"a", 100), Ok(false), "window over: passes, new window");
        assert_eq!(d.is_repeat(b"a", 150), Ok(true));
        let (cache, dropped) = d.take_counts();
        assert_eq!(dropped, 3);
        assert_eq!(cache.expirations, 1);
        assert_eq!(d.take_counts().1, 0);
    }

    #[test]
    fn overflow_lets_the_oldest_key_through_and_counts_it() {
        let mut settings = DedupSettings::new(1_000);
        settings.cache.entries_max = 2;
        let mut d = Dedup::new(settings).unwrap();
        d.is_repeat(b"a", 0).unwrap();
        d.is_repeat(b"b", 1).unwrap();
        d.is_repeat(b"c", 2).unwrap(); // evicts a, still in its window
        assert_eq!(d.is_repeat(b"a", 3), Ok(false), "a was evicted early: its repeat passes");
        assert_eq!(d.is_repeat(b"c", 4), Ok(true));
        assert_eq!(d.take_counts().0.evictions, 2);
    }

    #[test]
    fn a_key_too_long_is_an_error_and_clones_start_empty() {
        let mut d = Dedup::new(DedupSettings::new(10)).unwrap();
        assert_eq!(d.is_repeat(&[b'k'; ENTRY_BYTES_DEFAULT + 1], 0), Err(DedupError::KeyTooLong));
        d.is_repeat(b"x", 0).unwrap();
        let mut clone = d.clone();
        assert_eq!(clone.is_repeat(b"x", 1), Ok(false), "a clone has its own empty window");
        assert_eq!(d.is_repeat(b"x", 1), Ok(true));
    }
}
