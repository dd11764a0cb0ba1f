//! Retry policies, error categories and the circuit breaker.
