//! Runs the generated bindings the way apps use them: the Python test module and the
//! Kotlin/JVM test project (Maven: kotlin-maven-plugin, JNA, coroutines, JUnit 5) against
//! the freshly built library, each with a real `rapport-relay` process on loopback.
//! Ordinary tests of the suite, so `cargo test --workspace` (the README's test command)
//! runs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The profile directory this test binary was built into (`target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn show(what: &str, output: &Output) -> String {
    format!(
        "{what} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Builds the library, the relay and the generator, and generates the bindings, once per
/// test process; returns the bindings directory. The build asks for exactly what
/// `cargo test --workspace --all-targets` (the README's test command) builds, so there it
/// finds everything fresh instead of rebuilding with other features.
fn bindings() -> &'static PathBuf {
    static GENERATED: OnceLock<PathBuf> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let target = profile_dir().parent().unwrap().to_path_buf();
        let build = Command::new(env!("CARGO"))
            .current_dir(root())
            .args([
                "test",
                "--locked",
                "--workspace",
                "--all-targets",
                "--no-run",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(build.status.success(), "{}", show("cargo build", &build));
        let generate = Command::new(root().join("ffi/scripts/generate-bindings"))
            .arg("--no-build")
            .env("CARGO_TARGET_DIR", &target)
            .env("CARGO", env!("CARGO"))
            .output()
            .unwrap();
        assert!(
            generate.status.success(),
            "{}",
            show("generate-bindings", &generate)
        );
        target.join("bindings")
    })
}

fn relay() -> PathBuf {
    profile_dir().join(format!("rapport-relay{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn python_bindings() {
    let bindings = bindings();
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("Python 3 is needed for the binding tests: install python3");
    let output = Command::new(python)
        .arg(root().join("ffi/tests/python/test_bindings.py"))
        .env("PYTHONPATH", bindings.join("python"))
        .env("RAPPORT_RELAY", relay())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", show("python", &output));
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(report.contains("OK"), "{report}");
}

#[test]
fn kotlin_bindings() {
    let bindings = bindings();
    let mvn = if cfg!(windows) { "mvn.cmd" } else { "mvn" };
    let output = Command::new(mvn)
        .current_dir(root().join("ffi/kotlin"))
        .args(["--batch-mode", "--no-transfer-progress", "test"])
        .arg(format!(
            "-Drapport.bindings={}",
            bindings.join("kotlin").display()
        ))
        .arg(format!(
            "-Drapport.library={}",
            bindings.join("lib").display()
        ))
        .arg(format!("-Drapport.relay={}", relay().display()))
        .output()
        .expect("Maven is needed for the Kotlin binding tests: install maven (and a JDK 17+)");
    assert!(output.status.success(), "{}", show("mvn test", &output));
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("Tests run:"), "{log}");
    assert!(!log.contains("Tests run: 0,"), "no Kotlin test ran:\n{log}");
}

/// Swift cannot build here (no Swift toolchain on Linux CI), so check what can be: the one
/// clang module of the package holds both headers, they compile together as C, and every
/// C function the generated Swift calls is declared in them.
#[test]
fn swift_sources_and_module_map_fit_together() {
    let swift = bindings().join("swift");
    let map = std::fs::read_to_string(swift.join("module.modulemap")).unwrap();
    assert!(map.starts_with("module RapportFFI {"), "{map}");
    let headers: Vec<String> = ["rapportFFI.h", "rapport_coreFFI.h"]
        .iter()
        .map(|h| {
            assert!(
                map.contains(&format!("header \"{h}\"")),
                "{h} missing from {map}"
            );
            std::fs::read_to_string(swift.join(h)).unwrap()
        })
        .collect();
    let probe = tempfile::tempdir().unwrap();
    let source = probe.path().join("probe.c");
    std::fs::write(
        &source,
        "#include \"rapportFFI.h\"\n#include \"rapport_coreFFI.h\"\nint main(void) { return 0; }\n",
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let compiled = Command::new(&cc)
        // Clang's nullability qualifiers mean nothing to other compilers.
        .args([
            "-D_Nullable=",
            "-D_Nonnull=",
            "-fsyntax-only",
            "-Wall",
            "-Werror",
            "-I",
        ])
        .arg(&swift)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("a C compiler ({cc}) is needed to check the headers: {e}"));
    assert!(compiled.status.success(), "{}", show(&cc, &compiled));

    let declared = headers.join("\n");
    let mut called = 0;
    for file in ["rapport.swift", "rapport_core.swift"] {
        let code = std::fs::read_to_string(swift.join(file)).unwrap();
        assert!(
            code.contains("import RapportFFI"),
            "{file} does not import RapportFFI"
        );
        for word in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("uniffi_rapport") || word.starts_with("ffi_rapport") {
                called += 1;
                assert!(
                    declared.contains(word),
                    "{file} calls {word}, which no header declares"
                );
            }
        }
    }
    // RapportHome alone has some sixty methods.
    assert!(
        called > 60,
        "only {called} FFI calls found in the Swift sources"
    );
}
