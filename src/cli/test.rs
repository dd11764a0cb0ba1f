//! `corestream test pipeline.toml`: unit tests of a processor chain, offline (cold
//! path), as `vector test` gives Vector's users.
//!
//! The tests live beside the pipeline in `<name>.test.toml` (or `--tests FILE`):
//!
//! ```toml
//! [[test]]
//! name = "a paid order above 100 is routed and reshaped"
//! steps = 4                  # optional: the first N steps only (default: all)
//! input = [{ key = "c-1", payload = '{"id":1,"status":"paid","amount":150.5}' }]
//!
//! [[test.expect]]            # one table per expected output, in order
//! topic = "orders.eu.EUR"    # optional; "" is the sink's default topic
//! key = "c-1"                # optional
//! fields = { id = 1, amount_cents = 15050 }   # optional: JSON fields that must match
//! # payload = '...'          # optional: the exact payload
//!
//! [[test]]
//! name = "an unpaid order is filtered"
//! input = [{ payload = '{"id":2,"status":"open","amount":5.0}' }]
//! expect = []                # nothing comes out
//!
//! [[test]]
//! name = "a malformed order is dead-lettered"
//! input = [{ payload = '{"id":"x"}' }]
//! expect = []
//! failures = [{ input = 0, category = "serialization" }]
//! ```
//!
//! Every test runs its inputs as one batch through the compiled chain, exactly as a
//! worker would. Outputs must match `expect` one to one, in order; failures must
//! match `failures` (none when it is absent). Exit code: 0 all passed, 1 a test
//! failed (with a readable difference), 2 the pipeline or the test file is invalid.

use std::path::{Path, PathBuf};

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;
use serde::Deserialize;

use super::{EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME};
use crate::config::PipelineConfig;
use crate::message::{Headers, Message, Meta, Output};
use crate::processor::{Emit, Failure, Processor};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    test: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    /// Run only the first `steps` steps of the chain.
    steps: Option<usize>,
    input: Vec<TestInput>,
    expect: Vec<Expected>,
    #[serde(default)]
    failures: Vec<ExpectedFailure>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestInput {
    #[serde(default)]
    key: String,
    payload: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    topic: Option<String>,
    key: Option<String>,
    payload: Option<String>,
    fields: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedFailure {
    input: u32,
    category: Option<String>,
}

/// The default test file of `pipeline`: `name.toml` -> `name.test.toml`.
pub fn default_tests_path(pipeline: &Path) -> PathBuf {
    let stem = pipeline.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    pipeline.with_file_name(format!("{stem}.test.toml"))
}

/// Runs the tests of `pipeline` (from `tests`, else the default file).
pub fn run(pipeline: &Path, tests: Option<&Path>) -> i32 {
    let config = match PipelineConfig::load(pipeline) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let tests_path = tests.map_or_else(|| default_tests_path(pipeline), Path::to_path_buf);
    let text = match std::fs::read_to_string(&tests_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("corestream test: cannot read {}: {e}", tests_path.display());
            return EXIT_CONFIG;
        }
    };
    let file: TestFile = match toml::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("corestream test: {}: {e}", tests_path.display());
            return EXIT_CONFIG;
        }
    };
    if file.test.is_empty() {
        eprintln!("corestream test: {} has no [[test]]", tests_path.display());
        return EXIT_CONFIG;
    }
    let mut failed = 0;
    for (number, case) in file.test.iter().enumerate() {
        let steps = case.steps.unwrap_or(config.steps.len());
        if steps > config.steps.len() {
            eprintln!(
                "corestream test: test {} ({:?}): steps = {steps}, but the pipeline has {}",
                number + 1,
                case.name,
                config.steps.len()
            );
            return EXIT_CONFIG;
        }
        let mut chain: Box<dyn Processor> = if steps == 0 {
            Box::new(crate::processor::PassThrough)
        } else {
            match crate::config::steps::compile_steps(&config.steps[..steps], &config.text) {
                Ok(chain) => Box::new(chain),
                Err(d) => {
                    eprintln!("{}", config.error(d));
                    return EXIT_CONFIG;
                }
            }
        };
        let problems = check(chain.as_mut(), case);
        if problems.is_empty() {
            println!("ok    {}", case.name);
        } else {
            failed += 1;
            println!("FAIL  {} ({} test {})", case.name, tests_path.display(), number + 1);
            for problem in problems {
                println!("        {problem}");
            }
        }
    }
    let total = file.test.len();
    println!("{}: {} passed, {failed} failed", pipeline.display(), total - failed);
    if failed == 0 { EXIT_OK } else { EXIT_RUNTIME }
}

/// Runs one test case's inputs as one batch; returns what differs from the
/// expectation (empty: passed).
fn check(chain: &mut dyn Processor, case: &TestCase) -> Vec<String> {
    let arena = Bump::new();
    let inputs: Vec<Message<'_>> = case
        .input
        .iter()
        .enumerate()
        .map(|(i, input)| Message {
            key: input.key.as_bytes(),
            payload: input.payload.as_bytes(),
            headers: Headers::EMPTY,
            meta: Meta { position: i as u64 + 1, ..Meta::default() },
        })
        .collect();
    let mut outputs: BumpVec<'_, Output<'_>> = BumpVec::new_in(&arena);
    let mut failures: BumpVec<'_, Failure<'_>> = BumpVec::new_in(&arena);
    {
        let mut emit = Emit::new(&arena, &mut outputs, &mut failures);
        chain.process(&inputs, &mut emit);
    }
    let mut problems = Vec::new();
    if outputs.len() != case.expect.len() {
        problems.push(format!(
            "expected {} output(s), got {}{}",
            case.expect.len(),
            outputs.len(),
            if outputs.is_empty() { describe_failures(&failures) } else { String::new() }
        ));
    }
    for (i, (got, want)) in outputs.iter().zip(&case.expect).enumerate() {
        compare_output(i + 1, got, want, &mut problems);
    }
    for extra in outputs.iter().skip(case.expect.len()) {
        problems.push(format!("unexpected output: {}", String::from_utf8_lossy(extra.payload)));
    }
    compare_failures(&failures, &case.failures, &mut problems);
    problems
}

fn describe_failures(failures: &[Failure<'_>]) -> String {
    match failures.first() {
        None => " (every input was filtered)".to_string(),
        Some(f) => format!(" (input {} failed: {}: {})", f.input, f.category.name(), f.reason),
    }
}

fn compare_output(n: usize, got: &Output<'_>, want: &Expected, problems: &mut Vec<String>) {
    let payload = String::from_utf8_lossy(got.payload);
    if let Some(topic) = &want.topic
        && got.topic != topic
    {
        problems.push(format!("output {n}: topic: expected {topic:?}, got {:?}", got.topic));
    }
    if let Some(key) = &want.key
        && got.key != key.as_bytes()
    {
        problems.push(format!(
            "output {n}: key: expected {key:?}, got {:?}",
            String::from_utf8_lossy(got.key)
        ));
    }
    if let Some(exact) = &want.payload
        && payload != *exact
    {
        problems.push(format!(
            "output {n}: payload:\n          expected {exact}\n          got      {payload}"
        ));
    }
    let Some(fields) = &want.fields else { return };
    let value: serde_json::Value = match serde_json::from_slice(got.payload) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("output {n}: payload is not JSON ({e}): {payload}"));
            return;
        }
    };
    for (name, expected) in fields {
        let expected = match serde_json::to_value(expected) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("output {n}: field {name}: cannot compare {expected}: {e}"));
                continue;
            }
        };
        match value.get(name) {
            None => problems.push(format!("output {n}: field {name}: missing in {payload}")),
            Some(actual) if !same_json(actual, &expected) => problems
                .push(format!("output {n}: field {name}: expected {expected}, got {actual}")),
            Some(_) => {}
        }
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
            x == y || x.as_f64().is_some_and(|x| y.as_f64() == Some(x))
        }
        _ => a == b,
    }
}

fn compare_failures(got: &[Failure<'_>], want: &[ExpectedFailure], problems: &mut Vec<String>) {
    for w in want {
        match got.iter().find(|f| f.input == w.input) {
            None => problems.push(format!("input {}: expected to fail, it did not", w.input)),
            Some(f) => {
                if let Some(category) = &w.category
                    && f.category.name() != category
                {
                    problems.push(format!(
                        "input {}: failure category: expected {category}, got {} ({})",
                        w.input,
                        f.category.name(),
                        f.reason
                    ));
                }
            }
        }
    }
    for f in got.iter().filter(|f| !want.iter().any(|w| w.input == f.input)) {
        problems.push(format!(
            "input {}: unexpected failure: {}: {}",
            f.input,
            f.category.name(),
            f.reason
        ));
    }
}
