//! The sync client over QUIC: connect a practice to a relay with a setup code, invite a
//! colleague, join with an invite and bootstrap, and sync rounds (push what the relay has
//! not acknowledged, pull and merge what is new). Every blob is sealed and signed with
//! `crypto` before it leaves the device and verified before anything is merged.

use rapport_wire::SpaceId;
use rapport_wire::client::{ClientError, RelayClient, resolve};
use rapport_wire::codes::{InviteCode, SetupCode};
use rapport_wire::frames::{Entry, ErrorCode, MAX_BLOB, MAX_SNAPSHOT, Request, Response, Role};
use sha2::{Digest, Sha256};

use super::crypto::{self, SpaceKey};
pub use super::engine::SNAPSHOT_EVERY;
use super::engine::{self, SpaceView, Step, Trigger};
use super::fragment::{self, Reassembly};
use super::snapshot::SpaceSnapshot;
use crate::doc::SpaceKind;
use crate::error::{Error, Result};
use crate::home::{Home, JoinedVia, RelayInfo};
use crate::model::Identity;
use crate::store::chunks;

/// Entries pulled per request.
const PAGE: u32 = 500;

/// What one sync round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct SyncReport {
    /// Blobs pushed.
    pub pushed: u64,
    /// Entries merged.
    pub merged: u64,
    /// Entries refused (bad signature, wrong key, tampered), with why; the entries after
    /// them were still merged.
    pub rejected: Vec<String>,
}

fn sync_error(e: ClientError) -> Error {
    Error::Sync(match e.code() {
        Some(ErrorCode::NotMember) => {
            "this device is not (or no longer) a member of the practice on this relay".into()
        }
        Some(ErrorCode::Expired) => "the invite has expired; ask for a new one".into(),
        Some(ErrorCode::AlreadyUsed) => "this code was already used; ask for a new one".into(),
        Some(ErrorCode::InvalidToken) => {
            "the relay does not know this code; check that it was copied in full".into()
        }
        _ => e.to_string(),
    })
}

fn space_of(home: &Home, kind: SpaceKind) -> Result<SpaceId> {
    let id = home.space_id(kind)?;
    SpaceId::parse(&id).ok_or_else(|| Error::Conflict(format!("space id {id} is not a UUID")))
}

/// Asks the relay for an invite token: `(token, expires_at)`.
async fn invite_token(
    client: &RelayClient,
    space: SpaceId,
    role: Role,
    ttl_secs: u64,
) -> Result<(Vec<u8>, i64)> {
    match client
        .request(&Request::CreateInvite {
            space,
            role,
            ttl_secs,
        })
        .await
        .map_err(sync_error)?
    {
        Response::Invite { token, expires_at } => Ok((token, expires_at)),
        _ => Err(Error::Sync(
            "the relay answered an invite request oddly".into(),
        )),
    }
}

/// The devices of a space as the relay knows them.
async fn members_of(
    client: &RelayClient,
    space: SpaceId,
) -> Result<Vec<rapport_wire::frames::MemberInfo>> {
    match client
        .request(&Request::ListMembers { space })
        .await
        .map_err(sync_error)?
    {
        Response::Members(members) => Ok(members),
        _ => Err(Error::Sync("the relay answered a member list oddly".into())),
    }
}

async fn connect(home: &Home, addr: &str, fingerprint: [u8; 32]) -> Result<RelayClient> {
    let identity = home.device_identity()?;
    let socket = resolve(addr).await.map_err(sync_error)?;
    RelayClient::connect(socket, &identity, fingerprint)
        .await
        .map_err(sync_error)
}

/// Connects to the relay this home already knows.
pub async fn connect_known(home: &Home) -> Result<RelayClient> {
    let relay = home
        .relay()?
        .ok_or_else(|| Error::Sync("this practice is not connected to a relay yet: use a setup code (rapport relay connect)".into()))?;
    connect(home, &relay.addr, relay.fingerprint).await
}

/// Connects the practice of `home` to a relay with the relay's one-time setup code:
/// registers the practice and this clinician's personal space, creates their keys and
/// pushes everything.
pub async fn connect_practice(home: &Home, setup_code: &str) -> Result<SyncReport> {
    let code =
        SetupCode::decode(setup_code).map_err(|e| Error::invalid("setup code", e.to_string()))?;
    if home.relay()?.is_some() {
        return Err(Error::Conflict(
            "this practice is already connected to a relay (if connecting was cut off, sync to finish it)".into(),
        ));
    }
    let client = connect(home, &code.addr, code.fingerprint).await?;
    let x25519 = home.box_key()?.public();
    client
        .request(&Request::Register {
            setup_token: code.token.clone(),
            space: space_of(home, SpaceKind::Practice)?,
            x25519,
        })
        .await
        .map_err(sync_error)?;
    // The setup code is spent now: keep what makes the practice sync before anything else
    // goes over the network. The personal space comes after; if the connection is lost
    // before it, the next full round registers it.
    home.add_space_key(SpaceKind::Practice, &SpaceKey::generate(1))?;
    home.set_relay(&RelayInfo {
        addr: code.addr,
        fingerprint: code.fingerprint,
    })?;
    fail::fail_point!("connect-after-register", |_| Err(Error::Sync(
        "failpoint: connecting was cut off after the practice was registered".into()
    )));
    ensure_personal_space(home, &client).await?;
    round(home, &client).await
}

/// Creates an invite code for a colleague (owner or admin).
pub async fn create_invite(home: &Home, role: Role, ttl_secs: u64) -> Result<String> {
    let relay = home
        .relay()?
        .ok_or_else(|| Error::Sync("connect the practice to a relay before inviting".into()))?;
    let client = connect(home, &relay.addr, relay.fingerprint).await?;
    let space = space_of(home, SpaceKind::Practice)?;
    let (token, expires_at) = invite_token(&client, space, role, ttl_secs).await?;
    let key = home
        .current_space_key(SpaceKind::Practice)?
        .ok_or_else(|| Error::Sync("this device has no key for the practice".into()))?;
    refresh_snapshot(home, &client).await?;
    Ok(InviteCode {
        addr: relay.addr,
        fingerprint: relay.fingerprint,
        space,
        role,
        token,
        epoch: key.epoch,
        key: *key.bytes(),
        expires_at,
        member: None,
        personal: None,
    }
    .encode())
}

/// Creates an invite code for another device of this clinician (their phone, say): it
/// joins as the same member and receives their personal space too.
pub async fn create_device_invite(home: &Home, ttl_secs: u64) -> Result<String> {
    let relay = home.relay()?.ok_or_else(|| {
        Error::Sync("connect the practice to a relay before adding a device".into())
    })?;
    let client = connect(home, &relay.addr, relay.fingerprint).await?;
    let practice = space_of(home, SpaceKind::Practice)?;
    let personal = space_of(home, SpaceKind::Personal)?;
    let me = home.device_identity()?.device_id();
    let members = members_of(&client, practice).await?;
    // The new device may manage the practice if this one may (an owner's second device
    // becomes an admin: a practice has one owner device).
    let role = match members.iter().find(|m| m.device == me).map(|m| m.role) {
        Some(Role::Owner | Role::Admin) => Role::Admin,
        _ => Role::Member,
    };
    let (token, expires_at) = invite_token(&client, practice, role, ttl_secs).await?;
    let (personal_token, _) = invite_token(&client, personal, Role::Member, ttl_secs).await?;
    let practice_key = home
        .current_space_key(SpaceKind::Practice)?
        .ok_or_else(|| Error::Sync("no practice key".into()))?;
    let personal_key = home
        .current_space_key(SpaceKind::Personal)?
        .ok_or_else(|| Error::Sync("no personal key".into()))?;
    let member = home.identity()?.ok_or(Error::NoPractice)?.member_id;
    client.close().await;
    Ok(InviteCode {
        addr: relay.addr,
        fingerprint: relay.fingerprint,
        space: practice,
        role,
        token,
        epoch: practice_key.epoch,
        key: *practice_key.bytes(),
        expires_at,
        member: Some(member),
        personal: Some(rapport_wire::codes::PersonalInvite {
            space: personal,
            token: personal_token,
            epoch: personal_key.epoch,
            key: *personal_key.bytes(),
        }),
    }
    .encode())
}

/// Joins a practice with an invite code: bootstraps from the relay's newest snapshot plus
/// the log, adds this clinician, creates their personal space and pushes.
pub async fn join(home: &Home, invite_code: &str, member_name: &str) -> Result<Identity> {
    join_with_progress(home, invite_code, member_name, &|_, _| {}).await
}

/// [`join`], reporting `(entries fetched, entries in the log)` while bootstrapping.
///
/// A join cut off after the practice was installed (the connection lost, the app killed)
/// is finished by joining again with the same invite: the relay admits the device again,
/// the practice is not fetched a second time, and the steps left over run.
pub async fn join_with_progress(
    home: &Home,
    invite_code: &str,
    member_name: &str,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Identity> {
    let invite = InviteCode::decode(invite_code)
        .map_err(|e| Error::invalid("invite code", e.to_string()))?;
    let client = connect(home, &invite.addr, invite.fingerprint).await?;
    let x25519 = home.box_key()?.public();
    let admit = |space, token: Vec<u8>| Request::Join {
        space,
        token,
        x25519,
    };
    client
        .request(&admit(invite.space, invite.token.clone()))
        .await
        .map_err(sync_error)?;
    if let Some(personal) = &invite.personal {
        client
            .request(&admit(personal.space, personal.token.clone()))
            .await
            .map_err(sync_error)?;
    }
    let key = SpaceKey::from_bytes(invite.epoch, invite.key);
    let personal_key = invite
        .personal
        .as_ref()
        .map(|p| SpaceKey::from_bytes(p.epoch, p.key));
    let practice_id = invite.space.to_string();
    let resuming = home.space_id(SpaceKind::Practice).ok().as_deref() == Some(&practice_id);
    // With the read model in the snapshot, the practice is installed as it is and its
    // document stays unloaded: the first sync round loads it, writes this device's entry
    // and brings anything newer than the snapshot.
    let relay = RelayInfo {
        addr: invite.addr.clone(),
        fingerprint: invite.fingerprint,
    };
    let mut from_snapshot = false;
    if !resuming {
        let fetched = bootstrap(&client, invite.space, &key, true, progress).await?;
        if !fetched.rejected.is_empty() {
            tracing::warn!(
                count = fetched.rejected.len(),
                "entries refused while joining"
            );
        }
        // What makes the practice sync (relay, key, cursor) is kept with the install,
        // before anything else goes over the network.
        let via = JoinedVia {
            relay: &relay,
            key: &key,
            cursor: Some(fetched.cursor),
            personal: None,
        };
        from_snapshot = fetched.snapshot_suffices();
        if let (Some(member), Some(personal), Some(personal_key)) =
            (&invite.member, &invite.personal, &personal_key)
        {
            // Another device of an existing clinician: same member, their personal space.
            let personal_fetched =
                bootstrap(&client, personal.space, personal_key, false, &|_, _| {}).await?;
            let personal_id = personal.space.to_string();
            // Their personal space's key and position go in with the install too.
            let via = JoinedVia {
                personal: Some((personal_key, personal_fetched.cursor)),
                ..via
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
            match &fetched.snapshot {
                Some(snapshot) if from_snapshot => {
                    home.join_practice_from_snapshot(&practice_id, snapshot, member_name, &via)?
                }
                _ => {
                    let identity =
                        home.join_practice(&practice_id, &fetched.document_bytes(), member_name)?;
                    home.record_join(&via)?;
                    identity
                }
            };
        }
    } else {
        if let Some(personal_key) = &personal_key {
            home.add_space_key(SpaceKind::Personal, personal_key)?;
        }
        home.record_join(&JoinedVia {
            relay: &relay,
            key: &key,
            cursor: None,
            personal: None,
        })?;
    }
    fail::fail_point!("join-after-install", |_| Err(Error::Sync(
        "failpoint: the join was cut off after the install".into()
    )));
    ensure_personal_space(home, &client).await?;
    // A device that joined from a snapshot leaves the practice to its first round (which
    // loads the document and announces the device).
    let spaces: &[SpaceKind] = if from_snapshot {
        &[SpaceKind::Personal]
    } else {
        &[SpaceKind::Practice, SpaceKind::Personal]
    };
    round_spaces(home, &client, spaces, Trigger::Full, &|_, _| {}).await?;
    home.identity()?
        .ok_or_else(|| Error::Conflict("the join left this home without an identity".into()))
}

/// Registers this clinician's personal space on the relay and creates its first key, if
/// that has not happened yet (connecting a practice and a new clinician's join do it
/// last; if they are cut off just before, a later join or full round does it). The relay
/// admits a repeated registration by the device that made it, so a lost answer is
/// harmless.
async fn ensure_personal_space(home: &Home, client: &RelayClient) -> Result<()> {
    if home.current_space_key(SpaceKind::Personal)?.is_some()
        || home.current_space_key(SpaceKind::Practice)?.is_none()
    {
        return Ok(());
    }
    let Ok(space) = space_of(home, SpaceKind::Personal) else {
        return Ok(());
    };
    client
        .request(&Request::CreateSpace {
            space,
            x25519: home.box_key()?.public(),
        })
        .await
        .map_err(sync_error)?;
    home.add_space_key(SpaceKind::Personal, &SpaceKey::generate(1))
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

/// Fetches a space from the relay: its newest snapshot, then, unless `snapshot_will_do`
/// and the snapshot carries the read model, every entry after it.
async fn bootstrap(
    client: &RelayClient,
    space: SpaceId,
    key: &SpaceKey,
    snapshot_will_do: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Fetched> {
    let mut parts = Reassembly::default();
    let mut fetched = Fetched {
        snapshot: None,
        tail: Vec::new(),
        cursor: 0,
        rejected: Vec::new(),
    };
    if let Response::Snapshot(Some(snapshot)) = client
        .request(&Request::GetSnapshot { space })
        .await
        .map_err(sync_error)?
    {
        let plain = crypto::open(key, space, snapshot.sender, &snapshot.blob)
            .map_err(|e| Error::Sync(format!("the practice snapshot cannot be used: {e}")))?;
        fetched.snapshot = Some(SpaceSnapshot::decode(&plain)?);
        fetched.cursor = snapshot.covers;
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
        } = client
            .request(&Request::Pull {
                space,
                after: fetched.cursor,
                limit: PAGE,
            })
            .await
            .map_err(sync_error)?
        else {
            return Err(Error::Sync("the relay answered a pull oddly".into()));
        };
        for entry in entries {
            let change = crypto::open(key, space, entry.sender, &entry.blob)
                .map_err(|e| e.to_string())
                .and_then(|plain| match fragment::parse(&plain) {
                    None => Ok(Some(plain)),
                    Some(part) => part.and_then(|part| parts.add(entry.sender, entry.seq, part)),
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

/// What the engine needs to know of a space.
pub fn view(home: &Home, kind: SpaceKind) -> Result<SpaceView> {
    let has_key = home.current_space_key(kind)?.is_some();
    let position = home.sync_position(kind)?;
    Ok(SpaceView {
        kind,
        has_key,
        heads: chunks::encode_heads(&home.heads(kind)?),
        acked: chunks::encode_heads(&position.acked_heads),
        cursor: position.cursor,
        last_snapshot: home.last_snapshot(kind)?,
        pending: kind == SpaceKind::Practice && home.has_pending_join()?,
    })
}

/// One sync round with a connected client, for every space this home syncs; the
/// engine decides the steps, this runs them.
pub async fn round(home: &Home, client: &RelayClient) -> Result<SyncReport> {
    round_with_progress(home, client, &|_, _| {}).await
}

/// A round that reports `(spaces done, spaces in the round)` as it goes.
pub async fn round_with_progress(
    home: &Home,
    client: &RelayClient,
    progress: &(dyn Fn(u32, u32) + Sync),
) -> Result<SyncReport> {
    round_for(home, client, Trigger::Full, progress).await
}

/// A round for a trigger: full, pull-only after a notice, push-only after a local change.
pub async fn round_for(
    home: &Home,
    client: &RelayClient,
    trigger: Trigger,
    progress: &(dyn Fn(u32, u32) + Sync),
) -> Result<SyncReport> {
    if trigger == Trigger::Full {
        // Not fatal: the practice syncs either way, and a later round tries again.
        if let Err(e) = ensure_personal_space(home, client).await {
            tracing::warn!(error = %e, "the personal space could not be registered on the relay");
        }
    }
    round_spaces(
        home,
        client,
        &[SpaceKind::Practice, SpaceKind::Personal],
        trigger,
        progress,
    )
    .await
}

/// A round over some of the spaces.
async fn round_spaces(
    home: &Home,
    client: &RelayClient,
    kinds: &[SpaceKind],
    trigger: Trigger,
    progress: &(dyn Fn(u32, u32) + Sync),
) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    let total = u32::try_from(kinds.len()).unwrap_or(2);
    for (done, &kind) in kinds.iter().enumerate() {
        progress(u32::try_from(done).unwrap_or(0), total);
        for step in engine::plan_for(&view(home, kind)?, trigger) {
            match step {
                Step::FetchKeys => fetch_keys(home, client, kind).await?,
                Step::Push => push(home, client, kind, &mut report).await?,
                Step::Pull => pull(home, client, kind, &mut report).await?,
                Step::Snapshot => compact(home, client, kind).await?,
            }
        }
        if engine::wants_snapshot(&view(home, kind)?) {
            compact(home, client, kind).await?;
        }
    }
    progress(total, total);
    Ok(report)
}

/// The devices of the practice as the relay knows them.
pub async fn devices(home: &Home) -> Result<Vec<rapport_wire::frames::MemberInfo>> {
    let client = connect_known(home).await?;
    let members = members_of(&client, space_of(home, SpaceKind::Practice)?).await?;
    client.close().await;
    Ok(members)
}

/// Removes a device from the practice (owner or admin): the relay refuses it at once and
/// closes its connections, and the practice moves to a new key epoch, wrapped to every
/// remaining device, so the removed device cannot read anything written afterwards.
pub async fn remove_device(home: &Home, device: &str) -> Result<u32> {
    let target = rapport_wire::DeviceId::parse(device).ok_or_else(|| {
        Error::invalid(
            "device",
            format!("{device:?} is not a device id (32 hex characters, see `rapport devices`)"),
        )
    })?;
    if target == home.device_identity()?.device_id() {
        return Err(Error::invalid(
            "device",
            "this is the device you are using; remove it from another device",
        ));
    }
    let client = connect_known(home).await?;
    let space = space_of(home, SpaceKind::Practice)?;
    client
        .request(&Request::RemoveDevice {
            space,
            device: target,
        })
        .await
        .map_err(sync_error)?;
    let members = members_of(&client, space).await?;
    let current = home
        .current_space_key(SpaceKind::Practice)?
        .ok_or_else(|| Error::Sync("this device has no key for the practice".into()))?;
    let next = SpaceKey::generate(current.epoch + 1);
    let envelopes = members
        .iter()
        .filter(|m| m.removed_at.is_none())
        .map(|m| rapport_wire::frames::KeyEnvelope {
            device: m.device,
            sealed: crypto::wrap(&next, space, m.x25519),
        })
        .collect();
    client
        .request(&Request::PutKeyEnvelopes {
            space,
            epoch: next.epoch,
            envelopes,
        })
        .await
        .map_err(sync_error)?;
    home.add_space_key(SpaceKind::Practice, &next)?;
    tracing::info!(space = %space, epoch = next.epoch, "practice key rotated after a device removal");
    client.close().await;
    Ok(next.epoch)
}

/// Picks up epoch keys wrapped to this device since its newest one.
async fn fetch_keys(home: &Home, client: &RelayClient, kind: SpaceKind) -> Result<()> {
    let Some(current) = home.current_space_key(kind)? else {
        return Ok(());
    };
    let space = space_of(home, kind)?;
    let Response::KeyEnvelopes(envelopes) = client
        .request(&Request::GetKeyEnvelopes {
            space,
            since_epoch: current.epoch + 1,
        })
        .await
        .map_err(sync_error)?
    else {
        return Err(Error::Sync("the relay answered a key request oddly".into()));
    };
    let mine = home.box_key()?;
    for (epoch, sealed) in envelopes {
        match crypto::unwrap(&sealed, space, epoch, &mine) {
            Ok(key) => home.add_space_key(kind, &key)?,
            Err(e) => tracing::warn!(epoch, "a key envelope could not be opened: {e}"),
        }
    }
    Ok(())
}

/// Before handing out an invite: exchange what is new, then, if the log has entries the
/// newest snapshot does not cover, upload a fresh one, so the new device finds the whole
/// practice in it (read model included) and joins without replaying a log.
async fn refresh_snapshot(home: &Home, client: &RelayClient) -> Result<()> {
    round(home, client).await?;
    let kind = SpaceKind::Practice;
    if home.sync_position(kind)?.cursor > home.last_snapshot(kind)? {
        compact(home, client, kind).await?;
    }
    Ok(())
}

/// Seals a space snapshot for the relay. With the read model's records it may outgrow
/// what the relay takes; then it goes without them (joiners project the document).
fn seal_snapshot(home: &Home, kind: SpaceKind, key: &SpaceKey) -> Result<Vec<u8>> {
    let space = space_of(home, kind)?;
    let identity = home.device_identity()?;
    let seal = |snapshot: &SpaceSnapshot| {
        crypto::seal(key, space, identity.key_pkcs8(), &snapshot.encode())
            .map_err(|e| Error::Sync(e.to_string()))
    };
    let snapshot = home.space_snapshot(kind)?;
    let blob = seal(&snapshot)?;
    if blob.len() <= MAX_SNAPSHOT || snapshot.records.is_none() {
        return Ok(blob);
    }
    tracing::info!(
        bytes = blob.len(),
        "the snapshot with its read model is too large for the relay; sending the document only"
    );
    seal(&snapshot.without_records())
}

/// Uploads a sealed snapshot when enough entries accumulated since the last one, and
/// lets the relay prune what it covers. New devices then start from the snapshot.
async fn compact(home: &Home, client: &RelayClient, kind: SpaceKind) -> Result<()> {
    let position = home.sync_position(kind)?;
    let key = home
        .current_space_key(kind)?
        .ok_or_else(|| Error::Sync("no key for this space".into()))?;
    let space = space_of(home, kind)?;
    // The document holds every entry up to the cursor (merged, or ours), so the snapshot
    // covers the cursor.
    let blob = seal_snapshot(home, kind, &key)?;
    if blob.len() > MAX_SNAPSHOT {
        tracing::warn!(
            bytes = blob.len(),
            "the space has outgrown the relay's snapshot size; the log is left unpruned"
        );
        home.set_last_snapshot(kind, position.cursor)?;
        return Ok(());
    }
    match client
        .request(&Request::PutSnapshot {
            space,
            epoch: key.epoch,
            covers: position.cursor,
            blob,
        })
        .await
    {
        Ok(_) => {
            client
                .request(&Request::Prune {
                    space,
                    through: position.cursor,
                })
                .await
                .map_err(sync_error)?;
            home.set_last_snapshot(kind, position.cursor)?;
            tracing::info!(space = %space, covers = position.cursor, "uploaded a snapshot and pruned the log");
        }
        // Another device got there first with a newer snapshot: nothing to do.
        Err(e) if e.code() == Some(ErrorCode::BadRequest) => {
            home.set_last_snapshot(kind, position.cursor)?
        }
        Err(e) => return Err(sync_error(e)),
    }
    Ok(())
}

/// Connects to the known relay and runs one round.
pub async fn sync_now(home: &Home) -> Result<SyncReport> {
    let client = connect_known(home).await?;
    let report = round(home, &client).await;
    client.close().await;
    report
}

/// What became of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merged {
    /// Merged (or ours, or already had).
    Yes,
    /// Refused and reported; the entries after it go on.
    Refused,
    /// A part of a large change whose other parts have not arrived yet.
    Waiting,
}

/// Verifies, opens and merges one entry of `kind` (our own entries are already merged). A
/// bad entry is refused and reported; it never stops the entries after it. A part of a
/// large change is collected in `parts` and the change merged with its last part. A merge
/// moves the relay cursor to the entry in the same transaction, unless a large change is
/// still incomplete (the cursor must then stay before its first part).
#[allow(clippy::too_many_arguments)]
async fn merge_entry(
    home: &Home,
    client: &RelayClient,
    kind: SpaceKind,
    space: SpaceId,
    me: rapport_wire::DeviceId,
    entry: &Entry,
    parts: &mut Reassembly,
    report: &mut SyncReport,
) -> Result<Merged> {
    if entry.sender == me {
        return Ok(Merged::Yes);
    }
    if home.space_key(kind, entry.epoch)?.is_none() {
        // A newer epoch: a device was removed and the key rotated.
        fetch_keys(home, client, kind).await?;
    }
    let opened = match home.space_key(kind, entry.epoch)? {
        Some(key) => {
            crypto::open(&key, space, entry.sender, &entry.blob).map_err(|e| e.to_string())
        }
        None => Err(format!("no key for epoch {}", entry.epoch)),
    };
    let change = opened.and_then(|plain| match fragment::parse(&plain) {
        None => Ok(Some(plain)),
        Some(part) => part.and_then(|part| parts.add(entry.sender, entry.seq, part)),
    });
    let refused = match change {
        Ok(None) => return Ok(Merged::Waiting),
        Ok(Some(bytes)) => {
            let merged = if parts.first_waiting().is_some() {
                home.merge_from_relay(kind, &bytes)
            } else {
                home.merge_from_relay_at(kind, &bytes, entry.seq)
            };
            match merged {
                Ok(_) => {
                    report.merged += 1;
                    return Ok(Merged::Yes);
                }
                Err(e) => e.to_string(),
            }
        }
        Err(e) => e,
    };
    tracing::warn!(seq = entry.seq, sender = %entry.sender, "refused an entry: {refused}");
    report.rejected.push(format!(
        "entry {} from {}: {refused}",
        entry.seq, entry.sender
    ));
    Ok(Merged::Refused)
}

/// Applies an entry the relay carried inside a notice: merged at once when it is the next
/// one after the cursor (or skipped when already had). `false` means there is a gap before
/// it: pull instead.
pub async fn apply_delivered(
    home: &Home,
    client: &RelayClient,
    space: SpaceId,
    entry: &Entry,
    report: &mut SyncReport,
) -> Result<bool> {
    let mut kind = None;
    for candidate in [SpaceKind::Practice, SpaceKind::Personal] {
        if space_of(home, candidate).ok() == Some(space) {
            kind = Some(candidate);
        }
    }
    let Some(kind) = kind else {
        return Ok(false);
    };
    match engine::on_delivered(home.sync_position(kind)?.cursor, entry.seq) {
        engine::Delivered::AlreadyHad => return Ok(true),
        engine::Delivered::Gap => return Ok(false),
        engine::Delivered::Merge => {}
    }
    let me = home.device_identity()?.device_id();
    let mut parts = Reassembly::default();
    match merge_entry(home, client, kind, space, me, entry, &mut parts, report).await? {
        Merged::Yes => {
            if entry.sender == me {
                home.set_sync_cursor(kind, entry.seq)?;
            }
            Ok(true)
        }
        Merged::Refused => {
            home.set_sync_cursor(kind, entry.seq)?;
            Ok(true)
        }
        // The first part of a large change: a pull collects the rest.
        Merged::Waiting => Ok(false),
    }
}

/// Most plaintext per relay entry: padded to its bucket it still fits one entry.
pub const PIECE: usize = 512 * 1024 - 4;

async fn push(
    home: &Home,
    client: &RelayClient,
    kind: SpaceKind,
    report: &mut SyncReport,
) -> Result<()> {
    if kind == SpaceKind::Practice && home.has_pending_join()? {
        // Joined from a snapshot: loading the document writes this member's entry.
        home.load_document(kind)?;
    }
    let position = home.sync_position(kind)?;
    let heads = home.heads(kind)?;
    if chunks::encode_heads(&heads) == chunks::encode_heads(&position.acked_heads) {
        return Ok(());
    }
    let pieces = home.changes_since_in_pieces(kind, &position.acked_heads, PIECE)?;
    if !pieces.is_empty() {
        let key = home
            .current_space_key(kind)?
            .ok_or_else(|| Error::Sync("no key for this space".into()))?;
        let space = space_of(home, kind)?;
        let identity = home.device_identity()?;
        let heads_hash = Sha256::digest(chunks::encode_heads(&heads));
        // A change larger than one entry goes in parts (see `fragment`).
        let mut entries = Vec::new();
        for piece in pieces {
            if piece.len() > PIECE {
                entries.extend(fragment::split(&piece, PIECE).map_err(Error::Sync)?);
            } else {
                entries.push(piece);
            }
        }
        for (index, piece) in entries.iter().enumerate() {
            let blob = crypto::seal(&key, space, identity.key_pkcs8(), piece)
                .map_err(|e| Error::Sync(e.to_string()))?;
            if blob.len() > MAX_BLOB {
                return Err(Error::Sync(format!(
                    "an entry of {} bytes is larger than the relay takes ({MAX_BLOB})",
                    piece.len()
                )));
            }
            // Derived from the heads and the piece, so a retry after a crash is recognised
            // as the same push.
            let mut hasher = Sha256::new();
            hasher.update(heads_hash);
            hasher.update((index as u64).to_be_bytes());
            let mut client_msg_id = [0u8; 16];
            client_msg_id.copy_from_slice(&hasher.finalize()[..16]);
            client
                .request(&Request::Push {
                    space,
                    epoch: key.epoch,
                    client_msg_id,
                    blob,
                })
                .await
                .map_err(sync_error)?;
            report.pushed += 1;
        }
    }
    home.set_acked_heads(kind, &heads)
}

async fn pull(
    home: &Home,
    client: &RelayClient,
    kind: SpaceKind,
    report: &mut SyncReport,
) -> Result<()> {
    let space = space_of(home, kind)?;
    let me = home.device_identity()?.device_id();
    let mut cursor = home.sync_position(kind)?.cursor;
    let mut parts = Reassembly::default();
    loop {
        let response = client
            .request(&Request::Pull {
                space,
                after: cursor,
                limit: PAGE,
            })
            .await;
        let (entries, more) = match response {
            Ok(Response::Entries { entries, more, .. }) => (entries, more),
            Ok(_) => return Err(Error::Sync("the relay answered a pull oddly".into())),
            Err(e) if e.code() == Some(ErrorCode::Pruned) => {
                // Our cursor predates a prune: catch up through the snapshot. Local edits
                // not pushed yet are untouched: merging never drops changes.
                let Response::Snapshot(Some(snapshot)) = client
                    .request(&Request::GetSnapshot { space })
                    .await
                    .map_err(sync_error)?
                else {
                    return Err(Error::Sync(
                        "the relay pruned entries but has no snapshot".into(),
                    ));
                };
                let key = home
                    .space_key(kind, snapshot.epoch)?
                    .ok_or(Error::Sync(format!("no key for epoch {}", snapshot.epoch)))?;
                let plain = crypto::open(&key, space, snapshot.sender, &snapshot.blob)
                    .map_err(|e| Error::Sync(e.to_string()))?;
                home.merge_from_relay(kind, &SpaceSnapshot::decode(&plain)?.document)?;
                cursor = snapshot.covers;
                home.set_sync_cursor(kind, cursor)?;
                parts = Reassembly::default();
                continue;
            }
            Err(e) => return Err(sync_error(e)),
        };
        for entry in entries {
            merge_entry(home, client, kind, space, me, &entry, &mut parts, report).await?;
            cursor = entry.seq;
            for given_up in parts.expire(cursor) {
                tracing::warn!("{given_up}");
                report.rejected.push(given_up);
            }
        }
        home.set_sync_cursor(kind, engine::cursor_after(cursor, parts.first_waiting()))?;
        if !more {
            return Ok(());
        }
    }
}
