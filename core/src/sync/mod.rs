//! Sync: end-to-end encrypted exchange of a space's Automerge changes through the blind
//! relay, with membership and keys from a log every device verifies.
//!
//! The decisions are sans-IO: `engine` (when to connect, which round on what trigger,
//! the steps of a round, what to do with each entry) and `membership` (what a stretch of
//! the log means: verified state, keys, standing, removals owed). The flows run them over
//! a [`link::Link`] (the QUIC client, or a test's relay), one file each: `connect`
//! (setup code, personal space, adoption of a space from protocol 1), `invite`, `join`,
//! `round`, `devices`; `witness` notices a relay that withholds someone's changes; `log` fetches and extends the membership log; `service` is the
//! background driver of `engine::Machine`. What crosses the relay (sealing, keys,
//! fragments, snapshots) is `crate::sealed`, below `home`.

pub mod engine;
pub mod membership;
pub mod witness;

#[cfg(feature = "transport")]
pub mod connect;
#[cfg(feature = "transport")]
pub mod devices;
#[cfg(feature = "transport")]
pub mod invite;
#[cfg(feature = "transport")]
pub mod join;
#[cfg(feature = "transport")]
pub mod link;
#[cfg(feature = "transport")]
pub mod log;
#[cfg(feature = "transport")]
pub mod round;
#[cfg(feature = "transport")]
pub mod service;

#[cfg(feature = "transport")]
pub use connect::{connect_known, connect_practice};
#[cfg(feature = "transport")]
pub use devices::{Device, Devices, PendingInvite, devices, devices_known, remove_device};
#[cfg(feature = "transport")]
pub use invite::{create_device_invite, create_invite, revoke_invite};
#[cfg(feature = "transport")]
pub use join::{join, join_with_progress};
#[cfg(feature = "transport")]
pub use round::{SyncReport, apply_delivered, round, round_for, round_with_progress, sync_now};
