//! Automerge on bytes from elsewhere, behind a guard: what it cannot read is an error, and
//! a panic inside it (a malformed input it did not expect) is an error too, never the end
//! of the process. [`super::bounds::check`] runs first, so nothing here inflates a bomb.

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::{Automerge, Change};

use super::bounds;
use crate::error::{Error, Result};

/// Runs `f`, turning a panic inside Automerge into [`Error::CorruptDocument`].
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        tracing::warn!("Automerge failed on {what} it could not read");
        Err(Error::CorruptDocument(format!(
            "Automerge could not read {what} (it stopped on malformed bytes)"
        )))
    })
}

/// Loads a whole document.
pub fn load(bytes: &[u8]) -> Result<Automerge> {
    bounds::check(bytes)?;
    guarded("a document", || {
        Automerge::load(bytes).map_err(|e| Error::CorruptDocument(e.to_string()))
    })
}

/// Decodes the changes a relay entry holds: change chunks only.
pub fn changes(bytes: &[u8]) -> Result<Vec<Change>> {
    let chunks = bounds::change_chunks(bytes)?;
    guarded("a change", || {
        chunks
            .into_iter()
            .map(|chunk| {
                Change::try_from(chunk).map_err(|e| {
                    Error::CorruptDocument(format!("it holds a change that is not valid: {e}"))
                })
            })
            .collect()
    })
}

/// Applies decoded changes. After an error the document may hold part of them: the caller
/// drops it and reloads from disk.
pub fn apply_changes(doc: &mut Automerge, changes: Vec<Change>) -> Result<()> {
    guarded("a change", || {
        doc.apply_changes(changes)
            .map_err(|e| Error::CorruptDocument(e.to_string()))
    })
}

/// Merges Automerge bytes (changes or a document). After an error the document may hold
/// part of them: the caller drops it and reloads from disk.
pub fn load_incremental(doc: &mut Automerge, bytes: &[u8]) -> Result<()> {
    guarded("a change", || {
        doc.load_incremental(bytes)
            .map(|_| ())
            .map_err(|e| Error::CorruptDocument(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    #[test]
    fn a_panic_inside_is_an_error() {
        let err = guarded("a test", || -> Result<()> {
            #[allow(clippy::panic)]
            {
                panic!("malformed")
            }
        })
        .unwrap_err();
        assert!(matches!(err, Error::CorruptDocument(_)), "{err}");
        assert!(err.to_string().contains("a test"), "{err}");
    }

    #[test]
    fn changes_are_decoded_and_documents_refused() {
        let mut doc = Automerge::new().with_actor(ActorId::from([7u8; 16].as_slice()));
        for i in 0..3 {
            doc.transact(|tx| tx.put(ROOT, "n", i as i64)).unwrap();
        }
        let decoded = changes(&doc.save_after(&[])).unwrap();
        assert_eq!(decoded.len(), 3);
        assert!(decoded.iter().all(|c| c.actor_id().to_bytes() == [7u8; 16]));
        let err = changes(&doc.save()).unwrap_err();
        assert!(err.to_string().contains("whole document"), "{err}");
        assert!(changes(b"garbage").is_err());
        let mut cut = doc.save_after(&[]);
        cut.truncate(cut.len() - 3);
        assert!(changes(&cut).is_err());
    }
}
