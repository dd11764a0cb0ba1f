//! Expressions: never panic; the compiled (folded, fused) form evaluates exactly like a
//! plain tree-walking reference evaluator
//! (`corestream::transform::expr::reference::fuzz_check_expression`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corestream::transform::expr::reference::fuzz_check_expression(data));
