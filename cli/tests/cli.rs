//! The built `rapport` binary: commands, JSON shape, bad input, and two homes syncing
//! through a real relay on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use assert_cmd::Command;
use rapport_relay::data::DataDir;
use rapport_relay::server::{Config, Relay};
use serde_json::Value;

fn rapport(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("rapport").unwrap();
    cmd.arg("--home").arg(home);
    cmd
}

fn stdout(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(cmd: &mut Command) -> Value {
    serde_json::from_str(&stdout(cmd.arg("--json"))).unwrap()
}

#[test]
fn the_offline_flow_with_stable_json() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    stdout(rapport(h).args(["init", "--practice", "Riverside", "--member", "Ana"]));
    let partner = json(rapport(h).args([
        "partner",
        "add",
        "--name",
        "Dr. Lee Park",
        "--kind",
        "therapist",
        "--specialty",
        "couples",
        "--language",
        "es",
        "--stream",
        "Therapists",
        "--city",
        "Portland",
    ]));
    let id = partner["id"].as_str().unwrap().to_string();
    assert_eq!(partner["name"], "Dr. Lee Park");
    assert_eq!(partner["kind"], "therapist");
    assert_eq!(partner["specialties"], serde_json::json!(["couples"]));
    assert!(
        partner["stream_id"].is_string(),
        "a stream named for the first time is created"
    );

    let touch = json(rapport(h).args([
        "touch",
        "dr. lee",
        "--kind",
        "email",
        "--outcome",
        "no_response",
        "--at",
        "2026-01-05",
    ]));
    assert_eq!(touch["at"], "2026-01-05", "days are YYYY-MM-DD");
    assert_eq!(touch["outcome"], "no_response");
    let due = json(rapport(h).args(["followups", "--overdue"]));
    assert_eq!(
        due[0]["partner_name"], "Dr. Lee Park",
        "no response scheduled a follow-up"
    );

    let referral = json(rapport(h).args([
        "refer",
        "in",
        "--partner",
        &id,
        "--concern",
        "anxiety",
        "--age-band",
        "adult",
        "--payer",
        "commercial",
    ]));
    assert_eq!(referral["direction"], "in");
    let updated = json(rapport(h).args([
        "referral",
        "status",
        referral["id"].as_str().unwrap(),
        "completed",
        "--outcome",
        "intake_held",
    ]));
    assert_eq!(updated["status"], "completed");

    let list = json(rapport(h).args(["partner", "list", "--search", "portland"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    let shown = json(rapport(h).args(["partner", "show", "Dr"]));
    assert_eq!(shown["referrals"].as_array().unwrap().len(), 1);
    let ledger = json(rapport(h).args(["insights", "reciprocity"]));
    assert_eq!(ledger[0]["all_time"]["received"], 1);
    let matches = json(rapport(h).args(["match", "--concern", "couples", "--language", "es"]));
    assert!(
        matches[0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "speaks es")
    );
    let status = json(rapport(h).arg("status"));
    assert_eq!(
        (status["practice"].as_str(), status["partners"].as_u64()),
        (Some("Riverside"), Some(1))
    );
    stdout(rapport(h).args(["insights", "digest"]));
    stdout(rapport(h).args(["me", "ideal-client", "Adults with anxiety"]));
    let archived = json(rapport(h).args(["partner", "archive", &id]));
    assert_eq!(archived["archived"], true);
    assert!(stdout(rapport(h).args(["completions", "bash"])).contains("rapport"));
}

#[test]
fn bad_input_says_what_to_type_and_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let no_practice = rapport(h)
        .args(["partner", "add", "--name", "X", "--kind", "therapist"])
        .output()
        .unwrap();
    assert!(!no_practice.status.success());
    assert!(String::from_utf8_lossy(&no_practice.stderr).contains("rapport init"));
    stdout(rapport(h).args(["init", "--practice", "P", "--member", "M"]));
    for (args, expected) in [
        (
            vec!["partner", "add", "--name", "X", "--kind", "wizard"],
            "use one of: therapist",
        ),
        (
            vec![
                "partner",
                "add",
                "--name",
                "X",
                "--kind",
                "therapist",
                "--email",
                "nope",
            ],
            "invalid email",
        ),
        (
            vec![
                "partner",
                "add",
                "--name",
                "X",
                "--kind",
                "therapist",
                "--specialty",
                "astrology",
            ],
            "custom:astrology",
        ),
        (vec!["touch", "Nobody", "--kind", "call"], "no partner"),
        (
            vec!["insights", "vibes"],
            "use reciprocity, streams, cold, trends or digest",
        ),
        (vec!["invite", "--expires", "soon"], "write it like"),
    ] {
        let out = rapport(h).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let note = rapport(h)
        .args([
            "partner",
            "add",
            "--name",
            "Y",
            "--kind",
            "therapist",
            "--how-we-met",
            "client SSN 123-45-6789",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&note.stderr).contains("social security number"));
    assert_eq!(
        json(rapport(h).args(["partner", "list"]))
            .as_array()
            .unwrap()
            .len(),
        0,
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_homes_sync_through_a_real_relay() {
    let relay_dir = tempfile::tempdir().unwrap();
    let data = DataDir::init(relay_dir.path(), "127.0.0.1:1").unwrap();
    let store = data.store().unwrap();
    let relay = Relay::bind(
        store.clone(),
        &data.identity,
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        },
    )
    .unwrap();
    data.set_public_addr(&relay.local_addr().unwrap().to_string())
        .unwrap();
    let setup = data.new_setup_code(&store).unwrap().encode();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));

    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a.path().to_path_buf(), b.path().to_path_buf());
    let run = |home: std::path::PathBuf, args: Vec<String>| {
        tokio::task::spawn_blocking(move || stdout(rapport(&home).args(&args)))
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    run(
        a.clone(),
        s(&["init", "--practice", "Synced", "--member", "Ana"]),
    )
    .await
    .unwrap();
    run(
        a.clone(),
        s(&[
            "partner",
            "add",
            "--name",
            "Shared Partner",
            "--kind",
            "physician",
        ]),
    )
    .await
    .unwrap();
    run(a.clone(), vec!["relay".into(), "connect".into(), setup])
        .await
        .unwrap();
    let invite = run(
        a.clone(),
        s(&["invite", "--role", "member", "--expires", "2h"]),
    )
    .await
    .unwrap();
    run(
        b.clone(),
        vec![
            "join".into(),
            invite.trim().to_string(),
            "--member".into(),
            "Ben".into(),
        ],
    )
    .await
    .unwrap();
    run(
        b.clone(),
        s(&["partner", "add", "--name", "From Ben", "--kind", "school"]),
    )
    .await
    .unwrap();
    run(b.clone(), s(&["sync"])).await.unwrap();
    run(a.clone(), s(&["sync"])).await.unwrap();
    let list = run(a.clone(), s(&["--json", "partner", "list"]))
        .await
        .unwrap();
    let names: Vec<String> = serde_json::from_str::<Value>(&list)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["From Ben", "Shared Partner"]);
    let devices = run(a.clone(), s(&["--json", "devices"])).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&devices)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let _ = stop.send(());
    serving.await.unwrap();
}

const MESSY: &str = "Name,Type,City,Referred,Date,Concerns,Notes,Extra\n\
Dr. Lee Park,therapist,Portland,in,2026-01-05,anxiety,met at lunch,x\n\
\n\
Hope Circle,community_group,Salem,,,,,\n\
Dr. Lee Park,therapist,Portland,out,2026-02-30,couples,,\n\
East Clinic,physician,Bend,in,2026-03-01,depression;grief,,\n";

#[test]
fn a_messy_csv_is_reported_exactly_and_imported_all_or_nothing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    stdout(rapport(h).args(["init", "--practice", "P", "--member", "M"]));
    let file = home.path().join("tracker.csv");
    std::fs::write(&file, MESSY).unwrap();

    let refused = rapport(h)
        .args(["import", "csv"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let report = String::from_utf8(refused.stdout).unwrap();
    let expected = "Columns:\n  Name                     -> name\n  Type                     -> kind\n  City                     -> city\n  Referred                 -> direction\n  Date                     -> date\n  Concerns                 -> concerns\n  Notes                    -> (ignored)\n  Extra                    -> (ignored)\nRows: 4\nLine 5: invalid date: \"2026-02-30\" is not a day; write it as YYYY-MM-DD\nNothing was written: fix the lines above, or pass --skip-invalid to import the other rows.\n";
    assert_eq!(report, expected);
    assert_eq!(
        json(rapport(h).args(["partner", "list"]))
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let dry = json(
        rapport(h)
            .args(["import", "csv"])
            .arg(&file)
            .args(["--dry-run", "--skip-invalid"]),
    );
    assert_eq!(
        (dry["written"].as_bool(), dry["partners_created"].as_u64()),
        (Some(false), Some(3))
    );
    assert_eq!(
        json(rapport(h).args(["partner", "list"]))
            .as_array()
            .unwrap()
            .len(),
        0,
        "a dry run writes nothing"
    );

    let done = json(
        rapport(h)
            .args(["import", "csv"])
            .arg(&file)
            .arg("--skip-invalid"),
    );
    assert_eq!(
        (
            done["written"].as_bool(),
            done["partners_created"].as_u64(),
            done["referrals"].as_u64()
        ),
        (Some(true), Some(3), Some(2))
    );
    assert_eq!(done["errors"][0][0], 5);
    let again = json(
        rapport(h)
            .args(["import", "csv"])
            .arg(&file)
            .arg("--skip-invalid"),
    );
    assert_eq!(
        (
            again["partners_created"].as_u64(),
            again["partners_matched"].as_u64()
        ),
        (Some(0), Some(3)),
        "partners are matched by name"
    );
    assert_eq!(
        (
            again["referrals"].as_u64(),
            again["referrals_already_known"].as_u64()
        ),
        (Some(0), Some(2)),
        "re-importing does not double-count"
    );

    // Export: CSV imports again into a fresh home; JSON holds everything; Automerge bytes.
    let csv_out = home.path().join("partners.csv");
    stdout(rapport(h).args(["export", "csv", "--out"]).arg(&csv_out));
    let other = tempfile::tempdir().unwrap();
    stdout(rapport(other.path()).args(["init", "--practice", "Q", "--member", "N"]));
    let round = json(rapport(other.path()).args(["import", "csv"]).arg(&csv_out));
    assert_eq!(round["partners_created"], 3);
    let everything: Value =
        serde_json::from_str(&stdout(rapport(h).args(["export", "json"]))).unwrap();
    assert_eq!(everything["referrals"].as_array().unwrap().len(), 2);
    assert_eq!(everything["partners"].as_array().unwrap().len(), 3);
    let doc = home.path().join("practice.automerge");
    stdout(rapport(h).args(["export", "automerge", "--out"]).arg(&doc));
    assert_eq!(
        &std::fs::read(&doc).unwrap()[..4],
        &[0x85, 0x6f, 0x4a, 0x83],
        "Automerge magic bytes"
    );
    let binary = rapport(h).args(["export", "automerge"]).output().unwrap();
    assert!(
        !binary.status.success(),
        "binary is not written to a terminal without --out"
    );
}
