//! Getting data in and out of a home: CSV import from a spreadsheet tracker, and export as
//! CSV, JSON or the Automerge document.

pub mod export;
pub mod import;

pub use export::ExportFormat;
pub use import::{ImportColumn, ImportOptions, ImportProblem, ImportReport};
