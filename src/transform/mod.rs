//! Compiled transforms: JSON field access, topic templates, expressions, map.
//!
//! Everything here is compiled once from the pipeline configuration and then run per
//! message without heap allocation:
//!
//! - [`json`]: one validating pass over a payload fills a slot per field path;
//! - [`value`]: the values expressions compute with, and their JSON output;
//! - [`expr`]: expressions (filters, map fields) compiled to flat bytecode;
//! - [`template`]: topic templates such as `orders.${region}.${currency}`;
//! - [`pipeline`]: the step chain (schema, filter, route, map) as a
//!   [`crate::processor::Processor`], with its configuration and compile errors;
//! - [`orders`]: the reference "orders" pipeline.

pub mod expr;
pub mod json;
pub mod orders;
pub mod pipeline;
pub mod template;
pub mod value;
