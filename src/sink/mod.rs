//! Where a message leaves: sinks, one instance per worker, plus the dead-letter sink.
//!
//! A worker hands its sink the outputs of one batch with the batch's [`Ticket`]. The
//! sink copies what it needs before `write` returns (the outputs borrow the ring and
//! the arena, both reused right after), and releases the ticket through its
//! [`Acker`] once the batch is durable in the sink's sense: written to the OS for
//! file and stdout, counted for null, delivered for Kafka. See [`crate::ack`].

pub mod dead_letter;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod null;
pub mod writer;

use crate::ack::{Acker, Ticket};
use crate::message::Output;
use crate::retry::ErrorCategory;

pub use dead_letter::{DeadLetter, DeadLetterRecord};

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
pub trait Sink: Send {
    /// Accepts the outputs of one batch and takes over its ticket: the sink must
    /// eventually release it (`Acker::done`) exactly once per hold. `outputs` may be
    /// empty (everything was filtered): the ticket still has to be released.
    fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError>;

    /// Makes everything accepted so far durable and releases its tickets. Called
    /// when the worker runs out of input, so an idle engine holds nothing back.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Called once at shutdown after the last batch; flushes by default.
    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }
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
