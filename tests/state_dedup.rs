//! The `dedup` step through the compiled chain: exactly the repeats within the window
//! are dropped (against an independent computation, time from a hand-driven clock),
//! counts reach the worker's counters, bad keys fail with their reason, and every
//! configuration mistake points at its line with a hint.

use std::collections::HashMap;
use std::path::Path;

use bumpalo::Bump;
use corestream::config::PipelineConfig;
use corestream::config::build::{BuildError, processors};
use corestream::message::Message;
use corestream::metrics::Counter;
use corestream::metrics::counters::LocalCounts;
use corestream::processor::{Emit, Processor};
use corestream::state::{Clock, ManualClock};
use corestream::transform::pipeline::{Pipeline, compile_toml};

fn dedup_chain(extra: &str) -> Pipeline {
    compile_toml(&format!("[[steps]]\ntype = \"dedup\"\nkey = \"id\"\nwindow = \"1s\"\n{extra}\n"))
        .unwrap()
}

/// Runs one batch; returns the indices emitted and the failures' reasons.
fn batch(chain: &mut Pipeline, payloads: &[Vec<u8>]) -> (Vec<u32>, Vec<String>) {
    let arena = Bump::new();
    let input: Vec<Message<'_>> =
        payloads.iter().map(|p| Message { payload: p, ..Default::default() }).collect();
    let mut outputs = bumpalo::collections::Vec::new_in(&arena);
    let mut failures = bumpalo::collections::Vec::new_in(&arena);
    let mut emit = Emit::new(&arena, &mut outputs, &mut failures);
    chain.process(&input, &mut emit);
    (
        emit.outputs().iter().map(|o| o.input).collect(),
        emit.failures().iter().map(|f| f.reason.to_string()).collect(),
    )
}

#[test]
fn drops_exactly_the_repeats_within_the_window() {
    let clock = ManualClock::new(0);
    let mut compiled = dedup_chain("");
    compiled.set_clock(Clock::Manual(clock.clone()));
    let mut chain = compiled.clone(); // as a worker gets it: its own empty window
    // Reference: key -> start of its current window.
    let mut windows: HashMap<u64, u64> = HashMap::new();
    let (mut kept, mut dropped) = (0u64, 0u64);
    let mut x: u64 = 0x9e37_79b9;
    for _ in 0..400 {
        // Time moves 0..300 ms per batch: windows of 1 s span a few batches.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        clock.advance_ms(x % 300);
        let now = clock.now_ms();
        let mut payloads = Vec::new();
        let mut expected = Vec::new();
        for i in 0..64u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = x % 500;
            payloads.push(format!(r#"{{"id":{id},"n":{i}}}"#).into_bytes());
            let repeat = windows.get(&id).is_some_and(|&start| now < start + 1000);
            if !repeat {
                windows.insert(id, now);
                expected.push(i);
            }
        }
        let (emitted, failures) = batch(&mut chain, &payloads);
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(emitted, expected, "at {now} ms");
        kept += expected.len() as u64;
        dropped += 64 - expected.len() as u64;
    }
    assert!(kept > 10_000 && dropped > 5_000, "the test exercises both: {kept} / {dropped}");
    let mut local = LocalCounts::default();
    chain.publish_counts(&mut local);
    let get = |c: Counter| local.slots[c as usize];
    assert_eq!(get(Counter::FilteredDedup), dropped);
    assert_eq!(get(Counter::StateCacheHits), dropped);
    assert_eq!(get(Counter::StateCacheMisses), kept);
    assert_eq!(get(Counter::StateCacheInsertions), kept);
    assert_eq!(get(Counter::StateCacheEvictions), 0, "500 keys fit the default capacity");
    assert!(get(Counter::StateCacheExpirations) > 0);
    let mut again = LocalCounts::default();
    chain.publish_counts(&mut again);
    assert_eq!(again, LocalCounts::default(), "counts are published once");
}

#[test]
fn overflow_is_counted_as_evictions_and_lets_repeats_through() {
    let clock = ManualClock::new(0);
    let mut chain = dedup_chain("capacity = 4");
    chain.set_clock(Clock::Manual(clock));
    let ids: Vec<Vec<u8>> =
        [1, 2, 3, 4, 5, 1, 5].iter().map(|i| format!(r#"{{"id":{i}}}"#).into_bytes()).collect();
    let (emitted, _) = batch(&mut chain, &ids);
    // 5 evicts 1 (the oldest window): the repeat of 1 passes, the repeat of 5 does not.
    assert_eq!(emitted, [0, 1, 2, 3, 4, 5]);
    let mut local = LocalCounts::default();
    chain.publish_counts(&mut local);
    assert_eq!(local.slots[Counter::StateCacheEvictions as usize], 2);
    assert_eq!(local.slots[Counter::FilteredDedup as usize], 1);
}

#[test]
fn keys_of_every_type_and_bad_keys_fail_with_their_reason() {
    let mut chain = dedup_chain("entry_bytes = 8");
    let payloads: Vec<Vec<u8>> = [
        r#"{"id":"abc"}"#,
        r#"{"id":"abc"}"#,
        r#"{"id":12}"#,
        r#"{"id":12.0}"#,
        r#"{"id":true}"#,
        r#"{"id":[1,2]}"#,
        r#"{"id":[1,2]}"#,
        r#"{"other":1}"#,
        r#"{"id":"a key longer than eight bytes"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let (emitted, failures) = batch(&mut chain, &payloads);
    assert_eq!(emitted, [0, 2, 3, 4, 5], "12 and 12.0 print differently: two keys");
    assert_eq!(
        failures,
        [
            "step 1 (dedup): key `id` is null (a missing field?)",
            "step 1 (dedup): key `id` is longer than entry_bytes",
        ]
    );
}

const HEAD: &str = "[source]\ntype = \"generator\"\n\n[sink]\ntype = \"null\"\n\n";

fn rendered(steps: &str) -> String {
    let text = format!("{HEAD}{steps}");
    let config = PipelineConfig::parse(Path::new("p.toml"), &text, |_| None)
        .unwrap_or_else(|e| panic!("the head and TOML are valid, got:\n{e}"));
    match processors(&config) {
        Ok(_) => panic!("expected a compile error for:\n{steps}"),
        Err(BuildError::Config(e)) => e.to_string(),
        Err(other) => panic!("expected a config error, got {other}"),
    }
}

#[test]
fn configuration_mistakes_point_at_the_value_with_a_hint() {
    let step = "[[processor]]\ntype = \"dedup\"\nkey = \"id\"\n";
    let got = rendered(&format!("{step}window = \"10 minutes\"\n"));
    assert!(got.starts_with("error: invalid window: "), "{got}");
    assert!(got.contains("--> p.toml:10:10\n"), "{got}");
    assert!(got.ends_with("= hint: a duration such as \"30s\", \"10m\" or \"1h\""), "{got}");
    let got = rendered(&format!("{step}window = \"1m\"\neviction = \"lfru\"\n"));
    assert!(got.starts_with("error: unknown eviction `lfru`\n  --> p.toml:11:12\n"), "{got}");
    assert!(got.contains("= hint: did you mean `"), "{got}");
    let got = rendered(&format!("{step}window = \"1m\"\ncapacity = 0\n"));
    assert!(got.starts_with("error: `capacity` must be 1..="), "{got}");
    assert!(got.contains("--> p.toml:11:12\n"), "{got}");
    let got =
        rendered(&format!("{step}window = \"1m\"\ncapacity = 100000000\nentry_bytes = 1000\n"));
    assert!(got.contains("more than the"), "{got}");
    assert!(
        got.ends_with("= hint: memory per worker is capacity × (entry_bytes + 40) bytes"),
        "{got}"
    );
    let got = rendered("[[processor]]\ntype = \"dedup\"\nkey = 'nope(id)'\nwindow = \"1m\"\n");
    assert!(got.starts_with("error: unknown function `nope`\n  --> p.toml:9:8\n"), "{got}");
    let got = rendered(&format!("{step}window = \"1m\"\nexpr = 'true'\n"));
    assert!(got.starts_with("error: `expr` does not belong in a `dedup` step\n"), "{got}");
    let got = rendered("[[processor]]\ntype = \"dedupe\"\nkey = \"id\"\n");
    assert!(got.ends_with("= hint: did you mean `dedup`?"), "{got}");
}
