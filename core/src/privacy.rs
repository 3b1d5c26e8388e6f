//! The privacy guard: free text is screened for client identifiers before anything is written.
//!
//! Rapport keeps synced data de-identified by construction (DOMAIN.md, "Privacy rules"): a
//! note may describe a relationship with a professional, never a client. Partner fields
//! legitimately hold a professional's email, phone and office address, so the screen has
//! two strengths.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::{Error, Result};

/// How strictly a free-text field is screened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Anything that could identify a client is refused (notes, reasons).
    Strict,
    /// A professional's contact details (email, phone, office address) are allowed; record
    /// numbers, SSNs and full dates still are not. Used for partner fields, and for notes
    /// when the caller deliberately overrides.
    ProfessionalContact,
}

struct Pattern {
    what: &'static str,
    contact_detail: bool,
    regex: &'static LazyLock<Regex>,
}

macro_rules! pattern {
    ($name:ident, $re:expr) => {
        #[allow(clippy::expect_used)] // the patterns are constants, checked by the tests
        static $name: LazyLock<Regex> = LazyLock::new(|| Regex::new($re).expect("valid regex"));
    };
}

pattern!(EMAIL, r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b");
pattern!(SSN, r"\b\d{3}[- ]\d{2}[- ]\d{4}\b");
// Ten or more digits written as a phone number: (555) 123-4567, 555.123.4567, +1 555 123 4567.
pattern!(
    PHONE,
    r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b|\b\d{10,11}\b"
);
// MRN 123456, record #4411, chart no. 99812, or any run of 6+ digits.
pattern!(
    RECORD,
    r"(?i)\b(?:mrn|record|chart|case|file|patient|client|member|policy|id)\s*(?:no\.?|number|num|#|:)?\s*#?\s*[a-z]{0,3}\d{3,}\b|\b\d{6,}\b"
);
pattern!(
    DATE_NUMERIC,
    r"\b(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}[/.-]\d{1,2}[/.-]\d{1,2})\b"
);
pattern!(
    DATE_WORDS,
    r"(?i)\b(?:(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?,?\s+\d{4})\b"
);
pattern!(
    ADDRESS,
    r"(?i)\b\d{1,6}\s+(?:[a-z0-9.'-]+\s+){1,4}(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|circle|highway|hwy|parkway|pkwy)\b\.?"
);

static PATTERNS: &[Pattern] = &[
    Pattern {
        what: "a social security number",
        contact_detail: false,
        regex: &SSN,
    },
    Pattern {
        what: "an email address",
        contact_detail: true,
        regex: &EMAIL,
    },
    Pattern {
        what: "a full date (such as a date of birth)",
        contact_detail: false,
        regex: &DATE_NUMERIC,
    },
    Pattern {
        what: "a full date (such as a date of birth)",
        contact_detail: false,
        regex: &DATE_WORDS,
    },
    Pattern {
        what: "a phone number",
        contact_detail: true,
        regex: &PHONE,
    },
    Pattern {
        what: "a street address",
        contact_detail: true,
        regex: &ADDRESS,
    },
    Pattern {
        what: "a record or ID number",
        contact_detail: false,
        regex: &RECORD,
    },
];

/// Screens `text` for client identifiers; the error names `field` and what was found.
pub fn screen(field: &str, text: &str, strength: Screen) -> Result<()> {
    // Where contact details are allowed, remove them first so that the digits of a phone
    // number or an email are not mistaken for a record number.
    let text = match strength {
        Screen::Strict => std::borrow::Cow::Borrowed(text),
        Screen::ProfessionalContact => {
            let without_email = EMAIL.replace_all(text, " ");
            std::borrow::Cow::Owned(PHONE.replace_all(&without_email, " ").into_owned())
        }
    };
    for pattern in PATTERNS {
        if strength == Screen::ProfessionalContact && pattern.contact_detail {
            continue;
        }
        if pattern.regex.is_match(&text) {
            return Err(Error::Identifier {
                field: field.to_string(),
                what: pattern.what.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        match screen("note", text, Screen::Strict) {
            Err(Error::Identifier { field, what }) => {
                assert_eq!(field, "note");
                what
            }
            other => panic!("{text:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn ordinary_notes_pass() {
        for text in [
            "Coffee with Dr. Lee; she takes couples on Tuesdays.",
            "Left a voicemail, will try again in two weeks.",
            "Met at the spring networking lunch, 2 kids groups running.",
            "Prefers referrals for teens with anxiety; 12 week DBT group.",
            "Office moved to the second floor.",
        ] {
            screen("note", text, Screen::Strict).unwrap();
        }
    }

    #[test]
    fn each_identifier_is_named() {
        assert_eq!(refused("client jane.doe@example.com"), "an email address");
        assert_eq!(refused("call her at (555) 123-4567"), "a phone number");
        assert_eq!(refused("cell 555.123.4567"), "a phone number");
        assert_eq!(refused("SSN 123-45-6789"), "a social security number");
        assert_eq!(refused("MRN 448812"), "a record or ID number");
        assert_eq!(refused("chart #4411"), "a record or ID number");
        assert_eq!(
            refused("DOB 03/14/1987"),
            "a full date (such as a date of birth)"
        );
        assert_eq!(
            refused("born 1987-03-14"),
            "a full date (such as a date of birth)"
        );
        assert_eq!(
            refused("born March 14, 1987"),
            "a full date (such as a date of birth)"
        );
        assert_eq!(
            refused("born 14th of March 1987"),
            "a full date (such as a date of birth)"
        );
        assert_eq!(refused("lives at 42 Elm Street"), "a street address");
    }

    #[test]
    fn professional_contact_allows_contact_details_only() {
        let ok = "Reach Dr. Lee at lee@clinic.example or (555) 123-4567, 12 Main St.";
        screen("how_we_met", ok, Screen::ProfessionalContact).unwrap();
        screen(
            "how_we_met",
            "office 5551234567",
            Screen::ProfessionalContact,
        )
        .unwrap();
        assert!(screen("how_we_met", "SSN 123-45-6789", Screen::ProfessionalContact).is_err());
        assert!(screen("how_we_met", "MRN 448812", Screen::ProfessionalContact).is_err());
        assert!(screen("how_we_met", "DOB 3/14/1987", Screen::ProfessionalContact).is_err());
    }
}
