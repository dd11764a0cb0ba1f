//! Errors that point at the mistake: a byte offset into the input, a static reason,
//! and a renderer that shows the input with a caret under the offset.
//!
//! Parsers return [`ParseError`] without allocating; only rendering (for a human, at
//! configuration time) builds a string.

use std::fmt;

/// A parse failure at a byte offset of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the first offending byte (`input.len()` for "unexpected end").
    pub offset: usize,
    /// Bytes the caret underlines (at least 1 when rendered).
    pub len: usize,
    /// What is wrong, in a few words: "unknown unit `x`" style text without values.
    pub reason: &'static str,
}

impl ParseError {
    pub const fn new(offset: usize, len: usize, reason: &'static str) -> Self {
        ParseError { offset, len, reason }
    }

    /// Shows `input` on one line and a caret line under the offending bytes.
    pub fn caret<'a>(&'a self, input: &'a str) -> Caret<'a> {
        Caret { input, offset: self.offset, len: self.len, reason: self.reason }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for ParseError {}

/// Display adapter returned by [`ParseError::caret`]:
///
/// ```text
///   1m3x0s
///     ^ unknown unit
/// ```
pub struct Caret<'a> {
    input: &'a str,
    offset: usize,
    len: usize,
    reason: &'a str,
}

impl<'a> Caret<'a> {
    /// A caret display for any message (not only static reasons).
    pub fn new(input: &'a str, offset: usize, len: usize, reason: &'a str) -> Self {
        Caret { input, offset, len, reason }
    }
}

impl fmt::Display for Caret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Column counts characters, not bytes, so the caret lines up under UTF-8 text.
        let offset = self.offset.min(self.input.len());
        let prefix = self.input.get(..offset).unwrap_or(self.input);
        let column = prefix.chars().count();
        let width = self
            .input
            .get(offset..(offset + self.len).min(self.input.len()))
            .map_or(1, |s| s.chars().count())
            .max(1);
        writeln!(f, "  {}", self.input)?;
        write!(f, "  {:column$}{} {}", "", "^".repeat(width), self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_points_at_the_offset_in_characters() {
        let err = ParseError::new(3, 1, "unknown unit");
        assert_eq!(err.caret("1m3x").to_string(), "  1m3x\n     ^ unknown unit");
        // "é" is two bytes but one column.
        let err = ParseError::new(3, 2, "bad");
        assert_eq!(err.caret("aéxy").to_string(), "  aéxy\n    ^^ bad");
        let end = ParseError::new(2, 0, "unexpected end");
        assert_eq!(end.caret("1m").to_string(), "  1m\n    ^ unexpected end");
    }
}
