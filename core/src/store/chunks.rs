//! The chunk log: a space's Automerge bytes as one base chunk (a whole-document `save()`)
//! followed by the incremental chunks appended after each transaction, compacted back into
//! one base chunk now and then. (The `snapshot` column marks the base chunk; a *snapshot*
//! elsewhere is the sealed one a relay holds, `sealed::snapshot`.)

use automerge::ChangeHash;
use rusqlite::{Connection, OptionalExtension, params};

use crate::doc::SpaceKind;
use crate::error::Result;

/// A space as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceRow {
    /// Space id.
    pub id: String,
    /// Practice or personal.
    pub kind: SpaceKind,
    /// Heads of the document held in the chunk log.
    pub doc_heads: Vec<ChangeHash>,
    /// Heads the read model reflects.
    pub model_heads: Vec<ChangeHash>,
    /// Projection version the read model was built with.
    pub model_version: i64,
    /// Schema version the document declares.
    pub schema: u64,
}

/// Size of the incremental tail, used to decide when to compact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Incremental chunks after the base chunk.
    pub incremental_chunks: u64,
    /// Their bytes.
    pub incremental_bytes: u64,
    /// Bytes of the base chunk.
    pub base_bytes: u64,
}

/// Encodes heads as concatenated 32-byte hashes, sorted so equal sets compare equal.
pub fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.iter().flat_map(|h| h.0).collect()
}

/// Decodes heads written by [`encode_heads`]; a malformed value decodes as no heads, which
/// forces a rebuild rather than trusting it.
pub fn decode_heads(bytes: &[u8]) -> Vec<ChangeHash> {
    if !bytes.len().is_multiple_of(32) {
        return Vec::new();
    }
    bytes
        .chunks_exact(32)
        .filter_map(|c| ChangeHash::try_from(c).ok())
        .collect()
}

/// Registers a new space with its first base chunk.
pub fn create_space(
    conn: &Connection,
    id: &str,
    kind: SpaceKind,
    whole: &[u8],
    heads: &[ChangeHash],
    schema: u64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO spaces (id, kind, doc_heads, model_heads, model_version, schema)
         VALUES (?1, ?2, ?3, x'', 0, ?4)",
        params![id, kind.code(), encode_heads(heads), schema as i64],
    )?;
    conn.execute(
        "INSERT INTO chunks (space_id, snapshot, bytes) VALUES (?1, 1, ?2)",
        params![id, whole],
    )?;
    Ok(())
}

/// Every space of the home.
pub fn spaces(conn: &Connection) -> Result<Vec<SpaceRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, doc_heads, model_heads, model_version, schema FROM spaces ORDER BY kind",
    )?;
    let rows = stmt.query_map([], |r| {
        let kind: String = r.get(1)?;
        Ok((
            r.get::<_, String>(0)?,
            kind,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, Vec<u8>>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, kind, doc_heads, model_heads, model_version, schema) = row?;
        let Some(kind) = SpaceKind::from_code(&kind) else {
            continue;
        };
        out.push(SpaceRow {
            id,
            kind,
            doc_heads: decode_heads(&doc_heads),
            model_heads: decode_heads(&model_heads),
            model_version,
            schema: u64::try_from(schema).unwrap_or(0),
        });
    }
    Ok(out)
}

/// The whole chunk log of a space, concatenated: `Automerge::load` reads it in one call.
pub fn load(conn: &Connection, space_id: &str) -> Result<Vec<u8>> {
    let mut stmt =
        conn.prepare_cached("SELECT bytes FROM chunks WHERE space_id = ?1 ORDER BY id")?;
    let mut rows = stmt.query([space_id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let bytes = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// Appends an incremental chunk and records the document's new heads.
pub fn append(
    conn: &Connection,
    space_id: &str,
    bytes: &[u8],
    heads: &[ChangeHash],
    schema: u64,
) -> Result<()> {
    if !bytes.is_empty() {
        conn.prepare_cached("INSERT INTO chunks (space_id, snapshot, bytes) VALUES (?1, 0, ?2)")?
            .execute(params![space_id, bytes])?;
    }
    conn.prepare_cached("UPDATE spaces SET doc_heads = ?2, schema = ?3 WHERE id = ?1")?
        .execute(params![space_id, encode_heads(heads), schema as i64])?;
    Ok(())
}

/// Records the heads the read model now reflects.
pub fn set_model_heads(
    conn: &Connection,
    space_id: &str,
    heads: &[ChangeHash],
    model_version: i64,
) -> Result<()> {
    conn.prepare_cached("UPDATE spaces SET model_heads = ?2, model_version = ?3 WHERE id = ?1")?
        .execute(params![space_id, encode_heads(heads), model_version])?;
    Ok(())
}

/// Sizes of the chunk log, to decide when to compact.
pub fn stats(conn: &Connection, space_id: &str) -> Result<LogStats> {
    let row = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(snapshot = 0), 0),
                    COALESCE(SUM(CASE WHEN snapshot = 0 THEN length(bytes) END), 0),
                    COALESCE(SUM(CASE WHEN snapshot = 1 THEN length(bytes) END), 0)
             FROM chunks WHERE space_id = ?1",
        )?
        .query_row([space_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .optional()?;
    let (chunks, bytes, base) = row.unwrap_or_default();
    Ok(LogStats {
        incremental_chunks: u64::try_from(chunks).unwrap_or(0),
        incremental_bytes: u64::try_from(bytes).unwrap_or(0),
        base_bytes: u64::try_from(base).unwrap_or(0),
    })
}

/// Replaces the whole log of a space by one base chunk (call inside a transaction).
pub fn compact(conn: &Connection, space_id: &str, whole: &[u8]) -> Result<()> {
    conn.execute("DELETE FROM chunks WHERE space_id = ?1", [space_id])?;
    conn.execute(
        "INSERT INTO chunks (space_id, snapshot, bytes) VALUES (?1, 1, ?2)",
        params![space_id, whole],
    )?;
    Ok(())
}

/// Whether the tail is large enough to be worth folding into a new base chunk.
pub fn should_compact(stats: LogStats) -> bool {
    stats.incremental_chunks >= 1_000 || stats.incremental_bytes > stats.base_bytes.max(256 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_sorted() {
        let a = ChangeHash([1; 32]);
        let b = ChangeHash([2; 32]);
        assert_eq!(encode_heads(&[b, a]), encode_heads(&[a, b]));
        assert_eq!(decode_heads(&encode_heads(&[b, a])), vec![a, b]);
        assert!(decode_heads(&[1, 2, 3]).is_empty());
    }

    #[test]
    fn compaction_threshold() {
        assert!(!should_compact(LogStats {
            incremental_chunks: 10,
            incremental_bytes: 1000,
            base_bytes: 10
        }));
        assert!(should_compact(LogStats {
            incremental_chunks: 1000,
            incremental_bytes: 10,
            base_bytes: 10
        }));
        assert!(should_compact(LogStats {
            incremental_chunks: 5,
            incremental_bytes: 2_000_000,
            base_bytes: 1_000_000
        }));
    }
}
