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
    /// Whether this device syncs it (it holds its membership log, or keys from before
    /// logs that an adoption turns into one).
    pub has_key: bool,
    /// Whether the space has no membership log here yet but keys from protocol 1: the
    /// round first gives it one.
    pub needs_log: bool,
    /// Devices removed from the practice that this personal space still lists: the round
    /// removes them (and rotates its key) before it sends anything.
    pub owes_removals: bool,
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
    /// Give a space from protocol 1 its membership log.
    Adopt,
    /// Fetch and verify the membership log's new operations (and the keys they seal to
    /// this device).
    SyncLog,
    /// Remove from this personal space the devices removed from the practice.
    FinishRemovals,
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

/// The steps of a full round for one space, in order. The membership log comes first (a
/// removal or rotation may have happened; nothing is sealed before the device knows the
/// current key), then a personal space's removals still owed, then push (so that pulls
/// return our own entries too), then pull; the snapshot decision is taken again after the
/// pull, from the new cursor.
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
            let mut steps = Vec::new();
            if view.needs_log {
                steps.push(Step::Adopt);
            }
            steps.push(Step::SyncLog);
            if view.owes_removals {
                steps.push(Step::FinishRemovals);
            }
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

/// What to do with an entry pulled or delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryAction {
    /// This device's own: already merged.
    Ours,
    /// Open it with the key this device holds for its epoch.
    Open,
    /// Sealed under an epoch newer than the verified log knows: fetch the log first.
    FetchLog,
    /// Sealed under an epoch whose key has not reached this device yet: the cursor stays
    /// before it until the key arrives (it is never skipped).
    Hold,
    /// Sealed under an epoch whose key the log never gave this device: refused and
    /// reported.
    Refuse(String),
}

/// What [`on_entry`] knows of an entry and of this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFacts {
    /// This device.
    pub me: rapport_wire::DeviceId,
    /// Who sealed the entry.
    pub sender: rapport_wire::DeviceId,
    /// The epoch it is sealed under.
    pub epoch: u32,
    /// Whether this device holds that epoch's key.
    pub has_key: bool,
    /// The verified log's current epoch.
    pub log_epoch: u32,
    /// Whether the log was fetched for this entry already.
    pub fetched: bool,
    /// Whether the verified log lists the sender as removed.
    pub sender_removed: bool,
    /// The newest epoch of an entry this device merged in the space.
    pub newest_merged: u32,
}

/// Decides about an entry. An honest relay takes a push only under the log's current
/// epoch, so in its order epochs never go down: an entry of a removed device under an
/// epoch older than one already merged was written after its removal (with a key it
/// kept, through a relay that let it), and is refused.
pub fn on_entry(facts: EntryFacts) -> EntryAction {
    let EntryFacts {
        me,
        sender,
        epoch,
        has_key,
        log_epoch,
        fetched,
        sender_removed,
        newest_merged,
    } = facts;
    if sender == me {
        EntryAction::Ours
    } else if sender_removed && epoch < newest_merged {
        EntryAction::Refuse(format!(
            "from a device removed from the space, sealed under key epoch {epoch} after entries under epoch {newest_merged}: written after its removal, through a relay that let it"
        ))
    } else if has_key {
        EntryAction::Open
    } else if epoch > log_epoch && !fetched {
        EntryAction::FetchLog
    } else if epoch > log_epoch {
        EntryAction::Hold
    } else {
        EntryAction::Refuse(format!(
            "sealed under key epoch {epoch}, which the membership log never gave this device"
        ))
    }
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
        /// Colleagues' changes the relay has not delivered although their signed word
        /// that they exist arrived, in words (see [`super::witness`]).
        withheld: Vec<String>,
    },
    /// Something went wrong; sync will retry.
    Error {
        /// What, in words.
        reason: String,
    },
    /// Sync stopped for good: retrying cannot succeed (this device was removed, is not a
    /// member, or speaks no version the relay does). The user must act.
    Blocked {
        /// What kind of failure.
        failure: crate::error::SyncFailure,
        /// What happened and what to do, in words.
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

/// How often a connected device runs a full round even without notices.
pub const PERIOD: Duration = Duration::from_secs(30);

/// Something that happened to a running sync, as its driver saw it: the outcome of the
/// last blocking [`Action`], or the user stopping sync.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Sync was started.
    Started,
    /// [`Action::Connect`] succeeded; `subscribed` says whether the relay accepted the
    /// subscription to notices (without it, the device syncs on the period alone).
    Connected {
        /// Whether notices will arrive.
        subscribed: bool,
    },
    /// [`Action::Connect`] failed.
    ConnectFailed {
        /// Why, in words.
        reason: String,
    },
    /// [`Action::Round`] finished.
    RoundDone {
        /// When (milliseconds since the Unix epoch).
        at_ms: i64,
        /// Entries refused in it.
        refused: u32,
        /// What the relay withholds as last found ([`super::witness::last_found`]).
        withheld: Vec<String>,
    },
    /// [`Action::Round`] failed; the connection is no longer trusted.
    RoundFailed {
        /// Why, in words.
        reason: String,
    },
    /// While listening, an entry arrived inside a notice and was handled in place:
    /// `merged` is false when it could not be (a gap before it, part of a large change,
    /// an error), and a pull must fetch it.
    Delivered {
        /// Whether the entry is now in the document (or was already).
        merged: bool,
        /// When it was handled (milliseconds since the Unix epoch).
        at_ms: i64,
        /// Entries refused while handling it.
        refused: u32,
    },
    /// While listening, the relay announced new entries without carrying them.
    Announced,
    /// While listening, something changed on this device.
    LocalChange,
    /// While listening, [`PERIOD`] passed without anything else happening.
    PeriodElapsed,
    /// While listening, the relay connection dropped.
    ConnectionLost,
    /// [`Action::Sleep`] is over.
    WaitOver,
    /// The user stopped sync.
    StopRequested,
    /// Connecting or a round failed in a way retrying cannot fix
    /// ([`crate::error::SyncFailure::retries`] is false).
    Blocked {
        /// What kind of failure.
        failure: crate::error::SyncFailure,
        /// Why, in words.
        reason: String,
    },
}

/// What the driver does next, in order. Every list [`Machine::handle`] returns ends with
/// exactly one action the driver waits on ([`Action::is_blocking`]): its outcome is the
/// next [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Tell the user.
    Report(SyncStatus),
    /// Connect to the relay and subscribe to the synced spaces' notices.
    Connect,
    /// Run a round for a trigger (see [`plan_for`] for its steps per space).
    Round(Trigger),
    /// Wait for a notice, a local change or the period, whichever comes first.
    Listen {
        /// How long to wait before a full round anyway.
        period: Duration,
    },
    /// Close the connection, if any.
    Disconnect,
    /// Wait before reconnecting.
    Sleep(Duration),
    /// Stop: nothing more will happen.
    Finish,
}

impl Action {
    /// Whether the driver waits on this action for the next event.
    pub fn is_blocking(&self) -> bool {
        !matches!(self, Action::Report(_) | Action::Disconnect)
    }
}

/// Where a running sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Idle,
    /// Connecting to the relay.
    Connecting,
    /// Waiting before the next attempt.
    Waiting,
    /// A round is running.
    Syncing,
    /// Connected and up to date, waiting for something to do.
    Listening,
    /// Stopped for good.
    Stopped,
}

/// The sync engine's state machine: events in, actions out. It decides when to connect,
/// which round to run on what trigger, when to back off and for how long, and what status
/// the user sees; a driver (`sync::service` over QUIC) performs the actions and feeds
/// back their outcomes. No sockets, clocks or randomness inside: the jitter for the
/// backoff comes from the function it is built with.
pub struct Machine {
    phase: Phase,
    backoff: Backoff,
    jitter: Box<dyn FnMut() -> f64 + Send>,
    /// What the last round found withheld, repeated with every status until the next.
    withheld: Vec<String>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("phase", &self.phase)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Machine {
    /// A machine backing off with `backoff`, jittered by `jitter` (uniform in `[0, 1)`).
    pub fn new(backoff: Backoff, jitter: Box<dyn FnMut() -> f64 + Send>) -> Self {
        Machine {
            phase: Phase::Idle,
            backoff,
            jitter,
            withheld: Vec::new(),
        }
    }

    /// Where it stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Takes an event and returns what to do, ending with the action to wait on.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        use Event as E;
        match (self.phase, event) {
            (Phase::Stopped, _) => vec![Action::Finish],
            (_, E::StopRequested) => {
                self.phase = Phase::Stopped;
                vec![
                    Action::Disconnect,
                    Action::Report(SyncStatus::Offline { retry_in_ms: 0 }),
                    Action::Finish,
                ]
            }
            (_, E::Blocked { failure, reason }) => {
                self.phase = Phase::Stopped;
                vec![
                    Action::Disconnect,
                    Action::Report(SyncStatus::Blocked { failure, reason }),
                    Action::Finish,
                ]
            }
            (Phase::Idle, E::Started) | (Phase::Waiting, E::WaitOver) => self.connect(),
            (Phase::Connecting, E::Connected { .. }) => {
                self.backoff.reset();
                self.round(Trigger::Full)
            }
            (Phase::Connecting, E::ConnectFailed { .. }) => {
                let wait = self.backoff.next((self.jitter)());
                self.phase = Phase::Waiting;
                vec![
                    Action::Report(SyncStatus::Offline {
                        retry_in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    }),
                    Action::Sleep(wait),
                ]
            }
            (
                Phase::Syncing,
                E::RoundDone {
                    at_ms,
                    refused,
                    withheld,
                },
            ) => {
                self.withheld = withheld;
                self.up_to_date(at_ms, refused)
            }
            (Phase::Syncing, E::RoundFailed { reason }) => self.drop_connection(reason),
            (
                Phase::Listening,
                E::Delivered {
                    merged: true,
                    at_ms,
                    refused,
                },
            ) => self.up_to_date(at_ms, refused),
            (Phase::Listening, E::Delivered { merged: false, .. } | E::Announced) => {
                self.round(Trigger::Notice)
            }
            (Phase::Listening, E::LocalChange) => self.round(Trigger::Local),
            (Phase::Listening, E::PeriodElapsed) => self.round(Trigger::Full),
            (Phase::Listening, E::ConnectionLost) => {
                self.drop_connection("the relay connection dropped".into())
            }
            // An event the current phase does not expect (a driver out of step): carry on
            // with what this phase waits on.
            (_, _) => vec![self.resume()],
        }
    }

    fn connect(&mut self) -> Vec<Action> {
        self.phase = Phase::Connecting;
        vec![Action::Report(SyncStatus::Connecting), Action::Connect]
    }

    fn round(&mut self, trigger: Trigger) -> Vec<Action> {
        self.phase = Phase::Syncing;
        vec![Action::Round(trigger)]
    }

    fn up_to_date(&mut self, at_ms: i64, refused: u32) -> Vec<Action> {
        self.phase = Phase::Listening;
        vec![
            Action::Report(SyncStatus::UpToDate {
                at_ms,
                refused,
                withheld: self.withheld.clone(),
            }),
            Action::Listen { period: PERIOD },
        ]
    }

    /// After a failed round or a dropped connection: say why, close, and wait before
    /// connecting again (the status stays the error until then).
    fn drop_connection(&mut self, reason: String) -> Vec<Action> {
        let wait = self.backoff.next((self.jitter)());
        self.phase = Phase::Waiting;
        vec![
            Action::Report(SyncStatus::Error { reason }),
            Action::Disconnect,
            Action::Sleep(wait),
        ]
    }

    fn resume(&mut self) -> Action {
        match self.phase {
            Phase::Idle | Phase::Connecting => {
                self.phase = Phase::Connecting;
                Action::Connect
            }
            Phase::Waiting => Action::Sleep(Duration::ZERO),
            Phase::Syncing => Action::Round(Trigger::Full),
            Phase::Listening => Action::Listen { period: PERIOD },
            Phase::Stopped => Action::Finish,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> SpaceView {
        SpaceView {
            kind: SpaceKind::Practice,
            has_key: true,
            needs_log: false,
            owes_removals: false,
            heads: vec![1],
            acked: vec![1],
            cursor: 10,
            last_snapshot: 0,
            pending: false,
        }
    }

    #[test]
    fn a_round_pushes_only_what_is_unacknowledged() {
        assert_eq!(plan(&view()), vec![Step::SyncLog, Step::Pull]);
        assert_eq!(
            plan(&SpaceView {
                heads: vec![2],
                ..view()
            }),
            vec![Step::SyncLog, Step::Push, Step::Pull]
        );
        assert_eq!(
            plan(&SpaceView {
                heads: vec![2],
                needs_log: true,
                owes_removals: true,
                ..view()
            }),
            vec![
                Step::Adopt,
                Step::SyncLog,
                Step::FinishRemovals,
                Step::Push,
                Step::Pull
            ],
            "the log and the removals it owes come before anything is sealed"
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
    fn an_entry_without_its_key_is_held_until_the_log_brings_it_never_skipped() {
        let (me, ana) = (
            rapport_wire::DeviceId([1; 16]),
            rapport_wire::DeviceId([2; 16]),
        );
        let facts = |sender, epoch, has_key, log_epoch, fetched| EntryFacts {
            me,
            sender,
            epoch,
            has_key,
            log_epoch,
            fetched,
            sender_removed: false,
            newest_merged: 0,
        };
        assert_eq!(on_entry(facts(me, 9, false, 1, false)), EntryAction::Ours);
        assert_eq!(on_entry(facts(ana, 2, true, 2, false)), EntryAction::Open);
        assert_eq!(
            on_entry(facts(ana, 3, false, 2, false)),
            EntryAction::FetchLog
        );
        assert_eq!(on_entry(facts(ana, 3, false, 2, true)), EntryAction::Hold);
        assert!(matches!(
            on_entry(facts(ana, 1, false, 2, true)),
            EntryAction::Refuse(_)
        ));
        // A removed device: what it wrote before its removal still opens; under an
        // epoch older than entries already merged, it was written after, and is refused.
        let removed = |epoch, newest_merged| EntryFacts {
            sender_removed: true,
            newest_merged,
            ..facts(ana, epoch, true, 3, false)
        };
        assert_eq!(on_entry(removed(2, 2)), EntryAction::Open);
        assert!(matches!(on_entry(removed(2, 3)), EntryAction::Refuse(_)));
        assert_eq!(
            on_entry(EntryFacts {
                newest_merged: 3,
                ..facts(ana, 2, true, 3, false)
            }),
            EntryAction::Open,
            "a current member's entry is never refused for its epoch alone"
        );
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

    fn machine() -> Machine {
        Machine::new(
            Backoff::new(Duration::from_millis(100), Duration::from_secs(2)),
            Box::new(|| 1.0),
        )
    }

    fn listen() -> Action {
        Action::Listen { period: PERIOD }
    }

    #[test]
    fn the_machine_connects_then_runs_a_full_round_then_listens() {
        let mut m = machine();
        assert_eq!(
            m.handle(Event::Started),
            vec![Action::Report(SyncStatus::Connecting), Action::Connect]
        );
        assert_eq!(
            m.handle(Event::Connected { subscribed: true }),
            vec![Action::Round(Trigger::Full)]
        );
        assert_eq!(m.phase(), Phase::Syncing);
        assert_eq!(
            m.handle(Event::RoundDone {
                at_ms: 7,
                refused: 1,
                withheld: vec![],
            }),
            vec![
                Action::Report(SyncStatus::UpToDate {
                    at_ms: 7,
                    refused: 1,
                    withheld: vec![],
                }),
                listen()
            ]
        );
        assert_eq!(m.phase(), Phase::Listening);
    }

    #[test]
    fn each_trigger_runs_its_own_round() {
        let mut m = machine();
        m.handle(Event::Started);
        m.handle(Event::Connected { subscribed: true });
        let done = Event::RoundDone {
            at_ms: 1,
            refused: 0,
            withheld: vec![],
        };
        for (event, trigger) in [
            (Event::LocalChange, Trigger::Local),
            (Event::Announced, Trigger::Notice),
            (Event::PeriodElapsed, Trigger::Full),
            (
                Event::Delivered {
                    merged: false,
                    at_ms: 1,
                    refused: 0,
                },
                Trigger::Notice,
            ),
        ] {
            m.handle(done.clone());
            assert_eq!(m.handle(event), vec![Action::Round(trigger)]);
        }
        m.handle(Event::RoundDone {
            at_ms: 1,
            refused: 0,
            withheld: vec!["Ana's laptop".into()],
        });
        assert_eq!(
            m.handle(Event::Delivered {
                merged: true,
                at_ms: 9,
                refused: 0
            }),
            vec![
                Action::Report(SyncStatus::UpToDate {
                    at_ms: 9,
                    refused: 0,
                    withheld: vec!["Ana's laptop".into()],
                }),
                listen()
            ],
            "an entry merged from its notice needs no round, and what the last round found withheld is still said"
        );
    }

    #[test]
    fn failures_back_off_longer_each_time_and_a_connection_resets_it() {
        let mut m = machine();
        m.handle(Event::Started);
        let failed = || Event::ConnectFailed {
            reason: "unreachable".into(),
        };
        let offline = |ms: u64| {
            vec![
                Action::Report(SyncStatus::Offline { retry_in_ms: ms }),
                Action::Sleep(Duration::from_millis(ms)),
            ]
        };
        assert_eq!(m.handle(failed()), offline(100));
        assert_eq!(
            m.handle(Event::WaitOver),
            vec![Action::Report(SyncStatus::Connecting), Action::Connect]
        );
        assert_eq!(m.handle(failed()), offline(200));
        m.handle(Event::WaitOver);
        m.handle(Event::Connected { subscribed: false });
        assert_eq!(
            m.handle(Event::RoundFailed {
                reason: "refused".into()
            }),
            vec![
                Action::Report(SyncStatus::Error {
                    reason: "refused".into()
                }),
                Action::Disconnect,
                Action::Sleep(Duration::from_millis(100)),
            ],
            "the successful connection reset the backoff"
        );
        m.handle(Event::WaitOver);
        m.handle(Event::Connected { subscribed: true });
        m.handle(Event::RoundDone {
            at_ms: 1,
            refused: 0,
            withheld: vec![],
        });
        let lost = m.handle(Event::ConnectionLost);
        assert_eq!(
            lost[0],
            Action::Report(SyncStatus::Error {
                reason: "the relay connection dropped".into()
            })
        );
        assert_eq!(
            lost[1..],
            [
                Action::Disconnect,
                Action::Sleep(Duration::from_millis(100))
            ]
        );
        assert_eq!(m.phase(), Phase::Waiting);
    }

    #[test]
    fn stopping_closes_and_reports_offline_from_any_phase_and_then_only_finishes() {
        let stops = vec![
            Action::Disconnect,
            Action::Report(SyncStatus::Offline { retry_in_ms: 0 }),
            Action::Finish,
        ];
        let setups: Vec<Vec<Event>> = vec![
            vec![],
            vec![Event::Started],
            vec![Event::Started, Event::Connected { subscribed: true }],
            vec![Event::Started, Event::ConnectFailed { reason: "x".into() }],
        ];
        for setup in setups {
            let mut m = machine();
            for event in setup {
                m.handle(event);
            }
            assert_eq!(m.handle(Event::StopRequested), stops);
            assert_eq!(m.handle(Event::Started), vec![Action::Finish]);
            assert_eq!(m.phase(), Phase::Stopped);
        }
    }

    #[test]
    fn a_failure_retrying_cannot_fix_stops_sync_and_says_why() {
        use crate::error::SyncFailure;
        for failure in [
            SyncFailure::Removed,
            SyncFailure::NotMember,
            SyncFailure::VersionMismatch,
        ] {
            assert!(!failure.retries());
            let mut m = machine();
            m.handle(Event::Started);
            m.handle(Event::Connected { subscribed: true });
            let blocked = Event::Blocked {
                failure,
                reason: "why".into(),
            };
            assert_eq!(
                m.handle(blocked),
                vec![
                    Action::Disconnect,
                    Action::Report(SyncStatus::Blocked {
                        failure,
                        reason: "why".into()
                    }),
                    Action::Finish,
                ]
            );
            assert_eq!(m.phase(), Phase::Stopped);
            // No reconnecting afterwards, whatever the driver reports.
            for event in [Event::WaitOver, Event::Started, Event::ConnectionLost] {
                assert_eq!(m.handle(event), vec![Action::Finish]);
            }
        }
        assert!(SyncFailure::Network.retries() && SyncFailure::Refused.retries());
    }

    #[test]
    fn every_answer_ends_with_exactly_one_action_to_wait_on() {
        let events = [
            Event::Started,
            Event::Connected { subscribed: true },
            Event::ConnectFailed { reason: "x".into() },
            Event::RoundDone {
                at_ms: 1,
                refused: 0,
                withheld: vec![],
            },
            Event::RoundFailed { reason: "x".into() },
            Event::Delivered {
                merged: true,
                at_ms: 1,
                refused: 0,
            },
            Event::Announced,
            Event::LocalChange,
            Event::PeriodElapsed,
            Event::ConnectionLost,
            Event::WaitOver,
        ];
        // Every event in every phase reachable by two events before it, expected or not.
        for first in &events {
            for second in &events {
                for third in &events {
                    let mut m = machine();
                    for event in [first, second, third] {
                        let actions = m.handle(event.clone());
                        let blocking: Vec<&Action> =
                            actions.iter().filter(|a| a.is_blocking()).collect();
                        assert_eq!(blocking.len(), 1, "{event:?} gave {actions:?}");
                        assert!(actions.last().is_some_and(Action::is_blocking));
                    }
                }
            }
        }
    }
}
