//! Pipeline files: never panic; every refusal is located on a real line with a
//! caret; whatever is accepted can run and checks the same way twice
//! (`corestream::config::fuzz_check_config`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corestream::config::fuzz_check_config(data));
