//! Coded vocabularies: the closed lists a field may take, each with its stable wire code.
//!
//! Codes are what the document, the read model, JSON and the bindings carry; they never
//! change once shipped. Where a list is open (concerns, modalities), custom codes are
//! written `custom:<slug>`.

use crate::error::{Error, Result};
use crate::privacy;

/// Defines a closed vocabulary: an enum, its codes, parsing with a helpful error.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable wire code.
            pub fn code(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }

            /// Parses a wire code; the error lists the accepted codes.
            pub fn parse(code: &str) -> Result<Self> {
                Self::parse_for($field, code)
            }

            /// Parses a value as a person types it (see [`resolve`]), naming `field` in
            /// the error, which offers the nearest code and lists them all.
            pub fn parse_for(field: &str, code: &str) -> Result<Self> {
                const CODES: &[&str] = &[$($code),+];
                let found = resolve(field, CODES, code)?;
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.code() == found)
                    .ok_or_else(|| Error::Internal(format!("{found} has no {field} value")))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.code())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let code = String::deserialize(d)?;
                Self::parse(&code).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }
    };
}

vocabulary!(
    /// What kind of referral partner this is.
    PartnerKind, "kind" {
        /// Another therapist or counsellor.
        Therapist = "therapist",
        /// A physician, psychiatrist or other prescriber.
        Physician = "physician",
        /// A school, counsellor's office or university service.
        School = "school",
        /// A community group, support group or local network.
        CommunityGroup = "community_group",
        /// An organization: clinic, agency, employer, EAP.
        Organization = "organization",
        /// Anything else.
        Other = "other",
    }
);

vocabulary!(
    /// Where a relationship with a partner stands.
    PartnerStatus, "status" {
        /// Not contacted yet or no relationship yet.
        Prospect = "prospect",
        /// An active referral relationship.
        Active = "active",
        /// Paused on purpose (e.g. they are not taking referrals).
        Paused = "paused",
    }
);

vocabulary!(
    /// A clinician's role in the practice.
    Role, "role" {
        /// Created the practice; can do everything.
        Owner = "owner",
        /// Can invite and remove colleagues.
        Admin = "admin",
        /// A colleague.
        Member = "member",
    }
);

vocabulary!(
    /// What kind of referral stream a stream is.
    StreamKind, "stream kind" {
        /// Other therapists and counsellors.
        Professional = "professional",
        /// Physicians, psychiatry, hospitals.
        Medical = "medical",
        /// Community groups and local networks.
        Community = "community",
        /// Schools and universities.
        School = "school",
        /// Directories, website, search.
        Online = "online",
        /// Anything else.
        Other = "other",
    }
);

vocabulary!(
    /// How an outreach happened.
    TouchpointKind, "kind" {
        /// A phone or video call.
        Call = "call",
        /// An email.
        Email = "email",
        /// A meeting.
        Meeting = "meeting",
        /// Coffee or lunch.
        Coffee = "coffee",
        /// An event or group meeting attended.
        Event = "event",
        /// A letter or card.
        Letter = "letter",
        /// Anything else.
        Other = "other",
    }
);

vocabulary!(
    /// What came of an outreach. "No response" is neutral: it keeps the cadence going.
    TouchpointOutcome, "outcome" {
        /// We reached them; they replied.
        Reached = "reached",
        /// No response yet: usually neglect, not competition.
        NoResponse = "no_response",
        /// They declined.
        Declined = "declined",
        /// A meeting or call was scheduled.
        Scheduled = "scheduled",
    }
);

vocabulary!(
    /// Which way a referral went.
    Direction, "direction" {
        /// A partner referred a client to us.
        In = "in",
        /// We referred a client to a partner.
        Out = "out",
    }
);

vocabulary!(
    /// Referral status, after FHIR RequestStatus / ReferralRequest.
    ReferralStatus, "status" {
        /// Being prepared.
        Draft = "draft",
        /// Sent or received, not acted on yet.
        Requested = "requested",
        /// Accepted and in progress.
        Active = "active",
        /// Paused.
        OnHold = "on_hold",
        /// Withdrawn before completion.
        Cancelled = "cancelled",
        /// Done.
        Completed = "completed",
        /// Recorded by mistake.
        EnteredInError = "entered_in_error",
    }
);

vocabulary!(
    /// What came of a referral.
    ReferralOutcome, "outcome" {
        /// An appointment was scheduled.
        Scheduled = "scheduled",
        /// The intake took place.
        IntakeHeld = "intake_held",
        /// Not a fit for the receiving clinician.
        NotAFit = "not_a_fit",
        /// The client never responded.
        NoResponse = "no_response",
    }
);

vocabulary!(
    /// A client's age band: never an exact age or birth date.
    AgeBand, "age_band" {
        /// 0-12.
        Child = "child",
        /// 13-17.
        Adolescent = "adolescent",
        /// 18-25.
        YoungAdult = "young_adult",
        /// 26-64.
        Adult = "adult",
        /// 65 and over.
        OlderAdult = "older_adult",
    }
);

vocabulary!(
    /// How a client pays: a category, never a plan or member number.
    PayerCategory, "payer_category" {
        /// Commercial insurance.
        Commercial = "commercial",
        /// Medicaid or a state plan.
        Medicaid = "medicaid",
        /// Medicare.
        Medicare = "medicare",
        /// TRICARE or VA.
        Military = "military",
        /// An employee assistance programme.
        Eap = "eap",
        /// Self-pay at full fee.
        SelfPay = "self_pay",
        /// Self-pay on a sliding scale.
        SlidingScale = "sliding_scale",
        /// Anything else.
        Other = "other",
    }
);

vocabulary!(
    /// Follow-up state.
    FollowupStatus, "status" {
        /// Still to do.
        Open = "open",
        /// Done.
        Done = "done",
        /// Cancelled.
        Cancelled = "cancelled",
    }
);

/// Presenting concerns shipped with Rapport; custom ones are written `custom:<slug>`.
pub const CONCERNS: &[&str] = &[
    "anxiety",
    "depression",
    "trauma_ptsd",
    "couples",
    "family",
    "grief",
    "substance_use",
    "eating_disorders",
    "ocd",
    "adhd",
    "autism",
    "child_adolescent",
    "perinatal",
    "lgbtq_affirming",
    "bipolar",
    "psychosis",
    "personality_disorders",
    "self_harm",
    "anger",
    "life_transitions",
    "chronic_illness",
    "sleep",
    "career_stress",
    "sex_therapy",
];

/// Service formats a partner offers and a referral asks for; custom ones are `custom:<slug>`.
pub const MODALITIES: &[&str] = &[
    "individual",
    "couples",
    "family",
    "group",
    "medication_management",
    "assessment",
    "intensive_outpatient",
    "cbt",
    "dbt",
    "emdr",
    "act",
    "play_therapy",
    "psychodynamic",
];

/// ISO 639-1 language codes.
pub const LANGUAGES: &[&str] = &[
    "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bi",
    "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de",
    "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy",
    "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia",
    "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk",
    "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln", "lo",
    "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb", "nd",
    "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi", "pl",
    "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "si", "sk", "sl",
    "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti", "tk",
    "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo", "wa",
    "wo", "xh", "yi", "yo", "za", "zh", "zu",
];

/// Prefix of a user-defined code in an open vocabulary.
pub const CUSTOM_PREFIX: &str = "custom:";

/// Finds the code a person means in a vocabulary: the code itself in any case, its words
/// written with spaces, hyphens or slashes ("community group" is `community_group`), or
/// an unambiguous start of the code or of one of its words, three letters at least
/// ("trauma" and "ptsd" are `trauma_ptsd`). `None` when nothing or more than one code
/// fits; [`resolve`] says which.
pub fn find<'a>(known: &[&'a str], typed: &str) -> Option<&'a str> {
    match candidates(known, typed).as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// The codes `typed` may mean (an exact code, or else every code it starts).
fn candidates<'a>(known: &[&'a str], typed: &str) -> Vec<&'a str> {
    // Words joined by one '_', whatever separated them.
    let wanted = slugify(typed)
        .split(['_', '-'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if let Some(exact) = known.iter().find(|k| **k == wanted) {
        return vec![exact];
    }
    if wanted.len() < 3 {
        return Vec::new();
    }
    known
        .iter()
        .copied()
        .filter(|k| {
            std::iter::once(0)
                .chain(k.match_indices('_').map(|(i, _)| i + 1))
                .any(|word| k[word..].starts_with(&wanted))
        })
        .collect()
}

/// [`find`], or an error naming `field` that offers the codes `typed` could mean, or the
/// nearest one, and lists them all.
pub fn resolve<'a>(field: &str, known: &[&'a str], typed: &str) -> Result<&'a str> {
    let found = candidates(known, typed);
    match found.as_slice() {
        [one] => Ok(one),
        [] => {
            let hint = match nearest(known, typed) {
                Some(near) => format!("did you mean {near}? "),
                None => String::new(),
            };
            Err(Error::invalid(
                field,
                format!(
                    "unknown value {typed:?}; {hint}use one of: {}",
                    known.join(", ")
                ),
            ))
        }
        many => Err(Error::invalid(
            field,
            format!("{typed:?} could be {}; say which", many.join(" or ")),
        )),
    }
}

/// Normalises a code in an open vocabulary (`known`, or `custom:<slug>`). A custom slug is
/// screened like free text; an unknown code is answered with the nearest known one, never
/// with the input made into a code (a client's name typed into the field must not come
/// back as `custom:jane_doe`).
pub fn open_code(field: &str, known: &[&str], value: &str) -> Result<String> {
    let code = value.trim().to_ascii_lowercase();
    if !code.starts_with(CUSTOM_PREFIX) {
        match candidates(known, value).as_slice() {
            [one] => return Ok((*one).to_string()),
            [] => {}
            many => {
                return Err(Error::invalid(
                    field,
                    format!("{value:?} could be {}; say which", many.join(" or ")),
                ));
            }
        }
    }
    if let Some(slug) = code.strip_prefix(CUSTOM_PREFIX) {
        if is_slug(slug) {
            privacy::screen_code(field, slug)?;
            return Ok(code);
        }
        return Err(Error::invalid(
            field,
            "a custom code must be `custom:` followed by 1-40 lowercase letters, digits, '_' \
             or '-'",
        ));
    }
    let hint = match nearest(known, &code) {
        Some(near) => format!("did you mean {near}? "),
        None => String::new(),
    };
    Err(Error::invalid(
        field,
        format!(
            "unknown code; {hint}use one of: {}; or a code the practice defines, such as \
             custom:school_refusal (a short name for the concern itself, never a person)",
            known.join(", ")
        ),
    ))
}

/// The known code closest to `typed`, when one is close enough to be a slip.
fn nearest<'a>(known: &[&'a str], typed: &str) -> Option<&'a str> {
    let typed = slugify(typed);
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(k, &typed), *k))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A language as its ISO 639-1 code, from the code or the language's English name (as
/// ISO 639 writes it, `isolang`) in any case: "Spanish" is `es`.
pub fn language(field: &str, value: &str) -> Result<String> {
    let code = value.trim().to_ascii_lowercase();
    if LANGUAGES.contains(&code.as_str()) {
        return Ok(code);
    }
    let named = LANGUAGES.iter().find(|c| {
        isolang::Language::from_639_1(c).is_some_and(|l| {
            l.to_name()
                .split([';', ','])
                .any(|name| name.trim().eq_ignore_ascii_case(value.trim()))
        })
    });
    match named {
        Some(code) => Ok((*code).to_string()),
        None => Err(Error::invalid(
            field,
            format!(
                "{value:?} is not a language this knows; use its ISO 639-1 code or English \
                 name (e.g. en or English, es or Spanish, zh or Chinese)"
            ),
        )),
    }
}

/// A tag or free set value: a short slug.
pub fn tag(field: &str, value: &str) -> Result<String> {
    let code = slugify(value);
    if is_slug(&code) {
        privacy::screen(field, value, privacy::Screen::Strict)?;
        privacy::screen_code(field, &code)?;
        Ok(code)
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} must be 1-40 letters, digits, '_' or '-'"),
        ))
    }
}

fn is_slug(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn slugify(s: &str) -> String {
    s.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_vocabulary_round_trips_and_names_field() {
        for kind in PartnerKind::ALL {
            assert_eq!(PartnerKind::parse(kind.code()).unwrap(), *kind);
        }
        assert_eq!(
            PartnerKind::parse("Community-Group").unwrap(),
            PartnerKind::CommunityGroup
        );
        let err = ReferralStatus::parse_for("status", "pending")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid status"), "{err}");
        assert!(err.contains("entered_in_error"), "{err}");
    }

    #[test]
    fn open_vocabulary_accepts_known_and_custom() {
        assert_eq!(
            open_code("concerns", CONCERNS, " Anxiety ").unwrap(),
            "anxiety"
        );
        assert_eq!(
            open_code("concerns", CONCERNS, "custom:gambling").unwrap(),
            "custom:gambling"
        );
        let err = open_code("concerns", CONCERNS, "gambling")
            .unwrap_err()
            .to_string();
        assert!(err.contains("custom:"), "{err}");
        assert!(open_code("concerns", CONCERNS, "custom:").is_err());
        assert!(open_code("concerns", CONCERNS, "custom:Has Space").is_err());
    }

    #[test]
    fn an_unknown_code_is_never_suggested_back_as_a_custom_code() {
        let err = open_code("concerns", CONCERNS, "Jane Doe")
            .unwrap_err()
            .to_string();
        assert!(!err.to_lowercase().contains("jane"), "{err}");
        assert!(!err.contains("did you mean"), "{err}");
        let err = open_code("concerns", CONCERNS, "anxeity")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean anxiety?"), "{err}");
    }

    #[test]
    fn custom_codes_and_tags_holding_identifiers_are_refused() {
        for refused in [
            open_code("concerns", CONCERNS, "custom:jane-doe-1987-03-14"),
            open_code("modality", MODALITIES, "custom:mrn-448812"),
            tag("tags", "Jane Doe 555-123-4567"),
            tag("tags", "DOB 14-Mar-1987"),
        ] {
            assert!(
                matches!(refused, Err(Error::Identifier { .. })),
                "{refused:?}"
            );
        }
        assert_eq!(tag("tags", "Prescriber").unwrap(), "prescriber");
    }

    #[test]
    fn languages_are_iso_639_1_codes_or_their_english_names() {
        for (typed, code) in [
            ("ES", "es"),
            ("Spanish", "es"),
            ("spanish", "es"),
            (" Vietnamese ", "vi"),
            ("Chinese", "zh"),
            ("American Sign Language", ""),
            ("Klingon", ""),
        ] {
            match language("languages", typed) {
                Ok(found) => assert_eq!(found, code, "{typed}"),
                Err(e) => {
                    assert!(code.is_empty(), "{typed}: {e}");
                    assert!(e.to_string().contains("ISO 639-1 code or English"), "{e}");
                }
            }
        }
    }

    /// What people type, each face alike: codes, words, and unambiguous starts.
    #[test]
    fn values_are_taken_as_people_type_them() {
        for (typed, code) in [
            ("trauma", "trauma_ptsd"),
            ("PTSD", "trauma_ptsd"),
            ("Trauma / PTSD", "trauma_ptsd"),
            ("trauma-ptsd", "trauma_ptsd"),
            ("anx", "anxiety"),
            ("Eating disorders", "eating_disorders"),
        ] {
            assert_eq!(
                open_code("concerns", CONCERNS, typed).unwrap(),
                code,
                "{typed}"
            );
        }
        assert_eq!(
            PartnerKind::parse("community group").unwrap(),
            PartnerKind::CommunityGroup
        );
        assert_eq!(
            PartnerKind::parse("Community-Group").unwrap(),
            PartnerKind::CommunityGroup
        );
        assert_eq!(
            TouchpointKind::parse("EMAIL").unwrap(),
            TouchpointKind::Email
        );
        assert_eq!(
            TouchpointOutcome::parse("no response").unwrap(),
            TouchpointOutcome::NoResponse
        );
        // Too short to guess, ambiguous, or a slip: refused, and told why.
        assert!(open_code("concerns", CONCERNS, "an").is_err());
        let err = TouchpointOutcome::parse("no").unwrap_err().to_string();
        assert!(err.contains("use one of"), "{err}");
        let err = PartnerKind::parse("communty group")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean community_group"), "{err}");
    }

    #[test]
    fn a_start_that_fits_several_codes_is_refused_with_them() {
        let err = resolve("concerns", &["child_adolescent", "chronic_illness"], "ch")
            .unwrap_err()
            .to_string();
        assert!(err.contains("use one of"), "too short: {err}");
        let err = resolve("x", &["self_harm", "self_esteem"], "self")
            .unwrap_err()
            .to_string();
        assert!(err.contains("self_harm or self_esteem"), "{err}");
        assert_eq!(
            find(&["self_harm", "self_esteem"], "self h"),
            Some("self_harm")
        );
    }

    #[test]
    fn tags_are_slugs() {
        assert_eq!(
            tag("tags", "Met at Conference").unwrap(),
            "met_at_conference"
        );
        assert!(tag("tags", "").is_err());
        assert!(tag("tags", &"x".repeat(41)).is_err());
    }
}
