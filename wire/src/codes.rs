//! The codes people copy between devices: a relay's setup code and a practice's invite
//! code. Compact text (fit for a QR code or a message), with a checksum so that a code cut
//! short or mistyped is refused with a clear message instead of half-working.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::frames::Role;
use crate::ids::SpaceId;

/// What a relay's setup code carries: where to dial, which certificate to trust, and a
/// one-time token that lets one practice register. Its `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupCode {
    /// `host:port` devices dial.
    pub addr: String,
    /// SHA-256 of the relay's certificate.
    pub fingerprint: [u8; 32],
    /// One-time registration token.
    pub token: Vec<u8>,
}

/// What an invite code carries: where to dial and which certificate to trust, the space
/// and its membership log's anchor (so the joiner checks the whole log against what its
/// colleague handed it, not against the relay), and the invite's one-time secret. No
/// content key: the practice's keys reach the joiner only through the log, sealed to the
/// invite, and the code alone opens nothing. Its `Debug` leaves the secrets out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteCode {
    /// `host:port` devices dial.
    pub addr: String,
    /// SHA-256 of the relay's certificate.
    pub fingerprint: [u8; 32],
    /// The space to join.
    pub space: SpaceId,
    /// The hash of the space's genesis operation.
    pub anchor: [u8; 32],
    /// The invite's one-time secret.
    pub secret: [u8; 32],
    /// The role the joiner gets (shown before joining; the log decides).
    pub role: Role,
    /// Unix seconds after which the invite cannot be used (shown; the log decides).
    pub expires_at: i64,
    /// For a clinician's own new device: the member it belongs to (none for a colleague).
    pub member: Option<String>,
    /// For a clinician's own new device: their personal space.
    pub personal: Option<PersonalInvite>,
}

/// The personal-space part of an invite for a clinician's own new device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalInvite {
    /// The personal space.
    pub space: SpaceId,
    /// Its log's anchor.
    pub anchor: [u8; 32],
    /// The invite's one-time secret for it.
    pub secret: [u8; 32],
}

// A code is a secret: whoever holds it can register a practice or join one, so what may
// end up in a log or a panic message shows where it points, never the token or secret.
const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetupCode")
            .field("addr", &self.addr)
            .field("token", &REDACTED)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteCode")
            .field("addr", &self.addr)
            .field("space", &self.space)
            .field("secret", &REDACTED)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .field("personal", &self.personal)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PersonalInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonalInvite")
            .field("space", &self.space)
            .field("secret", &REDACTED)
            .finish_non_exhaustive()
    }
}

/// Why a code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// It does not start like a code of this kind.
    #[error("this is not a Rapport {0} code (it should start with {1})")]
    WrongKind(&'static str, &'static str),
    /// It has characters a code never has.
    #[error("the {0} code contains characters that are not part of a code; copy it again")]
    BadCharacters(&'static str),
    /// The checksum does not match: truncated or mistyped.
    #[error("the {0} code is damaged or incomplete; copy it again in full")]
    Damaged(&'static str),
    /// A code made by an older Rapport, which this one no longer takes.
    #[error("this {0} code was made by an older version of Rapport; ask for a new one")]
    Outdated(&'static str),
}

/// The first byte of an invite code's payload since membership logs (an older code's
/// payload starts with a short length, below 0x80).
const INVITE_VERSION: u8 = 0xf2;

const SETUP_PREFIX: &str = "RAPPORT-SETUP-";
const INVITE_PREFIX: &str = "RAPPORT-INVITE-";

fn encode<T: Serialize>(prefix: &str, value: &T) -> String {
    // Serializing our own plain struct into memory cannot fail.
    let mut payload = postcard::to_allocvec(value).unwrap_or_default();
    let check = Sha256::digest(&payload);
    payload.extend_from_slice(&check[..4]);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(payload))
}

fn decode<T: DeserializeOwned>(
    kind: &'static str,
    prefix: &'static str,
    text: &str,
) -> Result<T, CodeError> {
    let payload = decode_bytes(kind, prefix, text)?;
    postcard::from_bytes(&payload).map_err(|_| CodeError::Damaged(kind))
}

/// The checked payload of a code.
fn decode_bytes(
    kind: &'static str,
    prefix: &'static str,
    text: &str,
) -> Result<Vec<u8>, CodeError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let body = compact
        .strip_prefix(prefix)
        .ok_or(CodeError::WrongKind(kind, prefix))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| CodeError::BadCharacters(kind))?;
    if bytes.len() < 5 {
        return Err(CodeError::Damaged(kind));
    }
    let (payload, check) = bytes.split_at(bytes.len() - 4);
    if Sha256::digest(payload)[..4] != *check {
        return Err(CodeError::Damaged(kind));
    }
    Ok(payload.to_vec())
}

impl SetupCode {
    /// The text form.
    pub fn encode(&self) -> String {
        encode(SETUP_PREFIX, self)
    }

    /// Parses the text form (whitespace and line breaks are ignored).
    pub fn decode(text: &str) -> Result<SetupCode, CodeError> {
        decode("setup", SETUP_PREFIX, text)
    }
}

impl InviteCode {
    /// The text form.
    pub fn encode(&self) -> String {
        encode(INVITE_PREFIX, &(INVITE_VERSION, self))
    }

    /// Parses the text form (whitespace and line breaks are ignored).
    pub fn decode(text: &str) -> Result<InviteCode, CodeError> {
        let payload: Vec<u8> = decode_bytes("invite", INVITE_PREFIX, text)?;
        match payload.split_first() {
            Some((&INVITE_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|_| CodeError::Damaged("invite"))
            }
            _ => Err(CodeError::Outdated("invite")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> SetupCode {
        SetupCode {
            addr: "relay.example.org:4433".into(),
            fingerprint: [7; 32],
            token: vec![1, 2, 3, 4],
        }
    }

    #[test]
    fn codes_round_trip_and_survive_line_breaks() {
        let text = setup().encode();
        assert!(text.starts_with("RAPPORT-SETUP-"));
        let wrapped: String = text
            .chars()
            .enumerate()
            .flat_map(|(i, c)| if i % 20 == 19 { vec![c, '\n'] } else { vec![c] })
            .collect();
        assert_eq!(SetupCode::decode(&wrapped).unwrap(), setup());
        let invite = InviteCode {
            addr: "127.0.0.1:4433".into(),
            fingerprint: [1; 32],
            space: SpaceId([2; 16]),
            anchor: [3; 32],
            secret: [4; 32],
            role: Role::Member,
            expires_at: 1_900_000_000,
            member: Some("m".into()),
            personal: Some(PersonalInvite {
                space: SpaceId([5; 16]),
                anchor: [6; 32],
                secret: [7; 32],
            }),
        };
        assert_eq!(InviteCode::decode(&invite.encode()).unwrap(), invite);
        // Debug output (logs, panics) never carries a token or a secret.
        let setup_debug = format!("{:?}", setup());
        assert!(setup_debug.contains("relay.example.org") && !setup_debug.contains("[1, 2, 3, 4]"));
        let invite_debug = format!("{invite:?}");
        assert!(invite_debug.contains("127.0.0.1:4433"), "{invite_debug}");
        for secret in ["4, 4, 4", "7, 7, 7", "secret: ["] {
            assert!(!invite_debug.contains(secret), "{invite_debug}");
        }
        // A code from before membership logs carried the practice key: it is refused
        // as outdated, not as damaged.
        let old = encode(INVITE_PREFIX, &("127.0.0.1:4433".to_string(), [1u8; 32]));
        assert_eq!(InviteCode::decode(&old), Err(CodeError::Outdated("invite")));
    }

    #[test]
    fn damaged_codes_are_refused_clearly() {
        let text = setup().encode();
        assert_eq!(
            SetupCode::decode(&text[..text.len() - 3]),
            Err(CodeError::Damaged("setup"))
        );
        let mut typo: Vec<char> = text.chars().collect();
        let i = typo.len() - 10;
        typo[i] = if typo[i] == 'A' { 'B' } else { 'A' };
        assert_eq!(
            SetupCode::decode(&typo.into_iter().collect::<String>()),
            Err(CodeError::Damaged("setup"))
        );
        assert!(matches!(
            InviteCode::decode(&text),
            Err(CodeError::WrongKind("invite", _))
        ));
        assert_eq!(
            SetupCode::decode("RAPPORT-SETUP-***"),
            Err(CodeError::BadCharacters("setup"))
        );
        assert!(
            SetupCode::decode("")
                .unwrap_err()
                .to_string()
                .contains("should start with")
        );
    }
}
