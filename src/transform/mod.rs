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
//! The functions below connect the chain to [`crate::config`]: its `[[processor]]`
//! tables become [`pipeline::StepConfig`]s and compile errors become diagnostics.

pub mod expr;
pub mod json;
pub mod orders;
pub mod pipeline;
pub mod template;
pub mod value;

use toml::Spanned;

use crate::config::{Diagnostic, RawStep};
use pipeline::{CompileError, FieldList, StepConfig};

/// The compiled processor chain (one clone per worker).
pub type Chain = pipeline::Pipeline;

fn diagnostic(e: CompileError) -> Diagnostic {
    let d = Diagnostic::new(Some(e.span), e.message);
    match e.hint {
        Some(h) => d.hint(h),
        None => d,
    }
}

/// Converts the configuration's steps; keys this chain does not know are errors.
fn step_configs(steps: &[Spanned<RawStep>]) -> Result<Vec<StepConfig>, Diagnostic> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let raw = step.get_ref();
        let kind = raw.kind.get_ref().as_str();
        if matches!(kind, "dedup" | "enrich") {
            return Err(Diagnostic::new(
                Some(raw.kind.span()),
                format!("`{kind}` steps are not implemented yet"),
            )
            .hint("available step types: schema, filter, route, map"));
        }
        let foreign = [
            ("key", raw.key.as_ref().map(Spanned::span)),
            ("window", raw.window.as_ref().map(Spanned::span)),
            ("field", raw.field.as_ref().map(Spanned::span)),
            ("table", raw.table.as_ref().map(Spanned::span)),
        ];
        if let Some((key, Some(span))) = foreign.into_iter().find(|(_, s)| s.is_some()) {
            return Err(Diagnostic::new(
                Some(span),
                format!("`{key}` does not belong in a `{kind}` step"),
            ));
        }
        let fields = raw.fields.as_ref().map(|f| {
            // The configuration keeps no key positions: a key's errors point at its value.
            let list = f
                .get_ref()
                .0
                .iter()
                .map(|(k, v)| (Spanned::new(v.span(), k.clone()), v.clone()))
                .collect();
            Spanned::new(f.span(), FieldList(list))
        });
        out.push(StepConfig {
            kind: raw.kind.clone(),
            expr: raw.expr.clone(),
            topic: raw.topic.clone(),
            default: raw.default.clone(),
            fields,
        });
    }
    Ok(out)
}

/// Compiles the configuration's processor steps.
pub fn compile_steps(steps: &[Spanned<RawStep>], config_text: &str) -> Result<Chain, Diagnostic> {
    pipeline::compile(&step_configs(steps)?, config_text).map_err(diagnostic)
}

/// The compiled chain in readable form, for `corestream validate`.
pub fn describe_steps(steps: &[Spanned<RawStep>], config_text: &str) -> String {
    if steps.is_empty() {
        return "  (none: messages pass through unchanged)".to_string();
    }
    match compile_steps(steps, config_text) {
        Ok(chain) => chain.to_string(),
        Err(d) => format!("  (does not compile: {})", d.message),
    }
}

/// The reference "orders" pipeline, for `corestream bench`.
pub fn orders_processor() -> Result<Chain, String> {
    orders::orders_pipeline().map_err(|e| e.to_string())
}
