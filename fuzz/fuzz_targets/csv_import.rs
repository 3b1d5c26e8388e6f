#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rapport_tests::fuzz_targets::csv_import(data));
