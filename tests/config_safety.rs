//! Pipeline files that used to destroy data or crash, and errors that used to point
//! at the wrong place, run through the `corestream` binary as a user runs it.
//!
//! Data: a run that fails at start changes nothing on disk; one file cannot be both
//! input and output (or checkpoint, or dead-letter file) under any spelling; sizes
//! allocated at start have maxima that `validate` checks; every input is counted
//! once. Places: each error names the value the user wrote, or says plainly that
//! it has no place in the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corestream"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corestream-safety-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &str, config: &Path) -> (Option<i32>, String) {
    let out: Output = binary()
        .args([command, config.to_str().unwrap()])
        .env_remove("CORESTREAM_RETRY_MAX_ATTEMPTS")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// This machine's MemTotal in KiB, from /proc/meminfo.
fn mem_total_kb() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal in /proc/meminfo")
}

const ORDERS: &str = "{\"id\":1}\n{\"id\":2}\n";

#[test]
fn a_missing_input_leaves_the_existing_output_and_creates_no_dead_letter_file() {
    let dir = temp_dir("missing-input");
    let output = dir.join("out.ndjson");
    std::fs::write(&output, "kept from the last run\n").unwrap();
    let config = dir.join("p.toml");
    std::fs::write(
        &config,
        "[source]\ntype = \"file\"\npath = \"nope.ndjson\"\n\
         [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
    )
    .unwrap();
    let (code, stderr) = run("run", &config);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("cannot open input file"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "kept from the last run\n");
    assert!(!dir.join("dead.ndjson").exists(), "a failed start creates nothing");
}

#[test]
fn an_input_that_is_a_directory_is_a_file_that_cannot_be_opened() {
    let dir = temp_dir("dir-input");
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let config = dir.join("p.toml");
    std::fs::write(&config, "[source]\ntype = \"file\"\npath = \"in\"\n[sink]\ntype = \"null\"\n")
        .unwrap();
    let (code, stderr) = run("run", &config);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("cannot open input file") && stderr.contains("is a directory"));
}

#[test]
fn one_file_as_input_and_output_is_refused_under_every_spelling() {
    let dir = temp_dir("same-file");
    let input = dir.join("in.ndjson");
    std::fs::write(&input, ORDERS).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(&input, dir.join("link.ndjson")).unwrap();
    let config = dir.join("p.toml");
    for spelling in ["in.ndjson", "./in.ndjson", "sub/../in.ndjson", "link.ndjson"] {
        std::fs::write(
            &config,
            format!(
                "[source]\ntype = \"file\"\npath = \"in.ndjson\"\n\
                 [sink]\ntype = \"file\"\npath = \"{spelling}\"\n"
            ),
        )
        .unwrap();
        for command in ["validate", "run"] {
            let (code, stderr) = run(command, &config);
            assert_eq!(code, Some(2), "{command} {spelling}: {stderr}");
            assert!(
                stderr.contains("sink.path is the same file as source.path")
                    && stderr.contains("p.toml:6:8"),
                "{spelling}: {stderr}"
            );
        }
        assert_eq!(std::fs::read_to_string(&input).unwrap(), ORDERS, "{spelling}");
    }
    // The checkpoint and the dead-letter file, against every other path.
    for (checkpoint, dead, key) in [
        ("out.ndjson", "dead.ndjson", "sink.path is the same file as source.checkpoint"),
        ("in.ckpt", "in.ckpt", "dead_letter.path is the same file as source.checkpoint"),
        ("in.ckpt", "./out.ndjson", "dead_letter.path is the same file as sink.path"),
        ("in.ckpt", "in.ndjson", "dead_letter.path is the same file as source.path"),
    ] {
        std::fs::write(
            &config,
            format!(
                "[source]\ntype = \"file\"\npath = \"in.ndjson\"\ncheckpoint = \"{checkpoint}\"\n\
                 [dead_letter]\ntype = \"file\"\npath = \"{dead}\"\n\
                 [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n"
            ),
        )
        .unwrap();
        let (code, stderr) = run("validate", &config);
        assert_eq!(code, Some(2), "{checkpoint} {dead}: {stderr}");
        assert!(stderr.contains(key), "{checkpoint} {dead}: {stderr}");
    }
}

#[test]
fn sizes_allocated_at_start_have_checked_maxima() {
    let dir = temp_dir("sizes");
    let config = dir.join("p.toml");
    let head = "[source]\ntype = \"generator\"\ncount = 10\n[sink]\ntype = \"null\"\n";
    for (engine, wanted) in [
        ("arena_bytes = \"1TiB\"", "engine.arena_bytes: 1099511627776 bytes is above the maximum"),
        ("record_bytes_max = \"1GiB\"", "engine.record_bytes_max: 1073741824 bytes is above"),
        // With the default 8 MiB ring the record limit is what the user wrote.
        ("record_bytes_max = \"8MiB\"", "engine.record_bytes_max: a ring of 8388608 bytes"),
    ] {
        std::fs::write(&config, format!("[engine]\n{engine}\n{head}")).unwrap();
        let (code, stderr) = run("validate", &config);
        assert_eq!(code, Some(2), "{engine}: {stderr}");
        assert!(stderr.contains(wanted) && stderr.contains("p.toml:2:"), "{engine}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // The ring hint never suggests a ring above the 1 GiB maximum.
    std::fs::write(
        &config,
        format!("[engine]\nring_bytes = \"1GiB\"\nrecord_bytes_max = 536870900\n{head}"),
    )
    .unwrap();
    let (code, stderr) = run("validate", &config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("above the maximum") && !stderr.contains("2147483648"), "{stderr}");

    // 256 workers × (1 GiB ring + 1 GiB arena) is more memory than this machine has
    // (the check reads /proc/meminfo; skipped on a machine with more than 512 GiB).
    let total_kb = mem_total_kb();
    if total_kb < 512 << 20 {
        std::fs::write(
            &config,
            format!(
                "[engine]\nworkers = 256\nring_bytes = \"1GiB\"\narena_bytes = \"1GiB\"\n{head}"
            ),
        )
        .unwrap();
        let (code, stderr) = run("validate", &config);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("more than this machine's"), "{stderr}");
        assert!(stderr.contains("p.toml:3:14"), "points at ring_bytes: {stderr}");
    }
}

#[test]
fn a_memory_limit_must_leave_room_above_what_starts_allocated() {
    let dir = temp_dir("memory-limit");
    let config = dir.join("p.toml");
    let head = "[source]\ntype = \"generator\"\ncount = 10\n";
    let null = "[sink]\ntype = \"null\"\n";
    let dedup =
        "[[processor]]\ntype = \"dedup\"\nkey = \"id\"\nwindow = \"1m\"\ncapacity = 1000000\n";
    for (engine, chain, wanted, at) in [
        (
            "memory_limit = \"1MiB\"",
            "",
            "engine.memory_limit: 1MiB is below the minimum of 64MiB",
            "p.toml:2:16",
        ),
        // 2 × (64 MiB ring + 4 MiB arena) + the read buffer: nothing left under 128 MiB.
        (
            "workers = 2\nring_bytes = \"64MiB\"\nmemory_limit = \"128MiB\"",
            "",
            "engine.memory_limit: 128MiB leaves no room to run",
            "p.toml:4:16",
        ),
        // The engine alone fits; its dedup cache (1M × (64 + 40) B) does not.
        ("workers = 1\nmemory_limit = \"128MiB\"", dedup, "state caches", "p.toml:3:16"),
    ] {
        std::fs::write(&config, format!("[engine]\n{engine}\n{head}{chain}{null}")).unwrap();
        let (code, stderr) = run("validate", &config);
        assert_eq!(code, Some(2), "{engine}: {stderr}");
        assert!(stderr.contains(wanted) && stderr.contains(at), "{engine}: {stderr}");
        assert!(
            stderr.contains("intake would stay paused") || wanted.contains("minimum"),
            "{stderr}"
        );
    }
    std::fs::write(&config, format!("[engine]\nmemory_limit = \"1GiB\"\n{head}{null}")).unwrap();
    let (code, stdout) = {
        let out = binary().args(["validate", config.to_str().unwrap()]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("memory_limit 1GiB (intake pauses there, resumes at 921MiB)"),
        "validate shows both marks: {stdout}"
    );
}

#[test]
fn dedup_caches_count_in_the_start_time_memory_check() {
    let total_kb = mem_total_kb();
    // 64 workers × a 3.4 GB dedup cache each (skipped on a machine with more than
    // 128 GiB): rings and arenas stay at their defaults, the caches are the excess.
    if total_kb >= 128 << 20 {
        return;
    }
    let dir = temp_dir("dedup-memory");
    let config = dir.join("p.toml");
    std::fs::write(
        &config,
        "[engine]\nworkers = 64\n[source]\ntype = \"generator\"\ncount = 10\n\
         [[processor]]\ntype = \"dedup\"\nkey = \"id\"\nwindow = \"1m\"\n\
         capacity = 30000000\nentry_bytes = 64\n[sink]\ntype = \"null\"\n",
    )
    .unwrap();
    let (code, stderr) = run("validate", &config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("more than this machine's"), "{stderr}");
    assert!(stderr.contains("state caches"), "the breakdown names the caches: {stderr}");
    assert!(stderr.contains("p.toml:10:12"), "points at capacity: {stderr}");
    assert!(stderr.contains("lower capacity or entry_bytes"), "{stderr}");
}

#[test]
fn a_line_refused_by_the_source_is_counted_in() {
    let dir = temp_dir("counted");
    let input = dir.join("in.ndjson");
    std::fs::write(&input, format!("{ORDERS}{}\n{{\"id\":3}}\n", "x".repeat(300))).unwrap();
    let config = dir.join("p.toml");
    std::fs::write(
        &config,
        "[engine]\nrecord_bytes_max = 100\nworkers = 1\n\
         [source]\ntype = \"file\"\npath = \"in.ndjson\"\n\
         [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n\
         [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n",
    )
    .unwrap();
    let out = binary().args(["run", config.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("messages in 4 ")
            && stderr.contains("out 3 ")
            && stderr.contains("dead-lettered 1 (source 1"),
        "in = out + filtered + dead-lettered: {stderr}"
    );
    assert_eq!(std::fs::read_to_string(dir.join("out.ndjson")).unwrap().lines().count(), 3);
    assert_eq!(std::fs::read_to_string(dir.join("dead.ndjson")).unwrap().lines().count(), 1);
}

/// `validate`'s error for `text` (which must be refused).
fn refused(name: &str, text: &[u8]) -> String {
    let dir = temp_dir(name);
    let config = dir.join("p.toml");
    std::fs::write(&config, text).unwrap();
    let (code, stderr) = run("validate", &config);
    assert_eq!(code, Some(2), "{stderr}");
    stderr
}

const TAIL: &str = "[source]\ntype = \"generator\"\n[sink]\ntype = \"null\"\n";

#[test]
fn errors_point_at_what_the_user_wrote() {
    // A [retry] value from the file: at the value, without the environment hint.
    let e = refused("retry", format!("{TAIL}[retry]\nmax_attempts = 0\n").as_bytes());
    assert!(e.contains("p.toml:6:16"), "{e}");
    assert!(!e.contains("CORESTREAM_RETRY"), "{e}");

    // Adaptive bounds against the default batch_records: at the bound written,
    // naming the default.
    let e = refused(
        "bounds",
        format!("[engine]\nbatch_time_target = \"1ms\"\nbatch_records_min = 1000\n{TAIL}")
            .as_bytes(),
    );
    assert!(e.contains("p.toml:3:21"), "{e}");
    assert!(e.contains("batch_records = 512"), "{e}");

    // Invalid UTF-8: at the first bad byte.
    let mut bytes = format!("{TAIL}# caf").into_bytes();
    bytes.push(0xe9);
    bytes.extend_from_slice(b"\n");
    let e = refused("utf8", &bytes);
    assert!(e.contains("invalid UTF-8") && e.contains("p.toml:5:6"), "{e}");

    // A multi-line expression: at the line inside the string.
    let e = refused(
        "multiline",
        format!("{TAIL}[[processor]]\ntype = \"filter\"\nexpr = '''\nid > 1 &&\n  nope(id)'''\n")
            .as_bytes(),
    );
    assert!(e.contains("p.toml:9:3") && e.contains("nope"), "{e}");

    // A missing section: said plainly, with where it would go.
    let e = refused("section", b"[source]\ntype = \"generator\"\n");
    assert!(e.contains("missing [sink] section") && !e.contains(":1:1"), "{e}");

    // Smaller ones.
    let e = refused("bare", b"[source]\ntype = file\n[sink]\ntype = \"null\"\n");
    assert!(e.contains("\"file\"") && e.contains("quotes"), "{e}");
    let e = refused(
        "breaker",
        b"[source]\ntype = \"generator\"\n[sink]\ntype = \"null\"\nbreaker_failures = 99999999999\n",
    );
    assert!(e.contains("99999999999") && !e.contains("4294967295"), "{e}");
    let e = refused(
        "chain",
        format!(
            "{TAIL}[[processor]]\ntype = \"filter\"\nexpr = '{}'\n",
            vec!["id == 1"; 300].join(" || ")
        )
        .as_bytes(),
    );
    assert!(e.contains("too long") && !e.contains("nested"), "{e}");
    let flat = format!(
        "{TAIL}[[processor]]\ntype = \"filter\"\nexpr = '{}'\n",
        vec!["id == 1"; 64].join(" || ")
    );
    let dir = temp_dir("flat-chain");
    std::fs::write(dir.join("p.toml"), flat).unwrap();
    let (code, stderr) = run("validate", &dir.join("p.toml"));
    assert_eq!(code, Some(0), "a flat chain of 64 conditions is fine: {stderr}");
}

#[test]
fn errors_about_unopenable_files_end_without_a_category() {
    let dir = temp_dir("category");
    let config = dir.join("p.toml");
    std::fs::write(
        &config,
        "[source]\ntype = \"generator\"\ncount = 1\n[sink]\ntype = \"file\"\npath = \"no/such/dir/out\"\n",
    )
    .unwrap();
    let (code, stderr) = run("run", &config);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("no/such/dir"), "{stderr}");
    assert!(!stderr.contains("(topic_missing)") && !stderr.contains("(configuration)"), "{stderr}");
}

/// Memory the machine will not give at start (here a 2 GB address-space limit
/// against 2 × (1 GiB ring + 1 GiB arena)): a clear error naming the setting, never
/// a panic or an abort, and the existing output is left as it was.
#[test]
fn an_allocation_refused_at_start_is_an_error_and_changes_nothing() {
    let dir = temp_dir("oom");
    let output = dir.join("out.ndjson");
    std::fs::write(&output, "kept\n").unwrap();
    let config = dir.join("p.toml");
    std::fs::write(
        &config,
        "[engine]\nworkers = 2\nring_bytes = \"1GiB\"\narena_bytes = \"1GiB\"\n\
         [source]\ntype = \"generator\"\ncount = 10\n\
         [sink]\ntype = \"file\"\npath = \"out.ndjson\"\n[observe]\nenabled = false\n",
    )
    .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 2000000 && exec '{}' run '{}'",
            env!("CARGO_BIN_EXE_corestream"),
            config.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("out of memory") && stderr.contains("engine."), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("memory allocation of"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "kept\n");
}
