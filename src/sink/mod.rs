//! Where a message leaves: sinks, one instance per worker, plus the dead-letter sink.
//!
//! A worker hands its sink the outputs of one batch with the batch's [`Ticket`]. The
//! sink copies what it needs before `write` returns (the outputs borrow the ring and
//! the arena, both reused right after), and releases the ticket through its
//! [`Acker`] once the batch is durable in the sink's sense: written to the OS for
//! file and stdout, counted for null, delivered for Kafka. See [`crate::ack`].

pub mod dead_letter;
pub mod io_thread;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod null;
pub mod output_file;
pub mod resilient;
pub mod writer;

use crate::ack::{Acker, Ticket};
use crate::message::{Message, Meta, Output};
use crate::retry::ErrorCategory;

pub use dead_letter::{DeadLetter, DeadLetterRecord};
pub use resilient::{Resilience, ResilientSinkFactory};

/// A sink failure: a category (which drives retry) and a human message.
#[derive(Debug)]
pub struct SinkError {
    pub category: ErrorCategory,
    pub message: String,
}

impl SinkError {
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        SinkError { category, message: message.into() }
    }

    /// An I/O error, categorised by its kind.
    pub fn io(context: &str, error: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let category = match error.kind() {
            NotFound => ErrorCategory::TopicMissing,
            PermissionDenied => ErrorCategory::Auth,
            TimedOut | WouldBlock => ErrorCategory::Timeout,
            ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => {
                ErrorCategory::Network
            }
            InvalidInput | InvalidData => ErrorCategory::Serialization,
            _ => ErrorCategory::Unknown,
        };
        SinkError { category, message: format!("{context}: {error}") }
    }
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.category.name())
    }
}

impl std::error::Error for SinkError {}

/// A worker's sink.
///
/// # Failure contract
/// The resilient wrapper ([`resilient`]) retries, dead-letters and counts sink
/// failures; it relies on three promises every sink keeps:
/// - `write` is all-or-nothing: when it returns `Err`, the sink kept none of the
///   batch's outputs and did not take the ticket (the caller still owns it), so
///   calling `write` again with the same batch cannot duplicate anything.
/// - `flush` that fails keeps what it holds (and its tickets); a later `write`,
///   `flush` or `idle` tries it again.
/// - [`Sink::abandon`] hands back everything accepted and not yet durable, so it
///   can be dead-lettered when the retry policy gives up.
pub trait Sink: Send {
    /// Accepts the outputs of one batch and takes over its ticket: the sink must
    /// eventually release it (`Acker::done`) exactly once per hold. `outputs` may be
    /// empty (everything was filtered, or the batch was dead-lettered): the ticket
    /// still has to be released, and such a write must not fail.
    fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError>;

    /// As [`Sink::write`], with the batch's inputs (`outputs[i].input` indexes
    /// `inputs`), so a sink that holds outputs can tell where each came from
    /// ([`Meta`]: partition and position) when it must dead-letter it. The worker
    /// calls this one; the default ignores `inputs`.
    #[inline]
    fn write_batch(
        &mut self,
        outputs: &[Output<'_>],
        inputs: &[Message<'_>],
        ticket: Ticket,
    ) -> Result<(), SinkError> {
        let _ = inputs;
        self.write(outputs, ticket)
    }

    /// Makes everything accepted so far durable and releases its tickets. Called
    /// when the ticket queue is full and at shutdown.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// The worker ran out of input. Make durable what is due and report whether
    /// the sink still holds anything (`Ok(false)`: a sink with a linger time keeps
    /// a young, small batch; the worker asks again on its next idle wake-up, at
    /// least every [`crate::wait::PARK_US_MAX`] µs). The default flushes.
    fn idle(&mut self) -> Result<bool, SinkError> {
        self.flush().map(|()| true)
    }

    /// Called once at shutdown after the last batch; flushes by default.
    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }

    /// The retry policy gave up: hand every output accepted but not yet durable to
    /// `dead_letter`, forget it, and release its tickets, unless `dead_letter`
    /// returned `false` for any of them (it could not store it: the tickets stay
    /// held, so the engine, which stops on that error, replays the input after a
    /// restart). A write still blocked in the OS is left to finish on its own and
    /// its result is ignored (see [`writer`]). The default holds nothing.
    fn abandon(&mut self, dead_letter: &mut dyn FnMut(&Undelivered<'_>) -> bool) {
        let _ = dead_letter;
    }

    /// What the sink counted itself since the last call; the resilient wrapper adds
    /// it to the worker's counters after each operation.
    #[inline]
    fn take_counts(&mut self) -> SinkCounts {
        SinkCounts::default()
    }
}

/// Counts a sink keeps itself (see [`Sink::take_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Outputs dropped because a later one with the same key superseded them.
    pub deduplicated: u64,
}

/// An output a sink accepted and could not make durable, handed back by
/// [`Sink::abandon`] for the dead-letter sink.
#[derive(Clone, Copy, Debug)]
pub struct Undelivered<'a> {
    /// The input it came from (partition and position).
    pub meta: Meta,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

/// Creates one sink per worker.
pub trait SinkFactory: Send + Sync {
    /// A short name for logs and `validate` ("file out.ndjson", "null", ...).
    fn describe(&self) -> String;

    /// The sink of worker `worker`, releasing tickets through `acker`.
    fn open(&self, worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError>;
}

/// Tickets accepted but not yet released by a synchronous, buffering sink.
/// Tickets of one worker have consecutive sequence numbers, so a range suffices.
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingTickets {
    range: Option<(Ticket, Ticket)>,
}

impl PendingTickets {
    #[inline]
    pub fn push(&mut self, ticket: Ticket) {
        self.range = match self.range {
            None => Some((ticket, ticket)),
            Some((first, last)) => {
                debug_assert_eq!(last.seq + 1, ticket.seq, "tickets arrive in order");
                Some((first, ticket))
            }
        };
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_none()
    }

    /// Releases every pending ticket.
    #[inline]
    pub fn release(&mut self, acker: &Acker) {
        if let Some((first, last)) = self.range.take() {
            acker.done_range(first, last);
        }
    }
}
