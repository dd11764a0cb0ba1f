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
    /// Byte range in the file; `None` when the problem has no place in the file
    /// (see [`Diagnostic::place`] for what is said instead).
    pub span: Option<Range<usize>>,
    pub message: String,
    pub hint: Option<String>,
    /// Where a problem without a span comes from (ignored when `span` is set).
    pub place: Place,
}

/// Where a problem that is not at a span of the file comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Place {
    /// The file as a whole (it cannot be read, it is not UTF-8 before any line, ...).
    #[default]
    File,
    /// Something missing from the file, which would go at this byte offset (the
    /// caret is drawn there, with "would go here").
    Missing(usize),
    /// An environment variable, not the file.
    Env(String),
}

impl Diagnostic {
    pub fn new(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Diagnostic { span, message: message.into(), hint: None, place: Place::File }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A problem that is not in the file but in the environment variable `var`.
    pub fn in_env(message: impl Into<String>, var: &str) -> Self {
        Diagnostic { place: Place::Env(var.to_string()), ..Diagnostic::new(None, message) }
    }

    /// Something missing from the file, which would go at byte `offset`.
    pub fn missing(message: impl Into<String>, offset: usize) -> Self {
        Diagnostic { place: Place::Missing(offset), ..Diagnostic::new(None, message) }
    }
}

/// A diagnostic together with the file it belongs to, ready to print.
#[derive(Clone, Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub text: String,
    /// Boxed: the error travels in every `Result` of the config path.
    pub diagnostic: Box<Diagnostic>,
}

impl ConfigError {
    pub fn new(path: &Path, text: &str, diagnostic: Diagnostic) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            text: text.to_string(),
            diagnostic: Box::new(diagnostic),
        }
    }

    /// 1-based line and column (in characters) of the diagnostic's start, if it
    /// has a place in the file (a span, or where something missing would go).
    pub fn line_column(&self) -> Option<(usize, usize)> {
        let offset = match (&self.diagnostic.span, &self.diagnostic.place) {
            (Some(span), _) => span.start,
            (None, Place::Missing(offset)) => *offset,
            (None, _) => return None,
        };
        Some(line_column(&self.text, offset.min(self.text.len())))
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
        let marked = match (&d.span, &d.place) {
            (Some(span), _) => Some((span.clone(), None)),
            (None, Place::Missing(at)) => Some((*at..*at, Some("would go here"))),
            (None, Place::Env(var)) => {
                write!(f, "  --> environment variable {var} (not in {})", self.path.display())?;
                None
            }
            (None, Place::File) => {
                write!(f, "  --> {} (the file as a whole, no line of it)", self.path.display())?;
                None
            }
        };
        if let Some((span, label)) = marked {
            self.write_marked_line(f, span, label)?;
        }
        if let Some(hint) = &d.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// `--> file:line:column`, the line, and a caret under `span` (with `label`).
    fn write_marked_line(
        &self,
        f: &mut fmt::Formatter<'_>,
        span: Range<usize>,
        label: Option<&str>,
    ) -> fmt::Result {
        let start = floor_char_boundary(&self.text, span.start.min(self.text.len()));
        let (line, column) = line_column(&self.text, start);
        write!(f, "  --> {}:{line}:{column}", self.path.display())?;
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
        if let Some(label) = label {
            write!(f, " {label}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

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
        assert_eq!(err.line_column(), Some((2, 1)));
        assert_eq!(
            err.to_string(),
            "error: unknown field `wrokers`\n  --> p.toml:2:1\n    |\n  2 | wrokers = 2\n    | ^^^^^^^\n  = hint: did you mean `workers`?"
        );
    }

    #[test]
    fn problems_without_a_span_say_where_they_come_from() {
        let text = "[source]\ntype = \"stdin\"\n";
        let env = ConfigError::new(
            Path::new("p.toml"),
            text,
            Diagnostic::in_env("bad value", "CORESTREAM_RETRY_MAX"),
        );
        assert_eq!(env.line_column(), None);
        assert_eq!(
            env.to_string(),
            "error: bad value\n  --> environment variable CORESTREAM_RETRY_MAX (not in p.toml)"
        );
        let whole =
            ConfigError::new(Path::new("p.toml"), text, Diagnostic::new(None, "unreadable"));
        assert_eq!(
            whole.to_string(),
            "error: unreadable\n  --> p.toml (the file as a whole, no line of it)"
        );
        let missing = ConfigError::new(
            Path::new("p.toml"),
            text,
            Diagnostic::missing("missing [sink] section", text.len()),
        );
        assert_eq!(missing.line_column(), Some((3, 1)));
        assert!(missing.to_string().ends_with("  3 | \n    | ^ would go here"), "{missing}");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(line_column("a = \"é\" x", 8), (1, 8));
        assert_eq!(line_column("x\ny", 2), (2, 1));
    }
}
