//! JSON field extraction: never panics; agrees with serde_json on every path for
//! valid objects and rejects what serde_json rejects
//! (`corestream::transform::json::fuzz_check_json_path`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corestream::transform::json::fuzz_check_json_path(data));
