//! [`RapportHome`]: one device home, the object an app keeps for as long as it runs.
//! Every method is a one-line delegation to `rapport_core::Home`. Methods without `async`
//! touch only the local SQLite file (a few milliseconds); call them off the UI thread.

use std::sync::{Arc, RwLock};

use rapport_core::exchange::{ExportFormat, ImportOptions, ImportReport};
use rapport_core::insights::cold::ColdPartner;
use rapport_core::insights::digest::Digest;
use rapport_core::insights::followups::DueFollowup;
use rapport_core::insights::matching::{Match, Need};
use rapport_core::insights::reciprocity::{Gaps, LedgerBy, LedgerRow};
use rapport_core::insights::streams::StreamWindow;
use rapport_core::insights::trends::Trends;
use rapport_core::model::{
    Followup, Identity, Member, NewFollowup, NewPartner, NewReferral, NewTouchpoint, Note, Partner,
    PartnerEdit, PartnerFilter, Referral, Stream, Touchpoint,
};
use rapport_core::vocab::{FollowupStatus, ReferralOutcome, ReferralStatus, StreamKind};
use rapport_core::{Day, Home};

use crate::error::{RapportError, Result};
use crate::listeners::{ChangeListener, ListenerHandle};

/// A device's Rapport home: the practice's referral network kept in a directory the app
/// chooses (its files directory on Android, Application Support on iOS).
#[derive(uniffi::Object)]
pub struct RapportHome {
    home: RwLock<Option<Arc<Home>>>,
    pub(crate) sync: crate::sync::SyncState,
}

impl RapportHome {
    /// The open home, or a `Closed` error after `close_home()`.
    pub(crate) fn home(&self) -> Result<Arc<Home>> {
        self.home
            .read()
            .ok()
            .and_then(|h| h.clone())
            .ok_or_else(|| RapportError::Closed("this home was closed; open it again".into()))
    }

    fn today_or(&self, today: Option<Day>) -> Result<Day> {
        Ok(today.unwrap_or(self.home()?.today()))
    }
}

#[uniffi::export]
impl RapportHome {
    /// Opens (or creates) the home in `directory`; the directory is created if missing.
    #[uniffi::constructor]
    pub fn open(directory: String) -> Result<Arc<Self>> {
        Ok(Arc::new(RapportHome {
            home: RwLock::new(Some(Arc::new(Home::open(directory)?))),
            sync: crate::sync::SyncState::default(),
        }))
    }

    /// Releases the home now: later calls fail with `Closed`. Background sync stops; the
    /// files stay. (Also happens when the object is closed or collected.)
    pub fn close_home(&self) {
        self.sync.stop_now();
        if let Ok(mut slot) = self.home.write() {
            slot.take();
        }
    }

    /// The directory the home lives in.
    pub fn path(&self) -> Result<String> {
        Ok(self.home()?.path().display().to_string())
    }

    /// Who this device is and which practice it holds; `None` before a practice exists.
    pub fn identity(&self) -> Result<Option<Identity>> {
        Ok(self.home()?.identity()?)
    }

    /// This device's id.
    pub fn device_id(&self) -> Result<String> {
        Ok(self.home()?.device_id()?)
    }

    /// Today in the user's time zone.
    pub fn today(&self) -> Result<Day> {
        Ok(self.home()?.today())
    }

    /// Creates a practice in this home, with this device's clinician as its first member.
    pub fn create_practice(&self, practice_name: String, member_name: String) -> Result<Identity> {
        Ok(self.home()?.create_practice(&practice_name, &member_name)?)
    }

    /// Hears every committed change until the returned handle is cancelled, closed or
    /// dropped.
    pub fn subscribe(&self, listener: Arc<dyn ChangeListener>) -> Result<Arc<ListenerHandle>> {
        let subscription =
            self.home()?
                .subscribe(Arc::new(move |event: &rapport_core::ChangeEvent| {
                    listener.on_change(event.clone())
                }));
        Ok(ListenerHandle::new(subscription))
    }

    // Partners.

    /// Adds a partner; only `kind` and `name` are required.
    pub fn add_partner(&self, input: NewPartner) -> Result<Partner> {
        Ok(self.home()?.add_partner(input)?)
    }

    /// Edits a partner: unset fields stay as they are.
    pub fn edit_partner(&self, id: String, edit: PartnerEdit) -> Result<Partner> {
        Ok(self.home()?.edit_partner(&id, edit)?)
    }

    /// Archives a partner (kept for history, hidden from lists and insights).
    pub fn archive_partner(&self, id: String) -> Result<Partner> {
        Ok(self.home()?.archive_partner(&id)?)
    }

    /// Brings an archived partner back.
    pub fn restore_partner(&self, id: String) -> Result<Partner> {
        Ok(self.home()?.restore_partner(&id)?)
    }

    /// One partner.
    pub fn partner(&self, id: String) -> Result<Partner> {
        Ok(self.home()?.partner(&id)?)
    }

    /// Partners matching a filter, a page at a time.
    pub fn partners(&self, filter: PartnerFilter) -> Result<Vec<Partner>> {
        Ok(self.home()?.partners(&filter)?)
    }

    /// Full-text search over names, organizations, places, sets and statements.
    pub fn search_partners(&self, text: String, limit: u32) -> Result<Vec<Partner>> {
        Ok(self.home()?.search_partners(&text, limit)?)
    }

    /// How many active partners there are.
    pub fn partner_count(&self) -> Result<u64> {
        Ok(self.home()?.partner_count()?)
    }

    /// Creates a referral stream.
    pub fn create_stream(&self, name: String, kind: StreamKind) -> Result<Stream> {
        Ok(self.home()?.create_stream(&name, kind)?)
    }

    /// The practice's streams.
    pub fn streams(&self) -> Result<Vec<Stream>> {
        Ok(self.home()?.streams()?)
    }

    /// The practice's clinicians.
    pub fn members(&self) -> Result<Vec<Member>> {
        Ok(self.home()?.members()?)
    }

    /// Sets this clinician's ideal-client statement.
    pub fn set_ideal_client(&self, text: String) -> Result<Member> {
        Ok(self.home()?.set_ideal_client(&text)?)
    }

    /// Sets whether this clinician accepts new clients.
    pub fn set_accepting(&self, accepting: bool) -> Result<Member> {
        Ok(self.home()?.set_accepting(accepting)?)
    }

    // Outreach, referrals, follow-ups, notes.

    /// Logs an outreach; unanswered outreach schedules the next follow-up by the cadence.
    pub fn log_touchpoint(&self, input: NewTouchpoint) -> Result<Touchpoint> {
        Ok(self.home()?.log_touchpoint(input)?)
    }

    /// A partner's touchpoints, newest first.
    pub fn touchpoints_of(&self, partner_id: String) -> Result<Vec<Touchpoint>> {
        Ok(self.home()?.touchpoints_of(&partner_id)?)
    }

    /// Records a referral (coded, never a client's identity).
    pub fn record_referral(&self, input: NewReferral) -> Result<Referral> {
        Ok(self.home()?.record_referral(input)?)
    }

    /// Updates a referral's status and outcome.
    pub fn update_referral(
        &self,
        id: String,
        status: ReferralStatus,
        outcome: Option<ReferralOutcome>,
    ) -> Result<Referral> {
        Ok(self.home()?.update_referral(&id, status, outcome)?)
    }

    /// A partner's referrals, newest first.
    pub fn referrals_of(&self, partner_id: String) -> Result<Vec<Referral>> {
        Ok(self.home()?.referrals_of(&partner_id)?)
    }

    /// All referrals, newest first, a page at a time.
    pub fn referrals(&self, limit: u32, offset: u32) -> Result<Vec<Referral>> {
        Ok(self.home()?.referrals(limit, offset)?)
    }

    /// Schedules a follow-up.
    pub fn schedule_followup(&self, input: NewFollowup) -> Result<Followup> {
        Ok(self.home()?.schedule_followup(input)?)
    }

    /// Marks a follow-up done (today when `on` is unset).
    pub fn complete_followup(&self, id: String, on: Option<Day>) -> Result<Followup> {
        Ok(self.home()?.complete_followup(&id, on)?)
    }

    /// Moves a follow-up to a later day.
    pub fn snooze_followup(&self, id: String, until: Day) -> Result<Followup> {
        Ok(self.home()?.snooze_followup(&id, until)?)
    }

    /// Cancels a follow-up.
    pub fn cancel_followup(&self, id: String) -> Result<Followup> {
        Ok(self.home()?.cancel_followup(&id)?)
    }

    /// Follow-ups with a status.
    pub fn followups(&self, status: FollowupStatus) -> Result<Vec<Followup>> {
        Ok(self.home()?.followups(status)?)
    }

    /// A partner's follow-ups.
    pub fn followups_of(&self, partner_id: String) -> Result<Vec<Followup>> {
        Ok(self.home()?.followups_of(&partner_id)?)
    }

    /// The practice's default follow-up backoff in days.
    pub fn default_cadence(&self) -> Result<Vec<u32>> {
        Ok(self.home()?.default_cadence()?)
    }

    /// Sets the practice's default follow-up backoff in days.
    pub fn set_default_cadence(&self, steps: Vec<u32>) -> Result<Vec<u32>> {
        Ok(self.home()?.set_default_cadence(&steps)?)
    }

    /// Adds a private note about a partner (synced only among this clinician's devices).
    pub fn add_note(&self, partner_id: String, body: String) -> Result<Note> {
        Ok(self.home()?.add_note(&partner_id, &body)?)
    }

    /// This clinician's notes about a partner.
    pub fn notes_of(&self, partner_id: String) -> Result<Vec<Note>> {
        Ok(self.home()?.notes_of(&partner_id)?)
    }

    // Insights; `today` defaults to today in the user's time zone.

    /// Open follow-ups due within `horizon_days`, most overdue and valuable first.
    pub fn due_followups(&self, today: Option<Day>, horizon_days: u32) -> Result<Vec<DueFollowup>> {
        Ok(self
            .home()?
            .due_followups(self.today_or(today)?, horizon_days)?)
    }

    /// Open follow-ups past their due day.
    pub fn overdue_followups(&self, today: Option<Day>) -> Result<Vec<DueFollowup>> {
        Ok(self.home()?.overdue_followups(self.today_or(today)?)?)
    }

    /// The reciprocity ledger by partner, member or stream.
    pub fn reciprocity(
        &self,
        by: LedgerBy,
        today: Option<Day>,
        window_days: u32,
    ) -> Result<Vec<LedgerRow>> {
        Ok(self
            .home()?
            .reciprocity(by, self.today_or(today)?, window_days)?)
    }

    /// One partner's reciprocity.
    pub fn partner_reciprocity(
        &self,
        partner_id: String,
        today: Option<Day>,
        window_days: u32,
    ) -> Result<LedgerRow> {
        let today = self.today_or(today)?;
        Ok(self
            .home()?
            .partner_reciprocity(&partner_id, today, window_days)?)
    }

    /// Who sends without receiving, and who receives without sending.
    pub fn reciprocity_gaps(&self, today: Option<Day>, window_days: u32) -> Result<Gaps> {
        Ok(self
            .home()?
            .reciprocity_gaps(self.today_or(today)?, window_days)?)
    }

    /// Stream shares, concentration and warnings for the trailing 90 and 365 days.
    pub fn stream_report(&self, today: Option<Day>) -> Result<Vec<StreamWindow>> {
        Ok(self.home()?.stream_report(self.today_or(today)?)?)
    }

    /// The stream report for one trailing window of `days`.
    pub fn stream_window(&self, today: Option<Day>, days: u32) -> Result<StreamWindow> {
        Ok(self.home()?.stream_window(self.today_or(today)?, days)?)
    }

    /// Valuable partners with no contact for `quiet_days`.
    pub fn going_cold(&self, today: Option<Day>, quiet_days: u32) -> Result<Vec<ColdPartner>> {
        Ok(self.home()?.going_cold(self.today_or(today)?, quiet_days)?)
    }

    /// Partners and colleagues ranked for a de-identified need, with reasons.
    pub fn match_need(&self, need: Need) -> Result<Vec<Match>> {
        Ok(self.home()?.match_need(&need)?)
    }

    /// Referrals month by month, time to first referral, cohorts.
    pub fn trends(&self, today: Option<Day>, months: u32) -> Result<Trends> {
        Ok(self.home()?.trends(self.today_or(today)?, months)?)
    }

    /// What to do this week.
    pub fn weekly_digest(&self, today: Option<Day>) -> Result<Digest> {
        Ok(self.home()?.weekly_digest(self.today_or(today)?)?)
    }

    // Import and export.

    /// Imports a CSV referral tracker (the file's text): all rows or none, unless
    /// `skip_invalid`; the report maps columns and lists the bad lines.
    pub fn import_csv(&self, csv: String, options: ImportOptions) -> Result<ImportReport> {
        Ok(self.home()?.import_csv(csv.as_bytes(), options, &|_| {})?)
    }

    /// Exports the practice's shared data (never personal notes).
    pub fn export(&self, format: ExportFormat) -> Result<Vec<u8>> {
        Ok(self.home()?.export(format)?)
    }
}

impl Drop for RapportHome {
    fn drop(&mut self) {
        self.sync.stop_now();
    }
}
