//! Topic templates: never panic; rendering equals a naive substitution
//! (`corestream::transform::template::fuzz_check_template`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corestream::transform::template::fuzz_check_template(data));
