//! What the relay answers to one request of one device, with no socket: who may do what
//! (membership and role, an invite's read proof), the size caps of each request kind,
//! and what follows from an answer (a notice to subscribers, removed devices' connections
//! to close). The QUIC server (`server`) runs it for each request stream and performs the
//! effects; a test or a simulation can call it directly on a [`Store`].
//!
//! Everything that changes the store happens in the writer's transaction (`store`), which
//! checks the membership log again there; the checks here refuse early and say why.

use rapport_wire::frames::{
    Entry, ErrorCode, MAX_BLOB, MAX_INLINE, MAX_PULL, MAX_SNAPSHOT, Request, Response, Role,
};
use rapport_wire::membership::{self, Op};
use rapport_wire::{DeviceId, SpaceId};

use crate::store::{Outcome, Refusal, Store, Write, Written, now, token_hash};

/// A new entry for subscribers: its space, seq, and the entry itself when small enough
/// to travel inside the notice.
pub type Notice = (SpaceId, u64, Option<Entry>);

/// An answer and what follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What the device is told.
    pub response: Response,
    /// A new entry to announce.
    pub notice: Option<Notice>,
    /// Devices removed by this request: their connections are closed.
    pub removed: Vec<DeviceId>,
}

impl From<Response> for Answer {
    fn from(response: Response) -> Answer {
        Answer {
            response,
            notice: None,
            removed: Vec::new(),
        }
    }
}

/// The device's role in a space, or a refusal saying it is not a member.
pub fn member(store: &Store, space: SpaceId, device: DeviceId) -> Outcome<Role> {
    if let Some(role) = store.role(space, device)? {
        return Ok(role);
    }
    // A space from before membership logs says what its devices must do.
    store.log_state(space)?;
    Err(Refusal::new(
        ErrorCode::NotMember,
        "this device is not a member of that space",
    ))
}

/// Refuses `what` of `len` bytes when it is over `max`.
fn at_most(len: usize, max: usize, what: &str) -> Outcome<()> {
    if len > max {
        return Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("{what} is at most {max} bytes"),
        ));
    }
    Ok(())
}

/// Answers one request of `device` (after Hello, rate limits and subscriptions, which
/// belong to the connection). Blocks on the store; call it off the async runtime.
pub fn answer(store: &Store, device: DeviceId, request: Request) -> Outcome<Answer> {
    let admitted = |w: Written| match w {
        Written::Admitted(role) => Response::Admitted { role },
        _ => Response::Ok,
    };
    let unexpected = || Refusal::new(ErrorCode::Internal, "unexpected store answer");
    match request {
        Request::Hello { .. } | Request::Subscribe { .. } => {
            Err(Refusal::new(ErrorCode::BadRequest, "unexpected request"))
        }
        Request::Register {
            setup_token,
            genesis,
        } => store
            .write_blocking(Write::Register {
                token_hash: token_hash(&setup_token),
                device,
                genesis,
            })
            .map(|w| admitted(w).into()),
        Request::CreateSpace { genesis } => store
            .write_blocking(Write::CreateSpace { device, genesis })
            .map(|w| admitted(w).into()),
        Request::Adopt { genesis } => store
            .write_blocking(Write::Adopt { device, genesis })
            .map(|w| admitted(w).into()),
        Request::AppendOp { space, op } => {
            let removed = op
                .open()
                .ok()
                .and_then(|body| match body.op {
                    Op::Remove { devices, .. } => Some(devices),
                    _ => None,
                })
                .unwrap_or_default();
            match store.write_blocking(Write::AppendOp { space, device, op })? {
                Written::Appended(len) => Ok(Answer {
                    response: Response::Appended { len },
                    notice: None,
                    removed,
                }),
                _ => Err(unexpected()),
            }
        }
        Request::GetLog {
            space,
            from,
            invite,
        } => {
            if member(store, space, device).is_err() {
                // A device joining with an invite proves it holds the invite's secret.
                let log = store.log_state(space)?;
                let pending = invite.as_ref().and_then(|i| log.invites.get(&i.invite));
                let proven = match (invite.as_ref(), pending) {
                    (Some(read), Some(pending)) => {
                        pending.expires_at >= now()
                            && ring::signature::UnparsedPublicKey::new(
                                &ring::signature::ED25519,
                                &pending.keys.signing,
                            )
                            .verify(&membership::read_message(space, device), &read.signature)
                            .is_ok()
                    }
                    _ => false,
                };
                if !proven {
                    return Err(Refusal::new(
                        ErrorCode::NotMember,
                        "this device is not a member of that space and holds no pending invite to it (used, expired, revoked, or ended with its creator)",
                    ));
                }
            }
            let (ops, len) = store.log(space, from)?;
            Ok(Response::Log { ops, len }.into())
        }
        Request::Push {
            space,
            epoch,
            client_msg_id,
            blob,
        } => {
            at_most(blob.len(), MAX_BLOB, "a pushed blob")?;
            member(store, space, device)?;
            // Small entries travel inside the notice: subscribers skip a pull.
            let inline = (blob.len() <= MAX_INLINE).then(|| blob.clone());
            match store.write_blocking(Write::Push {
                space,
                sender: device,
                epoch,
                client_msg_id,
                blob,
            })? {
                Written::Pushed(seq, duplicate) => Ok(Answer {
                    response: Response::Pushed { seq, duplicate },
                    notice: (!duplicate).then(|| {
                        let entry = inline.map(|blob| Entry {
                            seq,
                            epoch,
                            sender: device,
                            blob,
                        });
                        (space, seq, entry)
                    }),
                    removed: Vec::new(),
                }),
                _ => Err(unexpected()),
            }
        }
        Request::Pull {
            space,
            after,
            limit,
        } => {
            member(store, space, device)?;
            let (entries, more, head) = store.pull(space, after, limit.clamp(1, MAX_PULL))?;
            Ok(Response::Entries {
                entries,
                more,
                head,
            }
            .into())
        }
        Request::PutSnapshot {
            space,
            epoch,
            covers,
            blob,
        } => {
            at_most(blob.len(), MAX_SNAPSHOT, "a snapshot")?;
            member(store, space, device)?;
            store.write_blocking(Write::PutSnapshot {
                space,
                sender: device,
                epoch,
                covers,
                blob,
            })?;
            Ok(Response::Ok.into())
        }
        Request::GetSnapshot { space } => {
            member(store, space, device)?;
            Ok(Response::Snapshot(store.snapshot(space)?).into())
        }
        Request::Prune { space, through } => {
            member(store, space, device)?;
            store.write_blocking(Write::Prune {
                space,
                device,
                through,
            })?;
            Ok(Response::Ok.into())
        }
    }
}
