//! Duration parser: agreement with a slow reference parser, canonical round-trip,
//! error offsets in bounds. The invariants live in the library
//! (`corestream::parse::duration::fuzz_check_duration`) so that
//! tests/fuzz_replay_parse.rs replays the corpus under plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corestream::parse::duration::fuzz_check_duration(data));
