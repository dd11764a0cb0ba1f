//! The compiled set of paths a pipeline reads: a flat trie of object keys with a
//! perfect hash per object level, built once at compile time and looked up per key
//! during the scan.

use super::{FIELD_NAME_BYTES_MAX, NONE, PATH_SEGMENTS_MAX, PATHS_MAX, PathError, Slot};

/// One key under a trie node.
#[derive(Clone, Debug)]
pub(super) struct Child {
    /// Key bytes: `keys[key_start..key_start + key_len]`.
    key_start: u32,
    key_len: u16,
    /// The first 8 key bytes, little-endian, zero-padded: most keys compare in one
    /// word; only longer keys compare the rest.
    prefix: u64,
    /// Slot filled when this key's value is seen (`NONE` if the path is only a prefix).
    pub(super) slot: u16,
    /// Trie node for the object under this key (`NONE` if no path goes deeper).
    pub(super) node: u16,
}

/// One object level of the trie: its children are `children[first..first + len]`,
/// and the slots of every path below it are `descendants[desc_first..+desc_len]`.
#[derive(Clone, Debug)]
struct Node {
    first: u16,
    len: u16,
    desc_first: u16,
    desc_len: u16,
    /// Multiplier of this node's perfect hash (0: no perfect hash found, scan the
    /// children linearly).
    multiplier: u64,
    /// `buckets[hash]` = child index + 1, or 0 for an empty bucket.
    buckets: [u8; HASH_BUCKETS],
}

impl Default for Node {
    fn default() -> Self {
        Node {
            first: 0,
            len: 0,
            desc_first: 0,
            desc_len: 0,
            multiplier: 0,
            buckets: [0; HASH_BUCKETS],
        }
    }
}

/// Buckets of the per-object perfect hash over key words. 64 one-byte entries per
/// trie node; with at most a few dozen keys per object a collision-free multiplier is
/// found within [`HASH_TRIES_MAX`] candidates.
const HASH_BUCKETS: usize = 64;
/// Multipliers tried per node at compile time before falling back to a linear scan.
const HASH_TRIES_MAX: u64 = 4096;
const _: () = assert!(HASH_BUCKETS.is_power_of_two() && HASH_BUCKETS <= 256);

/// The bucket of a key word: multiplicative hashing, top 6 bits.
#[inline(always)]
fn bucket(word: u64, len: usize, multiplier: u64) -> usize {
    ((word ^ len as u64).wrapping_mul(multiplier) >> (64 - HASH_BUCKETS.trailing_zeros())) as usize
}

/// Finds a multiplier that sends each of `words` to its own bucket.
fn perfect_hash(words: &[(u64, usize)]) -> Option<(u64, [u8; HASH_BUCKETS])> {
    if words.len() >= HASH_BUCKETS {
        return None;
    }
    // Odd multipliers from a fixed sequence (splitmix64), so builds are reproducible.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..HASH_TRIES_MAX {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let multiplier = (z ^ (z >> 31)) | 1;
        let mut buckets = [0u8; HASH_BUCKETS];
        let mut ok = true;
        for (k, &(word, len)) in words.iter().enumerate() {
            let b = bucket(word, len, multiplier);
            if buckets[b] != 0 {
                ok = false;
                break;
            }
            buckets[b] = k as u8 + 1;
        }
        if ok {
            return Some((multiplier, buckets));
        }
    }
    None
}

/// The compiled set of paths a pipeline reads. Slot `i` holds path `i`.
#[derive(Clone, Debug, Default)]
pub struct FieldTable {
    paths: Vec<String>,
    nodes: Vec<Node>,
    children: Vec<Child>,
    keys: Vec<u8>,
    descendants: Vec<u16>,
}

impl FieldTable {
    /// An empty table (no field is read; [`extract`] still validates the payload).
    pub fn new() -> Self {
        FieldTable::default()
    }

    /// Builds a table from dotted paths; duplicates share a slot.
    pub fn from_paths<'p, I: IntoIterator<Item = &'p str>>(paths: I) -> Result<Self, PathError> {
        let mut table = FieldTable::new();
        for path in paths {
            table.add(path)?;
        }
        Ok(table)
    }

    /// Adds a dotted path (or finds it) and returns its slot index.
    pub fn add(&mut self, path: &str) -> Result<u16, PathError> {
        if let Some(i) = self.slot_of(path) {
            return Ok(i);
        }
        let segments = path.split('.');
        if segments.clone().any(str::is_empty) {
            return Err(PathError::EmptySegment);
        }
        if segments.clone().count() > PATH_SEGMENTS_MAX {
            return Err(PathError::TooDeep);
        }
        if segments.clone().any(|s| s.len() > FIELD_NAME_BYTES_MAX) {
            return Err(PathError::KeyTooLong);
        }
        if self.paths.len() >= PATHS_MAX {
            return Err(PathError::TooManyPaths);
        }
        self.paths.push(path.to_owned());
        self.rebuild();
        Ok((self.paths.len() - 1) as u16)
    }

    /// The slot of `path`, if it was added.
    pub fn slot_of(&self, path: &str) -> Option<u16> {
        self.paths.iter().position(|p| p == path).map(|i| i as u16)
    }

    /// Number of slots [`extract`] fills.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when no path is tracked.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The paths, in slot order.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// Rebuilds the flat trie from `paths` (compile time only).
    fn rebuild(&mut self) {
        // A nested tree first, flattened breadth-first so each node's children are
        // contiguous.
        #[derive(Default)]
        struct Tmp {
            kids: Vec<(String, Option<u16>, Tmp)>,
        }
        let mut root = Tmp::default();
        for (slot, path) in self.paths.iter().enumerate() {
            let mut at = &mut root;
            let segments: Vec<&str> = path.split('.').collect();
            for (depth, seg) in segments.iter().enumerate() {
                let pos = match at.kids.iter().position(|(k, _, _)| k == seg) {
                    Some(p) => p,
                    None => {
                        at.kids.push(((*seg).to_owned(), None, Tmp::default()));
                        at.kids.len() - 1
                    }
                };
                if depth + 1 == segments.len() {
                    at.kids[pos].1 = Some(slot as u16);
                }
                at = &mut at.kids[pos].2;
            }
        }
        fn collect(t: &Tmp, out: &mut Vec<u16>) {
            for (_, slot, sub) in &t.kids {
                if let Some(s) = slot {
                    out.push(*s);
                }
                collect(sub, out);
            }
        }
        self.nodes.clear();
        self.children.clear();
        self.keys.clear();
        self.descendants.clear();
        let mut queue: std::collections::VecDeque<&Tmp> = std::collections::VecDeque::new();
        queue.push_back(&root);
        self.nodes.push(Node::default());
        let mut node_index = 0usize;
        while let Some(t) = queue.pop_front() {
            let first = self.children.len() as u16;
            let mut desc = Vec::new();
            collect(t, &mut desc);
            let desc_first = self.descendants.len() as u16;
            self.descendants.extend_from_slice(&desc);
            for (key, slot, sub) in &t.kids {
                let node = if sub.kids.is_empty() {
                    NONE
                } else {
                    self.nodes.push(Node::default());
                    queue.push_back(sub);
                    (self.nodes.len() - 1) as u16
                };
                self.children.push(Child {
                    key_start: self.keys.len() as u32,
                    key_len: key.len() as u16,
                    prefix: key_word(key.as_bytes(), 0, key.len()),
                    slot: slot.unwrap_or(NONE),
                    node,
                });
                self.keys.extend_from_slice(key.as_bytes());
            }
            let words: Vec<(u64, usize)> = t
                .kids
                .iter()
                .map(|(k, _, _)| (key_word(k.as_bytes(), 0, k.len()), k.len()))
                .collect();
            let (multiplier, buckets) = perfect_hash(&words).unwrap_or((0, [0; HASH_BUCKETS]));
            self.nodes[node_index] = Node {
                first,
                len: t.kids.len() as u16,
                desc_first,
                desc_len: desc.len() as u16,
                multiplier,
                buckets,
            };
            node_index += 1;
        }
    }

    /// The child of `node` whose key is `bytes[start..start + len]`.
    #[inline(always)]
    pub(super) fn lookup(
        &self,
        node: u16,
        bytes: &[u8],
        start: usize,
        len: usize,
    ) -> Option<&Child> {
        let n = &self.nodes[node as usize];
        let word = key_word(bytes, start, len);
        let matches = |c: &&Child| {
            c.prefix == word
                && c.key_len as usize == len
                && (len <= KEY_WORD_BYTES
                    || self.keys[c.key_start as usize..c.key_start as usize + len]
                        == bytes[start..start + len])
        };
        if n.multiplier != 0 {
            let b = n.buckets[bucket(word, len, n.multiplier)];
            if b == 0 {
                return None;
            }
            return self.children.get(n.first as usize + b as usize - 1).filter(matches);
        }
        let kids = &self.children[n.first as usize..(n.first + n.len) as usize];
        kids.iter().find(matches)
    }

    /// Resets every slot below `node` (a later duplicate key replaces the object).
    #[inline]
    pub(super) fn clear_below<'a>(&self, node: u16, slots: &mut [Slot<'a>]) {
        let n = &self.nodes[node as usize];
        for &s in &self.descendants[n.desc_first as usize..(n.desc_first + n.desc_len) as usize] {
            slots[s as usize] = Slot::Missing;
        }
    }
}

/// Bytes of a key compared as one word.
const KEY_WORD_BYTES: usize = 8;

/// The first (up to) 8 bytes of `bytes[start..start + len]` as a little-endian word,
/// zero-padded. One unaligned load when 8 bytes are in bounds (the usual case: a key
/// is followed by at least `":0}`).
#[inline(always)]
fn key_word(bytes: &[u8], start: usize, len: usize) -> u64 {
    let take = len.min(KEY_WORD_BYTES);
    let mut word = [0u8; KEY_WORD_BYTES];
    match bytes.get(start..start + KEY_WORD_BYTES) {
        Some(chunk) => word.copy_from_slice(chunk),
        None => word[..take].copy_from_slice(&bytes[start..start + take]),
    }
    let w = u64::from_le_bytes(word);
    if take == KEY_WORD_BYTES { w } else { w & ((1u64 << (8 * take)) - 1) }
}
