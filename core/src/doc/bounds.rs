//! How far Automerge bytes from elsewhere may inflate, checked before Automerge reads them.
//!
//! Automerge inflates a compressed change chunk, and every compressed column of a document
//! chunk, without a limit: 1 MiB of DEFLATE can become a gigabyte in memory on every
//! device that merges it, and again after each restart while the entry is pulled again.
//! [`check`] walks the chunk headers and column metadata, inflates each compressed part
//! into a counter (nothing is kept) and refuses the bytes when the total passes
//! [`inflation_limit`], so Automerge never starts on a bomb.

use std::io::Read as _;

use crate::error::{Error, Result};

/// The most any merge may inflate to, whatever its size (the large practice of DOMAIN.md
/// saves as 13.4 MB whose compressed columns inflate to 80 MB).
pub const MAX_INFLATED: u64 = 512 << 20;
/// Small inputs may always inflate this far.
const FLOOR: u64 = 32 << 20;
/// Larger ones this many times their size (Automerge's columns are already run-length
/// encoded; DEFLATE gains about six times on the large practice's, not hundreds).
const RATIO: u64 = 16;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;
/// A column spec's DEFLATE bit.
const DEFLATE: u64 = 0b1000;

/// How many bytes `len` bytes of Automerge may inflate to.
pub fn inflation_limit(len: usize) -> u64 {
    MAX_INFLATED.min(FLOOR.max(RATIO.saturating_mul(len as u64)))
}

/// Refuses `bytes` when their compressed parts inflate past [`inflation_limit`], or when
/// they hold a chunk this version does not read. Bytes that are not Automerge at all pass
/// here and are refused by Automerge itself.
pub fn check(bytes: &[u8]) -> Result<()> {
    let limit = inflation_limit(bytes.len());
    let mut budget = Budget { left: limit, limit };
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((kind, body, after)) = chunk(rest) else {
            return Ok(());
        };
        match kind {
            DOCUMENT => document(body, &mut budget)?,
            CHANGE => {}
            COMPRESSED_CHANGE => budget.inflate(body)?,
            other => {
                return Err(Error::CorruptDocument(format!(
                    "a chunk of type {other}, which this version does not read"
                )));
            }
        }
        rest = after;
    }
    Ok(())
}

struct Budget {
    left: u64,
    limit: u64,
}

impl Budget {
    /// Inflates `deflated` into nothing, counting, and stops one byte past what is left.
    fn inflate(&mut self, deflated: &[u8]) -> Result<()> {
        let decoder = flate2::bufread::DeflateDecoder::new(deflated);
        let mut limited = decoder.take(self.left + 1);
        let out = std::io::copy(&mut limited, &mut std::io::sink()).map_err(|e| {
            Error::CorruptDocument(format!("a compressed part cannot be inflated: {e}"))
        })?;
        if out > self.left {
            return Err(Error::CorruptDocument(format!(
                "its compressed parts inflate past {} MiB, more than any change of a practice \
                 needs (a compression bomb?)",
                self.limit >> 20
            )));
        }
        self.left -= out;
        Ok(())
    }
}

/// The chunks of `bytes`, each whole (header and body), refusing anything but change
/// chunks: what a relay entry may hold.
pub fn change_chunks(bytes: &[u8]) -> Result<Vec<&[u8]>> {
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((kind, _, after)) = chunk(rest) else {
            return Err(Error::CorruptDocument(
                "it holds bytes that are not an Automerge change".into(),
            ));
        };
        if kind != CHANGE && kind != COMPRESSED_CHANGE {
            return Err(Error::CorruptDocument(
                "it holds a whole document where a device sends only changes".into(),
            ));
        }
        chunks.push(&rest[..rest.len() - after.len()]);
        rest = after;
    }
    Ok(chunks)
}

/// One chunk: its type, body and what follows; `None` when the header is not Automerge's
/// or the body is cut short (Automerge refuses those itself).
fn chunk(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let rest = bytes.strip_prefix(&MAGIC)?;
    let rest = rest.get(4..)?; // checksum
    let (&kind, mut rest) = rest.split_first()?;
    let len = usize::try_from(leb(&mut rest)?).ok()?;
    let body = rest.get(..len)?;
    Some((kind, body, &rest[len..]))
}

/// Walks a document chunk's prefix (actors, heads, change and op column metadata) and
/// inflates each column that is marked compressed.
fn document(mut body: &[u8], budget: &mut Budget) -> Result<()> {
    let cut = || Error::CorruptDocument("a document chunk is cut short".into());
    let actors = leb(&mut body).ok_or_else(cut)?;
    for _ in 0..actors {
        let len = usize::try_from(leb(&mut body).ok_or_else(cut)?).map_err(|_| cut())?;
        body = body.get(len..).ok_or_else(cut)?;
    }
    let heads = usize::try_from(leb(&mut body).ok_or_else(cut)?).map_err(|_| cut())?;
    body = body
        .get(heads.checked_mul(32).ok_or_else(cut)?..)
        .ok_or_else(cut)?;
    let mut columns = Vec::new();
    for _ in 0..2 {
        let count = leb(&mut body).ok_or_else(cut)?;
        for _ in 0..count {
            let spec = leb(&mut body).ok_or_else(cut)?;
            let len = usize::try_from(leb(&mut body).ok_or_else(cut)?).map_err(|_| cut())?;
            columns.push((spec, len));
            if columns.len() > 1024 {
                return Err(Error::CorruptDocument(
                    "a document chunk declares more columns than Automerge has".into(),
                ));
            }
        }
    }
    // Change columns' data, then op columns' data, in the order declared.
    for (spec, len) in columns {
        let data = body.get(..len).ok_or_else(cut)?;
        if spec & DEFLATE != 0 {
            budget.inflate(data)?;
        }
        body = &body[len..];
    }
    Ok(())
}

/// An unsigned LEB128 number, advancing `bytes` past it.
fn leb(bytes: &mut &[u8]) -> Option<u64> {
    leb128::read::unsigned(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT};

    /// A practice-like document, big enough that Automerge compresses its columns and
    /// its changes.
    fn document() -> Automerge {
        let mut doc = Automerge::new();
        doc.transact(|tx| -> std::result::Result<(), automerge::AutomergeError> {
            let list = tx.put_object(&ROOT, "notes", automerge::ObjType::List)?;
            for i in 0..5_000 {
                tx.insert(
                    &list,
                    i,
                    format!("Coffee with partner {i}, referrals going well"),
                )?;
            }
            Ok(())
        })
        .unwrap();
        doc
    }

    #[test]
    fn what_automerge_writes_passes() {
        let doc = document();
        let saved = doc.save();
        check(&saved).unwrap();
        check(&doc.save_after(&[])).unwrap();
        check(&doc.save_nocompress()).unwrap();
        assert!(chunk(&saved).is_some_and(|(kind, ..)| kind == DOCUMENT));
    }

    /// A compressed change chunk whose body inflates to `size` zero bytes.
    pub(crate) fn change_bomb(size: u64) -> Vec<u8> {
        use std::io::Write as _;
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..size >> 20 {
            encoder.write_all(&zeros).unwrap();
        }
        let body = encoder.finish().unwrap();
        let mut bomb = MAGIC.to_vec();
        bomb.extend([0; 4]);
        bomb.push(COMPRESSED_CHANGE);
        leb128::write::unsigned(&mut bomb, body.len() as u64).unwrap();
        bomb.extend(body);
        bomb
    }

    #[test]
    fn a_compressed_change_inflating_past_the_limit_is_refused() {
        let bomb = change_bomb(64 << 20);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let err = check(&bomb).unwrap_err();
        assert!(matches!(err, Error::CorruptDocument(_)), "{err}");
        assert!(err.to_string().contains("inflate past 32 MiB"), "{err}");
        // Just under the limit, the same shape passes here (Automerge refuses it as a
        // change, without having to be protected from it).
        check(&change_bomb(16 << 20)).unwrap();
    }

    #[test]
    fn a_document_with_a_column_bomb_is_refused() {
        use std::io::Write as _;
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let column = encoder.finish().unwrap();
        let mut body = Vec::new();
        leb128::write::unsigned(&mut body, 0).unwrap(); // actors
        leb128::write::unsigned(&mut body, 0).unwrap(); // heads
        leb128::write::unsigned(&mut body, 0).unwrap(); // change columns
        leb128::write::unsigned(&mut body, 1).unwrap(); // op columns
        leb128::write::unsigned(&mut body, (1 << 4) | DEFLATE | 1).unwrap();
        leb128::write::unsigned(&mut body, column.len() as u64).unwrap();
        body.extend(&column);
        let mut bomb = MAGIC.to_vec();
        bomb.extend([0; 4]);
        bomb.push(DOCUMENT);
        leb128::write::unsigned(&mut bomb, body.len() as u64).unwrap();
        bomb.extend(body);
        // After a harmless change, so the walk goes past a first chunk.
        let mut bytes = document().save_after(&[]);
        bytes.extend(bomb);
        assert!(check(&bytes).is_err());
    }

    #[test]
    fn unknown_chunks_are_refused_and_garbage_is_left_to_automerge() {
        let mut bundle = MAGIC.to_vec();
        bundle.extend([0, 0, 0, 0, 3, 0]);
        assert!(check(&bundle).unwrap_err().to_string().contains("type 3"));
        check(b"not automerge at all").unwrap();
        check(&MAGIC).unwrap();
    }
}
