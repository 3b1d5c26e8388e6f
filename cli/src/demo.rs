//! `rapport demo`: the story of the source material, played on real homes (SQLite files,
//! Automerge documents) syncing end-to-end encrypted through a real relay on loopback, in
//! a temporary directory that is removed afterwards.

use anyhow::{Context, Result, bail};
use rapport_core::insights::reciprocity::LedgerBy;
use rapport_core::model::{NewPartner, NewReferral, NewTouchpoint, PartnerFilter};
use rapport_core::sync;
use rapport_core::vocab::{
    AgeBand, Direction, PartnerKind, PayerCategory, StreamKind, TouchpointKind, TouchpointOutcome,
};
use rapport_core::{Home, SpaceKind};
use rapport_relay::data::DataDir;
use rapport_relay::server::{Config, Relay};
use rapport_wire::frames::Role;

/// Runs the demo and prints what the devices end up with.
pub fn run() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime.block_on(story())
}

async fn story() -> Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "Rapport demo: a practice's relay and three devices, in {}\n",
        dir.path().display()
    );

    // The practice's IT helper starts a relay on this machine.
    let relay_dir = dir.path().join("relay");
    let data = DataDir::init(&relay_dir, "127.0.0.1:0")?;
    let store = data.store()?;
    let relay = Relay::bind(
        store.clone(),
        &data.identity,
        Config {
            listen: "127.0.0.1:0".parse()?,
            ..Config::default()
        },
    )?;
    data.set_public_addr(&relay.local_addr()?.to_string())?;
    let setup_code = data.new_setup_code(&store)?.encode();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    println!(
        "0. The relay is up on {}; it will only ever see encrypted blobs.",
        data.public_addr(&store)
    );

    let ana = Home::open(dir.path().join("ana-laptop"))?;
    let practice = ana.create_practice("Riverside Counseling", "Ana Ruiz")?;
    ana.set_ideal_client("Adults with anxiety or grief who want evening sessions.")?;
    let therapists = ana.create_stream("Therapists", StreamKind::Professional)?;
    let medical = ana.create_stream("Physicians", StreamKind::Medical)?;
    let community = ana.create_stream("Community", StreamKind::Community)?;
    println!(
        "1. Ana creates {:?} on her laptop, offline, and connects it with the setup code.",
        practice.practice_name
    );
    sync::connect_practice(&ana, &setup_code).await?;

    println!("2. She invites two colleagues; their phones join with the invite codes.");
    let ben = Home::open(dir.path().join("ben-phone"))?;
    let cara = Home::open(dir.path().join("cara-phone"))?;
    for (home, name) in [(&ben, "Ben Okafor"), (&cara, "Cara Lin")] {
        let invite = sync::create_invite(&ana, Role::Member, 7 * 24 * 3600).await?;
        sync::join(home, &invite, name).await?;
    }

    println!("3. They add partners: a therapist, a physician, a community group.");
    let lee = ana.add_partner(NewPartner {
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
    for home in [&ana, &ben, &cara] {
        sync::sync_now(home).await?;
    }
    let grief = cara.add_partner(NewPartner {
        kind: Some(PartnerKind::CommunityGroup),
        name: "Hope Grief Circle".into(),
        stream_id: Some(community.id.clone()),
        how_we_met: "Cara attended their monthly open meeting.".into(),
        ..Default::default()
    })?;

    println!("4. Outreach gets no response. Nobody gives up: follow-ups schedule themselves.");
    let today = ana.today();
    for (home, partner) in [(&ana, &lee), (&ben, &moss)] {
        home.log_touchpoint(NewTouchpoint {
            partner_id: partner.id.clone(),
            kind: TouchpointKind::Email,
            at: Some(today.saturating_sub(jiff::Span::new().days(20))),
            outcome: Some(TouchpointOutcome::NoResponse),
            note: "Introduced the practice and asked for their ideal client.".into(),
            allow_contact_details: false,
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
    referral(&ana, &lee.id, Direction::In, "anxiety")?;
    referral(&ana, &lee.id, Direction::In, "trauma_ptsd")?;
    referral(&ana, &lee.id, Direction::Out, "couples")?;
    referral(&ana, &lee.id, Direction::In, "anxiety")?;

    println!(
        "6. Cara is offline at the grief circle; she logs the event and a referral, and syncs later."
    );
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
    for _ in 0..2 {
        for home in [&ana, &ben, &cara] {
            let report = sync::sync_now(home).await?;
            if !report.rejected.is_empty() {
                bail!("entries were refused: {:?}", report.rejected);
            }
        }
    }

    let same = |a: &Home, b: &Home| -> Result<bool> {
        Ok(a.heads(SpaceKind::Practice)? == b.heads(SpaceKind::Practice)?)
    };
    let converged = same(&ana, &ben)? && same(&ben, &cara)?;
    println!("\nAll three devices hold the same network: {converged}");

    println!("\nPartners (as Cara's phone sees them):");
    for p in cara.partners(&PartnerFilter::default())? {
        println!("  {:<22} {}", p.name, p.kind);
    }
    println!("\nReciprocity (all time):");
    for row in cara.reciprocity(LedgerBy::Partner, today, 365)? {
        println!(
            "  {:<22} sent {}  received {}  balance {:+}",
            row.name, row.all_time.sent, row.all_time.received, row.all_time.balance
        );
    }
    println!("\nStreams, last 90 days:");
    let streams = cara.stream_window(today, 90)?;
    for share in streams.shares.iter().filter(|s| s.count > 0) {
        println!("  {:<22} {:>3.0}%", share.name, share.share);
    }
    println!("  concentration (HHI) {:.0}", streams.hhi);
    for warning in &streams.warnings {
        println!("  warning: {}", warning.message());
    }
    println!("\nFollow-ups overdue or due in the next 7 days:");
    for due in cara.due_followups(today, 7)? {
        let when = match due.days_overdue {
            0 => "due today".to_string(),
            1 => "1 day overdue".to_string(),
            -1 => "due tomorrow".to_string(),
            d if d > 0 => format!("{d} days overdue"),
            d => format!("due in {} days", -d),
        };
        println!(
            "  {}  {:<16}  {:<22} {}",
            due.followup.due, when, due.partner_name, due.followup.reason
        );
    }
    let stats = store.stats().map_err(|r| anyhow::anyhow!(r.message))?;
    println!(
        "\nThe relay stored {} encrypted entries ({} bytes) for {} spaces, and no plaintext.",
        stats.2, stats.3, stats.0
    );

    let _ = stop.send(());
    serving.await?;
    if !converged {
        bail!("the devices did not converge");
    }
    Ok(())
}
