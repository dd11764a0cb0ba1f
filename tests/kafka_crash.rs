//! Crash test: `corestream run` (the real binary) moves Kafka → Kafka against the
//! mock cluster living in this test process; it is killed with SIGKILL in the
//! middle of the run, restarted, and every input message must appear in the output.
//! Duplicates (messages delivered after the last commit before the kill) are
//! allowed, counted and printed.
#![cfg(feature = "kafka")]

mod kafka_util;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_util::*;

const PARTITIONS: i32 = 6;
const BATCHES: u64 = 20;
/// 20 000 orders of ~130 bytes per partition: under the mock cluster's 5 MiB
/// retention per partition (see `kafka_util`).
const PER_BATCH: u64 = 1_000;
/// Batches produced before the engine starts.
const BACKLOG_BATCHES: u64 = 15;

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
commit_every_messages = 20000
properties = {{ "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 300 }}

[sink]
type = "kafka"
brokers = "{out_brokers}"
topic = "crash-out"
linger = "5ms"
batch_bytes = "64KiB"
properties = {{ "max.in.flight.requests.per.connection" = 1 }}
"#
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

#[test]
fn kill_9_in_the_middle_of_a_kafka_run_then_restart_loses_nothing() {
    // Input and output on two clusters; the output broker answers after 20 ms, so
    // the run takes seconds and the kill lands in the middle of it.
    let mock = mock();
    let output = kafka_util::mock();
    output.broker_round_trip_time(1, Duration::from_millis(20)).expect("slow output broker");
    let brokers = mock.bootstrap_servers();
    let out_brokers = output.bootstrap_servers();
    create_topic(&mock, "crash-in", PARTITIONS);
    create_topic(&output, "crash-out", 3);
    let dir = std::env::temp_dir().join(format!("corestream-kafka-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir, &brokers, &out_brokers);

    // A backlog keeps the engine busy (no idle commits), and more input keeps
    // arriving while it runs and while it is down.
    produce_orders(&brokers, "crash-in", PARTITIONS, 0..BACKLOG_BATCHES * PER_BATCH);
    let producer = {
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            for batch in BACKLOG_BATCHES..BATCHES {
                produce_orders(
                    &brokers,
                    "crash-in",
                    PARTITIONS,
                    batch * PER_BATCH..(batch + 1) * PER_BATCH,
                );
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let total = (PARTITIONS as u64 * BATCHES * PER_BATCH) as usize;

    let mut first = spawn(&config, &dir.join("first.log"));
    let mut reader = OutputReader::new(&out_brokers, "crash-out");
    let deadline = Instant::now() + Duration::from_secs(120);
    // Kill early: the engine is still working through the backlog.
    while reader.read_for(Duration::from_millis(5)) < total / 10 {
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
    assert!(reader.records.len() < total, "killed in the middle of the run");
    // What the killed run delivered, and where its group's offsets stood.
    let mut quiet = 0;
    while quiet < 5 {
        let before = reader.records.len();
        quiet = if reader.read_for(Duration::from_millis(200)) == before { quiet + 1 } else { 0 };
    }
    let at_kill = reader.records.len();
    let committed_at_kill: i64 =
        committed(&brokers, "crash", "crash-in", PARTITIONS).iter().map(|&c| c.max(0)).sum();

    let mut second = spawn(&config, &dir.join("second.log"));
    producer.join().expect("input produced");
    let tally = reader.read_until_distinct(total, Duration::from_secs(180));
    let status = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = second.wait().unwrap();
    let second_log = std::fs::read_to_string(dir.join("second.log")).unwrap_or_default();
    assert!(exit.success(), "clean shutdown after SIGTERM: {exit:?}\n{second_log}");

    assert!(
        tally.duplicates <= at_kill.saturating_sub(committed_at_kill as usize),
        "only what was delivered after the last commit is read again"
    );
    let missing = missing(&reader.records, PARTITIONS, 0..BATCHES * PER_BATCH);
    assert_eq!(missing.len(), 0, "lost across the crash: {:?}", &missing[..missing.len().min(20)]);
    assert_eq!(order_violations(&reader.records), Vec::<String>::new());
    eprintln!(
        "crash test: {total} inputs, {} outputs ({} delivered before the kill, {} committed at the kill), \
         {} duplicates ({:.2} % of inputs)",
        tally.total,
        at_kill,
        committed_at_kill,
        tally.duplicates,
        100.0 * tally.duplicates as f64 / total as f64
    );
    assert_eq!(
        committed(&brokers, "crash", "crash-in", PARTITIONS),
        end_offsets(&brokers, "crash-in", PARTITIONS),
        "the clean stop committed everything"
    );
    std::fs::remove_dir_all(&dir).ok();
}
