//! A deterministic generator of a practice's referral network, written through the core's
//! own API (in atomic batches), so benchmarks and tests measure real homes.
//!
//! The same seed and size give the same content; ids are fresh UUIDv7s each run.

use anyhow::Result;
use jiff::civil::Date;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rapport_core::model::{NewFollowup, NewPartner, NewReferral, NewTouchpoint};
use rapport_core::vocab::{
    AgeBand, Direction, PartnerKind, PartnerStatus, PayerCategory, ReferralOutcome, ReferralStatus,
    Role, StreamKind, TouchpointKind, TouchpointOutcome,
};
use rapport_core::{Home, SpaceKind};

/// Bumped whenever the generated content changes, so cached homes are regenerated.
pub const GENERATOR_VERSION: u32 = 2;

/// How big a practice to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PracticeSize {
    /// Clinicians.
    pub members: usize,
    /// Referral streams.
    pub streams: usize,
    /// Partners.
    pub partners: usize,
    /// Touchpoints.
    pub touchpoints: usize,
    /// Referrals.
    pub referrals: usize,
    /// Open follow-ups.
    pub followups: usize,
    /// Years of history.
    pub years: i16,
}

/// The large practice of DOMAIN.md: 50 clinicians over 10 years.
pub const LARGE: PracticeSize = PracticeSize {
    members: 50,
    streams: 8,
    partners: 5_000,
    touchpoints: 100_000,
    referrals: 50_000,
    followups: 2_000,
    years: 10,
};

/// The small practice of DOMAIN.md: 3 clinicians.
pub const SMALL: PracticeSize = PracticeSize {
    members: 3,
    streams: 4,
    partners: 150,
    touchpoints: 2_000,
    referrals: 600,
    followups: 40,
    years: 3,
};

/// What was generated.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Member ids (the home's own member first).
    pub members: Vec<String>,
    /// Partner ids, in creation order.
    pub partners: Vec<String>,
    /// The last day of the history.
    pub today: Date,
}

const FIRST: &[&str] = &[
    "Ana", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ines", "Jon", "Kai", "Lena", "Milo",
    "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tess", "Uma", "Vik", "Wren", "Yara", "Zane",
];
const LAST: &[&str] = &[
    "Alvarez", "Brooks", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jones",
    "Khan", "Lopez", "Moss", "Nguyen", "Okafor", "Park", "Quist", "Rossi", "Singh", "Tran",
    "Usman", "Vogel", "Walsh", "Young", "Zhou",
];
const CITIES: &[&str] = &[
    "Portland",
    "Salem",
    "Eugene",
    "Bend",
    "Gresham",
    "Beaverton",
    "Hillsboro",
    "Medford",
    "Corvallis",
    "Tigard",
];
const CONCERNS: &[&str] = &[
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
    "child_adolescent",
    "perinatal",
    "lgbtq_affirming",
];
const MODALITIES: &[&str] = &[
    "individual",
    "couples",
    "family",
    "group",
    "medication_management",
    "assessment",
    "cbt",
    "emdr",
    "dbt",
];
const LANGUAGES: &[&str] = &["en", "en", "en", "en", "es", "zh", "vi", "ru", "ar"];
const PAYERS: &[PayerCategory] = &[
    PayerCategory::Commercial,
    PayerCategory::Commercial,
    PayerCategory::Medicaid,
    PayerCategory::Medicare,
    PayerCategory::SelfPay,
    PayerCategory::SlidingScale,
    PayerCategory::Eap,
];
const STREAMS: &[(&str, StreamKind)] = &[
    ("Therapists", StreamKind::Professional),
    ("Physicians", StreamKind::Medical),
    ("Schools", StreamKind::School),
    ("Community groups", StreamKind::Community),
    ("Online directories", StreamKind::Online),
    ("Hospitals", StreamKind::Medical),
    ("Employers and EAPs", StreamKind::Other),
    ("Faith communities", StreamKind::Community),
];
const IDEAL: &[&str] = &[
    "Adults with anxiety who want short-term CBT",
    "Teens struggling with school refusal and perfectionism",
    "Couples rebuilding trust after a betrayal",
    "New parents facing postpartum depression",
    "Veterans and first responders living with trauma",
    "Families navigating a recent divorce",
    "Young adults exploring identity and relationships",
    "Older adults coping with grief and loss",
];
const NOTES: &[&str] = &[
    "Introduced our evening groups",
    "Asked about their ideal client",
    "Shared our new intake process",
    "Thanked them for the last referral",
    "Invited them to our open house",
    "Left a message, no reply yet",
];

/// Writes a practice of `size` into `home` (which must be empty), ending on `today`.
pub fn generate(home: &Home, size: PracticeSize, seed: u64, today: Date) -> Result<Generated> {
    let mut rng = StdRng::seed_from_u64(seed);
    let identity = home.create_practice("Generated Practice", "Owner Generated")?;
    let mut members = vec![identity.member_id.clone()];
    let (streams, more_members) = home.batch(SpaceKind::Practice, |b| {
        let streams = STREAMS
            .iter()
            .cycle()
            .take(size.streams)
            .enumerate()
            .map(|(i, (name, kind))| {
                let name = if i < STREAMS.len() {
                    name.to_string()
                } else {
                    format!("{name} {i}")
                };
                b.create_stream(&name, *kind).map(|s| s.id)
            })
            .collect::<rapport_core::Result<Vec<_>>>()?;
        let members = (1..size.members)
            .map(|i| {
                let name = format!(
                    "{} {} {i}",
                    FIRST[i % FIRST.len()],
                    LAST[(i * 7) % LAST.len()]
                );
                b.add_member(
                    &name,
                    if i % 10 == 0 {
                        Role::Admin
                    } else {
                        Role::Member
                    },
                )
                .map(|m| m.id)
            })
            .collect::<rapport_core::Result<Vec<_>>>()?;
        Ok((streams, members))
    })?;
    members.extend(more_members);

    let days = i32::from(size.years) * 365;
    let start = today.saturating_sub(jiff::Span::new().days(days));
    let random_day =
        |rng: &mut StdRng| start.saturating_add(jiff::Span::new().days(rng.random_range(0..=days)));

    let kinds = [
        PartnerKind::Therapist,
        PartnerKind::Therapist,
        PartnerKind::Therapist,
        PartnerKind::Physician,
        PartnerKind::School,
        PartnerKind::CommunityGroup,
        PartnerKind::Organization,
        PartnerKind::Other,
    ];
    let mut partners = Vec::with_capacity(size.partners);
    // Each batch is one Automerge change; kept well under what one relay entry carries.
    const BATCH: usize = 400;
    while partners.len() < size.partners {
        let n = BATCH.min(size.partners - partners.len());
        let inputs: Vec<NewPartner> = (0..n)
            .map(|k| {
                let i = partners.len() + k;
                let pick = |rng: &mut StdRng, list: &[&str], max: usize| -> Vec<String> {
                    let count = rng.random_range(1..=max);
                    list.choose_multiple(rng, count)
                        .map(|s| s.to_string())
                        .collect()
                };
                NewPartner {
                    kind: Some(kinds[rng.random_range(0..kinds.len())]),
                    name: format!(
                        "{} {} {i}",
                        FIRST[rng.random_range(0..FIRST.len())],
                        LAST[rng.random_range(0..LAST.len())]
                    ),
                    organization: rng.random_bool(0.5).then(|| {
                        format!("{} Wellness Group", LAST[rng.random_range(0..LAST.len())])
                    }),
                    city: Some(CITIES[rng.random_range(0..CITIES.len())].to_string()),
                    region: Some("OR".into()),
                    telehealth: rng.random_bool(0.5),
                    accepting: Some(rng.random_bool(0.8)),
                    specialties: pick(&mut rng, CONCERNS, 4),
                    populations: AgeBand::ALL
                        .choose_multiple(&mut rng, 2)
                        .map(|a| a.code().to_string())
                        .collect(),
                    modalities: pick(&mut rng, MODALITIES, 3),
                    insurance: PAYERS
                        .choose_multiple(&mut rng, 3)
                        .map(|p| p.code().to_string())
                        .collect(),
                    languages: pick(&mut rng, LANGUAGES, 2),
                    ideal_client: IDEAL[rng.random_range(0..IDEAL.len())].to_string(),
                    stream_id: Some(streams[rng.random_range(0..streams.len())].clone()),
                    status: Some(if rng.random_bool(0.7) {
                        PartnerStatus::Active
                    } else {
                        PartnerStatus::Prospect
                    }),
                    owner_member: Some(members[rng.random_range(0..members.len())].clone()),
                    ..Default::default()
                }
            })
            .collect();
        let ids = home.batch(SpaceKind::Practice, |b| {
            inputs
                .into_iter()
                .map(|p| b.add_partner(p).map(|p| p.id))
                .collect::<rapport_core::Result<Vec<_>>>()
        })?;
        partners.extend(ids);
    }

    // Activity is skewed: a fifth of the partners carry most of it, as in real networks.
    let busy = |rng: &mut StdRng| -> String {
        let index = if rng.random_bool(0.8) {
            rng.random_range(0..partners.len().div_ceil(5))
        } else {
            rng.random_range(0..partners.len())
        };
        partners[index].clone()
    };
    let touch_kinds = TouchpointKind::ALL;
    let mut written = 0;
    while written < size.touchpoints {
        let n = BATCH.min(size.touchpoints - written);
        let inputs: Vec<NewTouchpoint> = (0..n)
            .map(|_| NewTouchpoint {
                partner_id: busy(&mut rng),
                kind: touch_kinds[rng.random_range(0..touch_kinds.len())],
                at: Some(random_day(&mut rng)),
                outcome: Some(match rng.random_range(0..10) {
                    0..=3 => TouchpointOutcome::NoResponse,
                    4..=7 => TouchpointOutcome::Reached,
                    8 => TouchpointOutcome::Scheduled,
                    _ => TouchpointOutcome::Declined,
                }),
                note: NOTES[rng.random_range(0..NOTES.len())].to_string(),
                allow_contact_details: false,
                member_id: Some(members[rng.random_range(0..members.len())].clone()),
            })
            .collect();
        home.batch(SpaceKind::Practice, |b| {
            inputs
                .into_iter()
                .try_for_each(|t| b.log_touchpoint(t).map(drop))
        })?;
        written += n;
    }

    written = 0;
    while written < size.referrals {
        let n = BATCH.min(size.referrals - written);
        let inputs: Vec<NewReferral> = (0..n)
            .map(|_| {
                let count = rng.random_range(1..=2);
                NewReferral {
                    partner_id: busy(&mut rng),
                    direction: if rng.random_bool(0.55) {
                        Direction::In
                    } else {
                        Direction::Out
                    },
                    at: Some(random_day(&mut rng)),
                    concerns: CONCERNS
                        .choose_multiple(&mut rng, count)
                        .map(|s| s.to_string())
                        .collect(),
                    age_band: Some(AgeBand::ALL[rng.random_range(0..AgeBand::ALL.len())]),
                    payer_category: Some(PAYERS[rng.random_range(0..PAYERS.len())]),
                    modality: Some(MODALITIES[rng.random_range(0..4)].to_string()),
                    status: Some(if rng.random_bool(0.8) {
                        ReferralStatus::Completed
                    } else {
                        ReferralStatus::Requested
                    }),
                    member_id: Some(members[rng.random_range(0..members.len())].clone()),
                }
            })
            .collect();
        let outcomes: Vec<Option<ReferralOutcome>> = (0..n)
            .map(|_| match rng.random_range(0..6) {
                0 => Some(ReferralOutcome::NotAFit),
                1 => Some(ReferralOutcome::NoResponse),
                2..=4 => Some(ReferralOutcome::IntakeHeld),
                _ => None,
            })
            .collect();
        home.batch(SpaceKind::Practice, |b| {
            for (input, outcome) in inputs.into_iter().zip(outcomes) {
                let status = input.status.unwrap_or(ReferralStatus::Requested);
                let referral = b.record_referral(input)?;
                if outcome.is_some() {
                    b.update_referral(&referral.id, status, outcome)?;
                }
            }
            Ok(())
        })?;
        written += n;
    }

    let inputs: Vec<NewFollowup> = (0..size.followups)
        .map(|_| NewFollowup {
            partner_id: busy(&mut rng),
            due: today.saturating_add(jiff::Span::new().days(rng.random_range(-30..60))),
            reason: "Check in about referrals".into(),
            cadence_days: rng.random_bool(0.5).then_some(30),
            member_id: Some(members[rng.random_range(0..members.len())].clone()),
        })
        .collect();
    home.batch(SpaceKind::Practice, |b| {
        inputs
            .into_iter()
            .try_for_each(|f| b.schedule_followup(f).map(drop))
    })?;
    home.compact(SpaceKind::Practice)?;
    home.rebuild_read_model(SpaceKind::Practice)?;
    Ok(Generated {
        members,
        partners,
        today,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_the_small_practice_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        let today: Date = "2026-06-01".parse().unwrap();
        let generated = generate(&home, SMALL, 7, today).unwrap();
        assert_eq!(generated.partners.len(), SMALL.partners);
        assert_eq!(home.members().unwrap().len(), SMALL.members);
        assert_eq!(home.streams().unwrap().len(), SMALL.streams);
        assert_eq!(home.partner_count().unwrap(), SMALL.partners as u64);
        assert_eq!(home.referrals(1_000, 0).unwrap().len(), SMALL.referrals);
        let touchpoints: usize = generated
            .partners
            .iter()
            .map(|p| home.touchpoints_of(p).unwrap().len())
            .sum();
        assert_eq!(touchpoints, SMALL.touchpoints);
    }
}
