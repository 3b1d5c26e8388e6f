//! `rapport-bench`: prints benchmark figures as a table and writes them as JSON under
//! `target/bench/`. Figures are measured, never asserted; targets are compared in print.
//!
//! Usage: rapport-bench store|insights|relay|sync [--latency-only|--bootstrap-only|--membership-only]

mod cold_write;
mod membership_bench;
mod relay_bench;
mod sync_bench;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rapport_core::model::{NewTouchpoint, PartnerFilter};
use rapport_core::vocab::{TouchpointKind, TouchpointOutcome};
use rapport_core::{Home, SpaceKind};
use rapport_tests::generator::{self, LARGE};
use serde_json::json;

const USAGE: &str = "usage: rapport-bench store|insights|relay|sync [--latency-only|--bootstrap-only|--membership-only]";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message and its causes, without the backtrace anyhow adds when
            // RUST_BACKTRACE is set (a usage mistake is not a crash).
            eprintln!("rapport-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("store") => store(),
        Some("insights") => insights(),
        Some("relay") => relay_bench::run(),
        Some("sync") => sync_bench::run(args.get(1).map(String::as_str)),
        // Internal: a relay in its own process, so its memory is measured alone.
        Some("serve-relay") => relay_bench::serve(
            Path::new(args.get(1).context("serve-relay needs a data directory")?),
            args.get(2).map(String::as_str).unwrap_or("127.0.0.1:0"),
        ),
        // Internal: one cold open in a fresh process; prints milliseconds.
        Some("cold-open") => cold_open(Path::new(
            args.get(1).context("cold-open needs a home directory")?,
        )),
        // Internal: the first write, merge, or naive write of a new process (cold_write).
        Some("cold-write") => cold_write::child_write(Path::new(
            args.get(1).context("cold-write needs a home directory")?,
        )),
        Some("cold-merge") => cold_write::child_merge(
            Path::new(args.get(1).context("cold-merge needs a home directory")?),
            Path::new(args.get(2).context("cold-merge needs a change file")?),
        ),
        Some("naive-write") => cold_write::child_naive(Path::new(
            args.get(1).context("naive-write needs a document file")?,
        )),
        _ => bail!(USAGE),
    }
}

fn bench_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench")
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1_000.0
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

fn cold_open(dir: &Path) -> Result<()> {
    let start = Instant::now();
    let home = Home::open(dir)?;
    let page = home.partners(&PartnerFilter::default())?;
    let elapsed = ms(start);
    if page.len() != 50 || home.is_document_loaded(SpaceKind::Practice) {
        bail!("cold open did not list a first page of 50 without loading the document");
    }
    println!("{elapsed}");
    Ok(())
}

/// A fresh copy of the large practice in a temporary directory. Generating it takes a
/// couple of minutes, so the generated home is cached under `target/bench/`, keyed by the
/// generator's and the document's versions and the page size new homes get.
fn large_practice() -> Result<(tempfile::TempDir, Option<f64>)> {
    // The document decides the content; a newer store or read model is upgraded in place
    // by the first open below. A file keeps its page size, so a new one means a new home.
    let key = format!(
        "large-practice-g{}-d{}-p{}",
        generator::GENERATOR_VERSION,
        rapport_core::doc::SCHEMA_VERSION,
        rapport_core::store::PAGE_SIZE
    );
    let cache = bench_dir().join(key);
    let mut generate_s = None;
    if !cache.join("rapport.db").exists() {
        println!(
            "generating the large practice ({} partners, {} touchpoints, {} referrals); cached in {} ...",
            LARGE.partners,
            LARGE.touchpoints,
            LARGE.referrals,
            cache.display()
        );
        let partial = cache.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        let started = Instant::now();
        {
            let home = Home::open(&partial)?;
            generator::generate(&home, LARGE, 42, "2026-06-01".parse()?)?;
        }
        generate_s = Some(started.elapsed().as_secs_f64());
        std::fs::rename(&partial, &cache)?;
    }
    // Migrations and read-model rebuilds happen here, once, not in a measured open.
    drop(Home::open(&cache)?);
    let dir = tempfile::tempdir()?;
    for entry in std::fs::read_dir(&cache)? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.path().join(entry.file_name()))?;
    }
    Ok((dir, generate_s))
}

fn store() -> Result<()> {
    let (dir, generate_s) = large_practice()?;

    // Cold open: a new process opens the home and lists the first 50 partners by name.
    let mut cold = Vec::new();
    for _ in 0..7 {
        let out = Command::new(std::env::current_exe()?)
            .arg("cold-open")
            .arg(dir.path())
            .output()?;
        if !out.status.success() {
            bail!("cold open failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        cold.push(String::from_utf8(out.stdout)?.trim().parse::<f64>()?);
    }
    let cold_open_first_page_ms = percentile(&mut cold, 0.5);

    // The first write and the first merge of a new process, and the naive baseline.
    let cold = cold_write::measure(dir.path())?;

    let home = Home::open(dir.path())?;
    let bytes = home.export_document(SpaceKind::Practice)?;
    let mut loads = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let doc = automerge::Automerge::load(&bytes)?;
        loads.push(ms(start));
        drop(doc);
    }
    let naive_automerge_load_ms = percentile(&mut loads, 0.5);

    let queries = [
        "anxiety portland",
        "couples",
        "park",
        "teens perfectionism",
        "emdr trauma",
        "brooks wellness",
        "grief salem",
        "medication",
        "es",
        "veterans",
    ];
    let mut searches = Vec::new();
    for _ in 0..5 {
        for q in queries {
            let start = Instant::now();
            let hits = home.search_partners(q, 50)?;
            searches.push(ms(start));
            std::hint::black_box(hits);
        }
    }
    let search_ms = percentile(&mut searches, 0.5);
    let search_p99_ms = percentile(&mut searches, 0.99);

    let partners = home.partners(&PartnerFilter {
        limit: Some(200),
        ..Default::default()
    })?;
    let touch = |i: usize| NewTouchpoint {
        partner_id: partners[i % partners.len()].id.clone(),
        kind: TouchpointKind::Call,
        at: None,
        outcome: Some(TouchpointOutcome::Reached),
        note: "Caught up about the spring groups".into(),
        allow_contact_details: false,
        member_id: None,
    };
    home.log_touchpoint(touch(0))?; // loads the document; not part of a write's cost
    let mut writes = Vec::new();
    for i in 0..1_000 {
        let start = Instant::now();
        home.log_touchpoint(touch(i))?;
        writes.push(ms(start));
    }
    let write_p50_ms = percentile(&mut writes, 0.5);
    let write_p99_ms = percentile(&mut writes, 0.99);
    drop(home);

    let disk_bytes: u64 = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();

    let ratio = naive_automerge_load_ms / cold_open_first_page_ms;
    println!();
    println!("{:<28} {:>12}  target", "figure", "value");
    println!(
        "{:<28} {:>12.2}  ≤ 1/20 of naive load ({:.1}x faster)",
        "cold_open_first_page_ms", cold_open_first_page_ms, ratio
    );
    println!(
        "{:<28} {:>12.2}",
        "naive_automerge_load_ms", naive_automerge_load_ms
    );
    println!("{:<28} {:>12.3}  ≤ 5 ms", "search_ms (p50)", search_ms);
    println!("{:<28} {:>12.3}", "search_p99_ms", search_p99_ms);
    println!("{:<28} {:>12.3}", "write_p50_ms", write_p50_ms);
    println!("{:<28} {:>12.3}  ≤ 5 ms", "write_p99_ms", write_p99_ms);
    println!(
        "{:<28} {:>12.1}  ≤ 50 ms (naive {:.1}: {:.1}x)",
        "cold_first_write_ms",
        cold.write_ms,
        cold.naive_write_ms,
        cold.naive_write_ms / cold.write_ms
    );
    println!(
        "{:<28} {:>12.1}  ≤ 150 MB (naive {:.1}: {:.1}x)",
        "cold_first_write_rss_mb",
        cold.write_rss_mb,
        cold.naive_write_rss_mb,
        cold.naive_write_rss_mb / cold.write_rss_mb
    );
    println!(
        "{:<28} {:>12.1}  ≤ 50 ms",
        "cold_first_merge_ms", cold.merge_ms
    );
    println!(
        "{:<28} {:>12.1}",
        "cold_first_merge_rss_mb", cold.merge_rss_mb
    );
    println!("{:<28} {:>12}", "disk_bytes", disk_bytes);
    if let Some(generate_s) = generate_s {
        println!("{:<28} {:>12.1}", "generate_s", generate_s);
    }

    let figures = json!({
        "cold_open_first_page_ms": cold_open_first_page_ms,
        "naive_automerge_load_ms": naive_automerge_load_ms,
        "cold_open_speedup": ratio,
        "search_ms": search_ms,
        "search_p99_ms": search_p99_ms,
        "write_p50_ms": write_p50_ms,
        "write_p99_ms": write_p99_ms,
        "disk_bytes": disk_bytes,
        "cold_first_write_ms": cold.write_ms,
        "cold_first_write_rss_mb": cold.write_rss_mb,
        "cold_first_merge_ms": cold.merge_ms,
        "cold_first_merge_rss_mb": cold.merge_rss_mb,
        "naive_first_write_ms": cold.naive_write_ms,
        "naive_first_write_rss_mb": cold.naive_write_rss_mb,
        "cold_first_write_speedup": cold.naive_write_ms / cold.write_ms,
        "cold_first_write_rss_ratio": cold.naive_write_rss_mb / cold.write_rss_mb,
        "generate_s": generate_s,
        "document_bytes": bytes.len(),
        "practice": { "partners": LARGE.partners, "touchpoints": LARGE.touchpoints, "referrals": LARGE.referrals, "members": LARGE.members, "streams": LARGE.streams },
    });
    let out = bench_dir();
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("store.json"),
        serde_json::to_string_pretty(&figures)?,
    )?;
    println!("\nwrote {}", out.join("store.json").display());
    Ok(())
}

/// Median milliseconds of `runs` calls of `f` (after one warm-up call).
fn median_ms<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    std::hint::black_box(f()?);
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        std::hint::black_box(f()?);
        samples.push(ms(start));
    }
    Ok(percentile(&mut samples, 0.5))
}

fn insights() -> Result<()> {
    use rapport_core::insights::matching::Need;
    use rapport_core::insights::reciprocity::LedgerBy;
    use rapport_core::vocab::{AgeBand, PayerCategory};

    let (dir, _) = large_practice()?;
    let home = Home::open(dir.path())?;
    let today: rapport_core::Day = "2026-06-01".parse()?;
    let need = Need {
        concerns: vec!["anxiety".into(), "trauma_ptsd".into()],
        age_band: Some(AgeBand::Adult),
        payer_category: Some(PayerCategory::Commercial),
        modality: Some("individual".into()),
        language: Some("es".into()),
        telehealth: true,
        city: Some("Portland".into()),
        accepting_only: false,
        limit: Some(10),
    };
    let runs = 11;
    let figures: Vec<(&str, f64)> = vec![
        (
            "due_followups",
            median_ms(runs, || Ok(home.due_followups(today, 7)?))?,
        ),
        (
            "overdue_followups",
            median_ms(runs, || Ok(home.overdue_followups(today)?))?,
        ),
        (
            "reciprocity_by_partner",
            median_ms(runs, || {
                Ok(home.reciprocity(LedgerBy::Partner, today, 365)?)
            })?,
        ),
        (
            "reciprocity_by_member",
            median_ms(runs, || {
                Ok(home.reciprocity(LedgerBy::Member, today, 365)?)
            })?,
        ),
        (
            "reciprocity_by_stream",
            median_ms(runs, || {
                Ok(home.reciprocity(LedgerBy::Stream, today, 365)?)
            })?,
        ),
        (
            "reciprocity_gaps",
            median_ms(runs, || Ok(home.reciprocity_gaps(today, 365)?))?,
        ),
        (
            "streams",
            median_ms(runs, || Ok(home.stream_report(today)?))?,
        ),
        (
            "going_cold",
            median_ms(runs, || Ok(home.going_cold(today, 60)?))?,
        ),
        ("match", median_ms(runs, || Ok(home.match_need(&need)?))?),
        ("trends", median_ms(runs, || Ok(home.trends(today, 12)?))?),
        (
            "digest",
            median_ms(runs, || Ok(home.weekly_digest(today)?))?,
        ),
    ];
    println!("\n{:<28} {:>10}  target", "insight", "ms");
    let mut json = serde_json::Map::new();
    for (name, value) in &figures {
        let verdict = if *value <= 20.0 {
            "≤ 20 ms: met"
        } else {
            "≤ 20 ms: MISSED"
        };
        println!("{:<28} {:>10.2}  {verdict}", name, value);
        json.insert(format!("{name}_ms"), json!(value));
    }
    let out = bench_dir();
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("insights.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    println!("\nwrote {}", out.join("insights.json").display());
    Ok(())
}
