//! Replays the committed fuzz corpus and every saved crash of every fuzz target
//! through the same invariant checks the fuzzer runs, under plain
//! `cargo test` (no nightly, no libFuzzer).

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/<target>/` and `fuzz/artifacts/<target>/`
/// (the latter may be absent); returns how many files were replayed.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for folder in ["corpus", "artifacts"] {
        let dir = root.join(folder).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            assert_ne!(folder, "corpus", "missing seed corpus {}", dir.display());
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable directory entry").path();
            if path.is_file() {
                let data = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "invariant violated by {}", path.display());
                replayed += 1;
            }
        }
    }
    replayed
}

/// The committed seed corpus has dozens of files per target; fewer means it was lost.
const SEEDS_MIN: usize = 30;

#[test]
fn duration_corpus_holds_every_invariant() {
    let replayed = replay("duration", corestream::parse::duration::fuzz_check_duration);
    assert!(replayed >= SEEDS_MIN, "only {replayed} duration inputs replayed");
}

#[test]
fn size_corpus_holds_every_invariant() {
    let replayed = replay("size", corestream::parse::size::fuzz_check_size);
    assert!(replayed >= SEEDS_MIN, "only {replayed} size inputs replayed");
}

#[test]
fn frame_corpus_holds_every_invariant() {
    let replayed = replay("frame", corestream::ring::frame::fuzz_check_frame);
    assert!(replayed >= SEEDS_MIN, "only {replayed} frame inputs replayed");
}

#[test]
fn template_corpus_holds_every_invariant() {
    let replayed = replay("template", corestream::transform::template::fuzz_check_template);
    assert!(replayed >= SEEDS_MIN, "only {replayed} template inputs replayed");
}

#[test]
fn expression_corpus_holds_every_invariant() {
    let replayed =
        replay("expression", corestream::transform::expr::reference::fuzz_check_expression);
    assert!(replayed >= SEEDS_MIN, "only {replayed} expression inputs replayed");
}

#[test]
fn json_path_corpus_holds_every_invariant() {
    let replayed = replay("json_path", corestream::transform::json::fuzz_check_json_path);
    assert!(replayed >= SEEDS_MIN, "only {replayed} json_path inputs replayed");
}

#[test]
fn config_corpus_holds_every_invariant() {
    let replayed = replay("config", corestream::config::fuzz_check_config);
    assert!(replayed >= SEEDS_MIN, "only {replayed} config inputs replayed");
}

#[test]
fn http_request_corpus_holds_every_invariant() {
    let replayed = replay("http_request", corestream::observe::http::fuzz_check_request);
    assert!(replayed >= SEEDS_MIN, "only {replayed} http_request inputs replayed");
}

/// The checks are not vacuous: a wrong answer is caught.
#[test]
#[should_panic(expected = "invariant violated")]
fn replay_reports_a_violation() {
    fn always_fails(_: &[u8]) {
        panic!("planted");
    }
    replay("template", always_fails);
}
