//! The observe server: `/metrics` checked by `promtool`, `/stats`, `/ready` across
//! start, run and drain, counters that add up once drained, hostile clients, and the
//! `run --observe` flag and `[observe]` section of the CLI.
//!
//! Needs `promtool` (Debian package `prometheus`) and, for `corestream top`
//! (feature `top`, on by default), `tmux`; `.ci/run` installs both.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corestream::engine::{Engine, EngineSettings};
use corestream::message::Message;
use corestream::observe::{Attached, ObserveServer, ObserveSettings};
use corestream::processor::{Emit, Processor};
use corestream::retry::ErrorCategory;
use corestream::sink::null::NullSinkFactory;
use corestream::source::generator::{GeneratorSettings, GeneratorSource};
use corestream::worker::Placement;

/// How long a poll may wait for a state before the test fails (not a timing
/// assertion: the states arrive in milliseconds; this only stops a broken run).
const POLL_LIMIT: Duration = Duration::from_secs(30);

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("corestream-observe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sends `request` as is and returns the status code and the body.
fn exchange(address: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // A server that refuses early may close before it read everything we send.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

fn get(address: SocketAddr, path: &str) -> (u16, String) {
    exchange(address, format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
}

/// Polls `path` until `done(status, body)`; fails after [`POLL_LIMIT`].
fn poll(address: SocketAddr, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let started = Instant::now();
    loop {
        let (status, body) = get(address, path);
        if done(status, &body) {
            return (status, body);
        }
        assert!(started.elapsed() < POLL_LIMIT, "{path} never got there: {status} {body}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The value of an unlabelled sample (or of one with exactly these labels).
fn sample(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name}"))
        .parse()
        .unwrap()
}

/// Runs `promtool check metrics` on `exposition` and fails the test on any problem.
fn promtool_check(exposition: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`, installed by .ci/run) must be on PATH");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn local_settings() -> ObserveSettings {
    ObserveSettings { address: "127.0.0.1:0".parse().unwrap(), ..ObserveSettings::default() }
}

/// Passes most inputs, filters every tenth, fails (dead-letters) every tenth + 1.
struct FilterAndFail;

impl Processor for FilterAndFail {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        for (i, m) in input.iter().enumerate() {
            match m.meta.position % 10 {
                0 => {}
                1 => emit.fail(i as u32, ErrorCategory::Serialization, "every tenth + 1 fails"),
                _ => emit.pass(i as u32, m),
            }
        }
    }
}

#[test]
fn ready_goes_503_200_503_and_the_counters_add_up_once_drained() {
    let server = ObserveServer::start(&local_settings()).unwrap();
    let address = server.address();
    assert_ne!(address.port(), 0, "the real port is reported");
    assert_eq!(get(address, "/ping").0, 200);
    let (status, body) = get(address, "/ready");
    assert_eq!((status, body.as_str()), (503, "not ready: not started\n"), "before start");
    assert_eq!(get(address, "/metrics").0, 503, "nothing attached yet");

    let source = GeneratorSource::new(GeneratorSettings {
        count: None,
        rate_per_sec: Some(200_000),
        keys: 1000,
        message_bytes: 100,
        batch_records: 64,
        ..Default::default()
    })
    .unwrap();
    let settings = EngineSettings {
        workers: 2,
        ring_bytes: 1 << 16,
        batch_records: 64,
        placement: Placement::Unpinned,
        arena_bytes: 1 << 16,
        record_bytes_max: 1024,
        // Never reached here: its marks and the intake counters are shown.
        memory_limit: Some(64 << 30),
    };
    let engine = Engine::new(
        settings,
        Box::new(source),
        Box::new(|_| Box::new(FilterAndFail)),
        Arc::new(NullSinkFactory),
    )
    // Failed messages are dropped on purpose (counted as dead-lettered); without a
    // dead-letter destination the first one would stop the run.
    .dead_letter(Arc::new(corestream::sink::dead_letter::LogDeadLetter::default()));
    let running = engine.start().unwrap();
    server.attach(Attached {
        metrics: running.metrics().clone(),
        source: "generator".into(),
        sink: "null".into(),
    });
    poll(address, "/ready", |status, _| status == 200);

    // During the run: a valid exposition with every family, and a stats document.
    let (_, during) = poll(address, "/metrics", |status, body| {
        status == 200 && sample(body, "corestream_messages_dead_lettered_total") > 0.0
    });
    promtool_check(&during);
    for family in [
        "corestream_messages_in_total",
        "corestream_worker_messages_in_total{worker=\"1\"}",
        "corestream_worker_batch_records{worker=\"0\"}",
        "corestream_worker_ring_used_bytes{worker=\"1\"}",
        "corestream_ring_capacity_bytes 65536",
        "corestream_sink_failures_total{category=\"timeout\",outcome=\"attempt\"}",
        "corestream_latency_seconds_bucket{le=\"0.000001\"}",
        "corestream_latency_seconds_bucket{le=\"10\"}",
        "process_resident_memory_bytes",
        "corestream_ready 1",
        "corestream_memory_limit_bytes 68719476736",
        "corestream_memory_resume_bytes 61847109632",
        "corestream_intake_paused 0",
        "corestream_intake_pauses_total 0",
        "corestream_intake_paused_seconds_total 0",
        "corestream_source_ring_full_waits_total",
        "corestream_worker_wait_steps_total{worker=\"1\",step=\"park\"}",
    ] {
        assert!(during.contains(family), "{family} missing:\n{during}");
    }
    let (status, stats) = get(address, "/stats");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["schema"], "corestream.stats");
    assert_eq!(stats["version"], 1);
    assert_eq!(stats["phase"], "running");
    assert_eq!(stats["ready"], true);
    for section in [
        "batch",
        "concurrency",
        "memory",
        "performance",
        "backpressure",
        "errors",
        "sources",
        "sinks",
        "workers",
    ] {
        assert!(stats.get(section).is_some(), "section {section} missing: {stats}");
    }
    assert_eq!(stats["concurrency"]["workers"], 2);
    assert_eq!(stats["concurrency"]["placement"], "unpinned");
    assert!(stats["memory"]["resident_bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["memory"]["memory_limit_bytes"], 64u64 << 30);
    assert_eq!(stats["memory"]["memory_resume_bytes"], 61847109632u64);
    assert_eq!(stats["backpressure"]["intake_paused"], false);
    assert_eq!(stats["backpressure"]["intake_pauses"], 0);
    assert!(stats["backpressure"]["source_ring_full_waits"].is_u64(), "{stats}");
    // The sampler's 1 s window: rates and latency percentiles of the last second.
    let (_, windowed) = poll(address, "/stats", |_, body| body.contains("\"window\": \"1s\""));
    let windowed: serde_json::Value = serde_json::from_str(&windowed).unwrap();
    let windows = windowed["performance"]["windows"].as_array().unwrap();
    let last_second = windows.iter().find(|w| w["window"] == "1s").unwrap();
    assert!(last_second["messages_in"].as_f64().unwrap() > 0.0, "{last_second}");
    let latency = &last_second["latency_ingest_to_sink_seconds"];
    assert!(latency["count"].as_u64().unwrap() > 0, "{last_second}");
    assert!(latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
    let since_start = windows.iter().find(|w| w["window"] == "since_start").unwrap();
    assert!(
        since_start["latency_ingest_to_sink_seconds"]["count"].as_u64()
            >= latency["count"].as_u64(),
        "a window holds no more than everything"
    );

    // Drain: from the moment stop is asked, not ready.
    running.stop();
    let (status, body) = get(address, "/ready");
    assert_eq!(status, 503, "{body}");
    assert!(body == "not ready: draining\n" || body == "not ready: finished\n", "{body}");
    let report = running.join().unwrap();
    let (status, body) = get(address, "/ready");
    assert_eq!((status, body.as_str()), (503, "not ready: finished\n"));

    // Once drained: every input is delivered, filtered or dead-lettered.
    let (status, after) = get(address, "/metrics");
    assert_eq!(status, 200);
    promtool_check(&after);
    let total = |name: &str| sample(&after, name) as u64;
    let messages_in = total("corestream_messages_in_total");
    let out = total("corestream_messages_out_total");
    let filtered = total("corestream_messages_filtered_total");
    let dead = total("corestream_messages_dead_lettered_total");
    assert!(
        out > 0 && filtered > 0 && dead > 0,
        "in {messages_in} out {out} f {filtered} d {dead}"
    );
    assert_eq!(messages_in, out + filtered + dead, "in = out + filtered + dead-lettered");
    assert_eq!(messages_in, total("corestream_messages_ingested_total"));
    let snapshot = &report.snapshot;
    assert_eq!(messages_in, snapshot.get(corestream::metrics::Counter::MessagesIn));
    let per_worker: u64 = (0..2)
        .map(|w| sample(&after, &format!("corestream_worker_messages_in_total{{worker=\"{w}\"}}")))
        .sum::<f64>() as u64;
    assert_eq!(per_worker, messages_in, "the workers' series sum to the total");
    let count = total("corestream_latency_seconds_count");
    assert_eq!(total("corestream_latency_seconds_bucket{le=\"+Inf\"}"), count);
    assert_eq!(count, snapshot.latency.count, "the histogram holds every published latency");
    assert!(after.contains("corestream_ready 0"));
    for worker in 0..2 {
        let gauge = format!("corestream_worker_batch_records{{worker=\"{worker}\"}}");
        assert_eq!(total(&gauge), 64, "the fixed batch size");
    }
    assert_eq!(total("corestream_queued_messages"), 0, "drained: nothing left in the rings");
    for worker in 0..2 {
        let used = format!("corestream_worker_ring_used_bytes{{worker=\"{worker}\"}}");
        assert_eq!(total(&used), 0, "drained: ring {worker} is empty");
    }

    let (_, stats) = get(address, "/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["phase"], "finished");
    assert_eq!(stats["errors"]["dead_lettered"], dead);
    assert_eq!(stats["errors"]["processor_failed"], dead);
    assert_eq!(stats["sinks"][0]["messages"], out);
    assert_eq!(stats["sources"][0]["messages"], messages_in);
    let workers_in: u64 =
        (0..2).map(|w| stats["workers"][w]["messages_in"].as_u64().unwrap()).sum();
    assert_eq!(workers_in, messages_in);
    // A paced source leaves the workers waiting: every wait starts with spins.
    for w in 0..2 {
        let steps = &stats["workers"][w]["wait_steps"];
        assert!(steps["spin"].as_u64().unwrap() > 0, "worker {w}: {steps}");
        let spins = sample(
            &after,
            &format!("corestream_worker_wait_steps_total{{worker=\"{w}\",step=\"spin\"}}"),
        );
        assert_eq!(spins as u64, steps["spin"].as_u64().unwrap());
    }
}

#[test]
fn hostile_requests_get_4xx_and_the_server_keeps_answering() {
    let settings =
        ObserveSettings { request_timeout: Duration::from_millis(300), ..local_settings() };
    let server = ObserveServer::start(&settings).unwrap();
    let address = server.address();
    assert_eq!(exchange(address, b"\x00\x01\x02 garbage\r\n\r\n").0, 400);
    assert_eq!(exchange(address, b"GET\r\n\r\n").0, 400);
    assert_eq!(exchange(address, b"DELETE /ready HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(get(address, "/nothing").0, 404);
    let huge = format!("GET /ping HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    assert_eq!(exchange(address, huge.as_bytes()).0, 431, "a head over the limit");
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        exchange(address, format!("GET /ping HTTP/1.1\r\n{many}\r\n").as_bytes()).0,
        431,
        "too many headers"
    );
    // A head that never completes is cut off at the deadline.
    assert_eq!(exchange(address, b"GET /ping HTTP/1.1\r\nHost: slow\r\n").0, 408);

    // Far more idle connections than handlers and queue slots: the excess is refused
    // at once (503), the rest time out; the server keeps answering throughout.
    let idle: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(address).unwrap()).collect();
    poll(address, "/ping", |status, _| status == 200);
    // Each idle connection ends: refused as busy, or closed unanswered at its deadline.
    let mut busy = 0;
    for mut stream in idle {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("the server closes every idle connection");
        if answer.starts_with(b"HTTP/1.1 503") {
            busy += 1;
        } else {
            assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
        }
    }
    let queued_max =
        corestream::observe::CONNECTIONS_QUEUED_MAX + corestream::observe::OBSERVE_HANDLERS;
    assert!(
        busy > 0 && busy <= 200,
        "beyond {queued_max} waiting connections some are refused: {busy}"
    );
    assert_eq!(get(address, "/ping"), (200, "pong\n".to_string()));
    assert_eq!(get(address, "/ready").0, 503, "no engine attached");
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corestream"))
}

fn write_config(dir: &Path, observe: &str) -> PathBuf {
    let path = dir.join("p.toml");
    std::fs::write(
        &path,
        format!(
            "[engine]\nworkers = 2\npin = false\n\
             [source]\ntype = \"generator\"\nrate_per_sec = 100000\n\
             [sink]\ntype = \"null\"\n{observe}"
        ),
    )
    .unwrap();
    path
}

/// Starts `corestream run config` with the server on a free port; returns the child,
/// its stderr (past the observe line) and the address the run printed.
fn run_on_a_free_port(
    config: &Path,
) -> (std::process::Child, BufReader<std::process::ChildStderr>, SocketAddr) {
    let mut child = binary()
        .args(["run", config.to_str().unwrap(), "--observe", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let address = loop {
        let mut line = String::new();
        assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "no observe line in {seen:?}");
        if let Some(rest) = line.strip_prefix("corestream: observe: http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        seen.push_str(&line);
    };
    (child, stderr, address)
}

#[test]
fn run_serves_on_the_address_it_prints_until_a_signal_drains_it() {
    let dir = temp_dir("cli");
    let config = write_config(&dir, "[observe]\naddress = \"127.0.0.1:9\"\n");
    // The flag overrides the file (port 9 would need root and be refused).
    let (mut child, mut stderr, address) = run_on_a_free_port(&config);
    poll(address, "/ready", |status, _| status == 200);
    let (_, metrics) =
        poll(address, "/metrics", |_, body| sample(body, "corestream_messages_out_total") > 0.0);
    promtool_check(&metrics);
    let (status, stats) = get(address, "/stats");
    assert_eq!(status, 200);
    assert!(stats.contains("\"description\": \"generator: count unlimited"), "{stats}");
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("corestream: done in"), "{rest}");
}

#[test]
fn a_taken_or_invalid_address_stops_the_run_naming_the_setting() {
    let dir = temp_dir("taken");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();

    let config = write_config(&dir, &format!("[observe]\naddress = \"{address}\"\n"));
    let out = binary().args(["run", config.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("observe.address {address}: cannot listen")), "{stderr}");

    let config = write_config(&dir, "");
    let flag = address.to_string();
    let out =
        binary().args(["run", config.to_str().unwrap(), "--observe", &flag]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("--observe {address}: cannot listen")), "{stderr}");

    let out = binary()
        .args(["run", config.to_str().unwrap(), "--observe", "localhost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));

    let config = write_config(&dir, "[observe]\naddress = \"everywhere\"\n");
    let out = binary().args(["validate", config.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("p.toml:10:11") && stderr.contains("observe.address"), "{stderr}");

    let config = write_config(&dir, "[observe]\nenabled = false\n");
    let out = binary().args(["validate", config.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("observe: off"));
}

/// Runs tmux on a socket of this test's own.
#[cfg(feature = "top")]
fn tmux(socket: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .output()
        .expect("tmux (installed by .ci/run) must be on PATH")
}

#[cfg(feature = "top")]
#[test]
fn top_shows_a_running_engine_in_a_terminal_and_q_quits() {
    let dir = temp_dir("top");
    let config = write_config(&dir, "");
    let (mut child, _stderr, address) = run_on_a_free_port(&config);
    poll(address, "/ready", |status, _| status == 200);

    let socket = format!("corestream-top-{}", std::process::id());
    let command = format!("{} top {address} --interval-ms 200", env!("CARGO_BIN_EXE_corestream"));
    let started =
        tmux(&socket, &["new-session", "-d", "-s", "top", "-x", "140", "-y", "40", &command]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    // The view shows the engine, then its per-worker rates (after a second document).
    let begun = Instant::now();
    let screen = loop {
        let screen = tmux(&socket, &["capture-pane", "-p", "-t", "top"]);
        let screen = String::from_utf8_lossy(&screen.stdout).into_owned();
        if screen.contains("phase running  ready") && screen.contains("workers 2/2") {
            break screen;
        }
        assert!(begun.elapsed() < POLL_LIMIT, "top never showed the engine:\n{screen}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for part in ["throughput and latency", "workers", "since_start", "source: generator"] {
        assert!(screen.contains(part), "{part} missing:\n{screen}");
    }
    assert!(tmux(&socket, &["send-keys", "-t", "top", "q"]).status.success());
    let begun = Instant::now();
    while tmux(&socket, &["has-session", "-t", "top"]).status.success() {
        assert!(begun.elapsed() < POLL_LIMIT, "q did not quit top");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = tmux(&socket, &["kill-server"]);

    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[cfg(feature = "top")]
#[test]
fn top_says_so_when_nothing_listens() {
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = binary().args(["top", &free.to_string()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("nothing answers at http://{free}/stats")), "{stderr}");
}

/// A sink that fails every write while `down` is set.
struct SwitchSink {
    down: Arc<std::sync::atomic::AtomicBool>,
    acker: corestream::ack::Acker,
}

impl corestream::sink::Sink for SwitchSink {
    fn write(
        &mut self,
        outputs: &[corestream::message::Output<'_>],
        ticket: corestream::ack::Ticket,
    ) -> Result<(), corestream::sink::SinkError> {
        if !outputs.is_empty() && self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(corestream::sink::SinkError::new(ErrorCategory::Timeout, "down"));
        }
        self.acker.done(ticket);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), corestream::sink::SinkError> {
        Ok(())
    }
}

struct SwitchFactory(Arc<std::sync::atomic::AtomicBool>);

impl corestream::sink::SinkFactory for SwitchFactory {
    fn describe(&self) -> String {
        "switch".into()
    }

    fn open(
        &self,
        _worker: usize,
        acker: corestream::ack::Acker,
    ) -> Result<Box<dyn corestream::sink::Sink>, corestream::sink::SinkError> {
        Ok(Box::new(SwitchSink { down: self.0.clone(), acker }))
    }
}

struct Pass;

impl Processor for Pass {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        for (i, m) in input.iter().enumerate() {
            emit.pass(i as u32, m);
        }
    }
}

#[test]
fn ready_is_503_while_the_sink_breaker_is_open_and_200_once_it_closes() {
    use corestream::retry::breaker::BreakerConfig;
    use corestream::retry::policy::PolicyParams;
    use corestream::retry::{ActionTable, RetryPolicy};
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    let server = ObserveServer::start(&local_settings()).unwrap();
    let address = server.address();
    let down = Arc::new(AtomicBool::new(false));
    let source = GeneratorSource::new(GeneratorSettings {
        count: None,
        rate_per_sec: Some(10_000),
        keys: 100,
        message_bytes: 100,
        batch_records: 16,
        ..Default::default()
    })
    .unwrap();
    let settings = EngineSettings {
        workers: 1,
        ring_bytes: 1 << 16,
        batch_records: 16,
        placement: Placement::Unpinned,
        arena_bytes: 1 << 16,
        record_bytes_max: 1024,
        ..EngineSettings::default()
    };
    // Retries (10 000 attempts, over 20 s) while the sink is down, so nothing is
    // dead-lettered in this test; the breaker opens after two failures and probes
    // every 5 ms.
    let resilience = corestream::sink::Resilience {
        policy: RetryPolicy::build(&PolicyParams {
            delay_initial: Duration::from_millis(1),
            delay_max: Duration::from_millis(2),
            attempts_max: corestream::retry::policy::ATTEMPTS_MAX_LIMIT,
            elapsed_max: Duration::from_secs(600),
            ..PolicyParams::default()
        })
        .unwrap(),
        actions: ActionTable::default(),
        breaker: BreakerConfig { failures_to_open: 2, cool_down: Duration::from_millis(5) },
    };
    let engine = Engine::new(
        settings,
        Box::new(source),
        Box::new(|_| Box::new(Pass)),
        Arc::new(SwitchFactory(down.clone())),
    )
    .resilience(resilience);
    let running = engine.start().unwrap();
    server.attach(Attached {
        metrics: running.metrics().clone(),
        source: "generator".into(),
        sink: "switch".into(),
    });
    poll(address, "/ready", |status, _| status == 200);

    down.store(true, Relaxed);
    let (_, body) = poll(address, "/ready", |status, _| status == 503);
    assert_eq!(body, "not ready: the sink's circuit breaker is open on 1 worker(s)\n");
    let (_, metrics) = poll(address, "/metrics", |status, body| {
        status == 200 && sample(body, "corestream_worker_breaker_open{worker=\"0\"}") == 1.0
    });
    assert!(sample(&metrics, "corestream_breaker_opened_total") >= 1.0, "{metrics}");
    promtool_check(&metrics);

    down.store(false, Relaxed);
    poll(address, "/ready", |status, _| status == 200);
    let (_, metrics) = get(address, "/metrics");
    assert_eq!(sample(&metrics, "corestream_worker_breaker_open{worker=\"0\"}"), 0.0);
    running.stop();
    let report = running.join().expect("clean stop");
    let dead = report.snapshot.get(corestream::metrics::Counter::DeadLettered);
    assert_eq!(dead, 0, "nothing given up");
}
