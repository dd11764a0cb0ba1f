//! The `corestream` binary: see `corestream --help` and `corestream::cli`.

use corestream::metrics::alloc::CountingAllocator;

/// Counts allocations so `corestream bench` can report allocations per message
/// (one relaxed atomic add per allocation; nothing on the zero-allocation hot path).
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    std::process::exit(corestream::cli::main());
}
