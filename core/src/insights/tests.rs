//! Every insight against a small hand-built practice with known answers.

use std::sync::Arc;

use jiff::tz::TimeZone;

use super::matching::{MatchKind, Need};
use super::reciprocity::LedgerBy;
use super::streams::StreamWarning;
use crate::model::{NewFollowup, NewPartner, NewReferral, NewTouchpoint, Partner};
use crate::vocab::{
    AgeBand, Direction, PartnerKind, PartnerStatus, PayerCategory, Role, StreamKind, TouchpointKind,
};
use crate::{Error, FixedClock, Home, HomeOptions, SpaceKind};

fn day(s: &str) -> crate::Day {
    s.parse().unwrap()
}

struct Practice {
    home: Home,
    _dir: tempfile::TempDir,
    a: Partner,
    b: Partner,
    c: Partner,
    d: Partner,
    e: Partner,
    f: Partner,
    colleague: String,
}

fn partner(
    home: &Home,
    name: &str,
    kind: PartnerKind,
    stream: Option<&str>,
    f: impl FnOnce(&mut NewPartner),
) -> Partner {
    let mut input = NewPartner {
        kind: Some(kind),
        name: name.into(),
        stream_id: stream.map(str::to_string),
        ..Default::default()
    };
    f(&mut input);
    home.add_partner(input).unwrap()
}

fn refer(home: &Home, p: &Partner, direction: Direction, at: &str, member: Option<&str>) {
    home.record_referral(NewReferral {
        partner_id: p.id.clone(),
        direction,
        at: Some(day(at)),
        concerns: vec!["anxiety".into()],
        age_band: None,
        payer_category: None,
        modality: None,
        status: None,
        member_id: member.map(str::to_string),
    })
    .unwrap();
}

fn touch(home: &Home, p: &Partner, at: &str) {
    home.log_touchpoint(NewTouchpoint {
        partner_id: p.id.clone(),
        kind: TouchpointKind::Call,
        at: Some(day(at)),
        outcome: None,
        note: String::new(),
        allow_contact_details: false,
        member_id: None,
    })
    .unwrap();
}

fn followup(home: &Home, p: &Partner, due: &str) -> String {
    home.schedule_followup(NewFollowup {
        partner_id: p.id.clone(),
        due: day(due),
        reason: "check in".into(),
        cadence_days: None,
        member_id: None,
    })
    .unwrap()
    .id
}

/// Today is 2026-03-15 (in the practice's zone).
fn practice() -> Practice {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(
        "2026-03-15T18:00:00Z".parse().unwrap(),
        TimeZone::UTC,
    ));
    let home = Home::open_with(dir.path(), HomeOptions { clock }).unwrap();
    home.create_practice("Insight Practice", "Owner").unwrap();
    home.set_ideal_client("Adults with anxiety and grief")
        .unwrap();
    let colleague = home
        .batch(SpaceKind::Practice, |b| {
            b.add_member("Colleague", Role::Member)
        })
        .unwrap()
        .id;
    let s1 = home
        .create_stream("Therapists", StreamKind::Professional)
        .unwrap()
        .id;
    let s2 = home
        .create_stream("Physicians", StreamKind::Medical)
        .unwrap()
        .id;
    let s3 = home
        .create_stream("Schools", StreamKind::School)
        .unwrap()
        .id;
    let a = partner(
        &home,
        "Ana Therapist",
        PartnerKind::Therapist,
        Some(&s1),
        |p| {
            p.specialties = vec!["anxiety".into(), "couples".into()];
            p.populations = vec!["adult".into()];
            p.insurance = vec!["commercial".into()];
            p.languages = vec!["en".into(), "es".into()];
            p.telehealth = true;
            p.city = Some("Portland".into());
            p.status = Some(PartnerStatus::Active);
        },
    );
    let b = partner(
        &home,
        "Ben Physician",
        PartnerKind::Physician,
        Some(&s2),
        |p| {
            p.specialties = vec!["depression".into(), "adhd".into()];
            p.populations = vec!["adult".into(), "older_adult".into()];
            p.city = Some("Salem".into());
        },
    );
    let c = partner(&home, "Cal School", PartnerKind::School, Some(&s3), |p| {
        p.specialties = vec!["child_adolescent".into(), "anxiety".into()];
        p.populations = vec!["adolescent".into()];
        p.city = Some("Portland".into());
        p.accepting = Some(false);
    });
    let d = partner(
        &home,
        "Dee Archived",
        PartnerKind::Therapist,
        Some(&s1),
        |p| p.specialties = vec!["anxiety".into()],
    );
    let e = partner(&home, "Eve NoStream", PartnerKind::Therapist, None, |p| {
        p.specialties = vec!["anxiety".into()];
        p.city = Some("Portland".into());
        p.telehealth = true;
    });
    let f = partner(&home, "Fay Active", PartnerKind::Organization, None, |p| {
        p.status = Some(PartnerStatus::Active)
    });

    touch(&home, &a, "2025-05-01");
    touch(&home, &c, "2025-10-01");
    touch(&home, &b, "2026-01-01");
    touch(&home, &f, "2025-12-01");
    refer(&home, &a, Direction::In, "2025-06-01", None);
    refer(&home, &a, Direction::In, "2026-02-01", None);
    refer(&home, &a, Direction::In, "2026-03-01", None);
    refer(&home, &a, Direction::Out, "2026-03-10", None);
    touch(&home, &a, "2026-03-12");
    refer(&home, &b, Direction::In, "2026-01-20", Some(&colleague));
    refer(&home, &b, Direction::Out, "2025-12-01", None);
    refer(&home, &b, Direction::Out, "2026-02-20", None);
    refer(&home, &c, Direction::In, "2025-11-01", None);
    refer(&home, &d, Direction::In, "2026-03-02", None);
    refer(&home, &e, Direction::Out, "2026-03-05", None);

    followup(&home, &c, "2026-03-10");
    followup(&home, &a, "2026-03-10");
    followup(&home, &b, "2026-03-15");
    followup(&home, &e, "2026-03-20");
    followup(&home, &d, "2026-03-01");
    home.archive_partner(&d.id).unwrap();
    Practice {
        home,
        _dir: dir,
        a,
        b,
        c,
        d,
        e,
        f,
        colleague,
    }
}

const TODAY: &str = "2026-03-15";

#[test]
fn due_and_overdue_follow_ups_rank_by_lateness_then_value() {
    let p = practice();
    let due = p.home.due_followups(day(TODAY), 7).unwrap();
    let names: Vec<(&str, i64, u32)> = due
        .iter()
        .map(|d| (d.partner_name.as_str(), d.days_overdue, d.partner_value))
        .collect();
    assert_eq!(
        names,
        vec![
            ("Ana Therapist", 5, 3),
            ("Cal School", 5, 1),
            ("Ben Physician", 0, 1),
            ("Eve NoStream", -5, 0)
        ],
        "a tie on lateness is broken by past value; the archived partner's follow-up is left out"
    );
    let overdue: Vec<String> = p
        .home
        .overdue_followups(day(TODAY))
        .unwrap()
        .into_iter()
        .map(|d| d.partner_name)
        .collect();
    assert_eq!(overdue, vec!["Ana Therapist", "Cal School"]);
    assert_eq!(p.home.due_followups(day(TODAY), 0).unwrap().len(), 3);
}

#[test]
fn due_today_depends_on_the_users_time_zone() {
    let p = practice();
    // 03:30 UTC on 16 March: still the 15th in Los Angeles, already the 16th in UTC.
    let instant = "2026-03-16T03:30:00Z".parse().unwrap();
    let la = FixedClock::new(instant, TimeZone::get("America/Los_Angeles").unwrap());
    let utc = FixedClock::new(instant, TimeZone::UTC);
    use crate::Clock;
    let ben = |today| {
        p.home
            .due_followups(today, 0)
            .unwrap()
            .into_iter()
            .find(|d| d.partner_name == "Ben Physician")
            .unwrap()
            .days_overdue
    };
    assert_eq!(ben(la.today()), 0, "due today in Los Angeles");
    assert_eq!(ben(utc.today()), 1, "a day overdue in UTC");
}

#[test]
fn reciprocity_ledger_by_partner_member_and_stream() {
    let p = practice();
    let rows = p
        .home
        .reciprocity(LedgerBy::Partner, day(TODAY), 90)
        .unwrap();
    let summary: Vec<(&str, u32, u32, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.all_time.sent,
                r.all_time.received,
                r.all_time.balance,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Ana Therapist", 1, 3, 2),
            ("Ben Physician", 2, 1, -1),
            ("Cal School", 0, 1, 1),
            ("Dee Archived", 0, 1, 1),
            ("Eve NoStream", 1, 0, -1),
        ],
        "largest imbalance first, ties by name"
    );
    let ana = &rows[0];
    assert_eq!(ana.all_time.last_exchange, Some(day("2026-03-10")));
    assert_eq!(
        (ana.window.sent, ana.window.received, ana.window.balance),
        (1, 2, 1),
        "2025-06-01 is outside 90 days"
    );

    let members = p
        .home
        .reciprocity(LedgerBy::Member, day(TODAY), 365)
        .unwrap();
    let colleague = members.iter().find(|r| r.id == p.colleague).unwrap();
    assert_eq!(
        (
            colleague.name.as_str(),
            colleague.all_time.received,
            colleague.all_time.sent
        ),
        ("Colleague", 1, 0)
    );
    let owner = members.iter().find(|r| r.name == "Owner").unwrap();
    assert_eq!((owner.all_time.sent, owner.all_time.received), (4, 5));

    let streams = p
        .home
        .reciprocity(LedgerBy::Stream, day(TODAY), 365)
        .unwrap();
    let by_name = |n: &str| streams.iter().find(|r| r.name == n).unwrap().all_time;
    assert_eq!(
        (by_name("Therapists").sent, by_name("Therapists").received),
        (1, 4)
    );
    assert_eq!(
        (by_name("Physicians").sent, by_name("Physicians").received),
        (2, 1)
    );
    assert_eq!(
        (by_name("(no stream)").sent, by_name("(no stream)").received),
        (1, 0)
    );

    let gaps = p.home.reciprocity_gaps(day(TODAY), 365).unwrap();
    let names = |rows: &[super::reciprocity::LedgerRow]| {
        rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(&gaps.they_send_we_never_send),
        vec!["Cal School"],
        "the archived partner is left out"
    );
    assert_eq!(names(&gaps.we_send_they_never_send), vec!["Eve NoStream"]);

    assert_eq!(
        p.home
            .partner_reciprocity(&p.b.id, day(TODAY), 90)
            .unwrap()
            .window
            .sent,
        1
    );
    let f = p.home.partner_reciprocity(&p.f.id, day(TODAY), 90).unwrap();
    assert_eq!(
        f.all_time,
        super::reciprocity::Exchange::default(),
        "a partner with no referrals has an empty ledger"
    );
    assert!(
        matches!(p.home.partner_reciprocity(&p.d.id, day(TODAY), 90), Err(Error::Conflict(ref m)) if m.contains("archived"))
    );
    assert!(matches!(
        p.home
            .partner_reciprocity(&crate::doc::new_id(), day(TODAY), 90),
        Err(Error::NotFound { .. })
    ));
    assert!(
        matches!(p.home.reciprocity(LedgerBy::Partner, day(TODAY), 0), Err(Error::Invalid { ref field, .. }) if field == "window_days")
    );
}

#[test]
fn stream_shares_concentration_and_warnings() {
    let p = practice();
    let windows = p.home.stream_report(day(TODAY)).unwrap();
    let q = &windows[0];
    assert_eq!(
        (q.days, q.from, q.total, q.previous_total),
        (90, day("2025-12-16"), 4, 1)
    );
    let shares: Vec<(&str, u32, f64)> = q
        .shares
        .iter()
        .map(|s| (s.name.as_str(), s.count, s.share))
        .collect();
    assert_eq!(
        shares,
        vec![
            ("Therapists", 3, 75.0),
            ("Physicians", 1, 25.0),
            ("Schools", 0, 0.0)
        ]
    );
    assert!((q.hhi - 6_250.0).abs() < 1e-9);
    assert!(
        (q.previous_hhi - 10_000.0).abs() < 1e-9,
        "all of the previous window came from schools"
    );
    let schools = q.shares.iter().find(|s| s.name == "Schools").unwrap();
    assert_eq!((schools.previous_count, schools.change), (1, -100.0));
    assert_eq!(
        q.warnings,
        vec![StreamWarning::Dominant {
            name: "Therapists".into(),
            share: 75.0
        }]
    );
    assert!(q.warnings[0].message().contains("75%"));

    let y = &windows[1];
    assert_eq!((y.days, y.total), (365, 6));
    assert!((y.hhi - 5_000.0).abs() < 1e-6, "{}", y.hhi);

    // One stream carrying everything triggers both warnings; no referrals at all, the second.
    let single = p.home.stream_window(day("2026-03-01"), 1).unwrap();
    assert_eq!(single.total, 1);
    assert_eq!(single.warnings.len(), 2, "{:?}", single.warnings);
    assert!(
        single
            .warnings
            .contains(&StreamWarning::TooFewStreams { active: 1 })
    );
    let empty = p.home.stream_window(day("2020-01-01"), 30).unwrap();
    assert_eq!((empty.total, empty.hhi), (0, 0.0));
    assert_eq!(
        empty.warnings,
        vec![StreamWarning::TooFewStreams { active: 0 }]
    );
}

#[test]
fn going_cold_ranks_valuable_quiet_partners_and_respects_the_boundary() {
    let p = practice();
    let g = partner(&p.home, "Gus Boundary", PartnerKind::Therapist, None, |p| {
        p.status = Some(PartnerStatus::Active)
    });
    let h = partner(&p.home, "Hal Boundary", PartnerKind::Therapist, None, |p| {
        p.status = Some(PartnerStatus::Active)
    });
    touch(&p.home, &g, "2026-01-15"); // exactly 60 days ago counting today: inside the window
    touch(&p.home, &h, "2026-01-14"); // one day earlier: quiet
    let cold = p.home.going_cold(day(TODAY), 60).unwrap();
    let rows: Vec<(&str, u32, i64)> = cold
        .iter()
        .map(|c| (c.name.as_str(), c.referrals_received, c.days_quiet))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("Cal School", 1, 134),
            ("Fay Active", 0, 104),
            ("Hal Boundary", 0, 60)
        ]
    );
    assert_eq!(cold[0].last_contact, Some(day("2025-11-01")));
    // A partner just added and never contacted is new, not cold.
    partner(&p.home, "New Active", PartnerKind::Therapist, None, |p| {
        p.status = Some(PartnerStatus::Active)
    });
    assert_eq!(p.home.going_cold(day(TODAY), 60).unwrap().len(), 3);
    assert!(p.home.going_cold(day(TODAY), 0).is_err());
    assert!(p.home.going_cold(day(TODAY), 1_000).unwrap().is_empty());
}

#[test]
fn matching_ranks_with_reasons_and_breaks_ties_by_name() {
    let p = practice();
    let need = Need {
        concerns: vec!["anxiety".into()],
        age_band: Some(AgeBand::Adult),
        payer_category: Some(PayerCategory::Commercial),
        language: Some("es".into()),
        telehealth: true,
        city: Some("portland".into()),
        ..Default::default()
    };
    let matches = p.home.match_need(&need).unwrap();
    let ranked: Vec<(&str, u32, MatchKind)> = matches
        .iter()
        .map(|m| (m.name.as_str(), m.score, m.kind))
        .collect();
    assert_eq!(
        ranked,
        vec![
            ("Ana Therapist", 14, MatchKind::Partner),
            ("Eve NoStream", 8, MatchKind::Partner),
            ("Owner", 6, MatchKind::Member),
            ("Cal School", 5, MatchKind::Partner),
        ],
        "archived Dee and Ben (no anxiety) never appear"
    );
    assert_eq!(
        matches[0].reasons,
        vec![
            "treats anxiety",
            "works with adult",
            "takes commercial",
            "speaks es",
            "offers telehealth",
            "in portland",
            "accepting new clients",
            "we have referred to them before (1)",
        ]
    );
    assert!(matches[0].caveats.is_empty());
    assert!(
        matches[3]
            .caveats
            .contains(&"not accepting new clients".to_string())
    );
    assert!(
        matches[2]
            .reasons
            .contains(&"ideal client mentions anxiety".to_string())
    );
    let accepting = p
        .home
        .match_need(&Need {
            accepting_only: true,
            ..need.clone()
        })
        .unwrap();
    assert!(accepting.iter().all(|m| m.name != "Cal School"));

    partner(&p.home, "Zed One", PartnerKind::Therapist, None, |p| {
        p.specialties = vec!["ocd".into()]
    });
    partner(&p.home, "Yan Two", PartnerKind::Therapist, None, |p| {
        p.specialties = vec!["ocd".into()]
    });
    let tie = p
        .home
        .match_need(&Need {
            concerns: vec!["ocd".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        tie.iter()
            .map(|m| (m.name.as_str(), m.score))
            .collect::<Vec<_>>(),
        vec![("Yan Two", 4), ("Zed One", 4)]
    );

    let err = p
        .home
        .match_need(&Need {
            concerns: vec!["astrology".into()],
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "concerns"),
        "{err}"
    );
    let err = p.home.match_need(&Need::default()).unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "need"),
        "{err}"
    );
    let err = p
        .home
        .match_need(&Need {
            language: Some("klingon".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "language"),
        "{err}"
    );
}

#[test]
fn trends_months_lags_and_cohorts() {
    let p = practice();
    let t = p.home.trends(day(TODAY), 3).unwrap();
    assert_eq!(t.months, vec!["2026-01", "2026-02", "2026-03"]);
    let stream = |n: &str| t.by_stream.iter().find(|s| s.name == n).unwrap().clone();
    assert_eq!(
        (stream("Therapists").inbound, stream("Therapists").outbound),
        (vec![0, 1, 2], vec![0, 0, 1])
    );
    assert_eq!(
        (stream("Physicians").inbound, stream("Physicians").outbound),
        (vec![1, 0, 0], vec![0, 1, 0])
    );
    assert_eq!(stream("Schools").inbound, vec![0, 0, 0]);
    assert_eq!(stream("(no stream)").outbound, vec![0, 0, 1]);
    assert_eq!(t.top_partners[0].name, "Ana Therapist");
    let lags: Vec<(&str, i64)> = t
        .time_to_first_referral
        .iter()
        .map(|l| (l.name.as_str(), l.days))
        .collect();
    assert_eq!(
        lags,
        vec![
            ("Ben Physician", 19),
            ("Ana Therapist", 31),
            ("Cal School", 31)
        ]
    );
    assert_eq!(t.median_days_to_first_referral, Some(31.0));

    let year = p.home.trends(day(TODAY), 12).unwrap();
    let cohort = |period: &str| {
        year.cohorts
            .iter()
            .find(|c| c.period == period)
            .cloned()
            .unwrap()
    };
    let q2 = cohort("2025-Q2");
    assert_eq!(
        (
            q2.partners,
            q2.within_3_months,
            q2.within_6_months,
            q2.within_12_months
        ),
        (1, 1, 1, 3)
    );
    let q4 = cohort("2025-Q4");
    assert_eq!(
        (q4.partners, q4.within_3_months, q4.within_12_months),
        (2, 1, 1)
    );
    assert_eq!(cohort("2026-Q1").months_observed, 2);
    assert!(matches!(
        p.home.trends(day(TODAY), 0),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn weekly_digest_combines_the_lists() {
    let p = practice();
    let digest = p.home.weekly_digest(day(TODAY)).unwrap();
    assert_eq!(digest.due_followups.len(), 4);
    assert_eq!(digest.overdue_count, 2);
    assert_eq!(
        digest
            .going_cold
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["Cal School", "Fay Active"]
    );
    assert!(
        digest
            .stream_warnings
            .iter()
            .any(|w| w.starts_with("last 90 days: Therapists brings 75%")),
        "{:?}",
        digest.stream_warnings
    );
    assert_eq!(digest.imbalances[0].name, "Ana Therapist");
    assert!(digest.imbalances.iter().all(|r| r.all_time.balance != 0));
    let _ = (&p.a, &p.c, &p.e);
}

#[test]
fn an_empty_practice_has_empty_insights() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(dir.path()).unwrap();
    home.create_practice("Empty", "Only").unwrap();
    let today = home.today();
    assert!(home.due_followups(today, 7).unwrap().is_empty());
    assert!(
        home.reciprocity(LedgerBy::Partner, today, 90)
            .unwrap()
            .is_empty()
    );
    assert!(home.going_cold(today, 60).unwrap().is_empty());
    assert!(
        home.match_need(&Need {
            concerns: vec!["grief".into()],
            ..Default::default()
        })
        .unwrap()
        .is_empty()
    );
    let t = home.trends(today, 6).unwrap();
    assert_eq!((t.months.len(), t.median_days_to_first_referral), (6, None));
    let digest = home.weekly_digest(today).unwrap();
    assert!(digest.due_followups.is_empty() && digest.imbalances.is_empty());
    assert_eq!(home.default_cadence().unwrap(), vec![14, 21, 30]);
}
