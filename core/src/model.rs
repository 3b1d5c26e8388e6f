//! The entities of a referral network as the API returns them, and the inputs that create
//! and edit them. Plain records: the FFI and CLI map them one to one.

use serde::{Deserialize, Serialize};

use crate::validate::Day;
use crate::vocab::{
    AgeBand, Direction, FollowupStatus, PartnerKind, PartnerStatus, PayerCategory, ReferralOutcome,
    ReferralStatus, Role, StreamKind, TouchpointKind, TouchpointOutcome,
};

/// The practice a home belongs to, and who this device is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Identity {
    /// The practice space id.
    pub practice_id: String,
    /// The practice's name.
    pub practice_name: String,
    /// The clinician using this device.
    pub member_id: String,
    /// This device.
    pub device_id: String,
    /// The clinician's personal space id.
    pub personal_space_id: String,
}

/// A clinician of the practice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Name shown to colleagues.
    pub display_name: String,
    /// Role in the practice.
    pub role: Role,
    /// The clients this clinician is looking for, shareable as text.
    pub ideal_client: String,
    /// Whether the clinician accepts new clients.
    pub accepting: bool,
    /// Whether the clinician's record is archived (left the practice).
    pub archived: bool,
}

/// A referral stream: a family of sources whose share the practice watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Stream {
    /// Stream id.
    pub id: String,
    /// Name, unique within the practice.
    pub name: String,
    /// Kind of stream.
    pub kind: StreamKind,
}

/// A referral partner: a therapist, physician, school, group or organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Partner {
    /// Partner id.
    pub id: String,
    /// Kind of partner.
    pub kind: PartnerKind,
    /// Name of the person or group.
    pub name: String,
    /// Organization or practice they belong to.
    pub organization: Option<String>,
    /// Credentials (LCSW, MD, ...).
    pub credentials: Option<String>,
    /// US National Provider Identifier.
    pub npi: Option<String>,
    /// NUCC provider taxonomy code.
    pub taxonomy_code: Option<String>,
    /// Professional email.
    pub email: Option<String>,
    /// Professional phone.
    pub phone: Option<String>,
    /// Website.
    pub website: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Region or state.
    pub region: Option<String>,
    /// Offers telehealth.
    pub telehealth: bool,
    /// Accepts new clients.
    pub accepting: bool,
    /// Concerns they treat (concern codes).
    pub specialties: Vec<String>,
    /// Populations they serve (age bands and other population tags).
    pub populations: Vec<String>,
    /// Service formats and approaches (modality codes).
    pub modalities: Vec<String>,
    /// Payers they take (payer categories or plan tags).
    pub insurance: Vec<String>,
    /// Languages (ISO 639-1).
    pub languages: Vec<String>,
    /// Free tags.
    pub tags: Vec<String>,
    /// Who they are looking for.
    pub ideal_client: String,
    /// How the practice met them.
    pub how_we_met: String,
    /// The stream they belong to.
    pub stream_id: Option<String>,
    /// Relationship status.
    pub status: PartnerStatus,
    /// The clinician who owns the relationship.
    pub owner_member: Option<String>,
    /// This partner's follow-up backoff in days (empty: the practice default).
    pub cadence_steps: Vec<u32>,
    /// Unanswered outreach since the last reply, scheduled meeting or referral.
    pub cadence_attempt: u32,
    /// Soft-deleted.
    pub archived: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// Who changed it last.
    pub updated_by: String,
}

/// An outreach to a partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Touchpoint {
    /// Touchpoint id.
    pub id: String,
    /// The partner reached out to.
    pub partner_id: String,
    /// The clinician who reached out.
    pub member_id: String,
    /// How.
    pub kind: TouchpointKind,
    /// The day it happened.
    pub at: Day,
    /// What came of it, if known.
    pub outcome: Option<TouchpointOutcome>,
    /// A note about the exchange (screened for client identifiers).
    pub note: String,
    /// Recorded by mistake and withdrawn.
    pub archived: bool,
}

/// A referral, in either direction. Never holds a client's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Referral {
    /// Referral id.
    pub id: String,
    /// The partner on the other side.
    pub partner_id: String,
    /// The clinician on our side.
    pub member_id: String,
    /// In (they referred to us) or out (we referred to them).
    pub direction: Direction,
    /// The day it was made.
    pub at: Day,
    /// Coded presenting concerns.
    pub concerns: Vec<String>,
    /// The client's age band.
    pub age_band: Option<AgeBand>,
    /// The client's payer category.
    pub payer_category: Option<PayerCategory>,
    /// The service format asked for (modality code).
    pub modality: Option<String>,
    /// FHIR-style status.
    pub status: ReferralStatus,
    /// What came of it.
    pub outcome: Option<ReferralOutcome>,
}

/// A planned follow-up with a partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Followup {
    /// Follow-up id.
    pub id: String,
    /// The partner to follow up with.
    pub partner_id: String,
    /// The clinician who should.
    pub member_id: String,
    /// When it is due.
    pub due: Day,
    /// When it was done.
    pub done_at: Option<Day>,
    /// Days until the next one when repeated.
    pub cadence_days: Option<u32>,
    /// Why (screened for client identifiers).
    pub reason: String,
    /// Open, done or cancelled.
    pub status: FollowupStatus,
    /// How often it was snoozed.
    pub snoozed: u32,
    /// Scheduled automatically after outreach that got no response.
    pub auto: bool,
    /// For automatic follow-ups: which unanswered attempt this follows (1, 2, ...).
    pub attempt: u32,
}

/// A private note in a clinician's personal space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct Note {
    /// Note id.
    pub id: String,
    /// The partner it is about.
    pub partner_id: String,
    /// The text.
    pub body: String,
    /// The day it was written.
    pub at: Day,
    /// Soft-deleted.
    pub archived: bool,
}

/// Everything needed to add a partner; only `kind` and `name` are required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct NewPartner {
    /// Kind of partner.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub kind: Option<PartnerKind>,
    /// Name.
    pub name: String,
    /// Organization.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub organization: Option<String>,
    /// Credentials.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub credentials: Option<String>,
    /// NPI.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub npi: Option<String>,
    /// NUCC taxonomy code.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub taxonomy_code: Option<String>,
    /// Email.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub email: Option<String>,
    /// Phone.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub phone: Option<String>,
    /// Website.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub website: Option<String>,
    /// City.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub city: Option<String>,
    /// Region.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub region: Option<String>,
    /// Offers telehealth.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub telehealth: bool,
    /// Accepting new clients (default yes).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub accepting: Option<bool>,
    /// Concern codes.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub specialties: Vec<String>,
    /// Populations.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub populations: Vec<String>,
    /// Modality codes.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub modalities: Vec<String>,
    /// Payers.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub insurance: Vec<String>,
    /// ISO 639-1 languages.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub languages: Vec<String>,
    /// Tags.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub tags: Vec<String>,
    /// Their ideal client.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub ideal_client: String,
    /// How we met.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub how_we_met: String,
    /// Stream id.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub stream_id: Option<String>,
    /// Status (default prospect).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub status: Option<PartnerStatus>,
    /// Owning clinician (default: the member of this device).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub owner_member: Option<String>,
    /// Follow-up backoff in days for this partner (empty: the practice default).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub cadence_steps: Vec<u32>,
}

/// An edit to a partner: `None` leaves a field as it is; `Some("")` clears an optional text
/// field; a `Some(set)` replaces the set (values added concurrently elsewhere survive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct PartnerEdit {
    /// Kind.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub kind: Option<PartnerKind>,
    /// Name.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub name: Option<String>,
    /// Organization.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub organization: Option<String>,
    /// Credentials.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub credentials: Option<String>,
    /// NPI.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub npi: Option<String>,
    /// Taxonomy code.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub taxonomy_code: Option<String>,
    /// Email.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub email: Option<String>,
    /// Phone.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub phone: Option<String>,
    /// Website.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub website: Option<String>,
    /// City.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub city: Option<String>,
    /// Region.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub region: Option<String>,
    /// Telehealth.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub telehealth: Option<bool>,
    /// Accepting.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub accepting: Option<bool>,
    /// Specialties.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub specialties: Option<Vec<String>>,
    /// Populations.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub populations: Option<Vec<String>>,
    /// Modalities.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub modalities: Option<Vec<String>>,
    /// Insurance.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub insurance: Option<Vec<String>>,
    /// Languages.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub languages: Option<Vec<String>>,
    /// Tags.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub tags: Option<Vec<String>>,
    /// Ideal client.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub ideal_client: Option<String>,
    /// How we met.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub how_we_met: Option<String>,
    /// Stream id (`Some("")` clears it).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub stream_id: Option<String>,
    /// Status.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub status: Option<PartnerStatus>,
    /// Owner (`Some("")` clears it).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub owner_member: Option<String>,
    /// Follow-up backoff for this partner in days (`Some(vec![])`: use the practice's).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub cadence_steps: Option<Vec<u32>>,
}

/// A touchpoint to log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct NewTouchpoint {
    /// The partner.
    pub partner_id: String,
    /// How.
    pub kind: TouchpointKind,
    /// The day (default today in the user's time zone).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub at: Option<Day>,
    /// Outcome, if known.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub outcome: Option<TouchpointOutcome>,
    /// Note.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub note: String,
    /// Deliberate override: the note holds a professional's contact details.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub allow_contact_details: bool,
    /// The clinician who reached out (default: this device's member).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub member_id: Option<String>,
}

/// A referral to record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct NewReferral {
    /// The partner.
    pub partner_id: String,
    /// Direction.
    pub direction: Direction,
    /// The day (default today).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub at: Option<Day>,
    /// Concern codes (at least one).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub concerns: Vec<String>,
    /// Age band.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub age_band: Option<AgeBand>,
    /// Payer category.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub payer_category: Option<PayerCategory>,
    /// Modality code.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub modality: Option<String>,
    /// Status (default requested).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub status: Option<ReferralStatus>,
    /// The clinician on our side (default: this device's member).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub member_id: Option<String>,
}

/// A follow-up to schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct NewFollowup {
    /// The partner.
    pub partner_id: String,
    /// When it is due.
    pub due: Day,
    /// Why.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub reason: String,
    /// Repeat every this many days when completed.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub cadence_days: Option<u32>,
    /// The clinician who should follow up (default: this device's member).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub member_id: Option<String>,
}

/// Which partners a list returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Record))]
pub struct PartnerFilter {
    /// Only this kind.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub kind: Option<PartnerKind>,
    /// Only this stream.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub stream_id: Option<String>,
    /// Only this status.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub status: Option<PartnerStatus>,
    /// Only partners treating this concern.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub specialty: Option<String>,
    /// Only this city (case-insensitive).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub city: Option<String>,
    /// Include archived partners.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub include_archived: bool,
    /// Full-text search over names, organization, location, sets and statements.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub search: Option<String>,
    /// Page size (default 50, at most 1,000).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub limit: Option<u32>,
    /// Rows to skip.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub offset: Option<u32>,
}

/// Which collection an entity lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
pub enum EntityKind {
    /// The practice record itself.
    Practice,
    /// A member.
    Member,
    /// A stream.
    Stream,
    /// A partner.
    Partner,
    /// A touchpoint.
    Touchpoint,
    /// A referral.
    Referral,
    /// A follow-up.
    Followup,
    /// A personal note.
    Note,
}
