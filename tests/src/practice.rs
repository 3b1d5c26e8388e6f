//! Steps the end-to-end tests share.

use rapport_core::Home;
use rapport_core::model::{NewPartner, Partner};
use rapport_core::sync;
use rapport_core::vocab::PartnerKind;
use rapport_wire::frames::Role;

/// `by` invites a member and `home` joins with the code as `name`, over the relay `by`
/// syncs with. Panics (it is for tests) if either step fails.
#[allow(clippy::unwrap_used)]
pub async fn join_member(by: &Home, home: &Home, name: &str) {
    let code = sync::create_invite(by, Role::Member, 3600).await.unwrap();
    sync::join(home, &code, name).await.unwrap();
}

/// Adds a partner of `kind` named `name` with nothing else filled in. Panics (it is for
/// tests) if the write is refused.
#[allow(clippy::unwrap_used)]
pub fn add_partner(home: &Home, kind: PartnerKind, name: &str) -> Partner {
    home.add_partner(NewPartner {
        kind: Some(kind),
        name: name.into(),
        ..Default::default()
    })
    .unwrap()
}
