//! Fuzz invariant for the pipeline file (shared by `fuzz/` and the corpus replay
//! test, so `cargo test` replays every saved input).
//!
//! For any bytes: checking never panics, and
//! - a refused file gets an error that names the file and says what is wrong (a
//!   non-empty message); an error with a place in the file names a line that exists
//!   and a column on that line and shows that line with a caret (under the mistake,
//!   or where a missing part would go); an error without one says so;
//! - an accepted file has engine settings that pass [`EngineSettings::validate`]
//!   (what is accepted can run), checks the same way twice, and its processor chain
//!   either compiles (and can be described, as `corestream validate` does) or is
//!   refused with a located error like any other.
//!
//! [`EngineSettings::validate`]: crate::engine::EngineSettings::validate

use std::path::Path;

use super::build::{self, BuildError};
use super::{ConfigError, PipelineConfig};

const PATH: &str = "/fuzz/pipeline.toml";

#[doc(hidden)]
pub fn fuzz_check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new(PATH);
    let no_env = |_: &str| None;
    let config = match PipelineConfig::parse(path, text, no_env) {
        Ok(config) => config,
        Err(error) => return check_error(&error, text),
    };
    if let Err(e) = config.engine.validate() {
        panic!("accepted engine settings that cannot run: {e}");
    }
    let again = PipelineConfig::parse(path, text, no_env).expect("accepted once, accepted again");
    assert_eq!(format!("{config:?}"), format!("{again:?}"), "checking is deterministic");
    // The summary `corestream validate` prints.
    let shown = format!("{} {} {:?}", config.source, config.sink, config.retry);
    assert!(!shown.is_empty());
    match build::processors(&config) {
        Ok(_) => {
            let described = crate::config::steps::describe_steps(&config.steps, &config.text);
            assert!(!described.trim().is_empty(), "the chain is described");
            assert!(!described.contains("does not compile"), "{described}");
        }
        Err(BuildError::Config(error)) => check_error(&error, text),
        Err(BuildError::Io(e)) => panic!("compiling the chain touched a file: {e}"),
    }
}

fn check_error(error: &ConfigError, text: &str) {
    assert_eq!(error.text, text, "the error carries the text it is about");
    let diagnostic = &error.diagnostic;
    assert!(!diagnostic.message.trim().is_empty(), "an error says what is wrong");
    let shown = error.to_string();
    assert!(shown.starts_with("error: "), "{shown}");
    let Some((line, column)) = error.line_column() else {
        // No place in the file: the error says where the problem is instead.
        assert!(diagnostic.span.is_none(), "{shown}");
        assert!(
            shown.contains("(the file as a whole") || shown.contains("--> environment variable"),
            "{shown}"
        );
        return;
    };
    assert!(shown.contains(&format!("{PATH}:{line}:{column}")), "{shown}");
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(line >= 1 && line <= lines.len(), "line {line} of {}", lines.len());
    let line_text = lines[line - 1];
    assert!(
        column >= 1 && column <= line_text.chars().count() + 1,
        "column {column}: {line_text:?}"
    );
    if diagnostic.span.is_none() {
        assert!(
            shown.contains("^ would go here"),
            "a missing part is shown where it goes: {shown}"
        );
    }
    if let Some(span) = &diagnostic.span {
        assert!(span.start <= text.len(), "span {span:?} past the end ({} bytes)", text.len());
        assert!(
            shown.contains(&format!("{line} | {}", line_text.trim_end_matches('\r'))),
            "{shown}"
        );
        assert!(shown.lines().any(|l| l.trim_end().ends_with('^')), "no caret: {shown}");
    }
}

#[cfg(test)]
mod tests {
    use super::fuzz_check_config;

    #[test]
    fn fuzz_check_accepts_valid_and_broken_files() {
        for input in [
            &b""[..],
            b"[source]\ntype = \"generator\"\n[sink]\ntype = \"null\"\n",
            b"[engine]\nworkers = 0\n",
            b"[source]\ntype = \"stdin\"\n[sink]\ntype = \"stdout\"\n[[processor]]\ntype = \"filter\"\nexpr = \"amount >\"\n",
            b"\xff\xfe",
            "[engine]\nworkers = \"\u{e9}\u{e9}\"\n".as_bytes(),
        ] {
            fuzz_check_config(input);
        }
    }
}
