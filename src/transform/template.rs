//! Topic templates.
