//! What a pipeline allocates at start, against the machine's memory (cold path).
//!
//! Rings, arenas, sink buffers and the source's read buffer are allocated when the
//! engine starts and kept for the run (see `ARCHITECTURE.md`, "Allocate at start").
//! Their total is known from the config alone, so `validate` and `run` compare it
//! with `/proc/meminfo`: above the machine's total memory the start could never
//! succeed (an error); above what is available now it may push the machine into
//! swap or the OOM killer (a warning). Not counted: librdkafka's own queues, the
//! per-message arena growth beyond `arena_bytes`, and the code and stacks.

use super::{PipelineConfig, SinkSpec, SourceSpec};
use crate::limits::SOURCE_READ_BYTES;

/// The machine's memory in bytes, as `/proc/meminfo` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineMemory {
    pub total: u64,
    pub available: u64,
}

impl MachineMemory {
    /// Reads `/proc/meminfo`; `None` where it does not exist or cannot be parsed.
    pub fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }

    /// [`MachineMemory::read`] once per process: a pipeline is checked once per run,
    /// and the fuzz target checks thousands per second.
    pub fn cached() -> Option<Self> {
        static MACHINE: std::sync::OnceLock<Option<MachineMemory>> = std::sync::OnceLock::new();
        *MACHINE.get_or_init(Self::read)
    }

    /// Parses the `MemTotal:` and `MemAvailable:` lines (in kB).
    pub fn parse(meminfo: &str) -> Option<Self> {
        let field = |name: &str| -> Option<u64> {
            let line = meminfo.lines().find(|l| l.starts_with(name))?;
            let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
            kb.checked_mul(1024)
        };
        Some(MachineMemory { total: field("MemTotal:")?, available: field("MemAvailable:")? })
    }
}

/// Bytes allocated at start, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartMemory {
    pub rings: u64,
    pub arenas: u64,
    pub sink_buffers: u64,
    pub source_buffer: u64,
    /// Caches of state steps (`dedup`), all workers.
    pub state: u64,
}

impl StartMemory {
    /// `state_per_worker`: what the compiled chain's state steps allocate per worker.
    pub fn of(config: &PipelineConfig, state_per_worker: u64) -> Self {
        let workers = config.engine.workers as u64;
        let sink_per_worker = match &config.sink {
            SinkSpec::File { writer, .. } | SinkSpec::Stdout { writer, .. } => writer.start_bytes(),
            SinkSpec::Null | SinkSpec::Kafka(_) => 0,
        } as u64;
        let source_buffer = match config.source {
            SourceSpec::File { .. } | SourceSpec::Stdin => {
                (config.engine.record_bytes_max + SOURCE_READ_BYTES) as u64
            }
            SourceSpec::Generator(_) | SourceSpec::Kafka(_) => 0,
        };
        StartMemory {
            rings: workers * config.engine.ring_bytes as u64,
            arenas: workers * config.engine.arena_bytes as u64,
            sink_buffers: workers * sink_per_worker,
            source_buffer,
            state: workers * state_per_worker,
        }
    }

    pub fn total(&self) -> u64 {
        self.rings + self.arenas + self.sink_buffers + self.source_buffer + self.state
    }

    fn breakdown(&self) -> String {
        use crate::parse::size::DisplaySize as S;
        format!(
            "rings {}, arenas {}, sink buffers {}, read buffer {}, state caches {}",
            S(self.rings),
            S(self.arenas),
            S(self.sink_buffers),
            S(self.source_buffer),
            S(self.state)
        )
    }
}

/// What the start-time total means on `machine`: `Err` when it exceeds the total
/// memory, a warning when it exceeds what is available now, else nothing.
pub fn check(start: &StartMemory, machine: MachineMemory) -> Result<Option<String>, String> {
    use crate::parse::size::DisplaySize as S;
    let total = start.total();
    if total > machine.total {
        return Err(format!(
            "the pipeline allocates {} at start ({}), more than this machine's {} of memory",
            S(total),
            start.breakdown(),
            S(machine.total)
        ));
    }
    if total > machine.available {
        return Ok(Some(format!(
            "the pipeline allocates {} at start ({}), more than the {} available now: \
             the machine may swap or the OOM killer may stop the run",
            S(total),
            start.breakdown(),
            S(machine.available)
        )));
    }
    Ok(None)
}

/// What `memory_limit` means for a pipeline that allocates `start` at start:
/// `Err` when intake could never resume under it (see
/// [`crate::source::pressure::MemoryMarks::problem`]), a warning when it is above
/// the machine's total memory (the OOM killer or swap come first), else nothing.
pub fn check_limit(
    start: &StartMemory,
    limit: u64,
    machine: Option<MachineMemory>,
) -> Result<Option<String>, String> {
    use crate::parse::size::DisplaySize as S;
    if let Some(problem) = crate::source::pressure::MemoryMarks::problem(limit, start.total()) {
        return Err(format!("{problem} ({})", start.breakdown()));
    }
    Ok(machine.filter(|m| limit > m.total).map(|m| {
        format!(
            "engine.memory_limit {} is above this machine's {} of memory: the machine runs out \
             before intake pauses",
            S(limit),
            S(m.total)
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_parsed_and_totals_are_compared() {
        let machine = MachineMemory::parse(
            "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   1000000 kB\n",
        )
        .unwrap();
        assert_eq!(machine, MachineMemory { total: 24_000_000 * 1024, available: 1_024_000_000 });
        assert_eq!(MachineMemory::parse("MemTotal: 5 kB\n"), None);

        let small = StartMemory {
            rings: 16 << 20,
            arenas: 8 << 20,
            sink_buffers: 0,
            source_buffer: 0,
            state: 0,
        };
        assert_eq!(check(&small, machine), Ok(None));
        let big = StartMemory { rings: 2 << 30, ..small };
        let warning = check(&big, machine).unwrap().expect("above available: a warning");
        assert!(warning.contains("available"), "{warning}");
        let huge = StartMemory { arenas: 256 << 30, ..small };
        let error = check(&huge, machine).unwrap_err();
        assert!(error.contains("more than this machine's"), "{error}");
        assert_eq!(check_limit(&small, 1 << 30, Some(machine)), Ok(None));
        let rings = StartMemory { rings: 24 << 20, ..small };
        let tight = check_limit(&rings, 64 << 20, Some(machine)).unwrap_err();
        assert!(
            tight.contains("allocates 32MiB at start") && tight.contains("rings 24MiB"),
            "{tight}"
        );
        let above = check_limit(&small, 64 << 30, Some(machine)).unwrap().expect("a warning");
        assert!(above.contains("above this machine's"), "{above}");
        assert_eq!(check_limit(&small, 64 << 30, None), Ok(None));
        let caches = StartMemory { state: 256 << 30, ..small };
        let error = check(&caches, machine).unwrap_err();
        assert!(error.contains("state caches 256GiB"), "{error}");
    }
}
