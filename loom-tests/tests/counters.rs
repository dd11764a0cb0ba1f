//! loom model of the sharded counters: single writers per shard, a reader summing
//! concurrently. The reader never sees a count go down or exceed what was written,
//! and after the writers finish it sees every increment exactly once.
#![cfg(corestream_loom)]

use loom::sync::Arc;

use corestream::metrics::{Counter, ShardedCounters};

#[test]
fn concurrent_sums_are_monotonic_and_final_sum_is_exact() {
    loom::model(|| {
        let counters = Arc::new(ShardedCounters::new(2));
        let writers: Vec<_> = (0..2)
            .map(|shard| {
                let counters = counters.clone();
                loom::thread::spawn(move || {
                    for _ in 0..2 {
                        counters.shard(shard).add(Counter::MessagesIn, 1);
                    }
                })
            })
            .collect();
        let mut last = 0;
        for _ in 0..2 {
            let now = counters.sum(Counter::MessagesIn);
            assert!(now >= last, "a sum went backwards: {last} then {now}");
            assert!(now <= 4, "more counted than written: {now}");
            last = now;
        }
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(counters.sum(Counter::MessagesIn), 4, "an increment was lost or duplicated");
    });
}
