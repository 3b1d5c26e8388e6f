//! `uniffi-bindgen`, built from the workspace so that the generated Kotlin, Swift and Python
//! match the scaffolding of `rapport-ffi` exactly (uniffi is pinned to one version).
//! `ffi/scripts/generate-bindings` runs it in library mode.

fn main() {
    uniffi::uniffi_bindgen_main()
}
