//! Adaptive batch size end to end: a slow sink shrinks every worker's batch to the
//! minimum; a fast one never shrinks it, and the size stays within its bounds. The
//! current size is read from the engine's snapshot (a per-worker gauge).

mod failure_support;

use std::sync::Arc;
use std::time::Duration;

use corestream::ack::{Acker, Ticket};
use corestream::engine::Engine;
use corestream::message::Output;
use corestream::metrics::Counter;
use corestream::processor::PassThrough;
use corestream::sink::null::NullSinkFactory;
use corestream::sink::{Sink, SinkError, SinkFactory};
use corestream::worker::BatchSizing;

use failure_support::{generator, settings};

/// Takes 2 ms per write: every batch is over a 0.5 ms target, whatever the load.
struct Slow(Acker);

impl Sink for Slow {
    fn write(&mut self, _outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
        std::thread::sleep(Duration::from_millis(2));
        self.0.done(ticket);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

struct SlowFactory;

impl SinkFactory for SlowFactory {
    fn describe(&self) -> String {
        "slow".into()
    }
    fn open(&self, _worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(Slow(acker)))
    }
}

fn sizing(target: Duration) -> BatchSizing {
    BatchSizing { records_min: 16, records_max: 256, time_target: target }
}

#[test]
fn a_slow_sink_shrinks_every_workers_batch_to_the_minimum() {
    // 2 workers x >= 4000/64 batches each way more than the ~11 steps from 64 to 16.
    let report = Engine::new(
        settings(2),
        generator(8_000, 40),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(SlowFactory),
    )
    .batch_sizing(sizing(Duration::from_micros(500)))
    .run()
    .unwrap();
    assert_eq!(report.snapshot.batch_records_current(), vec![16, 16]);
    assert_eq!(report.snapshot.get(Counter::MessagesIn), 8_000);
}

#[test]
fn a_fast_sink_never_shrinks_it_and_it_stays_within_bounds() {
    let report = Engine::new(
        settings(2),
        generator(200_000, 40),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(NullSinkFactory),
    )
    .batch_sizing(sizing(Duration::from_secs(1)))
    .run()
    .unwrap();
    for size in report.snapshot.batch_records_current() {
        assert!(
            (64..=256).contains(&size),
            "grows from 64 when batches are full, never shrinks: {size}"
        );
    }
}

#[test]
fn a_fixed_batch_size_is_reported_too() {
    let report = Engine::new(
        settings(1),
        generator(1_000, 10),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(NullSinkFactory),
    )
    .run()
    .unwrap();
    assert_eq!(report.snapshot.batch_records_current(), vec![64]);
}

#[test]
fn bounds_that_exclude_the_start_size_refuse_to_start() {
    let err = Engine::new(
        settings(1),
        generator(10, 1),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(NullSinkFactory),
    )
    .batch_sizing(BatchSizing {
        records_min: 100,
        records_max: 200,
        time_target: Duration::from_millis(1),
    })
    .run()
    .expect_err("refused");
    assert!(err.to_string().contains("batch_records: the starting size 64 is outside"), "{err}");
}
