//! Foreign-language bindings over `rapport-core`.
//!
//! Not built yet (issue 6): the core's `Home` API is shaped so that each exported method
//! here will be a one-line delegation.
