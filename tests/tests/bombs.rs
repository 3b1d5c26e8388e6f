//! Compression bombs from a colleague's device are refused before they inflate: each kind
//! is fed to a home in a child process of its own, whose peak RSS is then read from
//! `/proc`. Without the bounds, each of these inflates to a gigabyte or more.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::Command;

use rapport_core::Home;
use rapport_core::doc::SpaceKind;
use rapport_core::error::Error;
use rapport_core::sealed::fragment::{self, Reassembly};
use rapport_core::sealed::snapshot::{SnapshotTables, SpaceSnapshot};
use rapport_wire::DeviceId;

/// Peak RSS a child may reach while refusing a bomb.
const MAX_RSS_MB: u64 = 256;
const GIB: usize = 1 << 30;

#[cfg(target_os = "linux")]
#[test]
fn bombs_are_refused_with_memory_to_spare() {
    for kind in ["automerge", "snapshot", "fragment"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "bomb_in_this_process",
                "--ignored",
                "--nocapture",
            ])
            .env("RAPPORT_BOMB", kind)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{kind}: {stdout}\n{stderr}");
        let peak_kb: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("peak_rss_kb="))
            .unwrap_or_else(|| panic!("{kind}: no figure in {stdout}"))
            .trim()
            .parse()
            .unwrap();
        println!("{kind}: refused, peak RSS {} MB", peak_kb / 1024);
        assert!(
            peak_kb / 1024 < MAX_RSS_MB,
            "{kind}: peak RSS {} MB while refusing the bomb",
            peak_kb / 1024
        );
    }
}

/// The child: one bomb, refused, then its peak RSS. Ignored unless the parent runs it.
#[test]
#[ignore = "run by bombs_are_refused_with_memory_to_spare in a process of its own"]
fn bomb_in_this_process() {
    let Ok(kind) = std::env::var("RAPPORT_BOMB") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(dir.path()).unwrap();
    home.create_practice("Practice", "Owner").unwrap();
    match kind.as_str() {
        // One relay entry's worth: a compressed change chunk inflating to 1 GiB.
        "automerge" => {
            let bomb = change_bomb(GIB);
            assert!(bomb.len() <= 1 << 21, "{}", bomb.len());
            let err = home
                .merge_from_relay_at(SpaceKind::Practice, &bomb, 1)
                .unwrap_err();
            assert!(matches!(err, Error::CorruptDocument(_)), "{err}");
            assert!(err.to_string().contains("inflate past"), "{err}");
        }
        // A snapshot whose records, then whose tables image, inflate to 1 GiB.
        "snapshot" => {
            let stream_bomb = || {
                let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
                let zeros = vec![0u8; 1 << 20];
                for _ in 0..GIB >> 20 {
                    encoder.write_all(&zeros).unwrap();
                }
                encoder.finish().unwrap()
            };
            let honest = SpaceSnapshot {
                document: home.export_document(SpaceKind::Practice).unwrap(),
                heads: home.heads(SpaceKind::Practice).unwrap(),
                schema: 1,
                records: None,
                tables: None,
                covers: Some(1),
            };
            let records_bomb = SpaceSnapshot {
                records: Some(stream_bomb()),
                ..honest.clone()
            };
            let decoded = SpaceSnapshot::decode(&records_bomb.encode()).unwrap();
            let err = decoded.records().unwrap_err();
            assert!(err.to_string().contains("inflates past"), "{err}");
            let mut image_bomb = SpaceSnapshot {
                records: Some(
                    zstd::bulk::compress(
                        format!(
                            "{{\"model_version\":{},\"members\":[]}}",
                            rapport_core::store::read_model::MODEL_VERSION
                        )
                        .as_bytes(),
                        3,
                    )
                    .unwrap(),
                ),
                tables: Some(SnapshotTables::compress(b"tables").unwrap()),
                ..honest
            };
            if let Some(tables) = image_bomb.tables.as_mut() {
                tables.image = stream_bomb();
            }
            let err = image_bomb.records().unwrap_err();
            assert!(err.to_string().contains("inflates past"), "{err}");
        }
        // The largest change a sender may send in parts (64 of them), made of compressed
        // change chunks each inflating to 1 GiB.
        "fragment" => {
            let one = change_bomb(GIB);
            let mut whole = Vec::new();
            while whole.len() + one.len() <= 32 << 20 {
                whole.extend_from_slice(&one);
            }
            let parts = fragment::split(&whole, 512 << 10).unwrap();
            assert!(parts.len() > 32, "{}", parts.len());
            let mut reassembly = Reassembly::default();
            let sender = DeviceId([7; 16]);
            let mut merged = None;
            for (seq, part) in (1..).zip(&parts) {
                let part = fragment::parse(part).unwrap().unwrap();
                if let Some(change) = reassembly.add(sender, seq, part).unwrap() {
                    merged = Some(home.merge_from_relay(SpaceKind::Practice, &change));
                }
            }
            let err = merged.expect("the parts came together").unwrap_err();
            assert!(err.to_string().contains("inflate past"), "{err}");
        }
        other => panic!("no bomb called {other}"),
    }
    // Nothing stored was harmed.
    assert_eq!(home.partner_count().unwrap(), 0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB");
    println!("peak_rss_kb={peak}");
}

/// A compressed Automerge change chunk (type 2) whose body inflates to `size` zero bytes.
fn change_bomb(size: usize) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        encoder.write_all(&zeros).unwrap();
    }
    let body = encoder.finish().unwrap();
    let mut bomb = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    leb128::write::unsigned(&mut bomb, body.len() as u64).unwrap();
    bomb.extend(body);
    bomb
}
