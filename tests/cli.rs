//! The `corestream` binary: exit codes, error output, clean shutdown on SIGINT with
//! checkpoint and resume, the second signal, unknown retry variables, `validate`,
//! `bench --json` (with the pinning that happened), and the adaptive batch size in
//! `run`'s summary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corestream"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corestream-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill failed");
}

#[test]
fn missing_input_file_is_one_line_and_exit_code_3() {
    let dir = temp_dir("missing");
    let config = dir.join("p.toml");
    write(&config, "[source]\ntype = \"file\"\npath = \"nope.ndjson\"\n[sink]\ntype = \"null\"\n");
    let out = binary().args(["run", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot open input file") && stderr.contains("nope.ndjson"),
        "{stderr}"
    );
}

#[test]
fn invalid_config_is_exit_code_2_with_position() {
    let dir = temp_dir("invalid");
    let config = dir.join("p.toml");
    write(&config, "[engine]\nworkers = 0\n[source]\ntype = \"stdin\"\n[sink]\ntype = \"null\"\n");
    for command in ["run", "validate"] {
        let out = binary().args([command, config.to_str().unwrap()]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("p.toml:2:11"), "{stderr}");
        assert!(stderr.contains("workers"), "{stderr}");
    }
}

#[test]
fn validate_accepts_the_examples() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        let needs_kafka =
            std::fs::read_to_string(&path).is_ok_and(|t| t.contains("type = \"kafka\""));
        if needs_kafka && !cfg!(feature = "kafka") {
            continue; // validated by the default (Kafka) build
        }
        // `name.test.toml` holds the unit tests of `name.toml` (`corestream test`).
        let is_tests = path.to_str().is_some_and(|p| p.ends_with(".test.toml"));
        if path.extension().is_some_and(|e| e == "toml") && !is_tests {
            let out = binary().args(["validate", path.to_str().unwrap()]).output().unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
        }
    }
}

#[test]
fn bench_json_has_the_documented_fields() {
    let out =
        binary().args(["bench", "--messages", "200000", "--json", "--unpinned"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in [
        "messages",
        "seconds",
        "msgs_per_sec",
        "bytes_per_sec",
        "allocations_per_message",
        "workers",
    ] {
        assert!(value.get(key).is_some(), "missing {key}: {value}");
    }
    for key in ["p50", "p99", "p999", "max"] {
        assert!(value["latency_ns"].get(key).is_some(), "missing latency_ns.{key}");
    }
    assert_eq!(value["messages"], 200_000);
    assert_eq!(value["per_worker"].as_array().map(Vec::len), Some(1));
    // --unpinned: what happened, not what was asked for.
    assert_eq!(value["pinned"], false);
    assert_eq!(value["pinned_workers"], 0);
    assert_eq!(value["per_worker"][0]["pinning"], "not_requested");
    assert_eq!(value["per_worker"][0]["core"], serde_json::Value::Null);
}

fn bench_json(args: &[&str]) -> (serde_json::Value, String) {
    let out = binary().args(["bench", "--json"]).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).expect("one JSON object"), stderr)
}

/// More workers than cores: nobody is pinned (never two workers on one core), the
/// JSON says so per worker and overall, and stderr says it once.
#[test]
fn bench_with_more_workers_than_cores_runs_unpinned_and_says_so_once() {
    let cores = corestream::worker::pin::available_cores();
    if cores == 0 || cores >= corestream::limits::WORKERS_MAX {
        eprintln!("note: {cores} cores reported; cannot have more workers than cores here");
        return;
    }
    let workers = (cores + 1).to_string();
    let (value, stderr) = bench_json(&["--workers", &workers, "--messages", "20000"]);
    let notice = format!("corestream: {workers} workers on {cores} cores: running unpinned");
    assert_eq!(stderr.lines().filter(|l| *l == notice).count(), 1, "{stderr}");
    assert!(!stderr.contains("refused"), "{stderr}");
    assert_eq!(value["pinned"], false, "{value}");
    assert_eq!(value["pinned_workers"], 0, "{value}");
    let per_worker = value["per_worker"].as_array().unwrap();
    assert_eq!(per_worker.len(), cores + 1);
    for w in per_worker {
        assert_eq!(w["pinned"], false, "{w}");
        assert_eq!(w["pinning"], "too_few_cores", "{w}");
        assert_eq!(w["core"], serde_json::Value::Null, "{w}");
    }
}

/// Pinning requested with workers <= cores: the JSON reports the outcome of each
/// worker (pinned to a core, or refused by the OS with the notice), consistently.
#[test]
fn bench_json_reports_the_pinning_that_happened() {
    let (value, stderr) = bench_json(&["--workers", "1", "--messages", "20000"]);
    let w = &value["per_worker"][0];
    match w["pinning"].as_str() {
        Some("core") => {
            assert!(w["core"].is_u64(), "{w}");
            assert_eq!(w["pinned"], true);
            assert_eq!(value["pinned"], true);
            assert_eq!(value["pinned_workers"], 1);
            assert!(!stderr.contains("unpinned"), "{stderr}");
        }
        Some("refused") => {
            eprintln!("note: this machine refuses CPU pinning");
            assert_eq!(w["pinned"], false);
            assert_eq!(value["pinned"], false);
            assert_eq!(stderr.matches("pinning refused").count(), 1, "{stderr}");
        }
        other => panic!("one worker on >= 1 core: pinned or refused, not {other:?}: {value}"),
    }
}

fn run_generator(name: &str, engine: &str) -> String {
    let dir = temp_dir(name);
    let config = dir.join("p.toml");
    write(
        &config,
        &format!(
            "[engine]\nworkers = 2\npin = false\nbatch_records = 256\n{engine}\
             [source]\ntype = \"generator\"\ncount = 20000\n[sink]\ntype = \"null\"\n"
        ),
    );
    let out =
        binary().args(["run", config.to_str().unwrap(), "--progress-secs", "0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
    stderr
}

/// `run`'s summary shows each worker's current batch size when it adapts, and no
/// batch size line when it is fixed.
#[test]
fn run_summary_shows_the_adaptive_batch_size_per_worker() {
    let stderr = run_generator(
        "adaptive",
        "batch_time_target = \"1ms\"\nbatch_records_min = 16\nbatch_records_max = 1024\n",
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("  batch size now (adaptive 16..=1024 toward 1ms): "))
        .unwrap_or_else(|| panic!("no batch size line: {stderr}"));
    for worker in 0..2 {
        let size: u64 = line
            .split(&format!("worker {worker} "))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("worker {worker} missing: {line}"));
        assert!((16..=1024).contains(&size), "{line}");
    }
    let fixed = run_generator("fixed", "");
    assert!(fixed.contains("corestream: done in"), "{fixed}");
    assert!(!fixed.contains("batch size"), "{fixed}");
}

/// Ids of `{"id":N}` lines, sorted.
fn sorted_ids(text: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = text
        .lines()
        .map(|l| l.trim_start_matches("{\"id\":").trim_end_matches('}').parse().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

/// SIGINT in the middle of a file -> stdout run: exit 0, the checkpoint covers exactly
/// what was written and leaves no replay window; a second run resumes there; in the
/// end every line is in the output exactly once.
///
/// The test reads the engine's stdout and sends the signal after a quarter of the
/// input has come out, without reading further until then: the engine can only get
/// as far as its rings, sink buffers and the pipe hold (a few MiB with these
/// settings), far less than the rest of the ~40 MB input. So the signal always lands
/// mid-run and the restart always has lines left to resume with.
#[test]
fn sigint_drains_checkpoints_and_a_restart_resumes_without_loss() {
    use std::io::{BufRead, Read};
    let dir = temp_dir("sigint");
    let input = dir.join("in.ndjson");
    let lines = 3_000_000u64;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..lines {
            writeln!(f, "{{\"id\":{i}}}").unwrap();
        }
    }
    let input_len = std::fs::metadata(&input).unwrap().len();
    let config = dir.join("p.toml");
    write(
        &config,
        "[engine]\nworkers = 2\npin = false\nring_bytes = \"1MiB\"\nrecord_bytes_max = \"64KiB\"\n\
         [source]\ntype = \"file\"\npath = \"in.ndjson\"\ncheckpoint = \"in.ckpt\"\ncheckpoint_interval = \"10ms\"\n\
         [sink]\ntype = \"stdout\"\n",
    );
    let mut child = binary()
        .args(["run", config.to_str().unwrap(), "--progress-secs", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = Vec::new();
    while (first.len() as u64) < input_len / 4 {
        let n = stdout.read_until(b'\n', &mut first).unwrap();
        assert!(n > 0, "the output ended before a quarter of the input");
    }
    signal(&child, libc::SIGINT);
    stdout.read_to_end(&mut first).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let first = sorted_ids(std::str::from_utf8(&first).unwrap());
    let written = first.len() as u64;
    assert!(written < lines, "the signal landed after the input ended: resume not exercised");
    assert!(first.iter().copied().eq(0..written), "a clean stop writes the first lines, once");
    let checkpoint = corestream::ack::checkpoint::load(&dir.join("in.ckpt"))
        .unwrap()
        .expect("checkpoint written");
    let input_text = std::fs::read(&input).unwrap();
    let lines_before_checkpoint =
        input_text[..checkpoint.position as usize].iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(written, lines_before_checkpoint, "a clean stop writes exactly what it checkpoints");
    assert_eq!(checkpoint.read, checkpoint.position, "a clean stop leaves no replay window");
    // Restart: resumes at the checkpoint and finishes the file.
    let out =
        binary().args(["run", config.to_str().unwrap(), "--progress-secs", "0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(" replayed 0\n"), "nothing to replay after a clean stop: {stderr}");
    let second = sorted_ids(std::str::from_utf8(&out.stdout).unwrap());
    assert!(
        second.iter().copied().eq(written..lines),
        "the restart writes exactly the lines after the checkpoint, once"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An unknown `CORESTREAM_RETRY_*` variable (a typo) stops startup with exit code 2,
/// naming it with a suggestion and the known variables; the right name is accepted.
#[test]
fn an_unknown_retry_variable_stops_startup_naming_it() {
    let dir = temp_dir("env");
    let config = dir.join("p.toml");
    write(&config, "[source]\ntype = \"stdin\"\n[sink]\ntype = \"null\"\n");
    // Only the variables set here, whatever the environment running the tests has.
    let command = |command: &str, var: &str| {
        let mut c = binary();
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().to_ascii_uppercase().starts_with("CORESTREAM_") {
                c.env_remove(name);
            }
        }
        c.args([command, config.to_str().unwrap()]).env(var, "3").stdin(Stdio::null());
        c.output().unwrap()
    };
    for subcommand in ["validate", "run"] {
        let out = command(subcommand, "CORESTREAM_RETRY_MAX_ATTEMPT");
        assert_eq!(out.status.code(), Some(2), "{subcommand}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "unknown environment variable CORESTREAM_RETRY_MAX_ATTEMPT \
                 (did you mean CORESTREAM_RETRY_MAX_ATTEMPTS?)"
            ),
            "{stderr}"
        );
        assert!(stderr.contains("known variables: CORESTREAM_RETRY_STRATEGY"), "{stderr}");
    }
    let out = command("validate", "CORESTREAM_RETRY_MAX_ATTEMPTS");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_attempts       3"));
}

/// A second SIGINT while the first shutdown is stuck (stdout nobody reads) exits at
/// once with code 130.
#[test]
fn second_sigint_exits_at_once_with_130() {
    let dir = temp_dir("second");
    let config = dir.join("p.toml");
    write(
        &config,
        "[engine]\nworkers = 1\npin = false\n[source]\ntype = \"generator\"\n[sink]\ntype = \"stdout\"\n",
    );
    // stdout is a pipe we stop reading: the sink blocks once the pipe is full, so the
    // first shutdown cannot finish flushing.
    let mut child = binary()
        .args(["run", config.to_str().unwrap(), "--progress-secs", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready: the first output bytes arrive only after the signal handlers are
    // installed and the engine runs.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut first).expect("the engine writes output");
    let (lines, stderr_lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    signal(&child, libc::SIGINT);
    // The first signal is handled once the engine says it is stopping; from then on
    // it drains into a pipe nobody reads, which can never finish.
    loop {
        let line = stderr_lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the first SIGINT starts a shutdown");
        if line.contains("stopping: draining") {
            break;
        }
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first shutdown should be blocked on the full pipe"
    );
    signal(&child, libc::SIGINT);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(130));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "second signal did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(stdout); // open until the exit: the pipe stays full, never broken
}

/// Rough edges a new user hit: flags named as typed, nothing measured is refused,
/// `validate` takes several files and prints each heading once.
#[test]
fn bench_flags_and_validate_of_several_files_say_what_was_typed() {
    let out = binary().args(["bench", "--batch", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--batch:") && !stderr.contains("--batch-records"), "{stderr}");
    let out = binary().args(["bench", "--messages", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));

    let dir = temp_dir("validate-several");
    let good = dir.join("good.toml");
    write(&good, "[source]\ntype = \"generator\"\n[sink]\ntype = \"null\"\n");
    let bad = dir.join("bad.toml");
    write(&bad, "[source]\ntype = \"generator\"\n");
    let out = binary()
        .args(["validate", good.to_str().unwrap(), bad.to_str().unwrap(), good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "the worst file decides");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches(": valid").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("retry:").count(), 2, "one retry heading per file: {stdout}");
    assert!(!stdout.contains("retry (effective"), "{stdout}");
    assert!(stdout.contains("processor chain: (none"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing [sink] section"));
}

/// `corestream test`: the example's tests pass; a wrong expectation fails with the
/// difference (exit 1); a broken test file is exit 2.
#[test]
fn test_command_passes_the_examples_and_shows_differences() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.toml");
    let out = binary().args(["test", example.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");

    let dir = temp_dir("test-command");
    let tests = dir.join("wrong.test.toml");
    write(
        &tests,
        "[[test]]\nname = \"wrong cents\"\ninput = [{ payload = '{\"id\":1,\"customer\":\"c\",\"region\":\"eu\",\"status\":\"paid\",\"amount\":150.5,\"currency\":\"EUR\"}' }]\n\
         [[test.expect]]\ntopic = \"orders.eu.USD\"\nfields = { amount_cents = 1 }\n\
         [[test]]\nname = \"expects an output that is filtered\"\ninput = [{ payload = '{\"id\":2,\"customer\":\"c\",\"region\":\"eu\",\"status\":\"open\",\"amount\":1.0,\"currency\":\"EUR\"}' }]\n\
         [[test.expect]]\nfields = { id = 2 }\n",
    );
    let out = binary()
        .args(["test", example.to_str().unwrap(), "--tests", tests.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  wrong cents"), "{stdout}");
    assert!(
        stdout.contains("topic: expected \"orders.eu.USD\", got \"orders.eu.EUR\""),
        "{stdout}"
    );
    assert!(stdout.contains("field amount_cents: expected 1, got 15050"), "{stdout}");
    assert!(stdout.contains("expected 1 output(s), got 0 (every input was filtered)"), "{stdout}");
    assert!(stdout.contains("0 passed, 2 failed"), "{stdout}");

    write(&tests, "[[test]]\nname = \"no input\"\nexpect = []\n");
    let out = binary()
        .args(["test", example.to_str().unwrap(), "--tests", tests.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("input"));
}
