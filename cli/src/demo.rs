//! `rapport demo`: the story of the source material, played on real homes (real SQLite
//! files, real Automerge documents) in a temporary directory.
//!
//! Devices exchange their documents directly here; once the relay exists they sync
//! through it instead.

use anyhow::Result;
use rapport_core::model::{NewFollowup, NewPartner, NewReferral, NewTouchpoint, PartnerFilter};
use rapport_core::vocab::{
    AgeBand, Direction, FollowupStatus, PartnerKind, PayerCategory, StreamKind, TouchpointKind,
    TouchpointOutcome,
};
use rapport_core::{Home, SpaceKind};

/// Runs the demo and prints what each device ends up with.
pub fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "Rapport demo: three devices of one practice, in {}",
        dir.path().display()
    );

    let owner = Home::open(dir.path().join("ana-laptop"))?;
    let practice = owner.create_practice("Riverside Counseling", "Ana Ruiz")?;
    println!(
        "\n1. Ana creates the practice {:?} on her laptop, offline.",
        practice.practice_name
    );
    owner.set_ideal_client("Adults with anxiety or grief who want evening sessions.")?;

    let therapists = owner.create_stream("Therapists", StreamKind::Professional)?;
    let medical = owner.create_stream("Physicians", StreamKind::Medical)?;
    let community = owner.create_stream("Community", StreamKind::Community)?;

    println!("2. Two colleagues join from Ana's practice document.");
    let document = owner.export_document(SpaceKind::Practice)?;
    let ben = Home::open(dir.path().join("ben-phone"))?;
    ben.join_practice(&practice.practice_id, &document, "Ben Okafor")?;
    let cara = Home::open(dir.path().join("cara-phone"))?;
    cara.join_practice(&practice.practice_id, &document, "Cara Lin")?;
    exchange(&[&owner, &ben, &cara])?;

    println!("3. They add partners: therapists, a physician and a community group.");
    let lee = owner.add_partner(NewPartner {
        kind: Some(PartnerKind::Therapist),
        name: "Dr. Lee Park".into(),
        specialties: vec!["couples".into(), "trauma_ptsd".into()],
        city: Some("Portland".into()),
        stream_id: Some(therapists.id.clone()),
        ideal_client: "Couples rebuilding trust after an affair.".into(),
        ..Default::default()
    })?;
    let moss = ben.add_partner(NewPartner {
        kind: Some(PartnerKind::Physician),
        name: "Dr. Ruth Moss".into(),
        organization: Some("Eastside Family Medicine".into()),
        stream_id: Some(medical.id.clone()),
        ..Default::default()
    })?;
    let grief = cara.add_partner(NewPartner {
        kind: Some(PartnerKind::CommunityGroup),
        name: "Hope Grief Circle".into(),
        stream_id: Some(community.id.clone()),
        how_we_met: "Cara attended their monthly open meeting.".into(),
        ..Default::default()
    })?;
    exchange(&[&owner, &ben, &cara])?;

    println!("4. Outreach gets no response; nobody gives up: follow-ups are scheduled.");
    let today = owner.clock().today();
    for (home, partner) in [(&owner, &lee), (&ben, &moss)] {
        home.log_touchpoint(NewTouchpoint {
            partner_id: partner.id.clone(),
            kind: TouchpointKind::Email,
            at: Some(today),
            outcome: Some(TouchpointOutcome::NoResponse),
            note: "Introduced the practice and asked for their ideal client.".into(),
            allow_contact_details: false,
            member_id: None,
        })?;
        home.schedule_followup(NewFollowup {
            partner_id: partner.id.clone(),
            due: today,
            reason: "No response yet: follow up by phone.".into(),
            cadence_days: Some(14),
            member_id: None,
        })?;
    }

    println!("5. Referrals flow both ways.");
    let referral = |home: &Home, partner: &str, direction, concern: &str| {
        home.record_referral(NewReferral {
            partner_id: partner.to_string(),
            direction,
            at: Some(today),
            concerns: vec![concern.into()],
            age_band: Some(AgeBand::Adult),
            payer_category: Some(PayerCategory::Commercial),
            modality: Some("individual".into()),
            status: None,
            member_id: None,
        })
    };
    referral(&owner, &lee.id, Direction::In, "anxiety")?;
    referral(&owner, &lee.id, Direction::Out, "couples")?;
    referral(&ben, &moss.id, Direction::In, "depression")?;

    println!("6. Cara works offline at the grief circle, then syncs later.");
    cara.log_touchpoint(NewTouchpoint {
        partner_id: grief.id.clone(),
        kind: TouchpointKind::Event,
        at: Some(today),
        outcome: Some(TouchpointOutcome::Reached),
        note: "Shared our grief group schedule with the facilitators.".into(),
        allow_contact_details: false,
        member_id: None,
    })?;
    referral(&cara, &grief.id, Direction::In, "grief")?;
    exchange(&[&owner, &ben, &cara])?;

    let converged = owner.read_model_dump()? == ben.read_model_dump()?
        && ben.read_model_dump()? == cara.read_model_dump()?;
    println!("\nAll three devices hold the same network: {converged}");

    println!("\nPartners:");
    for p in owner.partners(&PartnerFilter::default())? {
        let referrals = owner.referrals_of(&p.id)?;
        let sent = referrals
            .iter()
            .filter(|r| r.direction == Direction::Out)
            .count();
        let received = referrals.len() - sent;
        println!(
            "  {:<22} {:<16} sent {sent}  received {received}",
            p.name,
            p.kind.code()
        );
    }
    println!("\nFollow-ups due:");
    for f in owner.followups(FollowupStatus::Open)? {
        let partner = owner.partner(&f.partner_id)?;
        println!("  {}  {:<22} {}", f.due, partner.name, f.reason);
    }
    if !converged {
        anyhow::bail!("the devices did not converge");
    }
    Ok(())
}

/// Every device merges every other device's practice document.
fn exchange(homes: &[&Home]) -> Result<()> {
    for from in homes {
        let bytes = from.export_document(SpaceKind::Practice)?;
        for to in homes {
            to.merge(SpaceKind::Practice, &bytes)?;
        }
    }
    Ok(())
}
