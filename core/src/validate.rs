//! Field validation shared by every entity: each function names the field and the rule.

use std::collections::BTreeSet;

use jiff::civil::Date;

use crate::error::{Error, Result};
use crate::privacy::{self, Screen};

/// A calendar day (`YYYY-MM-DD`), the unit of every date Rapport stores.
pub type Day = Date;

/// Longest name accepted.
pub const MAX_NAME: usize = 200;
/// Longest free-text field accepted (ideal-client statements, notes).
pub const MAX_TEXT: usize = 10_000;
/// Longest short field accepted (city, credentials, ...).
pub const MAX_SHORT: usize = 120;
/// Most values a set may hold.
pub const MAX_SET: usize = 64;

/// A required, trimmed name of at most [`MAX_NAME`] characters.
pub fn name(field: &str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_NAME {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_NAME} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_string())
}

/// An optional short field: trimmed, empty means absent.
pub fn short(field: &str, value: Option<&str>) -> Result<Option<String>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > MAX_SHORT {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_SHORT} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(Some(value.to_string()))
}

/// Free text: at most [`MAX_TEXT`] characters and screened for client identifiers.
pub fn text(field: &str, value: &str, strength: Screen) -> Result<String> {
    if value.chars().count() > MAX_TEXT {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_TEXT} characters"),
        ));
    }
    privacy::screen(field, value, strength)?;
    Ok(value.trim_end().to_string())
}

/// A professional's email address.
pub fn email(field: &str, value: Option<&str>) -> Result<Option<String>> {
    let Some(value) = short(field, value)? else {
        return Ok(None);
    };
    let valid = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.starts_with('.')
            && domain.contains('.')
            && !domain.ends_with('.')
            && !value.contains(char::is_whitespace)
            && domain.matches('@').count() == 0
    });
    if valid {
        Ok(Some(value))
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} is not an email address like name@example.org"),
        ))
    }
}

/// A phone number: 7 to 15 digits, with the usual separators.
pub fn phone(field: &str, value: Option<&str>) -> Result<Option<String>> {
    let Some(value) = short(field, value)? else {
        return Ok(None);
    };
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().x".contains(c) || c == 'e' || c == 't');
    let digits = value.chars().filter(char::is_ascii_digit).count();
    if allowed && (7..=15).contains(&digits) {
        Ok(Some(value))
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} is not a phone number: use 7 to 15 digits, e.g. +1 555 123 4567"),
        ))
    }
}

/// A website: an http(s) URL.
pub fn website(field: &str, value: Option<&str>) -> Result<Option<String>> {
    let Some(value) = short(field, value)? else {
        return Ok(None);
    };
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(host) if host.split('/').next().is_some_and(|h| h.contains('.')) => Ok(Some(value)),
        _ => Err(Error::invalid(
            field,
            format!("{value:?} is not a web address; write it as https://example.org"),
        )),
    }
}

/// A US National Provider Identifier: 10 digits with a valid Luhn check digit.
pub fn npi(field: &str, value: Option<&str>) -> Result<Option<String>> {
    let Some(value) = short(field, value)? else {
        return Ok(None);
    };
    if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(
            field,
            format!("{value:?} must be exactly 10 digits"),
        ));
    }
    // The NPI check digit is the Luhn digit of "80840" followed by the first nine digits.
    let payload: Vec<u32> = "80840"
        .chars()
        .chain(value.chars().take(9))
        .filter_map(|c| c.to_digit(10))
        .collect();
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    let check = (10 - sum % 10) % 10;
    if value.chars().last().and_then(|c| c.to_digit(10)) == Some(check) {
        Ok(Some(value))
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} has a wrong check digit; check for a typo"),
        ))
    }
}

/// A NUCC health-care provider taxonomy code such as `101YM0800X`.
pub fn taxonomy_code(field: &str, value: Option<&str>) -> Result<Option<String>> {
    let Some(value) = short(field, value)? else {
        return Ok(None);
    };
    let value = value.to_ascii_uppercase();
    let ok = value.len() == 10
        && value.ends_with('X')
        && value.bytes().take(3).all(|b| b.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    if ok {
        Ok(Some(value))
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{value:?} is not a NUCC taxonomy code (10 characters ending in X, e.g. 101YM0800X)"
            ),
        ))
    }
}

/// A set of codes, each validated by `each`, deduplicated, at most [`MAX_SET`] values.
pub fn set(
    field: &str,
    values: &[String],
    each: impl Fn(&str, &str) -> Result<String>,
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for value in values {
        out.insert(each(field, value)?);
    }
    if out.len() > MAX_SET {
        return Err(Error::invalid(field, format!("at most {MAX_SET} values")));
    }
    Ok(out)
}

/// Parses a `YYYY-MM-DD` day.
pub fn day(field: &str, value: &str) -> Result<Day> {
    value.trim().parse::<Date>().map_err(|_| {
        Error::invalid(
            field,
            format!("{value:?} is not a day; write it as YYYY-MM-DD"),
        )
    })
}

/// An entity id: a UUID as Rapport writes them.
pub fn id(field: &str, value: &str) -> Result<String> {
    uuid::Uuid::parse_str(value.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| Error::invalid(field, format!("{value:?} is not a Rapport id")))
}

/// Validates a follow-up backoff (days between unanswered attempts); empty means "none of
/// its own".
pub fn cadence_steps(field: &str, steps: &[u32]) -> Result<()> {
    if steps.len() > 12 {
        return Err(crate::Error::invalid(field, "at most 12 steps"));
    }
    if let Some(bad) = steps.iter().find(|d| !(1..=366).contains(*d)) {
        return Err(crate::Error::invalid(
            field,
            format!("{bad} is not a number of days between 1 and 366"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::Invalid { field, rule }) => format!("{field}: {rule}"),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn names() {
        assert_eq!(name("name", "  Dr. Ana Ruiz ").unwrap(), "Dr. Ana Ruiz");
        assert!(rule(name("name", "  ")).contains("name: must not be empty"));
        assert!(rule(name("name", &"a".repeat(201))).contains("at most 200"));
        assert!(rule(name("name", "a\u{7}b")).contains("control"));
    }

    #[test]
    fn emails_and_phones() {
        assert_eq!(
            email("email", Some("a@b.org")).unwrap().as_deref(),
            Some("a@b.org")
        );
        assert_eq!(email("email", Some(" ")).unwrap(), None);
        assert!(rule(email("email", Some("a@b"))).starts_with("email:"));
        assert!(rule(email("email", Some("a b@c.org"))).starts_with("email:"));
        assert!(phone("phone", Some("+1 (555) 123-4567")).unwrap().is_some());
        assert!(rule(phone("phone", Some("12345"))).contains("7 to 15 digits"));
        assert!(rule(phone("phone", Some("call me"))).starts_with("phone:"));
    }

    #[test]
    fn websites() {
        assert!(
            website("website", Some("https://clinic.example/about"))
                .unwrap()
                .is_some()
        );
        assert!(rule(website("website", Some("clinic.example"))).contains("https://"));
    }

    #[test]
    fn npi_check_digit() {
        // 1234567893 is the CMS documentation example of a valid NPI.
        assert_eq!(
            npi("npi", Some("1234567893")).unwrap().as_deref(),
            Some("1234567893")
        );
        assert!(rule(npi("npi", Some("1234567890"))).contains("check digit"));
        assert!(rule(npi("npi", Some("12345"))).contains("10 digits"));
    }

    #[test]
    fn taxonomy_codes() {
        assert_eq!(
            taxonomy_code("taxonomy_code", Some("101ym0800x"))
                .unwrap()
                .as_deref(),
            Some("101YM0800X")
        );
        assert!(rule(taxonomy_code("taxonomy_code", Some("ABC"))).contains("NUCC"));
    }

    #[test]
    fn days_ids_sets_text() {
        assert_eq!(day("at", "2026-02-28").unwrap().to_string(), "2026-02-28");
        assert!(rule(day("at", "2026-02-30")).contains("YYYY-MM-DD"));
        assert!(rule(id("partner_id", "nope")).contains("not a Rapport id"));
        let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
        assert!(rule(set("tags", &many, crate::vocab::tag)).contains("at most 64"));
        assert!(rule(text("note", &"a".repeat(10_001), Screen::Strict)).contains("at most"));
        assert!(short("city", Some(&"c".repeat(121))).is_err());
    }
}
