//! loom models of the SPSC ring: every interleaving of one producer and one consumer
//! (within the preemption bound) delivers every record once, in order, intact.
//!
//! Run: `RUSTFLAGS="--cfg corestream_loom" LOOM_MAX_PREEMPTIONS=3 \
//!       CARGO_TARGET_DIR=target/loom cargo test -p corestream-loom-tests --release`
#![cfg(corestream_loom)]

use corestream::message::{Message, Meta};
use corestream::ring::{Consumer, Producer, PushError, ring_for_model};
use corestream::wait::{WaitStep, Waiter};

/// Parking only: a lost wake-up deadlocks the model instead of being hidden by a spin.
static PARK_ONLY: [WaitStep; 1] = [WaitStep::Park { timeout_us: 1_000 }];
/// Spinning only (each spin is a loom yield).
static SPIN_ONLY: [WaitStep; 1] = [WaitStep::Spin { iterations: 1 }];

fn record(position: u64, payload: &[u8]) -> Message<'_> {
    Message { payload, meta: Meta { position, ..Meta::default() }, ..Default::default() }
}

/// Payload of record `i`: `len` bytes all equal to `i`.
fn payload_of(i: u64, len: usize) -> Vec<u8> {
    vec![i as u8 + 1; len]
}

fn push_all(
    mut producer: Producer,
    count: u64,
    len: usize,
    per_commit: u64,
    table: &'static [WaitStep],
) {
    let mut waiter = Waiter::new(table);
    for i in 0..count {
        let payload = payload_of(i, len);
        let m = record(i, &payload);
        loop {
            match producer.write(&m) {
                Ok(()) => break,
                Err(PushError::Full) => {
                    let frame = corestream::ring::frame::frame_len(&m).unwrap();
                    producer.wait_for_space(frame, &mut waiter);
                }
                Err(e) => panic!("unexpected push error: {e}"),
            }
        }
        waiter.reset();
        if (i + 1) % per_commit == 0 {
            producer.commit();
        }
    }
    // Dropping commits what is staged and closes the ring.
}

/// Reads until the producer closed and the ring is drained; asserts order and bytes.
fn read_all(
    mut consumer: Consumer,
    count: u64,
    len: usize,
    batch_max: usize,
    table: &'static [WaitStep],
) {
    let mut expected = 0u64;
    let mut waiter = Waiter::new(table);
    loop {
        let batch = consumer.read_batch(batch_max);
        if batch.is_empty() {
            drop(batch);
            if consumer.is_finished() {
                break;
            }
            consumer.wait_for_data(&mut waiter);
            continue;
        }
        for m in batch.iter() {
            assert_eq!(m.meta.position, expected, "record lost, duplicated or reordered");
            assert_eq!(m.payload, &payload_of(expected, len)[..], "record corrupted");
            expected += 1;
        }
        waiter.reset();
    }
    assert_eq!(expected, count, "records lost");
}

fn model(
    capacity: usize,
    count: u64,
    len: usize,
    per_commit: u64,
    batch_max: usize,
    table: &'static [WaitStep],
) {
    loom::model(move || {
        let (producer, consumer) = ring_for_model(capacity);
        let handle = loom::thread::spawn(move || push_all(producer, count, len, per_commit, table));
        read_all(consumer, count, len, batch_max, table);
        handle.join().unwrap();
    });
}

/// 128-byte ring, 48-byte frames: two fit, the third needs a pad marker and wraps,
/// so the producer meets a full ring and the consumer an empty one.
#[test]
fn wrap_around_full_and_empty_one_at_a_time() {
    model(128, 4, 8, 1, 1, &SPIN_ONLY);
}

/// Batch claim and release: three records per commit, batches of two.
#[test]
fn batch_commit_and_partial_batch_release() {
    model(256, 4, 8, 3, 2, &SPIN_ONLY);
}

/// 64-byte frames in a 128-byte ring: two frames fill the buffer to its last byte,
/// the third starts at offset 0 with no pad marker.
#[test]
fn record_that_exactly_fills_the_end_of_the_buffer() {
    model(128, 3, 24, 1, 4, &SPIN_ONLY);
}

/// Both sides park instead of spinning: a lost wake-up on either the data side or
/// the space side would leave a thread parked forever, which loom reports.
#[test]
fn park_and_wake_on_full_and_empty_loses_no_wakeup() {
    model(128, 3, 8, 1, 4, &PARK_ONLY);
}
