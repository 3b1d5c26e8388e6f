use std::sync::{Arc, Mutex};

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use jiff::tz::TimeZone;

use super::*;
use crate::model::{
    EntityKind, NewFollowup, NewPartner, NewReferral, NewTouchpoint, PartnerEdit, PartnerFilter,
};
use crate::vocab::{
    Direction, FollowupStatus, PartnerKind, ReferralOutcome, ReferralStatus, StreamKind,
    TouchpointKind, TouchpointOutcome,
};
use crate::{ChangeEvent, FixedClock, Origin};

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(
        "2026-03-10T15:00:00Z".parse().unwrap(),
        TimeZone::get("America/New_York").unwrap(),
    ))
}

fn open(dir: &Path) -> Home {
    Home::open_with(dir, HomeOptions { clock: clock() }).unwrap()
}

fn practice(dir: &Path) -> Home {
    let home = open(dir);
    home.create_practice("Riverside Counseling", "Ana Ruiz")
        .unwrap();
    home
}

fn partner(name: &str) -> NewPartner {
    NewPartner {
        kind: Some(PartnerKind::Therapist),
        name: name.into(),
        ..Default::default()
    }
}

fn day(s: &str) -> Day {
    s.parse().unwrap()
}

fn invalid_field(err: Error) -> String {
    match err {
        Error::Invalid { field, .. } => field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn create_practice_sets_identity_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = open(dir.path());
    assert!(home.identity().unwrap().is_none());
    assert!(matches!(
        home.add_partner(partner("X")),
        Err(Error::NoPractice)
    ));
    let id = home
        .create_practice("Riverside Counseling", "Ana Ruiz")
        .unwrap();
    assert_eq!(id.practice_name, "Riverside Counseling");
    let members = home.members().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].display_name, "Ana Ruiz");
    assert_eq!(members[0].role, crate::vocab::Role::Owner);
    let again = home.create_practice("Other", "Bo").unwrap_err();
    assert!(
        matches!(again, Error::PracticeExists(ref n) if n == "Riverside Counseling"),
        "{again}"
    );
    assert_eq!(
        invalid_field(
            open(tempfile::tempdir().unwrap().path())
                .create_practice(" ", "A")
                .unwrap_err()
        ),
        "practice name"
    );
}

#[test]
fn partner_round_trip_with_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let stream = home
        .create_stream("Therapists", StreamKind::Professional)
        .unwrap();
    let added = home
        .add_partner(NewPartner {
            kind: Some(PartnerKind::Physician),
            name: "Dr. Lee Park".into(),
            organization: Some("Eastside Family Medicine".into()),
            credentials: Some("MD".into()),
            npi: Some("1234567893".into()),
            taxonomy_code: Some("207q00000x".into()),
            email: Some("lpark@eastside.example".into()),
            phone: Some("+1 555 010 2000".into()),
            website: Some("https://eastside.example".into()),
            city: Some("Portland".into()),
            region: Some("OR".into()),
            telehealth: true,
            accepting: Some(false),
            specialties: vec![
                "Anxiety".into(),
                "adhd".into(),
                "custom:sleep-hygiene".into(),
            ],
            populations: vec!["adult".into()],
            modalities: vec!["medication_management".into()],
            insurance: vec!["commercial".into(), "medicaid".into()],
            languages: vec!["en".into(), "ko".into()],
            tags: vec!["Prescriber".into()],
            ideal_client: "Adults whose anxiety needs medication review.".into(),
            how_we_met: "Met at the county health fair; office at 12 Main St.".into(),
            stream_id: Some(stream.id.clone()),
            status: Some(crate::vocab::PartnerStatus::Active),
            owner_member: None,
            cadence_steps: vec![7, 14],
        })
        .unwrap();
    let got = home.partner(&added.id).unwrap();
    assert_eq!(got, added);
    assert_eq!(got.taxonomy_code.as_deref(), Some("207Q00000X"));
    assert_eq!(
        got.specialties,
        vec!["adhd", "anxiety", "custom:sleep-hygiene"]
    );
    assert_eq!(got.languages, vec!["en", "ko"]);
    assert_eq!(got.tags, vec!["prescriber"]);
    assert!(!got.accepting && got.telehealth);
    let me = home.identity().unwrap().unwrap();
    assert_eq!(got.owner_member.as_deref(), Some(me.member_id.as_str()));
    assert_eq!(got.created_by, me.member_id);
    assert_eq!(got.created_at, clock().now_ms());
}

#[test]
fn every_partner_validation_names_its_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let cases: Vec<(&str, NewPartner)> = vec![
        (
            "kind",
            NewPartner {
                kind: None,
                name: "A".into(),
                ..Default::default()
            },
        ),
        ("name", partner("  ")),
        (
            "email",
            NewPartner {
                email: Some("not-an-email".into()),
                ..partner("A")
            },
        ),
        (
            "phone",
            NewPartner {
                phone: Some("12".into()),
                ..partner("A")
            },
        ),
        (
            "website",
            NewPartner {
                website: Some("ftp://x".into()),
                ..partner("A")
            },
        ),
        (
            "npi",
            NewPartner {
                npi: Some("1234567890".into()),
                ..partner("A")
            },
        ),
        (
            "taxonomy_code",
            NewPartner {
                taxonomy_code: Some("123".into()),
                ..partner("A")
            },
        ),
        (
            "city",
            NewPartner {
                city: Some("c".repeat(200)),
                ..partner("A")
            },
        ),
        (
            "specialties",
            NewPartner {
                specialties: vec!["gambling".into()],
                ..partner("A")
            },
        ),
        (
            "modalities",
            NewPartner {
                modalities: vec!["yoga".into()],
                ..partner("A")
            },
        ),
        (
            "languages",
            NewPartner {
                languages: vec!["elvish".into()],
                ..partner("A")
            },
        ),
        (
            "tags",
            NewPartner {
                tags: vec!["".into()],
                ..partner("A")
            },
        ),
        (
            "stream_id",
            NewPartner {
                stream_id: Some("nope".into()),
                ..partner("A")
            },
        ),
        (
            "owner_member",
            NewPartner {
                owner_member: Some("nope".into()),
                ..partner("A")
            },
        ),
    ];
    for (field, input) in cases {
        assert_eq!(invalid_field(home.add_partner(input).unwrap_err()), field);
    }
    let err = home
        .add_partner(NewPartner {
            how_we_met: "client SSN 123-45-6789".into(),
            ..partner("A")
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Identifier { ref field, .. } if field == "how_we_met"),
        "{err}"
    );
    let unknown_stream = doc::new_id();
    let err = home
        .add_partner(NewPartner {
            stream_id: Some(unknown_stream),
            ..partner("A")
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                entity: "stream",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(home.partner_count().unwrap(), 0);
    assert_eq!(
        home.heads(SpaceKind::Practice).unwrap().len(),
        1,
        "no change was committed"
    );
}

#[test]
fn edit_changes_only_given_fields_and_archive_hides() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let p = home
        .add_partner(NewPartner {
            city: Some("Salem".into()),
            specialties: vec!["grief".into(), "anxiety".into()],
            ..partner("Jo")
        })
        .unwrap();
    let edited = home
        .edit_partner(
            &p.id,
            PartnerEdit {
                city: Some("".into()),
                specialties: Some(vec!["grief".into(), "trauma_ptsd".into()]),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(edited.name, "Jo");
    assert_eq!(edited.city, None);
    assert_eq!(edited.specialties, vec!["grief", "trauma_ptsd"]);
    assert_eq!(
        invalid_field(
            home.edit_partner(
                &p.id,
                PartnerEdit {
                    email: Some("x".into()),
                    ..Default::default()
                }
            )
            .unwrap_err()
        ),
        "email"
    );
    assert!(matches!(
        home.edit_partner(&doc::new_id(), PartnerEdit::default()),
        Err(Error::NotFound { .. })
    ));

    home.archive_partner(&p.id).unwrap();
    assert!(home.partners(&PartnerFilter::default()).unwrap().is_empty());
    let all = home
        .partners(&PartnerFilter {
            include_archived: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 1);
    let err = home
        .log_touchpoint(NewTouchpoint {
            partner_id: p.id.clone(),
            kind: TouchpointKind::Call,
            at: None,
            outcome: None,
            note: String::new(),
            allow_contact_details: false,
            member_id: None,
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict(ref m) if m.contains("archived")),
        "{err}"
    );
    home.restore_partner(&p.id).unwrap();
    assert_eq!(home.partners(&PartnerFilter::default()).unwrap().len(), 1);
}

#[test]
fn touchpoints_are_screened_and_default_to_today_in_the_users_zone() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(
        // 02:00 UTC on 11 March is still 10 March in New York.
        "2026-03-11T02:00:00Z".parse().unwrap(),
        TimeZone::get("America/New_York").unwrap(),
    ));
    let home = Home::open_with(dir.path(), HomeOptions { clock }).unwrap();
    home.create_practice("P", "M").unwrap();
    let p = home.add_partner(partner("Sam")).unwrap();
    let new = |note: &str, allow| NewTouchpoint {
        partner_id: p.id.clone(),
        kind: TouchpointKind::Email,
        at: None,
        outcome: Some(TouchpointOutcome::NoResponse),
        note: note.into(),
        allow_contact_details: allow,
        member_id: None,
    };
    let t = home
        .log_touchpoint(new("Sent our group flyer", false))
        .unwrap();
    assert_eq!(t.at, day("2026-03-10"));
    assert_eq!(t.outcome, Some(TouchpointOutcome::NoResponse));
    let err = home
        .log_touchpoint(new("her client jane@example.com wants a call", false))
        .unwrap_err();
    assert!(
        matches!(err, Error::Identifier { ref field, ref what } if field == "note" && what.contains("email")),
        "{err}"
    );
    home.log_touchpoint(new("new office email is sam@practice.example", true))
        .unwrap();
    let err = home.log_touchpoint(new("DOB 4/5/1990", true)).unwrap_err();
    assert!(matches!(err, Error::Identifier { .. }));
    assert_eq!(home.touchpoints_of(&p.id).unwrap().len(), 2);
    assert_eq!(
        invalid_field(
            home.log_touchpoint(NewTouchpoint {
                partner_id: "x".into(),
                ..new("", false)
            })
            .unwrap_err()
        ),
        "partner_id"
    );
}

#[test]
fn referrals_hold_only_coded_values() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let p = home.add_partner(partner("Kim")).unwrap();
    let input = NewReferral {
        partner_id: p.id.clone(),
        direction: Direction::In,
        at: Some(day("2026-03-01")),
        concerns: vec!["anxiety".into(), "custom:school_refusal".into()],
        age_band: Some(crate::vocab::AgeBand::Adolescent),
        payer_category: Some(crate::vocab::PayerCategory::Medicaid),
        modality: Some("family".into()),
        status: None,
        member_id: None,
    };
    let r = home.record_referral(input.clone()).unwrap();
    assert_eq!(r.status, ReferralStatus::Requested);
    assert_eq!(r.concerns, vec!["anxiety", "custom:school_refusal"]);
    assert_eq!(
        invalid_field(
            home.record_referral(NewReferral {
                concerns: vec![],
                ..input.clone()
            })
            .unwrap_err()
        ),
        "concerns"
    );
    assert_eq!(
        invalid_field(
            home.record_referral(NewReferral {
                concerns: vec!["Jane Doe".into()],
                ..input.clone()
            })
            .unwrap_err()
        ),
        "concerns"
    );
    assert_eq!(
        invalid_field(
            home.record_referral(NewReferral {
                modality: Some("hypnosis".into()),
                ..input.clone()
            })
            .unwrap_err()
        ),
        "modality"
    );
    let updated = home
        .update_referral(
            &r.id,
            ReferralStatus::Completed,
            Some(ReferralOutcome::IntakeHeld),
        )
        .unwrap();
    assert_eq!(
        (updated.status, updated.outcome),
        (ReferralStatus::Completed, Some(ReferralOutcome::IntakeHeld))
    );
    assert_eq!(home.referrals_of(&p.id).unwrap(), vec![updated]);
}

#[test]
fn followups_schedule_snooze_complete_repeat_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let p = home.add_partner(partner("Lou")).unwrap();
    let f = home
        .schedule_followup(NewFollowup {
            partner_id: p.id.clone(),
            due: day("2026-03-12"),
            reason: "Ask about their ideal client".into(),
            cadence_days: Some(30),
            member_id: None,
        })
        .unwrap();
    assert_eq!(
        invalid_field(home.snooze_followup(&f.id, day("2026-03-10")).unwrap_err()),
        "until"
    );
    let snoozed = home.snooze_followup(&f.id, day("2026-03-20")).unwrap();
    assert_eq!((snoozed.due, snoozed.snoozed), (day("2026-03-20"), 1));
    let done = home
        .complete_followup(&f.id, Some(day("2026-03-21")))
        .unwrap();
    assert_eq!(
        (done.status, done.done_at),
        (FollowupStatus::Done, Some(day("2026-03-21")))
    );
    let open = home.followups(FollowupStatus::Open).unwrap();
    assert_eq!(open.len(), 1, "a repeating follow-up schedules its next");
    assert_eq!(open[0].due, day("2026-04-20"));
    assert!(matches!(
        home.complete_followup(&f.id, None),
        Err(Error::Conflict(_))
    ));
    let cancelled = home.cancel_followup(&open[0].id).unwrap();
    assert_eq!(cancelled.status, FollowupStatus::Cancelled);
    assert!(home.followups(FollowupStatus::Open).unwrap().is_empty());
    assert_eq!(
        invalid_field(
            home.schedule_followup(NewFollowup {
                partner_id: p.id.clone(),
                due: day("2026-04-01"),
                reason: String::new(),
                cadence_days: Some(0),
                member_id: None,
            })
            .unwrap_err()
        ),
        "cadence_days"
    );
    let err = home
        .schedule_followup(NewFollowup {
            partner_id: p.id,
            due: day("2026-04-01"),
            reason: "call 555-123-4567 re: client".into(),
            cadence_days: None,
            member_id: None,
        })
        .unwrap_err();
    assert!(matches!(err, Error::Identifier { ref field, .. } if field == "reason"));
}

#[test]
fn list_filter_and_full_text_search() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let s = home.create_stream("Schools", StreamKind::School).unwrap();
    assert!(matches!(
        home.create_stream("schools", StreamKind::School),
        Err(Error::Conflict(_))
    ));
    home.add_partner(NewPartner {
        city: Some("Portland".into()),
        specialties: vec!["eating_disorders".into()],
        ..partner("Bea Quinn")
    })
    .unwrap();
    home.add_partner(NewPartner {
        kind: Some(PartnerKind::School),
        stream_id: Some(s.id.clone()),
        ideal_client: "Teens struggling with perfectionism".into(),
        ..partner("Lincoln High")
    })
    .unwrap();
    home.add_partner(NewPartner {
        organization: Some("Quinn & Associates".into()),
        ..partner("Al Diaz")
    })
    .unwrap();
    let names = |ps: Vec<crate::model::Partner>| ps.into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(
        names(home.partners(&PartnerFilter::default()).unwrap()),
        vec!["Al Diaz", "Bea Quinn", "Lincoln High"]
    );
    assert_eq!(
        names(
            home.partners(&PartnerFilter {
                kind: Some(PartnerKind::School),
                ..Default::default()
            })
            .unwrap()
        ),
        vec!["Lincoln High"]
    );
    assert_eq!(
        names(
            home.partners(&PartnerFilter {
                stream_id: Some(s.id),
                ..Default::default()
            })
            .unwrap()
        ),
        vec!["Lincoln High"]
    );
    assert_eq!(
        names(
            home.partners(&PartnerFilter {
                specialty: Some("eating_disorders".into()),
                ..Default::default()
            })
            .unwrap()
        ),
        vec!["Bea Quinn"]
    );
    assert_eq!(
        names(
            home.partners(&PartnerFilter {
                city: Some("PORTLAND".into()),
                ..Default::default()
            })
            .unwrap()
        ),
        vec!["Bea Quinn"]
    );
    let mut quinn = names(home.search_partners("quinn", 10).unwrap());
    quinn.sort();
    assert_eq!(quinn, vec!["Al Diaz", "Bea Quinn"]);
    assert_eq!(
        names(home.search_partners("perfection", 10).unwrap()),
        vec!["Lincoln High"]
    );
    assert_eq!(
        names(home.search_partners("eating", 10).unwrap()),
        vec!["Bea Quinn"]
    );
    assert!(
        home.search_partners("\"*()", 10).unwrap().len() == 3,
        "punctuation-only search lists all"
    );
    assert_eq!(
        names(
            home.partners(&PartnerFilter {
                limit: Some(1),
                offset: Some(1),
                ..Default::default()
            })
            .unwrap()
        ),
        vec!["Bea Quinn"]
    );
    assert_eq!(home.resolve_partner("lin").unwrap().name, "Lincoln High");
    assert!(matches!(
        home.resolve_partner("zz"),
        Err(Error::NotFound { .. })
    ));
    home.add_partner(partner("Bea Quill")).unwrap();
    let err = home.resolve_partner("bea").unwrap_err().to_string();
    assert!(err.contains("several partners"), "{err}");
}

#[test]
fn reopening_reads_without_loading_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let home = practice(dir.path());
        home.add_partner(partner("Persisted")).unwrap().id
    };
    let home = open(dir.path());
    assert_eq!(home.partner(&id).unwrap().name, "Persisted");
    assert_eq!(home.partners(&PartnerFilter::default()).unwrap().len(), 1);
    assert_eq!(home.search_partners("persist", 5).unwrap().len(), 1);
    assert!(
        !home.is_document_loaded(SpaceKind::Practice),
        "reads must not load the document"
    );
    home.add_partner(partner("Second")).unwrap();
    assert!(home.is_document_loaded(SpaceKind::Practice));
}

#[test]
fn personal_notes_stay_out_of_the_practice_document() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let p = home.add_partner(partner("Noted")).unwrap();
    let note = home
        .add_note(&p.id, "Seems overloaded this spring; try again in June.")
        .unwrap();
    assert_eq!(home.notes_of(&p.id).unwrap(), vec![note]);
    let practice = home.export_document(SpaceKind::Practice).unwrap();
    let needle = b"overloaded";
    assert!(!practice.windows(needle.len()).any(|w| w == needle));
    let personal = Automerge::load(&home.export_document(SpaceKind::Personal).unwrap()).unwrap();
    assert!(doc::check_shape(&personal, SpaceKind::Personal).is_ok());
}

/// A relay and a practice key of `epoch`, as an invite would carry them.
fn relay_and_key(epoch: u32) -> (RelayInfo, crate::sealed::crypto::SpaceKey) {
    let relay = RelayInfo {
        addr: "127.0.0.1:4433".into(),
        fingerprint: [9; 32],
    };
    (relay, crate::sealed::crypto::SpaceKey::generate(epoch))
}

#[test]
fn a_further_device_keeps_its_clinicians_personal_key_and_position_with_the_install() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = practice(da.path());
    a.add_note(
        &a.add_partner(partner("Dr. Lee")).unwrap().id,
        "Call on Tuesdays",
    )
    .unwrap();
    let me = a.identity().unwrap().unwrap();
    let snapshot = a.space_snapshot(SpaceKind::Practice).unwrap();
    let personal_doc = a.export_document(SpaceKind::Personal).unwrap();
    let (relay, key) = relay_and_key(2);
    let personal_key = crate::sealed::crypto::SpaceKey::generate(5);
    let via = JoinedVia {
        relay: &relay,
        practice: SpaceJoin {
            keys: std::slice::from_ref(&key),
            log: None,
            cursor: Some(12),
        },
        personal: Some(SpaceJoin {
            keys: std::slice::from_ref(&personal_key),
            log: None,
            cursor: Some(7),
        }),
    };
    let b = open(db.path());
    let phone = b
        .add_device_from_snapshot(
            &me.practice_id,
            &snapshot,
            &me.member_id,
            (&me.personal_space_id, &personal_doc),
            &via,
        )
        .unwrap();
    assert_eq!(phone.member_id, me.member_id);
    assert_eq!(
        b.current_space_key(SpaceKind::Personal)
            .unwrap()
            .map(|k| (k.epoch, k.bytes().to_vec())),
        Some((5, personal_key.bytes().to_vec()))
    );
    let personal = b.sync_position(SpaceKind::Personal).unwrap();
    assert_eq!(personal.cursor, 7);
    assert_eq!(
        personal.acked_heads,
        a.heads(SpaceKind::Personal).unwrap(),
        "the personal space came whole from the relay"
    );
    assert_eq!(b.sync_position(SpaceKind::Practice).unwrap().cursor, 12);
    assert_eq!(b.relay().unwrap(), Some(relay));
}

/// A practice snapshot as devices wrote it before the tables image: every collection in
/// the records' JSON.
fn snapshot_with_json_collections(home: &Home) -> crate::sealed::snapshot::SpaceSnapshot {
    let practice_id = home.identity().unwrap().unwrap().practice_id;
    let mut snapshot = home.space_snapshot(SpaceKind::Practice).unwrap();
    let export = read_model::export(
        &home.lock_writer().conn,
        &practice_id,
        SpaceKind::Practice,
        true,
    )
    .unwrap();
    snapshot.records = Some(crate::sealed::snapshot::compress_records(&export).unwrap());
    snapshot.tables = None;
    snapshot
}

/// `home` joins the practice from `snapshot` as a new clinician, Ben Ode.
fn join_as_ben(
    home: &Home,
    practice_id: &str,
    snapshot: &crate::sealed::snapshot::SpaceSnapshot,
) -> Result<crate::model::Identity> {
    let (relay, key) = relay_and_key(1);
    let via = JoinedVia {
        relay: &relay,
        practice: SpaceJoin {
            keys: std::slice::from_ref(&key),
            log: None,
            cursor: Some(1),
        },
        personal: None,
    };
    home.join_practice_from_snapshot(practice_id, snapshot, "Ben Ode", &via)
}

/// Joins `snapshot` into a new home in `dir`, expecting a refusal that leaves nothing.
fn refused_join(
    dir: &Path,
    practice_id: &str,
    snapshot: &crate::sealed::snapshot::SpaceSnapshot,
) -> String {
    let b = open(dir);
    let err = join_as_ben(&b, practice_id, snapshot).unwrap_err();
    assert!(
        b.identity().unwrap().is_none(),
        "nothing of the practice is kept ({err})"
    );
    assert_eq!(b.relay().unwrap(), None);
    assert_eq!(b.partner_count().unwrap(), 0);
    // The writer is left as it was: nothing attached, commits durable.
    let writer = b.lock_writer();
    let databases: i64 = writer
        .conn
        .query_row(
            "SELECT count(*) FROM pragma_database_list WHERE name NOT IN ('main', 'temp')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(databases, 0, "the snapshot's tables are detached ({err})");
    let synchronous: i64 = writer
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous=FULL");
    err.to_string()
}

#[test]
fn a_snapshot_with_a_malformed_collection_is_refused_and_leaves_nothing() {
    let da = tempfile::tempdir().unwrap();
    let a = practice(da.path());
    let practice_id = a.identity().unwrap().unwrap().practice_id;
    let mut snapshot = snapshot_with_json_collections(&a);
    let good = zstd::decode_all(snapshot.records.as_deref().unwrap()).unwrap();
    let good = String::from_utf8(good).unwrap();
    let key = "\"touchpoints\":";
    let start = good.find(key).unwrap() + key.len();
    let end = start + good[start..].find(']').unwrap() + 1;
    let json = format!("{}[{{\"id\": oops}}]{}", &good[..start], &good[end..]);
    snapshot.records = Some(
        crate::sealed::snapshot::compress_records(&crate::sealed::snapshot::export_of_json(json))
            .unwrap(),
    );
    let db = tempfile::tempdir().unwrap();
    let err = refused_join(db.path(), &practice_id, &snapshot);
    assert!(err.contains("read model is malformed"), "{err}");
}

#[test]
fn a_damaged_or_foreign_tables_image_is_refused_and_leaves_nothing() {
    let da = tempfile::tempdir().unwrap();
    let a = practice(da.path());
    let p = a.add_partner(partner("Dr. Lee")).unwrap();
    for note in ["First call", "Second call"] {
        a.log_touchpoint(NewTouchpoint {
            partner_id: p.id.clone(),
            kind: TouchpointKind::Call,
            at: Some(day("2026-03-01")),
            outcome: None,
            note: note.into(),
            allow_contact_details: false,
            member_id: None,
        })
        .unwrap();
    }
    let practice_id = a.identity().unwrap().unwrap().practice_id;
    let snapshot = a.space_snapshot(SpaceKind::Practice).unwrap();
    let tables = snapshot
        .tables
        .clone()
        .expect("a practice snapshot carries its tables");
    let image = zstd::decode_all(tables.image.as_slice()).unwrap();
    // The image changed by `sql`, run with the schema writable.
    let altered = |sql: &str| {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.deserialize_read_exact("main", image.as_slice(), image.len(), false)
            .unwrap();
        conn.execute_batch(sql).unwrap();
        conn.serialize("main").unwrap().to_vec()
    };
    let note_column = "note TEXT NOT NULL,";
    // The touchpoints' definition, and the same without the computed column (whose value
    // SQLite would compute, and refuse, while a test plants binary data in a row).
    let touchpoints_sql: String = {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.deserialize_read_exact("main", image.as_slice(), image.len(), true)
            .unwrap();
        conn.query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'touchpoints'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let stored_only = format!(
        "{}\n    )",
        &touchpoints_sql[..touchpoints_sql.find(",\n        data GENERATED").unwrap()]
    )
    .replace('\'', "''");
    let touchpoints_sql = touchpoints_sql.replace('\'', "''");
    // The same tables and rows in a database that keeps its text as UTF-16.
    let utf16 = {
        let mut good = rusqlite::Connection::open_in_memory().unwrap();
        good.deserialize_read_exact("main", image.as_slice(), image.len(), true)
            .unwrap();
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA encoding = 'UTF-16le'").unwrap();
        let tables: Vec<(String, String)> = good
            .prepare("SELECT name, sql FROM sqlite_schema")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (name, sql) in tables {
            conn.execute_batch(&sql).unwrap();
            let columns: String = good
                .query_row(
                    "SELECT group_concat(name) FROM pragma_table_info(?1)",
                    [&name],
                    |r| r.get(0),
                )
                .unwrap();
            let mut select = good
                .prepare(&format!("SELECT {columns} FROM {name}"))
                .unwrap();
            let width = select.column_count();
            let marks = vec!["?"; width].join(",");
            let mut rows = select.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                let values: Vec<rusqlite::types::Value> =
                    (0..width).map(|i| row.get(i).unwrap()).collect();
                conn.execute(
                    &format!("INSERT INTO {name} ({columns}) VALUES ({marks})"),
                    rusqlite::params_from_iter(values),
                )
                .unwrap();
            }
        }
        conn.serialize("main").unwrap().to_vec()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"not a database at all".repeat(100),
            "cannot be used",
        ),
        (
            "cut short",
            image[..image.len() / 2].to_vec(),
            "cannot be used",
        ),
        (
            "an extra trigger",
            altered(
                "CREATE TRIGGER t AFTER INSERT ON touchpoints BEGIN DELETE FROM referrals; END;",
            ),
            "holds the trigger t",
        ),
        (
            "a table defined otherwise",
            altered("ALTER TABLE referrals ADD COLUMN extra TEXT"),
            "not the ones this device keeps",
        ),
        (
            "a NULL in a NOT NULL column",
            altered(&format!(
                "PRAGMA writable_schema = ON;
                 UPDATE sqlite_schema SET sql = replace(sql, '{note_column}', 'note TEXT,')
                 WHERE name = 'touchpoints';
                 PRAGMA writable_schema = RESET;
                 UPDATE touchpoints SET note = NULL WHERE rowid = 1;
                 PRAGMA writable_schema = ON;
                 UPDATE sqlite_schema SET sql = replace(sql, 'note TEXT,', '{note_column}')
                 WHERE name = 'touchpoints';"
            )),
            "NULL value in touchpoints.note",
        ),
        (
            "two touchpoints with one id",
            altered(
                "UPDATE touchpoints SET id = (SELECT id FROM touchpoints WHERE rowid = 1)
                 WHERE rowid = 2",
            ),
            "UNIQUE constraint failed: touchpoints.id",
        ),
        ("text in UTF-16", utf16, "text encoding"),
        (
            "binary data in a text column",
            altered(&format!(
                "PRAGMA writable_schema = ON;
                 UPDATE sqlite_schema SET sql = '{stored_only}' WHERE name = 'touchpoints';
                 PRAGMA writable_schema = RESET;
                 UPDATE touchpoints SET note = x'00ff' WHERE rowid = 2;
                 PRAGMA writable_schema = ON;
                 UPDATE sqlite_schema SET sql = '{touchpoints_sql}' WHERE name = 'touchpoints';"
            )),
            "a row of touchpoints holds binary data",
        ),
    ];
    for (case, image, expected) in cases {
        let mut damaged = snapshot.clone();
        damaged.tables = Some(crate::sealed::snapshot::SnapshotTables::compress(&image).unwrap());
        let db = tempfile::tempdir().unwrap();
        let err = refused_join(db.path(), &practice_id, &damaged);
        assert!(err.contains(expected), "{case}: {err}");
    }
}

#[test]
fn tables_from_another_store_version_are_left_for_the_document() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = practice(da.path());
    a.add_partner(partner("Dr. Lee")).unwrap();
    let mut snapshot = a.space_snapshot(SpaceKind::Practice).unwrap();
    if let Some(tables) = &mut snapshot.tables {
        tables.store_version += 1;
    }
    assert!(snapshot.records().unwrap().is_none());
    let b = open(db.path());
    let practice_id = a.identity().unwrap().unwrap().practice_id;
    join_as_ben(&b, &practice_id, &snapshot).unwrap();
    assert!(
        b.is_document_loaded(SpaceKind::Practice),
        "the practice came from its document"
    );
    assert_eq!(b.partner_count().unwrap(), 1);
}

#[test]
fn a_device_joins_from_a_snapshot_without_loading_or_projecting_the_document() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = practice(da.path());
    let p = a
        .add_partner(NewPartner {
            ideal_client: "Teens with school refusal".into(),
            specialties: vec!["anxiety".into()],
            ..partner("Dr. Lee Park")
        })
        .unwrap();
    a.log_touchpoint(NewTouchpoint {
        partner_id: p.id.clone(),
        kind: TouchpointKind::Coffee,
        at: Some(day("2026-03-01")),
        outcome: None,
        note: "Talked about her waitlist — café on Ñ street".into(),
        allow_contact_details: false,
        member_id: None,
    })
    .unwrap();
    a.log_touchpoint(NewTouchpoint {
        partner_id: p.id.clone(),
        kind: TouchpointKind::Email,
        at: Some(day("2026-03-03")),
        outcome: Some(TouchpointOutcome::NoResponse),
        note: String::new(),
        allow_contact_details: false,
        member_id: None,
    })
    .unwrap();
    let r = a
        .record_referral(NewReferral {
            partner_id: p.id.clone(),
            direction: Direction::In,
            at: Some(day("2026-03-02")),
            concerns: vec!["anxiety".into(), "custom:school_refusal".into()],
            age_band: Some(crate::vocab::AgeBand::Adolescent),
            payer_category: Some(crate::vocab::PayerCategory::Medicaid),
            modality: Some("family".into()),
            status: None,
            member_id: None,
        })
        .unwrap();
    a.record_referral(NewReferral {
        partner_id: p.id.clone(),
        direction: Direction::Out,
        at: Some(day("2026-03-04")),
        concerns: vec!["grief".into()],
        age_band: None,
        payer_category: None,
        modality: None,
        status: None,
        member_id: None,
    })
    .unwrap();
    a.update_referral(
        &r.id,
        ReferralStatus::Completed,
        Some(ReferralOutcome::IntakeHeld),
    )
    .unwrap();
    a.schedule_followup(NewFollowup {
        partner_id: p.id.clone(),
        due: day("2026-03-12"),
        reason: "Ask about their ideal client".into(),
        cadence_days: Some(30),
        member_id: None,
    })
    .unwrap();
    a.add_note(&p.id, "Private: prefers texts after 5pm")
        .unwrap();
    let snapshot = a.space_snapshot(SpaceKind::Practice).unwrap();
    let json = zstd::decode_all(snapshot.records.as_deref().unwrap()).unwrap();
    let tables = zstd::decode_all(snapshot.tables.as_ref().unwrap().image.as_slice()).unwrap();
    for bytes in [&json, &tables] {
        assert!(
            !bytes.windows(7).any(|w| w == b"Private"),
            "a practice snapshot never carries a personal note"
        );
    }
    assert!(
        tables.windows(8).any(|w| w == b"Talked a"),
        "the touchpoints travel in the tables image"
    );

    let b = open(db.path());
    let practice_id = a.identity().unwrap().unwrap().practice_id;
    let (relay, key) = relay_and_key(3);
    let via = JoinedVia {
        relay: &relay,
        practice: SpaceJoin {
            keys: std::slice::from_ref(&key),
            log: None,
            cursor: Some(41),
        },
        personal: None,
    };
    let ben = b
        .join_practice_from_snapshot(&practice_id, &snapshot, "Ben Ode", &via)
        .unwrap();
    assert!(!b.is_document_loaded(SpaceKind::Practice));
    assert_eq!(
        b.relay().unwrap().as_ref(),
        Some(&relay),
        "the relay is kept"
    );
    assert_eq!(
        b.current_space_key(SpaceKind::Practice)
            .unwrap()
            .map(|k| (k.epoch, k.bytes().to_vec())),
        Some((3, key.bytes().to_vec())),
        "the practice key is kept"
    );
    let position = b.sync_position(SpaceKind::Practice).unwrap();
    assert_eq!(position.cursor, 41, "the log position is kept");
    assert_eq!(
        position.acked_heads, snapshot.heads,
        "what the snapshot holds is known to be on the relay"
    );
    let shared = |h: &Home| -> Vec<String> {
        h.read_model_dump()
            .unwrap()
            .into_iter()
            .filter(|l| !l.starts_with("members:") && !l.starts_with("notes:"))
            .collect()
    };
    assert_eq!(
        shared(&a),
        shared(&b),
        "the installed read model is the projected one"
    );
    // A snapshot from an older device, every collection in its JSON, installs the same.
    let dc = tempfile::tempdir().unwrap();
    let c = open(dc.path());
    c.join_practice_from_snapshot(
        &practice_id,
        &snapshot_with_json_collections(&a),
        "Cy Older",
        &via,
    )
    .unwrap();
    assert!(!c.is_document_loaded(SpaceKind::Practice));
    assert_eq!(shared(&a), shared(&c), "from the JSON collections");
    let indexes = |h: &Home| -> Vec<(String, String)> {
        let conn = rusqlite::Connection::open(h.path()).unwrap();
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'index' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    };
    assert_eq!(
        indexes(&a),
        indexes(&b),
        "the install leaves every index as the migrations made it"
    );
    assert_eq!(
        b.search_partners("waitlist", 10).unwrap().len(),
        0,
        "notes of touchpoints are not indexed"
    );
    assert_eq!(b.search_partners("school refusal", 10).unwrap().len(), 1);
    assert!(
        b.members()
            .unwrap()
            .iter()
            .any(|m| m.display_name == "Ben Ode")
    );

    // The pending member entry survives a restart, and nothing is rebuilt.
    drop(b);
    let b = open(db.path());
    assert!(b.has_pending_join().unwrap());
    assert!(!b.is_document_loaded(SpaceKind::Practice));

    // The first write loads the document and writes the member entry with it; the read
    // model the snapshot gave agrees with the document, so nothing is repaired.
    let (events, _sub) = recorder(&b);
    b.add_partner(partner("Written by Ben")).unwrap();
    assert!(!b.has_pending_join().unwrap());
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .all(|e| e.origin != Origin::Repaired),
        "{:?}",
        events.lock().unwrap()
    );
    c.load_document(SpaceKind::Practice).unwrap();
    assert_eq!(
        shared(&a),
        shared(&c),
        "nothing to repair from the JSON either"
    );
    a.merge(
        SpaceKind::Practice,
        &b.changes_since(SpaceKind::Practice, &snapshot.heads)
            .unwrap(),
    )
    .unwrap();
    let members = a.members().unwrap();
    assert!(
        members
            .iter()
            .any(|m| m.id == ben.member_id && m.display_name == "Ben Ode"),
        "{members:?}"
    );
    assert_eq!(a.partner_count().unwrap(), 2);
}

/// Every event `home`'s listeners hear from now on, while the subscription is kept.
fn recorder(home: &Home) -> (Arc<Mutex<Vec<ChangeEvent>>>, crate::Subscription) {
    let events: Arc<Mutex<Vec<ChangeEvent>>> = Arc::default();
    let sink = events.clone();
    let sub = home.subscribe(Arc::new(move |e: &ChangeEvent| {
        sink.lock().unwrap().push(e.clone())
    }));
    (events, sub)
}

fn pair() -> (tempfile::TempDir, Home, tempfile::TempDir, Home) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = practice(da.path());
    let b = open(db.path());
    let id = a.identity().unwrap().unwrap();
    b.join_practice(
        &id.practice_id,
        &a.export_document(SpaceKind::Practice).unwrap(),
        "Ben Ode",
    )
    .unwrap();
    a.merge(
        SpaceKind::Practice,
        &b.export_document(SpaceKind::Practice).unwrap(),
    )
    .unwrap();
    (da, a, db, b)
}

#[test]
fn two_homes_converge_and_listeners_hear_local_and_remote() {
    let (_da, a, _db, b) = pair();
    assert_eq!(a.members().unwrap().len(), 2);
    let (events, sub) = recorder(&b);
    let before_a = a.heads(SpaceKind::Practice).unwrap();
    let p = a.add_partner(partner("Shared")).unwrap();
    let bytes = a.export_document(SpaceKind::Practice).unwrap();
    let outcome = b.merge(SpaceKind::Practice, &bytes).unwrap();
    assert!(outcome.changed);
    assert!(
        !b.merge(SpaceKind::Practice, &bytes).unwrap().changed,
        "duplicates are harmless"
    );
    b.edit_partner(
        &p.id,
        PartnerEdit {
            city: Some("Eugene".into()),
            ..Default::default()
        },
    )
    .unwrap();
    {
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].origin, Origin::Remote);
        assert!(events[0].entities.iter().any(|e| e.id == p.id));
        assert_eq!(events[1].origin, Origin::Local);
        assert_eq!(events[1].entities[0].id, p.id);
    }
    drop(sub);
    b.edit_partner(
        &p.id,
        PartnerEdit {
            city: Some("Bend".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        events.lock().unwrap().len(),
        2,
        "no delivery after the subscription is dropped"
    );
    a.merge(
        SpaceKind::Practice,
        &b.export_document(SpaceKind::Practice).unwrap(),
    )
    .unwrap();
    assert_ne!(a.heads(SpaceKind::Practice).unwrap(), before_a);
    assert_eq!(
        a.heads(SpaceKind::Practice).unwrap(),
        b.heads(SpaceKind::Practice).unwrap()
    );
    assert_eq!(a.read_model_dump().unwrap(), b.read_model_dump().unwrap());
    assert_eq!(a.partner(&p.id).unwrap().city.as_deref(), Some("Bend"));
}

#[test]
fn corrupt_bytes_are_refused_and_change_nothing() {
    let (_da, a, _db, b) = pair();
    a.add_partner(partner("Keep")).unwrap();
    let good = a.export_document(SpaceKind::Practice).unwrap();
    let dump = b.read_model_dump().unwrap();
    let heads = b.heads(SpaceKind::Practice).unwrap();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    for bad in [
        &good[..good.len() / 2],
        &flipped[..],
        b"garbage bytes".as_slice(),
    ] {
        let err = b.merge(SpaceKind::Practice, bad);
        assert!(
            matches!(err, Err(Error::CorruptDocument(_))) || matches!(err, Ok(ref o) if !o.changed),
            "{err:?}"
        );
        assert_eq!(b.read_model_dump().unwrap(), dump);
        assert_eq!(b.heads(SpaceKind::Practice).unwrap(), heads);
    }
    assert!(
        b.merge(SpaceKind::Practice, &good).unwrap().changed,
        "the good bytes still merge after refusals"
    );
    assert!(matches!(
        open(tempfile::tempdir().unwrap().path()).join_practice(&doc::new_id(), b"nope", "X"),
        Err(Error::CorruptDocument(_))
    ));
}

#[test]
fn a_newer_schema_is_read_only_and_unknown_fields_survive() {
    let (_da, a, _db, b) = pair();
    let p = a.add_partner(partner("Future")).unwrap();
    // A newer build adds a field to a partner.
    let mut newer = Automerge::load(&a.export_document(SpaceKind::Practice).unwrap()).unwrap();
    newer
        .transact(|tx| -> Result<()> {
            let o = doc::entity(tx, doc::Collection::Partners, &p.id)?.unwrap();
            tx.put(&o, "pronouns", "they/them")?;
            Ok(())
        })
        .unwrap();
    b.merge(SpaceKind::Practice, &newer.save()).unwrap();
    b.edit_partner(
        &p.id,
        PartnerEdit {
            city: Some("Bend".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let roundtrip = Automerge::load(&b.export_document(SpaceKind::Practice).unwrap()).unwrap();
    let o = doc::entity(&roundtrip, doc::Collection::Partners, &p.id)
        .unwrap()
        .unwrap();
    assert_eq!(
        doc::fields::get_str(&roundtrip, &o, "pronouns").as_deref(),
        Some("they/them")
    );
    assert_eq!(
        doc::fields::get_str(&roundtrip, &o, "city").as_deref(),
        Some("Bend")
    );

    // Then it bumps the schema: this build can still read and merge, but not write.
    newer
        .transact(|tx| -> Result<()> {
            tx.put(
                ROOT,
                "schema",
                automerge::ScalarValue::Uint(SCHEMA_VERSION + 1),
            )?;
            Ok(())
        })
        .unwrap();
    b.merge(SpaceKind::Practice, &newer.save()).unwrap();
    let err = b.add_partner(partner("Refused")).unwrap_err();
    assert!(
        matches!(err, Error::ReadOnly { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("update Rapport"));
    assert_eq!(b.partner(&p.id).unwrap().name, "Future");
    assert_eq!(doc::schema_of(&roundtrip), SCHEMA_VERSION);
}

#[test]
fn a_read_model_behind_its_document_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let home = practice(dir.path());
        for i in 0..5 {
            home.add_partner(NewPartner {
                specialties: vec!["grief".into()],
                ..partner(&format!("P{i}"))
            })
            .unwrap();
        }
        home.read_model_dump().unwrap()
    };
    {
        let conn = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
        conn.execute_batch(
            "DELETE FROM partners WHERE name_key = 'p3'; UPDATE spaces SET model_heads = x'00'",
        )
        .unwrap();
    }
    let home = open(dir.path());
    assert_eq!(home.read_model_dump().unwrap(), expected);
}

#[test]
fn a_home_from_store_version_1_is_upgraded_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let source_dir = tempfile::tempdir().unwrap();
    let source = practice(source_dir.path());
    let p = source.add_partner(partner("Carried Over")).unwrap();
    let snapshot = source.export_document(SpaceKind::Practice).unwrap();
    let personal = source.export_document(SpaceKind::Personal).unwrap();
    let ids = source.identity().unwrap().unwrap();
    {
        // What version 1 of the store wrote: identity, spaces and chunks.
        let path = dir.path().join(store::DB_FILE);
        let conn = rusqlite::Connection::open(&path).unwrap();
        store::migrate(&path, &conn, 1).unwrap();
        for (k, v) in [
            ("device_id", &ids.device_id),
            ("member_id", &ids.member_id),
            ("practice_id", &ids.practice_id),
            ("personal_id", &ids.personal_space_id),
        ] {
            conn.execute("INSERT INTO home VALUES (?1, ?2)", [k, v.as_str()])
                .unwrap();
        }
        for (id, kind, bytes) in [
            (&ids.practice_id, SpaceKind::Practice, &snapshot),
            (&ids.personal_space_id, SpaceKind::Personal, &personal),
        ] {
            let d = Automerge::load(bytes).unwrap();
            chunks::create_space(&conn, id, kind, bytes, &d.get_heads(), 1).unwrap();
        }
    }
    let home = open(dir.path());
    assert_eq!(
        store::user_version(&home.lock_writer().conn).unwrap(),
        store::STORE_VERSION
    );
    assert_eq!(home.partner(&p.id).unwrap().name, "Carried Over");
    assert_eq!(
        home.identity().unwrap().unwrap().practice_name,
        "Riverside Counseling"
    );
    home.add_partner(partner("After upgrade")).unwrap();
}

#[test]
fn a_truncated_database_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    {
        let home = practice(dir.path());
        for i in 0..200 {
            home.add_partner(NewPartner {
                ideal_client: "x".repeat(300),
                ..partner(&format!("Partner {i}"))
            })
            .unwrap();
        }
        home.compact(SpaceKind::Practice).unwrap();
        let conn = home.lock_writer();
        conn.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let path = dir.path().join(store::DB_FILE);
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() / 3]).unwrap();
    let _ = std::fs::remove_file(dir.path().join("rapport.db-wal"));
    let before = std::fs::read(&path).unwrap();
    let result = Home::open_with(dir.path(), HomeOptions { clock: clock() })
        .and_then(|home| {
            home.partners(&PartnerFilter {
                limit: Some(1000),
                ..Default::default()
            })
            .map(|_| home)
        })
        .and_then(|home| home.add_partner(partner("after")).map(|_| ()));
    let err = result.expect_err("a truncated home must not work silently");
    let text = err.to_string();
    eprintln!("truncated home: {text}");
    assert!(
        matches!(
            err,
            Error::CorruptHome { .. } | Error::Storage(_) | Error::CorruptDocument(_)
        ),
        "{text}"
    );
    assert!(
        text.contains("damaged") || text.contains("malformed") || text.contains("not valid"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the damaged file is left as it was"
    );
}

#[test]
fn the_chunk_log_compacts_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let p = home.add_partner(partner("Busy")).unwrap();
    for i in 0..1_100 {
        home.edit_partner(
            &p.id,
            PartnerEdit {
                city: Some(format!("City {i}")),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let stats = chunks::stats(
        &home.lock_writer().conn,
        &home.identity().unwrap().unwrap().practice_id,
    )
    .unwrap();
    assert!(stats.incremental_chunks < 1_000, "{stats:?}");
    drop(home);
    let home = open(dir.path());
    home.add_partner(partner("Again")).unwrap();
    assert_eq!(
        home.partner(&p.id).unwrap().city.as_deref(),
        Some("City 1099")
    );
}

#[test]
fn ideal_client_statements_belong_to_members() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let me = home
        .set_ideal_client("Adults navigating grief and life transitions; evenings.")
        .unwrap();
    assert!(me.ideal_client.starts_with("Adults navigating grief"));
    assert!(!home.set_accepting(false).unwrap().accepting);
    assert!(matches!(
        home.set_ideal_client("client MRN 123456"),
        Err(Error::Identifier { .. })
    ));
}

#[test]
fn owners_add_colleagues_and_records_can_name_them() {
    let (_da, a, _db, b) = pair();
    let colleague = a
        .batch(SpaceKind::Practice, |batch| {
            batch.add_member("Dee Imported", crate::vocab::Role::Member)
        })
        .unwrap();
    assert!(matches!(
        a.batch(SpaceKind::Practice, |batch| batch.add_member("Second Owner", crate::vocab::Role::Owner)),
        Err(Error::Invalid { ref field, .. }) if field == "role"
    ));
    let refused = b.batch(SpaceKind::Practice, |batch| {
        batch.add_member("Nope", crate::vocab::Role::Member)
    });
    assert!(
        matches!(refused, Err(Error::Conflict(ref m)) if m.contains("owner or admin")),
        "{refused:?}"
    );
    let p = a.add_partner(partner("Attributed")).unwrap();
    let r = a
        .record_referral(NewReferral {
            partner_id: p.id.clone(),
            direction: Direction::Out,
            at: None,
            concerns: vec!["grief".into()],
            age_band: None,
            payer_category: None,
            modality: None,
            status: None,
            member_id: Some(colleague.id.clone()),
        })
        .unwrap();
    assert_eq!(r.member_id, colleague.id);
    let unknown = a.log_touchpoint(NewTouchpoint {
        partner_id: p.id.clone(),
        kind: TouchpointKind::Call,
        at: None,
        outcome: None,
        note: String::new(),
        allow_contact_details: false,
        member_id: Some(doc::new_id()),
    });
    assert!(
        matches!(
            unknown,
            Err(Error::NotFound {
                entity: "member",
                ..
            })
        ),
        "{unknown:?}"
    );
}

#[test]
fn a_failed_batch_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let dump = home.read_model_dump().unwrap();
    let heads = home.heads(SpaceKind::Practice).unwrap();
    let result = home.batch(SpaceKind::Practice, |b| {
        b.add_partner(partner("First"))?;
        b.add_partner(partner("Second"))?;
        b.add_partner(NewPartner {
            email: Some("broken".into()),
            ..partner("Third")
        })
    });
    assert_eq!(invalid_field(result.unwrap_err()), "email");
    assert_eq!(home.read_model_dump().unwrap(), dump);
    assert_eq!(home.heads(SpaceKind::Practice).unwrap(), heads);
    let ok = home.batch(SpaceKind::Practice, |b| {
        b.add_partner(partner("First"))?;
        b.add_partner(partner("Second"))
    });
    assert!(ok.is_ok());
    assert_eq!(home.partner_count().unwrap(), 2);
    let wrong_space = home.batch(SpaceKind::Personal, |b| b.add_partner(partner("X")));
    assert!(matches!(wrong_space, Err(Error::Internal(_))));
}

fn touch_with(home: &Home, partner_id: &str, at: &str, outcome: TouchpointOutcome) {
    home.log_touchpoint(NewTouchpoint {
        partner_id: partner_id.to_string(),
        kind: TouchpointKind::Email,
        at: Some(day(at)),
        outcome: Some(outcome),
        note: String::new(),
        allow_contact_details: false,
        member_id: None,
    })
    .unwrap();
}

fn open_auto(home: &Home, partner_id: &str) -> Vec<crate::model::Followup> {
    home.followups_of(partner_id)
        .unwrap()
        .into_iter()
        .filter(|f| f.auto && f.status == FollowupStatus::Open)
        .collect()
}

#[test]
fn no_response_schedules_the_next_follow_up_with_backoff_and_replies_reset_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    let p = home.add_partner(partner("Quiet Partner")).unwrap();
    // Step by step through the default backoff: 14, 21, 30, then every 30.
    let mut at = day("2026-01-05");
    for (attempt, step) in [(1, 14), (2, 21), (3, 30), (4, 30), (5, 30)] {
        touch_with(&home, &p.id, &at.to_string(), TouchpointOutcome::NoResponse);
        let pending = open_auto(&home, &p.id);
        assert_eq!(pending.len(), 1, "exactly one pending automatic follow-up");
        assert_eq!(pending[0].attempt, attempt);
        assert_eq!(
            pending[0].due,
            at.saturating_add(jiff::Span::new().days(step)),
            "attempt {attempt}"
        );
        assert!(pending[0].reason.contains(&format!("attempt {attempt}")));
        assert_eq!(home.partner(&p.id).unwrap().cadence_attempt, attempt);
        at = pending[0].due;
    }
    // No response never closes the relationship.
    let partner_now = home.partner(&p.id).unwrap();
    assert!(!partner_now.archived);
    assert_eq!(partner_now.status, crate::vocab::PartnerStatus::Prospect);
    // A reply resets the backoff and completes the pending follow-up.
    touch_with(&home, &p.id, "2026-06-01", TouchpointOutcome::Reached);
    assert!(open_auto(&home, &p.id).is_empty());
    assert_eq!(home.partner(&p.id).unwrap().cadence_attempt, 0);
    let done: Vec<_> = home
        .followups_of(&p.id)
        .unwrap()
        .into_iter()
        .filter(|f| f.status == FollowupStatus::Done)
        .collect();
    assert_eq!(done.len(), 5);
    assert!(done.iter().any(|f| f.done_at == Some(day("2026-06-01"))));
    // Silence again starts from the first step.
    touch_with(&home, &p.id, "2026-06-10", TouchpointOutcome::NoResponse);
    assert_eq!(open_auto(&home, &p.id)[0].due, day("2026-06-24"));
    // A referral exchanged resets it too.
    home.record_referral(NewReferral {
        partner_id: p.id.clone(),
        direction: Direction::In,
        at: Some(day("2026-06-12")),
        concerns: vec!["grief".into()],
        age_band: None,
        payer_category: None,
        modality: None,
        status: None,
        member_id: None,
    })
    .unwrap();
    assert!(open_auto(&home, &p.id).is_empty());
    assert_eq!(home.partner(&p.id).unwrap().cadence_attempt, 0);
    // A scheduled meeting resets as well.
    touch_with(&home, &p.id, "2026-06-20", TouchpointOutcome::NoResponse);
    touch_with(&home, &p.id, "2026-06-25", TouchpointOutcome::Scheduled);
    assert!(open_auto(&home, &p.id).is_empty());
}

#[test]
fn cadences_are_configurable_per_practice_and_per_partner() {
    let dir = tempfile::tempdir().unwrap();
    let home = practice(dir.path());
    assert_eq!(
        invalid_field(home.set_default_cadence(&[]).unwrap_err()),
        "cadence_steps"
    );
    assert_eq!(
        invalid_field(home.set_default_cadence(&[10, 0]).unwrap_err()),
        "cadence_steps"
    );
    assert_eq!(home.set_default_cadence(&[10, 20]).unwrap(), vec![10, 20]);
    let practice_default = home.add_partner(partner("Default")).unwrap();
    let own = home
        .add_partner(NewPartner {
            cadence_steps: vec![3],
            ..partner("Own")
        })
        .unwrap();
    for (p, first, second) in [(&practice_default, 10, 20), (&own, 3, 3)] {
        touch_with(&home, &p.id, "2026-02-01", TouchpointOutcome::NoResponse);
        assert_eq!(
            open_auto(&home, &p.id)[0].due,
            day("2026-02-01").saturating_add(jiff::Span::new().days(first))
        );
        touch_with(&home, &p.id, "2026-03-01", TouchpointOutcome::NoResponse);
        assert_eq!(
            open_auto(&home, &p.id)[0].due,
            day("2026-03-01").saturating_add(jiff::Span::new().days(second))
        );
    }
    let edited = home
        .edit_partner(
            &own.id,
            PartnerEdit {
                cadence_steps: Some(vec![]),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(
        edited.cadence_steps.is_empty(),
        "an empty list returns the partner to the practice default"
    );
    assert_eq!(
        invalid_field(
            home.edit_partner(
                &own.id,
                PartnerEdit {
                    cadence_steps: Some(vec![400]),
                    ..Default::default()
                }
            )
            .unwrap_err()
        ),
        "cadence_steps"
    );
}

#[test]
fn a_live_entry_merges_and_moves_the_cursor_together() {
    let (_da, a, _db, b) = pair();
    let cursor = |h: &Home| h.sync_position(SpaceKind::Practice).unwrap().cursor;
    let p = a.add_partner(partner("Delivered")).unwrap();
    let bytes = a.export_document(SpaceKind::Practice).unwrap();
    assert!(
        b.merge_from_relay_at(SpaceKind::Practice, &bytes, 7)
            .unwrap()
            .changed
    );
    assert_eq!(b.partner(&p.id).unwrap().name, "Delivered");
    assert_eq!(cursor(&b), 7);
    // Bytes already had still move the cursor; it never moves back.
    assert!(
        !b.merge_from_relay_at(SpaceKind::Practice, &bytes, 8)
            .unwrap()
            .changed
    );
    assert_eq!(cursor(&b), 8);
    b.merge_from_relay_at(SpaceKind::Practice, &bytes, 3)
        .unwrap();
    assert_eq!(cursor(&b), 8);
}

#[test]
fn a_home_from_store_v6_keeps_every_partner_referral_and_note_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let (partner_id, before) = {
        let home = practice(dir.path());
        let p = home.add_partner(partner("Dr. Kept Partner")).unwrap();
        home.record_referral(NewReferral {
            partner_id: p.id.clone(),
            direction: Direction::In,
            at: None,
            concerns: vec!["anxiety".into()],
            age_band: None,
            payer_category: None,
            modality: None,
            status: None,
            member_id: None,
        })
        .unwrap();
        home.add_note(&p.id, "Prefers a call on Fridays").unwrap();
        (p.id, home.read_model_dump().unwrap())
    };
    // What the previous release wrote: the same file without version 7's tables.
    {
        let conn = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
        conn.execute_batch(
            "DROP TABLE membership_ops; DROP TABLE membership_state; DROP TABLE heads_statements;
             PRAGMA user_version = 6;",
        )
        .unwrap();
    }
    let home = open(dir.path());
    assert_eq!(home.read_model_dump().unwrap(), before);
    assert_eq!(home.notes_of(&partner_id).unwrap().len(), 1);
    assert_eq!(home.referrals_of(&partner_id).unwrap().len(), 1);
    assert!(home.membership(SpaceKind::Practice).unwrap().is_none());
    home.add_partner(partner("Written After the Upgrade"))
        .unwrap();
    drop(home);
    let conn = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
    assert_eq!(
        crate::store::user_version(&conn).unwrap(),
        crate::store::STORE_VERSION
    );
}

#[test]
fn merged_text_holding_an_identifier_is_kept_and_flagged() {
    let (_da, a, _db, b) = pair();
    let p = a.add_partner(partner("Dr. Flag")).unwrap();
    b.merge(
        SpaceKind::Practice,
        &a.export_document(SpaceKind::Practice).unwrap(),
    )
    .unwrap();
    let (events, _sub) = recorder(&b);
    // A colleague's device without the guard (old, buggy or hostile) writes identifiers
    // straight into the document: a date of birth in a partner field and a made-up code.
    let mut unguarded = Automerge::load(&a.export_document(SpaceKind::Practice).unwrap()).unwrap();
    unguarded
        .transact(|tx| -> Result<()> {
            let o = doc::entity(tx, doc::Collection::Partners, &p.id)?.unwrap();
            doc::fields::put_text(tx, &o, "how_we_met", "Her client, DOB 14-Mar-1987")?;
            let tags = tx.put_object(&o, "tags", automerge::ObjType::Map)?;
            tx.put(&tags, "mom-555-123-4567", true)?;
            Ok(())
        })
        .unwrap();
    let outcome = b.merge(SpaceKind::Practice, &unguarded.save()).unwrap();
    // Kept: refusing it would split the devices.
    assert_eq!(
        b.partner(&p.id).unwrap().how_we_met,
        "Her client, DOB 14-Mar-1987"
    );
    let fields: Vec<(&str, &str)> = outcome
        .flagged
        .iter()
        .map(|f| (f.field.as_str(), f.what.as_str()))
        .collect();
    assert!(
        fields.contains(&("how_we_met", "a full date (such as a date of birth)")),
        "{fields:?}"
    );
    assert!(fields.contains(&("tags", "a phone number")), "{fields:?}");
    assert!(
        outcome
            .flagged
            .iter()
            .all(|f| f.id == p.id && f.kind == crate::model::EntityKind::Partner)
    );
    let remote = events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.origin == Origin::Remote)
        .cloned()
        .unwrap();
    assert_eq!(remote.flagged, outcome.flagged);

    // A clean merge flags nothing.
    let clean = a.add_partner(partner("Dr. Clean")).unwrap();
    let outcome = b
        .merge(
            SpaceKind::Practice,
            &a.export_document(SpaceKind::Practice).unwrap(),
        )
        .unwrap();
    assert!(outcome.changed && outcome.flagged.is_empty(), "{outcome:?}");
    assert!(b.partner(&clean.id).is_ok());
}

#[cfg(unix)]
#[test]
fn the_home_and_its_database_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("home");
    let home = practice(&dir);
    home.add_partner(partner("Dr. Private")).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for name in ["rapport.db", "rapport.db-wal", "rapport.db-shm"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    drop(home);
    // A home written by an older build (0755 and 0644) is tightened when opened.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        dir.join("rapport.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let home = open(&dir);
    assert_eq!((mode(&dir), mode(&dir.join("rapport.db"))), (0o700, 0o600));
    assert_eq!(home.partner_count().unwrap(), 1, "nothing lost");
}

/// The wire id of a home's device: who signs its relay entries.
fn sender(home: &Home) -> rapport_wire::DeviceId {
    home.device_identity().unwrap().device_id()
}

#[test]
fn a_change_passed_off_as_a_colleagues_is_refused_unless_already_had_from_its_writer() {
    let (_da, a, _db, b) = pair();
    let (_dc, c) = {
        let dir = tempfile::tempdir().unwrap();
        let c = open(dir.path());
        let id = a.identity().unwrap().unwrap();
        c.join_practice(
            &id.practice_id,
            &a.export_document(SpaceKind::Practice).unwrap(),
            "Cy Third",
        )
        .unwrap();
        (dir, c)
    };
    let heads = a.heads(SpaceKind::Practice).unwrap();
    let p = a.add_partner(partner("Written by Ann")).unwrap();
    let change = a.changes_since(SpaceKind::Practice, &heads).unwrap();
    // Carried by c's entry: not c's change, and b never had it from a.
    let outcome = b
        .merge_entry(SpaceKind::Practice, &change, &sender(&c), None)
        .unwrap();
    assert_eq!(outcome.foreign, 1);
    assert!(!outcome.changed);
    assert!(b.partner(&p.id).is_err(), "a forged change was merged");
    // From its writer it merges; passed on again afterwards it is only a duplicate.
    let outcome = b
        .merge_entry(SpaceKind::Practice, &change, &sender(&a), None)
        .unwrap();
    assert!(outcome.changed);
    assert_eq!(outcome.foreign, 0);
    assert_eq!(b.partner(&p.id).unwrap().name, "Written by Ann");
    let again = b
        .merge_entry(SpaceKind::Practice, &change, &sender(&c), None)
        .unwrap();
    assert_eq!((again.changed, again.foreign), (false, 0));
    // An entry holding a whole document (every writer's changes at once) is refused.
    let err = b
        .merge_entry(
            SpaceKind::Practice,
            &a.export_document(SpaceKind::Practice).unwrap(),
            &sender(&a),
            None,
        )
        .unwrap_err();
    assert!(err.refuses_entry(), "{err}");
    assert!(err.to_string().contains("whole document"), "{err}");
}

#[test]
fn a_push_carries_only_this_devices_own_changes() {
    let (_da, a, _db, b) = pair();
    let acked = a.heads(SpaceKind::Practice).unwrap();
    a.set_acked_heads(SpaceKind::Practice, &acked).unwrap();
    // a has an edit not pushed yet when b's change arrives, so the acknowledged heads stay
    // behind both.
    a.add_partner(partner("Ann's own")).unwrap();
    let before_b = b.heads(SpaceKind::Practice).unwrap();
    b.add_partner(partner("Ben's")).unwrap();
    a.merge_from_relay(
        SpaceKind::Practice,
        &b.changes_since(SpaceKind::Practice, &before_b).unwrap(),
    )
    .unwrap();
    let pieces = a
        .changes_since_in_pieces(SpaceKind::Practice, &acked, 1 << 20)
        .unwrap();
    let changes: Vec<_> = pieces
        .iter()
        .flat_map(|p| crate::doc::guard::changes(p).unwrap())
        .collect();
    assert_eq!(changes.len(), 1, "only a's one edit");
    assert_eq!(
        changes[0].actor_id(),
        &doc::actor_for(&a.device_id().unwrap())
    );
    // Everything the push sends is merged by a receiver as the sender's own.
    let outcome = b
        .merge_entry(SpaceKind::Practice, &pieces[0], &sender(&a), None)
        .unwrap();
    assert_eq!(outcome.foreign, 0);
    assert!(outcome.changed);
}

#[test]
fn a_snapshot_whose_records_differ_from_its_document_is_repaired_at_first_load() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = practice(da.path());
    let p = a.add_partner(partner("Dr. True Name")).unwrap();
    let t = a
        .log_touchpoint(NewTouchpoint {
            partner_id: p.id.clone(),
            kind: TouchpointKind::Coffee,
            at: Some(day("2026-03-01")),
            outcome: None,
            note: "Met for coffee".into(),
            allow_contact_details: false,
            member_id: None,
        })
        .unwrap();
    let untouched = a.add_partner(partner("Dr. Untouched")).unwrap();
    // The records a faulty or hostile member sealed: the partner renamed, a touchpoint
    // left out, a partner the document does not have.
    // Edited as text, so that every record left alone keeps its bytes.
    let mut snapshot = snapshot_with_json_collections(&a);
    let json = zstd::decode_all(snapshot.records.as_deref().unwrap()).unwrap();
    let mut records: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(&json).unwrap();
    let partners: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_str(records["partners"].get()).unwrap();
    let mut edited: Vec<String> = partners
        .iter()
        .map(|r| r.get().replace("\"Dr. True Name\"", "\"Dr. Forged Name\""))
        .collect();
    let ghost = partners
        .iter()
        .map(|r| r.get())
        .find(|r| r.contains("Dr. Untouched"))
        .unwrap()
        .replace(&untouched.id, "01890000-0000-7000-8000-000000000000")
        .replace("Dr. Untouched", "Dr. Ghost");
    edited.push(ghost);
    let raw = |s: String| serde_json::value::RawValue::from_string(s).unwrap();
    records.insert("partners".into(), raw(format!("[{}]", edited.join(","))));
    records.insert("touchpoints".into(), raw("[]".into()));
    snapshot.records =
        Some(zstd::encode_all(serde_json::to_string(&records).unwrap().as_bytes(), 3).unwrap());

    let b = open(db.path());
    let practice_id = a.identity().unwrap().unwrap().practice_id;
    join_as_ben(&b, &practice_id, &snapshot).unwrap();
    // Until the document is loaded the device shows what the snapshot said.
    assert_eq!(b.partner(&p.id).unwrap().name, "Dr. Forged Name");
    assert!(b.touchpoint(&t.id).is_err());
    let (events, _sub) = recorder(&b);
    b.load_document(SpaceKind::Practice).unwrap();
    let repaired: Vec<ChangeEvent> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.origin == Origin::Repaired)
        .cloned()
        .collect();
    assert_eq!(repaired.len(), 1, "{:?}", events.lock().unwrap());
    let named: Vec<(EntityKind, &str)> = repaired[0]
        .entities
        .iter()
        .map(|e| (e.kind, e.id.as_str()))
        .collect();
    for wrong in [
        (EntityKind::Partner, p.id.as_str()),
        (EntityKind::Partner, "01890000-0000-7000-8000-000000000000"),
        (EntityKind::Touchpoint, t.id.as_str()),
    ] {
        assert!(named.contains(&wrong), "{wrong:?} not in {named:?}");
    }
    assert!(
        !named.contains(&(EntityKind::Partner, untouched.id.as_str())),
        "{named:?}"
    );
    assert_eq!(b.partner(&p.id).unwrap().name, "Dr. True Name");
    assert!(b.partner("01890000-0000-7000-8000-000000000000").is_err());
    assert_eq!(b.touchpoint(&t.id).unwrap().note, "Met for coffee");
    assert_eq!(b.search_partners("Forged", 10).unwrap().len(), 0);
    assert_eq!(b.search_partners("True", 10).unwrap().len(), 1);
    // Said once: loading again (after a restart too) finds nothing more to repair.
    drop(_sub);
    drop(b);
    let b = open(db.path());
    let (again, _sub) = recorder(&b);
    b.add_partner(partner("After")).unwrap();
    assert!(
        again
            .lock()
            .unwrap()
            .iter()
            .all(|e| e.origin != Origin::Repaired)
    );
}

#[test]
fn a_snapshot_document_that_is_a_bomb_is_refused_when_first_loaded() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = practice(da.path());
    a.add_partner(partner("Dr. Before")).unwrap();
    let mut snapshot = a.space_snapshot(SpaceKind::Practice).unwrap();
    // The document as a member sealed it, with a change inflating to 64 MiB after it.
    snapshot
        .document
        .extend(crate::doc::bounds::tests::change_bomb(64 << 20));
    let b = open(db.path());
    let practice_id = a.identity().unwrap().unwrap().practice_id;
    join_as_ben(&b, &practice_id, &snapshot).unwrap();
    let err = b.load_document(SpaceKind::Practice).unwrap_err();
    assert!(matches!(err, Error::CorruptDocument(_)), "{err}");
    assert!(err.to_string().contains("inflate past"), "{err}");
    // What the device could read before, it still reads.
    assert!(b.partners_by_exact_name("Dr. Before").unwrap().is_some());
}
