//! Noticing a relay that withholds: heads statements in a round (see
//! [`crate::sealed::entry`] for what a statement is).
//!
//! A push carries, on its last entry, this device's signed heads and the statements of
//! other devices it holds and has not passed on yet, whose changes it has (so a statement
//! it passes on never names changes the relay could not have delivered before it). A
//! merged entry's statements are kept when they verify against a key the membership log
//! binds to a current member and are newer than the one kept of that device. After a pull
//! that caught up, a kept statement whose changes are still not in the document means the
//! relay delivered the statement (through a colleague) but not the changes it names: the
//! device says so, naming whose changes and since when.
//!
//! The choices are pure functions of what is kept and the verified log ([`accept`],
//! [`to_forward`], [`withheld_message`]); the rest reads and writes the home.

use automerge::ChangeHash;
use rapport_wire::membership::LogState;
use rapport_wire::{DeviceId, SpaceId};

use crate::doc::SpaceKind;
use crate::error::Result;
use crate::home::{Home, KeptStatement, StatementMark};
use crate::sealed::entry::{HeadsStatement, MAX_STATEMENTS, fitting};

/// Whether a statement that arrived in an entry is worth keeping: it is not this
/// device's own, and it is signed by a current member with the key the log binds.
pub fn accept(statement: &HeadsStatement, space: SpaceId, state: &LogState, me: DeviceId) -> bool {
    statement.device != me
        && state
            .members
            .get(&statement.device)
            .is_some_and(|member| statement.verify(space, &member.keys.signing))
}

/// The kept statements a push passes on: reached (this device has their changes), not
/// passed on before, of current members other than this device; newest first.
pub fn to_forward<'a>(
    kept: &'a [KeptStatement],
    state: &LogState,
    me: DeviceId,
) -> Vec<&'a HeadsStatement> {
    kept.iter()
        .filter(|k| k.reached && !k.forwarded)
        .map(|k| &k.statement)
        .filter(|s| s.device != me && state.is_member(s.device))
        .take(MAX_STATEMENTS - 1)
        .collect()
}

/// What a user reads about a statement whose changes never arrived; `name` gives a
/// member's display name from their id.
pub fn withheld_message(
    statement: &HeadsStatement,
    state: &LogState,
    name: &dyn Fn(&str) -> Option<String>,
) -> String {
    let whose = state.members.get(&statement.device).map_or_else(
        || "a removed device".to_string(),
        |m| {
            let who = name(&m.member).unwrap_or_else(|| "a member".into());
            format!("{who}'s device {}", short(statement.device))
        },
    );
    let since = jiff::Timestamp::from_millisecond(statement.at_ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| format!("{} ms", statement.at_ms));
    format!(
        "the relay has not delivered all the changes {whose} had by {since}: its signed word that it had them arrived, some of them did not (the relay may be withholding them)"
    )
}

/// Member display names by id, from the practice's read model.
fn names(home: &Home) -> Result<impl Fn(&str) -> Option<String>> {
    let names = home.member_names()?;
    Ok(move |id: &str| names.get(id).cloned())
}

fn short(device: DeviceId) -> String {
    device.to_string().chars().take(8).collect()
}

/// A kept statement, by its device and time.
pub type StatementId = (DeviceId, i64);

/// The statements the last entry of a push carries: this device's own, signed over
/// `heads` now, then those [`to_forward`] picks; and which of those to mark forwarded
/// once the push is acknowledged.
pub fn outgoing(
    home: &Home,
    kind: SpaceKind,
    space: SpaceId,
    state: &LogState,
    heads: &[ChangeHash],
) -> Result<(Vec<HeadsStatement>, Vec<StatementId>)> {
    let identity = home.device_identity()?;
    let me = identity.device_id();
    let raw: Vec<[u8; 32]> = heads.iter().map(|h| h.0).collect();
    let mut statements: Vec<HeadsStatement> =
        HeadsStatement::sign(space, me, identity.key_pkcs8(), &raw, home.clock().now_ms())
            .into_iter()
            .collect();
    let kept = home.heads_statements(kind)?;
    statements.extend(to_forward(&kept, state, me).into_iter().cloned());
    statements.truncate(fitting(&statements));
    let marks = statements
        .iter()
        .filter(|s| s.device != me)
        .map(|s| (s.device, s.at_ms))
        .collect();
    Ok((statements, marks))
}

/// Keeps the statements of a merged entry that [`accept`] takes, each marked reached
/// when the document already has what it names.
pub fn absorb(
    home: &Home,
    kind: SpaceKind,
    space: SpaceId,
    state: &LogState,
    me: DeviceId,
    statements: &[HeadsStatement],
) -> Result<()> {
    for statement in statements {
        if accept(statement, space, state, me) {
            let reached = home.has_changes(kind, &statement.heads)?;
            home.keep_heads_statement(kind, statement, reached)?;
        }
    }
    Ok(())
}

/// A statement whose changes have not arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// Whose.
    pub device: DeviceId,
    /// Its time.
    pub at_ms: i64,
    /// What a user reads ([`withheld_message`]).
    pub message: String,
}

/// After a pull that caught up: what the relay has not delivered. Statements whose
/// changes arrived since are marked reached; only unreached ones load the document.
pub fn withheld(home: &Home, kind: SpaceKind, state: &LogState) -> Result<Vec<Withheld>> {
    let name = names(home)?;
    let mut reached = Vec::new();
    let mut missing = Vec::new();
    for kept in home.heads_statements(kind)? {
        if kept.reached || !state.is_member(kept.statement.device) {
            continue;
        }
        if home.has_changes(kind, &kept.statement.heads)? {
            reached.push((kept.statement.device, kept.statement.at_ms));
        } else {
            missing.push(Withheld {
                device: kept.statement.device,
                at_ms: kept.statement.at_ms,
                message: withheld_message(&kept.statement, state, &name),
            });
        }
    }
    home.mark_statements(kind, &reached, StatementMark::Reached)?;
    Ok(missing)
}

/// What a caught-up pull does about what it found withheld (`missing`, as [`withheld`]
/// returned it) given the space's rescan mark: re-read the relay's log from its start
/// once per new finding (a relay that dropped entries by mistake, or stopped, then gets
/// the device whole), never twice for the same finding (one that keeps withholding costs
/// one re-read, not one per round). Returns the mark to store, if it changes.
pub fn rescan_decision(missing: &[Withheld], mark: Option<&str>) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let finding = hex_digest(missing);
    let seen = mark.is_some_and(|m| m.ends_with(&finding));
    (!seen).then(|| format!("due:{finding}"))
}

/// Whether the next pull re-reads from the start, and the mark to store once it has.
pub fn rescan_due(mark: Option<&str>) -> Option<String> {
    mark.and_then(|m| m.strip_prefix("due:"))
        .map(|finding| format!("done:{finding}"))
}

fn hex_digest(missing: &[Withheld]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<(DeviceId, i64)> = missing.iter().map(|w| (w.device, w.at_ms)).collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (device, at_ms) in sorted {
        hasher.update(device.0);
        hasher.update(at_ms.to_be_bytes());
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the relay withholds as last found, for every space, without loading a document
/// (the statements a caught-up pull could not reach; see [`withheld`]).
pub fn last_found(home: &Home) -> Result<Vec<String>> {
    let name = names(home)?;
    let mut out = Vec::new();
    for kind in [SpaceKind::Practice, SpaceKind::Personal] {
        let Some(state) = home.membership(kind)? else {
            continue;
        };
        for kept in home.heads_statements(kind)? {
            if !kept.reached && state.is_member(kept.statement.device) {
                out.push(withheld_message(&kept.statement, &state, &name));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed::keyring::first_key;
    use rapport_wire::identity::Identity;
    use rapport_wire::membership::{DeviceKeys, Member, Role, SpaceKind, genesis_op};

    /// A log whose genesis `devices[0]` signed, with the others added as members (the
    /// fields are the state's; how they got there does not matter here).
    fn state_with(space: SpaceId, devices: &[&Identity]) -> LogState {
        let keys = |d: &Identity| DeviceKeys {
            signing: d.public_key().try_into().unwrap(),
            x25519: [0; 32],
        };
        let owner = devices[0];
        let (_, first) = first_key(space, owner.device_id(), [9; 32], 1);
        let genesis = genesis_op(
            space,
            SpaceKind::Practice,
            keys(owner),
            "M0".into(),
            first,
            0,
            owner.key_pkcs8(),
        )
        .unwrap();
        let mut state = LogState::genesis(&genesis, None).unwrap();
        for (i, d) in devices.iter().enumerate().skip(1) {
            state.members.insert(
                d.device_id(),
                Member {
                    keys: keys(d),
                    role: Role::Member,
                    member: format!("M{i}"),
                    joined_at: 0,
                    invited_by: None,
                },
            );
        }
        state
    }

    #[test]
    fn statements_are_kept_only_from_current_members_with_their_own_key() {
        let space = SpaceId::random();
        let (me, ana, mallory) = (
            Identity::generate("me").unwrap(),
            Identity::generate("ana").unwrap(),
            Identity::generate("mallory").unwrap(),
        );
        let state = state_with(space, &[&me, &ana]);
        let sign = |who: &Identity| {
            HeadsStatement::sign(space, who.device_id(), who.key_pkcs8(), &[[7; 32]], 5).unwrap()
        };
        assert!(accept(&sign(&ana), space, &state, me.device_id()));
        assert!(
            !accept(&sign(&me), space, &state, me.device_id()),
            "our own"
        );
        assert!(
            !accept(&sign(&mallory), space, &state, me.device_id()),
            "not a member"
        );
        let mut forged = sign(&mallory);
        forged.device = ana.device_id();
        assert!(
            !accept(&forged, space, &state, me.device_id()),
            "another's key"
        );
        assert!(!accept(
            &sign(&ana),
            SpaceId::random(),
            &state,
            me.device_id()
        ));
    }

    #[test]
    fn only_reached_statements_not_passed_on_yet_are_forwarded() {
        let space = SpaceId::random();
        let (me, ana, bo) = (
            Identity::generate("me").unwrap(),
            Identity::generate("ana").unwrap(),
            Identity::generate("bo").unwrap(),
        );
        let state = state_with(space, &[&me, &ana]);
        let kept = |who: &Identity, reached, forwarded| KeptStatement {
            statement: HeadsStatement::sign(space, who.device_id(), who.key_pkcs8(), &[], 1)
                .unwrap(),
            reached,
            forwarded,
        };
        let all = [
            kept(&ana, true, false),
            kept(&ana, false, false),
            kept(&ana, true, true),
            kept(&bo, true, false),
        ];
        let picked = to_forward(&all, &state, me.device_id());
        assert_eq!(picked, vec![&all[0].statement]);
        let message = withheld_message(&all[0].statement, &state, &|id| {
            (id == "M1").then(|| "Ana".to_string())
        });
        // A finding is re-read for once: due, then done, and the same finding not again.
        let found = vec![Withheld {
            device: ana.device_id(),
            at_ms: 1,
            message: message.clone(),
        }];
        let later = vec![Withheld {
            at_ms: 2,
            ..found[0].clone()
        }];
        let due = rescan_decision(&found, None).unwrap();
        let done = rescan_due(Some(&due)).unwrap();
        assert!(due.starts_with("due:") && done.starts_with("done:"));
        assert_eq!(rescan_decision(&found, Some(&done)), None);
        assert_eq!(rescan_decision(&found, Some(&due)), None);
        assert_eq!(rescan_due(Some(&done)), None);
        assert!(
            rescan_decision(&later, Some(&done)).is_some(),
            "a newer statement is a new finding, whatever its words"
        );
        assert_eq!(rescan_decision(&[], None), None);
        assert!(message.contains("Ana's device"), "{message}");
        assert!(message.contains("1970-01-01 00:00 UTC"), "{message}");
    }
}
