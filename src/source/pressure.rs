//! Memory-pressure intake: `[engine] memory_limit`.
//!
//! What the engine queues is already bounded: rings have a fixed size and a source
//! waits on a full ring, the ticket queue bounds what a sink holds unacknowledged.
//! What is not bounded by the engine is memory others hold on the data path's
//! behalf: librdkafka's producer queue and fetch buffers, a library sink that
//! accepts messages into its own queue, caches, the allocator's growth. So the gate
//! watches what the OOM killer and a container limit watch, the process's
//! *resident* memory (`/proc/self/statm`), and the source stops taking input while
//! it is high:
//!
//! ```text
//!   resident ≥ memory_limit (high mark)      → pause: file and stdin stop reading,
//!                                              the generator stops generating, Kafka
//!                                              pauses every assigned partition (it
//!                                              keeps polling, so it stays in its group)
//!   resident ≤ 90% of memory_limit (low mark) → resume
//! ```
//!
//! While paused, the workers keep draining the rings and the sinks keep delivering,
//! so memory held on their behalf is released and intake resumes by itself. A
//! pause is counted (`intake_pauses`, `intake_paused_seconds` and the
//! `intake_paused` gauge in `/stats` and `/metrics`). Memory that pausing cannot
//! release (a cache that only grows, a leak) keeps intake paused: after
//! [`PAUSE_WARN_AFTER`] the source logs that once per pause, naming the figures, so
//! an operator raises the limit or finds the holder; it never reads past the limit.
//!
//! Cost: off by default (one branch per source read). On, one `pread` of `statm`
//! (about 1 µs, no allocation) on the source thread every
//! [`MEMORY_SAMPLE_INTERVAL`], every [`MEMORY_SAMPLE_INTERVAL_NEAR`] above
//! [`MEMORY_NEAR_PERCENT`] of the limit; the workers pay nothing.
//!
//! **Overshoot.** A pause stops new input; what is already in the rings still
//! reaches the sinks. So resident memory can pass the limit by up to the rings'
//! contents (`workers × ring_bytes`) plus what the source reads between two
//! samples (about one read); set the limit that much below a container's hard
//! limit. `tests/memory_limit.rs` measures it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Time between two reads of the resident memory while intake flows far below the
/// limit, and the sleep between two reads while it is paused: a pause ends within
/// 10 ms of the memory falling; the reads cost about 0.01% of a core.
pub const MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// Time between two reads once resident memory is above [`MEMORY_NEAR_PERCENT`] of
/// the limit: the source reads at up to ~2 GB/s, so 10 ms could overshoot the
/// limit by 20 MB; 1 ms keeps that to about one read (the reads then cost about
/// 0.1% of a core).
pub const MEMORY_SAMPLE_INTERVAL_NEAR: Duration = Duration::from_millis(1);

/// Above this share of the limit the gate samples every
/// [`MEMORY_SAMPLE_INTERVAL_NEAR`].
pub const MEMORY_NEAR_PERCENT: u64 = 75;

/// Intake resumes once resident memory falls to this share of `memory_limit`
/// (the low mark). The gap between the marks keeps the source from pausing and
/// resuming on every sample.
pub const MEMORY_RESUME_PERCENT: u64 = 90;

/// Smallest `memory_limit` accepted.
pub const MEMORY_LIMIT_MIN: u64 = 64 << 20;

/// Memory a running engine has beyond what it allocates at start: code, thread
/// stacks, the HTTP server's samples, librdkafka's threads. The low mark must
/// leave at least this much above the start-time allocations, or intake could
/// never resume.
pub const MEMORY_HEADROOM_BYTES: u64 = 32 << 20;

/// A pause longer than this is logged once (with the resident figure and both
/// marks): memory that does not fall while intake is paused is held by something
/// pausing cannot drain.
pub const PAUSE_WARN_AFTER: Duration = Duration::from_secs(10);

/// The two marks of a memory limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMarks {
    /// Pause at or above this many resident bytes (`memory_limit`).
    pub high: u64,
    /// Resume at or below this many ([`MEMORY_RESUME_PERCENT`] of the limit).
    pub low: u64,
}

impl MemoryMarks {
    /// The marks of `limit`; the low mark is rounded down to whole MiB (above 1 MiB)
    /// so that it reads plainly in `validate` and `/stats`.
    pub const fn of(limit: u64) -> Self {
        const MIB: u64 = 1 << 20;
        let low = limit / 100 * MEMORY_RESUME_PERCENT;
        MemoryMarks { high: limit, low: if low >= MIB { low & !(MIB - 1) } else { low } }
    }

    /// The problem with a `limit` for an engine that allocates `start_bytes` at
    /// start, if any (cold path: config checks).
    pub fn problem(limit: u64, start_bytes: u64) -> Option<String> {
        use crate::parse::size::DisplaySize as S;
        if limit < MEMORY_LIMIT_MIN {
            return Some(format!("{} is below the minimum of {}", S(limit), S(MEMORY_LIMIT_MIN)));
        }
        let low = Self::of(limit).low;
        let needed = start_bytes.saturating_add(MEMORY_HEADROOM_BYTES);
        if needed > low {
            return Some(format!(
                "{} leaves no room to run: the engine allocates {} at start and needs about {} \
                 more, so resident memory could never fall to the resume mark ({MEMORY_RESUME_PERCENT}% \
                 of the limit, {}) and intake would stay paused",
                S(limit),
                S(start_bytes),
                S(MEMORY_HEADROOM_BYTES),
                S(low)
            ));
        }
        None
    }
}

/// Reads this process's resident memory without allocating: `statm` stays open
/// and is re-read from offset 0 into a stack buffer.
pub struct ResidentMeter {
    statm: File,
    page_bytes: u64,
}

impl ResidentMeter {
    /// `None` where `/proc/self/statm` does not exist (not Linux).
    pub fn open() -> Option<Self> {
        let statm = File::open("/proc/self/statm").ok()?;
        // SAFETY: sysconf only reads a system constant; it has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page_bytes = u64::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096);
        Some(ResidentMeter { statm, page_bytes })
    }

    /// Resident bytes now; `None` if the read failed.
    pub fn resident_bytes(&self) -> Option<u64> {
        let mut buffer = [0u8; 128];
        let n = self.statm.read_at(&mut buffer, 0).ok()?;
        // "size resident shared ...", in pages.
        let mut fields = buffer[..n].split(|&b| b == b' ');
        let _size = fields.next()?;
        let resident = fields.next()?;
        let pages = std::str::from_utf8(resident).ok()?.trim().parse::<u64>().ok()?;
        Some(pages.saturating_mul(self.page_bytes))
    }
}

/// What [`MemoryGate::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateChange {
    /// Nothing changed (still open, or still paused).
    None,
    /// Resident memory reached the high mark: intake pauses now.
    Paused,
    /// Resident memory fell to the low mark: intake resumes after `paused_for`.
    Resumed { paused_for: Duration },
}

/// The source thread's gate. Owned by the [`super::Ingest`].
pub struct MemoryGate {
    marks: MemoryMarks,
    meter: ResidentMeter,
    next_sample: Instant,
    /// `Some(since)` while paused.
    paused_since: Option<Instant>,
    warned: bool,
    /// Resident bytes at the last sample.
    resident: u64,
}

impl MemoryGate {
    /// A gate for `limit` bytes; `None` where resident memory cannot be read.
    pub fn new(limit: u64) -> Option<Self> {
        Some(MemoryGate {
            marks: MemoryMarks::of(limit),
            meter: ResidentMeter::open()?,
            next_sample: Instant::now(),
            paused_since: None,
            warned: false,
            resident: 0,
        })
    }

    pub fn marks(&self) -> MemoryMarks {
        self.marks
    }

    pub fn is_paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// Resident bytes at the last sample.
    pub fn resident(&self) -> u64 {
        self.resident
    }

    /// Samples the resident memory if [`MEMORY_SAMPLE_INTERVAL`] has passed since
    /// the last sample (else returns [`GateChange::None`] after one clock read),
    /// and moves between open and paused by the marks.
    #[inline]
    pub fn check(&mut self) -> GateChange {
        let now = Instant::now();
        if now < self.next_sample {
            return GateChange::None;
        }
        let Some(resident) = self.meter.resident_bytes() else {
            self.next_sample = now + MEMORY_SAMPLE_INTERVAL;
            return GateChange::None;
        };
        let near = resident >= self.marks.high / 100 * MEMORY_NEAR_PERCENT;
        self.next_sample =
            now + if near { MEMORY_SAMPLE_INTERVAL_NEAR } else { MEMORY_SAMPLE_INTERVAL };
        self.decide(resident, now)
    }

    /// The marks applied to one sample.
    fn decide(&mut self, resident: u64, now: Instant) -> GateChange {
        self.resident = resident;
        match self.paused_since {
            None if resident >= self.marks.high => {
                self.paused_since = Some(now);
                self.warned = false;
                GateChange::Paused
            }
            Some(since) if resident <= self.marks.low => {
                self.paused_since = None;
                GateChange::Resumed { paused_for: now.duration_since(since) }
            }
            Some(since) if !self.warned && now.duration_since(since) >= PAUSE_WARN_AFTER => {
                self.warned = true;
                use crate::parse::size::DisplaySize as S;
                eprintln!(
                    "corestream: intake paused for {:?}: resident memory {} stays above the resume \
                     mark {} (engine.memory_limit {}); what the engine queues drains while paused, \
                     so the rest is held elsewhere (caches, librdkafka, a library sink, the \
                     allocator): raise memory_limit or reduce what holds it",
                    now.duration_since(since),
                    S(resident),
                    S(self.marks.low),
                    S(self.marks.high)
                );
                GateChange::None
            }
            _ => GateChange::None,
        }
    }

    /// Ends a pause in progress (the source stops): how long it lasted.
    pub fn end_pause(&mut self) -> Option<Duration> {
        self.paused_since.take().map(|since| since.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_their_problems() {
        let marks = MemoryMarks::of(1000 << 20);
        assert_eq!(marks.high, 1000 << 20);
        assert_eq!(marks.low, 900 << 20);
        assert_eq!(MemoryMarks::of(1 << 30).low, 921 << 20, "rounded down to MiB");
        assert_eq!(MemoryMarks::problem(1 << 30, 100 << 20), None);
        let small = MemoryMarks::problem(1 << 20, 0).expect("below the minimum");
        assert!(small.contains("below the minimum of 64MiB"), "{small}");
        let tight = MemoryMarks::problem(128 << 20, 100 << 20).expect("no room above start");
        assert!(tight.contains("allocates 100MiB at start"), "{tight}");
        assert!(tight.contains("intake would stay paused"), "{tight}");
    }

    #[test]
    fn resident_memory_is_read_again_and_again() {
        let meter = ResidentMeter::open().expect("Linux has /proc/self/statm");
        let first = meter.resident_bytes().expect("statm parses");
        let held: Vec<u8> = std::hint::black_box(vec![1; 64 << 20]);
        let second = meter.resident_bytes().expect("statm parses again");
        // Other tests of this process allocate and free too: 32 MiB of slack.
        assert!(second >= first + (32 << 20), "{first} then {second} with 64 MiB touched");
        assert_eq!(std::hint::black_box(&held)[held.len() - 1], 1);
    }

    #[test]
    fn the_gate_pauses_at_the_high_mark_and_resumes_at_the_low_mark() {
        let mut gate = MemoryGate::new(1000).unwrap();
        assert_eq!(gate.marks(), MemoryMarks { high: 1000, low: 900 });
        let t0 = Instant::now();
        assert_eq!(gate.decide(999, t0), GateChange::None, "below the high mark");
        assert!(!gate.is_paused());
        assert_eq!(gate.decide(1000, t0), GateChange::Paused);
        assert!(gate.is_paused());
        assert_eq!(gate.decide(1200, t0), GateChange::None, "still paused");
        assert_eq!(gate.decide(901, t0), GateChange::None, "above the low mark: still paused");
        assert!(!gate.warned);
        assert_eq!(gate.decide(950, t0 + PAUSE_WARN_AFTER), GateChange::None, "warned once");
        assert!(gate.warned && gate.is_paused());
        let t1 = t0 + PAUSE_WARN_AFTER + Duration::from_millis(5);
        assert_eq!(gate.decide(900, t1), GateChange::Resumed { paused_for: t1 - t0 });
        assert!(!gate.is_paused());
        assert_eq!(gate.decide(950, t1), GateChange::None, "open between the marks");
        assert_eq!(gate.resident(), 950);
        // Between samples the gate only reads the clock.
        gate.next_sample = Instant::now() + Duration::from_secs(60);
        assert_eq!(gate.check(), GateChange::None, "not sampled");
        assert_eq!(gate.resident(), 950);
        // A real sample against a 1000-byte limit pauses at once.
        gate.next_sample = Instant::now();
        assert_eq!(gate.check(), GateChange::Paused);
        assert!(gate.resident() > 1 << 20);
    }
}
