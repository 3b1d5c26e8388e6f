//! The `rapport` command: a practice's referral network, offline, in a terminal.

mod commands;
mod demo;
mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Rapport keeps a therapy practice's referral network on every device, offline, and syncs
/// it end-to-end encrypted through the practice's relay.
#[derive(Parser)]
#[command(name = "rapport", version, about)]
pub struct Cli {
    /// The home directory (default: $RAPPORT_HOME, else the platform's data directory).
    #[arg(long, global = true, env = "RAPPORT_HOME")]
    pub home: Option<PathBuf>,
    /// Print stable JSON instead of tables (read commands).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Partner fields shared by `partner add` and `partner edit`.
#[derive(Args, Default)]
pub struct PartnerFields {
    /// Organization or practice.
    #[arg(long)]
    pub organization: Option<String>,
    /// Professional email.
    #[arg(long)]
    pub email: Option<String>,
    /// Professional phone.
    #[arg(long)]
    pub phone: Option<String>,
    /// City.
    #[arg(long)]
    pub city: Option<String>,
    /// Region or state.
    #[arg(long)]
    pub region: Option<String>,
    /// Offers telehealth.
    #[arg(long)]
    pub telehealth: bool,
    /// A concern they treat (repeatable), e.g. anxiety.
    #[arg(long = "specialty")]
    pub specialties: Vec<String>,
    /// A population they serve (repeatable), e.g. adolescent.
    #[arg(long = "population")]
    pub populations: Vec<String>,
    /// A service format or approach (repeatable), e.g. couples, emdr.
    #[arg(long = "modality")]
    pub modalities: Vec<String>,
    /// A payer they take (repeatable), e.g. medicaid.
    #[arg(long = "insurance")]
    pub insurance: Vec<String>,
    /// A language, ISO 639-1 (repeatable), e.g. es.
    #[arg(long = "language")]
    pub languages: Vec<String>,
    /// Their ideal client, in their words.
    #[arg(long)]
    pub ideal_client: Option<String>,
    /// How you met.
    #[arg(long)]
    pub how_we_met: Option<String>,
    /// Referral stream; a name used for the first time creates it.
    #[arg(long)]
    pub stream: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
}

/// What to do.
#[derive(Subcommand)]
pub enum Command {
    /// Creates a practice on this device.
    ///
    /// Example: rapport init --practice "Riverside Counseling" --member "Ana Ruiz"
    Init {
        /// The practice's name.
        #[arg(long)]
        practice: String,
        /// Your name as colleagues see it.
        #[arg(long)]
        member: String,
    },
    /// Shows the practice, you, this device and sync state.
    ///
    /// Example: rapport status --json
    Status,
    /// Partners: add, list, show, edit, archive.
    ///
    /// Example: rapport partner list --kind therapist
    #[command(subcommand)]
    Partner(Box<PartnerCommand>),
    /// Logs an outreach to a partner (id or unambiguous name prefix).
    ///
    /// Example: rapport touch "Dr. Lee" --kind email --outcome no_response --note "Sent our flyer"
    Touch {
        /// The partner: id or name prefix.
        partner: String,
        /// call, email, meeting, coffee, event, letter or other.
        #[arg(long)]
        kind: String,
        /// reached, no_response, declined or scheduled.
        #[arg(long)]
        outcome: Option<String>,
        /// A note (no client identifiers).
        #[arg(long, default_value = "")]
        note: String,
        /// The day, YYYY-MM-DD (default today).
        #[arg(long)]
        at: Option<String>,
    },
    /// Records a referral: `in` (they referred to you) or `out` (you referred to them).
    ///
    /// Example: rapport refer in --partner "Dr. Lee" --concern anxiety --age-band adult --payer commercial
    Refer {
        /// in or out.
        direction: String,
        /// The partner: id or name prefix.
        #[arg(long)]
        partner: String,
        /// A presenting concern code (repeatable).
        #[arg(long = "concern", required = true)]
        concerns: Vec<String>,
        /// child, adolescent, young_adult, adult or older_adult.
        #[arg(long)]
        age_band: Option<String>,
        /// commercial, medicaid, medicare, military, eap, self_pay, sliding_scale or other.
        #[arg(long)]
        payer: Option<String>,
        /// A service format, e.g. individual.
        #[arg(long)]
        modality: Option<String>,
        /// The day, YYYY-MM-DD (default today).
        #[arg(long)]
        at: Option<String>,
    },
    /// Referrals: list, update status.
    ///
    /// Example: rapport referral list
    #[command(subcommand)]
    Referral(ReferralCommand),
    /// Lists open follow-ups due this week (or only overdue ones).
    ///
    /// Example: rapport followups --overdue
    Followups {
        /// Only those past due.
        #[arg(long)]
        overdue: bool,
    },
    /// Completes or snoozes a follow-up.
    ///
    /// Example: rapport followup done 0190f3a2-...
    #[command(subcommand)]
    Followup(FollowupCommand),
    /// You: your ideal-client statement.
    ///
    /// Example: rapport me ideal-client "Couples rebuilding trust"
    #[command(subcommand)]
    Me(MeCommand),
    /// Insights: reciprocity, streams, cold, trends, digest.
    ///
    /// Example: rapport insights digest
    Insights {
        /// reciprocity, streams, cold, trends or digest.
        which: String,
    },
    /// Ranks partners and colleagues for a de-identified need, with reasons.
    ///
    /// Example: rapport match --concern anxiety --age-band adolescent --language es --telehealth
    Match {
        /// A concern code (repeatable).
        #[arg(long = "concern")]
        concerns: Vec<String>,
        /// Age band.
        #[arg(long)]
        age_band: Option<String>,
        /// Payer category.
        #[arg(long)]
        payer: Option<String>,
        /// Language, ISO 639-1.
        #[arg(long)]
        language: Option<String>,
        /// Service format.
        #[arg(long)]
        modality: Option<String>,
        /// Wants telehealth.
        #[arg(long)]
        telehealth: bool,
        /// City.
        #[arg(long)]
        city: Option<String>,
        /// Only those accepting new clients.
        #[arg(long)]
        accepting: bool,
    },
    /// The relay: connect this practice with a setup code.
    ///
    /// Example: rapport relay connect RAPPORT-SETUP-...
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Creates an invite code for a colleague (owner or admin) or for another device of
    /// your own (--device), or revokes one.
    ///
    /// Example: rapport invite --role member --expires 7d
    /// Example: rapport invite --device --expires 2h
    #[command(args_conflicts_with_subcommands = true)]
    Invite {
        /// `revoke ID` to revoke a pending invite.
        #[command(subcommand)]
        action: Option<InviteCommand>,
        /// member or admin.
        #[arg(long, default_value = "member")]
        role: String,
        /// An invite for another device of your own (a phone, a second laptop): it joins
        /// as you, with your personal notes.
        #[arg(long, conflicts_with = "role")]
        device: bool,
        /// How long it is valid: e.g. 2h, 7d.
        #[arg(long, default_value = "7d")]
        expires: String,
    },
    /// Joins a practice with an invite code.
    ///
    /// Example: rapport join RAPPORT-INVITE-... --member "Ben Okafor"
    ///
    /// The code is a secret: rather than on the command line (where the shell history and
    /// other users' `ps` see it), give `-` to read it from standard input, --code-file, or
    /// leave it out to be asked for it.
    Join {
        /// Where the code comes from.
        #[command(flatten)]
        code: CodeInput,
        /// Your name as colleagues see it (not needed with an invite for your own device).
        #[arg(long)]
        member: Option<String>,
    },
    /// Syncs with the relay now (or keeps syncing with --watch, until Ctrl-C).
    ///
    /// Example: rapport sync --watch
    Sync {
        /// Keep syncing in the background until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Lists the practice's devices and pending invites, or removes a device.
    ///
    /// Example: rapport devices --json
    Devices {
        /// `remove ID` to remove a device.
        #[command(subcommand)]
        action: Option<DevicesCommand>,
    },
    /// Imports a referral tracker kept in a spreadsheet (CSV): partners, and referrals
    /// with direction and date. Nothing is written unless every row is valid.
    ///
    /// Example: rapport import csv tracker.csv --dry-run
    Import {
        /// The format: csv.
        format: String,
        /// The file.
        file: PathBuf,
        /// Check and report, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Import the valid rows even if some are not.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Exports the practice: json (everything), csv (partners, importable again) or
    /// automerge (the document's bytes).
    ///
    /// Example: rapport export csv --out partners.csv
    Export {
        /// json, csv or automerge.
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Prints shell completions.
    ///
    /// Example: rapport completions bash > /etc/bash_completion.d/rapport
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Plays the story of a practice building its network through a real relay, in a
    /// temporary directory removed afterwards.
    ///
    /// Example: rapport demo
    Demo,
}

/// `rapport partner ...`
#[derive(Subcommand)]
pub enum PartnerCommand {
    /// Adds a partner and prints its id.
    ///
    /// Example: rapport partner add --name "Dr. Lee Park" --kind therapist --specialty couples --stream Therapists
    Add {
        /// Name.
        #[arg(long)]
        name: String,
        /// therapist, physician, school, community_group, organization or other.
        #[arg(long)]
        kind: String,
        /// The partner's other fields.
        #[command(flatten)]
        fields: PartnerFields,
    },
    /// Lists partners by name.
    ///
    /// Example: rapport partner list --search anxiety
    List {
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this stream (name).
        #[arg(long)]
        stream: Option<String>,
        /// Full-text search.
        #[arg(long)]
        search: Option<String>,
        /// Include archived partners.
        #[arg(long)]
        archived: bool,
    },
    /// Shows one partner with its touchpoints and referrals.
    ///
    /// Example: rapport partner show "Dr. Lee"
    Show {
        /// Id or name prefix.
        partner: String,
    },
    /// Edits a partner: only the fields given change.
    ///
    /// Example: rapport partner edit "Dr. Lee" --city Salem --specialty couples --specialty grief
    Edit {
        /// Id or name prefix.
        partner: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// The partner's other fields.
        #[command(flatten)]
        fields: PartnerFields,
    },
    /// Archives a partner (history stays).
    ///
    /// Example: rapport partner archive "Dr. Lee"
    Archive {
        /// Id or name prefix.
        partner: String,
    },
}

/// `rapport referral ...`
#[derive(Subcommand)]
pub enum ReferralCommand {
    /// Lists referrals, newest first.
    ///
    /// Example: rapport referral list --json
    List,
    /// Sets a referral's status (and outcome).
    ///
    /// Example: rapport referral status 0190... completed --outcome intake_held
    Status {
        /// Referral id.
        id: String,
        /// draft, requested, active, on_hold, cancelled, completed or entered_in_error.
        status: String,
        /// scheduled, intake_held, not_a_fit or no_response.
        #[arg(long)]
        outcome: Option<String>,
    },
}

/// `rapport followup ...`
#[derive(Subcommand)]
pub enum FollowupCommand {
    /// Marks a follow-up done (a repeating one schedules its next).
    ///
    /// Example: rapport followup done 0190f3a2-...
    Done {
        /// Follow-up id.
        id: String,
    },
    /// Moves a follow-up to a later day.
    ///
    /// Example: rapport followup snooze 0190f3a2-... --until 2026-12-15
    Snooze {
        /// Follow-up id.
        id: String,
        /// The new day, YYYY-MM-DD (default in 7 days).
        #[arg(long)]
        until: Option<String>,
    },
}

/// `rapport me ...`
#[derive(Subcommand)]
pub enum MeCommand {
    /// Sets your ideal-client statement.
    ///
    /// Example: rapport me ideal-client "Adults with anxiety who want evening sessions"
    IdealClient {
        /// The statement.
        text: String,
    },
}

/// `rapport relay ...`
#[derive(Subcommand)]
pub enum RelayCommand {
    /// Connects this practice to a relay with its one-time setup code.
    ///
    /// Example: rapport relay connect RAPPORT-SETUP-...
    ///
    /// The code is a secret: give `-` to read it from standard input, --code-file, or
    /// leave it out to be asked for it.
    Connect {
        /// Where the code comes from.
        #[command(flatten)]
        code: CodeInput,
    },
}

/// Where a setup or invite code comes from.
#[derive(Args)]
pub struct CodeInput {
    /// The code; `-` reads it from standard input; left out, it is asked for (not shown
    /// as it is pasted) or read from --code-file.
    pub code: Option<String>,
    /// A file holding the code.
    #[arg(long, value_name = "PATH", conflicts_with = "code")]
    pub code_file: Option<std::path::PathBuf>,
}

/// `rapport invite ...`
#[derive(Subcommand)]
pub enum InviteCommand {
    /// Revokes a pending invite (owner, admin, or the device that made it).
    ///
    /// Example: rapport invite revoke 1a2b3c4d
    Revoke {
        /// The invite's id, or its start (see `rapport devices`).
        id: String,
    },
}

/// `rapport devices ...`
#[derive(Subcommand)]
pub enum DevicesCommand {
    /// Removes a device (owner or admin); the practice key rotates.
    ///
    /// Example: rapport devices remove 649161b3e00c18e58ac8da9951265a18
    Remove {
        /// Device id (see `rapport devices`).
        id: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "rapport",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        _ => commands::run(cli),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
