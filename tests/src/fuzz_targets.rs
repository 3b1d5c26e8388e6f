//! Every decoder of untrusted bytes as one function that must not panic, whatever it is
//! given: shared by the cargo-fuzz targets (`fuzz/`, nightly, coverage-guided) and the
//! bounded run on the stable toolchain in the test suite (`tests/tests/fuzz.rs`), so that
//! CI fuzzes every change. A target may refuse its input; it may not crash.

use std::sync::{Mutex, OnceLock};

use rapport_core::Home;
use rapport_core::doc::{bounds, guard};
use rapport_core::exchange::ImportOptions;
use rapport_core::sealed::crypto::{self, SpaceKey};
use rapport_core::sealed::fragment::{self, Reassembly};
use rapport_core::sealed::{entry, snapshot::SpaceSnapshot};
use rapport_core::store::tables_image;
use rapport_wire::codes::{InviteCode, SetupCode};
use rapport_wire::frames::{self, MAX_FRAME, Request, Response};
use rapport_wire::{DeviceId, SpaceId};

/// A target: its name (its corpus is `fuzz/corpus/<name>/`) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: &[Target] = &[
    ("frames", frames),
    ("codes", codes),
    ("snapshot", snapshot),
    ("fragments", fragments),
    ("sealed_entry", sealed_entry),
    ("tables_image", tables_image),
    ("csv_import", csv_import),
    ("automerge_bounds", automerge_bounds),
];

/// The key, space and sender sealed entries of the corpus use.
pub const SPACE: SpaceId = SpaceId([3; 16]);
/// See [`SPACE`].
pub const SENDER: DeviceId = DeviceId([4; 16]);
/// See [`SPACE`].
pub fn key() -> SpaceKey {
    SpaceKey::from_bytes(1, [5; 32])
}

/// Request and response frames: by body, and length-prefixed as a stream delivers them.
pub fn frames(data: &[u8]) {
    let _ = frames::decode::<Request>(data);
    let _ = frames::decode::<Response>(data);
    if let Some(first) = data.first() {
        let _ = frames::request_cap(*first);
    }
    let read = async {
        let mut reader = data;
        while let Ok(Some(_)) = frames::read_frame::<_, Request>(&mut reader, MAX_FRAME).await {}
        let mut reader = data;
        let _ = frames::read_head(&mut reader, MAX_FRAME).await;
    };
    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() {
        runtime.block_on(read);
    }
}

/// Setup and invite codes, as pasted text.
pub fn codes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = SetupCode::decode(&text);
    let _ = InviteCode::decode(&text);
}

/// A snapshot as a joiner fetches it: decoded, its heads checked, its records and tables
/// image decompressed (within their bounds).
pub fn snapshot(data: &[u8]) {
    if let Ok(snapshot) = SpaceSnapshot::decode(data) {
        let _ = snapshot.heads_match_document();
        let _ = snapshot.records();
    }
}

/// Parts of a large change, put back together.
pub fn fragments(data: &[u8]) {
    let mut reassembly = Reassembly::default();
    for (seq, piece) in (1..).zip(data.split(|b| *b == 0xFE).take(80)) {
        if let Some(Ok(part)) = fragment::parse(piece) {
            let _ = reassembly.add(SENDER, seq, part);
        }
        let _ = reassembly.expire(seq);
    }
    if let Some(Ok(part)) = fragment::parse(data) {
        let _ = reassembly.add(SENDER, 1, part);
    }
}

/// A sealed entry: opened (signature, key, padding) as from the device whose public key
/// it carries, as from another, and its plaintext framing decoded.
pub fn sealed_entry(data: &[u8]) {
    let claimed = data.get(1..33).map_or(SENDER, DeviceId::from_public_key);
    for sender in [claimed, SENDER] {
        if let Ok(plain) = crypto::open(&key(), SPACE, sender, data) {
            let _ = entry::decode(&plain);
        }
    }
    let _ = entry::decode(data);
}

struct Fixture {
    _dir: tempfile::TempDir,
    home: Home,
    conn: Mutex<rusqlite::Connection>,
}

/// A home with a practice, made once per process.
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let dir = tempfile::tempdir().ok()?;
            let home = Home::open(dir.path()).ok()?;
            home.create_practice("Fuzz Practice", "Fuzz Owner").ok()?;
            let conn =
                rapport_core::store::open_writer(&dir.path().join(rapport_core::store::DB_FILE))
                    .ok()?;
            Some(Fixture {
                _dir: dir,
                home,
                conn: Mutex::new(conn),
            })
        })
        .as_ref()
}

/// A snapshot's SQLite image of the large tables: checked, then attached.
pub fn tables_image(data: &[u8]) {
    let Some(fixture) = fixture() else { return };
    let Ok(mut conn) = fixture.conn.lock() else {
        return;
    };
    let _ = tables_image::with_tables(&mut conn, Some(data), |_| Ok(()));
}

/// A spreadsheet tracker, imported as a dry run.
pub fn csv_import(data: &[u8]) {
    let Some(fixture) = fixture() else { return };
    let options = ImportOptions {
        dry_run: true,
        skip_invalid: false,
    };
    let _ = fixture.home.import_csv(data, options, &|_| {});
}

/// Automerge bytes from a colleague: checked for how far they inflate and how many rows
/// their runs declare, then, when they pass, decoded as an entry's changes and loaded as
/// a document by Automerge behind the guard (which turns a panic inside it into an error).
pub fn automerge_bounds(data: &[u8]) {
    if bounds::check(data).is_ok() {
        let _ = guard::changes(data);
        let _ = guard::load(data);
    }
}
