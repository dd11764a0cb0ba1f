//! The reference "orders" pipeline (`shared/bench/README.md`): keep paid orders over
//! 100, route them by region and currency, and rewrite them to a small payload.
//!
//! The schema step makes the six fields the pipeline reads required and typed, so
//! every malformed order is rejected whether or not it would pass the filter (the
//! dataset's `--bad-every` lines must all be counted as errors).

use super::pipeline::{CompileError, Pipeline, compile_toml};

/// The canonical step list, in the configuration language.
pub const ORDERS_STEPS_TOML: &str = r#"# The reference "orders" pipeline.
[[steps]]
type = "schema"
fields = { id = "uint", region = "string", customer = "string", status = "string", amount = "float", currency = "string" }

[[steps]]
type = "filter"
expr = 'status == "paid" && amount > 100.0'

[[steps]]
type = "route"
topic = "orders.${region}.${currency}"

[[steps]]
type = "map"
fields = { id = "id", customer = "customer", amount_cents = "round(amount * 100)", region = "region", topic = "topic" }
"#;

/// Compiles [`ORDERS_STEPS_TOML`].
pub fn orders_pipeline() -> Result<Pipeline, CompileError> {
    compile_toml(ORDERS_STEPS_TOML)
}
