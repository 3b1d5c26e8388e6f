//! How far Automerge bytes from elsewhere may inflate, checked before Automerge reads them.
//!
//! Automerge inflates a compressed change chunk, and every compressed column of a document
//! chunk, without a limit: 1 MiB of DEFLATE can become a gigabyte in memory on every
//! device that merges it, and again after each restart while the entry is pulled again.
//! Its run-length columns are a second multiplier: a run of a billion operations takes a
//! few bytes. [`check`] walks the chunk headers and column metadata, reads each column's
//! runs (a compressed part as it inflates, a window at a time: nothing is kept) and
//! refuses the bytes when the inflated total passes [`inflation_limit`] or a column's
//! rows pass [`row_limit`], so Automerge never starts on a bomb.

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

/// How many rows (operations, or changes of a document) one column of `len` bytes of
/// Automerge may say it holds. Run-length encoding lets a few bytes declare a run of
/// billions of operations, each of which Automerge would decode and keep: an honest
/// change needs about a byte per operation or more (text is a byte per character), bar a
/// long run of deletions, which the floor leaves room for.
pub fn row_limit(len: usize) -> u64 {
    ROW_FLOOR.max(ROW_RATIO.saturating_mul(len as u64))
}

/// Rows any column may hold, whatever the input's size.
const ROW_FLOOR: u64 = 1 << 20;
/// Rows per input byte past the floor.
const ROW_RATIO: u64 = 16;

/// Refuses `bytes` when their compressed parts inflate past [`inflation_limit`], when a
/// column's runs declare more rows than [`row_limit`], or when they hold a chunk this
/// version does not read. Bytes that are not Automerge at all pass here and are refused
/// by Automerge itself. Compressed parts are read as they inflate, never held whole.
pub fn check(bytes: &[u8]) -> Result<()> {
    let limit = inflation_limit(bytes.len());
    let mut budget = Budget {
        left: limit,
        limit,
        rows: row_limit(bytes.len()),
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((kind, body, after)) = chunk(rest) else {
            return Ok(());
        };
        match kind {
            DOCUMENT => document(body, &mut budget)?,
            CHANGE => change(&mut Slice { data: body }, &budget)?,
            COMPRESSED_CHANGE => budget.inflating(body, |source, budget| {
                change(source, budget)?;
                source.skip(u64::MAX)
            })?,
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
    /// Bytes that may still be inflated.
    left: u64,
    limit: u64,
    /// Rows one column may hold.
    rows: u64,
}

fn cut() -> Error {
    Error::CorruptDocument("an Automerge chunk is cut short".into())
}

impl Budget {
    fn too_much(&self) -> Error {
        Error::CorruptDocument(format!(
            "its compressed parts inflate past {} MiB, more than any change of a practice \
             needs (a compression bomb?)",
            self.limit >> 20
        ))
    }

    /// Runs `read` over `deflated` as it inflates (stopping one byte past what is left),
    /// `read` reading to the end; then counts what it inflated against the budget.
    fn inflating(
        &mut self,
        deflated: &[u8],
        read: impl FnOnce(&mut Inflating<'_>, &Budget) -> Result<()>,
    ) -> Result<()> {
        let mut source = Inflating {
            decoder: flate2::bufread::DeflateDecoder::new(deflated).take(self.left + 1),
            buf: vec![0; 64 << 10],
            pos: 0,
            len: 0,
            produced: 0,
        };
        let result = read(&mut source, self);
        if source.produced > self.left {
            return Err(self.too_much());
        }
        result?;
        self.left -= source.produced;
        Ok(())
    }

    /// Reads one column's runs (inflating them first if compressed) and refuses the
    /// column when they declare too many rows.
    fn column(&mut self, spec: u64, data: &[u8]) -> Result<()> {
        if spec & DEFLATE != 0 {
            self.inflating(data, |source, budget| {
                budget.rows_of(spec, source, data.len())
            })
        } else {
            self.rows_of(spec, &mut Slice { data }, data.len())
        }
    }

    fn rows_of(&self, spec: u64, source: &mut impl Source, len: usize) -> Result<()> {
        if rows(spec, source, self.rows)? > self.rows {
            return Err(Error::CorruptDocument(format!(
                "a column's runs declare more than {} rows, far more than its {len} bytes \
                 can hold honestly (a run-length bomb?)",
                self.rows
            )));
        }
        Ok(())
    }
}

/// Bytes read in order, from a slice or as they inflate.
trait Source {
    /// The next byte, `None` at the end.
    fn byte(&mut self) -> Result<Option<u8>>;
    /// Skips `n` bytes, or to the end when fewer are left (`u64::MAX`: to the end).
    fn skip(&mut self, n: u64) -> Result<()>;
    /// Skips exactly `n` bytes, refusing a source that ends first.
    fn skip_exactly(&mut self, n: u64) -> Result<()>;
}

struct Slice<'a> {
    data: &'a [u8],
}

impl Source for Slice<'_> {
    fn byte(&mut self) -> Result<Option<u8>> {
        let Some((&b, rest)) = self.data.split_first() else {
            return Ok(None);
        };
        self.data = rest;
        Ok(Some(b))
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let n = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        self.data = &self.data[n..];
        Ok(())
    }

    fn skip_exactly(&mut self, n: u64) -> Result<()> {
        let n = usize::try_from(n).map_err(|_| cut())?;
        self.data = self.data.get(n..).ok_or_else(cut)?;
        Ok(())
    }
}

/// A compressed part as it inflates, a window at a time.
struct Inflating<'a> {
    decoder: std::io::Take<flate2::bufread::DeflateDecoder<&'a [u8]>>,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    produced: u64,
}

impl Inflating<'_> {
    /// Fills the window when it is used up; `false` at the end.
    fn fill(&mut self) -> Result<bool> {
        if self.pos < self.len {
            return Ok(true);
        }
        self.len = self.decoder.read(&mut self.buf).map_err(|e| {
            Error::CorruptDocument(format!("a compressed part cannot be inflated: {e}"))
        })?;
        self.pos = 0;
        self.produced += self.len as u64;
        Ok(self.len > 0)
    }
}

impl Source for Inflating<'_> {
    fn byte(&mut self) -> Result<Option<u8>> {
        if !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(Some(b))
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        while n > 0 && self.fill()? {
            let step = usize::try_from(n)
                .unwrap_or(usize::MAX)
                .min(self.len - self.pos);
            self.pos += step;
            n -= step as u64;
        }
        Ok(())
    }

    fn skip_exactly(&mut self, n: u64) -> Result<()> {
        let before = self.produced - (self.len - self.pos) as u64;
        self.skip(n)?;
        let after = self.produced - (self.len - self.pos) as u64;
        if after - before < n {
            return Err(cut());
        }
        Ok(())
    }
}

/// The next `left` bytes of a source.
struct Limited<'s, S: ?Sized> {
    inner: &'s mut S,
    left: u64,
}

impl<S: Source + ?Sized> Source for Limited<'_, S> {
    fn byte(&mut self) -> Result<Option<u8>> {
        if self.left == 0 {
            return Ok(None);
        }
        let b = self.inner.byte()?.ok_or_else(cut)?;
        self.left -= 1;
        Ok(Some(b))
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let n = n.min(self.left);
        self.inner.skip_exactly(n)?;
        self.left -= n;
        Ok(())
    }

    fn skip_exactly(&mut self, n: u64) -> Result<()> {
        if n > self.left {
            return Err(cut());
        }
        self.skip(n)
    }
}

/// The rows a column's data declares, or a number past `cap` as soon as the runs pass
/// it. Run-length columns hold runs of one value, of literal values, or of nulls; boolean
/// columns alternating run lengths; raw value columns bytes only (their rows are counted
/// by their metadata column).
fn rows(spec: u64, data: &mut impl Source, cap: u64) -> Result<u64> {
    const BOOLEAN: u64 = 4;
    const STRING: u64 = 5;
    const VALUE: u64 = 7;
    let kind = spec & 0b111;
    // One value: a number, or a string's length and bytes.
    let value = |data: &mut _| -> Result<()> {
        let (word, _) = number(data)?.ok_or_else(cut)?;
        if kind == STRING {
            Source::skip_exactly(data, word)?;
        }
        Ok(())
    };
    let mut rows: u64 = 0;
    match kind {
        VALUE => data.skip(u64::MAX)?,
        BOOLEAN => {
            while let Some((run, _)) = number(data)? {
                rows = rows.saturating_add(run);
                if rows > cap {
                    break;
                }
            }
        }
        _ => {
            while let Some((_, count)) = number(data)? {
                if count > 0 {
                    rows = rows.saturating_add(count.unsigned_abs());
                    value(data)?;
                } else if count < 0 {
                    let literal = count.unsigned_abs();
                    rows = rows.saturating_add(literal);
                    if rows > cap {
                        break;
                    }
                    for _ in 0..literal {
                        value(data)?;
                    }
                } else {
                    rows = rows.saturating_add(number(data)?.ok_or_else(cut)?.0);
                }
                if rows > cap {
                    break;
                }
            }
        }
    }
    Ok(rows)
}

/// The next LEB128 number, read as unsigned and as signed; `None` at the end.
fn number(data: &mut impl Source) -> Result<Option<(u64, i64)>> {
    let Some(mut b) = data.byte()? else {
        return Ok(None);
    };
    let mut unsigned: u64 = 0;
    let mut shift = 0;
    loop {
        if shift < 64 {
            unsigned |= u64::from(b & 0x7f) << shift;
        }
        shift += 7;
        if b & 0x80 == 0 {
            let mut signed = unsigned as i64;
            if shift < 64 && b & 0x40 != 0 {
                signed |= -1i64 << shift;
            }
            return Ok(Some((unsigned, signed)));
        }
        if shift >= 70 {
            return Err(Error::CorruptDocument(
                "an Automerge number is longer than ten bytes".into(),
            ));
        }
        b = data.byte()?.ok_or_else(cut)?;
    }
}

/// Walks a change chunk's body (dependencies, actors, sequence, time, message, column
/// metadata) and reads each op column (a change's columns are never compressed).
fn change(body: &mut impl Source, budget: &Budget) -> Result<()> {
    let deps = number(body)?.ok_or_else(cut)?.0;
    body.skip_exactly(deps.checked_mul(32).ok_or_else(cut)?)?;
    let actor = number(body)?.ok_or_else(cut)?.0;
    body.skip_exactly(actor)?;
    for _ in 0..3 {
        number(body)?.ok_or_else(cut)?; // seq, start op, time
    }
    let message = number(body)?.ok_or_else(cut)?.0;
    body.skip_exactly(message)?;
    let others = number(body)?.ok_or_else(cut)?.0;
    for _ in 0..others {
        let len = number(body)?.ok_or_else(cut)?.0;
        body.skip_exactly(len)?;
    }
    let columns = column_specs(body, 1)?;
    for (spec, len) in columns {
        let mut data = Limited {
            inner: &mut *body,
            left: len,
        };
        budget.rows_of(spec, &mut data, usize::try_from(len).unwrap_or(usize::MAX))?;
        let rest = data.left;
        body.skip_exactly(rest)?;
    }
    Ok(())
}

/// `groups` lists of column metadata (spec and length each).
fn column_specs(body: &mut impl Source, groups: usize) -> Result<Vec<(u64, u64)>> {
    let mut columns = Vec::new();
    for _ in 0..groups {
        let count = number(body)?.ok_or_else(cut)?.0;
        for _ in 0..count {
            let spec = number(body)?.ok_or_else(cut)?.0;
            let len = number(body)?.ok_or_else(cut)?.0;
            columns.push((spec, len));
            if columns.len() > 1024 {
                return Err(Error::CorruptDocument(
                    "a chunk declares more columns than Automerge has".into(),
                ));
            }
        }
    }
    Ok(columns)
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
/// reads each column, inflating those marked compressed.
fn document(body: &[u8], budget: &mut Budget) -> Result<()> {
    let mut head = Slice { data: body };
    let actors = number(&mut head)?.ok_or_else(cut)?.0;
    for _ in 0..actors {
        let len = number(&mut head)?.ok_or_else(cut)?.0;
        head.skip_exactly(len)?;
    }
    let heads = number(&mut head)?.ok_or_else(cut)?.0;
    head.skip_exactly(heads.checked_mul(32).ok_or_else(cut)?)?;
    // Change columns' data, then op columns' data, in the order declared.
    let columns = column_specs(&mut head, 2)?;
    let mut body = head.data;
    for (spec, len) in columns {
        let len = usize::try_from(len).map_err(|_| cut())?;
        let data = body.get(..len).ok_or_else(cut)?;
        budget.column(spec, data)?;
        body = &body[len..];
    }
    Ok(())
}

/// An unsigned LEB128 number, advancing `bytes` past it.
fn leb(bytes: &mut &[u8]) -> Option<u64> {
    leb128::read::unsigned(bytes).ok()
}

#[cfg(test)]
pub(crate) mod tests {
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

    /// A chunk of `kind` around `body` (its checksum left zero: nothing here checks it).
    fn framed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut chunk = MAGIC.to_vec();
        chunk.extend([0; 4]);
        chunk.push(kind);
        leb128::write::unsigned(&mut chunk, body.len() as u64).unwrap();
        chunk.extend(body);
        chunk
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
        framed(COMPRESSED_CHANGE, &encoder.finish().unwrap())
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
        let bomb = framed(DOCUMENT, &body);
        // After a harmless change, so the walk goes past a first chunk.
        let mut bytes = document().save_after(&[]);
        bytes.extend(bomb);
        assert!(check(&bytes).is_err());
    }

    /// The body of a change chunk whose one op column is a single run of `rows`.
    fn run_length_bomb(rows: u64) -> Vec<u8> {
        let mut body = Vec::new();
        let u = |out: &mut Vec<u8>, v: u64| {
            leb128::write::unsigned(out, v).unwrap();
        };
        u(&mut body, 0); // deps
        u(&mut body, 16); // actor
        body.extend([7u8; 16]);
        u(&mut body, 1); // seq
        u(&mut body, 1); // start op
        leb128::write::signed(&mut body, 0).unwrap(); // time
        u(&mut body, 0); // message
        u(&mut body, 0); // other actors
        let mut column = Vec::new();
        leb128::write::signed(&mut column, rows as i64).unwrap();
        u(&mut column, 1); // the value repeated
        u(&mut body, 1); // one column
        u(&mut body, (34 << 4) | 2); // action, an integer column
        u(&mut body, column.len() as u64);
        body.extend(column);
        body
    }

    #[test]
    fn a_run_declaring_more_rows_than_the_bytes_can_hold_is_refused() {
        let body = run_length_bomb(1 << 40);
        let bomb = framed(CHANGE, &body);
        assert!(bomb.len() < 64, "{}", bomb.len());
        let err = check(&bomb).unwrap_err();
        assert!(err.to_string().contains("run-length bomb"), "{err}");
        // Compressed, the same.
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut encoder, &body).unwrap();
        let compressed = framed(COMPRESSED_CHANGE, &encoder.finish().unwrap());
        assert!(
            check(&compressed)
                .unwrap_err()
                .to_string()
                .contains("run-length")
        );
        // A run the floor allows passes here (Automerge judges the rest).
        check(&framed(CHANGE, &run_length_bomb(1000))).unwrap();
    }

    #[test]
    fn long_honest_runs_pass() {
        // Two thousand deletions in one change: every op column a single run.
        let mut doc = Automerge::new();
        let list = doc
            .transact(|tx| {
                let list = tx.put_object(&ROOT, "list", automerge::ObjType::List)?;
                for i in 0..2_000 {
                    tx.insert(&list, i, i as i64)?;
                }
                Ok::<_, automerge::AutomergeError>(list)
            })
            .unwrap()
            .result;
        let before = doc.get_heads();
        doc.transact(|tx| {
            for _ in 0..2_000 {
                tx.delete(&list, 0)?;
            }
            Ok::<_, automerge::AutomergeError>(())
        })
        .unwrap();
        let deletions = doc.save_after(&before);
        assert!(deletions.len() < 500, "{}", deletions.len());
        check(&deletions).unwrap();
        check(&doc.save()).unwrap();
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
