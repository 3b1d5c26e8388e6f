//! Insights on a home: one-line delegations to `crate::insights`, read from the read
//! model with an explicit `today` (use [`Home::today`] for the user's today).

use super::Home;
use crate::error::Result;
use crate::insights::cold::{self, ColdPartner};
use crate::insights::digest::{self, Digest};
use crate::insights::followups::{self, DueFollowup};
use crate::insights::matching::{self, Match, Need};
use crate::insights::reciprocity::{self, Gaps, LedgerBy, LedgerRow};
use crate::insights::streams::{self, StreamWindow};
use crate::insights::trends::{self, Trends};
use crate::store::queries;
use crate::validate::Day;

impl Home {
    /// Today in the user's time zone, by this home's clock.
    pub fn today(&self) -> Day {
        self.clock.today()
    }

    /// The practice's follow-up backoff (days; the last step repeats).
    pub fn default_cadence(&self) -> Result<Vec<u32>> {
        let settings = queries::practice_settings(&self.lock_reader())?;
        let steps = settings
            .get("cadence_steps")
            .and_then(|v| v.as_str())
            .map(crate::doc::project::parse_steps)
            .unwrap_or_default();
        Ok(if steps.is_empty() {
            super::batch::DEFAULT_CADENCE.to_vec()
        } else {
            steps
        })
    }

    /// Open follow-ups due by `today + horizon_days`, most overdue and valuable first.
    pub fn due_followups(&self, today: Day, horizon_days: u32) -> Result<Vec<DueFollowup>> {
        followups::due(&self.lock_reader(), today, horizon_days, None)
    }

    /// Open follow-ups past their due day.
    pub fn overdue_followups(&self, today: Day) -> Result<Vec<DueFollowup>> {
        followups::overdue(&self.lock_reader(), today)
    }

    /// The reciprocity ledger by partner, member or stream.
    pub fn reciprocity(
        &self,
        by: LedgerBy,
        today: Day,
        window_days: u32,
    ) -> Result<Vec<LedgerRow>> {
        reciprocity::ledger(&self.lock_reader(), by, today, window_days)
    }

    /// One partner's ledger.
    pub fn partner_reciprocity(
        &self,
        partner_id: &str,
        today: Day,
        window_days: u32,
    ) -> Result<LedgerRow> {
        reciprocity::of_partner(&self.lock_reader(), partner_id, today, window_days)
    }

    /// Who gives without getting, and who gets without giving.
    pub fn reciprocity_gaps(&self, today: Day, window_days: u32) -> Result<Gaps> {
        reciprocity::gaps(&self.lock_reader(), today, window_days)
    }

    /// Stream shares, concentration and warnings for the trailing 90 and 365 days.
    pub fn stream_report(&self, today: Day) -> Result<Vec<StreamWindow>> {
        streams::report(&self.lock_reader(), today)
    }

    /// The stream report for one trailing window.
    pub fn stream_window(&self, today: Day, days: u32) -> Result<StreamWindow> {
        streams::window(&self.lock_reader(), today, days)
    }

    /// Valuable partners with no contact for `quiet_days`.
    pub fn going_cold(&self, today: Day, quiet_days: u32) -> Result<Vec<ColdPartner>> {
        cold::going_cold(&self.lock_reader(), today, quiet_days)
    }

    /// Partners and colleagues ranked for a de-identified need, with reasons.
    pub fn match_need(&self, need: &Need) -> Result<Vec<Match>> {
        matching::rank(&self.lock_reader(), need)
    }

    /// Referrals month by month, time to first referral, cohorts.
    pub fn trends(&self, today: Day, months: u32) -> Result<Trends> {
        trends::trends(&self.lock_reader(), today, months)
    }

    /// What to do this week.
    pub fn weekly_digest(&self, today: Day) -> Result<Digest> {
        digest::weekly(&self.lock_reader(), today)
    }
}
