//! Replay after a crash, measured from outside: how many outputs a restart delivers
//! twice, for each commit setting, against the in-process mock cluster.
//!
//! ```text
//! cargo bench --bench kafka_replay
//! CORESTREAM_REPLAY_SETTINGS="100000/1s,5000/200ms" CORESTREAM_REPLAY_KILL_MS=3200,3400,3600 \
//!     cargo bench --bench kafka_replay
//! ```
//!
//! Each run: a fresh mock cluster, `CORESTREAM_REPLAY_MESSAGES` orders (default
//! 200000) in `CORESTREAM_REPLAY_PARTITIONS` input partitions (16), the reference
//! orders pipeline Kafka → Kafka run by the real `corestream` binary, killed with
//! SIGKILL `kill_ms` after it was started, restarted with the same group and
//! stopped once the group's offsets reach the end of every partition. Every copy in
//! the output topics is then read back and checked against the independently
//! computed expected outputs (nothing missing, nothing unexpected, order kept);
//! the figure is the duplicate outputs, as a count and as a share of the expected
//! outputs. A setting is `commit_every_messages/commit_interval`; `default` uses
//! the source's defaults. The second run's wall time (start to every offset
//! committed, group join included) is printed as a rough throughput check; the
//! throughput cost of committing often is measured by `kafka_throughput`.

#[path = "../tests/kafka_orders_util/mod.rs"]
mod kafka_orders_util;
#[path = "../tests/kafka_util/mod.rs"]
mod kafka_util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_orders_util as orders;
use kafka_util::{committed, create_topic, end_offsets, mock, wait_until};

const MALFORMED_EVERY: u64 = 500;
const OUT_PARTITIONS: i32 = 3;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn config(dir: &Path, brokers: &str, setting: &str) -> PathBuf {
    let commit = match setting.split_once('/') {
        Some((every, interval)) => {
            format!("commit_every_messages = {every}\ncommit_interval = \"{interval}\"\n")
        }
        None => String::new(),
    };
    let path = dir.join("replay.toml");
    std::fs::write(
        &path,
        format!(
            r#"[engine]
workers = 2
pin = false

[source]
type = "kafka"
brokers = "{brokers}"
group = "replay"
topics = ["replay-in"]
{commit}properties = {{ "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 300 }}

{chain}
[sink]
type = "kafka"
brokers = "{brokers}"
topic = "replay-unrouted"

[dead_letter]
type = "kafka"
brokers = "{brokers}"
topic = "replay-dead"
"#,
            chain = orders::ORDERS_CHAIN_TOML
        ),
    )
    .expect("config written");
    path
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["run", "--progress-secs", "0"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("corestream starts")
}

struct Outcome {
    expected: usize,
    duplicates: usize,
    delivered_at_kill: usize,
    committed_at_kill: i64,
    second_run: Duration,
}

fn one_run(setting: &str, kill_ms: u64, messages: u64, partitions: i32) -> Outcome {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    create_topic(&mock, "replay-in", partitions);
    create_topic(&mock, "replay-dead", 1);
    create_topic(&mock, "replay-unrouted", 1);
    let routed = orders::routed_topics();
    for topic in &routed {
        mock.create_topic(topic, OUT_PARTITIONS, 1).expect("routed topic");
    }
    let per_partition = messages / partitions as u64;
    let inputs = orders::Inputs::new(partitions, 0..per_partition, MALFORMED_EVERY);
    orders::produce(&brokers, "replay-in", partitions, 0..per_partition, MALFORMED_EVERY);
    let dir = std::env::temp_dir().join(format!("corestream-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = config(&dir, &brokers, setting);

    let mut first = spawn(&config, &dir.join("first.log"));
    std::thread::sleep(Duration::from_millis(kill_ms));
    first.kill().expect("SIGKILL");
    first.wait().expect("killed run reaped");
    let committed_at_kill: i64 =
        committed(&brokers, "replay", "replay-in", partitions).iter().map(|&c| c.max(0)).sum();
    let delivered_at_kill: usize = routed
        .iter()
        .map(|t| end_offsets(&brokers, t, OUT_PARTITIONS).iter().sum::<i64>() as usize)
        .sum();

    let started = Instant::now();
    let mut second = spawn(&config, &dir.join("second.log"));
    let ends = end_offsets(&brokers, "replay-in", partitions);
    wait_until("the restarted run commits every input", Duration::from_secs(300), || {
        assert!(second.try_wait().expect("poll child").is_none(), "the second run ended early");
        committed(&brokers, "replay", "replay-in", partitions) == ends
    });
    let second_run = started.elapsed();
    let status = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    assert!(second.wait().expect("second run reaped").success(), "clean stop after SIGTERM");

    let copies: usize = routed
        .iter()
        .map(|t| end_offsets(&brokers, t, OUT_PARTITIONS).iter().sum::<i64>() as usize)
        .sum();
    let mut reader = orders::Reader::new(&brokers, &routed);
    reader.read_until("the routed topics", Duration::from_secs(120), |r| r.len() >= copies);
    let check = orders::check(&reader.records, &inputs);
    orders::assert_expected(&check);
    std::fs::remove_dir_all(&dir).ok();
    Outcome {
        expected: inputs.outputs.len(),
        duplicates: check.extra_copies(),
        delivered_at_kill,
        committed_at_kill,
        second_run,
    }
}

fn main() {
    let messages: u64 = env_or("CORESTREAM_REPLAY_MESSAGES", "200000").parse().expect("messages");
    let partitions: i32 = env_or("CORESTREAM_REPLAY_PARTITIONS", "16").parse().expect("partitions");
    let settings = env_or("CORESTREAM_REPLAY_SETTINGS", "100000/1s,default");
    let kills: Vec<u64> = env_or("CORESTREAM_REPLAY_KILL_MS", "3200,3400,3600")
        .split(',')
        .map(|k| k.trim().parse().expect("kill time in ms"))
        .collect();
    println!(
        "kafka_replay: {messages} orders, {partitions} partitions, 2 workers, kill -9 at {kills:?} ms \
         after start, in-process mock cluster"
    );
    println!(
        "| setting | kill at | delivered at kill | inputs committed at kill | duplicates | of outputs | second run |"
    );
    println!("|---|---|---|---|---|---|---|");
    for setting in settings.split(',').map(str::trim) {
        for &kill_ms in &kills {
            let o = one_run(setting, kill_ms, messages, partitions);
            println!(
                "| {setting} | {kill_ms} ms | {} | {} | {} | {:.2} % | {:.2} s |",
                o.delivered_at_kill,
                o.committed_at_kill,
                o.duplicates,
                100.0 * o.duplicates as f64 / o.expected as f64,
                o.second_run.as_secs_f64()
            );
        }
    }
}
