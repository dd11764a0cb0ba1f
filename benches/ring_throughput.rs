//! Wall-clock ring benchmark: records/s between two pinned threads, corestream's
//! ring beside rtrb (the reference SPSC ring) in the same run, for 8- and 64-byte
//! payloads, one record at a time and batched; plus the one-record round-trip
//! latency through two rings (ping-pong), p50. Both consumers read every record's
//! sequence number from its payload and check it, so neither side's data can be
//! optimised away and nothing lost or reordered goes unnoticed.
//!
//! Run: `cargo bench --no-default-features --bench ring_throughput`
//! (`-- --quick` for a short run). Every run checks that every record arrived in
//! order with its bytes before it reports a figure. Figures vary with machine load:
//! record `uptime` next to them (benches/README.md).

use std::time::{Duration, Instant};

use corestream::message::{Message, Meta};
use corestream::ring::{PushError, ring};

const RING_BYTES: usize = 1 << 20;
const BATCH: usize = 256;

/// The cores of the process, read once at start: `get_core_ids` reads the calling
/// thread's affinity mask, which is a single core once a thread has been pinned.
static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();

fn pin(core: usize) {
    let ids = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if !ids.is_empty() {
        core_affinity::set_for_current(ids[core % ids.len()]);
    }
}

fn payload_for(seq: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
}

fn check(seq: u64, payload: &[u8]) {
    assert_eq!(u64::from_le_bytes(payload[..8].try_into().unwrap()), seq, "lost or reordered");
}

/// corestream ring, `per_commit` records per publish and per read batch.
fn corestream_throughput(records: u64, payload_bytes: usize, per_commit: usize) -> f64 {
    let (mut producer, mut consumer) = ring(RING_BYTES).unwrap();
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        pin(1);
        let mut payload = vec![7u8; payload_bytes];
        let mut staged = 0;
        for seq in 0..records {
            payload_for(seq, &mut payload);
            let m = Message {
                payload: &payload,
                meta: Meta { position: seq, ..Meta::default() },
                ..Default::default()
            };
            loop {
                match producer.write(&m) {
                    Ok(()) => break,
                    Err(PushError::Full) => {
                        producer.commit();
                        staged = 0;
                        std::hint::spin_loop();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            staged += 1;
            if staged == per_commit {
                producer.commit();
                staged = 0;
            }
        }
    });
    pin(0);
    let mut expected = 0u64;
    while expected < records {
        let batch = consumer.read_batch(per_commit);
        for m in batch.iter() {
            check(expected, m.payload);
            expected += 1;
        }
    }
    writer.join().unwrap();
    records as f64 / start.elapsed().as_secs_f64()
}

/// rtrb with `[u8; N]` items: one push/pop at a time, or chunks of `BATCH`.
fn rtrb_throughput<const N: usize>(records: u64, chunked: bool) -> f64 {
    let capacity = RING_BYTES / N;
    let (mut producer, mut consumer) = rtrb::RingBuffer::<[u8; N]>::new(capacity);
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        pin(1);
        let mut seq = 0u64;
        while seq < records {
            if chunked {
                let n = (BATCH as u64).min(records - seq) as usize;
                match producer.write_chunk_uninit(n) {
                    Ok(chunk) => {
                        let base = seq;
                        chunk.fill_from_iter((0..n as u64).map(|i| {
                            let mut item = [7u8; N];
                            payload_for(base + i, &mut item);
                            item
                        }));
                        seq += n as u64;
                    }
                    Err(_) => std::hint::spin_loop(),
                }
            } else {
                let mut item = [7u8; N];
                payload_for(seq, &mut item);
                if producer.push(item).is_ok() {
                    seq += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    });
    pin(0);
    let mut expected = 0u64;
    while expected < records {
        if chunked {
            let n = consumer.slots().min(BATCH);
            if n == 0 {
                continue;
            }
            let chunk = consumer.read_chunk(n).unwrap();
            let (a, b) = chunk.as_slices();
            for item in a.iter().chain(b) {
                check(expected, item);
                expected += 1;
            }
            chunk.commit_all();
        } else if let Ok(item) = consumer.pop() {
            check(expected, &item);
            expected += 1;
        }
    }
    writer.join().unwrap();
    records as f64 / start.elapsed().as_secs_f64()
}

/// Median round trip of one record through two corestream rings (ping → pong).
fn corestream_round_trip(trips: usize) -> Duration {
    let (mut ping_p, mut ping_c) = ring(1 << 16).unwrap();
    let (mut pong_p, mut pong_c) = ring(1 << 16).unwrap();
    let echo = std::thread::spawn(move || {
        pin(1);
        let mut n = 0;
        while n < trips {
            let batch = ping_c.read_batch(1);
            if let Some(m) = batch.next_record() {
                let position = m.meta.position;
                drop(batch);
                let reply = Message {
                    payload: b"pong",
                    meta: Meta { position, ..Meta::default() },
                    ..Default::default()
                };
                pong_p.push(&reply).unwrap();
                n += 1;
            }
        }
    });
    pin(0);
    let mut samples = Vec::with_capacity(trips);
    for i in 0..trips as u64 {
        let start = Instant::now();
        ping_p
            .push(&Message {
                payload: b"ping",
                meta: Meta { position: i, ..Meta::default() },
                ..Default::default()
            })
            .unwrap();
        loop {
            let batch = pong_c.read_batch(1);
            if let Some(m) = batch.next_record() {
                assert_eq!(m.meta.position, i);
                break;
            }
        }
        samples.push(start.elapsed());
    }
    echo.join().unwrap();
    samples.sort();
    samples[samples.len() / 2]
}

fn rtrb_round_trip(trips: usize) -> Duration {
    let (mut ping_p, mut ping_c) = rtrb::RingBuffer::<u64>::new(1024);
    let (mut pong_p, mut pong_c) = rtrb::RingBuffer::<u64>::new(1024);
    let echo = std::thread::spawn(move || {
        pin(1);
        let mut n = 0;
        while n < trips {
            if let Ok(v) = ping_c.pop() {
                pong_p.push(v).unwrap();
                n += 1;
            }
        }
    });
    pin(0);
    let mut samples = Vec::with_capacity(trips);
    for i in 0..trips as u64 {
        let start = Instant::now();
        ping_p.push(i).unwrap();
        loop {
            if let Ok(v) = pong_c.pop() {
                assert_eq!(v, i);
                break;
            }
        }
        samples.push(start.elapsed());
    }
    echo.join().unwrap();
    samples.sort();
    samples[samples.len() / 2]
}

fn best_of(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..runs).map(|_| f()).fold(0.0, f64::max)
}

fn main() {
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    let quick = std::env::args().any(|a| a == "--quick");
    let records: u64 = if quick { 2_000_000 } else { 20_000_000 };
    let runs = if quick { 1 } else { 3 };
    let trips = if quick { 20_000 } else { 200_000 };
    println!(
        "ring throughput, {records} records, best of {runs}, ring {RING_BYTES} bytes, batch {BATCH}"
    );
    println!("{:<44} {:>14}", "case", "records/s");
    for (name, value) in [
        (
            "corestream  8 B payload, one at a time",
            best_of(runs, || corestream_throughput(records, 8, 1)),
        ),
        (
            "rtrb        8 B item,    one at a time",
            best_of(runs, || rtrb_throughput::<8>(records, false)),
        ),
        (
            "corestream  8 B payload, batched",
            best_of(runs, || corestream_throughput(records, 8, BATCH)),
        ),
        (
            "rtrb        8 B item,    chunk API",
            best_of(runs, || rtrb_throughput::<8>(records, true)),
        ),
        (
            "corestream 64 B payload, one at a time",
            best_of(runs, || corestream_throughput(records, 64, 1)),
        ),
        (
            "rtrb       64 B item,    one at a time",
            best_of(runs, || rtrb_throughput::<64>(records, false)),
        ),
        (
            "corestream 64 B payload, batched",
            best_of(runs, || corestream_throughput(records, 64, BATCH)),
        ),
        (
            "rtrb       64 B item,    chunk API",
            best_of(runs, || rtrb_throughput::<64>(records, true)),
        ),
        // The bytes a corestream record with a 64-byte payload moves (40-byte header
        // + 64): the same volume through rtrb, to separate ring design from record size.
        (
            "rtrb      104 B item,    one at a time",
            best_of(runs, || rtrb_throughput::<104>(records, false)),
        ),
        (
            "rtrb      104 B item,    chunk API",
            best_of(runs, || rtrb_throughput::<104>(records, true)),
        ),
    ] {
        println!("{name:<44} {:>12.1}M", value / 1e6);
    }
    let ours = corestream_round_trip(trips);
    let theirs = rtrb_round_trip(trips);
    println!(
        "round trip p50 (one record each way): corestream {ours:?}, rtrb {theirs:?}, ratio {:.2}",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}
