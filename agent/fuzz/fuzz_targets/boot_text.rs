//! Text the kernel hands PID 1: the command line and /proc/self/mountinfo.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sosna_init::{cmdline::BootArgs, mounts::mount_points};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = BootArgs::parse(&text);
    let _ = mount_points(&text);
});
