//! Control-socket requests: any line parses to a request or an error, and a parsed task
//! validates or names the bad field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sosna_runtime::api::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(Request::Run { task }) = serde_json::from_slice::<Request>(data) {
        let _ = task.validate();
    }
});
