//! loom model of the park/wake handshake alone (`WaitCell`): a notify that races with
//! a park is never lost.
#![cfg(corestream_loom)]

use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};

use corestream::wait::WaitCell;

#[test]
fn notify_racing_with_park_is_never_lost() {
    loom::model(|| {
        let cell = Arc::new(WaitCell::new());
        let progress = Arc::new(AtomicUsize::new(0));
        let (c2, p2) = (cell.clone(), progress.clone());
        let notifier = loom::thread::spawn(move || {
            for _ in 0..2 {
                p2.fetch_add(1, Ordering::Release);
                c2.notify();
            }
        });
        // Wait for both increments, parking without a timeout in between (loom's
        // park has none): if a wake-up were lost this would deadlock.
        let mut seen = 0;
        while seen < 2 {
            cell.park(Duration::from_secs(1), || progress.load(Ordering::Acquire) > seen);
            seen = progress.load(Ordering::Acquire);
        }
        notifier.join().unwrap();
        assert_eq!(progress.load(Ordering::Relaxed), 2);
    });
}
