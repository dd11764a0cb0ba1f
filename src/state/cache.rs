//! A fixed-capacity key/value cache with `lru`, `lfu` or `ttl` eviction and a TTL
//! per entry, allocated once and never again.
//!
//! One cache belongs to one worker (keys route to workers, so per-worker shards need
//! no lock). [`Cache::new`] allocates everything (cold): `entries_max` entry headers,
//! `entries_max × entry_bytes_max` bytes of key+value storage (one fixed slot per
//! entry, memcached's single slab class), and an open-addressing index of
//! `u32` entry ids with at least twice as many slots as entries. After that
//! [`Cache::get`] and [`Cache::insert`] (hot, per message) never allocate, never lock
//! and run bounded loops only: a linear probe (at most the index length, in practice
//! a few slots at load ≤ 1/2), and for `lfu` a scan of at most [`FREQUENCY_MAX`] lists.
//!
//! A key+value longer than `entry_bytes_max` is refused (counted in `refused`), never
//! truncated. Time is passed in by the caller as milliseconds (`now_ms`, read once per
//! batch from a [`super::Clock`]), so tests drive it without sleeping.
//!
//! Eviction when the cache is full and a new key arrives:
//! - `lru`: the least recently used entry (a hit or an insert makes it most recent);
//! - `lfu`: the least frequently used (hits counted up to [`FREQUENCY_MAX`]), the
//!   least recently used among equals;
//! - `ttl`: the entry that expires first. Every entry of one cache gets the same TTL
//!   at insertion, so that is the one inserted (or replaced) longest ago; hits do not
//!   move it. Inserts also expire up to [`EXPIRE_PER_INSERT`] entries whose time has
//!   come, so `expirations` are counted without a background sweep.
//!
//! In every policy an entry past its expiry is a miss on `get` (counted as an
//! expiration and removed), and a victim that has already expired counts as an
//! expiration, not an eviction.

/// Most hits an `lfu` entry counts (and so lists an eviction may scan). Beyond this
/// hot entries are equals, ordered by recency. Memory: 2 × 4 bytes per list.
pub const FREQUENCY_MAX: usize = 64;
/// Expired entries an insert removes from the oldest end of a `ttl` cache at most:
/// enough to keep pace (one insert can only add one entry), bounded work per insert.
pub const EXPIRE_PER_INSERT: usize = 2;
/// Largest `entries_max`: ids are `u32` and [`NIL`] is reserved; the index has
/// `2 × entries_max` slots rounded up to a power of two.
pub const ENTRIES_MAX: usize = 1 << 28;
/// Largest `entry_bytes_max` (key + value of one entry; stored in a `u32`, bounded far
/// below that because the storage is `entries × this`).
pub const ENTRY_BYTES_MAX: usize = 1 << 20;
/// Largest total storage of one cache (`entries_max × entry_bytes_max`): 4 GiB per
/// worker. The pipeline's memory check counts it against the machine.
pub const CACHE_BYTES_MAX: u64 = 4 << 30;

/// No entry: ends of lists, empty index slots.
const NIL: u32 = u32::MAX;

const _: () = assert!(ENTRIES_MAX < NIL as usize);
const _: () = assert!(FREQUENCY_MAX >= 2 && FREQUENCY_MAX <= u8::MAX as usize);
const _: () = assert!(ENTRY_BYTES_MAX <= u32::MAX as usize);

/// Which entry goes when a full cache takes a new key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    Lru,
    Lfu,
    Ttl,
}

impl Eviction {
    /// The names the configuration accepts, in order.
    pub const NAMES: [&'static str; 3] = ["lru", "lfu", "ttl"];

    pub fn from_name(name: &str) -> Option<Eviction> {
        match name {
            "lru" => Some(Eviction::Lru),
            "lfu" => Some(Eviction::Lfu),
            "ttl" => Some(Eviction::Ttl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Eviction::Lru => "lru",
            Eviction::Lfu => "lfu",
            Eviction::Ttl => "ttl",
        }
    }
}

/// How a cache is sized and evicts. Memory: `entries_max × (entry_bytes_max + 40)`
/// plus 8 bytes per index slot (`≤ 4 × entries_max` slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    /// Entries held at most, 1..=[`ENTRIES_MAX`].
    pub entries_max: usize,
    /// Key + value bytes of one entry at most, 1..=[`ENTRY_BYTES_MAX`].
    pub entry_bytes_max: usize,
    pub eviction: Eviction,
    /// Time to live of an entry from its insertion, ms; `None`: entries never expire.
    pub ttl_ms: Option<u64>,
}

impl CacheSettings {
    /// Bytes [`Cache::new`] allocates for these settings.
    pub fn bytes(&self) -> u64 {
        let index = (self.entries_max * 2).next_power_of_two() as u64 * 4;
        self.entries_max as u64 * (self.entry_bytes_max as u64 + size_of::<Entry>() as u64) + index
    }

    /// Checks the bounds; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.entries_max == 0 || self.entries_max > ENTRIES_MAX {
            return Err(format!("capacity must be 1..={ENTRIES_MAX} entries"));
        }
        if self.entry_bytes_max == 0 || self.entry_bytes_max > ENTRY_BYTES_MAX {
            return Err(format!("entry_bytes must be 1..={ENTRY_BYTES_MAX} bytes"));
        }
        if self.entries_max as u64 * self.entry_bytes_max as u64 > CACHE_BYTES_MAX {
            return Err(format!(
                "capacity × entry_bytes = {} bytes, more than the {CACHE_BYTES_MAX} a cache may use",
                self.entries_max as u64 * self.entry_bytes_max as u64
            ));
        }
        if self.ttl_ms == Some(0) {
            return Err("ttl must be longer than 0".into());
        }
        if self.eviction == Eviction::Ttl && self.ttl_ms.is_none() {
            return Err("eviction `ttl` needs a ttl".into());
        }
        Ok(())
    }
}

/// What a cache did, counted by its owner (one worker) and published per batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
    /// New entries and replaced values.
    pub insertions: u64,
    /// Live entries removed to make room (not yet expired).
    pub evictions: u64,
    /// Entries removed because their TTL had passed.
    pub expirations: u64,
    /// Inserts refused because key + value exceed `entry_bytes_max`.
    pub refused: u64,
}

/// What [`Cache::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new entry; the cache had room (or made it by expiring an entry).
    New,
    /// A new entry that took the place of a live one (an eviction).
    Evicted,
    /// The key was present: its value and expiry were replaced.
    Replaced,
    /// Key + value longer than `entry_bytes_max`: nothing stored.
    Refused,
}

/// One entry's header. Invariant: an entry id is either on the free list (`hash`
/// and the lengths meaningless) or in exactly one policy list and one index slot.
#[derive(Clone, Copy, Debug)]
struct Entry {
    hash: u64,
    /// Engine-clock ms after which the entry is expired; `u64::MAX`: never.
    expires_ms: u64,
    prev: u32,
    next: u32,
    /// Key + value ≤ `entry_bytes_max`.
    value_len: u32,
    key_len: u16,
    /// `lfu`: hits + 1, 1..=FREQUENCY_MAX (and the list it is on, minus one); else 1.
    frequency: u8,
}

const EMPTY_ENTRY: Entry =
    Entry { hash: 0, expires_ms: 0, prev: NIL, next: NIL, value_len: 0, key_len: 0, frequency: 0 };

/// An intrusive doubly linked list of entry ids: `head` most recent, `tail` oldest.
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY_LIST: List = List { head: NIL, tail: NIL };

/// The cache. See the module documentation.
pub struct Cache {
    settings: CacheSettings,
    entries: Box<[Entry]>,
    /// `entries_max × entry_bytes_max`: entry `i` owns bytes `i*eb..(i+1)*eb`, the
    /// key first, the value after it.
    bytes: Box<[u8]>,
    /// Entry ids by hash, linear probing, `NIL` empty; length a power of two ≥ 2 ×
    /// entries, so the load stays ≤ 1/2 and every probe ends at an empty slot.
    index: Box<[u32]>,
    /// `64 - log2(index.len())`: the index slot is the hash's top bits (Fibonacci
    /// hashing), so keys routed to one worker by their low bits still spread.
    index_shift: u32,
    /// Free entry ids, linked through `next`.
    free: u32,
    len: usize,
    /// `lru`/`ttl`: one list; `lfu`: list `f - 1` holds the entries of frequency `f`.
    lists: Box<[List]>,
    /// `lfu`: no list below this one is non-empty (a lower bound, exact after a scan).
    lfu_floor: usize,
    counts: CacheCounts,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("settings", self.settings())
            .field("len", &self.len())
            .finish()
    }
}

impl Cache {
    /// Allocates the whole cache (cold, at engine start).
    pub fn new(settings: CacheSettings) -> Result<Cache, String> {
        settings.validate()?;
        let n = settings.entries_max;
        let index_len = (n * 2).next_power_of_two().max(2);
        let mut entries = vec![EMPTY_ENTRY; n].into_boxed_slice();
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = if i + 1 < n { (i + 1) as u32 } else { NIL };
        }
        let lists = if settings.eviction == Eviction::Lfu { FREQUENCY_MAX } else { 1 };
        Ok(Cache {
            settings,
            entries,
            bytes: vec![0u8; n * settings.entry_bytes_max].into_boxed_slice(),
            index: vec![NIL; index_len].into_boxed_slice(),
            index_shift: 64 - index_len.trailing_zeros(),
            free: 0,
            len: 0,
            lists: vec![EMPTY_LIST; lists].into_boxed_slice(),
            lfu_floor: 0,
            counts: CacheCounts::default(),
        })
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Entries held now (live or expired but not yet removed).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Counts since the last [`Cache::take_counts`].
    pub fn counts(&self) -> CacheCounts {
        self.counts
    }

    /// Returns the counts and zeroes them (the owner publishes once per batch).
    #[inline]
    pub fn take_counts(&mut self) -> CacheCounts {
        std::mem::take(&mut self.counts)
    }

    /// The value of `key` if present and not expired at `now_ms` (a hit makes it
    /// most recent / more frequent). Hot path: no allocation.
    #[inline]
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<&[u8]> {
        let hash = hash(key);
        let Some((_, id)) = self.find(hash, key) else {
            self.counts.misses += 1;
            return None;
        };
        if self.entries[id as usize].expires_ms <= now_ms {
            self.remove(id);
            self.counts.expirations += 1;
            self.counts.misses += 1;
            return None;
        }
        self.counts.hits += 1;
        self.touch(id);
        Some(self.value(id))
    }

    /// True when `key` is present and not expired, without counting or touching.
    pub fn contains(&self, key: &[u8], now_ms: u64) -> bool {
        self.find(hash(key), key)
            .is_some_and(|(_, id)| self.entries[id as usize].expires_ms > now_ms)
    }

    /// Stores `value` under `key` with the cache's TTL from `now_ms`, replacing a
    /// present value, evicting by policy when full. Hot path: no allocation.
    #[inline]
    pub fn insert(&mut self, key: &[u8], value: &[u8], now_ms: u64) -> Inserted {
        let eb = self.settings.entry_bytes_max;
        if key.len() + value.len() > eb || key.len() > u16::MAX as usize {
            self.counts.refused += 1;
            return Inserted::Refused;
        }
        let expires_ms = self.settings.ttl_ms.map_or(u64::MAX, |ttl| now_ms.saturating_add(ttl));
        let hash = hash(key);
        if let Some((_, id)) = self.find(hash, key) {
            self.write(id, key, value, expires_ms);
            if self.settings.eviction == Eviction::Ttl {
                // Its expiry moved: it is now the newest of the FIFO.
                self.unlink(id);
                self.push_front(0, id);
            } else {
                self.touch(id);
            }
            self.counts.insertions += 1;
            return Inserted::Replaced;
        }
        if self.settings.eviction == Eviction::Ttl {
            self.expire_oldest(now_ms);
        }
        let mut outcome = Inserted::New;
        if self.free == NIL {
            let victim = self.victim();
            if self.entries[victim as usize].expires_ms <= now_ms {
                self.counts.expirations += 1;
            } else {
                self.counts.evictions += 1;
                outcome = Inserted::Evicted;
            }
            self.remove(victim);
        }
        let id = self.free;
        debug_assert!(id != NIL, "a removal freed an entry");
        self.free = self.entries[id as usize].next;
        self.entries[id as usize].hash = hash;
        self.entries[id as usize].frequency = 1;
        self.write(id, key, value, expires_ms);
        self.push_front(0, id);
        if self.settings.eviction == Eviction::Lfu {
            self.lfu_floor = 0;
        }
        let mut slot = self.home(hash);
        while self.index[slot] != NIL {
            slot = (slot + 1) & (self.index.len() - 1);
        }
        self.index[slot] = id;
        self.len += 1;
        self.counts.insertions += 1;
        outcome
    }

    /// Removes `key` if present; true if it was.
    pub fn remove_key(&mut self, key: &[u8]) -> bool {
        match self.find(hash(key), key) {
            Some((_, id)) => {
                self.remove(id);
                true
            }
            None => false,
        }
    }

    /// Keys in eviction order, first to go first (cold; tests and debugging).
    pub fn eviction_order(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len);
        for list in self.lists.iter() {
            let mut id = list.tail;
            while id != NIL {
                out.push(self.key(id).to_vec());
                id = self.entries[id as usize].prev;
            }
        }
        out
    }

    // ---- internals (hot unless marked) ----

    #[inline]
    fn home(&self, hash: u64) -> usize {
        (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.index_shift) as usize
    }

    #[inline]
    fn key(&self, id: u32) -> &[u8] {
        let e = &self.entries[id as usize];
        let start = id as usize * self.settings.entry_bytes_max;
        &self.bytes[start..start + e.key_len as usize]
    }

    #[inline]
    fn value(&self, id: u32) -> &[u8] {
        let e = &self.entries[id as usize];
        let start = id as usize * self.settings.entry_bytes_max + e.key_len as usize;
        &self.bytes[start..start + e.value_len as usize]
    }

    #[inline]
    fn write(&mut self, id: u32, key: &[u8], value: &[u8], expires_ms: u64) {
        debug_assert!(key.len() + value.len() <= self.settings.entry_bytes_max);
        let start = id as usize * self.settings.entry_bytes_max;
        self.bytes[start..start + key.len()].copy_from_slice(key);
        self.bytes[start + key.len()..start + key.len() + value.len()].copy_from_slice(value);
        let e = &mut self.entries[id as usize];
        e.key_len = key.len() as u16;
        e.value_len = value.len() as u32;
        e.expires_ms = expires_ms;
    }

    /// The index slot and id of `key`. The probe ends at an empty slot: the index is
    /// at most half full.
    #[inline]
    fn find(&self, hash: u64, key: &[u8]) -> Option<(usize, u32)> {
        let mask = self.index.len() - 1;
        let mut slot = self.home(hash);
        for _ in 0..self.index.len() {
            let id = self.index[slot];
            if id == NIL {
                return None;
            }
            if self.entries[id as usize].hash == hash && self.key(id) == key {
                return Some((slot, id));
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    #[inline]
    fn list_of(&self, id: u32) -> usize {
        match self.settings.eviction {
            Eviction::Lfu => self.entries[id as usize].frequency as usize - 1,
            _ => 0,
        }
    }

    /// A hit: most recent (`lru`), one more use (`lfu`), nothing (`ttl`).
    #[inline]
    fn touch(&mut self, id: u32) {
        match self.settings.eviction {
            Eviction::Ttl => {}
            Eviction::Lru => {
                self.unlink(id);
                self.push_front(0, id);
            }
            Eviction::Lfu => {
                let f = self.entries[id as usize].frequency as usize;
                self.unlink(id);
                let f = (f + 1).min(FREQUENCY_MAX);
                self.entries[id as usize].frequency = f as u8;
                self.push_front(f - 1, id);
            }
        }
    }

    #[inline]
    fn push_front(&mut self, list: usize, id: u32) {
        let head = self.lists[list].head;
        let e = &mut self.entries[id as usize];
        e.prev = NIL;
        e.next = head;
        if head == NIL {
            self.lists[list].tail = id;
        } else {
            self.entries[head as usize].prev = id;
        }
        self.lists[list].head = id;
    }

    #[inline]
    fn unlink(&mut self, id: u32) {
        let list = self.list_of(id);
        let Entry { prev, next, .. } = self.entries[id as usize];
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
    }

    /// The entry eviction takes: the tail of the lowest non-empty list. Called only
    /// when the cache is full, so some list is non-empty.
    #[inline]
    fn victim(&mut self) -> u32 {
        for list in self.lfu_floor..self.lists.len() {
            let tail = self.lists[list].tail;
            if tail != NIL {
                self.lfu_floor = list;
                return tail;
            }
        }
        unreachable!("victim() of an empty cache")
    }

    /// `ttl`: removes up to [`EXPIRE_PER_INSERT`] expired entries from the old end.
    #[inline]
    fn expire_oldest(&mut self, now_ms: u64) {
        for _ in 0..EXPIRE_PER_INSERT {
            let tail = self.lists[0].tail;
            if tail == NIL || self.entries[tail as usize].expires_ms > now_ms {
                return;
            }
            self.remove(tail);
            self.counts.expirations += 1;
        }
    }

    /// Unlinks `id`, clears its index slot (backward-shift deletion keeps every probe
    /// chain unbroken without tombstones) and frees it.
    fn remove(&mut self, id: u32) {
        self.unlink(id);
        let mask = self.index.len() - 1;
        let mut hole = self.home(self.entries[id as usize].hash);
        while self.index[hole] != id {
            hole = (hole + 1) & mask;
        }
        let mut slot = (hole + 1) & mask;
        loop {
            let other = self.index[slot];
            if other == NIL {
                break;
            }
            let home = self.home(self.entries[other as usize].hash);
            // `other` may move into the hole if its home is not in (hole, slot].
            if (slot.wrapping_sub(home) & mask) >= (slot.wrapping_sub(hole) & mask) {
                self.index[hole] = other;
                hole = slot;
            }
            slot = (slot + 1) & mask;
        }
        self.index[hole] = NIL;
        let e = &mut self.entries[id as usize];
        e.next = self.free;
        e.prev = NIL;
        self.free = id;
        self.len -= 1;
    }
}

/// The cache's key hash: FxHash-style multiply-rotate over 8-byte words (a few
/// instructions per word; not DoS-resistant, keys come from the pipeline's own
/// input). A different constant from the routing hash, and the index takes the top
/// bits, so the keys of one worker do not share index bits.
#[inline]
pub fn hash(key: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut h = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        h = (h.rotate_left(26) ^ word).wrapping_mul(K);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h.rotate_left(26) ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests;
