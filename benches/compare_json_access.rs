//! Which JSON reader for per-message field access? Measures reading the six fields the
//! "orders" pipeline needs (id, region, customer, status, amount, currency) from each
//! line of the orders dataset with:
//!
//! - `corestream`: `transform::json::extract`, one validating pass into a slot array;
//! - `serde_struct`: serde_json into a `#[derive(Deserialize)]` struct of `Cow<str>`
//!   (borrowed unless the string has an escape);
//! - `serde_value`: serde_json into a `Value` tree (the baseline);
//! - `sonic_get_many`: sonic-rs `get_many` with a `PointerTree` (one pass, lazy values);
//! - `sonic_iter`: sonic-rs `to_object_iter` (one pass, lazy key/value pairs);
//! - `sonic_get6`: six sonic-rs `get` calls (one scan per field);
//! - `simd_struct`: simd-json into a struct of `&str` (needs a mutable copy of each
//!   line: it unescapes in place), with reused `Buffers`.
//!
//! Every method must produce the same matched count (status == "paid" && amount > 100)
//! and error count before its time is reported. Allocations are counted by a global
//! allocator. Run:
//!
//! ```text
//! python3 benches/data/make_orders.py --count 1000000 --seed 42 > /tmp/orders.ndjson
//! cargo bench --no-default-features --bench compare_json_access -- /tmp/orders.ndjson
//! # instructions per message for one method (difference of two runs):
//! for r in 1 3; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/compare_json_access-* /tmp/orders.ndjson --lines 20000 --repeat $r \
//!     --only corestream; done   # (Ir(3) - Ir(1)) / 40000 = instructions per message
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bumpalo::Bump;
use corestream::transform::json::{FieldTable, PATHS_MAX, Slot, extract};
use serde::Deserialize;
use sonic_rs::JsonValueTrait;

/// Counts every allocation (the figure reported per message).
struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What every method computes per line: matched or not (None = rejected).
type Verdict = Option<bool>;

fn verdict(id: u64, status: &str, amount: f64, strs: [&str; 3]) -> Verdict {
    black_box((id, strs));
    Some(status == "paid" && amount > 100.0)
}

#[derive(Deserialize)]
struct OrderCow<'a> {
    id: u64,
    #[serde(borrow)]
    region: Cow<'a, str>,
    #[serde(borrow)]
    customer: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    amount: f64,
    #[serde(borrow)]
    currency: Cow<'a, str>,
}

#[derive(Deserialize)]
struct OrderStr<'a> {
    id: u64,
    region: &'a str,
    customer: &'a str,
    status: &'a str,
    amount: f64,
    currency: &'a str,
}

struct Corestream {
    table: FieldTable,
    arena: Bump,
}

impl Corestream {
    fn run(&mut self, line: &[u8]) -> Verdict {
        self.arena.reset();
        let mut slots = [Slot::Missing; PATHS_MAX];
        extract(line, &self.table, &mut slots, &self.arena).ok()?;
        let Slot::Int(id) = slots[0] else { return None };
        let id = u64::try_from(id).ok()?;
        let (Slot::Str(region), Slot::Str(customer), Slot::Str(status), Slot::Str(currency)) =
            (slots[1], slots[2], slots[3], slots[5])
        else {
            return None;
        };
        let amount = match slots[4] {
            Slot::Int(i) => i as f64,
            Slot::Float(f) => f,
            _ => return None,
        };
        verdict(id, status, amount, [region, customer, currency])
    }
}

fn serde_struct(line: &[u8]) -> Verdict {
    let o: OrderCow<'_> = serde_json::from_slice(line).ok()?;
    verdict(o.id, &o.status, o.amount, [&o.region, &o.customer, &o.currency])
}

fn serde_value(line: &[u8]) -> Verdict {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let id = v.get("id")?.as_u64()?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str());
    let amount = v.get("amount")?.as_f64()?;
    verdict(id, s("status")?, amount, [s("region")?, s("customer")?, s("currency")?])
}

fn sonic_fields(vals: [Option<&sonic_rs::LazyValue<'_>>; 6]) -> Verdict {
    let [id, region, customer, status, amount, currency] = vals;
    let id = id?.as_u64()?;
    let amount = amount?.as_f64()?;
    verdict(
        id,
        status?.as_str()?,
        amount,
        [region?.as_str()?, customer?.as_str()?, currency?.as_str()?],
    )
}

const KEYS: [&str; 6] = ["id", "region", "customer", "status", "amount", "currency"];

fn sonic_get_many(line: &[u8], tree: &sonic_rs::PointerTree) -> Verdict {
    let vals = sonic_rs::get_many(line, tree).ok()?;
    sonic_fields([
        vals[0].as_ref(),
        vals[1].as_ref(),
        vals[2].as_ref(),
        vals[3].as_ref(),
        vals[4].as_ref(),
        vals[5].as_ref(),
    ])
}

fn sonic_iter(line: &[u8]) -> Verdict {
    let mut vals: [Option<sonic_rs::LazyValue<'_>>; 6] = Default::default();
    for item in sonic_rs::to_object_iter(line) {
        let (k, v) = item.ok()?;
        if let Some(i) = KEYS.iter().position(|key| *key == &*k) {
            vals[i] = Some(v);
        }
    }
    sonic_fields([
        vals[0].as_ref(),
        vals[1].as_ref(),
        vals[2].as_ref(),
        vals[3].as_ref(),
        vals[4].as_ref(),
        vals[5].as_ref(),
    ])
}

fn sonic_get6(line: &[u8]) -> Verdict {
    let mut vals: [Option<sonic_rs::LazyValue<'_>>; 6] = Default::default();
    for (i, k) in KEYS.iter().enumerate() {
        vals[i] = Some(sonic_rs::get(line, [k]).ok()?);
    }
    sonic_fields([
        vals[0].as_ref(),
        vals[1].as_ref(),
        vals[2].as_ref(),
        vals[3].as_ref(),
        vals[4].as_ref(),
        vals[5].as_ref(),
    ])
}

fn simd_struct(line: &[u8], copy: &mut Vec<u8>, buffers: &mut simd_json::Buffers) -> Verdict {
    copy.clear();
    copy.extend_from_slice(line);
    let o: OrderStr<'_> = simd_json::serde::from_slice_with_buffers(copy, buffers).ok()?;
    verdict(o.id, o.status, o.amount, [o.region, o.customer, o.currency])
}

struct Row {
    name: &'static str,
    matched: usize,
    errors: usize,
    ns_per_msg: f64,
    allocs_per_msg: f64,
}

fn measure(
    name: &'static str,
    lines: &[&[u8]],
    repeat: usize,
    f: &mut dyn FnMut(&[u8]) -> Verdict,
) -> Row {
    // Warm up caches and any lazily grown buffers.
    for l in lines.iter().take(1000) {
        black_box(f(l));
    }
    let allocs_before = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    let (mut matched, mut errors) = (0, 0);
    for _ in 0..repeat {
        (matched, errors) = (0, 0);
        for l in lines {
            match f(l) {
                Some(true) => matched += 1,
                Some(false) => {}
                None => errors += 1,
            }
        }
    }
    let elapsed = start.elapsed();
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs_before;
    let n = (lines.len() * repeat).max(1) as f64;
    Row {
        name,
        matched,
        errors,
        ns_per_msg: elapsed.as_nanos() as f64 / n,
        allocs_per_msg: allocs as f64 / n,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut path = "/tmp/orders.ndjson".to_owned();
    let mut limit = usize::MAX;
    let mut only: Option<String> = None;
    // Passes over the lines: instructions per message under callgrind are
    // (Ir(repeat 3) - Ir(repeat 1)) / (2 * lines), free of loading and splitting.
    let mut repeat = 1usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--lines" => limit = it.next().and_then(|v| v.parse().ok()).expect("--lines N"),
            "--only" => only = it.next().cloned(),
            "--repeat" => repeat = it.next().and_then(|v| v.parse().ok()).expect("--repeat N"),
            p => path = p.to_owned(),
        }
    }
    let data = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("cannot read {path}: {e}\ngenerate it: python3 benches/data/make_orders.py --count 1000000 --seed 42 > /tmp/orders.ndjson");
        std::process::exit(2);
    });
    let lines: Vec<&[u8]> =
        data.strip_suffix(b"\n").unwrap_or(&data).split(|&b| b == b'\n').take(limit).collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();

    let mut ours = Corestream {
        table: FieldTable::from_paths(KEYS).unwrap(),
        arena: Bump::with_capacity(4096),
    };
    let mut tree = sonic_rs::PointerTree::new();
    for k in KEYS {
        tree.add_path([k]);
    }
    let mut copy = Vec::with_capacity(4096);
    let mut buffers = simd_json::Buffers::new(4096);

    let mut rows = Vec::new();
    let want = |n: &str| only.as_deref().is_none_or(|o| o == n);
    if want("corestream") {
        rows.push(measure("corestream", &lines, repeat, &mut |l| ours.run(l)));
    }
    if want("serde_struct") {
        rows.push(measure("serde_struct", &lines, repeat, &mut serde_struct));
    }
    if want("serde_value") {
        rows.push(measure("serde_value", &lines, repeat, &mut serde_value));
    }
    if want("sonic_get_many") {
        rows.push(measure("sonic_get_many", &lines, repeat, &mut |l| sonic_get_many(l, &tree)));
    }
    if want("sonic_iter") {
        rows.push(measure("sonic_iter", &lines, repeat, &mut sonic_iter));
    }
    if want("sonic_get6") {
        rows.push(measure("sonic_get6", &lines, repeat, &mut sonic_get6));
    }
    if want("simd_struct") {
        rows.push(measure("simd_struct", &lines, repeat, &mut |l| {
            simd_struct(l, &mut copy, &mut buffers)
        }));
    }
    println!("{} lines, {:.1} MB, file {path}", lines.len(), bytes as f64 / 1e6);
    println!(
        "{:<16} {:>9} {:>7} {:>9} {:>9} {:>10}",
        "method", "matched", "errors", "ns/msg", "MB/s", "allocs/msg"
    );
    for r in &rows {
        println!(
            "{:<16} {:>9} {:>7} {:>9.1} {:>9.0} {:>10.3}",
            r.name,
            r.matched,
            r.errors,
            r.ns_per_msg,
            bytes as f64 / lines.len() as f64 / r.ns_per_msg * 1e3,
            r.allocs_per_msg
        );
    }
    // The answer first: every method must agree with the first one.
    if let Some(first) = rows.first() {
        for r in &rows {
            if (r.matched, r.errors) != (first.matched, first.errors) {
                println!(
                    "DISAGREES: {} gives matched={} errors={}, {} gives matched={} errors={}",
                    r.name, r.matched, r.errors, first.name, first.matched, first.errors
                );
            }
        }
    }
}
