//! A partner edit validated field by field before the document is touched.

use std::collections::BTreeSet;

use automerge::ObjId;
use automerge::ReadDoc;
use automerge::transaction::Transactable;

use crate::doc::fields::{put_bool, put_opt_str, put_set, put_str, put_text};
use crate::doc::{Collection, existing};
use crate::error::Result;
use crate::model::PartnerEdit;
use crate::privacy::Screen;
use crate::validate;
use crate::vocab;

/// A partner edit whose every field has been validated.
pub(super) struct CheckedEdit {
    strings: Vec<(&'static str, Option<Option<String>>)>,
    kind: Option<&'static str>,
    status: Option<&'static str>,
    telehealth: Option<bool>,
    accepting: Option<bool>,
    sets: Vec<(&'static str, BTreeSet<String>)>,
    texts: Vec<(&'static str, String)>,
    stream_id: Option<Option<String>>,
    owner_member: Option<Option<String>>,
    cadence_steps: Option<Option<String>>,
}

impl CheckedEdit {
    pub(super) fn new(edit: PartnerEdit) -> Result<Self> {
        type Check = fn(&str, Option<&str>) -> Result<Option<String>>;
        let optional = |field: &'static str,
                        value: Option<String>,
                        check: Check|
         -> Result<(&'static str, Option<Option<String>>)> {
            Ok((field, value.map(|v| check(field, Some(&v))).transpose()?))
        };
        let mut strings = vec![];
        if let Some(name) = edit.name {
            strings.push(("name", Some(Some(validate::name("name", &name)?))));
        }
        strings.push(optional(
            "organization",
            edit.organization,
            validate::short,
        )?);
        strings.push(optional("credentials", edit.credentials, validate::short)?);
        strings.push(optional("npi", edit.npi, validate::npi)?);
        strings.push(optional(
            "taxonomy_code",
            edit.taxonomy_code,
            validate::taxonomy_code,
        )?);
        strings.push(optional("email", edit.email, validate::email)?);
        strings.push(optional("phone", edit.phone, validate::phone)?);
        strings.push(optional("website", edit.website, validate::website)?);
        strings.push(optional("city", edit.city, validate::short)?);
        strings.push(optional("region", edit.region, validate::short)?);
        let mut sets = vec![];
        let concern = |f: &str, v: &str| vocab::open_code(f, vocab::CONCERNS, v);
        let modality = |f: &str, v: &str| vocab::open_code(f, vocab::MODALITIES, v);
        for (field, values, check) in [
            (
                "specialties",
                edit.specialties,
                &concern as &dyn Fn(&str, &str) -> Result<String>,
            ),
            ("populations", edit.populations, &vocab::tag),
            ("modalities", edit.modalities, &modality),
            ("insurance", edit.insurance, &vocab::tag),
            ("languages", edit.languages, &vocab::language),
            ("tags", edit.tags, &vocab::tag),
        ] {
            if let Some(values) = values {
                sets.push((field, validate::set(field, &values, check)?));
            }
        }
        let mut texts = vec![];
        for (field, value) in [
            ("ideal_client", edit.ideal_client),
            ("how_we_met", edit.how_we_met),
        ] {
            if let Some(value) = value {
                texts.push((
                    field,
                    validate::text(field, &value, Screen::ProfessionalContact)?,
                ));
            }
        }
        let reference = |field: &str, value: Option<String>| -> Result<Option<Option<String>>> {
            value
                .map(|v| {
                    if v.trim().is_empty() {
                        Ok(None)
                    } else {
                        validate::id(field, &v).map(Some)
                    }
                })
                .transpose()
        };
        Ok(CheckedEdit {
            strings,
            kind: edit.kind.map(|k| k.code()),
            status: edit.status.map(|s| s.code()),
            telehealth: edit.telehealth,
            accepting: edit.accepting,
            sets,
            texts,
            stream_id: reference("stream_id", edit.stream_id)?,
            owner_member: reference("owner_member", edit.owner_member)?,
            cadence_steps: edit
                .cadence_steps
                .map(|steps| -> Result<Option<String>> {
                    crate::validate::cadence_steps("cadence_steps", &steps)?;
                    Ok((!steps.is_empty()).then(|| crate::doc::project::format_steps(&steps)))
                })
                .transpose()?,
        })
    }

    pub(super) fn check_references<R: ReadDoc>(&self, tx: &R) -> Result<()> {
        if let Some(Some(stream)) = &self.stream_id {
            existing(tx, Collection::Streams, "stream", stream)?;
        }
        if let Some(Some(member)) = &self.owner_member {
            existing(tx, Collection::Members, "member", member)?;
        }
        Ok(())
    }

    pub(super) fn apply<T: Transactable + ReadDoc>(&self, tx: &mut T, o: &ObjId) -> Result<()> {
        for (field, value) in &self.strings {
            if let Some(value) = value {
                put_opt_str(tx, o, field, value.as_deref())?;
            }
        }
        if let Some(kind) = self.kind {
            put_str(tx, o, "kind", kind)?;
        }
        if let Some(status) = self.status {
            put_str(tx, o, "status", status)?;
        }
        if let Some(telehealth) = self.telehealth {
            put_bool(tx, o, "telehealth", telehealth)?;
        }
        if let Some(accepting) = self.accepting {
            put_bool(tx, o, "accepting", accepting)?;
        }
        for (field, values) in &self.sets {
            put_set(tx, o, field, values)?;
        }
        for (field, value) in &self.texts {
            put_text(tx, o, field, value)?;
        }
        if let Some(stream) = &self.stream_id {
            put_opt_str(tx, o, "stream_id", stream.as_deref())?;
        }
        if let Some(owner) = &self.owner_member {
            put_opt_str(tx, o, "owner_member", owner.as_deref())?;
        }
        if let Some(steps) = &self.cadence_steps {
            put_opt_str(tx, o, "cadence_steps", steps.as_deref())?;
        }
        Ok(())
    }
}
