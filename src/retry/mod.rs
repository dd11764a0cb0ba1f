//! Retry policies, error categories and the circuit breaker.

pub mod category;

pub use category::ErrorCategory;
