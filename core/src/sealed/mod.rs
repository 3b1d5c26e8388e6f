//! What crosses the relay, below `home` and `sync`: how a device seals, signs and opens
//! what it sends (`crypto`), takes content keys only from its verified membership log
//! (`keyring`), frames an entry with signed heads statements (`entry`), cuts a change
//! too large for one entry into parts (`fragment`), and what a snapshot carries
//! (`snapshot`). Pure: no IO.

pub mod crypto;
pub mod entry;
pub mod fragment;
pub mod keyring;
pub mod snapshot;
