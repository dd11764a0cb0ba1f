use super::*;

fn cache(eviction: Eviction, entries_max: usize, ttl_ms: Option<u64>) -> Cache {
    Cache::new(CacheSettings { entries_max, entry_bytes_max: 32, eviction, ttl_ms }).unwrap()
}

fn order(c: &Cache) -> Vec<String> {
    c.eviction_order().into_iter().map(|k| String::from_utf8(k).unwrap()).collect()
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let mut c = cache(Eviction::Lru, 3, None);
    for k in ["a", "b", "c"] {
        assert_eq!(c.insert(k.as_bytes(), b"v", 0), Inserted::New);
    }
    assert_eq!(c.get(b"a", 1), Some(&b"v"[..]));
    assert_eq!(order(&c), ["b", "c", "a"]);
    assert_eq!(c.insert(b"d", b"v", 2), Inserted::Evicted);
    assert_eq!(c.get(b"b", 3), None, "b was least recently used");
    assert_eq!(order(&c), ["c", "a", "d"]);
    let n = c.counts();
    assert_eq!((n.hits, n.misses, n.insertions, n.evictions, n.expirations), (1, 1, 4, 1, 0));
}

#[test]
fn lfu_evicts_the_least_frequently_used_then_the_oldest() {
    let mut c = cache(Eviction::Lfu, 3, None);
    for k in ["a", "b", "c"] {
        c.insert(k.as_bytes(), b"v", 0);
    }
    // a: 3 hits, b: 1, c: 0.
    for _ in 0..3 {
        c.get(b"a", 1);
    }
    c.get(b"b", 1);
    assert_eq!(order(&c), ["c", "b", "a"]);
    c.insert(b"d", b"v", 2);
    assert!(!c.contains(b"c", 2), "c had no hits");
    // d (freq 1) goes before b (freq 2) although d is newer.
    c.insert(b"e", b"v", 3);
    assert!(!c.contains(b"d", 3));
    assert!(c.contains(b"b", 3) && c.contains(b"a", 3) && c.contains(b"e", 3));
    assert_eq!(c.counts().evictions, 2);
}

#[test]
fn lfu_frequency_is_capped_and_ties_go_by_recency() {
    let mut c = cache(Eviction::Lfu, 2, None);
    c.insert(b"a", b"v", 0);
    c.insert(b"b", b"v", 0);
    for _ in 0..FREQUENCY_MAX * 2 {
        c.get(b"a", 0);
        c.get(b"b", 0);
    }
    c.get(b"a", 0); // both capped: a is now the more recent
    c.insert(b"c", b"v", 0);
    assert!(c.contains(b"a", 0) && !c.contains(b"b", 0));
}

#[test]
fn ttl_evicts_the_first_to_expire_and_hits_do_not_move_it() {
    let mut c = cache(Eviction::Ttl, 3, Some(100));
    c.insert(b"a", b"v", 0);
    c.insert(b"b", b"v", 10);
    c.insert(b"c", b"v", 20);
    c.get(b"a", 30); // a hit does not extend or reorder
    assert_eq!(order(&c), ["a", "b", "c"]);
    assert_eq!(c.insert(b"b", b"w", 40), Inserted::Replaced); // b now expires at 140
    assert_eq!(order(&c), ["a", "c", "b"]);
    assert_eq!(c.insert(b"d", b"v", 50), Inserted::Evicted);
    assert_eq!(order(&c), ["c", "b", "d"]);
    // At 125, c (expires 120) has expired: the insert expires it, no eviction.
    assert_eq!(c.insert(b"e", b"v", 125), Inserted::New);
    assert_eq!(order(&c), ["b", "d", "e"]);
    let n = c.counts();
    assert_eq!((n.evictions, n.expirations), (1, 1));
}

#[test]
fn an_expired_entry_is_a_miss_in_every_policy() {
    for eviction in [Eviction::Lru, Eviction::Lfu, Eviction::Ttl] {
        let mut c = cache(eviction, 4, Some(10));
        c.insert(b"k", b"value", 100);
        assert_eq!(c.get(b"k", 109), Some(&b"value"[..]), "{eviction:?}");
        assert_eq!(c.get(b"k", 110), None, "{eviction:?}: expires at insert + ttl");
        assert!(c.is_empty());
        let n = c.counts();
        assert_eq!((n.hits, n.misses, n.expirations), (1, 1, 1), "{eviction:?}");
    }
}

#[test]
fn a_full_cache_whose_victim_expired_counts_an_expiration() {
    let mut c = cache(Eviction::Lru, 2, Some(10));
    c.insert(b"a", b"v", 0);
    c.insert(b"b", b"v", 5);
    assert_eq!(c.insert(b"c", b"v", 12), Inserted::New);
    let n = c.counts();
    assert_eq!((n.evictions, n.expirations), (0, 1));
}

#[test]
fn too_large_is_refused_and_values_round_trip() {
    let mut c = cache(Eviction::Lru, 2, None);
    assert_eq!(c.insert(&[b'k'; 20], &[b'v'; 13], 0), Inserted::Refused);
    assert_eq!(c.counts().refused, 1);
    assert!(c.is_empty());
    c.insert(b"key", b"a value", 0);
    c.insert(b"key", b"other", 0);
    assert_eq!(c.get(b"key", 0), Some(&b"other"[..]));
    assert_eq!(c.len(), 1);
}

#[test]
fn settings_are_checked() {
    let ok = CacheSettings {
        entries_max: 8,
        entry_bytes_max: 8,
        eviction: Eviction::Ttl,
        ttl_ms: Some(1),
    };
    assert!(ok.validate().is_ok());
    assert!(CacheSettings { entries_max: 0, ..ok }.validate().unwrap_err().contains("capacity"));
    assert!(CacheSettings { ttl_ms: None, ..ok }.validate().unwrap_err().contains("needs a ttl"));
    assert!(CacheSettings { ttl_ms: Some(0), ..ok }.validate().is_err());
    assert!(
        CacheSettings { entries_max: ENTRIES_MAX, entry_bytes_max: 1024, ..ok }.validate().is_err()
    );
}

/// Against a reference model (a `Vec` in recency order) over many random operations:
/// same hits, same evictions, and the index stays consistent through deletions.
#[test]
fn lru_agrees_with_a_reference_model() {
    let mut c = cache(Eviction::Lru, 16, None);
    let mut model: Vec<u32> = Vec::new(); // most recent last
    let mut x: u64 = 0x1234_5678;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = (x % 40) as u32;
        let key = k.to_le_bytes();
        if x & 0x100 == 0 {
            let hit = c.get(&key, 0).is_some();
            let pos = model.iter().position(|&m| m == k);
            assert_eq!(hit, pos.is_some());
            if let Some(p) = pos {
                model.remove(p);
                model.push(k);
            }
        } else if x & 0x200 == 0 {
            c.insert(&key, &key, 0);
            if let Some(p) = model.iter().position(|&m| m == k) {
                model.remove(p);
            } else if model.len() == 16 {
                model.remove(0);
            }
            model.push(k);
        } else {
            let removed = c.remove_key(&key);
            let pos = model.iter().position(|&m| m == k);
            assert_eq!(removed, pos.is_some());
            if let Some(p) = pos {
                model.remove(p);
            }
        }
        assert_eq!(c.len(), model.len());
    }
    let expected: Vec<Vec<u8>> = model.iter().map(|k| k.to_le_bytes().to_vec()).collect();
    assert_eq!(c.eviction_order(), expected);
}
