//! Rapport's core: a therapy practice's referral network kept offline on every device.
//!
//! - [`Home`] is the API: one per device home directory (see `home`).
//! - [`model`] and [`vocab`] are the records and coded vocabularies it speaks.
//! - `doc` holds the Automerge document shape; `store` the SQLite file and read model.
//! - [`exchange`] imports CSV trackers and exports CSV, JSON or the document.
//! - [`privacy`] screens free text for client identifiers before anything is written.

pub mod clock;
pub mod doc;
pub mod error;
pub mod events;
pub mod exchange;
mod home;
pub mod insights;
pub mod model;
pub mod privacy;
pub mod sealed;
pub mod store;
pub mod sync;
pub mod validate;
pub mod vocab;

pub use clock::{Clock, FixedClock, SystemClock};
pub use doc::SpaceKind;
pub use error::{Error, RapportError, Result, SyncFailure};
pub use events::{ChangeEvent, ChangeListener, ChangedEntity, Origin, PrivacyFlag, Subscription};
pub use home::{
    Batch, Home, HomeOptions, JoinedVia, KeptStatement, MergeOutcome, RelayInfo, SpaceJoin,
    StatementMark, SyncPosition, VerifiedLog,
};
pub use validate::Day;

#[cfg(feature = "uniffi")]
uniffi::setup_scaffolding!("rapport_core");

// A day crosses the FFI as its `YYYY-MM-DD` text; a malformed one is refused on the way in.
#[cfg(feature = "uniffi")]
uniffi::custom_type!(Day, String, {
    remote,
    lower: |day| day.to_string(),
    try_lift: |text| validate::day("day", &text)
        .map_err(|e| RapportError::from(e).into()),
});
