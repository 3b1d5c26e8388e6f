//! Fuzzes frame decoding: whatever bytes arrive from the network, decoding a request, a
//! response or a code must return an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rapport_wire::codes::{InviteCode, SetupCode};
use rapport_wire::frames::{Request, Response, decode};

fuzz_target!(|data: &[u8]| {
    let _ = decode::<Request>(data);
    let _ = decode::<Response>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SetupCode::decode(text);
        let _ = InviteCode::decode(text);
    }
});
