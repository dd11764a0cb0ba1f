//! Crash accounting of the file source.
//!
//! - `corestream run` (the real binary) moves file → file and is killed with
//!   SIGKILL in the middle of the run, then restarted: every input line must be in
//!   the output, `replayed` must count exactly the lines of the checkpoint's replay
//!   window, and every duplicate must be one of them.
//! - Through the library: no line reaches a worker before a checkpoint whose read
//!   limit covers it is on disk, and `replayed` counts the lines inside an earlier
//!   run's read limit.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corestream::ack::checkpoint::{self, Checkpoint};
use corestream::engine::{Engine, EngineSettings};
use corestream::message::Message;
use corestream::metrics::Counter;
use corestream::processor::{Emit, Processor};
use corestream::sink::null::NullSinkFactory;
use corestream::source::file::FileSource;
use corestream::worker::Placement;

/// Generous bound for a run that makes progress; only reached when something hangs.
const HANG: Duration = Duration::from_secs(120);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corestream-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `lines` lines `{"id":N}`; returns the position (byte offset just past
/// the newline) of each line.
fn write_input(path: &Path, lines: u64) -> Vec<u64> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut positions = Vec::with_capacity(lines as usize);
    let mut position = 0u64;
    for i in 0..lines {
        let line = format!("{{\"id\":{i}}}\n");
        f.write_all(line.as_bytes()).unwrap();
        position += line.len() as u64;
        positions.push(position);
    }
    f.flush().unwrap();
    positions
}

fn id_of(line: &str) -> usize {
    line.strip_prefix("{\"id\":")
        .and_then(|rest| rest.strip_suffix('}'))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not an input line: {line:?}"))
}

/// Lines of `positions` with a position in `(after, until]`.
fn lines_within(positions: &[u64], after: u64, until: u64) -> u64 {
    positions.iter().filter(|&&p| p > after && p <= until).count() as u64
}

/// The `replayed N` figure of the end-of-run summary.
fn replayed_in_summary(stderr: &str) -> u64 {
    let rest = stderr.split("replayed ").nth(1).unwrap_or_else(|| panic!("no summary: {stderr}"));
    rest.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a count after `replayed`")
}

fn make_fifo(path: &Path) {
    let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `name` is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(name.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

/// SIGKILL in the middle of a file → file run, then a restart: nothing is lost,
/// `replayed` is exactly the number of lines in the replay window of the
/// checkpoint the killed run left, and every duplicated line lies in that window.
///
/// The first run's output file is a named pipe this test reads, so the test, not
/// the clock, decides where the kill lands: it reads until a quarter of the input
/// has come out and a checkpoint past the start is on disk (or half the input has
/// come out), then stops reading. The engine can then only fill its rings, sink
/// buffers and the pipe (a few MiB with the settings below), far less than the
/// rest of the 40 MB input, so it is still running when it is killed. What was in
/// the pipe at the kill is output the sink wrote (like a regular file's page cache).
#[test]
fn kill_9_mid_file_run_then_restart_loses_nothing_and_counts_every_duplicate() {
    let dir = temp_dir("kill9");
    let lines = 3_000_000u64;
    let input = dir.join("in.ndjson");
    let positions = write_input(&input, lines);
    let input_len = *positions.last().unwrap();
    let checkpoint_path = dir.join("in.ckpt");
    let config = |name: &str, output: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "[engine]\nworkers = 2\npin = false\nring_bytes = \"1MiB\"\nrecord_bytes_max = \"64KiB\"\n\
                 [source]\ntype = \"file\"\npath = \"in.ndjson\"\ncheckpoint = \"in.ckpt\"\ncheckpoint_interval = \"10ms\"\n\
                 [sink]\ntype = \"file\"\npath = \"{output}\"\nappend = true\n"
            ),
        )
        .unwrap();
        path
    };
    let first_config = config("first.toml", "out1.fifo");
    let second_config = config("second.toml", "out2.ndjson");
    let fifo = dir.join("out1.fifo");
    make_fifo(&fifo);

    // The reader of the first run's output.
    let (paused_tx, paused_rx) = channel::<()>();
    let (resume_tx, resume_rx) = channel::<()>();
    let reader = {
        let fifo = fifo.clone();
        let checkpoint_path = checkpoint_path.clone();
        std::thread::spawn(move || {
            let mut pipe = std::fs::File::open(&fifo).expect("open the fifo");
            let mut out = Vec::new();
            let mut chunk = vec![0u8; 1 << 16];
            let mut paused = false;
            loop {
                let n = pipe.read(&mut chunk).expect("read the fifo");
                if n == 0 {
                    return out;
                }
                out.extend_from_slice(&chunk[..n]);
                let len = out.len() as u64;
                let progress = || {
                    checkpoint::load(&checkpoint_path)
                        .ok()
                        .flatten()
                        .is_some_and(|c| c.position > 0)
                };
                if !paused && (len >= input_len / 2 || (len >= input_len / 4 && progress())) {
                    paused = true;
                    paused_tx.send(()).unwrap();
                    resume_rx.recv().unwrap();
                }
            }
        })
    };

    let log_path = dir.join("first.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["run", first_config.to_str().unwrap(), "--progress-secs", "0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let start = Instant::now();
    loop {
        match paused_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(()) => break,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("the first run ended before the kill ({status}): {}", log());
                }
                assert!(start.elapsed() < HANG, "no output from the first run: {}", log());
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the first run's output ended before the kill: {}", log())
            }
        }
    }
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "killed mid-run, not ended: {}", log());
    resume_tx.send(()).unwrap();
    let mut first_output = reader.join().unwrap();
    // A write cut by the kill may end in part of a line: not delivered.
    let complete = first_output.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    first_output.truncate(complete);
    let Checkpoint { position, read } =
        checkpoint::load(&checkpoint_path).unwrap().expect("a checkpoint before the first line");
    assert!(position < input_len, "the kill landed before the input was acknowledged");

    // Restart: resumes at the checkpoint and finishes the file.
    let out = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["run", second_config.to_str().unwrap(), "--progress-secs", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let replayed = replayed_in_summary(&stderr);
    let second_output = std::fs::read_to_string(dir.join("out2.ndjson")).unwrap();

    // The restart delivers exactly the lines after the checkpoint, once each.
    let resumed_from = positions.partition_point(|&p| p <= position);
    let mut second: Vec<usize> = second_output.lines().map(id_of).collect();
    second.sort_unstable();
    assert!(
        second.iter().copied().eq(resumed_from..lines as usize),
        "the restart delivers lines {resumed_from}.. exactly once"
    );
    // Every line at least once over both runs; duplicates only in the window.
    let mut seen = vec![0u8; lines as usize];
    for id in std::str::from_utf8(&first_output).unwrap().lines().map(id_of) {
        seen[id] += 1;
    }
    for &id in &second {
        seen[id] += 1;
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    assert_eq!(missing, 0, "lines lost after kill -9 and restart");
    let mut duplicates = 0u64;
    for (id, &n) in seen.iter().enumerate() {
        assert!(n <= 2, "line {id} delivered {n} times by two runs");
        if n == 2 {
            duplicates += 1;
            let p = positions[id];
            assert!(
                p > position && p <= read,
                "duplicate line {id} at {p} outside the replay window {position}..={read}"
            );
        }
    }
    let window = lines_within(&positions, position, read);
    eprintln!(
        "checkpoint at kill: position {position} read {read} (input {input_len} bytes); \
         replayed {replayed}, window {window} lines, duplicates {duplicates}"
    );
    assert_eq!(replayed, window, "replayed counts the lines of the replay window");
    assert!(duplicates <= replayed, "{duplicates} duplicates but replayed {replayed}");
    if read > position {
        assert!(stderr.contains("may be delivered again"), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn settings(workers: usize) -> EngineSettings {
    EngineSettings {
        workers,
        ring_bytes: 1 << 16,
        batch_records: 64,
        placement: Placement::Unpinned,
        arena_bytes: 1 << 16,
        record_bytes_max: 1024,
        ..EngineSettings::default()
    }
}

/// For every batch: checks that the checkpoint on disk has a read limit covering
/// every line of the batch; records the limits seen.
struct LimitCheck {
    checkpoint: PathBuf,
    violations: Arc<AtomicU64>,
    limits: Arc<Mutex<Vec<u64>>>,
}

impl Processor for LimitCheck {
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        let furthest = input.iter().map(|m| m.meta.position).max().unwrap_or(0);
        match checkpoint::load(&self.checkpoint).unwrap() {
            Some(c) if c.read >= furthest => self.limits.lock().unwrap().push(c.read),
            _ => {
                self.violations.fetch_add(1, Ordering::Relaxed);
            }
        }
        for (i, m) in input.iter().enumerate() {
            emit.pass(i as u32, m);
        }
    }
}

/// The invariant that makes `replayed` count every possible duplicate: whenever a
/// worker holds a line, a checkpoint whose read limit covers it is already on disk
/// (the limit is written ahead of reading, not after). With a long interval the
/// limit is extended because reading reaches it; with a short one, by the interval.
#[test]
fn no_line_reaches_a_worker_before_a_checkpoint_covers_it() {
    let dir = temp_dir("limit");
    let input = dir.join("in.ndjson");
    // ~35 MB: past the first read-ahead reservations several times.
    let positions = write_input(&input, 2_500_000);
    let input_len = *positions.last().unwrap();
    for interval in [Duration::from_secs(3600), Duration::from_millis(1)] {
        let checkpoint_path = dir.join("in.ckpt");
        let _ = std::fs::remove_file(&checkpoint_path);
        let violations = Arc::new(AtomicU64::new(0));
        let limits = Arc::new(Mutex::new(Vec::new()));
        let source = FileSource::new(&input, Some(&checkpoint_path), interval, 1024).unwrap();
        let (path, v, l) = (checkpoint_path.clone(), violations.clone(), limits.clone());
        let report = Engine::new(
            settings(2),
            Box::new(source),
            Box::new(move |_| {
                Box::new(LimitCheck {
                    checkpoint: path.clone(),
                    violations: v.clone(),
                    limits: l.clone(),
                })
            }),
            Arc::new(NullSinkFactory),
        )
        .run()
        .unwrap();
        assert_eq!(report.snapshot.get(Counter::Outputs), positions.len() as u64);
        assert_eq!(
            violations.load(Ordering::Relaxed),
            0,
            "a worker got a line past the read limit on disk (interval {interval:?})"
        );
        let mut limits = limits.lock().unwrap().clone();
        limits.sort_unstable();
        limits.dedup();
        assert!(limits.len() >= 3, "the limit was extended while reading: {limits:?}");
        let end = checkpoint::load(&checkpoint_path).unwrap().unwrap();
        assert_eq!(
            end,
            Checkpoint { position: input_len, read: input_len },
            "a complete run leaves no replay window"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A restart counts as `replayed` exactly the lines between the checkpoint's
/// position and its read limit (a limit inside a line, at a line's end, past the
/// end of the file), and a run that reads to the end leaves no window behind.
#[test]
fn replayed_counts_exactly_the_lines_inside_the_previous_read_limit() {
    let dir = temp_dir("replayed");
    let input = dir.join("in.ndjson");
    let positions = write_input(&input, 20_000);
    let input_len = *positions.last().unwrap();
    let position = positions[999];
    for read in [position, positions[4999] - 3, positions[4999], input_len + 4096] {
        let checkpoint_path = dir.join("in.ckpt");
        checkpoint::store(&checkpoint_path, Checkpoint { position, read }).unwrap();
        let source =
            FileSource::new(&input, Some(&checkpoint_path), Duration::from_millis(10), 1024)
                .unwrap();
        let report = Engine::new(
            settings(2),
            Box::new(source),
            Box::new(|_| Box::new(corestream::processor::PassThrough)),
            Arc::new(NullSinkFactory),
        )
        .run()
        .unwrap();
        let s = &report.snapshot;
        assert_eq!(s.get(Counter::Outputs), 19_000, "resumed after line 1000");
        assert_eq!(
            s.get(Counter::Replayed),
            lines_within(&positions, position, read),
            "read limit {read}"
        );
        assert_eq!(
            checkpoint::load(&checkpoint_path).unwrap().unwrap(),
            Checkpoint { position: input_len, read: input_len }
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A crash in the middle of a write leaves a torn last line in an appended output
/// file; the restart cuts it off (its batch was never acknowledged, so it is
/// written again in full) instead of gluing its first line onto it.
#[test]
fn a_torn_last_line_from_a_crash_is_cut_and_written_again_on_restart() {
    let dir = temp_dir("torn");
    let lines = 1_000u64;
    let positions = write_input(&dir.join("in.ndjson"), lines);
    // The state a kill -9 leaves: lines 0..600 acknowledged (checkpoint), lines
    // ..640 written, and half of line 640 written when the process died.
    let acknowledged = positions[599];
    std::fs::write(
        dir.join("in.ckpt"),
        format!("corestream-checkpoint v1 position={acknowledged} read={}\n", positions[700]),
    )
    .unwrap();
    let mut written: String = (0..640).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    written.push_str("{\"id\":6");
    std::fs::write(dir.join("out.ndjson"), &written).unwrap();
    let config = dir.join("pipeline.toml");
    std::fs::write(
        &config,
        "[engine]\nworkers = 2\n[source]\ntype = \"file\"\npath = \"in.ndjson\"\ncheckpoint = \"in.ckpt\"\n\
         [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n",
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_corestream"))
        .args(["run", config.to_str().unwrap(), "--progress-secs", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("cut a torn last line (7 bytes)"), "{stderr}");
    let output = std::fs::read_to_string(dir.join("out.ndjson")).unwrap();
    // Every line is a whole input line (id_of panics on a glued one) ...
    let mut ids: Vec<usize> = output.lines().map(id_of).collect();
    ids.sort_unstable();
    // ... every input line is there, and exactly lines 600..640 twice.
    let mut expected: Vec<usize> = (0..lines as usize).chain(600..640).collect();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}
