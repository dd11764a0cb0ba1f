//! CPU placement: one worker per core, pinned when the OS allows it.
//!
//! Pinning keeps a worker's ring, arena and histogram in one core's caches. Where it
//! is refused (containers with a restricted cpuset, fewer cores than workers) the
//! worker runs unpinned and the engine says so once; correctness never depends on it.
//!
//! With more workers than cores, *every* worker runs unpinned: two workers pinned to
//! one core could never move to an idle one, and a pinned worker sharing a core with
//! an unpinned one would be the one that cannot get out of the way.

use std::sync::atomic::{AtomicBool, Ordering};

/// How workers are placed on cores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// Worker `i` is pinned to the `i`-th available core, when there are at least
    /// as many cores as workers; otherwise every worker runs unpinned (said once).
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
    /// Not pinned: more workers than available cores.
    TooFewCores,
}

impl Pinned {
    /// True when the worker is pinned to a core.
    pub fn is_pinned(self) -> bool {
        matches!(self, Pinned::Core(_))
    }

    /// The core id, when pinned.
    pub fn core(self) -> Option<usize> {
        match self {
            Pinned::Core(id) => Some(id),
            _ => None,
        }
    }

    /// A short machine-readable name: "core", "not_requested", "refused",
    /// "too_few_cores".
    pub fn name(self) -> &'static str {
        match self {
            Pinned::Core(_) => "core",
            Pinned::NotRequested => "not_requested",
            Pinned::Refused => "refused",
            Pinned::TooFewCores => "too_few_cores",
        }
    }
}

/// What to do for one worker, decided before touching the OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Pin to the `i`-th available core (an index into the core list).
    Pin(usize),
    /// Do not try; the outcome is this (never [`Pinned::Core`]).
    Unpinned(Pinned),
}

/// Placement of worker `worker` of `workers` on `cores` available cores: one worker
/// per core when they fit, otherwise none pinned.
pub fn plan(worker: usize, workers: usize, cores: usize, placement: Placement) -> Plan {
    debug_assert!(worker < workers.max(1));
    if placement == Placement::Unpinned {
        Plan::Unpinned(Pinned::NotRequested)
    } else if cores == 0 {
        Plan::Unpinned(Pinned::Refused)
    } else if workers > cores {
        Plan::Unpinned(Pinned::TooFewCores)
    } else {
        Plan::Pin(worker)
    }
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

/// Set once any worker of this process ran unpinned against the request.
static REFUSAL_REPORTED: AtomicBool = AtomicBool::new(false);

/// The line said (once per process) when a worker requested pinning but runs
/// unpinned; `None` when there is nothing to say.
pub fn unpinned_notice(outcome: Pinned, workers: usize, cores: usize) -> Option<String> {
    match outcome {
        Pinned::Refused => {
            Some("corestream: CPU pinning refused by the OS; workers run unpinned".to_string())
        }
        Pinned::TooFewCores => {
            Some(format!("corestream: {workers} workers on {cores} cores: running unpinned"))
        }
        Pinned::Core(_) | Pinned::NotRequested => None,
    }
}

/// Pins the calling thread (worker `worker` of `workers`) per `placement`.
pub fn pin_current(worker: usize, workers: usize, placement: Placement) -> Pinned {
    let ids = process_cores();
    let outcome = match plan(worker, workers, ids.len(), placement) {
        Plan::Unpinned(outcome) => outcome,
        Plan::Pin(i) => {
            let id = ids[i];
            if core_affinity::set_for_current(id) { Pinned::Core(id.id) } else { Pinned::Refused }
        }
    };
    if let Some(line) = unpinned_notice(outcome, workers, ids.len())
        && !REFUSAL_REPORTED.swap(true, Ordering::Relaxed)
    {
        eprintln!("{line}");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_per_core_when_they_fit() {
        for workers in 1..=4 {
            for worker in 0..workers {
                assert_eq!(plan(worker, workers, 4, Placement::PinPerCore), Plan::Pin(worker));
            }
        }
    }

    #[test]
    fn more_workers_than_cores_run_unpinned_never_two_on_one_core() {
        for worker in 0..4 {
            assert_eq!(
                plan(worker, 4, 2, Placement::PinPerCore),
                Plan::Unpinned(Pinned::TooFewCores),
                "worker {worker}"
            );
        }
        assert_eq!(plan(2, 3, 2, Placement::PinPerCore), Plan::Unpinned(Pinned::TooFewCores));
        assert_eq!(plan(0, 3, 2, Placement::PinPerCore), Plan::Unpinned(Pinned::TooFewCores));
    }

    #[test]
    fn no_core_list_is_refused_and_unpinned_is_not_requested() {
        assert_eq!(plan(0, 1, 0, Placement::PinPerCore), Plan::Unpinned(Pinned::Refused));
        assert_eq!(plan(0, 8, 2, Placement::Unpinned), Plan::Unpinned(Pinned::NotRequested));
        assert_eq!(plan(0, 1, 2, Placement::Unpinned), Plan::Unpinned(Pinned::NotRequested));
    }

    #[test]
    fn the_notice_names_workers_and_cores_and_is_silent_when_pinned_or_not_requested() {
        assert_eq!(
            unpinned_notice(Pinned::TooFewCores, 4, 2).as_deref(),
            Some("corestream: 4 workers on 2 cores: running unpinned")
        );
        assert!(unpinned_notice(Pinned::Refused, 1, 0).unwrap().contains("refused"));
        assert_eq!(unpinned_notice(Pinned::Core(3), 2, 4), None);
        assert_eq!(unpinned_notice(Pinned::NotRequested, 8, 2), None);
    }

    #[test]
    fn outcome_accessors() {
        assert!(Pinned::Core(1).is_pinned());
        assert_eq!(Pinned::Core(1).core(), Some(1));
        for unpinned in [Pinned::NotRequested, Pinned::Refused, Pinned::TooFewCores] {
            assert!(!unpinned.is_pinned());
            assert_eq!(unpinned.core(), None);
        }
        assert_eq!(Pinned::TooFewCores.name(), "too_few_cores");
    }
}
