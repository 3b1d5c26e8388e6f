//! Errors of the core: rich internally ([`Error`]), each variant says what was wrong and how
//! to fix it; flat for apps ([`RapportError`], what the bindings throw), with one mapping
//! that decides what is logged.

use std::path::PathBuf;

/// Result alias used across the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the core.
///
/// Messages are written for the person who typed the input: they name the field, the rule
/// and, where there is one, what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field failed validation.
    #[error("invalid {field}: {rule}")]
    Invalid {
        /// The field, as the API names it (`email`, `concerns`, ...).
        field: String,
        /// The rule it broke and how to fix it.
        rule: String,
    },
    /// A free-text field looks like it holds a client identifier.
    #[error(
        "{field} looks like it contains {what}; client identifiers never go into Rapport. \
         Remove it and describe the need with coded values instead"
    )]
    Identifier {
        /// The field that was screened.
        field: String,
        /// What was found, in words ("an email address", "a full date").
        what: String,
    },
    /// No entity with this id exists.
    #[error("no {entity} with id {id}")]
    NotFound {
        /// `partner`, `referral`, ...
        entity: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// The operation conflicts with the current state (e.g. touching an archived partner):
    /// something the user can resolve. A broken invariant is [`Error::Internal`].
    #[error("{0}")]
    Conflict(String),
    /// The home has no practice yet.
    #[error("this home has no practice yet: create one first (rapport init) or join one")]
    NoPractice,
    /// The home already holds a practice.
    #[error("this home already holds the practice {0:?}; use another home directory")]
    PracticeExists(String),
    /// A document written by a newer Rapport: it can be read but not written.
    #[error(
        "this {space} space was written by a newer Rapport (schema {found}, this build \
         understands up to {supported}); it is read-only here: update Rapport to edit it"
    )]
    ReadOnly {
        /// `practice` or `personal`.
        space: &'static str,
        /// Schema version found in the document.
        found: u64,
        /// Newest schema version this build writes.
        supported: u64,
    },
    /// The home's database was created by a newer Rapport.
    #[error(
        "the home at {path} was created by a newer Rapport (store version {found}, this build \
         supports up to {supported}); update Rapport. Nothing was changed"
    )]
    HomeTooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// Newest store version this build knows.
        supported: i64,
    },
    /// The home's database file is damaged or not a Rapport home.
    #[error(
        "the home at {path} is damaged or is not a Rapport home ({reason}); nothing was \
         changed. Restore it from a backup or another device"
    )]
    CorruptHome {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// Bytes that should be an Automerge document or changes were not.
    #[error("the document bytes are not valid ({0}); nothing was merged")]
    CorruptDocument(String),
    /// A document that is valid Automerge but not a Rapport space.
    #[error("the document is not a Rapport {expected} space: {reason}")]
    NotASpace {
        /// The kind of space expected.
        expected: &'static str,
        /// What is missing.
        reason: String,
    },
    /// Syncing with the relay failed; what to do is in the message.
    #[error("sync: {0}")]
    Sync(String),
    /// Syncing failed in a way an app must tell apart: whether to retry, and what to ask
    /// of the user. The message is this device's own words, never the relay's.
    #[error("sync: {message}")]
    SyncFailed {
        /// What kind of failure.
        failure: SyncFailure,
        /// What happened and what to do, in words.
        message: String,
    },
    /// An invariant of this build broke (a bug, or a home changed by hand): not the
    /// user's doing, and not a conflict they can resolve.
    #[error("internal error: {0}; please report it")]
    Internal(String),
    /// SQLite failed.
    #[error("storage error: {0}")]
    Storage(#[from] rusqlite::Error),
    /// Automerge failed on a document we created ourselves.
    #[error("document error: {0}")]
    Document(#[from] automerge::AutomergeError),
    /// Filesystem failure around the home directory.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Why sync failed, by what can be done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum SyncFailure {
    /// This device was removed from the practice (its verified membership log says so):
    /// it will never sync again; join with a new invite to use it again.
    Removed,
    /// The relay does not know this device as a member of the space.
    NotMember,
    /// This device and the relay speak no common protocol version: update one of them.
    VersionMismatch,
    /// The relay could not be reached, or the connection broke or timed out.
    Network,
    /// The relay refused a request (too large, busy, not allowed by the log's rules).
    Refused,
    /// The relay has no room: the space reached its quota, or the relay's disk is full.
    /// Retried: an owner's or admin's next sync snapshots and prunes, or the host frees
    /// space.
    Quota,
}

impl SyncFailure {
    /// Whether trying again later can succeed: background sync retries only these, and
    /// stops, saying why, on the others.
    pub fn retries(self) -> bool {
        matches!(
            self,
            SyncFailure::Network | SyncFailure::Refused | SyncFailure::Quota
        )
    }
}

/// What went wrong, by kind; the message says what to fix.
#[derive(Debug, thiserror::Error)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Error), uniffi(flat_error))]
pub enum RapportError {
    /// An input broke a rule (a field, a code, a date); the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// Free text looked like it held a client identifier; nothing was written.
    #[error("{0}")]
    ClientIdentifier(String),
    /// No entity with that id.
    #[error("{0}")]
    NotFound(String),
    /// The operation conflicts with the current state (e.g. an archived partner).
    #[error("{0}")]
    Conflict(String),
    /// The home has no practice yet: create or join one first.
    #[error("{0}")]
    NoPractice(String),
    /// The home already holds a practice.
    #[error("{0}")]
    PracticeExists(String),
    /// The data was written by a newer Rapport: update the app.
    #[error("{0}")]
    NeedsUpdate(String),
    /// The home's files are damaged; restore from another device.
    #[error("{0}")]
    DamagedHome(String),
    /// Bytes from outside (a file, a document) were not what they claimed to be.
    #[error("{0}")]
    InvalidData(String),
    /// Syncing with the relay failed; background sync retries by itself.
    #[error("{0}")]
    Sync(String),
    /// This device was removed from the practice; it cannot sync again.
    #[error("{0}")]
    Removed(String),
    /// The relay does not know this device as a member.
    #[error("{0}")]
    NotMember(String),
    /// This device and the relay speak no common protocol version.
    #[error("{0}")]
    VersionMismatch(String),
    /// The relay could not be reached or the connection broke; retried by itself.
    #[error("{0}")]
    Network(String),
    /// The relay refused a request; retried by itself.
    #[error("{0}")]
    RelayRefused(String),
    /// The relay has no room for this space (its quota, or a full disk); retried.
    #[error("{0}")]
    Quota(String),
    /// The device's storage failed (disk full, permissions).
    #[error("{0}")]
    Storage(String),
    /// The object was closed; open the home again.
    #[error("{0}")]
    Closed(String),
    /// A fault inside Rapport (a bug): report it.
    #[error("{0}")]
    Internal(String),
}

impl From<Error> for RapportError {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Invalid { .. } => RapportError::Invalid(message),
            Error::Identifier { .. } => RapportError::ClientIdentifier(message),
            Error::NotFound { .. } => RapportError::NotFound(message),
            Error::Conflict(_) => RapportError::Conflict(message),
            Error::NoPractice => RapportError::NoPractice(message),
            Error::PracticeExists(_) => RapportError::PracticeExists(message),
            Error::ReadOnly { .. } | Error::HomeTooNew { .. } => RapportError::NeedsUpdate(message),
            Error::CorruptHome { .. } => RapportError::DamagedHome(message),
            Error::CorruptDocument(_) | Error::NotASpace { .. } => {
                RapportError::InvalidData(message)
            }
            Error::Sync(_) => RapportError::Sync(message),
            Error::SyncFailed { failure, .. } => match failure {
                SyncFailure::Removed => RapportError::Removed(message),
                SyncFailure::NotMember => RapportError::NotMember(message),
                SyncFailure::VersionMismatch => RapportError::VersionMismatch(message),
                SyncFailure::Network => RapportError::Network(message),
                SyncFailure::Refused => RapportError::RelayRefused(message),
                SyncFailure::Quota => RapportError::Quota(message),
            },
            Error::Internal(_) => {
                tracing::error!(error = %message, "internal fault under the FFI");
                RapportError::Internal(message)
            }
            Error::Storage(_) | Error::Document(_) | Error::Io { .. } => {
                // The one place internal failures are logged; user input never reaches here.
                tracing::warn!(error = %message, "storage failure under the FFI");
                RapportError::Storage(message)
            }
        }
    }
}

impl Error {
    /// Whether this error, met while merging bytes received from a colleague, means the
    /// bytes themselves are bad (not a valid change, not a Rapport space): the entry is
    /// refused for good. Every other error is this device's own failure (a full disk, a
    /// busy or failing database) and the entry must be fetched again once it is fixed.
    pub fn refuses_entry(&self) -> bool {
        matches!(
            self,
            Error::CorruptDocument(_) | Error::NotASpace { .. } | Error::Invalid { .. }
        )
    }

    /// The kind of sync failure, when this is one an app must tell apart.
    pub fn sync_failure(&self) -> Option<SyncFailure> {
        match self {
            Error::SyncFailed { failure, .. } => Some(*failure),
            _ => None,
        }
    }

    /// Shorthand for a sync failure of a kind.
    pub fn sync_failed(failure: SyncFailure, message: impl Into<String>) -> Self {
        Error::SyncFailed {
            failure,
            message: message.into(),
        }
    }

    /// Shorthand for a validation failure.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }
}
