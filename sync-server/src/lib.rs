//! The blind relay that stores and forwards a practice's encrypted blobs.
//!
//! Not built yet (issue 4). It must never depend on `rapport-core`'s domain model.
