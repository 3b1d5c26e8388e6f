//! Frames: one request and one response per bidirectional QUIC stream (a subscription
//! stream carries notices after its response). Each frame is a big-endian `u32` length
//! followed by that many bytes of postcard-encoded serde data; the length is checked
//! against a hard cap before anything is allocated.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::ids::{DeviceId, SpaceId};
/// Roles are the membership log's; frames name them where they travel.
pub use crate::membership::Role;
use crate::membership::{InviteId, SignedOp};

/// The largest frame either side accepts (a snapshot of a large practice fits).
pub const MAX_FRAME: usize = 32 * 1024 * 1024;
/// The largest blob a device may push as one log entry.
pub const MAX_BLOB: usize = 1024 * 1024;
/// The largest snapshot blob.
pub const MAX_SNAPSHOT: usize = MAX_FRAME - 4096;
/// The most entries one pull returns.
pub const MAX_PULL: u32 = 1_000;
/// The most blob bytes one pull returns (at least one entry, whatever its size), so a
/// page of large entries stays well under [`MAX_FRAME`].
pub const MAX_PULL_BYTES: usize = 16 * 1024 * 1024;
/// The most membership operations one `GetLog` answer carries.
pub const MAX_LOG_PAGE: usize = 512;
/// The largest frame a connection may send before its `Hello` is answered.
pub const MAX_FIRST_FRAME: usize = 4 * 1024;
/// The largest frame a device that is a member of no space yet may send: registering a
/// practice or joining one needs far less, and a stranger cannot make the relay read
/// megabytes for it.
pub const MAX_STRANGER_FRAME: usize = 64 * 1024;
/// The largest membership operation request (a rotation seals the key to every device).
pub const MAX_OP_FRAME: usize = 1024 * 1024;
/// The largest frame of a request that carries no blob (`Pull`, `GetLog`, ...).
pub const MAX_SMALL_FRAME: usize = 64 * 1024;

/// What a device asks of the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First request of a connection: the versions the device speaks.
    Hello {
        /// Supported protocol versions.
        versions: Vec<u16>,
    },
    /// Registers a new practice with a one-time setup token: its membership log's
    /// genesis, signed by this device, which becomes its owner.
    Register {
        /// The setup token from the relay's setup code.
        setup_token: Vec<u8>,
        /// The practice's genesis operation.
        genesis: SignedOp,
    },
    /// Registers a clinician's personal space (its genesis names the practice; the device
    /// must be a member of it).
    CreateSpace {
        /// The personal space's genesis operation.
        genesis: SignedOp,
    },
    /// Gives a space whose devices synced before membership logs (protocol 1) its log:
    /// only the device that registered it may, once.
    Adopt {
        /// The genesis operation.
        genesis: SignedOp,
    },
    /// Appends an operation to a space's membership log, only on its current head.
    AppendOp {
        /// The space.
        space: SpaceId,
        /// The signed operation.
        op: SignedOp,
    },
    /// Reads a space's membership log from operation `from` on (members, or a device
    /// holding a pending invite, which proves it with [`InviteRead`]).
    GetLog {
        /// The space.
        space: SpaceId,
        /// The first operation wanted (0 is the genesis).
        from: u64,
        /// For a device joining with an invite.
        invite: Option<InviteRead>,
    },
    /// Appends a sealed blob to a space's log; idempotent by `client_msg_id`.
    Push {
        /// The space.
        space: SpaceId,
        /// The key epoch the blob is sealed under.
        epoch: u32,
        /// Chosen by the device; a retry with the same id returns the same seq.
        client_msg_id: [u8; 16],
        /// The sealed blob.
        blob: Vec<u8>,
    },
    /// Reads log entries after a cursor.
    Pull {
        /// The space.
        space: SpaceId,
        /// Entries with `seq > after`.
        after: u64,
        /// At most this many (capped at [`MAX_PULL`]).
        limit: u32,
    },
    /// Asks to be told of new entries in these spaces; the stream stays open.
    Subscribe {
        /// The spaces.
        spaces: Vec<SpaceId>,
    },
    /// Stores a sealed snapshot that covers the log up to `covers`.
    PutSnapshot {
        /// The space.
        space: SpaceId,
        /// Key epoch.
        epoch: u32,
        /// The last seq the snapshot includes.
        covers: u64,
        /// The sealed snapshot.
        blob: Vec<u8>,
    },
    /// Fetches the newest snapshot.
    GetSnapshot {
        /// The space.
        space: SpaceId,
    },
    /// Drops log entries up to `through`; only what a stored snapshot covers.
    Prune {
        /// The space.
        space: SpaceId,
        /// The last seq to drop.
        through: u64,
    },
}

/// A joining device's proof that it holds a pending invite's secret: the invite key's
/// signature over [`crate::membership::read_message`] for this space and device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRead {
    /// The invite.
    pub invite: InviteId,
    /// The signature.
    pub signature: Vec<u8>,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the space's log (1, 2, ...).
    pub seq: u64,
    /// Key epoch.
    pub epoch: u32,
    /// The device that pushed it.
    pub sender: DeviceId,
    /// The sealed blob.
    pub blob: Vec<u8>,
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last seq it includes.
    pub covers: u64,
    /// Key epoch.
    pub epoch: u32,
    /// The device that made it.
    pub sender: DeviceId,
    /// The sealed snapshot.
    pub blob: Vec<u8>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// No common protocol version.
    UnsupportedVersion,
    /// The request was malformed or is not allowed at this point (e.g. before Hello).
    BadRequest,
    /// The device is not a member of the space (or was removed).
    NotMember,
    /// The device's role does not allow this.
    Forbidden,
    /// The setup or invite token is unknown.
    InvalidToken,
    /// The invite has expired.
    Expired,
    /// The setup code or invite was already used.
    AlreadyUsed,
    /// The space does not exist.
    UnknownSpace,
    /// The space already exists.
    SpaceExists,
    /// A blob or frame is over the limit.
    TooLarge,
    /// Too many requests; retry later.
    RateLimited,
    /// The entries asked for were pruned; start from the snapshot.
    Pruned,
    /// The relay failed; retry later.
    Internal,
    /// A membership operation did not follow the log's head: fetch the log, decide
    /// again, retry.
    Stale,
    /// The entry or snapshot is sealed under an older key than the space's current one:
    /// fetch the membership log and seal again.
    StaleEpoch,
    /// The space holds as much as its quota on this relay allows.
    Quota,
    /// The relay's disk is full: nothing new is stored until its host frees space.
    StorageFull,
}

impl ErrorCode {
    /// The QUIC application error code a stream or connection is closed with.
    pub fn quic_code(self) -> u32 {
        match self {
            ErrorCode::UnsupportedVersion => 1,
            ErrorCode::BadRequest => 2,
            ErrorCode::NotMember => 3,
            ErrorCode::Forbidden => 4,
            ErrorCode::InvalidToken => 5,
            ErrorCode::Expired => 6,
            ErrorCode::AlreadyUsed => 7,
            ErrorCode::UnknownSpace => 8,
            ErrorCode::SpaceExists => 9,
            ErrorCode::TooLarge => 10,
            ErrorCode::RateLimited => 11,
            ErrorCode::Pruned => 12,
            ErrorCode::Internal => 13,
            ErrorCode::Stale => 14,
            ErrorCode::StaleEpoch => 15,
            ErrorCode::Quota => 16,
            ErrorCode::StorageFull => 17,
        }
    }
}

/// Connection close code: the device was removed from a space.
pub const CLOSE_REMOVED: u32 = 100;
/// Connection close code: the relay is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 101;
/// Connection close code: too many connections.
pub const CLOSE_BUSY: u32 = 102;

/// What the relay answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The version both sides will speak.
    Hello {
        /// Chosen version.
        version: u16,
    },
    /// Done.
    Ok,
    /// Registered or joined, with this role.
    Admitted {
        /// The device's role.
        role: Role,
    },
    /// A membership operation was appended; the log now holds `len` operations.
    Appended {
        /// Operations in the log.
        len: u64,
    },
    /// Membership operations from the one asked for.
    Log {
        /// In order.
        ops: Vec<SignedOp>,
        /// Operations in the whole log (more follow when it exceeds what came).
        len: u64,
    },
    /// The entry's place in the log.
    Pushed {
        /// Its seq.
        seq: u64,
        /// True if this client message id was already stored.
        duplicate: bool,
    },
    /// Log entries.
    Entries {
        /// In seq order.
        entries: Vec<Entry>,
        /// More entries follow.
        more: bool,
        /// The newest seq of the space.
        head: u64,
    },
    /// A subscription is live; [`Response::Notice`] frames follow on the same stream.
    Subscribed,
    /// A new entry exists.
    Notice {
        /// The space.
        space: SpaceId,
        /// Its newest seq.
        seq: u64,
    },
    /// The newest snapshot, if any.
    Snapshot(Option<Snapshot>),
    /// The request was refused.
    Error {
        /// Why.
        code: ErrorCode,
        /// In words.
        message: String,
    },
    /// A new entry, carried whole inside the subscription when it is small
    /// (at most [`MAX_INLINE`] bytes of blob), so subscribers need no pull for it.
    Delivered {
        /// The space.
        space: SpaceId,
        /// The entry.
        entry: Entry,
    },
}

/// Largest blob a relay carries inside a subscription ([`Response::Delivered`]); larger
/// entries are announced with [`Response::Notice`] and pulled.
pub const MAX_INLINE: usize = 4 * 1024;

/// Framing and decoding failures.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame over the cap.
    #[error("frame of {0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    /// The bytes are not a valid frame.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The stream ended or failed.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes a frame (length prefix and body).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = postcard::to_allocvec(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len(), MAX_FRAME));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len(), MAX_FRAME))?;
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a frame body (without its length prefix). Untrusted input: never panics.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, FrameError> {
    postcard::from_bytes(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// The largest frame a request may be, known from the first byte of its body (postcard's
/// variant index, one byte for every [`Request`] kind), before the rest is read: a `Push`
/// up to its blob cap, a `PutSnapshot` up to [`MAX_FRAME`], a membership operation up to
/// [`MAX_OP_FRAME`], anything else [`MAX_SMALL_FRAME`]; an unknown kind 0.
pub fn request_cap(first: u8) -> usize {
    match first {
        // Hello, GetLog, Pull, Subscribe, GetSnapshot, Prune.
        0 | 5 | 7 | 8 | 10 | 11 => MAX_SMALL_FRAME,
        // Register, CreateSpace, Adopt, AppendOp.
        1..=4 => MAX_OP_FRAME,
        // Push: the blob and a few fields.
        6 => MAX_BLOB + 1024,
        // PutSnapshot.
        9 => MAX_FRAME,
        _ => 0,
    }
}

/// The start of a frame: its announced length (refused at once over `max`) and the first
/// byte of its body, read before anything is allocated for the rest ([`read_body`]).
/// `Ok(None)` at a clean end of stream; a zero-length frame is malformed.
pub async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<(usize, u8)>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge(len, max));
    }
    if len == 0 {
        return Err(FrameError::Malformed("an empty frame".into()));
    }
    let mut first = [0u8; 1];
    reader.read_exact(&mut first).await?;
    Ok(Some((len, first[0])))
}

/// Reads the rest of a frame whose head [`read_head`] returned, and decodes it. The
/// caller has checked `len` against its caps.
pub async fn read_body<R: AsyncRead + Unpin, T: for<'a> Deserialize<'a>>(
    reader: &mut R,
    (len, first): (usize, u8),
) -> Result<T, FrameError> {
    let mut body = vec![0; len];
    body[0] = first;
    reader.read_exact(&mut body[1..]).await?;
    decode(&body)
}

/// Reads one frame, refusing one longer than `max` before allocating; `Ok(None)` at a
/// clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'a> Deserialize<'a>>(
    reader: &mut R,
    max: usize,
) -> Result<Option<T>, FrameError> {
    match read_head(reader, max).await? {
        Some(head) => read_body(reader, head).await.map(Some),
        None => Ok(None),
    }
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    value: &T,
) -> Result<(), FrameError> {
    let bytes = encode(value)?;
    writer.write_all(&bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn every_request_kind_has_a_cap_its_largest_honest_frame_fits() {
        let space = SpaceId([1; 16]);
        let op = || SignedOp {
            signer: [2; 32],
            body: vec![0; 2048],
            signature: vec![0; 64],
        };
        let largest = [
            (
                Request::Hello {
                    versions: vec![1, 2],
                },
                MAX_SMALL_FRAME,
            ),
            (
                Request::Register {
                    setup_token: vec![0; 32],
                    genesis: op(),
                },
                MAX_OP_FRAME,
            ),
            (Request::CreateSpace { genesis: op() }, MAX_OP_FRAME),
            (Request::Adopt { genesis: op() }, MAX_OP_FRAME),
            (Request::AppendOp { space, op: op() }, MAX_OP_FRAME),
            (
                Request::GetLog {
                    space,
                    from: 0,
                    invite: None,
                },
                MAX_SMALL_FRAME,
            ),
            (
                Request::Push {
                    space,
                    epoch: u32::MAX,
                    client_msg_id: [0; 16],
                    blob: vec![0; MAX_BLOB],
                },
                MAX_BLOB + 1024,
            ),
            (
                Request::Pull {
                    space,
                    after: u64::MAX,
                    limit: u32::MAX,
                },
                MAX_SMALL_FRAME,
            ),
            (
                Request::Subscribe {
                    spaces: vec![space; 64],
                },
                MAX_SMALL_FRAME,
            ),
            (
                Request::PutSnapshot {
                    space,
                    epoch: u32::MAX,
                    covers: u64::MAX,
                    blob: vec![0; MAX_SNAPSHOT],
                },
                MAX_FRAME,
            ),
            (Request::GetSnapshot { space }, MAX_SMALL_FRAME),
            (
                Request::Prune {
                    space,
                    through: u64::MAX,
                },
                MAX_SMALL_FRAME,
            ),
        ];
        for (request, cap) in largest {
            let frame = encode(&request).unwrap();
            let len = frame.len() - 4;
            assert_eq!(request_cap(frame[4]), cap, "{request:?}");
            assert!(len <= cap, "{len} > {cap}");
        }
        assert_eq!(request_cap(12), 0);
        assert_eq!(request_cap(0xff), 0);
    }

    #[test]
    fn a_frame_head_is_read_before_its_body() {
        let frame = encode(&Request::GetSnapshot {
            space: SpaceId([3; 16]),
        })
        .unwrap();
        let mut reader = &frame[..];
        let head = block_on(read_head(&mut reader, MAX_FRAME))
            .unwrap()
            .unwrap();
        assert_eq!(head, (frame.len() - 4, frame[4]));
        let request: Request = block_on(read_body(&mut reader, head)).unwrap();
        assert!(matches!(request, Request::GetSnapshot { .. }));
        assert!(matches!(
            block_on(read_head(&mut &[0u8, 0, 0, 0][..], MAX_FRAME)),
            Err(FrameError::Malformed(_))
        ));
        assert!(
            block_on(read_head(&mut &[][..], MAX_FRAME))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn requests_round_trip() {
        let requests = vec![
            Request::Hello { versions: vec![1] },
            Request::Push {
                space: SpaceId([1; 16]),
                epoch: 2,
                client_msg_id: [3; 16],
                blob: vec![9; 100],
            },
            Request::GetLog {
                space: SpaceId([1; 16]),
                from: 3,
                invite: Some(InviteRead {
                    invite: InviteId([2; 32]),
                    signature: vec![7; 64],
                }),
            },
        ];
        for request in requests {
            let bytes = encode(&request).unwrap();
            let mut reader = &bytes[..];
            let back: Request = block_on(read_frame(&mut reader, MAX_FRAME))
                .unwrap()
                .unwrap();
            assert_eq!(back, request);
        }
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut big = (u32::MAX).to_be_bytes().to_vec();
        big.extend_from_slice(&[0; 8]);
        let mut reader = &big[..];
        let err = block_on(read_frame::<_, Request>(&mut reader, MAX_FRAME)).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(..)), "{err}");
        let mut truncated = &[0u8, 0, 0, 10, 1, 2][..];
        assert!(block_on(read_frame::<_, Request>(&mut truncated, MAX_FRAME)).is_err());
        let mut empty = &[][..];
        assert!(
            block_on(read_frame::<_, Request>(&mut empty, MAX_FRAME))
                .unwrap()
                .is_none()
        );
        let mut garbage = &[0u8, 0, 0, 3, 0xff, 0xff, 0xff][..];
        assert!(matches!(
            block_on(read_frame::<_, Request>(&mut garbage, MAX_FRAME)),
            Err(FrameError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
        }
    }
}
