//! The commands over a home: each parses its arguments, makes one call into
//! `rapport_core`, and prints.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rapport_core::exchange::{ExportFormat, ImportOptions};
use rapport_core::insights::matching::Need;
use rapport_core::insights::reciprocity::LedgerBy;
use rapport_core::model::{NewPartner, NewReferral, NewTouchpoint, PartnerEdit, PartnerFilter};
use rapport_core::sync;
use rapport_core::vocab::{
    AgeBand, Direction, PartnerKind, PayerCategory, ReferralOutcome, ReferralStatus, StreamKind,
    TouchpointKind, TouchpointOutcome,
};
use rapport_core::{Day, Home};
use serde_json::json;

use crate::output::{cell, show};
use crate::{
    Cli, Command, DevicesCommand, FollowupCommand, InviteCommand, MeCommand, PartnerCommand,
    PartnerFields, ReferralCommand, RelayCommand,
};

fn home_dir(cli: &Cli) -> Result<PathBuf> {
    if let Some(dir) = &cli.home {
        return Ok(dir.clone());
    }
    directories::ProjectDirs::from("org", "Rapport", "rapport")
        .map(|d| d.data_dir().to_path_buf())
        .context("no home directory: pass --home DIR or set RAPPORT_HOME")
}

fn day(field: &str, text: Option<&str>) -> Result<Option<Day>> {
    text.map(|t| rapport_core::validate::day(field, t))
        .transpose()
        .map_err(Into::into)
}

/// A stream id for a name, creating the stream the first time it is named.
fn stream_id(home: &Home, name: Option<&str>) -> Result<Option<String>> {
    let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
        return Ok(None);
    };
    if let Some(stream) = home.stream_by_name(name)? {
        return Ok(Some(stream.id));
    }
    Ok(Some(home.create_stream(name, StreamKind::Other)?.id))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the runtime")
}

/// Runs a command.
pub fn run(cli: Cli) -> Result<()> {
    let home = Home::open(home_dir(&cli)?)?;
    let json = cli.json;
    let today = home.today();
    match cli.command {
        Command::Init { practice, member } => {
            let id = home.create_practice(&practice, &member)?;
            show(json, &id, |id| {
                println!(
                    "Created {:?} on this device. You are {}.",
                    id.practice_name, member
                )
            })?;
        }
        Command::Status => {
            let identity = home.identity()?;
            let relay = home.relay()?;
            let sync = match (&identity, &relay) {
                (Some(_), Some(_)) => {
                    let position = home.sync_position(rapport_core::SpaceKind::Practice)?;
                    let unpushed =
                        home.heads(rapport_core::SpaceKind::Practice)? != position.acked_heads;
                    json!({ "cursor": position.cursor, "unpushed_changes": unpushed })
                }
                _ => serde_json::Value::Null,
            };
            let value = json!({
                "sync": sync,
                "practice": identity.as_ref().map(|i| &i.practice_name),
                "practice_id": identity.as_ref().map(|i| &i.practice_id),
                "member_id": identity.as_ref().map(|i| &i.member_id),
                "device_id": home.device_identity()?.device_id().to_string(),
                "relay": relay.as_ref().map(|r| &r.addr),
                "partners": home.partner_count()?,
            });
            show(json, &value, |v| {
                match &identity {
                    Some(i) => println!("practice  {}", i.practice_name),
                    None => println!("practice  (none yet: rapport init, or rapport join)"),
                }
                println!("device    {}", v["device_id"].as_str().unwrap_or_default());
                println!(
                    "relay     {}",
                    relay
                        .as_ref()
                        .map_or("(not connected)", |r| r.addr.as_str())
                );
                println!("partners  {}", v["partners"]);
            })?;
        }
        Command::Partner(command) => partner(&home, json, *command)?,
        Command::Touch {
            partner,
            kind,
            outcome,
            note,
            at,
        } => {
            let partner = home.resolve_partner(&partner)?;
            let touchpoint = home.log_touchpoint(NewTouchpoint {
                partner_id: partner.id,
                kind: TouchpointKind::parse(&kind)?,
                at: day("at", at.as_deref())?,
                outcome: outcome
                    .as_deref()
                    .map(TouchpointOutcome::parse)
                    .transpose()?,
                note,
                allow_contact_details: false,
                member_id: None,
            })?;
            show(json, &touchpoint, |t| println!("{}", t.id))?;
        }
        Command::Refer {
            direction,
            partner,
            concerns,
            age_band,
            payer,
            modality,
            at,
        } => {
            let partner = home.resolve_partner(&partner)?;
            let referral = home.record_referral(NewReferral {
                partner_id: partner.id,
                direction: Direction::parse(&direction)?,
                at: day("at", at.as_deref())?,
                concerns,
                age_band: age_band.as_deref().map(AgeBand::parse).transpose()?,
                payer_category: payer
                    .as_deref()
                    .map(|p| PayerCategory::parse_for("payer", p))
                    .transpose()?,
                modality,
                status: None,
                member_id: None,
            })?;
            show(json, &referral, |r| println!("{}", r.id))?;
        }
        Command::Referral(ReferralCommand::List) => {
            let referrals = home.referrals(1_000, 0)?;
            show(json, &referrals, |rows| {
                for r in rows {
                    let name = home
                        .partner(&r.partner_id)
                        .map(|p| p.name)
                        .unwrap_or_default();
                    println!(
                        "{}  {:<3}  {:<24} {:<10} {}  {}",
                        r.at,
                        r.direction,
                        cell(&name, 24),
                        r.status,
                        r.concerns.join(","),
                        r.id
                    );
                }
            })?;
        }
        Command::Referral(ReferralCommand::Status {
            id,
            status,
            outcome,
        }) => {
            let referral = home.update_referral(
                &id,
                ReferralStatus::parse(&status)?,
                outcome.as_deref().map(ReferralOutcome::parse).transpose()?,
            )?;
            show(json, &referral, |r| {
                println!("{} is now {}", r.id, r.status)
            })?;
        }
        Command::Followups { overdue } => {
            let rows = if overdue {
                home.overdue_followups(today)?
            } else {
                home.due_followups(today, 7)?
            };
            show(json, &rows, |rows| {
                if rows.is_empty() {
                    println!("Nothing due this week.");
                }
                for d in rows {
                    let late = if d.days_overdue > 0 {
                        format!("{} days late", d.days_overdue)
                    } else {
                        "due".into()
                    };
                    println!(
                        "{}  {:<12} {:<24} {}  {}",
                        d.followup.due,
                        late,
                        cell(&d.partner_name, 24),
                        d.followup.reason,
                        d.followup.id
                    );
                }
            })?;
        }
        Command::Followup(FollowupCommand::Done { id }) => {
            let f = home.complete_followup(&id, None)?;
            show(json, &f, |f| println!("{} done", f.id))?;
        }
        Command::Followup(FollowupCommand::Snooze { id, until }) => {
            let until = day("until", until.as_deref())?
                .unwrap_or_else(|| today.saturating_add(jiff::Span::new().days(7)));
            let f = home.snooze_followup(&id, until)?;
            show(json, &f, |f| println!("{} snoozed to {}", f.id, f.due))?;
        }
        Command::Me(MeCommand::IdealClient { text }) => {
            let me = home.set_ideal_client(&text)?;
            show(json, &me, |m| println!("Saved. {}", m.ideal_client))?;
        }
        Command::Insights { which } => insights(&home, json, today, &which)?,
        Command::Match {
            concerns,
            age_band,
            payer,
            language,
            modality,
            telehealth,
            city,
            accepting,
        } => {
            let need = Need {
                concerns,
                age_band: age_band.as_deref().map(AgeBand::parse).transpose()?,
                payer_category: payer
                    .as_deref()
                    .map(|p| PayerCategory::parse_for("payer", p))
                    .transpose()?,
                modality,
                language,
                telehealth,
                city,
                accepting_only: accepting,
                limit: Some(10),
            };
            let matches = home.match_need(&need)?;
            show(json, &matches, |rows| {
                if rows.is_empty() {
                    println!("No one fits yet.");
                }
                for m in rows {
                    println!(
                        "{:>3}  {:<24} {}",
                        m.score,
                        cell(&m.name, 24),
                        m.reasons.join("; ")
                    );
                }
            })?;
        }
        Command::Relay(RelayCommand::Connect { code }) => {
            let code = read_code(code, "setup")?;
            let report = runtime()?.block_on(sync::connect_practice(&home, &code))?;
            println!("Connected. {} piece(s) pushed.", report.pushed);
        }
        Command::Invite {
            action: Some(InviteCommand::Revoke { id }),
            ..
        } => {
            let revoked = runtime()?.block_on(sync::revoke_invite(&home, &id))?;
            println!("Revoked invite {revoked}: nobody can join with it now.");
        }
        Command::Invite {
            action: None,
            role,
            device,
            expires,
        } => {
            let ttl = parse_duration(&expires)?;
            let code = if device {
                runtime()?.block_on(sync::create_device_invite(&home, ttl))?
            } else {
                let role = match role.as_str() {
                    "member" => rapport_wire::frames::Role::Member,
                    "admin" => rapport_wire::frames::Role::Admin,
                    other => bail!("--role {other:?}: use member or admin"),
                };
                runtime()?.block_on(sync::create_invite(&home, role, ttl))?
            };
            println!("{code}");
        }
        Command::Join { code, member } => {
            let code = read_code(code, "invite")?;
            let for_own_device = rapport_wire::codes::InviteCode::decode(&code)
                .is_ok_and(|invite| invite.member.is_some());
            let member = match member {
                Some(member) => member,
                None if for_own_device => String::new(),
                None => bail!(
                    "--member NAME is needed: your name as colleagues will see it, e.g. --member \"Ben Okafor\""
                ),
            };
            let had_practice = home.identity()?.is_some();
            let joined = runtime()?.block_on(sync::join_with_progress(
                &home,
                &code,
                &member,
                &|done, total| {
                    eprint!("\rbootstrapping {done}/{total}");
                },
            ));
            eprintln!();
            let identity = match joined {
                Ok(identity) => identity,
                // Cut off after the practice was installed: the same command finishes it.
                Err(e) if !had_practice && home.identity().ok().flatten().is_some() => bail!(
                    "{e}\nThe practice is on this device already: run the same `rapport join` \
                     again (or `rapport sync`) to finish joining."
                ),
                Err(e) => return Err(e.into()),
            };
            println!("Joined {:?}.", identity.practice_name);
            // Tell the practice about this clinician now rather than at the next sync.
            eprintln!("announcing you to the practice ...");
            if let Err(e) = runtime()?.block_on(sync::sync_now(&home)) {
                eprintln!(
                    "The practice is here, but announcing you failed ({e}); `rapport sync` finishes it."
                );
            }
        }
        Command::Sync { watch } => {
            let runtime = runtime()?;
            if watch {
                let home = Arc::new(home);
                runtime.block_on(async {
                    let service = rapport_core::sync::service::SyncService::start(
                        home,
                        Arc::new(|s: &rapport_core::sync::engine::SyncStatus| {
                            eprintln!("{}", serde_json::to_string(s).unwrap_or_default())
                        }),
                    );
                    let _ = tokio::signal::ctrl_c().await;
                    service.stop().await;
                });
            } else {
                let report = runtime.block_on(sync::sync_now(&home))?;
                let value = json!({ "pushed": report.pushed, "merged": report.merged, "refused": report.rejected, "held": report.held, "withheld": report.withheld, "flagged": report.flagged });
                show(json, &value, |_| {
                    println!(
                        "Synced: {} pushed, {} merged.",
                        report.pushed, report.merged
                    );
                    for r in &report.rejected {
                        println!("refused: {r}");
                    }
                    if report.held > 0 {
                        println!(
                            "{} entries wait for a key that has not reached this device yet; the next sync takes them.",
                            report.held
                        );
                    }
                    for w in &report.withheld {
                        println!("warning: {w}");
                    }
                    for f in &report.flagged {
                        println!(
                            "privacy: a colleague's {kind} {id} has what looks like {what} in its {field}; please edit it out",
                            kind = format!("{:?}", f.kind).to_lowercase(),
                            id = f.id,
                            what = f.what,
                            field = f.field,
                        );
                    }
                })?;
            }
        }
        Command::Devices { action: None } => {
            let known = runtime()?.block_on(sync::devices(&home))?;
            show(json, &known, |known| {
                for d in &known.devices {
                    println!(
                        "{}  {:<7} {:<24} {}{}",
                        d.device_id,
                        d.role,
                        d.member_name,
                        if d.removed_at.is_some() {
                            "removed"
                        } else {
                            ""
                        },
                        if d.this_device { "(this device)" } else { "" },
                    );
                }
                if !known.invites.is_empty() {
                    println!("pending invites:");
                    for i in &known.invites {
                        println!(
                            "{}  {:<7} made by {} ({}), expires {}",
                            i.id,
                            i.role,
                            if i.created_by_name.is_empty() {
                                &i.created_by
                            } else {
                                &i.created_by_name
                            },
                            &i.created_by[..8.min(i.created_by.len())],
                            jiff::Timestamp::from_second(i.expires_at)
                                .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                                .unwrap_or_default(),
                        );
                    }
                }
            })?;
        }
        Command::Devices {
            action: Some(DevicesCommand::Remove { id }),
        } => {
            let epoch = runtime()?.block_on(sync::remove_device(&home, &id))?;
            println!(
                "Removed: the device is refused on every space of the practice, and the practice key moved to epoch {epoch}."
            );
        }
        Command::Import {
            format,
            file,
            dry_run,
            skip_invalid,
        } => {
            if format != "csv" {
                bail!("import {format:?}: only csv is supported");
            }
            let bar = indicatif::ProgressBar::new(0);
            let input = std::fs::File::open(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let options = ImportOptions {
                dry_run,
                skip_invalid,
            };
            let report = home
                .import_csv(input, options, &|n| bar.set_position(n))
                .with_context(|| format!("cannot import {}", file.display()))?;
            bar.finish_and_clear();
            show(json, &report, |r| {
                println!("Columns:");
                for column in &r.columns {
                    println!(
                        "  {:<24} -> {}",
                        cell(&column.header, 24),
                        column.field.as_deref().unwrap_or("(ignored)")
                    );
                }
                println!("Rows: {}", r.rows);
                for problem in &r.errors {
                    println!("Line {}: {}", problem.line, problem.message);
                }
                if r.written {
                    println!(
                        "Imported: {} partners created, {} matched, {} referrals.",
                        r.partners_created, r.partners_matched, r.referrals
                    );
                } else if dry_run && r.errors.is_empty() {
                    println!(
                        "Dry run: would create {} partners and {} referrals. Nothing was written.",
                        r.partners_created, r.referrals
                    );
                } else {
                    println!(
                        "Nothing was written: fix the lines above, or pass --skip-invalid to import the other rows."
                    );
                }
            })?;
            // Errors stop an import unless the user asked to skip them.
            if !report.errors.is_empty() && !skip_invalid {
                std::process::exit(1);
            }
        }
        Command::Export { format, out } => export(&home, &format, out.as_deref())?,
        Command::Demo | Command::Completions { .. } => {}
    }
    Ok(())
}

/// `2h`, `7d`, `30m` → seconds.
fn parse_duration(text: &str) -> Result<u64> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--expires {text:?}: write it like 2h or 7d"))?;
    Ok(match unit {
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--expires {text:?}: write it like 30m, 2h or 7d"),
    })
}

fn fields_to_edit(home: &Home, name: Option<String>, fields: PartnerFields) -> Result<PartnerEdit> {
    let set = |v: Vec<String>| (!v.is_empty()).then_some(v);
    Ok(PartnerEdit {
        name,
        organization: fields.organization,
        email: fields.email,
        phone: fields.phone,
        city: fields.city,
        region: fields.region,
        telehealth: fields.telehealth.then_some(true),
        specialties: set(fields.specialties),
        populations: set(fields.populations),
        modalities: set(fields.modalities),
        insurance: set(fields.insurance),
        languages: set(fields.languages),
        tags: set(fields.tags),
        ideal_client: fields.ideal_client,
        how_we_met: fields.how_we_met,
        stream_id: stream_id(home, fields.stream.as_deref())?,
        ..Default::default()
    })
}

fn partner(home: &Home, json: bool, command: PartnerCommand) -> Result<()> {
    match command {
        PartnerCommand::Add { name, kind, fields } => {
            let kind = PartnerKind::parse(&kind)?;
            let edit = fields_to_edit(home, None, fields)?;
            let partner = home.add_partner(NewPartner {
                kind: Some(kind),
                name,
                organization: edit.organization,
                email: edit.email,
                phone: edit.phone,
                city: edit.city,
                region: edit.region,
                telehealth: edit.telehealth.unwrap_or(false),
                specialties: edit.specialties.unwrap_or_default(),
                populations: edit.populations.unwrap_or_default(),
                modalities: edit.modalities.unwrap_or_default(),
                insurance: edit.insurance.unwrap_or_default(),
                languages: edit.languages.unwrap_or_default(),
                tags: edit.tags.unwrap_or_default(),
                ideal_client: edit.ideal_client.unwrap_or_default(),
                how_we_met: edit.how_we_met.unwrap_or_default(),
                stream_id: edit.stream_id,
                ..Default::default()
            })?;
            show(json, &partner, |p| println!("{}", p.id))?;
        }
        PartnerCommand::List {
            kind,
            stream,
            search,
            archived,
        } => {
            let stream_id = match stream {
                Some(name) => Some(
                    home.stream_by_name(&name)?
                        .with_context(|| format!("no stream named {name:?}"))?
                        .id,
                ),
                None => None,
            };
            let filter = PartnerFilter {
                kind: kind.as_deref().map(PartnerKind::parse).transpose()?,
                stream_id,
                search,
                include_archived: archived,
                limit: Some(1_000),
                ..Default::default()
            };
            let partners = home.partners(&filter)?;
            show(json, &partners, |rows| {
                for p in rows {
                    println!(
                        "{:<28} {:<16} {:<14} {}",
                        cell(&p.name, 28),
                        p.kind,
                        cell(p.city.as_deref().unwrap_or(""), 14),
                        p.id
                    );
                }
            })?;
        }
        PartnerCommand::Show { partner } => {
            let partner = home.resolve_partner(&partner)?;
            let touchpoints = home.touchpoints_of(&partner.id)?;
            let referrals = home.referrals_of(&partner.id)?;
            let value =
                json!({ "partner": partner, "touchpoints": touchpoints, "referrals": referrals });
            show(json, &value, |_| {
                println!("{} ({})", partner.name, partner.kind);
                if let Some(org) = &partner.organization {
                    println!("  {org}");
                }
                if !partner.specialties.is_empty() {
                    println!("  treats: {}", partner.specialties.join(", "));
                }
                if !partner.ideal_client.is_empty() {
                    println!("  ideal client: {}", partner.ideal_client);
                }
                println!(
                    "  {} touchpoints, {} referrals",
                    touchpoints.len(),
                    referrals.len()
                );
                for t in touchpoints.iter().take(5) {
                    println!("  {}  {:<8} {}", t.at, t.kind, t.note);
                }
            })?;
        }
        PartnerCommand::Edit {
            partner,
            name,
            fields,
        } => {
            let id = home.resolve_partner(&partner)?.id;
            let edit = fields_to_edit(home, name, fields)?;
            let partner = home.edit_partner(&id, edit)?;
            show(json, &partner, |p| println!("{} updated", p.name))?;
        }
        PartnerCommand::Archive { partner } => {
            let id = home.resolve_partner(&partner)?.id;
            let partner = home.archive_partner(&id)?;
            show(json, &partner, |p| println!("{} archived", p.name))?;
        }
    }
    Ok(())
}

fn insights(home: &Home, json: bool, today: Day, which: &str) -> Result<()> {
    match which {
        "reciprocity" => show(
            json,
            &home.reciprocity(LedgerBy::Partner, today, 365)?,
            |rows| {
                for r in rows {
                    println!(
                        "{:<28} sent {:>3}  received {:>3}  balance {:+}",
                        cell(&r.name, 28),
                        r.all_time.sent,
                        r.all_time.received,
                        r.all_time.balance
                    );
                }
            },
        ),
        "streams" => show(json, &home.stream_report(today)?, |windows| {
            for w in windows {
                println!(
                    "last {} days: {} inbound, HHI {:.0}",
                    w.days, w.total, w.hhi
                );
                for s in w.shares.iter().filter(|s| s.count > 0) {
                    println!(
                        "  {:<24} {:>5.1}%  ({:+.1} points)",
                        cell(&s.name, 24),
                        s.share,
                        s.change
                    );
                }
                for warning in &w.warnings {
                    println!("  warning: {}", warning.message());
                }
            }
        }),
        "cold" => show(json, &home.going_cold(today, 60)?, |rows| {
            for c in rows {
                println!(
                    "{:<28} quiet {:>4} days  sent us {}",
                    cell(&c.name, 28),
                    c.days_quiet,
                    c.referrals_received
                );
            }
        }),
        "trends" => show(json, &home.trends(today, 12)?, |t| {
            println!("months: {}", t.months.join(" "));
            for s in &t.by_stream {
                println!("  {:<24} in {:?}", cell(&s.name, 24), s.inbound);
            }
            if let Some(median) = t.median_days_to_first_referral {
                println!("median days from first contact to first referral: {median:.0}");
            }
        }),
        "digest" => show(json, &home.weekly_digest(today)?, |d| {
            println!("This week ({}):", d.today);
            println!(
                "  {} follow-ups due, {} overdue",
                d.due_followups.len(),
                d.overdue_count
            );
            for f in &d.due_followups {
                println!("    {}  {}", f.followup.due, f.partner_name);
            }
            for c in &d.going_cold {
                println!("  going cold: {} ({} days)", c.name, c.days_quiet);
            }
            for w in &d.stream_warnings {
                println!("  {w}");
            }
            for r in &d.imbalances {
                println!("  imbalance: {} ({:+})", r.name, r.all_time.balance);
            }
        }),
        other => {
            bail!("unknown insight {other:?}: use reciprocity, streams, cold, trends or digest")
        }
    }
}

fn export(home: &Home, format: &str, out: Option<&std::path::Path>) -> Result<()> {
    let format = match format {
        "json" => ExportFormat::Json,
        "csv" => ExportFormat::Csv,
        "automerge" if out.is_none() => bail!("export automerge writes binary: pass --out FILE"),
        "automerge" => ExportFormat::Automerge,
        other => bail!("export {other:?}: use json, csv or automerge"),
    };
    let bytes = home.export(format)?;
    match out {
        Some(path) => std::fs::write(path, bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(())
}

/// The code from where the user gave it: the command line, standard input (`-`), a file,
/// or a prompt that does not show what is pasted.
fn read_code(input: crate::CodeInput, kind: &str) -> Result<String> {
    use std::io::{IsTerminal as _, Read as _};
    let text = match (input.code, input.code_file) {
        (Some(code), _) if code != "-" => code,
        (_, Some(path)) => std::fs::read_to_string(&path)
            .with_context(|| format!("could not read the {kind} code from {}", path.display()))?,
        (Some(_), None) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .with_context(|| format!("could not read the {kind} code from standard input"))?;
            text
        }
        (None, None) if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(format!("Paste the {kind} code (it is not shown): "))
                .with_context(|| format!("could not read the {kind} code"))?
        }
        (None, None) => bail!(
            "give the {kind} code: as an argument, `-` to read it from standard input, or --code-file PATH"
        ),
    };
    if text.trim().is_empty() {
        bail!("the {kind} code is empty: paste the whole RAPPORT-... code");
    }
    Ok(text)
}
