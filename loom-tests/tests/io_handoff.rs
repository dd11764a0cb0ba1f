//! loom models of the sink I/O thread handoff (`corestream::sink::io_thread`): a
//! worker hands one job at a time to an I/O thread and takes it back. Every
//! interleaving (within the preemption bound) returns every job exactly once, with
//! the I/O thread's work visible, loses no wake-up in either direction, and shuts
//! down even with a job in flight.
//!
//! Run: `RUSTFLAGS="--cfg corestream_loom" LOOM_MAX_PREEMPTIONS=3 \
//!       CARGO_TARGET_DIR=target/loom cargo test -p corestream-loom-tests --release`
#![cfg(corestream_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};

use corestream::sink::io_thread::io_channel;

/// A job as the writer uses it: shared read-only data plus the thread's result.
struct Job {
    data: Arc<Vec<u64>>,
    sum: u64,
}

#[test]
fn jobs_come_back_once_each_with_the_io_threads_result() {
    loom::model(|| {
        let (mut owner, server) = io_channel::<Job>();
        let runs = Arc::new(AtomicUsize::new(0));
        let server_runs = runs.clone();
        let io = loom::thread::spawn(move || {
            server.serve(|job: &mut Job| {
                server_runs.fetch_add(1, Ordering::Relaxed);
                job.sum = job.data.iter().sum();
            })
        });
        for round in 0..2u64 {
            let data = Arc::new(vec![round, 10]);
            owner.submit(Job { data: data.clone(), sum: 0 });
            // The owner may read the shared data while the job is in flight.
            assert_eq!(data[1], 10);
            // Waiting without a deadline: a lost wake-up deadlocks the model.
            let job = owner.wait().expect("the job comes back");
            assert_eq!(job.sum, round + 10, "the I/O thread's write is visible");
            drop(job);
            assert_eq!(Arc::strong_count(&data), 1, "nobody else holds the data");
            assert!(owner.try_take().is_none(), "nothing comes back twice");
        }
        owner.shut_down();
        io.join().unwrap();
        assert_eq!(runs.load(Ordering::Relaxed), 2, "each job ran exactly once");
    });
}

#[test]
fn polling_without_blocking_eventually_collects_the_job() {
    loom::model(|| {
        let (mut owner, server) = io_channel::<u32>();
        let io = loom::thread::spawn(move || server.serve(|job: &mut u32| *job += 1));
        owner.submit(41);
        // The worker's non-blocking poll (between batches) either sees the job or
        // not; once it does, it is the finished job.
        let job = match owner.try_take() {
            Some(job) => job,
            None => owner.wait().expect("comes back"),
        };
        assert_eq!(job, 42);
        drop(owner); // dropping the worker's end shuts the thread down
        io.join().unwrap();
    });
}

#[test]
fn shutting_down_with_a_job_in_flight_ends_the_io_thread() {
    loom::model(|| {
        let (mut owner, server) = io_channel::<u32>();
        let io = loom::thread::spawn(move || server.serve(|job: &mut u32| *job += 1));
        owner.submit(1);
        // Give up on the job (as after a timeout) and shut down: the I/O thread
        // finishes the job in hand, then exits; nothing deadlocks.
        owner.shut_down();
        io.join().unwrap();
        assert_eq!(owner.try_take(), Some(2), "the finished job is still collectable");
    });
}
