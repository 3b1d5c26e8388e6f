//! The generator answers and knows the languages the apps need. (Having an integration
//! test also makes `cargo test --workspace --all-targets` build the real binary, which the
//! binding tests in `ffi/tests` run.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn generates_kotlin_swift_and_python() {
    let output = Command::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .args(["generate", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for language in ["kotlin", "swift", "python"] {
        assert!(help.contains(language), "{language} missing from:\n{help}");
    }
}
