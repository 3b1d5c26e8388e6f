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
/// one-time token that lets one practice register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupCode {
    /// `host:port` devices dial.
    pub addr: String,
    /// SHA-256 of the relay's certificate.
    pub fingerprint: [u8; 32],
    /// One-time registration token.
    pub token: Vec<u8>,
}

/// What an invite code carries. It holds the space's current key: share it only with the
/// colleague it is for, through a channel you trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteCode {
    /// `host:port` devices dial.
    pub addr: String,
    /// SHA-256 of the relay's certificate.
    pub fingerprint: [u8; 32],
    /// The space to join.
    pub space: SpaceId,
    /// The role the joiner gets.
    pub role: Role,
    /// Single-use invite token the relay checks.
    pub token: Vec<u8>,
    /// Key epoch of `key`.
    pub epoch: u32,
    /// The space's content key for `epoch`.
    pub key: [u8; 32],
    /// Unix seconds after which the relay refuses the token.
    pub expires_at: i64,
    /// For a clinician's own new device: the member it belongs to (none for a colleague).
    pub member: Option<String>,
    /// For a clinician's own new device: their personal space.
    pub personal: Option<PersonalInvite>,
}

/// The personal-space part of an invite for a clinician's own new device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalInvite {
    /// The personal space.
    pub space: SpaceId,
    /// Single-use invite token for it.
    pub token: Vec<u8>,
    /// Key epoch.
    pub epoch: u32,
    /// The personal space's key.
    pub key: [u8; 32],
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
}

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
    postcard::from_bytes(payload).map_err(|_| CodeError::Damaged(kind))
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
        encode(INVITE_PREFIX, self)
    }

    /// Parses the text form (whitespace and line breaks are ignored).
    pub fn decode(text: &str) -> Result<InviteCode, CodeError> {
        decode("invite", INVITE_PREFIX, text)
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
            role: Role::Member,
            token: vec![3; 32],
            epoch: 1,
            key: [4; 32],
            expires_at: 1_900_000_000,
            member: Some("m".into()),
            personal: Some(PersonalInvite {
                space: SpaceId([5; 16]),
                token: vec![6],
                epoch: 1,
                key: [7; 32],
            }),
        };
        assert_eq!(InviteCode::decode(&invite.encode()).unwrap(), invite);
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
