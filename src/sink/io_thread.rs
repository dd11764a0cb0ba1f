//! A one-job-at-a-time handoff between a worker and its sink's I/O thread.
//!
//! A synchronous `write(2)` cannot be cancelled: a worker that calls it on a stalled
//! pipe or a hung network file system is stuck with it. So a sink with a write
//! timeout (see [`super::writer`]) does its system calls on a per-worker I/O thread
//! and the worker only *waits* for them, up to a deadline. When the deadline passes
//! the worker gets control back and decides (retry, dead-letter, stop); the blocked
//! call finishes whenever the OS lets it, and its result is collected then.
//!
//! The job moves by value through one slot: the worker owns it until
//! [`IoHandoff::submit`], the I/O thread owns it until it puts it back, the worker
//! owns it again after [`IoHandoff::try_take`] / [`IoHandoff::wait_until`] returns it.
//! At most one job is in flight, so the slot cannot overflow and nothing is queued:
//! memory stays what the worker allocated at start. A job that must be readable by
//! the worker while in flight (to dead-letter what a hung write holds) carries an
//! `Arc` of read-only data; nobody writes it until it comes back.
//!
//! ```text
//!  worker                         slot (mutex)                 I/O thread
//!  submit(job) ──► request = Some(job) ──notify──►  take request; run(&mut job)
//!  wait_until(deadline) ◄──notify── done = Some(job) ◄────────── put it back
//!  (deadline passed: returns None, the job stays in flight; a later
//!   try_take / wait_until collects it)
//!  drop / shut_down ──► quit = true ──notify──► exits after the job in hand
//! ```
//!
//! The lock is taken twice per job on each side; a job is a whole sink flush
//! (hundreds of KiB), never a message. Synchronisation goes through [`crate::sync`],
//! and `loom-tests/tests/io_handoff.rs` model-checks the protocol: no lost wake-up,
//! every job comes back exactly once, shutdown with a job in flight ends.

use std::time::{Duration, Instant};

use crate::sync::{Arc, Condvar, Mutex};

/// Longest the idle I/O thread sleeps before re-checking the slot by itself (a
/// safety net: wake-ups come from the condition variable).
pub const IO_THREAD_PARK_MAX: Duration = Duration::from_millis(100);

struct Slot<J> {
    /// Posted by the worker, taken by the I/O thread.
    request: Option<J>,
    /// Put back by the I/O thread, taken by the worker.
    done: Option<J>,
    /// Set by the worker: the I/O thread exits once it holds no job.
    quit: bool,
}

struct Shared<J> {
    slot: Mutex<Slot<J>>,
    /// Signalled when a request is posted or `quit` is set.
    to_server: Condvar,
    /// Signalled when a job is put back.
    to_owner: Condvar,
}

/// The worker's end.
pub struct IoHandoff<J> {
    shared: Arc<Shared<J>>,
    /// A job was submitted and not yet taken back. Only the worker changes it.
    busy: bool,
}

/// The I/O thread's end; [`IoServer::serve`] is the thread's body.
pub struct IoServer<J> {
    shared: Arc<Shared<J>>,
}

/// A connected pair; spawn a thread that runs [`IoServer::serve`].
pub fn io_channel<J>() -> (IoHandoff<J>, IoServer<J>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot { request: None, done: None, quit: false }),
        to_server: Condvar::new(),
        to_owner: Condvar::new(),
    });
    (IoHandoff { shared: shared.clone(), busy: false }, IoServer { shared })
}

impl<J> IoHandoff<J> {
    /// True from [`IoHandoff::submit`] until the job is taken back.
    pub fn is_busy(&self) -> bool {
        self.busy
    }

    /// Hands `job` to the I/O thread. Panics if a job is already in flight (the
    /// caller's state machine is broken: two jobs would share the slot).
    pub fn submit(&mut self, job: J) {
        assert!(!self.busy, "IoHandoff::submit with a job in flight");
        {
            let mut slot = self.shared.slot.lock();
            debug_assert!(slot.request.is_none() && slot.done.is_none());
            slot.request = Some(job);
        }
        self.busy = true;
        self.shared.to_server.notify_one();
    }

    /// The job, if the I/O thread is done with it; never blocks on the job.
    pub fn try_take(&mut self) -> Option<J> {
        if !self.busy {
            return None;
        }
        let job = self.shared.slot.lock().done.take();
        if job.is_some() {
            self.busy = false;
        }
        job
    }

    /// Waits until the job comes back or `deadline` passes (then `None`: the job
    /// is still in flight).
    pub fn wait_until(&mut self, deadline: Instant) -> Option<J> {
        if !self.busy {
            return None;
        }
        let mut slot = self.shared.slot.lock();
        loop {
            if let Some(job) = slot.done.take() {
                self.busy = false;
                return Some(job);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            slot = self.shared.to_owner.wait_timeout(slot, deadline - now);
        }
    }

    /// Waits for the job without a deadline (for models and shutdown of a thread
    /// known to be healthy).
    pub fn wait(&mut self) -> Option<J> {
        if !self.busy {
            return None;
        }
        let mut slot = self.shared.slot.lock();
        loop {
            if let Some(job) = slot.done.take() {
                self.busy = false;
                return Some(job);
            }
            slot = self.shared.to_owner.wait_timeout(slot, IO_THREAD_PARK_MAX);
        }
    }

    /// Tells the I/O thread to exit once it holds no job. A job in flight is still
    /// finished (and put back, where nobody may take it).
    pub fn shut_down(&mut self) {
        self.shared.slot.lock().quit = true;
        self.shared.to_server.notify_one();
    }
}

impl<J> Drop for IoHandoff<J> {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl<J> IoServer<J> {
    /// Runs each submitted job through `run` and puts it back, until shut down.
    pub fn serve(self, mut run: impl FnMut(&mut J)) {
        loop {
            let mut job = {
                let mut slot = self.shared.slot.lock();
                loop {
                    if let Some(job) = slot.request.take() {
                        break job;
                    }
                    if slot.quit {
                        return;
                    }
                    slot = self.shared.to_server.wait_timeout(slot, IO_THREAD_PARK_MAX);
                }
            };
            run(&mut job);
            self.shared.slot.lock().done = Some(job);
            self.shared.to_owner.notify_one();
        }
    }
}

#[cfg(all(test, not(corestream_loom)))]
mod tests {
    use super::*;

    #[test]
    fn jobs_go_and_come_back_in_turn() {
        let (mut owner, server) = io_channel::<u64>();
        let thread = std::thread::spawn(move || server.serve(|job| *job *= 10));
        for i in 1..=100u64 {
            assert!(owner.try_take().is_none(), "nothing in flight");
            owner.submit(i);
            assert!(owner.is_busy());
            let back = owner.wait_until(Instant::now() + Duration::from_secs(60));
            assert_eq!(back, Some(i * 10));
            assert!(!owner.is_busy());
        }
        owner.shut_down();
        thread.join().unwrap();
    }

    #[test]
    fn a_deadline_returns_control_and_the_job_is_collected_later() {
        let (mut owner, server) = io_channel::<u32>();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            server.serve(|job| {
                gate.recv().unwrap();
                *job += 1;
            })
        });
        owner.submit(7);
        // The job is blocked on the gate: the deadline passes, the job stays out.
        assert_eq!(owner.wait_until(Instant::now() + Duration::from_millis(20)), None);
        assert!(owner.is_busy());
        release.send(()).unwrap();
        assert_eq!(owner.wait(), Some(8));
        drop(owner); // shuts the thread down
        thread.join().unwrap();
    }
}
