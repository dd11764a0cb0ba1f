//! Retry policies, error categories, counters and the circuit breaker.
//!
//! - [`policy`]: strategies and the delay table built once per policy; per-message
//!   [`policy::RetryState`].
//! - [`env`]: default < environment < config file (`vars.rs` the variables, `file.rs`
//!   the `[retry]` table); [`sourced`]: where each value
//!   came from.
//! - [`category`]: error categories from Kafka codes or text; the action per category.
//! - [`counters`]: per-category × per-outcome counter layout and the typed event.
//! - [`breaker`]: the per-sink circuit breaker.
//!
//! Nothing here allocates per attempt or per message; building a policy, reading the
//! environment and rendering errors may.

pub mod breaker;
pub mod category;
pub mod counters;
pub mod env;
pub mod policy;
pub mod sourced;

pub use category::{Action, ActionTable, ErrorCategory};
pub use policy::{RetryPolicy, RetryState, SplitMix64, Strategy};
