//! Image configs from a registry: any bytes give defaults or an error, and whatever parses
//! turns into a spec or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sosna_runtime::spec::{build, ImageDefaults};
use sosna_runtime::TaskSpec;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = ImageDefaults::from_config(data) {
        let task = TaskSpec {
            image: "fuzz".into(),
            ..Default::default()
        };
        let _ = build("fuzz", &task, &image, "/sosna/fuzz");
    }
});
