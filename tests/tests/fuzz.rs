//! The fuzz targets (`rapport_tests::fuzz_targets`) run for a bounded time on the stable
//! toolchain, so that every change is fuzzed in CI: each target gets its seed corpus from
//! `fuzz/corpus/<target>/` and then mutations of it (bit flips, interesting bytes, cuts,
//! insertions, repeats, splices) from a seeded generator, until its time is up. A panic
//! fails the test and leaves the input in `target/fuzz-failures/` to replay with
//! `cargo fuzz run <target> <file>` or this test.
//!
//! `RAPPORT_FUZZ_SECS` sets the seconds per target (3 by default), `RAPPORT_FUZZ_SEED` the
//! generator's seed. Coverage-guided runs: `cargo +nightly fuzz run <target>` in `fuzz/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rapport_tests::fuzz_targets::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xfe, 0xff, b'-', b',', b'"', b'\n'];

/// One to four mutations of `input`, splicing from `other`.
fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
            }
            2 if len > 0 => out.truncate(rng.random_range(0..len)),
            3 => {
                let at = rng.random_range(0..=len);
                let n = rng.random_range(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                out.splice(at..at, bytes);
            }
            4 if len > 1 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..len);
                out.drain(start..=end);
            }
            5 if len > 0 => {
                // A run repeated: lengths and counts that disagree with the bytes.
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..len.min(start + 64));
                let run = out[start..=end].to_vec();
                let at = rng.random_range(0..=out.len());
                for _ in 0..rng.random_range(1..=8) {
                    out.splice(at..at, run.iter().copied());
                }
            }
            6 if !other.is_empty() => {
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ if len >= 4 => {
                // A little-endian or big-endian length field set to something odd.
                let i = rng.random_range(0..len - 3);
                let value: u32 =
                    [0, 1, 0x7fff_ffff, u32::MAX, rng.random()][rng.random_range(0..5)];
                out[i..i + 4].copy_from_slice(&value.to_be_bytes());
            }
            _ => out.push(rng.random()),
        }
    }
    out.truncate(1 << 20);
    out
}

fn keep_failure(target: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{target}-{:016x}", fxhash(input)));
    std::fs::write(&path, input).unwrap();
    path
}

fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn every_decoder_of_untrusted_bytes_survives_a_bounded_fuzz_run() {
    let secs: u64 = std::env::var("RAPPORT_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("RAPPORT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    // Quiet: a panic is reported below with its input, not as a backtrace per attempt.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for &(name, target) in TARGETS {
        let seeds = corpus(name);
        assert!(
            !seeds.is_empty(),
            "{name} has no seed corpus in {}",
            corpus_dir(name).display()
        );
        let mut rng = StdRng::seed_from_u64(seed ^ fxhash(name.as_bytes()));
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut runs = 0u64;
        let mut inputs = seeds.iter().cloned();
        while Instant::now() < deadline {
            let input = match inputs.next() {
                Some(seed) => seed,
                None => {
                    let base = &seeds[rng.random_range(0..seeds.len())];
                    let other = &seeds[rng.random_range(0..seeds.len())];
                    mutate(&mut rng, base, other)
                }
            };
            runs += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
                failures.push(format!(
                    "{name} panicked on {}",
                    keep_failure(name, &input).display()
                ));
                break;
            }
        }
        println!("{name}: {runs} inputs in {secs} s, no panic");
        assert!(
            runs >= seeds.len() as u64,
            "{name}: its seeds did not all run"
        );
    }
    std::panic::set_hook(default_hook);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Writes the seed corpora from what Rapport itself produces. Run it when a format
/// changes: `cargo test -p rapport-tests --test fuzz -- --ignored write_seed_corpora`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand when a format changes"]
fn write_seed_corpora() {
    use rapport_core::doc::SpaceKind;
    use rapport_core::sealed::snapshot::{SnapshotTables, SpaceSnapshot};
    use rapport_core::sealed::{crypto, entry, fragment};
    use rapport_core::store::read_model;
    use rapport_tests::fuzz_targets::{SPACE, key};
    use rapport_wire::SpaceId;
    use rapport_wire::codes::{InviteCode, PersonalInvite, SetupCode};
    use rapport_wire::frames::{Request, Response, Role, encode};

    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    let home = rapport_core::Home::open(dir.path()).unwrap();
    home.create_practice("Seed Practice", "Seed Owner").unwrap();
    for name in ["Dr. Lee Park", "Hope Circle", "East Clinic"] {
        rapport_tests::practice::add_partner(
            &home,
            rapport_core::vocab::PartnerKind::Therapist,
            name,
        );
    }
    let document = home.export_document(SpaceKind::Practice).unwrap();
    let heads = home.heads(SpaceKind::Practice).unwrap();

    // Frames.
    let frames: Vec<Vec<u8>> = vec![
        encode(&Request::Hello { versions: vec![2] }).unwrap(),
        encode(&Request::Pull {
            space: SPACE,
            after: 3,
            limit: 100,
        })
        .unwrap(),
        encode(&Request::Push {
            space: SPACE,
            epoch: 1,
            client_msg_id: [1; 16],
            blob: vec![7; 300],
        })
        .unwrap(),
        encode(&Request::Subscribe {
            spaces: vec![SPACE],
        })
        .unwrap(),
        encode(&Response::Admitted { role: Role::Member }).unwrap(),
        encode(&Response::Pushed {
            seq: 9,
            duplicate: false,
        })
        .unwrap(),
    ];
    for (i, frame) in frames.iter().enumerate() {
        write("frames", &format!("seed-{i}"), frame);
        write("frames", &format!("body-{i}"), &frame[4..]);
    }

    // Codes.
    let setup = SetupCode {
        addr: "relay.example.org:4433".into(),
        fingerprint: [9; 32],
        token: vec![1; 32],
    };
    write("codes", "setup", setup.encode().as_bytes());
    let invite = InviteCode {
        addr: "127.0.0.1:4433".into(),
        fingerprint: [1; 32],
        space: SPACE,
        anchor: [2; 32],
        secret: [3; 32],
        role: Role::Member,
        expires_at: 1_900_000_000,
        member: Some("m".into()),
        personal: Some(PersonalInvite {
            space: SpaceId([5; 16]),
            anchor: [6; 32],
            secret: [7; 32],
        }),
    };
    write("codes", "invite", invite.encode().as_bytes());

    // Snapshots: bare, and with records and a tables image.
    let bare = SpaceSnapshot {
        document: document.clone(),
        heads: heads.clone(),
        schema: 1,
        records: None,
        tables: None,
        covers: Some(4),
    };
    write("snapshot", "bare", &bare.encode());
    let records = format!(
        "{{\"model_version\":{},\"members\":[]}}",
        read_model::MODEL_VERSION
    );
    let full = SpaceSnapshot {
        records: Some(zstd::bulk::compress(records.as_bytes(), 3).unwrap()),
        tables: Some(SnapshotTables::compress(b"not really tables").unwrap()),
        ..bare
    };
    write("snapshot", "with-records", &full.encode());

    // Fragments: the parts of a change joined by the target's separator, and one alone.
    let change = home.changes_since(SpaceKind::Practice, &[]).unwrap();
    let parts = fragment::split(&change, 512).unwrap();
    write("fragments", "one-part", &parts[0]);
    write("fragments", "all-parts", &parts.join(&[0xFE][..]));

    // Sealed entries, under the targets' key and space.
    let plain = entry::encode(&[], &change);
    let device = rapport_wire::identity::Identity::generate("seed").unwrap();
    write("sealed_entry", "plain", &plain);
    write(
        "sealed_entry",
        "sealed",
        &crypto::seal(&key(), SPACE, device.key_pkcs8(), &plain).unwrap(),
    );

    // A tables image from a real read model.
    let mut conn =
        rapport_core::store::open_writer(&dir.path().join(rapport_core::store::DB_FILE)).unwrap();
    write(
        "tables_image",
        "image",
        &rapport_core::store::tables_image::export_tables(&mut conn).unwrap(),
    );

    // A spreadsheet tracker.
    write(
        "csv_import",
        "tracker.csv",
        b"Name,Type,City,Referred,Date,Concerns,Notes\n\
          Dr. Lee Park,therapist,Portland,in,2026-01-05,anxiety,met at lunch\n\
          Hope Circle,community_group,Salem,,,,\n\
          East Clinic,physician,Bend,out,2026-03-01,depression;grief,\n",
    );

    // Automerge: a saved document and the changes.
    write("automerge_bounds", "document", &document);
    write("automerge_bounds", "changes", &change);
}
