//! End-to-end tests and benchmarks.
