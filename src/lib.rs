//! corestream: a thread-per-core engine that moves and transforms messages.
//!
//! See `ARCHITECTURE.md` at the repository root for the data path and the file that
//! implements each step.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod ack;
pub mod cli;
pub mod config;
pub mod engine;
pub mod kafka;
pub mod limits;
pub mod message;
pub mod metrics;
pub mod observe;
pub mod parse;
pub mod processor;
pub mod retry;
pub mod ring;
pub mod sink;
pub mod source;
pub mod state;
pub mod sync;
pub mod transform;
pub mod wait;
pub mod worker;
