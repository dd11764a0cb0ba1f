//! The null sink: accepts and acknowledges everything at once. The engine's own
//! counters count what reaches it; `corestream bench` measures the engine with it.

use super::{Sink, SinkError, SinkFactory};
use crate::ack::{Acker, Ticket};
use crate::message::Output;

/// Discards outputs; acknowledges each batch immediately.
pub struct NullSink {
    acker: Acker,
}

impl Sink for NullSink {
    #[inline]
    fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
        // Touch the outputs' lengths so a benchmark cannot optimise the work away.
        std::hint::black_box(outputs.iter().map(|o| o.payload.len()).sum::<usize>());
        self.acker.done(ticket);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Factory for [`NullSink`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NullSinkFactory;

impl SinkFactory for NullSinkFactory {
    fn describe(&self) -> String {
        "null".to_string()
    }

    fn open(&self, _worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(NullSink { acker }))
    }
}
