//! CPU placement: one worker per core, pinned when the OS allows it.
//!
//! Pinning keeps a worker's ring, arena and histogram in one core's caches. Where it
//! is refused (containers with a restricted cpuset, fewer cores than workers) the
//! worker runs unpinned and the engine says so once; correctness never depends on it.

use std::sync::atomic::{AtomicBool, Ordering};

/// How workers are placed on cores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// Worker `i` is pinned to the `i`-th available core (wrapping around).
    #[default]
    PinPerCore,
    /// No pinning; the OS schedules workers freely.
    Unpinned,
}

/// Outcome of pinning one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// Pinned to this core id.
    Core(usize),
    /// Not pinned, by configuration.
    NotRequested,
    /// The OS refused or no core list was available.
    Refused,
}

/// The cores this process may run on, read once: `core_affinity::get_core_ids`
/// reports the *calling thread's* mask, which is one core once that thread (or the
/// thread that spawned it) has been pinned.
fn process_cores() -> &'static [core_affinity::CoreId] {
    static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
}

/// Cores this process may run on (as core_affinity reports them).
pub fn available_cores() -> usize {
    process_cores().len()
}

static REFUSAL_REPORTED: AtomicBool = AtomicBool::new(false);

/// Pins the calling thread (worker `worker`) per `placement`.
pub fn pin_current(worker: usize, placement: Placement) -> Pinned {
    if placement == Placement::Unpinned {
        return Pinned::NotRequested;
    }
    let ids = process_cores();
    let outcome = if ids.is_empty() {
        Pinned::Refused
    } else {
        let id = ids[worker % ids.len()];
        if core_affinity::set_for_current(id) { Pinned::Core(id.id) } else { Pinned::Refused }
    };
    if outcome == Pinned::Refused && !REFUSAL_REPORTED.swap(true, Ordering::Relaxed) {
        eprintln!("corestream: CPU pinning refused by the OS; workers run unpinned");
    }
    outcome
}
