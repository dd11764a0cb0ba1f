//! Where a message is transformed: the [`Processor`] trait a worker calls per batch.
//!
//! A worker pulls a batch of [`Message`]s from its ring (borrowed, zero copy), hands
//! them to its processor together with an [`Emit`], and passes what was emitted to
//! its sink. The processor may, for each input:
//! - emit one output (pass it on, rewritten or not),
//! - emit several outputs (fan-out), all carrying the input's index,
//! - emit nothing (the input is *filtered*: counted and acknowledged),
//! - fail it with a category and a reason (it goes to the dead-letter sink).
//!
//! Everything the processor builds (rewritten payloads, topic names, reasons) is
//! allocated in the worker's bump arena through [`Emit::arena`] and lives until the
//! batch is done; the arena is reset after every batch, so steady state allocates
//! nothing from the heap.

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;

use crate::message::{Message, Output};
use crate::retry::ErrorCategory;

/// A batch transformation. One instance per worker; called from that worker only.
pub trait Processor: Send {
    /// Processes one batch. `input` is in ring order (order per key holds); the
    /// processor reports every decision through `emit`.
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>);

    /// Adds what the processor counted during the batch (state cache hits, dedup
    /// drops, ...) to the worker's per-batch counts; the worker calls it once per
    /// batch, after [`Processor::process`], and publishes them with its own. Default:
    /// nothing to add.
    #[inline]
    fn publish_counts(&mut self, _local: &mut crate::metrics::counters::LocalCounts) {}

    /// The processor's name in logs (default: its type name).
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }
}

/// A per-message failure reported by a processor.
#[derive(Clone, Copy, Debug)]
pub struct Failure<'a> {
    /// Index of the input in its batch.
    pub input: u32,
    pub category: ErrorCategory,
    /// Why, for the dead-letter record and the logs. Static or arena-allocated.
    pub reason: &'a str,
}

/// What a processor hands back: outputs and failures, both in the worker's arena.
pub struct Emit<'a, 'e> {
    arena: &'a Bump,
    outputs: &'e mut BumpVec<'a, Output<'a>>,
    failures: &'e mut BumpVec<'a, Failure<'a>>,
}

impl<'a, 'e> Emit<'a, 'e> {
    /// Wraps the worker's per-batch vectors (both empty, both in `arena`).
    pub fn new(
        arena: &'a Bump,
        outputs: &'e mut BumpVec<'a, Output<'a>>,
        failures: &'e mut BumpVec<'a, Failure<'a>>,
    ) -> Self {
        debug_assert!(outputs.is_empty() && failures.is_empty());
        Emit { arena, outputs, failures }
    }

    /// The worker's arena: allocate rewritten payloads, topics and reasons here.
    #[inline]
    pub fn arena(&self) -> &'a Bump {
        self.arena
    }

    /// Sends an output to the sink. `output.input` names the input it came from.
    #[inline]
    pub fn emit(&mut self, output: Output<'a>) {
        self.outputs.push(output);
    }

    /// Passes `input` (at index `index` of the batch) through unchanged.
    #[inline]
    pub fn pass(&mut self, index: u32, input: &Message<'a>) {
        self.outputs.push(Output {
            input: index,
            topic: "",
            key: input.key,
            payload: input.payload,
            headers: input.headers,
        });
    }

    /// Sends input `index` to the dead-letter path with a category and a reason.
    #[inline]
    pub fn fail(&mut self, index: u32, category: ErrorCategory, reason: &'a str) {
        self.failures.push(Failure { input: index, category, reason });
    }

    /// Outputs emitted so far in this batch.
    pub fn outputs(&self) -> &[Output<'a>] {
        self.outputs
    }

    /// Failures reported so far in this batch.
    pub fn failures(&self) -> &[Failure<'a>] {
        self.failures
    }
}

/// Passes every message through unchanged: the cheapest processor, used by
/// `corestream bench` to measure the engine itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough;

impl Processor for PassThrough {
    #[inline]
    fn process<'a>(&mut self, input: &[Message<'a>], emit: &mut Emit<'a, '_>) {
        for (index, message) in input.iter().enumerate() {
            emit.pass(index as u32, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_through_emits_each_input_once_in_order() {
        let arena = Bump::new();
        let mut outputs = BumpVec::new_in(&arena);
        let mut failures = BumpVec::new_in(&arena);
        let input = [
            Message { key: b"a", payload: b"1", ..Default::default() },
            Message { key: b"b", payload: b"2", ..Default::default() },
        ];
        let mut emit = Emit::new(&arena, &mut outputs, &mut failures);
        PassThrough.process(&input, &mut emit);
        assert_eq!(emit.outputs().len(), 2);
        assert_eq!(emit.outputs()[1].input, 1);
        assert_eq!(emit.outputs()[1].payload, b"2");
        assert!(emit.failures().is_empty());
    }
}
