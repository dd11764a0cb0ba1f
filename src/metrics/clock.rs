//! The engine clock: nanoseconds since the first call in this process.
//!
//! Sources stamp `ingest_ns` with it once per batch they write, and workers read it
//! once per batch they hand to the sink, so a message's latency costs two clock reads
//! per *batch*, not per message (a vDSO `clock_gettime` is ~20 ns).

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the engine clock's epoch (monotonic, shared by all threads).
#[inline]
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Milliseconds since the Unix epoch (for message timestamps), 0 if the clock is
/// before 1970.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_is_monotonic_and_unix_time_is_recent() {
        let a = super::now_ns();
        let b = super::now_ns();
        assert!(b >= a);
        assert!(super::unix_ms() > 1_700_000_000_000);
    }
}
