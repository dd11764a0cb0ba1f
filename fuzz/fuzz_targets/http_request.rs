//! The observe server's request head parser: a verdict for any bytes, only 400 / 405
//! / 431 refusals, and every prefix of an accepted head partial
//! (`corestream::observe::http::fuzz_check_request`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corestream::observe::http::fuzz_check_request(data));
