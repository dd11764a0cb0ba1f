//! Compiled transforms: JSON field access, topic templates, expressions, map.
//!
//! Everything here is compiled once from the pipeline configuration and then run per
//! message without heap allocation:
//!
//! - [`json`]: one validating pass over a payload fills a slot per field path;
//! - [`value`]: the values expressions compute with, and their JSON output;
//! - [`expr`]: expressions (filters, map fields) compiled to a tree in a `Vec`;
//! - [`template`]: topic templates such as `orders.${region}.${currency}`;
//! - [`pipeline`]: the step chain (schema, filter, route, map) as a
//!   [`crate::processor::Processor`], with its configuration and compile errors;
//! - [`orders`]: the reference "orders" pipeline.
//!
//! The chain's configuration is [`pipeline::StepConfig`] (one per step, values with
//! their spans in the pipeline file); `config::steps` turns the file's
//! `[[processor]]` tables into it and compile errors into diagnostics.

pub mod expr;
pub mod json;
pub mod orders;
pub mod pipeline;
pub mod template;
pub mod value;

pub use pipeline::{CompileError, StepConfig};

/// The compiled processor chain (one clone per worker).
pub type Chain = pipeline::Pipeline;

/// Compiles a chain of steps; `config_text` is the file their spans point into.
pub fn compile(steps: &[StepConfig], config_text: &str) -> Result<Chain, CompileError> {
    pipeline::compile(steps, config_text)
}

/// The reference "orders" pipeline, for `corestream bench`.
pub fn orders_processor() -> Result<Chain, String> {
    orders::orders_pipeline().map_err(|e| e.to_string())
}
