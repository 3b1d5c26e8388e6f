//! The home's schema as it stands: what a new file is made with, in one statement batch.
//!
//! It is the text SQLite keeps for a file brought up to [`super::STORE_VERSION`] by the
//! migrations, byte for byte (the columns a migration added sit where `ALTER TABLE` put
//! them, a renamed table keeps its quotes): a snapshot's tables image is checked against
//! the joiner's own definitions as text, so a new home and an upgraded one must define
//! every table identically. `store::tests` checks that a file migrated from every earlier
//! version has exactly this schema. A change to the schema is a new migration and the
//! same change here.

/// Every table, index and virtual table of a home at [`super::STORE_VERSION`].
pub const SCHEMA: &str = r#"
CREATE TABLE home (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE spaces (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        doc_heads BLOB NOT NULL,
        model_heads BLOB NOT NULL,
        model_version INTEGER NOT NULL,
        schema INTEGER NOT NULL
    );
CREATE TABLE chunks (
        id INTEGER PRIMARY KEY,
        space_id TEXT NOT NULL REFERENCES spaces(id),
        snapshot INTEGER NOT NULL,
        bytes BLOB NOT NULL
    );
CREATE INDEX chunks_by_space ON chunks(space_id, id);
CREATE TABLE practice (space_id TEXT PRIMARY KEY, name TEXT NOT NULL, settings TEXT NOT NULL);
CREATE TABLE members (id TEXT PRIMARY KEY, display_name TEXT NOT NULL, archived INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE streams (id TEXT PRIMARY KEY, name TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE partners (
        rid INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        stream_id TEXT,
        status TEXT NOT NULL,
        city_key TEXT,
        archived INTEGER NOT NULL,
        accepting INTEGER NOT NULL,
        telehealth INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        data TEXT NOT NULL
    , name TEXT NOT NULL DEFAULT '');
CREATE INDEX partners_by_name ON partners(archived, name_key, id);
CREATE INDEX partners_by_stream ON partners(stream_id);
CREATE TABLE partner_facets (
        facet TEXT NOT NULL,
        value TEXT NOT NULL,
        partner_rid INTEGER NOT NULL,
        PRIMARY KEY (facet, value, partner_rid)
    ) WITHOUT ROWID;
CREATE INDEX partner_facets_by_partner ON partner_facets(partner_rid);
CREATE VIRTUAL TABLE partners_fts USING fts5(
        name, organization, place, facets, statements,
        tokenize = 'unicode61 remove_diacritics 2'
    );
CREATE TABLE referral_concerns (
        concern TEXT NOT NULL,
        referral_id TEXT NOT NULL,
        PRIMARY KEY (concern, referral_id)
    ) WITHOUT ROWID;
CREATE INDEX referral_concerns_by_referral ON referral_concerns(referral_id);
CREATE TABLE notes (
        id TEXT PRIMARY KEY,
        partner_id TEXT NOT NULL,
        at TEXT NOT NULL,
        archived INTEGER NOT NULL,
        data TEXT NOT NULL
    );
CREATE INDEX notes_by_partner ON notes(partner_id, at);
CREATE TABLE sync_state (
        space_id TEXT PRIMARY KEY REFERENCES spaces(id),
        relay_cursor INTEGER NOT NULL DEFAULT 0,
        acked_heads BLOB NOT NULL DEFAULT x'',
        key_epoch INTEGER NOT NULL DEFAULT 0,
        last_sync_at INTEGER
    );
CREATE TABLE partner_activity (
        partner_id TEXT PRIMARY KEY,
        first_touch TEXT,
        last_touch TEXT,
        first_inbound TEXT,
        last_referral TEXT,
        inbound INTEGER NOT NULL,
        outbound INTEGER NOT NULL
    ) WITHOUT ROWID;
CREATE INDEX partner_activity_by_first_touch ON partner_activity(first_touch);
CREATE INDEX partners_lean ON partners(
        archived, id, name, status, created_at, stream_id, accepting, telehealth, city_key
    );
CREATE INDEX partners_by_id ON partners(id, stream_id, name, archived);
CREATE TABLE relay (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        addr TEXT NOT NULL,
        fingerprint BLOB NOT NULL
    );
CREATE TABLE space_keys (
        space_id TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        key BLOB NOT NULL,
        PRIMARY KEY (space_id, epoch)
    );
CREATE TABLE "touchpoints" (
        id TEXT NOT NULL,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        at TEXT NOT NULL,
        outcome TEXT,
        archived INTEGER NOT NULL,
        note TEXT NOT NULL,
        data GENERATED ALWAYS AS (json_object(
            'id', id, 'partner_id', partner_id, 'member_id', member_id, 'kind', kind,
            'at', at, 'outcome', outcome, 'note', note,
            'archived', json(iif(archived, 'true', 'false'))
        )) VIRTUAL
    );
CREATE UNIQUE INDEX touchpoints_by_id ON touchpoints(id);
CREATE INDEX touchpoints_by_partner ON touchpoints(partner_id, archived, at);
CREATE INDEX touchpoints_by_day ON touchpoints(at);
CREATE TABLE "referrals" (
        id TEXT NOT NULL,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        direction TEXT NOT NULL,
        at TEXT NOT NULL,
        status TEXT NOT NULL,
        outcome TEXT,
        age_band TEXT,
        payer_category TEXT,
        modality TEXT,
        concerns TEXT NOT NULL,
        data GENERATED ALWAYS AS (json_object(
            'id', id, 'partner_id', partner_id, 'member_id', member_id,
            'direction', direction, 'at', at, 'concerns', json(concerns),
            'age_band', age_band, 'payer_category', payer_category, 'modality', modality,
            'status', status, 'outcome', outcome
        )) VIRTUAL
    );
CREATE UNIQUE INDEX referrals_by_id ON referrals(id);
CREATE INDEX referrals_by_day ON referrals(at, direction, status, partner_id, member_id);
CREATE INDEX referrals_by_partner ON referrals(partner_id, direction, status, at);
CREATE INDEX referrals_by_direction_day ON referrals(direction, at, status, partner_id);
CREATE INDEX referrals_by_member ON referrals(member_id, direction, status, at);
CREATE TABLE "followups" (
        id TEXT NOT NULL,
        partner_id TEXT NOT NULL,
        member_id TEXT NOT NULL,
        due TEXT NOT NULL,
        status TEXT NOT NULL,
        done_at TEXT,
        cadence_days INTEGER,
        reason TEXT NOT NULL,
        snoozed INTEGER NOT NULL,
        auto INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        data GENERATED ALWAYS AS (json_object(
            'id', id, 'partner_id', partner_id, 'member_id', member_id, 'due', due,
            'done_at', done_at, 'cadence_days', cadence_days, 'reason', reason,
            'status', status, 'snoozed', snoozed,
            'auto', json(iif(auto, 'true', 'false')), 'attempt', attempt
        )) VIRTUAL
    );
CREATE UNIQUE INDEX followups_by_id ON followups(id);
CREATE INDEX followups_by_status ON followups(status, due);
CREATE INDEX followups_by_partner ON followups(partner_id);
CREATE TABLE membership_ops (
        space_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        op BLOB NOT NULL,
        PRIMARY KEY (space_id, seq)
    ) WITHOUT ROWID;
CREATE TABLE membership_state (
        space_id TEXT PRIMARY KEY,
        state BLOB NOT NULL
    );
CREATE TABLE heads_statements (
        space_id TEXT NOT NULL,
        device TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        statement BLOB NOT NULL, reached INTEGER NOT NULL DEFAULT 0, forwarded INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (space_id, device)
    );
"#;
