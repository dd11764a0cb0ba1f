//! Every bound in corestream, with its reason and its memory cost, in one place.
//!
//! Configurable limits have their default here and their allowed range next to it;
//! `const` asserts tie related bounds together so that changing one cannot silently
//! break another (TigerBeetle's `constants.zig` habit).

/// Cache line size assumed for padding. 128 rather than 64 because Intel's spatial
/// prefetcher pulls cache lines in pairs, so two hot indices 64 bytes apart still
/// false-share (the same reasoning as crossbeam's `CachePadded`).
pub const CACHE_LINE_BYTES: usize = 128;

/// Alignment of every record frame in a ring. 8 keeps the frame header's `u64`
/// fields naturally aligned so it can be read with plain loads.
pub const RECORD_ALIGN_BYTES: usize = 8;

/// Frame header bytes (see `ring::frame`): lengths, partition, position, timestamps.
pub const RECORD_HEADER_BYTES: usize = 40;

/// Largest key a record may carry. Keys are hashed and compared per message; 64 KiB
/// minus one fits the header's `u16` length and is far beyond any practical key.
pub const KEY_BYTES_MAX: usize = u16::MAX as usize - 1;

/// Longest Kafka topic name (Kafka's own rule), and so of a rendered topic template.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Largest encoded header block per record (fits the frame's `u16` length).
pub const HEADERS_BYTES_MAX: usize = u16::MAX as usize - 1;

/// Default largest payload accepted into a ring. A longer line or message is refused
/// with an error the caller routes (counted, dead-lettered), never truncated.
pub const RECORD_BYTES_MAX_DEFAULT: usize = 1 << 20;
/// Largest `record_bytes_max` the config accepts: a record may use half of the
/// largest ring ([`RING_BYTES_MAX`]) with its header.
pub const RECORD_BYTES_MAX: usize = RING_BYTES_MAX / 2 - RECORD_HEADER_BYTES;

/// Default ring size per worker: 8 MiB. At ~200-byte orders this buffers ~35k
/// messages, about 10 ms of traffic at full speed; memory cost = workers × this.
pub const RING_BYTES_DEFAULT: usize = 8 << 20;
/// Smallest ring the config accepts. Below this the batch API has nothing to batch.
pub const RING_BYTES_MIN: usize = 4096;
/// Largest ring the config accepts (1 GiB per worker); indices are `u64` bytes.
pub const RING_BYTES_MAX: usize = 1 << 30;

/// Default records a worker pulls from its ring per batch. One index publish and one
/// clock read per batch; 512 keeps a batch of orders (~100 KB) inside L2.
pub const BATCH_RECORDS_DEFAULT: usize = 512;
/// Upper bound of the batch size, fixed so per-batch arrays can be sized at start.
pub const BATCH_RECORDS_MAX: usize = 65_536;

/// Initial capacity of a worker's bump arena: enough for a default batch of orders
/// plus their rewritten outputs, so steady state never asks the allocator for more.
pub const ARENA_BYTES_INITIAL: usize = 4 << 20;
/// Largest initial arena the config accepts (1 GiB per worker, like a ring): the
/// arena is allocated at start, and more than a batch's worth is never used.
pub const ARENA_BYTES_MAX: usize = 1 << 30;

/// Most workers the engine starts. Per-worker state is sized by this at start.
pub const WORKERS_MAX: usize = 256;

/// Batches a worker may have handed to its sink but not yet had acknowledged (an
/// asynchronous sink such as Kafka acknowledges later). Bounds replay after a crash
/// and the memory of the ticket queue: 1024 × ~64 bytes per worker.
pub const TICKETS_IN_FLIGHT_MAX: usize = 1024;

/// Sink write buffer for file and stdout sinks (per worker): flushed when full, when
/// the worker runs out of input, and at shutdown.
pub const SINK_BUFFER_BYTES_DEFAULT: usize = 256 << 10;

/// Largest value the latency histograms track (60 s in ns); larger values saturate.
pub const LATENCY_NS_MAX: u64 = 60_000_000_000;
/// HDR histogram precision: 2 significant digits (1 % error). ~26 KiB of buckets per
/// worker, small enough to stay in L2 while recording on the hot path (3 digits
/// would be ~210 KiB).
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;

/// Source read buffer for the file and stdin sources.
pub const SOURCE_READ_BYTES: usize = 1 << 20;

const _: () = assert!(RECORD_HEADER_BYTES % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(RING_BYTES_MIN.is_power_of_two() && RING_BYTES_MAX.is_power_of_two());
const _: () = assert!(RING_BYTES_DEFAULT.is_power_of_two());
// A record may take at most half the ring, so that wrap-around padding (at most one
// record minus one alignment unit) never makes a legal record unplaceable.
const _: () = assert!(RECORD_BYTES_MAX_DEFAULT + RECORD_HEADER_BYTES <= RING_BYTES_DEFAULT / 2);
const _: () = assert!(BATCH_RECORDS_DEFAULT <= BATCH_RECORDS_MAX);
const _: () = assert!(ARENA_BYTES_INITIAL <= ARENA_BYTES_MAX);
const _: () = assert!(SOURCE_READ_BYTES >= 2 * RECORD_ALIGN_BYTES);
