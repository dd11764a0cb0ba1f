//! Shared by the `compare_*` programs: a counting allocator, loading the dataset, an
//! order-insensitive checksum of the outputs (so programs that emit in different orders
//! can be compared), and the report line.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts allocations (and reallocations) process-wide.
pub struct Counting;
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

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

pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Command line: `[FILE] [--lines N]`; `--bench` (added by cargo) is ignored.
pub struct Args {
    pub path: String,
    pub lines: usize,
}

pub fn args() -> Args {
    let mut a = Args { path: "/tmp/orders.ndjson".into(), lines: usize::MAX };
    let argv: Vec<String> = std::env::args().skip(1).filter(|x| x != "--bench").collect();
    let mut it = argv.iter();
    while let Some(x) = it.next() {
        match x.as_str() {
            "--lines" => a.lines = it.next().and_then(|v| v.parse().ok()).expect("--lines N"),
            p => a.path = p.to_owned(),
        }
    }
    a
}

/// Reads the whole dataset (first `lines` lines), or explains how to make it.
pub fn load(args: &Args) -> Vec<u8> {
    let data = std::fs::read(&args.path).unwrap_or_else(|e| {
        eprintln!(
            "cannot read {}: {e}\nmake it: python3 benches/data/make_orders.py --count 1000000 --seed 42 > /tmp/orders.ndjson",
            args.path
        );
        std::process::exit(2);
    });
    if args.lines == usize::MAX {
        return data;
    }
    let end = memchr::memchr_iter(b'\n', &data)
        .nth(args.lines.saturating_sub(1))
        .map_or(data.len(), |i| i + 1);
    data[..end].to_vec()
}

/// FNV-1a of one output (topic, a newline, payload).
pub fn output_hash(topic: &[u8], payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in topic.iter().chain(b"\n").chain(payload) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Totals every program reports; `checksum` is the wrapping sum of output hashes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub lines: u64,
    pub input_bytes: u64,
    pub matched: u64,
    pub errors: u64,
    pub output_bytes: u64,
    pub checksum: u64,
}

impl Totals {
    pub fn add(&mut self, other: &Totals) {
        self.lines += other.lines;
        self.input_bytes += other.input_bytes;
        self.matched += other.matched;
        self.errors += other.errors;
        self.output_bytes += other.output_bytes;
        self.checksum = self.checksum.wrapping_add(other.checksum);
    }
}

pub fn report(name: &str, t: &Totals, elapsed: Duration, allocations: u64) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{name}: {} lines, matched={} errors={} out_bytes={} checksum={:016x}",
        t.lines, t.matched, t.errors, t.output_bytes, t.checksum
    );
    println!(
        "{name}: {:.3} s, {:.0} msgs/s, {:.1} MB/s of input, {:.1} ns/msg, {:.3} allocations/msg",
        secs,
        t.lines as f64 / secs,
        t.input_bytes as f64 / secs / 1e6,
        secs * 1e9 / t.lines.max(1) as f64,
        allocations as f64 / t.lines.max(1) as f64
    );
}
