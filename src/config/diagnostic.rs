//! Configuration errors that point at the mistake: file, line, column, the line
//! itself with a caret under the offending bytes, and a hint.
//!
//! ```text
//! error: unknown field `wrokers`
//!   --> pipeline.toml:3:1
//!    |
//!  3 | wrokers = 2
//!    | ^^^^^^^
//!    = hint: did you mean `workers`?
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the file; `None` when the problem has no location (a missing
    /// section is reported at the start of the file).
    pub span: Option<Range<usize>>,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Diagnostic { span, message: message.into(), hint: None }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A diagnostic together with the file it belongs to, ready to print.
#[derive(Clone, Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub text: String,
    pub diagnostic: Diagnostic,
}

impl ConfigError {
    pub fn new(path: &Path, text: &str, diagnostic: Diagnostic) -> Self {
        ConfigError { path: path.to_path_buf(), text: text.to_string(), diagnostic }
    }

    /// 1-based line and column (in characters) of the diagnostic's start.
    pub fn line_column(&self) -> (usize, usize) {
        let offset = self.diagnostic.span.as_ref().map_or(0, |s| s.start).min(self.text.len());
        line_column(&self.text, offset)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.diagnostic;
        writeln!(f, "error: {}", d.message)?;
        let (line, column) = self.line_column();
        write!(f, "  --> {}:{line}:{column}", self.path.display())?;
        if let Some(span) = &d.span {
            let start = floor_char_boundary(&self.text, span.start.min(self.text.len()));
            let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = self.text[start..].find('\n').map_or(self.text.len(), |i| start + i);
            let line_text = self.text[line_start..line_end].trim_end_matches('\r');
            let end = floor_char_boundary(&self.text, span.end.clamp(start, line_end));
            let width = self.text[start..end].chars().count().max(1);
            let gutter = line.to_string().len();
            writeln!(f)?;
            writeln!(f, "  {:gutter$} |", "")?;
            writeln!(f, "  {line} | {line_text}")?;
            write!(f, "  {:gutter$} | {:pad$}{}", "", "", "^".repeat(width), pad = column - 1)?;
        }
        if let Some(hint) = &d.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The candidate closest to `word` by edit distance, if close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_caret_and_hint() {
        let text = "[engine]\nwrokers = 2\n";
        let err = ConfigError::new(
            Path::new("p.toml"),
            text,
            Diagnostic::new(Some(9..16), "unknown field `wrokers`").hint("did you mean `workers`?"),
        );
        assert_eq!(err.line_column(), (2, 1));
        assert_eq!(
            err.to_string(),
            "error: unknown field `wrokers`\n  --> p.toml:2:1\n    |\n  2 | wrokers = 2\n    | ^^^^^^^\n  = hint: did you mean `workers`?"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_column("a = \"é\" x", 8), (1, 8));
        assert_eq!(line_column("x\ny", 2), (2, 1));
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(did_you_mean("wrokers", ["workers", "ring_bytes"]), Some("workers"));
        assert_eq!(did_you_mean("zzz", ["workers", "ring_bytes"]), None);
    }
}
