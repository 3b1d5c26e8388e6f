//! Text merged from colleagues, screened as this device screens its own writes.
//!
//! A colleague's device should have refused a client identifier before it was written, but
//! an old, buggy or hostile one may not have. A merged change cannot be refused without the
//! devices diverging, so what it brought is screened after the merge and flagged instead:
//! the flags ride on the change event and the sync report, naming the entity and the field,
//! never the text.

use automerge::ReadDoc;

use crate::doc::{EntityRef, project};
use crate::events::PrivacyFlag;
use crate::model::EntityKind;
use crate::privacy::{self, Screen};
use crate::vocab::CUSTOM_PREFIX;

/// The free text and made-up codes of the changed entities that the privacy guard refuses.
pub(super) fn flags<R: ReadDoc>(doc: &R, refs: &[EntityRef]) -> Vec<PrivacyFlag> {
    let mut flags = Vec::new();
    for (kind, id) in refs {
        // `strength` None: a code, whose made-up slug is screened like text.
        let mut check = |field: &str, text: &str, strength: Option<Screen>| {
            let screened = match strength {
                Some(strength) => privacy::screen(field, text, strength),
                None => {
                    privacy::screen_code(field, text.strip_prefix(CUSTOM_PREFIX).unwrap_or(text))
                }
            };
            flag(&mut flags, *kind, id, field, screened);
        };
        match kind {
            EntityKind::Member => {
                if let Some(m) = project::member(doc, id) {
                    check(
                        "ideal_client",
                        &m.ideal_client,
                        Some(Screen::ProfessionalContact),
                    );
                }
            }
            EntityKind::Partner => {
                if let Some(p) = project::partner(doc, id) {
                    check(
                        "ideal_client",
                        &p.ideal_client,
                        Some(Screen::ProfessionalContact),
                    );
                    check(
                        "how_we_met",
                        &p.how_we_met,
                        Some(Screen::ProfessionalContact),
                    );
                    for (field, values) in [
                        ("specialties", &p.specialties),
                        ("modalities", &p.modalities),
                        ("populations", &p.populations),
                        ("insurance", &p.insurance),
                        ("tags", &p.tags),
                    ] {
                        for value in values {
                            check(field, value, CODE);
                        }
                    }
                }
            }
            // A note may carry a professional's contact details by the writer's deliberate
            // override, so merged notes are held to that strength.
            EntityKind::Touchpoint => {
                if let Some(t) = project::touchpoint(doc, id) {
                    check("note", &t.note, Some(Screen::ProfessionalContact));
                }
            }
            EntityKind::Followup => {
                if let Some(f) = project::followup(doc, id) {
                    check("reason", &f.reason, Some(Screen::Strict));
                }
            }
            EntityKind::Note => {
                if let Some(n) = project::note(doc, id) {
                    check("note", &n.body, Some(Screen::ProfessionalContact));
                }
            }
            EntityKind::Referral => {
                if let Some(r) = project::referral(doc, id) {
                    for concern in &r.concerns {
                        check("concerns", concern, CODE);
                    }
                    if let Some(modality) = &r.modality {
                        check("modality", modality, CODE);
                    }
                }
            }
            EntityKind::Practice | EntityKind::Stream => {}
        }
    }
    flags
}

/// A code field: its slug is screened with [`privacy::screen_code`].
const CODE: Option<Screen> = None;

fn flag(
    flags: &mut Vec<PrivacyFlag>,
    kind: EntityKind,
    id: &str,
    field: &str,
    screened: crate::Result<()>,
) {
    if let Err(crate::Error::Identifier { what, .. }) = screened {
        flags.push(PrivacyFlag {
            kind,
            id: id.to_string(),
            field: field.to_string(),
            what,
        });
    }
}
