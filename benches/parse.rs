//! Instruction counts of the duration and size parsers, against a `HashMap` lookup of
//! the same strings (what the background retry document's parse cache does, without
//! even its lock, and once with it). The claim: parsing a duration as people write it
//! (one or two components) costs less than the lookup, so no cache is needed; a
//! four-component string costs about 1.3x the lookup (figures in benches/README.md).
//! The map uses std's randomly keyed SipHash, so the lookup figures vary by a few
//! instructions from run to run.
//!
//! Hard limits (Callgrind Ir, and DHAT total blocks = 0 for parsing) are in the code so
//! a regression fails on a fresh clone; measured figures are in benches/README.md.
//! Run: `cargo bench --no-default-features --bench parse`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use corestream::parse::duration::parse_duration;
use corestream::parse::size::parse_size;
use gungraun::{
    Callgrind, Dhat, DhatMetric, EventKind, LibraryBenchmarkConfig, library_benchmark,
    library_benchmark_group, main,
};

/// Inputs shared by the parser and the lookup benchmarks.
const DURATIONS: [&str; 5] = ["30s", "1500ms", "1m30s", "2.5s", "1h30m15s500ms"];

/// Callgrind cap on instructions, plus DHAT: no heap block at all.
fn no_alloc_and_at_most(instructions: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, instructions)]))
        .tool(Dhat::default().hard_limits([(DhatMetric::TotalBlocks, 0)]));
    config
}

/// Callgrind cap only (the lookup's map is built in setup; its drop is outside).
fn at_most(instructions: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, instructions)]));
    config
}

/// Checks the answer before anything is measured (benches assert correctness first).
fn checked_duration(input: &'static str) -> &'static str {
    let expected = match input {
        "30s" => Duration::from_secs(30),
        "1500ms" => Duration::from_millis(1500),
        "1m30s" => Duration::from_secs(90),
        "2.5s" => Duration::from_millis(2500),
        "1h30m15s500ms" => Duration::from_millis(5_415_500),
        other => panic!("no expected value for {other:?}"),
    };
    assert_eq!(parse_duration(input), Ok(expected), "{input}");
    input
}

fn checked_size(input: &'static str) -> &'static str {
    let expected = match input {
        "4KiB" => 4096,
        "64MiB" => 64 << 20,
        "1GB" => 1_000_000_000,
        "1048576" => 1 << 20,
        other => panic!("no expected value for {other:?}"),
    };
    assert_eq!(parse_size(input), Ok(expected), "{input}");
    input
}

/// A map pre-filled like the background document's cache: the benchmark strings plus
/// other common durations, with the default (SipHash) hasher.
fn filled_map(key: &'static str) -> (HashMap<String, Duration>, &'static str) {
    let mut map = HashMap::with_capacity(64);
    for text in DURATIONS.iter().chain(&["1s", "5s", "10s", "1m", "5m", "1h", "100ms", "2m"]) {
        map.insert(text.to_string(), parse_duration(text).expect("valid"));
    }
    assert_eq!(map.get(key).copied(), parse_duration(key).ok());
    (map, key)
}

#[library_benchmark]
#[bench::s_30(args = ("30s"), setup = checked_duration, config = no_alloc_and_at_most(220))]
#[bench::ms_1500(args = ("1500ms"), setup = checked_duration, config = no_alloc_and_at_most(250))]
#[bench::m1_s30(args = ("1m30s"), setup = checked_duration, config = no_alloc_and_at_most(330))]
#[bench::s_2_5(args = ("2.5s"), setup = checked_duration, config = no_alloc_and_at_most(250))]
#[bench::h1_m30_s15_ms500(args = ("1h30m15s500ms"), setup = checked_duration, config = no_alloc_and_at_most(600))]
fn duration_parse(input: &str) -> Duration {
    black_box(parse_duration(black_box(input)).unwrap_or_default())
}

#[library_benchmark]
#[bench::s_30(args = ("30s"), setup = filled_map, config = at_most(420))]
#[bench::ms_1500(args = ("1500ms"), setup = filled_map, config = at_most(420))]
#[bench::m1_s30(args = ("1m30s"), setup = filled_map, config = at_most(420))]
#[bench::s_2_5(args = ("2.5s"), setup = filled_map, config = at_most(420))]
#[bench::h1_m30_s15_ms500(args = ("1h30m15s500ms"), setup = filled_map, config = at_most(450))]
fn duration_hashmap_lookup(
    (map, key): (HashMap<String, Duration>, &str),
) -> (Option<Duration>, HashMap<String, Duration>) {
    let found = black_box(black_box(&map).get(black_box(key)).copied());
    // The map is returned so that its drop is not measured.
    (found, map)
}

fn filled_locked_map(
    key: &'static str,
) -> (std::sync::RwLock<HashMap<String, Duration>>, &'static str) {
    let (map, key) = filled_map(key);
    (std::sync::RwLock::new(map), key)
}

// The background document's cache exactly: a read lock, then the lookup.
#[library_benchmark]
#[bench::s_30(args = ("30s"), setup = filled_locked_map, config = at_most(500))]
#[bench::h1_m30_s15_ms500(args = ("1h30m15s500ms"), setup = filled_locked_map, config = at_most(550))]
fn duration_rwlock_hashmap_lookup(
    (cache, key): (std::sync::RwLock<HashMap<String, Duration>>, &str),
) -> (Option<Duration>, std::sync::RwLock<HashMap<String, Duration>>) {
    let found = {
        let map = black_box(&cache).read().unwrap_or_else(|poisoned| poisoned.into_inner());
        black_box(map.get(black_box(key)).copied())
    };
    (found, cache)
}

#[library_benchmark]
#[bench::kib_4(args = ("4KiB"), setup = checked_size, config = no_alloc_and_at_most(120))]
#[bench::mib_64(args = ("64MiB"), setup = checked_size, config = no_alloc_and_at_most(140))]
#[bench::gb_1(args = ("1GB"), setup = checked_size, config = no_alloc_and_at_most(120))]
#[bench::bytes(args = ("1048576"), setup = checked_size, config = no_alloc_and_at_most(190))]
fn size_parse(input: &str) -> u64 {
    black_box(parse_size(black_box(input)).unwrap_or_default())
}

library_benchmark_group!(
    name = parse,
    benchmarks =
        [duration_parse, duration_hashmap_lookup, duration_rwlock_hashmap_lookup, size_parse]
);

main!(library_benchmark_groups = parse);
