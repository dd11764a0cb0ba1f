use super::*;
use crate::message::{Headers, Meta};

fn msg(position: u64, payload: &[u8]) -> Message<'_> {
    Message { payload, meta: Meta { position, ..Meta::default() }, ..Default::default() }
}

fn drain(consumer: &mut Consumer, records_max: usize) -> Vec<(u64, Vec<u8>)> {
    let batch = consumer.read_batch(records_max);
    batch.iter().map(|m| (m.meta.position, m.payload.to_vec())).collect()
}

#[test]
fn capacity_must_be_a_power_of_two_in_range() {
    assert!(matches!(ring(5000), Err(RingError::BadCapacity { capacity_bytes: 5000 })));
    assert!(matches!(ring(1024), Err(RingError::BadCapacity { .. })));
    assert!(ring(4096).is_ok());
}

#[test]
fn records_keep_order_key_headers_and_meta() {
    let (mut p, mut c) = ring(4096).unwrap();
    let hsrc: [(&[u8], Option<&[u8]>); 1] = [(b"trace", Some(b"t-1"))];
    let mut hbuf = [0u8; 32];
    let hn = Headers::encode(hsrc, &mut hbuf).unwrap();
    let meta = Meta { partition: 7, position: 42, timestamp_ms: 1_700_000_000_000, ingest_ns: 9 };
    let m = Message {
        key: b"key",
        payload: b"payload",
        headers: Headers::from_encoded(&hbuf[..hn]),
        meta,
    };
    p.push(&m).unwrap();
    p.push(&msg(43, b"")).unwrap();
    let batch = c.read_batch(10);
    let first = batch.next_record().unwrap();
    assert_eq!(first, m);
    let second = batch.next_record().unwrap();
    assert_eq!((second.meta.position, second.payload), (43, &b""[..]));
    assert!(batch.next_record().is_none());
}

#[test]
fn staged_records_are_invisible_until_commit() {
    let (mut p, mut c) = ring(4096).unwrap();
    p.write(&msg(1, b"a")).unwrap();
    p.write(&msg(2, b"b")).unwrap();
    assert_eq!(p.staged(), 2);
    assert!(c.read_batch(10).is_empty());
    assert_eq!(p.commit(), 2);
    assert_eq!(p.commit(), 0);
    assert_eq!(drain(&mut c, 10), vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
}

#[test]
fn full_ring_refuses_then_accepts_after_release() {
    let (mut p, mut c) = ring(4096).unwrap();
    let payload = [7u8; 1000]; // frame = 1040 bytes; 3 fit in 4096, a 4th does not
    for i in 0..3 {
        p.push(&msg(i, &payload)).unwrap();
    }
    assert_eq!(p.push(&msg(3, &payload)), Err(PushError::Full));
    // Read one record and release it: now a fourth fits (with wrap padding).
    assert_eq!(drain(&mut c, 1).len(), 1);
    p.push(&msg(3, &payload)).unwrap();
    let rest = drain(&mut c, 10);
    assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(rest.iter().all(|r| r.1 == payload));
}

#[test]
fn record_larger_than_half_the_ring_is_refused_not_truncated() {
    let (mut p, mut c) = ring(4096).unwrap();
    let big = vec![1u8; 2048];
    match p.push(&msg(0, &big)) {
        Err(PushError::TooLarge(FrameError::TooLarge { frame_bytes, frame_bytes_max })) => {
            assert_eq!(frame_bytes, 2048 + RECORD_HEADER_BYTES);
            assert_eq!(frame_bytes_max, 2048);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Largest legal record still goes through, and nothing else was written.
    let largest = vec![2u8; 2048 - RECORD_HEADER_BYTES];
    p.push(&msg(1, &largest)).unwrap();
    assert_eq!(drain(&mut c, 10), vec![(1, largest)]);
}

#[test]
fn record_that_exactly_fills_the_end_then_wraps_to_zero() {
    let (mut p, mut c) = ring(4096).unwrap();
    // Frames of 1024 bytes: four fill the buffer exactly, the fifth starts at 0.
    let payload = [3u8; 1024 - RECORD_HEADER_BYTES];
    for i in 0..4 {
        p.push(&msg(i, &payload)).unwrap();
    }
    assert_eq!(p.push(&msg(4, &payload)), Err(PushError::Full));
    assert_eq!(drain(&mut c, 1)[0].0, 0);
    p.push(&msg(4, &payload)).unwrap();
    assert_eq!(drain(&mut c, 10).iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
}

#[test]
fn batch_limit_and_early_stop_leave_the_rest_for_later() {
    let (mut p, mut c) = ring(4096).unwrap();
    for i in 0..10 {
        p.write(&msg(i, b"x")).unwrap();
    }
    p.commit();
    assert_eq!(drain(&mut c, 4).len(), 4);
    {
        let batch = c.read_batch(100);
        assert_eq!(batch.peek().unwrap().meta.position, 4);
        assert_eq!(batch.peek().unwrap().meta.position, 4, "peek does not consume");
        batch.advance();
        assert_eq!(batch.records_read(), 1);
    }
    assert_eq!(drain(&mut c, 100).iter().map(|r| r.0).collect::<Vec<_>>(), vec![5, 6, 7, 8, 9]);
}

#[test]
fn closed_ends_are_reported() {
    let (mut p, mut c) = ring(4096).unwrap();
    p.push(&msg(0, b"last")).unwrap();
    drop(p);
    assert!(!c.is_finished(), "one record still to read");
    assert_eq!(drain(&mut c, 10).len(), 1);
    assert!(c.is_finished());

    let (mut p, c) = ring(4096).unwrap();
    drop(c);
    let payload = [0u8; 1500];
    p.push(&msg(0, &payload)).unwrap();
    p.push(&msg(1, &payload)).unwrap();
    assert_eq!(p.push(&msg(2, &payload)), Err(PushError::Closed));
}

#[test]
fn two_threads_move_a_million_variable_records_in_order() {
    const COUNT: u64 = 1_000_000;
    let (mut p, mut c) = ring(1 << 16).unwrap();
    let producer = std::thread::spawn(move || {
        let mut waiter = Waiter::default();
        let mut payload = [0u8; 300];
        for i in 0..COUNT {
            let len = (i % 300) as usize;
            payload[..len].fill(i as u8);
            let m = msg(i, &payload[..len]);
            loop {
                match p.write(&m) {
                    Ok(()) => break,
                    Err(PushError::Full) => {
                        p.wait_for_space(frame::frame_len(&m).unwrap(), &mut waiter);
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            waiter.reset();
            if i % 64 == 63 {
                p.commit();
            }
        }
    });
    let mut expected = 0u64;
    let mut waiter = Waiter::default();
    loop {
        let batch = c.read_batch(256);
        if batch.is_empty() {
            drop(batch);
            if c.is_finished() {
                break;
            }
            c.wait_for_data(&mut waiter);
            continue;
        }
        for m in batch.iter() {
            assert_eq!(m.meta.position, expected, "lost, duplicated or reordered");
            let len = (expected % 300) as usize;
            assert_eq!(m.payload.len(), len);
            assert!(m.payload.iter().all(|&b| b == expected as u8), "corrupted payload");
            expected += 1;
        }
        waiter.reset();
    }
    producer.join().unwrap();
    assert_eq!(expected, COUNT);
}

#[test]
fn payload_parts_are_concatenated() {
    let (mut p, mut c) = ring(4096).unwrap();
    let m = Message { key: b"k", payload: b"{\"id\":", ..Default::default() };
    p.write_parts(&m, &[b"42", b",\"x\":1}"]).unwrap();
    p.commit();
    let batch = c.read_batch(1);
    let back = batch.next_record().unwrap();
    assert_eq!(back.payload, b"{\"id\":42,\"x\":1}");
    assert_eq!(back.key, b"k");
}

#[test]
fn payloads_of_every_small_length_copy_exactly() {
    let (mut p, mut c) = ring(1 << 16).unwrap();
    let source: Vec<u8> = (0..200u8).collect();
    for len in 0..=100usize {
        // Odd offsets too: the parts after the key start unaligned.
        let key = &source[..len % 7];
        let m = Message { key, payload: &source[len..len * 2], ..Default::default() };
        p.write_parts(&m, &[&source[..len % 33], &source[100..100 + len % 17]]).unwrap();
        p.commit();
        let batch = c.read_batch(1);
        let back = batch.next_record().unwrap();
        let mut expected = source[len..len * 2].to_vec();
        expected.extend_from_slice(&source[..len % 33]);
        expected.extend_from_slice(&source[100..100 + len % 17]);
        assert_eq!(back.key, key, "key of length {}", len % 7);
        assert_eq!(back.payload, &expected[..], "payload for len {len}");
    }
}

#[test]
fn fill_sees_published_bytes_until_the_batch_is_released() {
    let (mut producer, mut consumer) = ring(4096).unwrap();
    let fill = producer.fill();
    assert_eq!((fill.used_bytes(), fill.capacity()), (0, 4096));
    producer.write(&msg(0, b"hello")).unwrap();
    assert_eq!(fill.used_bytes(), 0, "staged, not published");
    producer.commit();
    let used = fill.used_bytes();
    assert!(used >= RECORD_HEADER_BYTES + 5, "{used}");
    let batch = consumer.read_batch(16);
    assert_eq!(batch.iter().count(), 1);
    assert_eq!(fill.used_bytes(), used, "read but not released");
    drop(batch);
    assert_eq!(fill.used_bytes(), 0);
}
