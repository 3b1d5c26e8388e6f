//! What a space snapshot holds inside its seal: the compacted document and, so that a
//! joining device can start without loading and projecting that document, the read
//! model's records at the same heads.
//!
//! Layout (all of it sealed and signed like any blob, so the relay sees none of it):
//! `RAPSNAP1` ‖ header length (u32, big-endian) ‖ header (JSON: heads, schema, section
//! lengths) ‖ document (Automerge `save()`) ‖ records (zstd-compressed JSON of
//! [`read_model::Records`], possibly empty) ‖ tables (a zstd-compressed SQLite image of
//! the large collections' tables, when the header gives their length and store version).
//! Bytes without the magic are a bare document, as older snapshots were.
//!
//! A practice's touchpoints, referrals and follow-ups travel as the tables image: the
//! joiner checks it and copies its records into its own tables as they are, without
//! decoding them (see [`crate::store::tables_image::with_tables`]). Snapshots from before the image carry
//! them in the JSON, as consecutive zstd frames cut where those arrays start and end;
//! those frames are decompressed on two threads and the arrays handed to SQLite as text.

use std::io::Read;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::STORE_VERSION;
use crate::store::read_model::{self, Records};

const MAGIC: &[u8; 8] = b"RAPSNAP1";
/// Decompressed records (or tables image) larger than this are refused, whatever their
/// compressed size (the large practice's records are about 60 MB).
const MAX_RECORDS: u64 = 512 << 20;
/// Compressed records of any size may inflate this far.
const RECORDS_FLOOR: u64 = 32 << 20;

/// How far `compressed` bytes of records may inflate: [`MAX_DECLARED_RATIO`] times, at
/// least [`RECORDS_FLOOR`], at most [`MAX_RECORDS`].
fn records_limit(compressed: usize) -> u64 {
    MAX_RECORDS.min(RECORDS_FLOOR.max((compressed as u64).saturating_mul(MAX_DECLARED_RATIO)))
}
/// zstd level: fast to write on a phone, and JSON still shrinks about tenfold.
const LEVEL: i32 = 3;

/// A space as a snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceSnapshot {
    /// The document, as `Automerge::save()` wrote it.
    pub document: Vec<u8>,
    /// The document's heads (empty for a bare-document snapshot: unknown until loaded).
    pub heads: Vec<ChangeHash>,
    /// The document's schema version.
    pub schema: u64,
    /// The read model's records at `heads`, compressed; `None` when the snapshot has none
    /// (too large to carry, or written by an older device).
    pub records: Option<Vec<u8>>,
    /// The large collections' tables at `heads`, when `records` leaves them out.
    pub tables: Option<SnapshotTables>,
    /// The last relay seq it includes, sealed and signed with it, so that a relay cannot
    /// pair an old snapshot with a newer position (`None` in snapshots from before
    /// membership logs).
    pub covers: Option<u64>,
}

/// A read model's large collections as a snapshot carries them: an SQLite image of their
/// tables ([`crate::store::tables_image::export_tables`]), zstd-compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTables {
    /// The store version of the device that wrote them (the tables' definitions).
    pub store_version: i64,
    /// The compressed image.
    pub image: Vec<u8>,
}

impl SnapshotTables {
    /// Compresses an image from [`crate::store::tables_image::export_tables`].
    pub fn compress(image: &[u8]) -> Result<SnapshotTables> {
        Ok(SnapshotTables {
            store_version: STORE_VERSION,
            image: zstd::bulk::compress(image, LEVEL).map_err(|e| {
                Error::Sync(format!("compressing the read model for a snapshot: {e}"))
            })?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    heads: Vec<String>,
    schema: u64,
    document_len: u64,
    records_len: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tables_len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tables_store: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    covers: Option<u64>,
}

/// Compresses the JSON of a space's records for a snapshot.
pub fn compress_records(export: &read_model::Export) -> Result<Vec<u8>> {
    let json = export.json.as_slice();
    let mut cuts = vec![0];
    for range in &export.bulk {
        cuts.extend([range.start, range.end]);
    }
    cuts.push(json.len());
    let mut out = Vec::new();
    for pair in cuts.windows(2) {
        let frame = json.get(pair[0]..pair[1]).ok_or_else(|| {
            Error::Sync("the read model's sections do not fit its text".to_string())
        })?;
        out.extend(
            zstd::bulk::compress(frame, LEVEL).map_err(|e| {
                Error::Sync(format!("compressing the read model for a snapshot: {e}"))
            })?,
        );
    }
    Ok(out)
}

/// Frames declaring more than this many times their compressed size are read as a
/// stream instead, which allocates only what actually comes out (the large practice's
/// records shrink about 8 times).
const MAX_DECLARED_RATIO: u64 = 64;

/// The zstd frames of `compressed`, each with the size it declares; `None` unless every
/// frame is whole and declares its size, and all of them fit in [`MAX_RECORDS`] and
/// [`MAX_DECLARED_RATIO`].
fn frames(mut compressed: &[u8]) -> Option<Vec<(&[u8], usize)>> {
    let limit = MAX_RECORDS.min((compressed.len() as u64).saturating_mul(MAX_DECLARED_RATIO));
    let mut frames = Vec::new();
    let mut total: u64 = 0;
    while !compressed.is_empty() {
        let len = zstd::zstd_safe::find_frame_compressed_size(compressed).ok()?;
        let size = zstd::zstd_safe::get_frame_content_size(compressed).ok()??;
        total = total.checked_add(size)?;
        if len == 0 || len > compressed.len() || total > limit {
            return None;
        }
        frames.push((&compressed[..len], usize::try_from(size).ok()?));
        compressed = &compressed[len..];
    }
    Some(frames)
}

/// Decompresses each frame on one of two threads.
fn decompress_frames(frames: &[(&[u8], usize)]) -> Result<Vec<Vec<u8>>> {
    let one = |(frame, size): &(&[u8], usize)| -> Result<Vec<u8>> {
        let out = zstd::bulk::decompress(frame, *size)
            .map_err(|e| Error::Sync(format!("the snapshot's read model cannot be read: {e}")))?;
        if out.len() != *size {
            return Err(Error::Sync(
                "the snapshot's read model is shorter than it declares".to_string(),
            ));
        }
        Ok(out)
    };
    let total: usize = frames.iter().map(|(_, size)| size).sum();
    // Split where half of the text has been produced.
    let mut produced = 0;
    let split = frames
        .iter()
        .position(|(_, size)| {
            produced += size;
            produced * 2 >= total
        })
        .map_or(frames.len(), |i| i + 1);
    let (first, second) = frames.split_at(split);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| second.iter().map(one).collect::<Result<Vec<_>>>());
        let mut out = first.iter().map(one).collect::<Result<Vec<_>>>()?;
        out.extend(
            other
                .join()
                .map_err(|_| Error::Sync("decompressing the snapshot failed".to_string()))??,
        );
        Ok(out)
    })
}

/// The records from frames cut as [`compress_records`] cuts a practice's: the text
/// around the bulk arrays is parsed, the arrays are kept as text. `None` when the frames
/// are cut any other way.
fn records_from_sections(texts: &mut [Vec<u8>]) -> Result<Option<Records>> {
    let n = crate::store::tables_image::BULK_COLLECTIONS.len();
    if texts.len() != 2 * n + 1 {
        return Ok(None);
    }
    let mut skeleton = Vec::new();
    for (i, name) in crate::store::tables_image::BULK_COLLECTIONS
        .iter()
        .enumerate()
    {
        let before = &texts[2 * i];
        let key = format!("\"{name}\":");
        let array = &texts[2 * i + 1];
        if !before.ends_with(key.as_bytes()) || array.first() != Some(&b'[') {
            return Ok(None);
        }
        skeleton.extend_from_slice(before);
        skeleton.extend_from_slice(b"null");
    }
    skeleton.extend_from_slice(&texts[2 * n]);
    let mut records: Records = serde_json::from_slice(&skeleton)
        .map_err(|e| Error::Sync(format!("the snapshot's read model is malformed: {e}")))?;
    let mut array = |i: usize| -> Result<Option<read_model::JsonText>> {
        String::from_utf8(std::mem::take(&mut texts[2 * i + 1]))
            .map(|text| Some(read_model::JsonText(text)))
            .map_err(|_| Error::Sync("the snapshot's read model is not UTF-8 text".to_string()))
    };
    records.touchpoints = array(0)?;
    records.referrals = array(1)?;
    records.followups = array(2)?;
    Ok(Some(records))
}

/// Decompresses `compressed` whole, refusing more than [`records_limit`]: at once when
/// its frames declare sizes that [`frames`] accepts (checked before allocating), as a
/// stream otherwise, counted into nothing first so that a bomb is refused without
/// allocating what it inflates to.
fn decompress_bounded(compressed: &[u8]) -> Result<Vec<u8>> {
    let unreadable =
        |e: std::io::Error| Error::Sync(format!("the snapshot's read model cannot be read: {e}"));
    if let Some(frames) = frames(compressed) {
        let total = frames.iter().map(|(_, size)| size).sum();
        let out = zstd::bulk::decompress(compressed, total).map_err(unreadable)?;
        if out.len() != total {
            return Err(Error::Sync(
                "the snapshot's read model is shorter than it declares".to_string(),
            ));
        }
        return Ok(out);
    }
    let limit = records_limit(compressed.len());
    let inflated = zstd::stream::read::Decoder::new(compressed)
        .and_then(|d| std::io::copy(&mut d.take(limit + 1), &mut std::io::sink()))
        .map_err(unreadable)?;
    if inflated > limit {
        return Err(Error::Sync(format!(
            "the snapshot's read model inflates past {} MiB, more than {} bytes of it can \
             hold (a compression bomb?)",
            limit >> 20,
            compressed.len()
        )));
    }
    let mut out = Vec::with_capacity(usize::try_from(inflated).unwrap_or(0));
    zstd::stream::read::Decoder::new(compressed)
        .and_then(|d| d.take(inflated).read_to_end(&mut out))
        .map_err(unreadable)?;
    Ok(out)
}

/// The heads an Automerge document chunk (what `Automerge::save()` writes) names in its
/// header, read without loading the document; `None` if the bytes are not one.
///
/// The chunk: magic (4) ‖ checksum (4) ‖ type (1, 0 = document) ‖ length (uLEB128) ‖
/// actors (uLEB128 count, each uLEB128 length and bytes) ‖ heads (uLEB128 count, 32 bytes
/// each) ‖ the columns.
pub fn document_heads(bytes: &[u8]) -> Option<Vec<ChangeHash>> {
    fn uleb(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    if bytes.get(..4)? != [0x85, 0x6f, 0x4a, 0x83] || *bytes.get(8)? != 0 {
        return None;
    }
    let mut at = 9;
    let len = usize::try_from(uleb(bytes, &mut at)?).ok()?;
    let end = at.checked_add(len)?;
    let chunk = bytes.get(..end)?;
    let actors = uleb(chunk, &mut at)?;
    for _ in 0..actors {
        let len = usize::try_from(uleb(chunk, &mut at)?).ok()?;
        at = at.checked_add(len)?;
    }
    let count = usize::try_from(uleb(chunk, &mut at)?).ok()?;
    let mut heads = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let hash: [u8; 32] = chunk.get(at..at.checked_add(32)?)?.try_into().ok()?;
        heads.push(ChangeHash(hash));
        at += 32;
    }
    heads.sort();
    Some(heads)
}

impl SpaceSnapshot {
    /// Whether the heads the header claims are the ones its document names.
    pub fn heads_match_document(&self) -> bool {
        let mut claimed = self.heads.clone();
        claimed.sort();
        document_heads(&self.document).is_some_and(|heads| heads == claimed)
    }

    /// The same snapshot without its records (when they would not fit a relay snapshot).
    pub fn without_records(mut self) -> SpaceSnapshot {
        self.records = None;
        self.tables = None;
        self
    }

    /// The bytes to seal.
    pub fn encode(&self) -> Vec<u8> {
        let records = self.records.as_deref().unwrap_or_default();
        let tables = self.tables.as_ref().map(|t| t.image.as_slice());
        let header = Header {
            heads: self.heads.iter().map(ToString::to_string).collect(),
            schema: self.schema,
            document_len: self.document.len() as u64,
            records_len: records.len() as u64,
            tables_len: tables.map(|t| t.len() as u64),
            tables_store: self.tables.as_ref().map(|t| t.store_version),
            covers: self.covers,
        };
        let tables = tables.unwrap_or_default();
        // Serializing plain strings and numbers cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let mut out = Vec::with_capacity(
            MAGIC.len() + 4 + header.len() + self.document.len() + records.len() + tables.len(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(
            &u32::try_from(header.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.document);
        out.extend_from_slice(records);
        out.extend_from_slice(tables);
        out
    }

    /// Reads opened snapshot bytes. Bytes without the magic are a bare document.
    pub fn decode(bytes: &[u8]) -> Result<SpaceSnapshot> {
        let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
            return Ok(SpaceSnapshot {
                document: bytes.to_vec(),
                heads: Vec::new(),
                schema: 0,
                records: None,
                tables: None,
                covers: None,
            });
        };
        let bad = |what: &str| Error::Sync(format!("the snapshot is malformed: {what}"));
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("no header"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let header = rest.get(..len).ok_or_else(|| bad("truncated header"))?;
        let header: Header =
            serde_json::from_slice(header).map_err(|e| bad(&format!("header: {e}")))?;
        let rest = &rest[len..];
        let doc_len = usize::try_from(header.document_len).map_err(|_| bad("document length"))?;
        let records_len = usize::try_from(header.records_len).map_err(|_| bad("records length"))?;
        let tables_len =
            usize::try_from(header.tables_len.unwrap_or(0)).map_err(|_| bad("tables length"))?;
        if rest.len()
            != doc_len
                .saturating_add(records_len)
                .saturating_add(tables_len)
        {
            return Err(bad("its sections do not add up to its length"));
        }
        let heads = header
            .heads
            .iter()
            .map(|h| {
                h.parse::<ChangeHash>()
                    .map_err(|_| bad("a head is not a change hash"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SpaceSnapshot {
            document: rest[..doc_len].to_vec(),
            heads,
            schema: header.schema,
            records: (records_len > 0).then(|| rest[doc_len..doc_len + records_len].to_vec()),
            tables: match (header.tables_len, header.tables_store) {
                (Some(_), Some(store_version)) => Some(SnapshotTables {
                    store_version,
                    image: rest[doc_len + records_len..].to_vec(),
                }),
                (None, None) => None,
                _ => return Err(bad("its tables section is described by halves")),
            },
            covers: header.covers,
        })
    }

    /// The records, decompressed and parsed; `None` if the snapshot has none or they were
    /// written by another projection version or, for the tables image, another store
    /// version (the joiner then projects the document). The image is decompressed on a
    /// thread of its own while the JSON is read.
    pub fn records(&self) -> Result<Option<Records>> {
        let Some(compressed) = &self.records else {
            return Ok(None);
        };
        if self.heads.is_empty() {
            return Ok(None);
        }
        if self
            .tables
            .as_ref()
            .is_some_and(|t| t.store_version != STORE_VERSION)
        {
            return Ok(None);
        }
        std::thread::scope(|scope| {
            let image = self
                .tables
                .as_ref()
                .map(|t| scope.spawn(|| decompress_bounded(&t.image)));
            let records = json_records(compressed)?;
            let image =
                match image {
                    Some(thread) => Some(thread.join().map_err(|_| {
                        Error::Sync("decompressing the snapshot failed".to_string())
                    })??),
                    None => None,
                };
            Ok(records.map(|records| Records {
                tables: image,
                ..records
            }))
        })
    }
}

/// The JSON records of a snapshot, at the projection version of this build.
fn json_records(compressed: &[u8]) -> Result<Option<Records>> {
    let current =
        |records: Records| (records.model_version == read_model::MODEL_VERSION).then_some(records);
    if let Some(frames) = frames(compressed) {
        let mut texts = decompress_frames(&frames)?;
        if let Some(records) = records_from_sections(&mut texts)? {
            return Ok(current(records));
        }
        let records: Records = serde_json::from_slice(&texts.concat())
            .map_err(|e| Error::Sync(format!("the snapshot's read model is malformed: {e}")))?;
        return Ok(current(records));
    }
    // Frames that do not say how large they are: read them as a stream.
    let json = decompress_bounded(compressed)?;
    let records: Records = serde_json::from_slice(&json)
        .map_err(|e| Error::Sync(format!("the snapshot's read model is malformed: {e}")))?;
    Ok(current(records))
}

/// An export of `json` for tests, its bulk arrays found by their keys (the arrays must
/// hold no `]` inside).
#[cfg(test)]
pub(crate) fn export_of_json(json: String) -> read_model::Export {
    let bulk = crate::store::tables_image::BULK_COLLECTIONS
        .iter()
        .filter_map(|name| {
            let key = format!("\"{name}\":");
            let start = json.find(&key)? + key.len();
            let end = start + json[start..].find(']')? + 1;
            Some(start..end)
        })
        .collect();
    read_model::Export {
        json: json.into_bytes(),
        bulk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn practice_json() -> String {
        format!(
            concat!(
                "{{\"model_version\":{},\"members\":[],\"partners\":[{{\"id\":\"p\"}}],",
                "\"touchpoints\":[{{\"id\":\"t1\",\"note\":\"café\"}}],",
                "\"referrals\":[],\"followups\":[{{\"id\":\"f1\"}},{{\"id\":\"f2\"}}]}}"
            ),
            read_model::MODEL_VERSION
        )
    }

    fn sample() -> SpaceSnapshot {
        SpaceSnapshot {
            document: vec![1, 2, 3],
            heads: vec![ChangeHash([7; 32])],
            schema: 2,
            records: Some(compress_records(&export_of_json(practice_json())).unwrap()),
            tables: None,
            covers: Some(41),
        }
    }

    #[test]
    fn covers_travel_sealed_and_a_document_s_heads_are_read_from_its_header() {
        let back = SpaceSnapshot::decode(&sample().encode()).unwrap();
        assert_eq!(back.covers, Some(41));
        let mut doc = automerge::AutoCommit::new();
        use automerge::transaction::Transactable;
        for i in 0..3 {
            let mut other = doc.fork();
            doc.put(automerge::ROOT, format!("k{i}"), i).unwrap();
            other.put(automerge::ROOT, "x", i).unwrap();
            doc.merge(&mut other).unwrap();
        }
        let bytes = doc.save();
        let mut heads = doc.get_heads();
        heads.sort();
        assert_eq!(heads.len(), 2, "concurrent changes: two heads");
        assert_eq!(document_heads(&bytes), Some(heads.clone()));
        let snapshot = SpaceSnapshot {
            document: bytes.clone(),
            heads: heads.clone(),
            ..sample()
        };
        assert!(snapshot.heads_match_document());
        let lying = SpaceSnapshot {
            heads: vec![ChangeHash([1; 32])],
            ..snapshot
        };
        assert!(
            !lying.heads_match_document(),
            "heads that are not the document's are caught"
        );
        for cut in [0, 5, 9, 40, bytes.len() / 2] {
            let _ = document_heads(&bytes[..cut]);
        }
        assert_eq!(document_heads(b"not automerge"), None);
    }

    #[test]
    fn the_frames_read_as_one_text_and_the_bulk_arrays_stay_text() {
        let json = practice_json();
        let compressed = compress_records(&export_of_json(json.clone())).unwrap();
        assert_eq!(frames(&compressed).map(|f| f.len()), Some(7));
        assert_eq!(
            zstd::decode_all(compressed.as_slice()).unwrap(),
            json.as_bytes(),
            "a device that reads the records as one zstd stream gets the same JSON"
        );
        let records = sample().records().unwrap().unwrap();
        assert_eq!(records.partners.len(), 1);
        assert_eq!(
            records.touchpoints.map(|t| t.0).as_deref(),
            Some("[{\"id\":\"t1\",\"note\":\"café\"}]")
        );
        assert_eq!(records.referrals.map(|t| t.0).as_deref(), Some("[]"));
        assert_eq!(
            records.followups.map(|t| t.0).as_deref(),
            Some("[{\"id\":\"f1\"},{\"id\":\"f2\"}]")
        );
        // Records written as one frame (older devices) read the same.
        let mut older = sample();
        older.records = Some(zstd::bulk::compress(json.as_bytes(), LEVEL).unwrap());
        let records = older.records().unwrap().unwrap();
        assert_eq!(records.partners.len(), 1);
        assert_eq!(
            records.followups.map(|t| t.0).as_deref(),
            Some("[{\"id\":\"f1\"},{\"id\":\"f2\"}]")
        );
    }

    #[test]
    fn frames_cut_elsewhere_or_lying_about_their_size_are_handled() {
        let json = practice_json();
        // Cut in other places: parsed as one text.
        let mut cut_elsewhere = sample();
        let mut bytes = Vec::new();
        for part in json.as_bytes().chunks(17) {
            bytes.extend(zstd::bulk::compress(part, LEVEL).unwrap());
        }
        cut_elsewhere.records = Some(bytes);
        let records = cut_elsewhere.records().unwrap().unwrap();
        assert_eq!(records.partners.len(), 1);
        // A frame declaring more than it holds, or a truncated last frame: errors.
        let good = compress_records(&export_of_json(json)).unwrap();
        let mut truncated = sample();
        truncated.records = Some(good[..good.len() - 3].to_vec());
        assert!(truncated.records().is_err());
        let mut lying = sample();
        let mut frame = zstd::bulk::compress(b"{}", LEVEL).unwrap();
        // Frame header: magic (4), descriptor (1), then the single-byte content size.
        assert_eq!(frame[4] & 0xC0, 0, "a one-byte content size");
        frame[5] = 200;
        lying.records = Some(frame);
        assert!(lying.records().is_err());
        // A frame far larger than compressed text usually is: read as a stream, which
        // allocates only what comes out (here it is legitimate, so it reads).
        let padded = format!(
            "{{\"model_version\":{},{}\"members\":[]}}",
            read_model::MODEL_VERSION,
            " ".repeat(1 << 20)
        );
        let squeezed = zstd::bulk::compress(padded.as_bytes(), LEVEL).unwrap();
        assert!(frames(&squeezed).is_none());
        let mut sparse = sample();
        sparse.records = Some(squeezed);
        assert!(sparse.records().unwrap().unwrap().partners.is_empty());
    }

    fn with_tables() -> SpaceSnapshot {
        SpaceSnapshot {
            tables: Some(SnapshotTables::compress(b"an image of tables").unwrap()),
            ..sample()
        }
    }

    #[test]
    fn the_tables_section_round_trips_and_must_be_described_whole() {
        let snapshot = with_tables();
        let back = SpaceSnapshot::decode(&snapshot.encode()).unwrap();
        assert_eq!(back, snapshot);
        assert_eq!(
            back.records().unwrap().unwrap().tables.as_deref(),
            Some(b"an image of tables".as_slice()),
            "decompressed beside the records"
        );
        // A header giving the tables' length without their store version is refused.
        let bytes = snapshot.encode();
        let len = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[12..12 + len]).unwrap();
        let store = format!(",\"tables_store\":{STORE_VERSION}");
        assert!(header.contains(&store), "{header}");
        let halved = header.replace(&store, "");
        let mut out = MAGIC.to_vec();
        out.extend((halved.len() as u32).to_be_bytes());
        out.extend(halved.as_bytes());
        out.extend(&bytes[12 + len..]);
        let err = SpaceSnapshot::decode(&out).unwrap_err();
        assert!(err.to_string().contains("described by halves"), "{err}");
        // Tables from another store version: the joiner goes to the document.
        let mut other = with_tables();
        other.tables.as_mut().unwrap().store_version = STORE_VERSION + 1;
        assert!(other.records().unwrap().is_none());
    }

    #[test]
    fn round_trips() {
        let snapshot = sample();
        let back = SpaceSnapshot::decode(&snapshot.encode()).unwrap();
        assert_eq!(back, snapshot);
        assert_eq!(
            back.records().unwrap().unwrap().model_version,
            read_model::MODEL_VERSION
        );
        let bare = SpaceSnapshot::decode(&[0x85, 0x6f, 0x4a]).unwrap();
        assert_eq!(bare.document, vec![0x85, 0x6f, 0x4a]);
        assert!(bare.records().unwrap().is_none());
    }

    /// Any prefix with the magic fails cleanly.
    fn cut_anywhere_fails(bytes: &[u8]) {
        for cut in 0..bytes.len() {
            let _ = SpaceSnapshot::decode(&bytes[..cut]);
            if cut > MAGIC.len() {
                assert!(
                    SpaceSnapshot::decode(&bytes[..cut]).is_err(),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        for bytes in [sample().encode(), with_tables().encode()] {
            cut_anywhere_fails(&bytes);
        }
        let mut garbage_tables = with_tables();
        garbage_tables.tables.as_mut().unwrap().image = vec![9; 40];
        assert!(garbage_tables.records().is_err());
        let mut other_version = sample();
        other_version.records =
            Some(compress_records(&export_of_json("{\"model_version\":-1}".to_string())).unwrap());
        assert!(other_version.records().unwrap().is_none());
        let mut garbage = sample();
        garbage.records = Some(vec![1, 2, 3, 4]);
        assert!(garbage.records().is_err());
    }
}
