//! The OAuth callback's query string comes from whoever can reach the callback URL: it must be
//! parsed or refused, never panic, and a parse must never invent a state or code.
#![no_main]

use casesync_core::manage::CallbackParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    if let Ok(params) = CallbackParams::parse(&query) {
        for value in [&params.code, &params.state, &params.error] {
            if let Some(v) = value {
                assert!(!v.is_empty(), "an empty parameter is absent, not present");
                assert!(!v.chars().any(char::is_control));
            }
        }
    }
});
