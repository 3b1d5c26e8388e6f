//! Foreign-language bindings over `rapport-core` for the Android and iOS apps.
//!
//! A thin layer (see `ffi/README.md`): [`RapportHome`] is one device home and every method
//! delegates to `rapport_core::Home` in a line; records and enums come from the core
//! (derived there behind its `uniffi` feature); [`RapportError`] is the flat public error;
//! listeners are foreign traits whose registration returns a handle; async calls run on the
//! runtime this crate owns.

mod error;
mod home;
mod listeners;
mod runtime;
mod sync;

pub use error::{RapportError, Result};
pub use home::RapportHome;
pub use listeners::{ChangeListener, ListenerHandle, SyncHandle, SyncStatusListener};
pub use sync::InviteRole;

uniffi::setup_scaffolding!("rapport");

/// The open vocabularies an app offers in its pickers (custom values are written
/// `custom:<slug>`); the closed ones are the enums.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Vocabulary {
    /// Presenting-concern codes (referrals, specialties, needs).
    pub concerns: Vec<String>,
    /// Service formats and approaches.
    pub modalities: Vec<String>,
    /// ISO 639-1 language codes.
    pub languages: Vec<String>,
}

/// The codes Rapport knows for concerns, modalities and languages.
#[uniffi::export]
pub fn vocabulary() -> Vocabulary {
    let owned = |codes: &[&str]| codes.iter().map(|c| c.to_string()).collect();
    Vocabulary {
        concerns: owned(rapport_core::vocab::CONCERNS),
        modalities: owned(rapport_core::vocab::MODALITIES),
        languages: owned(rapport_core::vocab::LANGUAGES),
    }
}

// The core's day type crosses the FFI as `YYYY-MM-DD` text.
use rapport_core::Day;
uniffi::use_remote_type!(rapport_core::Day);
