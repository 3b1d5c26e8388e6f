//! Changes too large for one relay entry travel in parts.
//!
//! A part's plaintext (sealed and signed like any entry) is `RAPFRAG1` ‖ the SHA-256 of
//! the whole change (32) ‖ part index (u32, big-endian) ‖ part count (u32, big-endian) ‖
//! bytes. A receiver collects the parts of each sender's change in memory and merges the
//! change once every part is there and the whole hashes to its id; until then its relay
//! cursor stays before the first part, so a restart fetches the parts again. Automerge
//! bytes never start with the magic, so anything else is an ordinary entry.

use std::collections::HashMap;

use rapport_wire::DeviceId;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"RAPFRAG1";
const HEADER: usize = MAGIC.len() + 32 + 4 + 4;
/// At most this many parts per change (with 512 KiB entries, a change of about 32 MiB).
pub const MAX_PARTS: u32 = 64;
/// A change's parts are pushed back to back: one whose parts are still missing this many
/// entries after its first is abandoned.
pub const MAX_SPAN: u64 = 1_000;

/// Splits `change` into parts whose plaintext is at most `max` bytes each.
pub fn split(change: &[u8], max: usize) -> Result<Vec<Vec<u8>>, String> {
    let room = max.saturating_sub(HEADER).max(1);
    let count = change.len().div_ceil(room);
    let count = u32::try_from(count)
        .ok()
        .filter(|c| *c <= MAX_PARTS)
        .ok_or_else(|| {
            format!(
                "one change of {} bytes needs more than {MAX_PARTS} relay entries; write it in smaller batches",
                change.len()
            )
        })?;
    let id: [u8; 32] = Sha256::digest(change).into();
    Ok(change
        .chunks(room)
        .zip(0u32..)
        .map(|(bytes, index)| {
            let mut part = Vec::with_capacity(HEADER + bytes.len());
            part.extend_from_slice(MAGIC);
            part.extend_from_slice(&id);
            part.extend_from_slice(&index.to_be_bytes());
            part.extend_from_slice(&count.to_be_bytes());
            part.extend_from_slice(bytes);
            part
        })
        .collect())
}

/// One part, as read from an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part<'a> {
    id: [u8; 32],
    index: u32,
    count: u32,
    bytes: &'a [u8],
}

/// Reads a part; `None` if the plaintext is an ordinary entry.
pub fn parse(plain: &[u8]) -> Option<Result<Part<'_>, String>> {
    let rest = plain.strip_prefix(MAGIC.as_slice())?;
    let parsed = (|| {
        let (id, rest) = rest.split_first_chunk::<32>()?;
        let (index, rest) = rest.split_first_chunk::<4>()?;
        let (count, bytes) = rest.split_first_chunk::<4>()?;
        Some(Part {
            id: *id,
            index: u32::from_be_bytes(*index),
            count: u32::from_be_bytes(*count),
            bytes,
        })
    })();
    Some(match parsed {
        Some(part) if part.count == 0 || part.count > MAX_PARTS || part.index >= part.count => {
            Err(format!(
                "part {} of {} of a large change is out of range",
                part.index, part.count
            ))
        }
        Some(part) => Ok(part),
        None => Err("a part of a large change is truncated".into()),
    })
}

struct Collecting {
    first_seq: u64,
    count: u32,
    parts: Vec<Option<Vec<u8>>>,
}

/// The bytes of incomplete changes held at once, for every sender together: one largest
/// change and half of another.
pub const MAX_HELD: usize = 96 << 20;

/// Parts received so far, by sender and change. Bounded: a sender has at most one change
/// in parts at a time (its device pushes one change's parts back to back, so a new one
/// means the old was abandoned), and all of them together hold at most [`MAX_HELD`].
#[derive(Default)]
pub struct Reassembly {
    changes: HashMap<(DeviceId, [u8; 32]), Collecting>,
    held: usize,
    abandoned: Vec<String>,
}

impl Collecting {
    fn bytes(&self) -> usize {
        self.parts.iter().flatten().map(Vec::len).sum()
    }

    fn describe(&self, sender: &DeviceId) -> String {
        let have = self.parts.iter().filter(|p| p.is_some()).count();
        format!(
            "a large change from {sender} starting at entry {} never completed ({have} of {} parts)",
            self.first_seq, self.count
        )
    }
}

impl Reassembly {
    /// Adds the part carried by entry `seq` from `sender`; the whole change once its last
    /// part arrives (checked against its hash), `None` while parts are missing.
    pub fn add(
        &mut self,
        sender: DeviceId,
        seq: u64,
        part: Part<'_>,
    ) -> Result<Option<Vec<u8>>, String> {
        let key = (sender, part.id);
        let older: Vec<_> = self
            .changes
            .keys()
            .filter(|(from, id)| *from == sender && *id != part.id)
            .copied()
            .collect();
        for old in older {
            if let Some(c) = self.changes.remove(&old) {
                self.held -= c.bytes();
                self.abandoned.push(c.describe(&sender));
            }
        }
        if self.held + part.bytes.len() > MAX_HELD {
            return Err(format!(
                "parts of large changes waiting to be completed already hold {} MiB; this \
                 part is refused",
                self.held >> 20
            ));
        }
        let collecting = self.changes.entry(key).or_insert_with(|| Collecting {
            first_seq: seq,
            count: part.count,
            parts: vec![None; part.count as usize],
        });
        if collecting.count != part.count {
            if let Some(c) = self.changes.remove(&key) {
                self.held -= c.bytes();
            }
            return Err("the parts of a large change disagree on their count".into());
        }
        if let Some(slot) = collecting.parts.get_mut(part.index as usize) {
            let replaced = slot.replace(part.bytes.to_vec());
            self.held = self.held + part.bytes.len() - replaced.map_or(0, |r| r.len());
        }
        if collecting.parts.iter().any(Option::is_none) {
            return Ok(None);
        }
        let Some(collecting) = self.changes.remove(&key) else {
            return Ok(None);
        };
        self.held -= collecting.bytes();
        let whole: Vec<u8> = collecting.parts.into_iter().flatten().flatten().collect();
        if <[u8; 32]>::from(Sha256::digest(&whole)) != part.id {
            return Err("the parts of a large change do not add up to it".into());
        }
        Ok(Some(whole))
    }

    /// Gives up on changes whose first part is more than [`MAX_SPAN`] entries before
    /// `seq` (their sender stopped half-way and never came back): they would otherwise hold
    /// the cursor back for ever. Returns what was given up, for the report.
    /// Changes abandoned by their sender for a newer one are returned here too.
    pub fn expire(&mut self, seq: u64) -> Vec<String> {
        let mut dropped = std::mem::take(&mut self.abandoned);
        let mut freed = 0;
        self.changes.retain(|(sender, _), c| {
            let keep = seq.saturating_sub(c.first_seq) <= MAX_SPAN;
            if !keep {
                freed += c.bytes();
                dropped.push(c.describe(sender));
            }
            keep
        });
        self.held -= freed;
        dropped
    }

    /// The seq of the first part of a change still incomplete: the relay cursor must stay
    /// before it.
    pub fn first_waiting(&self) -> Option<u64> {
        self.changes.values().map(|c| c.first_seq).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_split_and_put_back_together_in_any_order() {
        let change: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let parts = split(&change, 4096).unwrap();
        assert_eq!(parts.len(), 10);
        assert!(parts.iter().all(|p| p.len() <= 4096));
        let sender = DeviceId([1; 16]);
        let mut reassembly = Reassembly::default();
        for (n, i) in [3, 0, 9, 1, 2, 4, 5, 6, 7].into_iter().enumerate() {
            let part = parse(&parts[i]).unwrap().unwrap();
            assert_eq!(reassembly.add(sender, 10 + n as u64, part).unwrap(), None);
        }
        assert_eq!(reassembly.first_waiting(), Some(10));
        let last = parse(&parts[8]).unwrap().unwrap();
        assert_eq!(reassembly.add(sender, 30, last).unwrap(), Some(change));
        assert_eq!(reassembly.first_waiting(), None);
    }

    #[test]
    fn incomplete_changes_are_bounded_per_sender_and_in_all() {
        let sender = DeviceId([3; 16]);
        let mut reassembly = Reassembly::default();
        // A sender starting a second change abandons its first.
        let first = split(&[1u8; 300], 120).unwrap();
        let second = split(&[2u8; 300], 120).unwrap();
        let add = |r: &mut Reassembly, seq, part: &Vec<u8>| {
            r.add(sender, seq, parse(part).unwrap().unwrap())
        };
        assert_eq!(add(&mut reassembly, 1, &first[0]), Ok(None));
        assert_eq!(add(&mut reassembly, 2, &second[0]), Ok(None));
        assert_eq!(reassembly.first_waiting(), Some(2));
        let given_up = reassembly.expire(3);
        assert_eq!(given_up.len(), 1, "{given_up:?}");
        assert!(given_up[0].contains("entry 1"), "{given_up:?}");
        for (i, part) in second.iter().enumerate().skip(1) {
            let got = add(&mut reassembly, 3 + i as u64, part);
            if i + 1 == second.len() {
                assert_eq!(got, Ok(Some(vec![2u8; 300])));
            }
        }
        assert_eq!(reassembly.held, 0, "a completed change holds nothing");

        // Many senders each holding part of a change stop at MAX_HELD.
        let big = vec![9u8; 4 << 20];
        let parts = split(&big, 1 << 20).unwrap();
        let mut refused = None;
        for n in 0..=u8::MAX {
            let from = DeviceId([n; 16]);
            if let Err(e) = reassembly.add(from, u64::from(n), parse(&parts[0]).unwrap().unwrap()) {
                refused = Some((n, e));
                break;
            }
        }
        let (n, e) = refused.expect("the bound was reached");
        assert!(e.contains("MiB"), "{e}");
        assert!(usize::from(n) <= MAX_HELD / (1 << 20) + 1, "{n}");
        assert!(reassembly.held <= MAX_HELD);
    }

    #[test]
    fn ordinary_entries_and_bad_parts_are_told_apart() {
        assert!(parse(&[0x85, 0x6f, 0x4a, 0x83]).is_none());
        assert!(parse(b"RAPFRAG1short").unwrap().is_err());
        let parts = split(&[7u8; 100], 80).unwrap();
        let mut forged = parts[1].clone();
        *forged.last_mut().unwrap() ^= 1;
        let sender = DeviceId([2; 16]);
        let mut reassembly = Reassembly::default();
        reassembly
            .add(sender, 1, parse(&parts[0]).unwrap().unwrap())
            .unwrap();
        let mut rest = parts[2..].iter();
        let mut last = Ok(None);
        for part in rest.by_ref() {
            last = reassembly.add(sender, 2, parse(part).unwrap().unwrap());
        }
        assert_eq!(last, Ok(None));
        assert!(
            reassembly
                .add(sender, 9, parse(&forged).unwrap().unwrap())
                .is_err(),
            "a part changed in flight is caught by the change's hash"
        );
        assert!(split(&vec![0u8; 70 * 100], 100).is_err(), "too many parts");
    }

    #[test]
    fn a_change_never_completed_stops_holding_the_cursor() {
        let parts = split(&[1u8; 300], 100).unwrap();
        let mut reassembly = Reassembly::default();
        reassembly
            .add(DeviceId([3; 16]), 5, parse(&parts[0]).unwrap().unwrap())
            .unwrap();
        assert!(reassembly.expire(5 + MAX_SPAN).is_empty());
        assert_eq!(reassembly.first_waiting(), Some(5));
        let dropped = reassembly.expire(6 + MAX_SPAN);
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert_eq!(reassembly.first_waiting(), None);
    }
}
