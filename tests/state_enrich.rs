//! The `enrich` step against a real Redis (started per test on a free port): the
//! output equals an independent computation, misses of a batch are one round trip,
//! miss and failure policies, value kinds, Redis lost and back, start-up and `check`.

mod redis_util;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bumpalo::Bump;
use corestream::message::Message;
use corestream::metrics::Counter;
use corestream::metrics::counters::LocalCounts;
use corestream::processor::{Emit, Processor};
use corestream::retry::ErrorCategory;
use corestream::retry::breaker::BreakerConfig;
use corestream::retry::policy::{PolicyParams, RetryPolicy};
use corestream::transform::pipeline::{Pipeline, compile_toml};
use redis_util::RedisServer;
use serde_json::Value;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corestream-enrich-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chain of `steps` (TOML `[[steps]]` tables) connected with a short retry policy.
fn chain(steps: &str, attempts: u32, breaker_failures: u32) -> Pipeline {
    let mut p = compile_toml(steps).unwrap_or_else(|e| panic!("{e}\n{steps}"));
    let policy = RetryPolicy::build(&PolicyParams {
        delay_initial: Duration::from_millis(5),
        delay_max: Duration::from_millis(20),
        attempts_max: attempts,
        ..PolicyParams::default()
    })
    .unwrap();
    let breaker =
        BreakerConfig { failures_to_open: breaker_failures, cool_down: Duration::from_millis(200) };
    p.connect_state(1, &policy, breaker).unwrap();
    p.clone()
}

/// What one batch gave: outputs (input index, payload), failures (index, category,
/// reason), and the counts the chain published.
struct Batch {
    outputs: Vec<(u32, String)>,
    failures: Vec<(u32, ErrorCategory, String)>,
    counts: LocalCounts,
}

fn run(chain: &mut Pipeline, lines: &[String]) -> Batch {
    let arena = Bump::new();
    let input: Vec<Message<'_>> =
        lines.iter().map(|l| Message { payload: l.as_bytes(), ..Default::default() }).collect();
    let mut outputs = bumpalo::collections::Vec::new_in(&arena);
    let mut failures = bumpalo::collections::Vec::new_in(&arena);
    let mut emit = Emit::new(&arena, &mut outputs, &mut failures);
    chain.process(&input, &mut emit);
    let mut counts = LocalCounts::default();
    chain.publish_counts(&mut counts);
    Batch {
        outputs: emit
            .outputs()
            .iter()
            .map(|o| (o.input, String::from_utf8(o.payload.to_vec()).unwrap()))
            .collect(),
        failures: emit
            .failures()
            .iter()
            .map(|f| (f.input, f.category, f.reason.to_string()))
            .collect(),
        counts,
    }
}

fn get(counts: &LocalCounts, c: Counter) -> u64 {
    counts.slots[c as usize]
}

fn segment(i: u64) -> &'static str {
    ["gold", "silver", "bronze"][(i % 3) as usize]
}

/// Customers 0..150 have a value, except every tenth; messages name customers
/// 0..200 skewed towards the small numbers, as the reference dataset does.
fn customers(redis: &RedisServer) -> Vec<(String, String)> {
    let pairs: Vec<(String, String)> = (0..150u64)
        .filter(|i| i % 10 != 0)
        .map(|i| {
            (
                format!("customer:c{i}"),
                format!(r#"{{"segment":"{}","tier":{}}}"#, segment(i), i % 4),
            )
        })
        .collect();
    redis.set_all(&pairs);
    pairs
}

fn orders(n: u64) -> Vec<String> {
    (0..n)
        .map(|k| {
            let r = k * 7919 % 1000;
            format!(r#"{{"id":{k},"customer":"c{}","amount":{k}}}"#, r * r / 5000)
        })
        .collect()
}

const ENRICH: &str = r#"
[[steps]]
type = "enrich"
key = "customer"
field = "c"
[steps.redis]
url = "URL"
prefix = "customer:"
[[steps]]
type = "filter"
expr = 'c == null || c.tier != 2'
"#;

#[test]
fn enrichment_equals_an_independent_computation_with_one_round_trip_per_batch() {
    let redis = RedisServer::start("equals");
    let values: std::collections::HashMap<String, Value> = customers(&redis)
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_str(&v).unwrap()))
        .collect();
    let mut chain = chain(&ENRICH.replace("URL", &redis.url()), 3, 5);
    let lines = orders(512);
    // The independent computation: serde_json, a map of what Redis holds.
    let mut expected: Vec<(u32, Value)> = Vec::new();
    let mut distinct = std::collections::HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let key = format!("customer:{}", v["customer"].as_str().unwrap());
        distinct.insert(key.clone());
        match values.get(&key) {
            Some(found) if found["tier"] == 2 => continue,
            Some(found) => v["c"] = found.clone(),
            None => {}
        }
        expected.push((i as u32, v));
    }
    for pass in 0..2 {
        let batch = run(&mut chain, &lines);
        assert!(batch.failures.is_empty(), "{:?}", batch.failures);
        let got: Vec<(u32, Value)> =
            batch.outputs.iter().map(|(i, p)| (*i, serde_json::from_str(p).unwrap())).collect();
        assert_eq!(got.len(), expected.len(), "pass {pass}");
        assert_eq!(got, expected, "pass {pass}");
        let c = &batch.counts;
        if pass == 0 {
            assert_eq!(get(c, Counter::EnrichRoundTrips), 1, "one round trip for the batch");
            assert_eq!(get(c, Counter::EnrichKeysFetched), distinct.len() as u64);
        } else {
            // Values and absences are cached: the second batch asks Redis nothing.
            assert_eq!(get(c, Counter::EnrichRoundTrips), 0);
            assert_eq!(get(c, Counter::StateCacheHits), 512);
        }
        let not_found = lines
            .iter()
            .filter(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                !values.contains_key(&format!("customer:{}", v["customer"].as_str().unwrap()))
            })
            .count();
        assert!(not_found > 0);
        assert_eq!(get(c, Counter::EnrichNotFound), not_found as u64);
    }
    let pools = corestream::state::redis::pools();
    let pool = pools.iter().find(|p| p.url == redis.url()).expect("the pool is listed");
    assert_eq!(pool.round_trips, 1);
    assert!(pool.created >= 1 && pool.failed == 0, "{pool:?}");
}

#[test]
fn miss_policies_pass_drop_dead_letter_and_default() {
    let redis = RedisServer::start("miss");
    redis.set_all(&[("k:a".into(), r#"{"s":"A"}"#.into())]);
    let lines = vec![r#"{"id":"a"}"#.to_string(), r#"{"id":"b"}"#.to_string()];
    let step = |policy: &str| {
        format!(
            "[[steps]]\ntype = \"enrich\"\nkey = \"id\"\n{policy}\n[steps.redis]\nurl = \"{}\"\nprefix = \"k:\"\n",
            redis.url()
        )
    };
    let mut pass = chain(&step("on_miss = \"pass\""), 1, 5);
    let b = run(&mut pass, &lines);
    assert_eq!(b.outputs, vec![(0, r#"{"id":"a","s":"A"}"#.into()), (1, r#"{"id":"b"}"#.into())]);
    let mut drop = chain(&step("on_miss = \"drop\""), 1, 5);
    let b = run(&mut drop, &lines);
    assert_eq!(b.outputs, vec![(0, r#"{"id":"a","s":"A"}"#.into())]);
    assert!(b.failures.is_empty());
    assert_eq!(get(&b.counts, Counter::FilteredEnrich), 1);
    let mut dead = chain(&step("on_miss = \"dead_letter\""), 1, 5);
    let b = run(&mut dead, &lines);
    assert_eq!(b.outputs.len(), 1);
    assert_eq!(b.failures.len(), 1);
    assert_eq!(b.failures[0].0, 1);
    assert!(b.failures[0].2.contains("Redis has no value for `k:b`"), "{:?}", b.failures);
    let mut default = chain(&step("default = '{\"s\": \"?\"}'"), 1, 5);
    let b = run(&mut default, &lines);
    assert_eq!(b.outputs[1], (1, r#"{"id":"b","s": "?"}"#.into()), "the default as written");
}

#[test]
fn hash_and_string_values_and_bad_values_fail_with_their_reason() {
    let redis = RedisServer::start("kinds");
    redis.hset("h:1", &[("segment", "gold"), ("note", "a \"quoted\" one")]);
    redis.set_all(&[
        ("s:1".into(), "plain text".into()),
        ("j:1".into(), "{not json".into()),
        ("j:2".into(), format!(r#"{{"big":"{}"}}"#, "x".repeat(400))),
        ("j:3".into(), "[1,2]".into()),
    ]);
    let step = |kind: &str, prefix: &str, field: &str| {
        format!(
            "[[steps]]\ntype = \"enrich\"\nkey = \"id\"\n{field}\n[steps.redis]\nurl = \"{}\"\nprefix = \"{prefix}\"\nvalue = \"{kind}\"\n",
            redis.url()
        )
    };
    let one = vec![r#"{"id":1}"#.to_string()];
    let mut hash = chain(&step("hash", "h:", "field = \"h\""), 1, 5);
    let b = run(&mut hash, &one);
    let v: Value = serde_json::from_str(&b.outputs[0].1).unwrap();
    assert_eq!(v["h"]["segment"], "gold");
    assert_eq!(v["h"]["note"], "a \"quoted\" one");
    let mut string = chain(&step("string", "s:", "field = \"s\""), 1, 5);
    let b = run(&mut string, &one);
    assert_eq!(b.outputs[0].1, r#"{"id":1,"s":"plain text"}"#);
    // Bad values: each message fails with its reason; processing goes on.
    let mut json = chain(&step("json", "j:", ""), 1, 5);
    let huge = format!(r#""{}""#, "k".repeat(2000));
    let lines: Vec<String> = ["1", "2", "3", "null", "\"\"", huge.as_str()]
        .iter()
        .map(|id| format!(r#"{{"id":{id}}}"#))
        .chain([r#"{"id":"x"}"#.to_string()])
        .collect();
    let b = run(&mut json, &lines);
    assert_eq!(b.outputs, vec![(6, r#"{"id":"x"}"#.to_string())], "a missing key passes");
    let reasons: Vec<(u32, ErrorCategory, &str)> =
        b.failures.iter().map(|(i, c, r)| (*i, *c, r.as_str())).collect();
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert!(reasons[0].2.contains("`j:1` is not valid JSON"), "{reasons:?}");
    assert_eq!(reasons[1].1, ErrorCategory::MessageTooLarge);
    assert!(reasons[1].2.contains("does not fit entry_bytes = 256"), "{reasons:?}");
    assert!(reasons[2].2.contains("is not a JSON object"), "{reasons:?}");
    assert!(reasons[3].2.contains("key `id` is null"), "{reasons:?}");
    assert!(reasons[4].2.contains("key `id` is empty"), "{reasons:?}");
    assert!(reasons[5].2.contains("key `id` is longer than the longest key"), "{reasons:?}");
    assert!(reasons.iter().all(|r| r.2.starts_with("step 1 (enrich)")), "{reasons:?}");
}

#[test]
fn redis_lost_fails_misses_as_network_serves_hits_and_recovers_after_the_cool_down() {
    let mut redis = RedisServer::start("lost");
    redis.set_all(&[("k:a".into(), r#"{"s":"A"}"#.into()), ("k:b".into(), r#"{"s":"B"}"#.into())]);
    let step = format!(
        "[[steps]]\ntype = \"enrich\"\nkey = \"id\"\n[steps.redis]\nurl = \"{}\"\nprefix = \"k:\"\nconnect_timeout = \"200ms\"\n",
        redis.url()
    );
    let mut chain = chain(&step, 2, 2);
    let a = vec![r#"{"id":"a"}"#.to_string()];
    let ab = vec![r#"{"id":"a"}"#.to_string(), r#"{"id":"b"}"#.to_string()];
    assert_eq!(run(&mut chain, &a).outputs.len(), 1, "a is cached");
    redis.kill();
    let b = run(&mut chain, &ab);
    assert_eq!(b.outputs, vec![(0, r#"{"id":"a","s":"A"}"#.into())], "the hit is served");
    assert_eq!(b.failures.len(), 1);
    let (index, category, reason) = &b.failures[0];
    assert_eq!((*index, *category), (1, ErrorCategory::Network));
    assert!(reason.contains("step 1 (enrich): ") && reason.contains("Redis"), "{reason}");
    assert_eq!(get(&b.counts, Counter::EnrichErrors), 2, "two attempts by the policy");
    assert_eq!(get(&b.counts, Counter::EnrichBreakerOpened), 1, "two failures open it");
    // Open: refused without a round trip.
    let b = run(&mut chain, &ab);
    assert!(b.failures[0].2.contains("circuit breaker is open"), "{:?}", b.failures);
    assert_eq!(get(&b.counts, Counter::EnrichRoundTrips), 0);
    redis.restart();
    redis.set_all(&[("k:b".into(), r#"{"s":"B"}"#.into())]);
    std::thread::sleep(Duration::from_millis(300));
    let b = run(&mut chain, &ab);
    assert!(b.failures.is_empty(), "recovered: {:?}", b.failures);
    assert_eq!(b.outputs[1], (1, r#"{"id":"b","s":"B"}"#.into()));
}

fn corestream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corestream"))
}

fn pipeline(dir: &Path, source: &str, sink: &str, redis_url: &str, extra: &str) -> PathBuf {
    let path = dir.join("p.toml");
    std::fs::write(
        &path,
        format!(
            r#"[engine]
workers = 2
batch_records = 64
[source]
{source}
[sink]
{sink}
[dead_letter]
type = "file"
path = "dead.jsonl"
[retry]
initial = "10ms"
max = "50ms"
max_attempts = 3
{extra}
[[processor]]
type = "enrich"
key = "customer"
field = "c"
capacity = 16
[processor.redis]
url = "{redis_url}"
prefix = "customer:"
connect_timeout = "200ms"
timeout = "500ms"
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn unreachable_redis_at_start_is_a_clear_error_and_changes_nothing() {
    let dir = temp_dir("unreachable");
    std::fs::write(dir.join("in.jsonl"), "{\"customer\":\"c1\"}\n").unwrap();
    std::fs::write(dir.join("out.jsonl"), "keep me\n").unwrap();
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}");
    let config = pipeline(
        &dir,
        "type = \"file\"\npath = \"in.jsonl\"",
        "type = \"file\"\npath = \"out.jsonl\"",
        &url,
        "",
    );
    let out = corestream().args(["run", "--observe", "off"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("step 1 (enrich): cannot connect to Redis at {url}")),
        "{stderr}"
    );
    assert!(stderr.contains("startup = \"wait\""), "the hint names the other choice: {stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("out.jsonl")).unwrap(), "keep me\n");
    assert!(!dir.join("dead.jsonl").exists());
    // `validate` is offline: valid. `check` connects: exit 3.
    let out = corestream().arg("validate").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = corestream().arg("check").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not reachable"));
    // With a server there: check PINGs it.
    let redis = RedisServer::start("check");
    let config = pipeline(&dir, "type = \"stdin\"", "type = \"null\"", &redis.url(), "");
    let out = corestream().arg("check").arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("PING answered in"), "{stdout}");
}

#[test]
fn startup_wait_waits_by_the_retry_policy_until_redis_comes() {
    let dir = temp_dir("wait");
    std::fs::write(dir.join("in.jsonl"), "{\"customer\":\"c1\"}\n").unwrap();
    let mut redis = RedisServer::start("wait");
    redis.kill();
    let config = pipeline(
        &dir,
        "type = \"file\"\npath = \"in.jsonl\"",
        "type = \"file\"\npath = \"out.jsonl\"",
        &redis.url(),
        "",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("max_attempts = 3", "max_attempts = 100\nmax_total = \"60s\"")
        .replace("timeout = \"500ms\"", "timeout = \"500ms\"\nstartup = \"wait\"");
    std::fs::write(&config, text).unwrap();
    let child = corestream()
        .args(["run", "--observe", "off"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    redis.restart();
    redis.set_all(&[("customer:c1".into(), r#"{"s":1}"#.into())]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("attempt 1 of 100"), "it waited: {stderr}");
    let got = std::fs::read_to_string(dir.join("out.jsonl")).unwrap();
    assert_eq!(got, "{\"customer\":\"c1\",\"c\":{\"s\":1}}\n");
}

/// Redis killed in the middle of a run fed line by line on stdin, then restarted:
/// every input is delivered enriched or dead-lettered with a Redis reason, none
/// missing, none doubled, none passed on unenriched; after Redis is back the
/// pipeline enriches again by itself.
#[test]
fn redis_killed_mid_run_and_restarted_every_input_is_delivered_enriched_or_dead_lettered() {
    let dir = temp_dir("killed");
    let mut redis = RedisServer::start("killed");
    let all: Vec<(String, String)> =
        (0..400).map(|i| (format!("customer:c{i}"), format!(r#"{{"n":{i}}}"#))).collect();
    redis.set_all(&all);
    let config = pipeline(
        &dir,
        "type = \"stdin\"",
        "type = \"stdout\"\nbreaker_failures = 2\nbreaker_cool_down = \"200ms\"",
        &redis.url(),
        "",
    );
    let mut child = corestream()
        .args(["run", "--observe", "off"])
        .arg(&config)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let reader = {
        let lines = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                lines.lock().unwrap().push(line.unwrap());
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut sent = 0u64;
    let mut send = |stdin: &mut std::process::ChildStdin, n: u64| {
        for _ in 0..n {
            // Unique customers: every message misses the small cache.
            writeln!(stdin, r#"{{"id":{sent},"customer":"c{}"}}"#, sent % 400).unwrap();
            sent += 1;
        }
        stdin.flush().unwrap();
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while lines.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "only {} outputs", lines.lock().unwrap().len());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    send(&mut stdin, 300);
    wait_for(300);
    redis.kill();
    send(&mut stdin, 300);
    std::thread::sleep(Duration::from_millis(500));
    redis.restart();
    redis.set_all(&all);
    // Back: feed until an output after the restart shows up enriched.
    let before = lines.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.lock().unwrap().len() == before {
        assert!(Instant::now() < deadline, "no output after Redis came back");
        send(&mut stdin, 10);
        std::thread::sleep(Duration::from_millis(100));
    }
    send(&mut stdin, 200);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let outputs = lines.lock().unwrap().clone();
    let dead = std::fs::read_to_string(dir.join("dead.jsonl")).unwrap_or_default();
    let mut seen = vec![0u32; sent as usize];
    for line in &outputs {
        let v: Value = serde_json::from_str(line).unwrap();
        let id = v["id"].as_u64().unwrap();
        assert_eq!(v["c"]["n"].as_u64(), Some(id % 400), "delivered means enriched: {line}");
        seen[id as usize] += 1;
    }
    let mut dead_count = 0;
    for line in dead.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["category"], "network", "{line}");
        assert!(v["reason"].as_str().unwrap().contains("Redis"), "{line}");
        let payload: Value = serde_json::from_str(v["payload"].as_str().unwrap()).unwrap();
        seen[payload["id"].as_u64().unwrap() as usize] += 1;
        dead_count += 1;
    }
    assert!(dead_count > 0, "the outage dead-lettered the misses it saw");
    let wrong: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] != 1).collect();
    assert!(wrong.is_empty(), "ids not seen exactly once: {wrong:?}");
    // The last 200, sent after recovery, are all enriched.
    assert!(seen.len() >= 200);
    let tail_delivered = outputs
        .iter()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["id"].as_u64().unwrap() >= sent - 200
        })
        .count();
    assert_eq!(tail_delivered, 200, "after recovery everything is enriched");
    assert!(stderr.contains("enrich: keys fetched"), "{stderr}");
}
