//! The bindings' error is the core's flat public [`RapportError`]: it lives in the core so
//! that a malformed day handed to any call surfaces as `RapportError.Invalid` too.

pub use rapport_core::error::RapportError;

/// Result of every exported call.
pub type Result<T, E = RapportError> = std::result::Result<T, E>;
