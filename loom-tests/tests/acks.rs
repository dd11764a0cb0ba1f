//! loom model of the acknowledgement path: a sink thread releases ticket holds
//! (as Kafka delivery callbacks do) while the worker polls; the watermark only ever
//! covers batches whose every hold was released, in batch order, and ends covering
//! all of them.
#![cfg(corestream_loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};

use corestream::ack::{AckQueue, Watermarks};

#[test]
fn watermark_covers_only_fully_released_batches_in_order() {
    loom::model(|| {
        let watermarks = Arc::new(Watermarks::new(1));
        let mut queue = AckQueue::with_capacity(4, watermarks.clone());
        let acker = queue.acker();
        // Two batches: positions 10 and 20 of partition 0; the second has two
        // in-flight messages besides the sink's batch hold.
        let mut b = queue.builder();
        b.note(0, 10);
        let first = queue.issue(b);
        let mut b = queue.builder();
        b.note(0, 20);
        let second = queue.issue(b);
        acker.hold(second, 2);

        // Set just before the last release: a watermark seen before it is a bug.
        let all_released = Arc::new(AtomicBool::new(false));
        let flag = all_released.clone();
        let sink = loom::thread::spawn(move || {
            // Deliveries complete out of order: the second batch first.
            acker.done(second);
            acker.done(second);
            acker.done(second);
            flag.store(true, Ordering::Relaxed);
            acker.done(first);
        });
        for _ in 0..3 {
            queue.poll();
            match watermarks.acknowledged(0) {
                None => {}
                // Batch 2 was released first, so once batch 1 is, both are.
                Some(20) => assert!(
                    all_released.load(Ordering::Relaxed),
                    "acknowledged before the last release"
                ),
                other => panic!("watermark {other:?}: batch order not kept"),
            }
            loom::thread::yield_now();
        }
        sink.join().unwrap();
        queue.poll();
        assert_eq!(watermarks.acknowledged(0), Some(20));
        assert_eq!(queue.in_flight(), 0);
    });
}
