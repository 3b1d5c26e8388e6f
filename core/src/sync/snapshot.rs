//! What a space snapshot holds inside its seal: the compacted document and, so that a
//! joining device can start without loading and projecting that document, the read
//! model's records at the same heads.
//!
//! Layout (all of it sealed and signed like any blob, so the relay sees none of it):
//! `RAPSNAP1` ‖ header length (u32, big-endian) ‖ header (JSON: heads, schema, section
//! lengths) ‖ document (Automerge `save()`) ‖ records (zstd-compressed JSON of
//! [`read_model::Records`], possibly empty). Bytes without the magic are a bare document,
//! as older snapshots were.

use std::io::Read;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::read_model::{self, Records};

const MAGIC: &[u8; 8] = b"RAPSNAP1";
/// Decompressed records larger than this are refused (the large practice's are ~60 MB).
const MAX_RECORDS: u64 = 1 << 30;
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
}

#[derive(Serialize, Deserialize)]
struct Header {
    heads: Vec<String>,
    schema: u64,
    document_len: u64,
    records_len: u64,
}

/// Compresses the JSON of a space's records for a snapshot.
pub fn compress_records(json: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::compress(json, LEVEL)
        .map_err(|e| Error::Sync(format!("compressing the read model for a snapshot: {e}")))
}

impl SpaceSnapshot {
    /// The same snapshot without its records (when they would not fit a relay snapshot).
    pub fn without_records(mut self) -> SpaceSnapshot {
        self.records = None;
        self
    }

    /// The bytes to seal.
    pub fn encode(&self) -> Vec<u8> {
        let records = self.records.as_deref().unwrap_or_default();
        let header = Header {
            heads: self.heads.iter().map(ToString::to_string).collect(),
            schema: self.schema,
            document_len: self.document.len() as u64,
            records_len: records.len() as u64,
        };
        // Serializing plain strings and numbers cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let mut out = Vec::with_capacity(
            MAGIC.len() + 4 + header.len() + self.document.len() + records.len(),
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
        if rest.len() != doc_len.saturating_add(records_len) {
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
            records: (records_len > 0).then(|| rest[doc_len..].to_vec()),
        })
    }

    /// The records, decompressed and parsed; `None` if the snapshot has none or they were
    /// written by another projection version (the joiner then projects the document).
    pub fn records(&self) -> Result<Option<Records>> {
        let Some(compressed) = &self.records else {
            return Ok(None);
        };
        if self.heads.is_empty() {
            return Ok(None);
        }
        let mut json = Vec::new();
        zstd::stream::read::Decoder::new(compressed.as_slice())
            .and_then(|d| d.take(MAX_RECORDS + 1).read_to_end(&mut json))
            .map_err(|e| Error::Sync(format!("the snapshot's read model cannot be read: {e}")))?;
        if json.len() as u64 > MAX_RECORDS {
            return Err(Error::Sync(format!(
                "the snapshot's read model is larger than {MAX_RECORDS} bytes"
            )));
        }
        let records: Records = serde_json::from_slice(&json)
            .map_err(|e| Error::Sync(format!("the snapshot's read model is malformed: {e}")))?;
        Ok((records.model_version == read_model::MODEL_VERSION).then_some(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SpaceSnapshot {
        SpaceSnapshot {
            document: vec![1, 2, 3],
            heads: vec![ChangeHash([7; 32])],
            schema: 2,
            records: Some(
                compress_records(
                    format!(
                        "{{\"model_version\":{},\"members\":[]}}",
                        read_model::MODEL_VERSION
                    )
                    .as_bytes(),
                )
                .unwrap(),
            ),
        }
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

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            // Any prefix with the magic must fail cleanly (or be a bare document).
            let _ = SpaceSnapshot::decode(&bytes[..cut]);
            if cut > MAGIC.len() {
                assert!(
                    SpaceSnapshot::decode(&bytes[..cut]).is_err(),
                    "cut at {cut}"
                );
            }
        }
        let mut other_version = sample();
        other_version.records = Some(compress_records(b"{\"model_version\":-1}").unwrap());
        assert!(other_version.records().unwrap().is_none());
        let mut garbage = sample();
        garbage.records = Some(vec![1, 2, 3, 4]);
        assert!(garbage.records().is_err());
    }
}
