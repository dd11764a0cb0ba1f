//! Instruction counts of the compiled transforms: JSON field extraction, expression
//! compilation and evaluation, template compilation and rendering, the map step, and
//! the whole "orders" pipeline per message and per batch of 512.
//!
//! Every per-message benchmark also has a DHAT limit of 0 heap blocks: the compiled
//! objects, the arena and the scratch buffers are built in `setup`, so only the call
//! is measured. Each setup checks the answer first. Hard limits are ~1.5-2x the
//! measured figures (in benches/README.md) so that a regression fails on a fresh clone.
//! Run: `cargo bench --no-default-features --bench transform`.

use std::hint::black_box;

use bumpalo::Bump;
use corestream::message::Message;
use corestream::processor::{Emit, Processor};
use corestream::transform::expr::{Env, Expr};
use corestream::transform::json::{FieldTable, PATHS_MAX, Slot, extract};
use corestream::transform::orders::orders_pipeline;
use corestream::transform::pipeline::{Outcome, Pipeline, compile_toml};
use corestream::transform::template::{SCRATCH_BYTES, Template};
use corestream::transform::value::{Type, Value};
use gungraun::{
    Callgrind, Dhat, DhatMetric, EventKind, LibraryBenchmarkConfig, library_benchmark,
    library_benchmark_group, main,
};

/// A typical order (189 bytes, the dataset's mean is ~186), paid and over 100.
const ORDER: &[u8] = br#"{"id":104729,"ts":1735690123456,"region":"eu-west","customer":"c-004211","status":"paid","amount":123.45,"currency":"EUR","items":2,"channel":"web","tags":["gift","express"]}"#;
/// The same order with a nested address and escapes in fields the pipeline reads.
const ORDER_ESCAPED: &[u8] = br#"{"id":104730,"ts":1735690123456,"region":"eu\u002dwest","customer":"c\u002d004211","status":"p\u0061id","amount":123.45,"currency":"EUR","items":2,"channel":"web","tags":[],"address":{"city":"Z\u00fcrich","zip":"8001"}}"#;
/// A pending order: dropped by the filter.
const ORDER_PENDING: &[u8] = br#"{"id":104731,"ts":1735690123456,"region":"us-east","customer":"c-000017","status":"pending","amount":19.99,"currency":"USD","items":1,"channel":"ios","tags":[]}"#;

const ORDERS_FIELDS: [&str; 6] = ["id", "region", "customer", "status", "amount", "currency"];

/// Callgrind cap on instructions, plus DHAT: no heap block at all.
fn no_alloc_and_at_most(instructions: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config
        .tool(Callgrind::default().hard_limits([(EventKind::Ir, instructions)]))
        .tool(Dhat::default().hard_limits([(DhatMetric::TotalBlocks, 0)]));
    config
}

/// Callgrind cap only (compilation allocates by design).
fn at_most(instructions: u64) -> LibraryBenchmarkConfig {
    let mut config = LibraryBenchmarkConfig::default();
    config.tool(Callgrind::default().hard_limits([(EventKind::Ir, instructions)]));
    config
}

// ---------------------------------------------------------------- JSON extraction

/// Slots live in the state (a worker fills them once per batch, not per message); the
/// arena is leaked so that the slots can borrow it for 'static.
struct ExtractState {
    table: FieldTable,
    arena: &'static Bump,
    slots: [Slot<'static>; PATHS_MAX],
    payload: &'static [u8],
}

fn setup_extract(payload: &'static [u8]) -> Box<ExtractState> {
    let table = FieldTable::from_paths(ORDERS_FIELDS).unwrap();
    let arena: &'static Bump = Box::leak(Box::new(Bump::with_capacity(4096)));
    let mut slots = [Slot::Missing; PATHS_MAX];
    extract(payload, &table, &mut slots, arena).unwrap();
    assert_eq!(slots[1], Slot::Str(if payload == ORDER_PENDING { "us-east" } else { "eu-west" }));
    assert!(matches!(slots[4], Slot::Float(_)));
    Box::new(ExtractState { table, arena, slots, payload })
}

#[library_benchmark]
#[bench::order(args = (ORDER), setup = setup_extract, config = no_alloc_and_at_most(6_500))]
#[bench::order_escaped(args = (ORDER_ESCAPED), setup = setup_extract, config = no_alloc_and_at_most(10_000))]
fn json_extract_six_fields(mut state: Box<ExtractState>) -> Box<ExtractState> {
    let r = extract(black_box(state.payload), &state.table, &mut state.slots, state.arena);
    black_box((r.is_ok(), &state.slots));
    state
}

// ---------------------------------------------------------------- expressions

const FILTER: &str = r#"status == "paid" && amount > 100.0"#;
const AMOUNT_CENTS: &str = "round(amount * 100)";
const STRINGS: &str =
    r#"contains(lower(customer), "c-00") ? upper(region) + "/" + currency : "other""#;

fn compile_expr(src: &str, table: &mut FieldTable) -> Expr {
    let mut resolve = |p: &str| table.add(p).map(|s| (s, Type::ANY)).map_err(|e| e.to_string());
    Expr::compile(src, &mut resolve).unwrap()
}

#[library_benchmark]
#[bench::filter(args = (FILTER), config = at_most(30_000))]
#[bench::strings(args = (STRINGS), config = at_most(60_000))]
fn expr_compile(src: &str) -> Expr {
    let mut table = FieldTable::new();
    black_box(compile_expr(black_box(src), &mut table))
}

struct EvalState {
    expr: Expr,
    slots: [Slot<'static>; PATHS_MAX],
    arena: Bump,
    message: Message<'static>,
}

fn setup_eval(src: &'static str) -> Box<EvalState> {
    let mut table = FieldTable::from_paths(ORDERS_FIELDS).unwrap();
    let expr = compile_expr(src, &mut table);
    let mut slots = [Slot::Missing; PATHS_MAX];
    // ORDER has no escapes: nothing goes to this arena, so the slots borrow only ORDER.
    // ORDER has no escapes, so this arena stays empty; leaked so the slots are 'static.
    extract(ORDER, &table, &mut slots, Box::leak(Box::new(Bump::new()))).unwrap();
    let mut arena = Bump::with_capacity(4096);
    let message = Message { payload: ORDER, ..Default::default() };
    let want = match src {
        FILTER => Value::Bool(true),
        AMOUNT_CENTS => Value::Int(12345),
        _ => Value::Str("EU-WEST/EUR"),
    };
    {
        let env = Env { slots: &slots, message: &message, topic: "", arena: &arena };
        assert_eq!(expr.eval(&env), Ok(want));
    }
    arena.reset();
    Box::new(EvalState { expr, slots, arena, message })
}

#[library_benchmark]
#[bench::filter(args = (FILTER), setup = setup_eval, config = no_alloc_and_at_most(600))]
#[bench::amount_cents(args = (AMOUNT_CENTS), setup = setup_eval, config = no_alloc_and_at_most(700))]
#[bench::strings(args = (STRINGS), setup = setup_eval, config = no_alloc_and_at_most(2_500))]
fn expr_eval(state: Box<EvalState>) -> Box<EvalState> {
    {
        let env =
            Env { slots: &state.slots, message: &state.message, topic: "", arena: &state.arena };
        let v = state.expr.eval(black_box(&env));
        black_box(v.is_ok());
    }
    state
}

// ---------------------------------------------------------------- templates

const TOPIC: &str = "orders.${region}.${currency}";

#[library_benchmark]
#[bench::orders(args = (TOPIC), config = at_most(20_000))]
fn template_compile(src: &str) -> Template {
    let mut table = FieldTable::new();
    let mut resolve = |p: &str| table.add(p).map(|s| (s, Type::ANY)).map_err(|e| e.to_string());
    black_box(Template::compile(black_box(src), &mut resolve).unwrap())
}

struct RenderState {
    template: Template,
    slots: [Slot<'static>; PATHS_MAX],
    arena: Bump,
    scratch: Vec<u8>,
    message: Message<'static>,
}

fn setup_render() -> Box<RenderState> {
    let mut table = FieldTable::from_paths(ORDERS_FIELDS).unwrap();
    let mut resolve = |p: &str| table.add(p).map(|s| (s, Type::ANY)).map_err(|e| e.to_string());
    let template = Template::compile(TOPIC, &mut resolve).unwrap();
    let mut slots = [Slot::Missing; PATHS_MAX];
    // ORDER has no escapes, so this arena stays empty; leaked so the slots are 'static.
    extract(ORDER, &table, &mut slots, Box::leak(Box::new(Bump::new()))).unwrap();
    let mut arena = Bump::with_capacity(4096);
    let mut scratch = Vec::with_capacity(SCRATCH_BYTES);
    let message = Message { payload: ORDER, ..Default::default() };
    {
        let env = Env { slots: &slots, message: &message, topic: "", arena: &arena };
        assert_eq!(template.render(&env, &mut scratch, &arena), Ok("orders.eu-west.EUR"));
    }
    arena.reset();
    Box::new(RenderState { template, slots, arena, scratch, message })
}

#[library_benchmark]
#[bench::orders(setup = setup_render, config = no_alloc_and_at_most(600))]
fn template_render(mut state: Box<RenderState>) -> Box<RenderState> {
    {
        let env =
            Env { slots: &state.slots, message: &state.message, topic: "", arena: &state.arena };
        let r = state.template.render(black_box(&env), &mut state.scratch, &state.arena);
        black_box(r.is_ok());
    }
    state
}

// ---------------------------------------------------------------- pipelines

const MAP_ONLY: &str = r#"
[[steps]]
type = "map"
fields = { id = "id", customer = "customer", amount_cents = "round(amount * 100)", region = "region", currency = "currency" }
"#;

struct PipelineState {
    pipeline: Pipeline,
    arena: &'static Bump,
    slots: [Slot<'static>; PATHS_MAX],
    payload: &'static [u8],
}

fn check(pipeline: &mut Pipeline, payload: &'static [u8], arena: &Bump) {
    let mut slots = [Slot::Missing; PATHS_MAX];
    let message = Message { payload, ..Default::default() };
    let outcome = pipeline.run(&message, &mut slots, arena);
    match payload {
        p if p == ORDER_PENDING => assert_eq!(outcome, Outcome::Filtered),
        _ => {
            let Outcome::Emit { payload: out, .. } = outcome else { panic!("{outcome:?}") };
            let v: serde_json::Value = serde_json::from_slice(out).unwrap();
            assert_eq!(v["amount_cents"], 12345);
            assert_eq!(v["region"], "eu-west");
        }
    }
}

fn setup_map(payload: &'static [u8]) -> Box<PipelineState> {
    let mut pipeline = compile_toml(MAP_ONLY).unwrap();
    let arena: &'static Bump = Box::leak(Box::new(Bump::with_capacity(1 << 16)));
    check(&mut pipeline, payload, arena);
    Box::new(PipelineState { pipeline, arena, slots: [Slot::Missing; PATHS_MAX], payload })
}

fn setup_orders(payload: &'static [u8]) -> Box<PipelineState> {
    let mut pipeline = orders_pipeline().unwrap();
    let arena: &'static Bump = Box::leak(Box::new(Bump::with_capacity(1 << 16)));
    check(&mut pipeline, payload, arena);
    Box::new(PipelineState { pipeline, arena, slots: [Slot::Missing; PATHS_MAX], payload })
}

// Extraction plus building a five-field JSON payload.
#[library_benchmark]
#[bench::order(args = (ORDER), setup = setup_map, config = no_alloc_and_at_most(9_000))]
fn map_message(mut state: Box<PipelineState>) -> Box<PipelineState> {
    let message = Message { payload: black_box(state.payload), ..Default::default() };
    let outcome = state.pipeline.run(&message, &mut state.slots, state.arena);
    black_box(outcome);
    state
}

// The whole reference pipeline on one message: scan, schema, filter, route, map.
#[library_benchmark]
#[bench::paid(args = (ORDER), setup = setup_orders, config = no_alloc_and_at_most(10_000))]
#[bench::paid_escaped(args = (ORDER_ESCAPED), setup = setup_orders, config = no_alloc_and_at_most(14_000))]
#[bench::pending(args = (ORDER_PENDING), setup = setup_orders, config = no_alloc_and_at_most(6_500))]
fn orders_message(mut state: Box<PipelineState>) -> Box<PipelineState> {
    let message = Message { payload: black_box(state.payload), ..Default::default() };
    let outcome = state.pipeline.run(&message, &mut state.slots, state.arena);
    black_box(outcome);
    state
}

#[library_benchmark]
#[bench::orders(config = at_most(250_000))]
fn orders_compile() -> Pipeline {
    black_box(orders_pipeline().unwrap())
}

/// Messages per batch, as the worker pulls them.
const BATCH: usize = 512;

struct BatchState {
    pipeline: Pipeline,
    arena: Bump,
    lines: Vec<Vec<u8>>,
}

fn setup_batch() -> Box<BatchState> {
    // A mix like the dataset's: every other order paid, a quarter over 100.
    let lines: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| {
            let status = ["paid", "pending", "paid", "failed"][i % 4];
            let amount = if i % 8 < 4 { 150.25 } else { 42.5 };
            format!(
                r#"{{"id":{},"ts":1735690123456,"region":"eu-west","customer":"c-{:06}","status":"{status}","amount":{amount},"currency":"EUR","items":2,"channel":"web","tags":["gift"]}}"#,
                1000 + i,
                i * 7
            )
            .into_bytes()
        })
        .collect();
    let mut state = Box::new(BatchState {
        pipeline: orders_pipeline().unwrap(),
        arena: Bump::with_capacity(1 << 20),
        lines,
    });
    let kept = run_batch(&mut state);
    assert_eq!(kept, BATCH / 4);
    state.arena.reset();
    state
}

fn run_batch(state: &mut BatchState) -> usize {
    let input: bumpalo::collections::Vec<'_, Message<'_>> = bumpalo::collections::Vec::from_iter_in(
        state.lines.iter().map(|l| Message { payload: l, ..Default::default() }),
        &state.arena,
    );
    let mut outputs = bumpalo::collections::Vec::with_capacity_in(BATCH, &state.arena);
    let mut failures = bumpalo::collections::Vec::with_capacity_in(BATCH, &state.arena);
    let mut emit = Emit::new(&state.arena, &mut outputs, &mut failures);
    state.pipeline.process(&input, &mut emit);
    emit.outputs().len()
}

// A batch of 512 through `Processor::process`, as a worker calls it.
#[library_benchmark]
#[bench::batch_512(setup = setup_batch, config = no_alloc_and_at_most(512 * 7_500))]
fn orders_batch(mut state: Box<BatchState>) -> Box<BatchState> {
    black_box(run_batch(&mut state));
    state
}

library_benchmark_group!(
    name = transform,
    benchmarks = [
        json_extract_six_fields,
        expr_compile,
        expr_eval,
        template_compile,
        template_render,
        map_message,
        orders_message,
        orders_compile,
        orders_batch
    ]
);

main!(library_benchmark_groups = transform);
