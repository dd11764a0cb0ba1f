//! Shared by the failure tests: a fault-injecting sink, an in-memory dead-letter
//! sink, a gated writer that hangs until released, and the accounting check
//! "every input ends delivered or dead-lettered, exactly once, in order per key".
#![allow(dead_code)] // each test file uses a subset

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use corestream::ack::{Acker, Ticket};
use corestream::engine::{Engine, EngineError, EngineSettings, Report};
use corestream::message::{Message, Output};
use corestream::processor::PassThrough;
use corestream::retry::breaker::BreakerConfig;
use corestream::retry::policy::PolicyParams;
use corestream::retry::{ActionTable, ErrorCategory, RetryPolicy};
use corestream::sink::dead_letter::{DeadLetter, DeadLetterRecord, Stage};
use corestream::sink::{Resilience, Sink, SinkError, SinkFactory};
use corestream::source::generator::{GeneratorSettings, GeneratorSource};
use corestream::worker::Placement;

/// What the sink does on its failing calls.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Return this error.
    Fail(ErrorCategory, &'static str),
    /// Panic.
    Panic,
}

/// A fault plan shared by every worker's sink: the first `failures` non-empty
/// writes fail (`u64::MAX`: all of them); the rest deliver.
pub struct Plan {
    fault: Fault,
    failures_left: Mutex<u64>,
    /// Non-empty write calls.
    pub calls: AtomicU64,
    pub delivered: Mutex<Vec<Delivered>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub position: u64,
    pub key: Vec<u8>,
}

impl Plan {
    pub fn new(fault: Fault, failures: u64) -> Arc<Plan> {
        Arc::new(Plan {
            fault,
            failures_left: Mutex::new(failures),
            calls: AtomicU64::new(0),
            delivered: Mutex::new(Vec::new()),
        })
    }

    fn take_failure(&self) -> bool {
        let mut left = self.failures_left.lock().unwrap();
        match *left {
            0 => false,
            u64::MAX => true,
            _ => {
                *left -= 1;
                true
            }
        }
    }
}

pub struct FaultFactory(pub Arc<Plan>);

struct FaultSink {
    plan: Arc<Plan>,
    acker: Acker,
}

impl Sink for FaultSink {
    fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
        self.write_batch(outputs, &[], ticket)
    }

    fn write_batch(
        &mut self,
        outputs: &[Output<'_>],
        inputs: &[Message<'_>],
        ticket: Ticket,
    ) -> Result<(), SinkError> {
        if outputs.is_empty() {
            // The sink contract: an empty batch only hands over its ticket.
            self.acker.done(ticket);
            return Ok(());
        }
        self.plan.calls.fetch_add(1, Ordering::Relaxed);
        if self.plan.take_failure() {
            match &self.plan.fault {
                Fault::Fail(category, text) => return Err(SinkError::new(*category, *text)),
                Fault::Panic => panic!("injected sink panic"),
            }
        }
        let mut delivered = self.plan.delivered.lock().unwrap();
        for output in outputs {
            let input = &inputs[output.input as usize];
            delivered.push(Delivered { position: input.meta.position, key: output.key.to_vec() });
        }
        drop(delivered);
        self.acker.done(ticket);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl SinkFactory for FaultFactory {
    fn describe(&self) -> String {
        "fault-injecting sink".into()
    }

    fn open(&self, _worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(FaultSink { plan: self.0.clone(), acker }))
    }
}

/// One dead-lettered message.
#[derive(Clone, Debug)]
pub struct Dead {
    pub category: ErrorCategory,
    pub stage: Stage,
    pub reason: String,
    pub attempts: u32,
    pub position: u64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Keeps dead letters in memory.
#[derive(Default)]
pub struct MemoryDeadLetter(pub Mutex<Vec<Dead>>);

impl DeadLetter for MemoryDeadLetter {
    fn send(&self, r: &DeadLetterRecord<'_>) -> Result<(), SinkError> {
        self.0.lock().unwrap().push(Dead {
            category: r.category,
            stage: r.stage,
            reason: r.reason.to_string(),
            attempts: r.attempts,
            position: r.position,
            key: r.key.to_vec(),
            payload: r.payload.to_vec(),
        });
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

pub fn settings(workers: usize) -> EngineSettings {
    EngineSettings {
        workers,
        ring_bytes: 1 << 16,
        batch_records: 64,
        placement: Placement::Unpinned,
        arena_bytes: 1 << 16,
        record_bytes_max: 1024,
        ..EngineSettings::default()
    }
}

pub fn generator(count: u64, keys: u64) -> Box<GeneratorSource> {
    Box::new(
        GeneratorSource::new(GeneratorSettings {
            count: Some(count),
            keys,
            message_bytes: 80,
            batch_records: 64,
            ..Default::default()
        })
        .unwrap(),
    )
}

/// Millisecond-scale delays so the tests run fast; `attempts` in all; a breaker
/// that opens after `breaker_failures` consecutive failures for 5 ms.
pub fn resilience(attempts: u32, breaker_failures: u32) -> Resilience {
    Resilience {
        policy: RetryPolicy::build(&PolicyParams {
            delay_initial: Duration::from_millis(1),
            delay_max: Duration::from_millis(2),
            attempts_max: attempts,
            elapsed_max: Duration::from_secs(600),
            ..PolicyParams::default()
        })
        .unwrap(),
        actions: ActionTable::default(),
        breaker: BreakerConfig {
            failures_to_open: breaker_failures,
            cool_down: Duration::from_millis(5),
        },
    }
}

/// Runs `count` generated messages through the fault sink.
pub fn run_with(
    plan: &Arc<Plan>,
    workers: usize,
    count: u64,
    resilience: Resilience,
) -> (Result<Report, EngineError>, Arc<MemoryDeadLetter>) {
    let dead = Arc::new(MemoryDeadLetter::default());
    let result = Engine::new(
        settings(workers),
        generator(count, 40),
        Box::new(|_| Box::new(PassThrough)),
        Arc::new(FaultFactory(plan.clone())),
    )
    .dead_letter(dead.clone())
    .resilience(resilience)
    .run();
    (result, dead)
}

/// Every input position is delivered or dead-lettered exactly once, and the
/// delivered ones keep their order per key.
pub fn assert_settled_exactly_once(count: u64, delivered: &[Delivered], dead: &[Dead]) {
    assert_eq!(
        delivered.len() as u64 + dead.len() as u64,
        count,
        "delivered {} + dead-lettered {} != input {count}",
        delivered.len(),
        dead.len()
    );
    let mut positions = BTreeSet::new();
    for p in delivered.iter().map(|d| d.position).chain(dead.iter().map(|d| d.position)) {
        assert!(positions.insert(p), "position {p} settled twice");
    }
    assert_eq!(positions.len() as u64, count);
    assert_order_per_key(delivered);
}

pub fn assert_order_per_key(delivered: &[Delivered]) {
    let mut last: HashMap<&[u8], u64> = HashMap::new();
    for d in delivered {
        if let Some(previous) = last.insert(&d.key, d.position) {
            assert!(previous < d.position, "key {:?}: {} after {previous}", d.key, d.position);
        }
    }
}

/// A `Write` whose first `write` blocks until the test opens the gate; then it
/// succeeds (`fail_when_released == false`) or fails. Later writes go through.
/// Everything written is kept.
#[derive(Clone)]
pub struct GatedWriter {
    gate: Arc<(Mutex<GateState>, Condvar)>,
    pub written: Arc<Mutex<Vec<u8>>>,
}

struct GateState {
    blocked_once: bool,
    open: bool,
    fail_when_released: bool,
}

impl GatedWriter {
    pub fn new(fail_when_released: bool) -> Self {
        GatedWriter {
            gate: Arc::new((
                Mutex::new(GateState { blocked_once: false, open: false, fail_when_released }),
                Condvar::new(),
            )),
            written: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn open(&self) {
        self.gate.0.lock().unwrap().open = true;
        self.gate.1.notify_all();
    }
}

impl Write for GatedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (lock, condvar) = &*self.gate;
        let mut state = lock.lock().unwrap();
        if !state.blocked_once {
            state.blocked_once = true;
            while !state.open {
                state = condvar.wait(state).unwrap();
            }
            if state.fail_when_released {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "released late"));
            }
        }
        drop(state);
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
