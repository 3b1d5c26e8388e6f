//! The built `rapport` binary: commands, JSON shape, bad input, and two homes syncing
//! through a real relay on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use assert_cmd::Command;
use assert_cmd::cargo::CommandCargoExt;
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
        "Spanish",
        "--stream",
        "Therapists",
        "--city",
        "Portland",
    ]));
    let id = partner["id"].as_str().unwrap().to_string();
    assert_eq!(partner["name"], "Dr. Lee Park");
    assert_eq!(partner["kind"], "therapist");
    assert_eq!(partner["specialties"], serde_json::json!(["couples"]));
    assert_eq!(
        partner["languages"],
        serde_json::json!(["es"]),
        "a language by its name"
    );
    assert!(
        partner["stream_id"].is_string(),
        "a stream named for the first time is created"
    );

    let touch = json(rapport(h).args([
        "touch",
        "dr. lee",
        "--kind",
        "Email",
        "--outcome",
        "no response",
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
    let streams = json(rapport(h).args(["insights", "streams"]));
    assert_eq!(
        (streams[0]["days"].as_u64(), streams[1]["days"].as_u64()),
        (Some(90), Some(365))
    );
    assert!(json(rapport(h).args(["insights", "cold"])).is_array());
    assert_eq!(
        json(rapport(h).args(["insights", "trends"]))["months"]
            .as_array()
            .unwrap()
            .len(),
        12
    );
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
    stdout(rapport(h).args([
        "partner",
        "add",
        "--name",
        "Dr. Known",
        "--kind",
        "therapist",
    ]));
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
            "such as custom:school_refusal",
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
                "anxeity",
            ],
            "did you mean anxiety?",
        ),
        (
            vec![
                "refer",
                "in",
                "--partner",
                "Dr. Known",
                "--concern",
                "custom:jane-doe-1987-03-14",
            ],
            "full date",
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
        1,
        "nothing but Dr. Known was written"
    );
    assert_eq!(
        json(rapport(h).args(["referral", "list"]))
            .as_array()
            .unwrap()
            .len(),
        0,
        "no referral was written"
    );
}

/// The `rapport-relay` binary of this workspace (built by `cargo test --workspace`).
fn relay_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap();
    let bin = target.join(format!("rapport-relay{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "rapport-relay", "--bin", "rapport-relay"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

#[test]
fn two_homes_sync_through_a_real_relay_process() {
    let relay_dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let init = std::process::Command::new(relay_binary())
        .args(["init", "--data"])
        .arg(relay_dir.path())
        .args(["--public-addr", &addr])
        .output()
        .unwrap();
    assert!(init.status.success());
    let setup = String::from_utf8(init.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("RAPPORT-SETUP-"))
        .unwrap()
        .to_string();
    let mut relay = std::process::Command::new(relay_binary())
        .args(["serve", "--data"])
        .arg(relay_dir.path())
        .args(["--listen", &addr])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a.path(), b.path());
    stdout(rapport(a).args(["init", "--practice", "Synced", "--member", "Ana"]));
    stdout(rapport(a).args([
        "partner",
        "add",
        "--name",
        "Shared Partner",
        "--kind",
        "physician",
    ]));
    // The relay may take a moment to listen.
    // Codes are secrets: the setup code from a file, the invite from standard input.
    let setup_file = a.join("setup-code.txt");
    std::fs::write(&setup_file, &setup).unwrap();
    let mut connected = false;
    for _ in 0..50 {
        if rapport(a)
            .args(["relay", "connect", "--code-file"])
            .arg(&setup_file)
            .output()
            .unwrap()
            .status
            .success()
        {
            connected = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(connected, "could not connect to the relay");
    let invite = stdout(rapport(a).args(["invite", "--role", "member", "--expires", "2h"]));
    stdout(
        rapport(b)
            .args(["join", "-", "--member", "Ben"])
            .write_stdin(format!("{invite}\n")),
    );
    stdout(rapport(b).args(["partner", "add", "--name", "From Ben", "--kind", "school"]));
    stdout(rapport(b).arg("sync"));
    stdout(rapport(a).arg("sync"));
    let names: Vec<String> = json(rapport(a).args(["partner", "list"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["From Ben", "Shared Partner"]);
    let devices = json(rapport(a).arg("devices"));
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2);
    assert_eq!(
        devices["invites"].as_array().unwrap().len(),
        0,
        "the used invite is no longer pending: {devices}"
    );
    let status = json(rapport(a).arg("status"));
    assert_eq!(status["sync"]["unpushed_changes"], false);
    // Ana's own phone: a device invite, joined without a name, is Ana again.
    let phone_dir = tempfile::tempdir().unwrap();
    let phone = phone_dir.path();
    let device_code = stdout(rapport(a).args(["invite", "--device", "--expires", "1h"]));
    stdout(rapport(phone).args(["join", device_code.trim()]));
    assert_eq!(
        json(rapport(phone).arg("status"))["member_id"],
        status["member_id"]
    );
    let empty = rapport(b)
        .args(["join", "-"])
        .write_stdin("")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&empty.stderr).contains("code is empty"));
    let no_name = rapport(b).args(["join", invite.trim()]).output().unwrap();
    assert!(!no_name.status.success());
    assert!(String::from_utf8_lossy(&no_name.stderr).contains("--member NAME is needed"));
    // A pending invite shows with its maker and, revoked, lets nobody in.
    let unused = stdout(rapport(a).args(["invite", "--expires", "1h"]));
    let pending = json(rapport(a).arg("devices"));
    let invites = pending["invites"].as_array().unwrap();
    assert_eq!(invites.len(), 1, "{pending}");
    assert_eq!(invites[0]["created_by_name"], "Ana");
    let id = invites[0]["id"].as_str().unwrap();
    assert!(stdout(rapport(a).args(["invite", "revoke", &id[..8]])).contains("Revoked"));
    let late_dir = tempfile::tempdir().unwrap();
    let refused = rapport(late_dir.path())
        .args(["join", unused.trim(), "--member", "Late"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        json(rapport(a).arg("devices"))["devices"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Background sync until interrupted.
    let watch = std::process::Command::cargo_bin("rapport")
        .unwrap()
        .arg("--home")
        .arg(a)
        .args(["sync", "--watch"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let out = watch.wait_with_output().unwrap();
    assert!(out.status.success(), "sync --watch ends cleanly on Ctrl-C");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("up_to_date"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Removing Ben's device: refused from then on.
    let ben = json(rapport(b).arg("status"))["device_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(stdout(rapport(a).args(["devices", "remove", &ben])).contains("epoch 2"));
    let refused = rapport(b).arg("sync").output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no longer"));
    relay.kill().unwrap();
    relay.wait().unwrap();
}

#[test]
fn follow_ups_edits_and_the_demo() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    stdout(rapport(h).args(["init", "--practice", "P", "--member", "M"]));
    stdout(rapport(h).args([
        "partner",
        "add",
        "--name",
        "Quiet Partner",
        "--kind",
        "therapist",
    ]));
    stdout(rapport(h).args([
        "touch",
        "Quiet",
        "--kind",
        "call",
        "--outcome",
        "no_response",
        "--at",
        "2020-01-01",
    ]));
    let due = json(rapport(h).arg("followups"));
    let id = due[0]["followup"]["id"].as_str().unwrap().to_string();
    let snoozed = json(rapport(h).args(["followup", "snooze", &id, "--until", "2099-01-01"]));
    assert_eq!(snoozed["due"], "2099-01-01");
    let done = json(rapport(h).args(["followup", "done", &id]));
    assert_eq!(done["status"], "done");
    let edited = json(rapport(h).args([
        "partner",
        "edit",
        "Quiet",
        "--city",
        "Salem",
        "--specialty",
        "grief",
    ]));
    assert_eq!(
        (edited["city"].as_str(), edited["specialties"][0].as_str()),
        (Some("Salem"), Some("grief"))
    );
    let referrals = json(rapport(h).args(["referral", "list"]));
    assert!(referrals.as_array().unwrap().is_empty());
    let demo = stdout(Command::cargo_bin("rapport").unwrap().arg("demo"));
    assert!(
        demo.contains("All three devices hold the same network: true"),
        "{demo}"
    );
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
    assert_eq!(done["errors"][0]["line"], 5);
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
