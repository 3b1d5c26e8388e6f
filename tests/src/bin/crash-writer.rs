//! Test helper for the crash test: writes to a home in a loop and prints a line after each
//! write the API reported as committed, until it is killed.
//!
//! Usage: crash-writer HOME_DIR RUN_LABEL

use rapport_core::Home;
use rapport_core::model::{NewPartner, NewTouchpoint};
use rapport_core::vocab::{PartnerKind, TouchpointKind, TouchpointOutcome};
use std::io::Write;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(label)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: crash-writer HOME_DIR RUN_LABEL");
    };
    let home = Home::open(&dir)?;
    if home.identity()?.is_none() {
        home.create_practice("Crash Test Practice", "Writer")?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for i in 0u64.. {
        let partner = home.add_partner(NewPartner {
            kind: Some(PartnerKind::Therapist),
            name: format!("{label}-{i}"),
            ideal_client: "Adults with anxiety who prefer evening sessions".into(),
            specialties: vec!["anxiety".into(), "grief".into()],
            ..Default::default()
        })?;
        writeln!(out, "partner {}", partner.id)?;
        out.flush()?;
        let touch = home.log_touchpoint(NewTouchpoint {
            partner_id: partner.id,
            kind: TouchpointKind::Email,
            at: None,
            outcome: Some(TouchpointOutcome::NoResponse),
            note: "Introduced ourselves".into(),
            allow_contact_details: false,
            member_id: None,
        })?;
        writeln!(out, "touchpoint {}", touch.id)?;
        out.flush()?;
    }
    Ok(())
}
