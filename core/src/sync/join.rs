//! Joining a practice with an invite code: read the practice's membership log with the
//! invite's proof and verify it from the anchor the code carries, take the keys sealed to
//! the invite, admit this device (its own signature and the invite's), then bootstrap from
//! the newest snapshot and the log, install, and create (or, for a clinician's further
//! device, join) the personal space. No other device needs to be online.

use rapport_wire::SpaceId;
use rapport_wire::codes::InviteCode;
use rapport_wire::frames::{ErrorCode, InviteRead, Request, Response};
use rapport_wire::membership::{DeviceKeys, Op, OpHash, Recipient, Spent, next_op};

use super::connect::{connect, ensure_personal_space};
use super::engine::{self, Trigger};
use super::link::{Link, odd, sync_error};
use super::log::{fetch, now_secs, verify_from_anchor};
use super::membership::{Standing, Verified, standing};
use super::round::{open_snapshot, round_spaces};
use crate::doc::{self, SpaceKind};
use crate::error::{Error, Result, SyncFailure};
use crate::home::{Home, JoinedVia, RelayInfo, SpaceJoin, VerifiedLog};
use crate::model::Identity;
use crate::sealed::crypto::{self, SpaceKey};
use crate::sealed::entry;
use crate::sealed::fragment::{self, Reassembly};
use crate::sealed::keyring::InviteSecret;
use crate::sealed::snapshot::SpaceSnapshot;

/// Entries pulled per request.
const PAGE: u32 = 500;
/// The most times an admission is tried again after others' operations came first.
const RETRIES: usize = 16;

/// Joins a practice with an invite code: bootstraps from the relay's newest snapshot plus
/// the log, adds this clinician, creates their personal space and pushes.
pub async fn join(home: &Home, invite_code: &str, member_name: &str) -> Result<Identity> {
    join_with_progress(home, invite_code, member_name, &|_, _| {}).await
}

/// [`join`], reporting `(entries fetched, entries in the log)` while bootstrapping.
///
/// A join cut off after this device was admitted (the connection lost, the app killed)
/// is finished by joining again with the same invite: the log already lists the device,
/// the practice is not fetched a second time if it was installed, and the steps left over
/// run.
pub async fn join_with_progress(
    home: &Home,
    invite_code: &str,
    member_name: &str,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Identity> {
    let invite = InviteCode::decode(invite_code)
        .map_err(|e| Error::invalid("invite code", e.to_string()))?;
    let client = connect(home, &invite.addr, invite.fingerprint).await?;
    let joined = join_via(home, &client, &invite, member_name, progress).await;
    client.close().await;
    joined
}

/// This device's keys as a log binds them.
fn my_keys(home: &Home) -> Result<DeviceKeys> {
    let identity = home.device_identity()?;
    Ok(DeviceKeys {
        signing: identity
            .public_key()
            .try_into()
            .map_err(|_| Error::Internal("the device key is not an Ed25519 key".into()))?,
        x25519: home.box_key()?.public(),
    })
}

/// Why an invite the log does not list as pending cannot be used.
fn not_pending(spent: Option<&Spent>) -> Error {
    Error::Sync(
        match spent {
            Some(Spent::Used(_)) => "this invite was already used by another device; ask for a new one",
            Some(Spent::Revoked) => "this invite was revoked; ask for a new one",
            Some(Spent::CreatorRemoved) => {
                "this invite ended when the device that created it was removed from the practice; ask for a new one"
            }
            Some(Spent::Expired) => "this invite has expired; ask for a new one",
            None => "this invite is not part of this practice's log (was it copied whole?)",
        }
        .into(),
    )
}

/// A space joined: its verified log and the keys this device got.
struct Admitted {
    verified: Verified,
    member: String,
}

/// Reads a space's log with the invite's proof, verifies it from `anchor`, and admits
/// this device as `member` (or finds it admitted already, a join being finished).
async fn admit<L: Link>(
    home: &Home,
    link: &L,
    space: SpaceId,
    anchor: OpHash,
    secret: &InviteSecret,
    member: &str,
) -> Result<Admitted> {
    let identity = home.device_identity()?;
    let me = identity.device_id();
    let mine = home.box_key()?;
    let keys = my_keys(home)?;
    let read = InviteRead {
        invite: secret.id(),
        signature: secret.read_proof(space, me),
    };
    for _ in 0..RETRIES {
        let (ops, len) = match fetch(link, space, 0, Some(read.clone())).await {
            Err(e) if e.sync_failure() == Some(SyncFailure::NotMember) => {
                return Err(Error::sync_failed(
                    SyncFailure::Refused,
                    "the relay does not let this invite read the practice: it was used, revoked, has expired, or its creator was removed; ask for a new one",
                ));
            }
            other => other?,
        };
        let verified = verify_from_anchor(
            ops,
            len,
            anchor,
            &[
                (Recipient::Invite(secret.id()), secret.box_key()),
                (Recipient::Device(me), &mine),
            ],
        )?;
        match standing(&verified.state, me) {
            Standing::Member(_) => {
                let member = verified
                    .state
                    .members
                    .get(&me)
                    .map(|m| m.member.clone())
                    .unwrap_or_default();
                return Ok(Admitted { verified, member });
            }
            Standing::Removed { .. } => {
                return Err(Error::Sync(
                    "this device was removed from this practice and cannot join it again".into(),
                ));
            }
            Standing::Stranger => {}
        }
        if !verified.state.invites.contains_key(&secret.id()) {
            return Err(not_pending(verified.state.spent.get(&secret.id())));
        }
        let op = Op::Admit {
            invite: secret.id(),
            device: keys,
            member: member.to_string(),
            proof: secret.admit_proof(space, &keys, member),
        };
        let signed = next_op(&verified.state, op, now_secs(home), identity.key_pkcs8())
            .map_err(|e| Error::Internal(e.to_string()))?;
        match link.request(&Request::AppendOp { space, op: signed }).await {
            // Admitted: the next pass reads the log as a member, this operation included.
            Ok(Response::Appended { .. }) => {}
            Ok(_) => return Err(odd("an admission")),
            Err(e) if e.code() == Some(ErrorCode::Stale) => {}
            Err(e) => return Err(sync_error(e)),
        }
    }
    Err(Error::Sync(
        "the practice's membership log kept moving while this device joined; try again".into(),
    ))
}

/// [`join`] over a link already open.
pub async fn join_via<L: Link>(
    home: &Home,
    link: &L,
    invite: &InviteCode,
    member_name: &str,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Identity> {
    let practice_id = invite.space.to_string();
    let resuming = home.space_id(SpaceKind::Practice).ok().as_deref() == Some(&practice_id);
    if !resuming {
        home.ensure_empty()?;
        if invite.member.is_none() {
            crate::validate::name("member name", member_name)?;
        }
    }
    let secret = InviteSecret::from_bytes(invite.secret);
    // A colleague joins as a new member; a clinician's further device as themselves.
    let proposed = match (&invite.member, home.identity()?) {
        (Some(member), _) => member.clone(),
        (None, Some(identity)) if resuming => identity.member_id,
        (None, _) => doc::new_id(),
    };
    let practice = admit(
        home,
        link,
        invite.space,
        OpHash(invite.anchor),
        &secret,
        &proposed,
    )
    .await?;
    let relay = RelayInfo {
        addr: invite.addr.clone(),
        fingerprint: invite.fingerprint,
    };
    let practice_log = VerifiedLog {
        ops: &practice.verified.ops,
        state: &practice.verified.state,
    };
    let mut from_snapshot = false;
    if !resuming {
        // With the read model in the snapshot, the practice is installed as it is and its
        // document stays unloaded: the first sync round loads it, writes this device's
        // entry and brings anything newer than the snapshot.
        let fetched =
            bootstrap(link, invite.space, &practice.verified.keys, true, progress).await?;
        if !fetched.rejected.is_empty() {
            tracing::warn!(
                count = fetched.rejected.len(),
                "entries refused while joining"
            );
        }
        from_snapshot = fetched.snapshot_suffices();
        let practice_join = SpaceJoin {
            keys: &practice.verified.keys,
            log: Some(practice_log),
            cursor: Some(fetched.cursor),
        };
        if let (Some(member), Some(personal)) = (&invite.member, &invite.personal) {
            // Another device of an existing clinician: same member, their personal space.
            let personal_secret = InviteSecret::from_bytes(personal.secret);
            let admitted = admit(
                home,
                link,
                personal.space,
                OpHash(personal.anchor),
                &personal_secret,
                member,
            )
            .await?;
            let personal_fetched = bootstrap(
                link,
                personal.space,
                &admitted.verified.keys,
                false,
                &|_, _| {},
            )
            .await?;
            let personal_id = personal.space.to_string();
            let via = JoinedVia {
                relay: &relay,
                practice: practice_join,
                personal: Some(SpaceJoin {
                    keys: &admitted.verified.keys,
                    log: Some(VerifiedLog {
                        ops: &admitted.verified.ops,
                        state: &admitted.verified.state,
                    }),
                    cursor: Some(personal_fetched.cursor),
                }),
            };
            match &fetched.snapshot {
                Some(snapshot) if from_snapshot => home.add_device_from_snapshot(
                    &practice_id,
                    snapshot,
                    member,
                    (&personal_id, &personal_fetched.document_bytes()),
                    &via,
                )?,
                _ => {
                    let identity = home.add_device(
                        &practice_id,
                        &fetched.document_bytes(),
                        member,
                        &personal_id,
                        &personal_fetched.document_bytes(),
                    )?;
                    home.record_join(&via)?;
                    identity
                }
            };
        } else {
            let via = JoinedVia {
                relay: &relay,
                practice: practice_join,
                personal: None,
            };
            match &fetched.snapshot {
                Some(snapshot) if from_snapshot => home.join_practice_from_snapshot_as(
                    &practice_id,
                    snapshot,
                    &practice.member,
                    member_name,
                    &via,
                )?,
                _ => {
                    let identity = home.join_practice_as(
                        &practice_id,
                        &fetched.document_bytes(),
                        &practice.member,
                        member_name,
                    )?;
                    home.record_join(&via)?;
                    identity
                }
            };
        }
    } else {
        // Finishing a join cut off after the install, or a device of a practice that
        // synced before membership logs joining its log: its data stays as it is.
        let personal = match &invite.personal {
            Some(personal) => {
                let personal_secret = InviteSecret::from_bytes(personal.secret);
                let member = home.identity()?.ok_or(Error::NoPractice)?.member_id;
                Some(
                    admit(
                        home,
                        link,
                        personal.space,
                        OpHash(personal.anchor),
                        &personal_secret,
                        &member,
                    )
                    .await?,
                )
            }
            None => None,
        };
        home.record_join(&JoinedVia {
            relay: &relay,
            practice: SpaceJoin {
                keys: &practice.verified.keys,
                log: Some(practice_log),
                cursor: None,
            },
            personal: personal.as_ref().map(|p| SpaceJoin {
                keys: &p.verified.keys,
                log: Some(VerifiedLog {
                    ops: &p.verified.ops,
                    state: &p.verified.state,
                }),
                cursor: None,
            }),
        })?;
    }
    fail::fail_point!("join-after-install", |_| Err(Error::Sync(
        "failpoint: the join was cut off after the install".into()
    )));
    ensure_personal_space(home, link).await?;
    // A device that joined from a snapshot leaves the practice to its first round (which
    // loads the document and announces the device).
    let spaces: &[SpaceKind] = if from_snapshot {
        &[SpaceKind::Personal]
    } else {
        &[SpaceKind::Practice, SpaceKind::Personal]
    };
    round_spaces(home, link, spaces, Trigger::Full, &|_, _| {}).await?;
    home.identity()?
        .ok_or_else(|| Error::Internal("the join left this home without an identity".into()))
}

/// What a joining device fetched of a space.
struct Fetched {
    /// The newest snapshot, if the relay has one.
    snapshot: Option<SpaceSnapshot>,
    /// Every entry after it, opened (empty when the log was not fetched).
    tail: Vec<u8>,
    /// The seq the device has everything up to.
    cursor: u64,
    /// Entries refused on the way.
    rejected: Vec<String>,
}

impl Fetched {
    /// Whether the snapshot alone can start the device (it carries the read model).
    fn snapshot_suffices(&self) -> bool {
        self.snapshot.as_ref().is_some_and(|s| s.records.is_some())
    }

    /// The whole space as plaintext Automerge bytes: snapshot document, then the tail.
    fn document_bytes(self) -> Vec<u8> {
        let mut bytes = self.snapshot.map(|s| s.document).unwrap_or_default();
        bytes.extend_from_slice(&self.tail);
        bytes
    }
}

fn key_for(keys: &[SpaceKey], epoch: u32) -> Option<&SpaceKey> {
    keys.iter().find(|k| k.epoch == epoch)
}

/// Fetches a space from the relay: its newest snapshot, then, unless `snapshot_will_do`
/// and the snapshot carries the read model, every entry after it. `keys` are the space's
/// keys the log gave this device, by epoch.
async fn bootstrap<L: Link>(
    link: &L,
    space: SpaceId,
    keys: &[SpaceKey],
    snapshot_will_do: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Fetched> {
    let newest = keys.iter().map(|k| k.epoch).max().unwrap_or(0);
    let mut parts = Reassembly::default();
    let mut fetched = Fetched {
        snapshot: None,
        tail: Vec::new(),
        cursor: 0,
        rejected: Vec::new(),
    };
    let Response::Snapshot(stored) = link
        .request(&Request::GetSnapshot { space })
        .await
        .map_err(sync_error)?
    else {
        return Err(odd("a snapshot request"));
    };
    if let Some(stored) = stored {
        let key = key_for(keys, stored.epoch).ok_or_else(|| {
            Error::Sync(format!(
                "the practice's snapshot is sealed under key epoch {}, which the invite did not carry",
                stored.epoch
            ))
        })?;
        fetched.snapshot = Some(open_snapshot(key, space, &stored)?);
        fetched.cursor = stored.covers;
        if snapshot_will_do && fetched.snapshot_suffices() {
            progress(fetched.cursor, fetched.cursor);
            return Ok(fetched);
        }
    }
    loop {
        let Response::Entries {
            entries,
            more,
            head,
        } = link
            .request(&Request::Pull {
                space,
                after: fetched.cursor,
                limit: PAGE,
            })
            .await
            .map_err(sync_error)?
        else {
            return Err(odd("a pull"));
        };
        for entry in entries {
            let Some(key) = key_for(keys, entry.epoch) else {
                if entry.epoch > newest {
                    // Its key is still to come (a rotation after the log was read): the
                    // cursor stays before it, and the first round fetches both.
                    fetched.cursor = engine::cursor_after(fetched.cursor, parts.first_waiting());
                    progress(fetched.cursor, head);
                    return Ok(fetched);
                }
                fetched.rejected.push(format!(
                    "entry {} from {}: sealed under key epoch {}, which the invite did not carry",
                    entry.seq, entry.sender, entry.epoch
                ));
                fetched.cursor = entry.seq;
                continue;
            };
            let change = crypto::open(key, space, entry.sender, &entry.blob)
                .map_err(|e| e.to_string())
                .and_then(|plain| {
                    let (_, payload) = entry::decode(&plain)?;
                    match fragment::parse(payload) {
                        None => Ok(Some(payload.to_vec())),
                        Some(part) => {
                            part.and_then(|part| parts.add(entry.sender, entry.seq, part))
                        }
                    }
                });
            match change {
                Ok(Some(bytes)) => fetched.tail.extend_from_slice(&bytes),
                Ok(None) => {}
                Err(e) => fetched
                    .rejected
                    .push(format!("entry {} from {}: {e}", entry.seq, entry.sender)),
            }
            fetched.cursor = entry.seq;
        }
        progress(fetched.cursor, head);
        if !more {
            // A large change still missing parts is fetched again by the first round.
            fetched.cursor = engine::cursor_after(fetched.cursor, parts.first_waiting());
            return Ok(fetched);
        }
    }
}
