//! `[[processor]]` tables as written, and their way into the transform chain
//! (cold path). The chain owns its configuration ([`StepConfig`], in
//! [`crate::transform::pipeline`]); this module only reads the TOML shape, refuses
//! keys a step type does not take, and turns compile errors into diagnostics.

use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostic, OrderedTable};
use crate::state::enrich::RedisStepConfig;
use crate::transform::Chain;
use crate::transform::pipeline::{CompileError, FieldList, StepConfig};

/// One processor step as written; compiled by [`crate::transform`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub expr: Option<Spanned<String>>,
    pub topic: Option<Spanned<String>>,
    pub default: Option<Spanned<String>>,
    pub fields: Option<Spanned<OrderedTable>>,
    pub key: Option<Spanned<String>>,
    pub window: Option<Spanned<String>>,
    pub capacity: Option<Spanned<i64>>,
    pub entry_bytes: Option<Spanned<i64>>,
    pub eviction: Option<Spanned<String>>,
    pub field: Option<Spanned<String>>,
    pub on_miss: Option<Spanned<String>>,
    pub ttl: Option<Spanned<String>>,
    pub redis: Option<Spanned<RedisStepConfig>>,
    pub table: Option<Spanned<OrderedTable>>,
}

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
        if let Some(span) = raw.table.as_ref().map(Spanned::span) {
            return Err(Diagnostic::new(
                Some(span),
                format!("`table` does not belong in a `{kind}` step"),
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
            key: raw.key.clone(),
            window: raw.window.clone(),
            capacity: raw.capacity.clone(),
            entry_bytes: raw.entry_bytes.clone(),
            eviction: raw.eviction.clone(),
            ttl: raw.ttl.clone(),
            field: raw.field.clone(),
            on_miss: raw.on_miss.clone(),
            redis: raw.redis.clone(),
        });
    }
    Ok(out)
}

/// Compiles the configuration's processor steps.
pub fn compile_steps(steps: &[Spanned<RawStep>], config_text: &str) -> Result<Chain, Diagnostic> {
    crate::transform::compile(&step_configs(steps)?, config_text).map_err(diagnostic)
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
