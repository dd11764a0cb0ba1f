//! Parsers for the configuration language: durations and sizes.

pub mod error;

pub use error::ParseError;
