//! Where a thread waits: a table of steps (spin, yield, park) and a wake-up cell.
//!
//! A side of a ring that finds it full (producer) or empty (consumer) walks a
//! [`WaitTable`]: spin a little (the other side is usually microseconds away), then
//! yield, then park with growing timeouts. The table is data, not code: one array,
//! read by one small function, tested and benchmarked as such.
//!
//! Parking is safe against lost wake-ups through [`WaitCell`]: the side that makes
//! progress calls [`WaitCell::notify`] after publishing it, and the waiting side
//! announces itself before its last check. Both use a read-modify-write on the same
//! flag, so one of them always sees the other (the argument is written out on
//! [`WaitCell::park`]). The park timeout is a safety net and a housekeeping tick
//! (flushing sinks, noticing shutdown), not what bounds wake-up latency.

use std::time::Duration;

use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Condvar, Mutex, thread};

/// One step of a wait table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStep {
    /// Busy-wait `iterations` CPU spin hints (a few ns each), then check again.
    Spin { iterations: u32 },
    /// Give the core to another thread once (`sched_yield`).
    Yield,
    /// Sleep until woken by the other side, or at most `timeout_us` microseconds.
    Park { timeout_us: u32 },
}

/// The steps a waiting thread walks, in order; the last step repeats.
pub type WaitTable = [WaitStep];

/// Longest a parked thread sleeps before checking by itself: bounds shutdown and
/// linger latency of an idle worker; an idle engine wakes 10 times a second per thread.
pub const PARK_US_MAX: u32 = 100_000;

/// The default table. Spinning covers the common case of a ring that fills or drains
/// within microseconds (~1.3k spin hints, a few µs in all); yielding covers an
/// oversubscribed core; parking with growing timeouts makes an idle engine cost
/// nothing. Wake-ups come from [`WaitCell::notify`], so a long timeout does not
/// add latency when traffic resumes.
pub const WAIT_TABLE_DEFAULT: [WaitStep; 16] = [
    WaitStep::Spin { iterations: 4 },
    WaitStep::Spin { iterations: 8 },
    WaitStep::Spin { iterations: 16 },
    WaitStep::Spin { iterations: 32 },
    WaitStep::Spin { iterations: 64 },
    WaitStep::Spin { iterations: 128 },
    WaitStep::Spin { iterations: 256 },
    WaitStep::Spin { iterations: 256 },
    WaitStep::Spin { iterations: 512 },
    WaitStep::Yield,
    WaitStep::Yield,
    WaitStep::Yield,
    WaitStep::Yield,
    WaitStep::Park { timeout_us: 1_000 },
    WaitStep::Park { timeout_us: 10_000 },
    WaitStep::Park { timeout_us: PARK_US_MAX },
];

const _: () =
    assert!(matches!(WAIT_TABLE_DEFAULT[WAIT_TABLE_DEFAULT.len() - 1], WaitStep::Park { .. }));

/// Makes the calling thread's first park allocation-free: the parking library
/// allocates per-thread state lazily on a thread's first wait. Engine threads call
/// this at start, so the steady state makes no allocation even when it parks.
pub fn warm_up_thread() {
    WaitCell::new().park(Duration::ZERO, || false);
}

/// Walks a [`WaitTable`]; one per waiting thread and condition.
#[derive(Clone, Debug)]
pub struct Waiter {
    table: &'static WaitTable,
    /// Index of the next step; `< table.len()`.
    step: usize,
}

/// What a wait step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    Spun,
    Yielded,
    /// Parked and was woken, timed out, or found the condition ready before sleeping.
    Parked,
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter::new(&WAIT_TABLE_DEFAULT)
    }
}

impl Waiter {
    /// A waiter over `table` (must not be empty).
    pub fn new(table: &'static WaitTable) -> Self {
        assert!(!table.is_empty(), "a wait table needs at least one step");
        Waiter { table, step: 0 }
    }

    /// Back to the first step: call when the condition was met.
    #[inline]
    pub fn reset(&mut self) {
        self.step = 0;
    }

    /// The step the next [`Waiter::wait`] will take.
    pub fn next_step(&self) -> WaitStep {
        self.table[self.step]
    }

    /// True once the waiter reached a parking step (the thread is idle).
    pub fn is_idle(&self) -> bool {
        matches!(self.table[self.step], WaitStep::Park { .. })
    }

    /// Takes one step of the table. `ready` is the condition being waited for; it is
    /// re-checked after announcing a park on `cell`, so a wake-up cannot be lost.
    #[inline]
    pub fn wait(&mut self, cell: &WaitCell, ready: impl Fn() -> bool) -> Waited {
        debug_assert!(self.step < self.table.len());
        let step = self.table[self.step];
        if self.step + 1 < self.table.len() {
            self.step += 1;
        }
        match step {
            WaitStep::Spin { iterations } => {
                for _ in 0..iterations {
                    crate::sync::spin_loop();
                }
                Waited::Spun
            }
            WaitStep::Yield => {
                thread::yield_now();
                Waited::Yielded
            }
            WaitStep::Park { timeout_us } => {
                cell.park(Duration::from_micros(u64::from(timeout_us)), ready);
                Waited::Parked
            }
        }
    }
}

/// A place where one thread parks and another wakes it.
///
/// Exactly one thread parks on a given cell at a time (the one side of one ring);
/// any thread may notify. The notifier's fast path is one atomic swap on a flag that
/// only changes when the waiter goes to sleep; the mutex and condition variable are
/// touched only when a thread actually sleeps or is woken.
pub struct WaitCell {
    /// True while the waiting thread is between announcing a park and waking up.
    sleeping: AtomicBool,
    /// A wake-up permit: set by a notifier that saw `sleeping`, consumed by the waiter.
    permit: Mutex<bool>,
    condvar: Condvar,
}

impl Default for WaitCell {
    fn default() -> Self {
        WaitCell::new()
    }
}

impl std::fmt::Debug for WaitCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitCell")
            .field("sleeping", &self.sleeping.load(Ordering::Relaxed))
            .finish()
    }
}

impl WaitCell {
    pub fn new() -> Self {
        WaitCell {
            sleeping: AtomicBool::new(false),
            permit: Mutex::new(false),
            condvar: Condvar::new(),
        }
    }

    /// Called by the side that made progress, *after* publishing it with a release
    /// store. Wakes the waiter if it is parked or about to park.
    #[inline]
    pub fn notify(&self) {
        // AcqRel RMW: see the argument on `park`.
        if self.sleeping.swap(false, Ordering::AcqRel) {
            self.wake_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_slow(&self) {
        let mut permit = self.permit.lock();
        *permit = true;
        self.condvar.notify_one();
    }

    /// Parks the calling thread until notified or `timeout` passes, unless `ready()`
    /// already holds after the park was announced.
    ///
    /// Why no wake-up is lost: the waiter does `swap(sleeping, true)` then checks
    /// `ready()`; the notifier publishes its progress (release) then does
    /// `swap(sleeping, false)`. Both swaps are RMWs on one location, so they are
    /// totally ordered. If the notifier's swap comes second it reads `true` and sets
    /// the permit under the mutex: the waiter either finds the permit before waiting or
    /// is waiting and gets the signal. If it comes first, the waiter's swap reads from
    /// it (acquire), so the progress published before it is visible to `ready()`.
    /// Every write to `sleeping` is an RMW, so they all belong to one release sequence.
    /// A stale permit only makes a later park return early. Checked by
    /// `loom-tests/tests/wait.rs` and `loom-tests/tests/ring.rs`.
    pub fn park(&self, timeout: Duration, ready: impl Fn() -> bool) {
        self.sleeping.swap(true, Ordering::AcqRel);
        if ready() {
            self.sleeping.swap(false, Ordering::AcqRel);
            return;
        }
        let mut permit = self.permit.lock();
        if !*permit {
            permit = self.condvar.wait_timeout(permit, timeout);
        }
        *permit = false;
        drop(permit);
        // An RMW, not a store: a plain store here would cut the release sequence of a
        // notifier's swap, and the next park's swap could then read this store and
        // miss what the notifier published (loom found exactly that).
        self.sleeping.swap(false, Ordering::AcqRel);
    }
}

#[cfg(all(test, not(corestream_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool as StdAtomicBool;
    use std::time::Instant;

    static TABLE_SMALL: [WaitStep; 3] =
        [WaitStep::Spin { iterations: 1 }, WaitStep::Yield, WaitStep::Park { timeout_us: 50 }];

    #[test]
    fn waiter_walks_the_table_and_saturates_at_the_last_step() {
        let cell = WaitCell::new();
        let mut waiter = Waiter::new(&TABLE_SMALL);
        assert_eq!(waiter.wait(&cell, || false), Waited::Spun);
        assert_eq!(waiter.wait(&cell, || false), Waited::Yielded);
        assert!(waiter.is_idle());
        assert_eq!(waiter.wait(&cell, || false), Waited::Parked);
        assert_eq!(waiter.wait(&cell, || false), Waited::Parked);
        assert_eq!(waiter.next_step(), WaitStep::Park { timeout_us: 50 });
        waiter.reset();
        assert_eq!(waiter.next_step(), WaitStep::Spin { iterations: 1 });
    }

    #[test]
    fn default_table_ends_parked_with_the_named_cap() {
        assert_eq!(WAIT_TABLE_DEFAULT.last(), Some(&WaitStep::Park { timeout_us: PARK_US_MAX }));
        let park_timeouts: Vec<u32> = WAIT_TABLE_DEFAULT
            .iter()
            .filter_map(|s| match s {
                WaitStep::Park { timeout_us } => Some(*timeout_us),
                _ => None,
            })
            .collect();
        assert!(park_timeouts.windows(2).all(|w| w[0] <= w[1]), "timeouts grow");
    }

    #[test]
    fn notify_wakes_a_thread_parked_with_a_long_timeout() {
        let cell = Arc::new(WaitCell::new());
        let flag = Arc::new(StdAtomicBool::new(false));
        let (c2, f2) = (cell.clone(), flag.clone());
        let sleeper = std::thread::spawn(move || {
            let start = Instant::now();
            while !f2.load(Ordering::Acquire) {
                c2.park(Duration::from_secs(30), || f2.load(Ordering::Acquire));
            }
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        flag.store(true, Ordering::Release);
        cell.notify();
        let slept = sleeper.join().unwrap();
        // Not a timing assertion on speed: a lost wake-up would sleep the full 30 s.
        assert!(slept < Duration::from_secs(29), "wake-up was lost: slept {slept:?}");
    }

    #[test]
    fn park_returns_at_once_when_ready() {
        let cell = WaitCell::new();
        cell.park(Duration::from_secs(30), || true);
        assert!(!cell.sleeping.load(Ordering::Relaxed));
    }
}
