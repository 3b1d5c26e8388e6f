//! Crash test: a child process writing in a loop is killed with SIGKILL at random moments;
//! after each kill, reopening the home loses no write the API reported as committed, the
//! SQLite file passes `PRAGMA integrity_check`, and the read model equals one rebuilt from
//! the document.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rapport_core::{Home, SpaceKind};

const KILLS: usize = 50;

#[test]
fn sigkill_mid_write_loses_nothing_committed() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test seed {seed} (rerun with CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut committed_partners = Vec::new();
    let mut committed_touchpoints = Vec::new();
    for run in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(dir.path())
            .arg(format!("run{run}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready");
        // Let it commit a random number of writes, then kill it at a random moment,
        // usually in the middle of the next one.
        let writes = rng.random_range(0..30);
        for _ in 0..writes {
            let line = lines.next().unwrap().unwrap();
            match line.split_once(' ') {
                Some(("partner", id)) => committed_partners.push(id.to_string()),
                Some(("touchpoint", id)) => committed_touchpoints.push(id.to_string()),
                _ => panic!("unexpected line {line:?}"),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..3_000)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // Lines printed after the last one we read were committed too; count them.
        for line in lines.map_while(Result::ok) {
            match line.split_once(' ') {
                Some(("partner", id)) => committed_partners.push(id.to_string()),
                Some(("touchpoint", id)) => committed_touchpoints.push(id.to_string()),
                _ => {}
            }
        }

        {
            let conn = rusqlite::Connection::open(dir.path().join("rapport.db")).unwrap();
            let check: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(check, "ok", "after kill {run}");
        }
        let home = Home::open(dir.path()).unwrap();
        for id in &committed_partners {
            home.partner(id)
                .unwrap_or_else(|e| panic!("after kill {run}: committed partner {id} lost: {e}"));
        }
        for id in &committed_touchpoints {
            home.touchpoint(id).unwrap_or_else(|e| {
                panic!("after kill {run}: committed touchpoint {id} lost: {e}")
            });
        }
        if run % 10 == 9 || run == KILLS - 1 {
            let dump = home.read_model_dump().unwrap();
            home.rebuild_read_model(SpaceKind::Practice).unwrap();
            assert_eq!(
                home.read_model_dump().unwrap(),
                dump,
                "after kill {run}: read model drifted from document"
            );
        }
    }
    assert!(
        committed_partners.len() > KILLS,
        "the writer committed too little to mean anything"
    );
}
