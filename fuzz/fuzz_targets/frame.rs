//! Ring record framing: decoding arbitrary bytes never panics; whatever decodes
//! re-encodes to the same bytes; a message built from the input round-trips. The
//! invariants live in the library (`corestream::ring::frame::fuzz_check_frame`) so
//! tests/fuzz_replay.rs replays the corpus under plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corestream::ring::frame::fuzz_check_frame(data));
