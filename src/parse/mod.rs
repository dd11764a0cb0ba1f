//! Parsers for the configuration language: durations and sizes.
