//! The sans-IO part of sync: what to do next for a space, the status a user sees, and how
//! long to wait before reconnecting. No sockets, clocks or randomness inside: the caller
//! passes them in, so every decision is tested without a network.

use std::time::Duration;

use serde::Serialize;

use crate::doc::SpaceKind;

/// Entries after which a device folds the log into a snapshot.
pub const SNAPSHOT_EVERY: u64 = 200;

/// What the engine knows of one space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceView {
    /// Which space.
    pub kind: SpaceKind,
    /// Whether this device holds a key for it (i.e. it is synced at all).
    pub has_key: bool,
    /// The document's heads, encoded and sorted.
    pub heads: Vec<u8>,
    /// The heads the relay acknowledged, encoded and sorted.
    pub acked: Vec<u8>,
    /// Entries merged up to this seq.
    pub cursor: u64,
    /// The seq the newest known snapshot covers.
    pub last_snapshot: u64,
    /// Local work not in the document yet that a push will write (a join from a
    /// snapshot whose member entry waits for the document's first load).
    pub pending: bool,
}

/// One step of a sync round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Fetch key envelopes for newer epochs.
    FetchKeys,
    /// Push the changes the relay has not acknowledged.
    Push,
    /// Pull and merge new entries.
    Pull,
    /// Upload a snapshot and prune what it covers.
    Snapshot,
}

/// Why a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// On connecting, and now and then: everything.
    Full,
    /// The relay announced new entries: only pull.
    Notice,
    /// Something changed here: only push.
    Local,
}

/// The steps of a full round for one space, in order. Keys come first (a rotation may
/// have happened), then push (so that pulls return our own entries too), then pull; the
/// snapshot decision is taken again after the pull, from the new cursor.
pub fn plan(view: &SpaceView) -> Vec<Step> {
    plan_for(view, Trigger::Full)
}

/// The steps of a round for one space, for a trigger. Lean rounds keep an edit's way to
/// the other devices short: the sender only pushes, receivers only pull (a pull that meets
/// an entry of a newer epoch fetches keys by itself).
pub fn plan_for(view: &SpaceView, trigger: Trigger) -> Vec<Step> {
    if !view.has_key {
        return Vec::new();
    }
    let unpushed = view.heads != view.acked || view.pending;
    match trigger {
        Trigger::Full => {
            let mut steps = vec![Step::FetchKeys];
            if unpushed {
                steps.push(Step::Push);
            }
            steps.push(Step::Pull);
            steps
        }
        Trigger::Notice => vec![Step::Pull],
        Trigger::Local if unpushed => vec![Step::Push],
        Trigger::Local => Vec::new(),
    }
}

/// Whether a space's log has grown enough since the last snapshot to fold it.
pub fn wants_snapshot(view: &SpaceView) -> bool {
    view.has_key && view.cursor >= view.last_snapshot + SNAPSHOT_EVERY
}

/// What to do with an entry the relay delivered inside a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// At or before the cursor: already merged.
    AlreadyHad,
    /// The next entry after the cursor: merge it now.
    Merge,
    /// Entries are missing before it: pull instead.
    Gap,
}

/// Decides about a delivered entry `seq` for a space whose cursor is `cursor`.
pub fn on_delivered(cursor: u64, seq: u64) -> Delivered {
    if seq <= cursor {
        Delivered::AlreadyHad
    } else if seq == cursor + 1 {
        Delivered::Merge
    } else {
        Delivered::Gap
    }
}

/// Where the cursor may stand after entries up to `last` were handled: not past the first
/// part of a large change still missing parts (`first_waiting`), so a restart fetches it
/// again.
pub fn cursor_after(last: u64, first_waiting: Option<u64>) -> u64 {
    match first_waiting {
        Some(first) => last.min(first.saturating_sub(1)),
        None => last,
    }
}

/// What a user sees of sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum SyncStatus {
    /// Not connected, and not trying right now.
    Offline {
        /// When the next attempt is, in milliseconds from now.
        retry_in_ms: u64,
    },
    /// Connecting to the relay.
    Connecting,
    /// A round is running: `done` of `total` spaces finished.
    Syncing {
        /// Spaces finished.
        done: u32,
        /// Spaces in this round.
        total: u32,
    },
    /// Everything is exchanged.
    UpToDate {
        /// When the last round finished (milliseconds since the Unix epoch).
        at_ms: i64,
        /// Entries refused in that round (tampered, wrong key).
        refused: u32,
    },
    /// Something went wrong; sync will retry.
    Error {
        /// What, in words.
        reason: String,
    },
}

/// Exponential backoff with full jitter: the n-th wait is uniformly random in
/// `[0, min(max, base * 2^n)]`, so a practice's devices do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(60))
    }
}

impl Backoff {
    /// A backoff from `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            attempt: 0,
            base,
            max,
        }
    }

    /// The next wait, given a uniform random number in `[0, 1)`.
    pub fn next(&mut self, random: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(random.clamp(0.0, 1.0))
    }

    /// After a success, start again from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failed attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> SpaceView {
        SpaceView {
            kind: SpaceKind::Practice,
            has_key: true,
            heads: vec![1],
            acked: vec![1],
            cursor: 10,
            last_snapshot: 0,
            pending: false,
        }
    }

    #[test]
    fn a_round_pushes_only_what_is_unacknowledged() {
        assert_eq!(plan(&view()), vec![Step::FetchKeys, Step::Pull]);
        assert_eq!(
            plan(&SpaceView {
                heads: vec![2],
                ..view()
            }),
            vec![Step::FetchKeys, Step::Push, Step::Pull]
        );
        assert_eq!(
            plan_for(
                &SpaceView {
                    pending: true,
                    ..view()
                },
                Trigger::Local
            ),
            vec![Step::Push],
            "a pending join is pushed though the heads match"
        );
        assert!(
            plan(&SpaceView {
                has_key: false,
                ..view()
            })
            .is_empty(),
            "an unsynced space is left alone"
        );
    }

    #[test]
    fn lean_rounds_push_or_pull_only() {
        let unpushed = SpaceView {
            heads: vec![2],
            ..view()
        };
        assert_eq!(plan_for(&unpushed, Trigger::Local), vec![Step::Push]);
        assert!(
            plan_for(&view(), Trigger::Local).is_empty(),
            "nothing to push"
        );
        assert_eq!(plan_for(&unpushed, Trigger::Notice), vec![Step::Pull]);
        assert_eq!(plan_for(&unpushed, Trigger::Full), plan(&unpushed));
    }

    #[test]
    fn delivered_entries_merge_only_in_order() {
        assert_eq!(on_delivered(10, 9), Delivered::AlreadyHad);
        assert_eq!(on_delivered(10, 10), Delivered::AlreadyHad);
        assert_eq!(on_delivered(10, 11), Delivered::Merge);
        assert_eq!(on_delivered(10, 13), Delivered::Gap);
    }

    #[test]
    fn the_cursor_stays_before_an_incomplete_large_change() {
        assert_eq!(cursor_after(40, None), 40);
        assert_eq!(cursor_after(40, Some(31)), 30);
        assert_eq!(cursor_after(40, Some(0)), 0);
        assert_eq!(cursor_after(5, Some(31)), 5);
    }

    #[test]
    fn snapshots_come_every_so_many_entries() {
        assert!(!wants_snapshot(&view()));
        assert!(wants_snapshot(&SpaceView {
            cursor: SNAPSHOT_EVERY,
            ..view()
        }));
        assert!(!wants_snapshot(&SpaceView {
            cursor: SNAPSHOT_EVERY + 10,
            last_snapshot: 20,
            ..view()
        }));
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_a_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let full: Vec<Duration> = (0..8).map(|_| backoff.next(1.0)).collect();
        assert_eq!(full[0], Duration::from_millis(100));
        assert_eq!(full[1], Duration::from_millis(200));
        assert_eq!(full[3], Duration::from_millis(800));
        assert_eq!(full[7], Duration::from_secs(2), "capped");
        assert_eq!(
            backoff.next(0.5),
            Duration::from_secs(1),
            "jitter scales the wait"
        );
        assert_eq!(backoff.next(0.0), Duration::ZERO);
        backoff.reset();
        assert_eq!(backoff.next(1.0), Duration::from_millis(100));
    }
}
