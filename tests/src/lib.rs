//! End-to-end tests, the deterministic practice generator and the `rapport-bench` binary.

pub mod flood;
pub mod fuzz_targets;
pub mod generator;
pub mod practice;
pub mod raw;
pub mod relay;
