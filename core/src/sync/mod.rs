//! Sync: end-to-end encrypted exchange of a space's Automerge changes through the blind
//! relay. `crypto` seals and signs; more follows (see docs/ARCHITECTURE.md).

pub mod crypto;
