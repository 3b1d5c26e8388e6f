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
    found: fn(&str) -> bool,
}

macro_rules! pattern {
    ($name:ident, $re:expr) => {
        #[allow(clippy::expect_used)] // the patterns are constants, checked by the tests
        static $name: LazyLock<Regex> = LazyLock::new(|| Regex::new($re).expect("valid regex"));
    };
}

pattern!(EMAIL, r"(?i)\b[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}\b");
// 123-45-6789, 123.45.6789, 123 45 6789, or digits right after "SSN" / "social security".
pattern!(
    SSN,
    r"(?i)\b\d{3}[-. ]\d{2}[-. ]\d{4}\b|\b(?:ssn|ss#|social\s+security(?:\s+(?:number|no\.?|#))?)\W{0,3}\d"
);
// Written the North American way: (555) 123-4567, 555.123.4567, +1 555 123 4567, 555-1234;
// ten or eleven digits in a row.
pattern!(
    PHONE,
    r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b|\b\d{10,11}\b|\b\d{3}-\d{4}\b"
);
// A run of digit groups joined by single separators, as phone numbers are written
// everywhere else: +44 20 7946 0958, 020 7946 0958, (02) 9876 5432, 01 23 45 67 89.
pattern!(DIGIT_RUN, r"\+?\(?\d+\)?(?:[ .\-/]?\(?\d+\)?)+");
// MRN 123456, record #4411, chart no. 99812, ID: A-4471, or any run of 6+ digits.
pattern!(
    RECORD,
    r"(?i)\b(?:mrn|record|chart|case|file|patient|client|member|policy|id)\s*(?:no\.?|number|num|#|:)?\s*#?\s*[a-z]{0,3}-?\d{3,}\b|\b\d{6,}\b"
);
// 3/14/1987, 14.03.87, 1987-03-14, 14 03 1987.
pattern!(
    DATE_NUMERIC,
    r"\b(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}[/.-]\d{1,2}[/.-]\d{1,2}|\d{1,2} \d{1,2} (?:19|20)\d{2})\b"
);
// March 14, 1987; 14-Mar-1987; 14Mar87; the 14th of March '87; 1987 Mar 14.
pattern!(
    DATE_WORDS,
    r"(?ix)
    (?:\b\d{1,2}(?:st|nd|rd|th)?[\s./-]*(?:of\s+)?MONTH\.?,?(?:[\s./-]*(?:\d{4}|'\d{2})|[./-]\d{2})\b)
    | (?:\bMONTH\.?[\s./-]*\d{1,2}(?:st|nd|rd|th)?,?[\s./-]*(?:\d{4}|'\d{2})\b)
    | (?:\b\d{4}[\s./-]*MONTH\.?[\s./-]*\d{1,2}\b)
    "
    .replace("MONTH", MONTH)
    .as_str()
);
// DOB 3-14, date of birth: 14, birthday 3/14: a date of birth, even in part.
pattern!(
    BIRTH,
    r"(?i)\b(?:dob|d\.o\.b|date\s+of\s+birth|birth\s*date|birthday)\b\W{0,3}\d"
);
pattern!(
    ADDRESS,
    r"(?i)\b\d{1,6}\s+(?:[a-z0-9.'-]+\s+){1,4}(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|circle|highway|hwy|parkway|pkwy)\b\.?"
);

const MONTH: &str = "(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";

/// Where a phone number is written, in any of the formats the screen knows.
fn phone_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans: Vec<_> = PHONE.find_iter(text).map(|m| m.range()).collect();
    spans.extend(
        DIGIT_RUN
            .find_iter(text)
            .filter(|m| looks_like_phone(m.as_str()))
            .map(|m| m.range()),
    );
    spans
}

/// A digit run is a phone number when it is not an SSN or a date, and starts with `+`
/// and has at least seven digits, or has at least nine digits in two or more groups, unless every group is a year (a list
/// such as "2019 2020 2021").
fn looks_like_phone(run: &str) -> bool {
    let digits = run.bytes().filter(u8::is_ascii_digit).count();
    let groups: Vec<&str> = run
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    if SSN.is_match(run) || DATE_NUMERIC.is_match(run) {
        // Written like a phone number, but what it really is gets found (and named).
        return false;
    }
    if run.starts_with('+') {
        return digits >= 7;
    }
    let years = groups
        .iter()
        .all(|g| g.len() == 4 && (g.starts_with("19") || g.starts_with("20")));
    digits >= 9 && groups.len() >= 2 && !years
}

static PATTERNS: &[Pattern] = &[
    Pattern {
        what: "a social security number",
        contact_detail: false,
        found: |t| SSN.is_match(t),
    },
    Pattern {
        what: "an email address",
        contact_detail: true,
        found: |t| EMAIL.is_match(t),
    },
    Pattern {
        what: "a full date (such as a date of birth)",
        contact_detail: false,
        found: |t| DATE_NUMERIC.is_match(t) || DATE_WORDS.is_match(t),
    },
    Pattern {
        what: "a date of birth",
        contact_detail: false,
        found: |t| BIRTH.is_match(t),
    },
    Pattern {
        what: "a phone number",
        contact_detail: true,
        found: |t| !phone_spans(t).is_empty(),
    },
    Pattern {
        what: "a street address",
        contact_detail: true,
        found: |t| ADDRESS.is_match(t),
    },
    Pattern {
        what: "a record or ID number",
        contact_detail: false,
        found: |t| RECORD.is_match(t),
    },
];

/// Screens `text` for client identifiers; the error names `field` and what was found.
pub fn screen(field: &str, text: &str, strength: Screen) -> Result<()> {
    // Where contact details are allowed, remove them first so that the digits of a phone
    // number or an email are not mistaken for a record number.
    let text = match strength {
        Screen::Strict => std::borrow::Cow::Borrowed(text),
        Screen::ProfessionalContact => {
            let mut without = EMAIL.replace_all(text, " ").into_owned();
            let mut spans = phone_spans(&without);
            spans.sort_by_key(|r| r.start);
            // Two patterns may find the same number: merge overlapping spans, then blank
            // them from the end so that earlier offsets stay valid.
            let mut merged: Vec<std::ops::Range<usize>> = Vec::new();
            for span in spans {
                match merged.last_mut() {
                    Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
                    _ => merged.push(span),
                }
            }
            for span in merged.into_iter().rev() {
                without.replace_range(span, " ");
            }
            std::borrow::Cow::Owned(without)
        }
    };
    for pattern in PATTERNS {
        if strength == Screen::ProfessionalContact && pattern.contact_detail {
            continue;
        }
        if (pattern.found)(&text) {
            return Err(Error::Identifier {
                field: field.to_string(),
                what: pattern.what.to_string(),
            });
        }
    }
    Ok(())
}

/// Screens a code or tag someone made up (the slug of `custom:<slug>`, a free tag) as
/// strictly as a note: "jane-doe-1987-03-14" must not become a code that syncs to every
/// device. Its separators are read both as dashes and as spaces, so that a date or a
/// phone number written with '_' is found too.
pub fn screen_code(field: &str, slug: &str) -> Result<()> {
    screen(field, &slug.replace('_', "-"), Screen::Strict)?;
    screen(field, &slug.replace(['_', '-'], " "), Screen::Strict)
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
