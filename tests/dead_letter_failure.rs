//! Nothing is lost when the dead-letter sink itself fails: a message the source or
//! the processor chain has to dead-letter, with the dead-letter file unwritable
//! (`/dev/full`), stops the run with exit code 1 and is never acknowledged, so the
//! checkpoint stays before it; a restart with a working dead-letter file delivers or
//! dead-letters every line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXIT_RUNTIME: i32 = 1;

fn run(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corestream"))
        .arg("run")
        .arg(config)
        .output()
        .expect("corestream runs")
}

/// A fresh directory under the target dir for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir); // absent on the first run
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `position=` of the checkpoint file, 0 when there is none.
fn checkpoint_position(path: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else { return 0 };
    let field = text.split_whitespace().find_map(|w| w.strip_prefix("position="));
    field.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad checkpoint {text:?}"))
}

fn config(dir: &Path, dead_letter: &Path, extra: &str) -> PathBuf {
    let text = format!(
        "[engine]\nworkers = 1\nrecord_bytes_max = 200\n\n\
         [source]\ntype = \"file\"\npath = \"in.ndjson\"\ncheckpoint = \"in.ckpt\"\n\n\
         {extra}\
         [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n\n\
         [dead_letter]\ntype = \"file\"\npath = \"{}\"\n",
        dead_letter.display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Runs the input once with `/dev/full` as dead-letter file, then again with a real
/// one; checks the first run stopped before the bad line and the second settled all.
fn check_stop_then_resume(name: &str, lines: &[String], bad: usize, extra: &str) {
    let dir = scratch(name);
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("in.ndjson"), &input).expect("input");
    let bad_position: u64 = lines[..bad].iter().map(|l| l.len() as u64 + 1).sum();

    let failed = run(&config(&dir, Path::new("/dev/full"), extra));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(EXIT_RUNTIME), "{stderr}");
    assert!(stderr.contains("dead-letter"), "{stderr}");
    let checkpoint = dir.join("in.ckpt");
    assert!(
        checkpoint_position(&checkpoint) <= bad_position,
        "checkpoint passed the line that was not dead-lettered: {} > {bad_position}",
        checkpoint_position(&checkpoint)
    );

    let dead = dir.join("dead.ndjson");
    let resumed = run(&config(&dir, &dead, extra));
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(0), "{stderr}");
    let out = std::fs::read_to_string(dir.join("out.ndjson")).expect("output");
    for (i, line) in lines.iter().enumerate().filter(|(i, _)| *i != bad) {
        assert!(out.lines().any(|o| o == line), "line {i} missing from the output");
    }
    let dead_text = std::fs::read_to_string(&dead).expect("dead-letter file");
    let records: Vec<&str> = dead_text.lines().collect();
    assert_eq!(records.len(), 1, "{dead_text}");
    // The position recorded is the end of the line (what a checkpoint resumes after).
    let end = bad_position + lines[bad].len() as u64 + 1;
    assert!(records[0].contains(&format!("\"position\":{end}")), "{}", records[0]);
    assert_eq!(checkpoint_position(&checkpoint), input.len() as u64);
}

fn order(id: usize) -> String {
    format!(
        "{{\"id\":{id},\"region\":\"eu\",\"customer\":\"c{id}\",\"status\":\"paid\",\"amount\":12.5,\"currency\":\"EUR\"}}"
    )
}

#[test]
fn source_dead_letter_failure_stops_without_settling_the_line() {
    let mut lines: Vec<String> = (0..50).map(order).collect();
    lines[20] = format!("{{\"id\":20,\"pad\":\"{}\"}}", "x".repeat(300)); // > record_bytes_max
    check_stop_then_resume("dead_letter_source", &lines, 20, "");
}

#[test]
fn processor_dead_letter_failure_stops_without_acknowledging_the_batch() {
    let mut lines: Vec<String> = (0..50).map(order).collect();
    lines[30] = "{\"id\": \"not a number\"".to_string(); // malformed: the schema step fails it
    let schema =
        "[[processor]]\ntype = \"schema\"\nfields = { id = \"uint\", region = \"string\" }\n\n";
    check_stop_then_resume("dead_letter_processor", &lines, 30, schema);
}

/// Without a `[dead_letter]` section a failed message is not dropped: the run stops
/// with a clear error, the checkpoint stays before the message; `type = "discard"`
/// drops failures on purpose (counted as dead-lettered).
#[test]
fn without_a_dead_letter_section_a_failure_stops_the_run_and_discard_is_explicit() {
    let dir = scratch("dead_letter_default");
    let lines: Vec<String> = (0..20).map(order).collect();
    let mut input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let bad_position = input.len() as u64;
    input.push_str(&"x".repeat(300)); // over record_bytes_max: refused by the source
    input.push('\n');
    std::fs::write(dir.join("in.ndjson"), &input).expect("input");
    let pipeline = |dead_letter: &str| {
        let text = format!(
            "[engine]\nworkers = 1\nrecord_bytes_max = 200\n\n\
             [source]\ntype = \"file\"\npath = \"in.ndjson\"\ncheckpoint = \"in.ckpt\"\n\n\
             [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n{dead_letter}"
        );
        let path = dir.join("pipeline.toml");
        std::fs::write(&path, text).expect("config");
        path
    };

    let stopped = run(&pipeline(""));
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert_eq!(stopped.status.code(), Some(EXIT_RUNTIME), "{stderr}");
    assert!(stderr.contains("no dead-letter destination") && stderr.contains("discard"));
    assert!(checkpoint_position(&dir.join("in.ckpt")) <= bad_position);

    let discarded = run(&pipeline("\n[dead_letter]\ntype = \"discard\"\n"));
    let stderr = String::from_utf8_lossy(&discarded.stderr);
    assert_eq!(discarded.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("dead-lettered 1 (source 1"), "{stderr}");
    assert_eq!(checkpoint_position(&dir.join("in.ckpt")), input.len() as u64);
}
