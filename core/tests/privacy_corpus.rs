//! The privacy guard against a corpus: identifiers written the many ways people write them
//! are refused and named, and the ordinary notes of a referral practice pass. Each table
//! row is one case; the generated rows cross a value with the formats it is written in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rapport_core::error::Error;
use rapport_core::privacy::{Screen, screen, screen_code};

const DATE: &str = "a full date (such as a date of birth)";
const BIRTH: &str = "a date of birth";
const PHONE: &str = "a phone number";
const SSN: &str = "a social security number";
const EMAIL: &str = "an email address";
const RECORD: &str = "a record or ID number";
const ADDRESS: &str = "a street address";

/// What the strict screen says about `text`: `None` when it passes.
fn verdict(text: &str) -> Option<String> {
    match screen("note", text, Screen::Strict) {
        Ok(()) => None,
        Err(Error::Identifier { field, what }) => {
            assert_eq!(field, "note", "the error names the field");
            Some(what)
        }
        Err(other) => panic!("{text:?}: not an identifier error: {other:?}"),
    }
}

/// Dates of birth as (day, month, year), written in every format below.
const DAYS: &[(u32, u32, u32)] = &[
    (14, 3, 1987),
    (1, 12, 2004),
    (29, 2, 1996),
    (7, 7, 1959),
    (23, 11, 2011),
    (5, 1, 1978),
    (31, 8, 1990),
    (10, 10, 2016),
];

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn date_formats(d: u32, m: u32, y: u32) -> Vec<String> {
    let month = MONTHS[(m - 1) as usize];
    let short = &month[..3];
    let yy = y % 100;
    vec![
        format!("{m}/{d}/{y}"),
        format!("{m:02}/{d:02}/{y}"),
        format!("{d}.{m}.{y}"),
        format!("{d:02}.{m:02}.{yy:02}"),
        format!("{y}-{m:02}-{d:02}"),
        format!("{y}/{m}/{d}"),
        format!("{d:02} {m:02} {y}"),
        format!("{month} {d}, {y}"),
        format!("{short}. {d} {y}"),
        format!("{d} {month} {y}"),
        format!("{d}-{short}-{y}"),
        format!("{d}-{short}-{yy:02}"),
        format!("{d}{short}{y}"),
        format!("the {d}th of {month}, {y}"),
        format!("{month} {d}th '{yy:02}"),
        format!("{y} {short} {d}"),
    ]
}

#[test]
fn dates_in_every_format_are_refused() {
    let mut cases = 0;
    for &(d, m, y) in DAYS {
        for written in date_formats(d, m, y) {
            for text in [
                format!("DOB {written}"),
                format!("born {written}, new referral"),
                written.clone(),
            ] {
                let what = verdict(&text);
                assert!(
                    matches!(what.as_deref(), Some(DATE) | Some(BIRTH)),
                    "{text:?} was {what:?}, not refused as a date"
                );
                cases += 1;
            }
        }
    }
    assert!(cases >= 300, "{cases}");
}

#[test]
fn phone_numbers_of_many_countries_are_refused() {
    let numbers = [
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "555 123 4567",
        "+1 555 123 4567",
        "+1-555-123-4567",
        "1-555-123-4567",
        "5551234567",
        "555-1234",
        "+44 20 7946 0958",
        "020 7946 0958",
        "+44 7700 900123",
        "07700 900123",
        "+33 1 23 45 67 89",
        "01 23 45 67 89",
        "+49 30 12345678",
        "030 12345678",
        "+61 2 9876 5432",
        "(02) 9876 5432",
        "+91 98765 43210",
        "+353 1 234 5678",
        "+34 912 345 678",
        "+52 55 1234 5678",
        "+81 3-1234-5678",
        "+1.555.123.4567",
    ];
    for number in numbers {
        for text in [
            format!("mom's cell {number}"),
            format!("call {number} after 5"),
        ] {
            assert_eq!(verdict(&text).as_deref(), Some(PHONE), "{text:?}");
        }
        // A professional's number is allowed where professional contacts are.
        let office = format!("office line {number}");
        assert_eq!(
            screen("how_we_met", &office, Screen::ProfessionalContact).ok(),
            Some(()),
            "{office:?}"
        );
    }
}

#[test]
fn ssns_emails_records_and_addresses_are_refused_and_named() {
    let cases: &[(&str, &str)] = &[
        ("SSN 123-45-6789", SSN),
        ("SSN 123.45.6789", SSN),
        ("ssn 123 45 6789", SSN),
        ("ss# 123456789", SSN),
        ("social security no. 123456789", SSN),
        ("SSN: 6789", SSN),
        ("her number is 078-05-1120", SSN),
        ("jane.doe@example.com", EMAIL),
        ("mail J.Doe+intake@mail.example.org", EMAIL),
        ("client email jd1987@gmail.com", EMAIL),
        ("MRN 448812", RECORD),
        ("mrn: A-44881", RECORD),
        ("chart #4411", RECORD),
        ("record no. 99812", RECORD),
        ("case number 2231", RECORD),
        ("patient id 7781", RECORD),
        ("policy # XK-44120", RECORD),
        ("member id 88213", RECORD),
        ("file 3321 at intake", RECORD),
        ("number 1234567 on the form", RECORD),
        ("lives at 42 Elm Street", ADDRESS),
        ("moved to 1600 Pennsylvania Ave", ADDRESS),
        ("at 9 Oak Rd. with her aunt", ADDRESS),
        ("12 North Cedar Lane", ADDRESS),
        ("home: 221 Baker St", ADDRESS),
        ("DOB: 3", BIRTH),
        ("date of birth 14", BIRTH),
        ("birthday 3/14", BIRTH),
        ("birthdate - 7", BIRTH),
        ("d.o.b. 12", BIRTH),
    ];
    for (text, what) in cases {
        assert_eq!(verdict(text).as_deref(), Some(*what), "{text:?}");
    }
}

/// What a referral practice writes every day, and what must not be taken for an identifier.
const ORDINARY: &[&str] = &[
    "Coffee with Dr. Lee; she takes couples on Tuesdays.",
    "Left a voicemail, will try again in two weeks.",
    "Met at the spring networking lunch, 2 kids groups running.",
    "Prefers referrals for teens with anxiety; 12 week DBT group.",
    "Office moved to the second floor.",
    "Sent our brochure and the updated fee schedule.",
    "She runs a 10-week grief group starting in March.",
    "Ages 12-17 only, no crisis cases.",
    "Takes Aetna and BCBS, sliding scale $60-120.",
    "Sessions are 50 min, 45 for telehealth.",
    "Open Tuesdays 3-5 pm and Thursdays 9-12.",
    "Meeting at 3:30 at their office.",
    "We met in 2019 at the county mental health fair.",
    "Referred two families in 2023 and one in 2024.",
    "Their waitlist is about 6 weeks right now.",
    "Call back after March 14.",
    "Conference on May 3; bring cards.",
    "Working together since March 2021.",
    "Quarterly lunch, next one in Q3.",
    "2019 2020 2021 were our busiest years with them.",
    "Academic year 2023-2024 they had a full caseload.",
    "Room 12 on the third floor, suite 300.",
    "Groups of 6 to 8 adolescents.",
    "About 30% of their referrals are couples.",
    "Uses the PHQ-9 and GAD-7 at intake.",
    "DSM-5 trained, EMDR level 2.",
    "Follow up in 2 weeks if no reply.",
    "Asked about our 8 week parenting course.",
    "She is a LCSW with 15 years of experience.",
    "Runs the K-12 counseling program for the district.",
    "Covers grades 6-8 at Lincoln Middle.",
    "Hosts a monthly peer consultation, 1st Friday.",
    "Co-led a workshop for 40 teachers.",
    "Accepts Medicaid; 3 openings this month.",
    "Mentioned a 24/7 crisis line for their clients.",
    "Available 9 to 5, Monday to Friday.",
    "Has 2 associates and 1 intern.",
    "Fee is $150 per session, $90 sliding.",
    "Prefers email over phone calls.",
    "Their new website launched this spring.",
    "Thank-you card sent for the 3 referrals.",
    "No response to the last 2 emails.",
    "Will share our group schedule for fall 2025.",
    "Interested in a 6-session couples intensive.",
    "Speaks Spanish and Portuguese.",
    "Telehealth only since 2020.",
    "Covers 3 counties in the north.",
    "Referred a teen with social anxiety, 15-17 age band.",
    "Their intake takes 1-2 weeks.",
    "Booked lunch for the 14th.",
    "May be retiring next year.",
    "Part of the 4-person group practice downtown.",
    "Reads our newsletter, opened 3 of 4 issues.",
    "Version 2.1 of their intake form asks about payer.",
    "Offers 90-minute EMDR sessions.",
    "Caseload of 25, two openings.",
    "Goes on leave June to August.",
    "Phone call went well; they want our flyer.",
    "Call at 10.30 tomorrow.",
    "Their NPI is on file in the partner record.",
];

#[test]
fn ordinary_notes_pass() {
    for text in ORDINARY {
        assert_eq!(verdict(text), None, "{text:?} was refused");
    }
}

#[test]
fn partial_dates_and_numbers_that_identify_nobody_pass() {
    let mut cases = 0;
    for (i, month) in MONTHS.iter().enumerate() {
        let short = &month[..3];
        for text in [
            format!("Next group starts in {month} 2025."),
            format!("Lunch on {month} {}.", i + 1),
            format!("Out of office {short} {}-{}.", i + 1, i + 8),
            format!("Since {short} 2018."),
        ] {
            assert_eq!(verdict(&text), None, "{text:?} was refused");
            cases += 1;
        }
    }
    for n in [2, 5, 12, 40, 150, 999, 2024, 12345] {
        let text = format!("{n} people came to the workshop");
        assert_eq!(verdict(&text), None, "{text:?} was refused");
        cases += 1;
    }
    assert!(cases >= 50, "{cases}");
}

#[test]
fn codes_and_tags_are_screened_like_text() {
    for (slug, what) in [
        ("jane-doe-1987-03-14", DATE),
        ("jd_1987_03_14", DATE),
        ("dob-14-mar-1987", DATE),
        ("ssn-123-45-6789", SSN),
        ("mom-555-123-4567", PHONE),
        ("mrn_448812", RECORD),
        ("client-20240314", RECORD),
    ] {
        match screen_code("concerns", slug) {
            Err(Error::Identifier { what: found, .. }) => assert_eq!(found, what, "{slug:?}"),
            other => panic!("{slug:?} was not refused: {other:?}"),
        }
    }
    for slug in [
        "school_refusal",
        "sleep-hygiene",
        "k-12",
        "ages-13-17",
        "dsm-5",
        "section-504",
        "post-2020",
        "prescriber",
        "grief_group",
    ] {
        screen_code("concerns", slug).unwrap_or_else(|e| panic!("{slug:?} refused: {e}"));
    }
}
