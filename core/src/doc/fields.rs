//! Typed access to the fields of an entity map in an Automerge document.
//!
//! Readers are lenient: a field of the wrong type (written by a buggy or newer peer) reads
//! as absent rather than failing the whole projection. Writers only touch the keys they
//! are given, so fields written by newer versions survive an edit.

use std::collections::BTreeSet;

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value};

use crate::error::Result;

/// A string field (also accepts a Text object).
pub fn get_str<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok().flatten()? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        (Value::Object(ObjType::Text), id) => doc.text(&id).ok(),
        _ => None,
    }
}

/// A free-text field: an Automerge Text object (or a plain string); absent reads as empty.
pub fn get_text<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> String {
    get_str(doc, obj, key).unwrap_or_default()
}

/// A boolean field.
pub fn get_bool<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<bool> {
    match doc.get(obj, key).ok().flatten()? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Boolean(b) => Some(*b),
            _ => None,
        },
        _ => None,
    }
}

/// An integer field (int, uint, timestamp or counter).
pub fn get_i64<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<i64> {
    match doc.get(obj, key).ok().flatten()? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Some(*i),
            ScalarValue::Uint(u) => i64::try_from(*u).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// A map-valued child object.
pub fn get_map<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key).ok().flatten()? {
        (Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

/// A set stored as a map of `value: true`, sorted.
pub fn get_set<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Vec<String> {
    let Some(set) = get_map(doc, obj, key) else {
        return Vec::new();
    };
    doc.keys(&set)
        .filter(|k| get_bool(doc, &set, k) == Some(true))
        .collect()
}

/// Writes a string.
pub fn put_str<T: Transactable>(tx: &mut T, obj: &ObjId, key: &str, value: &str) -> Result<()> {
    tx.put(obj, key, value)?;
    Ok(())
}

/// Writes an optional string: `None` deletes the key.
pub fn put_opt_str<T: Transactable + ReadDoc>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: Option<&str>,
) -> Result<()> {
    match value {
        Some(v) => tx.put(obj, key, v)?,
        None if tx.get(obj, key)?.is_some() => tx.delete(obj, key)?,
        None => {}
    }
    Ok(())
}

/// Writes a boolean.
pub fn put_bool<T: Transactable>(tx: &mut T, obj: &ObjId, key: &str, value: bool) -> Result<()> {
    tx.put(obj, key, value)?;
    Ok(())
}

/// Writes a timestamp in milliseconds.
pub fn put_time<T: Transactable>(tx: &mut T, obj: &ObjId, key: &str, ms: i64) -> Result<()> {
    tx.put(obj, key, ScalarValue::Timestamp(ms))?;
    Ok(())
}

/// Writes an unsigned integer.
pub fn put_uint<T: Transactable>(tx: &mut T, obj: &ObjId, key: &str, value: u64) -> Result<()> {
    tx.put(obj, key, ScalarValue::Uint(value))?;
    Ok(())
}

/// Sets a free-text field, editing the existing Text object so that concurrent edits by
/// colleagues merge character by character instead of one overwriting the other.
pub fn put_text<T: Transactable + ReadDoc>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &str,
) -> Result<()> {
    let existing = match tx.get(obj, key)? {
        Some((Value::Object(ObjType::Text), id)) => Some(id),
        _ => None,
    };
    let text = match existing {
        Some(id) => id,
        // Created even when empty: two devices must never create the same container
        // concurrently, or one side's edits are lost in the merge.
        None => tx.put_object(obj, key, ObjType::Text)?,
    };
    tx.update_text(&text, value)?;
    Ok(())
}

/// Makes the set at `key` equal `values`: adds what is missing, removes what is gone, and
/// leaves untouched entries alone so concurrent additions elsewhere survive the merge.
pub fn put_set<T: Transactable + ReadDoc>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    values: &BTreeSet<String>,
) -> Result<()> {
    let set = match get_map(tx, obj, key) {
        Some(set) => set,
        // Created even when empty, for the same reason as texts.
        None => tx.put_object(obj, key, ObjType::Map)?,
    };
    let present: Vec<String> = tx.keys(&set).collect();
    for old in &present {
        if !values.contains(old) {
            tx.delete(&set, old.as_str())?;
        }
    }
    for value in values {
        if get_bool(tx, &set, value) != Some(true) {
            tx.put(&set, value.as_str(), true)?;
        }
    }
    Ok(())
}
