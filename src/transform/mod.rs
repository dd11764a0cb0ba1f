//! Compiled transforms: JSON field access, topic templates, expressions, map.

use crate::config::{Diagnostic, RawStep};

/// Placeholder until the compiled chain lands: refuses every step with its position.
pub fn compile_steps(
    steps: &[toml::Spanned<RawStep>],
    _config_text: &str,
) -> Result<Chain, Diagnostic> {
    let first = &steps[0];
    Err(Diagnostic::new(
        Some(first.get_ref().kind.span()),
        "processor steps are not available in this build",
    ))
}

/// Placeholder: a readable listing of the steps.
pub fn describe_steps(steps: &[toml::Spanned<RawStep>], _config_text: &str) -> String {
    if steps.is_empty() {
        return "  (none: messages pass through unchanged)".to_string();
    }
    steps.iter().map(|s| format!("  {}", s.get_ref().kind.get_ref())).collect::<Vec<_>>().join("\n")
}

/// Placeholder until the orders pipeline lands.
pub fn orders_processor() -> Result<Chain, String> {
    Err("the orders pipeline is not available in this build".to_string())
}

/// Placeholder compiled chain.
#[derive(Clone, Debug)]
pub struct Chain;

impl crate::processor::Processor for Chain {
    fn process<'a>(
        &mut self,
        input: &[crate::message::Message<'a>],
        emit: &mut crate::processor::Emit<'a, '_>,
    ) {
        crate::processor::PassThrough.process(input, emit);
    }
}
