//! Crash test: `corestream run` (the real binary) runs the reference orders pipeline
//! Kafka → Kafka (routing each order to `orders.<region>.<currency>`, malformed
//! orders to a dead-letter topic) against mock clusters living in this test
//! process; it is killed with SIGKILL in the middle of the run and restarted. Every
//! expected output must be in its topic with its payload, every malformed input in
//! the dead-letter topic, nothing else anywhere. Duplicates are allowed for exactly
//! the inputs at or past the committed offsets at the kill that the killed run had
//! already delivered: they are counted, checked one by one and printed.
#![cfg(feature = "kafka")]

mod kafka_orders_util;
mod kafka_util;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_orders_util as orders;
use kafka_util::*;

const PARTITIONS: i32 = 6;
const BATCHES: u64 = 20;
/// 20 000 orders of ~200 bytes per partition: under the mock cluster's 5 MiB
/// retention per partition (see `kafka_util`).
const PER_BATCH: u64 = 1_000;
/// Batches produced before the engine starts.
const BACKLOG_BATCHES: u64 = 15;
/// One input in this many breaks the schema (and is dead-lettered).
const MALFORMED_EVERY: u64 = 500;
/// Partitions of each routed output topic.
const OUT_PARTITIONS: i32 = 3;

fn config(dir: &std::path::Path, brokers: &str, out_brokers: &str) -> std::path::PathBuf {
    let path = dir.join("crash.toml");
    std::fs::write(
        &path,
        format!(
            r#"[engine]
workers = 2
pin = false
ring_bytes = "1MiB"
record_bytes_max = "64KiB"

[source]
type = "kafka"
brokers = "{brokers}"
group = "crash"
topics = ["crash-in"]
commit_interval = "2s"
commit_every_messages = 5000
properties = {{ "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 300 }}

{chain}
[sink]
type = "kafka"
brokers = "{out_brokers}"
topic = "crash-unrouted"
linger = "5ms"
batch_bytes = "64KiB"
properties = {{ "max.in.flight.requests.per.connection" = 1 }}

# On the input cluster, which answers at once: dead letters are written one by one.
[dead_letter]
type = "kafka"
brokers = "{brokers}"
topic = "crash-dead"
"#,
            chain = orders::ORDERS_CHAIN_TOML
        ),
    )
    .expect("config written");
    path
}

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["run", "--progress-secs", "0"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("corestream starts")
}

/// Messages in `topic` (the mock's topics start at offset 0).
fn messages_in(brokers: &str, topic: &str, partitions: i32) -> usize {
    end_offsets(brokers, topic, partitions).iter().sum::<i64>() as usize
}

/// `(src, seq)` of a dead-letter record: the input's partition and offset, which is
/// its `seq` (each partition is produced in order by one producer at a time).
fn dead_letter_input(r: &orders::Read) -> (i32, u64) {
    let number = |name| {
        r.header(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("dead letter without {name}: {r:?}"))
    };
    (number("corestream.partition") as i32, number("corestream.position"))
}

#[test]
fn kill_9_in_the_middle_of_a_kafka_orders_run_then_restart_loses_nothing() {
    // Input and output on two clusters; the output broker answers after 20 ms, so
    // the run takes seconds and the kill lands in the middle of it.
    let mock = mock();
    let output = kafka_util::mock();
    output.broker_round_trip_time(1, Duration::from_millis(20)).expect("slow output broker");
    let brokers = mock.bootstrap_servers();
    let out_brokers = output.bootstrap_servers();
    create_topic(&mock, "crash-in", PARTITIONS);
    create_topic(&mock, "crash-dead", 1);
    create_topic(&output, "crash-unrouted", 1);
    let routed = orders::routed_topics();
    for topic in &routed {
        output.create_topic(topic, OUT_PARTITIONS, 1).expect("routed topic");
    }
    let dir = std::env::temp_dir().join(format!("corestream-kafka-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir, &brokers, &out_brokers);
    let inputs = orders::Inputs::new(PARTITIONS, 0..BATCHES * PER_BATCH, MALFORMED_EVERY);
    inputs.assert_varied();
    assert!(!inputs.rejected.is_empty());
    let expected = inputs.outputs.len();

    // A backlog keeps the engine busy (no idle commits), and more input keeps
    // arriving while it runs and while it is down.
    orders::produce(
        &brokers,
        "crash-in",
        PARTITIONS,
        0..BACKLOG_BATCHES * PER_BATCH,
        MALFORMED_EVERY,
    );
    let producer = {
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            for batch in BACKLOG_BATCHES..BATCHES {
                orders::produce(
                    &brokers,
                    "crash-in",
                    PARTITIONS,
                    batch * PER_BATCH..(batch + 1) * PER_BATCH,
                    MALFORMED_EVERY,
                );
                // Spreads the input over the run (pacing, not synchronisation).
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };

    let mut first = spawn(&config, &dir.join("first.log"));
    let mut reader = orders::Reader::new(&out_brokers, &routed);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Kill early, while the engine is still working through the backlog, but after
    // its first commit: the restart must resume from committed offsets, not from
    // the start.
    let committed_sum = || {
        committed(&brokers, "crash", "crash-in", PARTITIONS).iter().map(|&c| c.max(0)).sum::<i64>()
    };
    while reader.read_for(Duration::from_millis(50)) < expected / 10 || committed_sum() == 0 {
        assert!(Instant::now() < deadline, "the first run produced too little output");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended early; see {}",
            dir.display()
        );
    }
    first.kill().expect("SIGKILL");
    let status = first.wait().unwrap();
    assert!(!status.success(), "killed, not exited: {status:?}");
    // Everything the killed run delivered, and where its group's offsets stood.
    let mut quiet = 0;
    while quiet < 5 {
        let before = reader.records.len();
        quiet = if reader.read_for(Duration::from_millis(200)) == before { quiet + 1 } else { 0 };
    }
    let at_kill = reader.records.len();
    let in_topics: usize =
        routed.iter().map(|t| messages_in(&out_brokers, t, OUT_PARTITIONS)).sum();
    assert_eq!(at_kill, in_topics, "read everything the killed run delivered");
    assert!(at_kill < expected, "killed in the middle of the run");
    let dead_at_kill = messages_in(&brokers, "crash-dead", 1);
    let committed_at_kill: Vec<u64> = committed(&brokers, "crash", "crash-in", PARTITIONS)
        .iter()
        .map(|&c| c.max(0) as u64)
        .collect();
    assert!(committed_at_kill.iter().sum::<u64>() > 0, "the killed run had committed");
    let uncommitted_at_kill = |id: u64| {
        let (src, seq) = orders::src_seq(id);
        seq >= committed_at_kill[src as usize]
    };
    // The killed run's outputs of inputs past the commit: the restart reads those
    // inputs again and must deliver each of them once more, and nothing else twice.
    let replayed: BTreeSet<u64> = reader
        .records
        .iter()
        .filter_map(|r| r.id())
        .filter(|&id| uncommitted_at_kill(id))
        .collect();

    let mut second = spawn(&config, &dir.join("second.log"));
    producer.join().expect("input produced");
    // The restarted engine's idle commit reaches the end of every partition only
    // once it has settled every input: then stop it.
    let ends = end_offsets(&brokers, "crash-in", PARTITIONS);
    assert_eq!(ends, vec![(BATCHES * PER_BATCH) as i64; PARTITIONS as usize]);
    wait_until("the restarted run commits every input", Duration::from_secs(180), || {
        assert!(second.try_wait().unwrap().is_none(), "the second run ended early");
        committed(&brokers, "crash", "crash-in", PARTITIONS) == ends
    });
    let status = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = second.wait().unwrap();
    let second_log = std::fs::read_to_string(dir.join("second.log")).unwrap_or_default();
    assert!(exit.success(), "clean shutdown after SIGTERM: {exit:?}\n{second_log}");
    assert_eq!(
        committed(&brokers, "crash", "crash-in", PARTITIONS),
        ends,
        "the clean stop committed everything"
    );

    // Read every copy in the routed topics; nothing went unrouted.
    let copies: usize = routed.iter().map(|t| messages_in(&out_brokers, t, OUT_PARTITIONS)).sum();
    reader.read_until("the routed topics", Duration::from_secs(60), |r| r.len() >= copies);
    assert_eq!(messages_in(&out_brokers, "crash-unrouted", 1), 0, "nothing unrouted");
    let check = orders::check(&reader.records, &inputs);
    orders::assert_expected(&check);
    use orders::sample;
    let duplicated: BTreeSet<u64> = check.duplicates.keys().copied().collect();
    let more_than_twice: Vec<_> = check.duplicates.iter().filter(|(_, n)| **n > 2).collect();
    assert!(more_than_twice.is_empty(), "delivered more than twice: {more_than_twice:?}");
    let unexplained: Vec<_> = duplicated.difference(&replayed).collect();
    assert!(unexplained.is_empty(), "duplicates of committed inputs: {}", sample(&unexplained));
    let not_replayed: Vec<_> = replayed.difference(&duplicated).collect();
    assert!(
        not_replayed.is_empty(),
        "inputs past the commit that the restart did not process again: {}",
        sample(&not_replayed)
    );

    // Every malformed input is in the dead-letter topic, as it was; duplicates only
    // past the commit at the kill.
    let dead_count = messages_in(&brokers, "crash-dead", 1);
    let mut dead = orders::Reader::new(&brokers, &["crash-dead".to_string()]);
    dead.read_until("the dead-letter topic", Duration::from_secs(60), |r| r.len() >= dead_count);
    let mut dead_copies: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &dead.records {
        let (src, seq) = dead_letter_input(r);
        assert_eq!(r.header("corestream.stage"), Some("processor"), "{r:?}");
        assert_eq!(r.payload, orders::order_input(src, seq, MALFORMED_EVERY), "payload kept");
        assert_eq!(r.key, key_of(src, seq), "key kept");
        *dead_copies.entry(orders::id_of(src, seq)).or_default() += 1;
    }
    let dead_ids: BTreeSet<u64> = dead_copies.keys().copied().collect();
    assert_eq!(dead_ids, inputs.rejected, "dead letters = the malformed inputs");
    let bad_dead_copies: Vec<_> = dead_copies
        .iter()
        .filter(|&(&id, &n)| n > 2 || (n == 2 && !uncommitted_at_kill(id)))
        .collect();
    assert!(bad_dead_copies.is_empty(), "dead letters repeated: {bad_dead_copies:?}");

    let ids_at_kill: HashSet<u64> =
        reader.records[..at_kill].iter().filter_map(|r| r.id()).collect();
    eprintln!(
        "crash test: {} inputs, {expected} expected outputs, {} read ({} delivered before the \
         kill, of which {} past the {} committed inputs), {} duplicates ({:.2} % of outputs), \
         {} dead letters ({dead_at_kill} before the kill) for {} malformed inputs",
        inputs.total(),
        reader.records.len(),
        ids_at_kill.len(),
        replayed.len(),
        committed_at_kill.iter().sum::<u64>(),
        check.extra_copies(),
        100.0 * check.extra_copies() as f64 / expected as f64,
        dead.records.len(),
        inputs.rejected.len()
    );
    std::fs::remove_dir_all(&dir).ok();
}
