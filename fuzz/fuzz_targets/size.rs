//! Size parser: agreement with a slow reference parser, canonical round-trip, error
//! offsets in bounds (`corestream::parse::size::fuzz_check_size`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corestream::parse::size::fuzz_check_size(data));
